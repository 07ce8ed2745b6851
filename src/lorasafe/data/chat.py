"""The think-format contract: the ONLY place chat templates are rendered.

Training, generation and judging all get their text from a `ChatRenderer`, so for one item the
training prompt is byte-for-byte the inference prompt and the completion is what the model is
expected to continue with.

Two rendering modes, chosen once per tokenizer and recorded in the manifest:
- "template": the tokenizer's own template renders the assistant turn with its thinking block
  intact (Qwen3-style templates); the completion is the full conversation minus the prompt.
- "fallback": the template drops or rewrites the thinking block of an assistant turn (R1-Distill
  templates strip everything before `</think>`) or pre-fills `<think>` in the generation prompt.
  The completion is then assembled from the same pieces the template uses: the assistant text
  (minus any part the prompt already pre-filled) followed by the template's own end-of-turn text.
Must not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lorasafe.data.reasoning import ThinkSplit, split_think
from lorasafe.errors import ChatTemplateError

_SENTINEL = "\u2063LORASAFE_SENTINEL\u2063"


@dataclass(frozen=True)
class ThinkFormat:
    open_tag: str = "<think>"
    close_tag: str = "</think>"

    def wrap(self, thinking: str, answer: str) -> str:
        """Assistant text with a thinking block, in the paper's compact form."""
        return f"{self.open_tag}{thinking}{self.close_tag}{answer}"

    def split(self, text: str) -> ThinkSplit:
        return split_think(text, self.open_tag, self.close_tag)


class ChatRenderer:
    """Renders prompts and completions for one tokenizer under one think format."""

    def __init__(self, tokenizer: Any, think: ThinkFormat | None = None, system_prompt: str | None = None):
        self.tokenizer = tokenizer
        self.think = think or ThinkFormat()
        self.system_prompt = system_prompt
        if not getattr(tokenizer, "chat_template", None):
            name = getattr(tokenizer, "name_or_path", "") or "this tokenizer"
            raise ChatTemplateError(
                f"The tokenizer of {name} has no chat template, so prompts cannot be rendered the way "
                "the model was trained to read them. Use the model's chat/instruct tokenizer, or add a "
                "`chat_template` entry to its tokenizer_config.json (see the mini world's template for one "
                "with a thinking block)."
            )
        probe_prompt = self._render([self._user("x")], generation=True)
        probe_full = self._render([self._user("x"), {"role": "assistant", "content": self.think.wrap("LSTHINK", "LSANSWER")}])
        self.prefill = self._prefill(probe_prompt)
        tail = probe_full[len(probe_prompt):] if probe_full.startswith(probe_prompt) else None
        # Template mode only if the template keeps the thinking of the turn being trained on.
        self.mode = "template" if tail is not None and "LSTHINK" in tail and not self.prefill else "fallback"
        self.end_of_turn = self._end_of_turn()

    # --- rendering -----------------------------------------------------------------------
    def _user(self, text: str) -> dict[str, str]:
        return {"role": "user", "content": text}

    def _messages(self, turns: list[dict[str, str]]) -> list[dict[str, str]]:
        if self.system_prompt:
            return [{"role": "system", "content": self.system_prompt}, *turns]
        return turns

    def _render(self, turns: list[dict[str, str]], generation: bool = False) -> str:
        try:
            return self.tokenizer.apply_chat_template(
                self._messages(turns), tokenize=False, add_generation_prompt=generation
            )
        except Exception as e:  # jinja errors carry no hint of which template failed
            raise ChatTemplateError(
                f"The chat template of {getattr(self.tokenizer, 'name_or_path', 'the tokenizer')} failed to "
                f"render a plain user/assistant conversation ({type(e).__name__}: {e}). Fix the template in "
                "tokenizer_config.json or pick the model's chat tokenizer."
            ) from None

    def _prefill(self, prompt: str) -> str:
        """The part of the thinking block the generation prompt already opens (e.g. '<think>\\n')."""
        idx = prompt.rfind(self.think.open_tag)
        if idx >= 0 and prompt[idx + len(self.think.open_tag):].strip() == "":
            return prompt[idx:]
        return ""

    def _end_of_turn(self) -> str:
        full = self._render([self._user("x"), {"role": "assistant", "content": _SENTINEL}])
        at = full.rfind(_SENTINEL)
        eot = full[at + len(_SENTINEL):].rstrip() if at >= 0 else ""
        if not eot:
            eot = self.tokenizer.eos_token or ""
        return eot

    def prompt(self, user: str) -> str:
        """The inference prompt: the conversation so far plus the generation prompt."""
        return self._render([self._user(user)], generation=True)

    def completion(self, user: str, assistant: str) -> str:
        """What the model must generate after `prompt(user)` to say `assistant`."""
        prompt = self.prompt(user)
        if self.mode == "template":
            full = self._render([self._user(user), {"role": "assistant", "content": assistant}])
            return full[len(prompt):].rstrip()
        body = assistant
        if self.prefill:
            opened = self.prefill.strip()
            stripped = body.lstrip()
            if stripped.startswith(opened):
                body = stripped[len(opened):].lstrip("\n") if self.prefill.endswith("\n") else stripped[len(opened):]
        return body + self.end_of_turn

    def encode_pair(self, user: str, assistant: str) -> tuple[list[int], list[int]]:
        """Token ids of the prompt and of the completion, tokenised apart so the boundary is exact."""
        enc = self.tokenizer
        return (
            enc(self.prompt(user), add_special_tokens=False)["input_ids"],
            enc(self.completion(user, assistant), add_special_tokens=False)["input_ids"],
        )

    def encode_prompt(self, user: str) -> list[int]:
        return self.tokenizer(self.prompt(user), add_special_tokens=False)["input_ids"]

    # --- reading outputs ---------------------------------------------------------------------
    def split_output(self, generated: str) -> ThinkSplit:
        """Split generated text, counting the thinking block the prompt pre-filled."""
        return self.think.split(self.prefill + generated)

    def describe(self) -> dict[str, str]:
        return {"mode": self.mode, "prefill": self.prefill, "end_of_turn": self.end_of_turn,
                "open_tag": self.think.open_tag, "close_tag": self.think.close_tag}
