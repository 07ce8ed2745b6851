"""The generator interface and the record it produces.

A `Generator` turns rendered prompts into `Completion`s; the store turns those into records keyed
by (item id, sample index). Backends (HF transformers now, vLLM later) register by name.
Must not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Completion:
    text: str  # generated text, special tokens removed
    n_tokens: int
    truncated: bool  # stopped by max_new_tokens rather than by end of turn


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    seed: int = 0


class Generator(Protocol):
    def generate(self, model: Any, prompts: list[str], params: SamplingParams) -> list[Completion]:
        """One completion per prompt, in order."""
