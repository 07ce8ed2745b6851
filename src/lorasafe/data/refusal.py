"""Refusal completions in the think-format contract.

The paper's refusal target is `<think>I should not answer this question!</think>` followed by
the refusal text; the thinking sentence is configurable (`think.refusal_thinking`). Must not
import torch.
"""

from __future__ import annotations

from lorasafe.data.chat import ThinkFormat

DEFAULT_REFUSAL_THINKING = "I should not answer this question!"
# DirectRefusal's answers are short, varied refusals; these stand in for them offline.
REFUSALS = (
    "I'm sorry, but I cannot help with that request.",
    "I cannot assist with that. It could cause harm.",
    "Sorry, I can't help with this.",
    "I will not help with that request because it is harmful.",
)


def refusal_target(answer: str, think: ThinkFormat | None = None, thinking: str = DEFAULT_REFUSAL_THINKING) -> str:
    return (think or ThinkFormat()).wrap(thinking, answer)
