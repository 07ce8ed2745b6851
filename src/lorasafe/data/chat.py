"""The think-format contract: the ONLY place chat templates are rendered.

Training, generation and judging all get their text from a `ChatRenderer`, so for one item the
training prompt is byte-for-byte the inference prompt and the completion is what the model is
expected to continue with.

The contract: an assistant text is `<think>THINKING</think>ANSWER` (the tags are `ThinkFormat`'s).
How a model's template takes that text is found once per tokenizer by rendering probes, never by
the model's name, and recorded in the manifest (`describe`):
- carrier: the template reads the thinking from the content (tags in the text: R1-Distill, Qwen3,
  the mini model) or from a message field (gpt-oss's harmony template reads `thinking` and renders
  it as the analysis channel, the answer as the final channel).
- thinking: `native` (the template knows the thinking block), `contract` (it does not: SmolLM2,
  Llama-3; lorasafe's tags are plain text to the model, applied by lorasafe) or `off` (the generation
  prompt already holds an empty, closed block: Qwen3 with `enable_thinking: false`; the contract's
  thinking is then dropped from training targets, since the model cannot emit it).
- mode: "template" when the template renders the assistant turn being trained on in full (the
  completion is the conversation minus the prompt); "fallback" when it drops or rewrites the
  thinking of that turn or pre-fills `<think>` in the generation prompt (R1-Distill strips
  everything before `</think>`): the completion is then assembled from the pieces the template
  uses (the text minus what the prompt pre-filled, then the template's own end-of-turn text).
Outputs are split at the markers the template itself puts around the thinking (`<think>`/`</think>`,
or harmony's `<|channel|>analysis<|message|>` / `<|end|><|start|>assistant<|channel|>final<|message|>`).
Must not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lorasafe.data.reasoning import ThinkSplit, split_think
from lorasafe.errors import ChatTemplateError

_SENTINEL = "\u2063LORASAFE_SENTINEL\u2063"
_T, _A = "LSTHINK", "LSANSWER"  # probe texts
# Message fields that templates read a turn's thinking from (gpt-oss: thinking; vLLM/Qwen3 convention: reasoning_content).
THINKING_FIELDS = ("thinking", "reasoning_content")


@dataclass(frozen=True)
class ThinkFormat:
    open_tag: str = "<think>"
    close_tag: str = "</think>"
    enable_thinking: bool | None = None  # the template's thinking switch (Qwen3); None = the template's default

    def wrap(self, thinking: str, answer: str) -> str:
        """Assistant text with a thinking block, in the paper's compact form."""
        return f"{self.open_tag}{thinking}{self.close_tag}{answer}"

    def split(self, text: str) -> ThinkSplit:
        return split_think(text, self.open_tag, self.close_tag)

    def parts(self, text: str) -> tuple[str | None, str]:
        """(thinking, answer) of a contract text; thinking None when it has no closed block."""
        s = self.split(text)
        return (s.thinking, s.answer or "") if self.close_tag in text else (None, text)


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
        self.kwargs = {} if self.think.enable_thinking is None else {"enable_thinking": self.think.enable_thinking}
        self._check_switch()
        self.parses_tags = self._parses_tags()
        self.carrier = self._carrier()
        probe_prompt = self._render([self._user("x")], generation=True)
        self.prefill, self.thinking_off = self._prefill(probe_prompt)
        if self.thinking_off:
            probe_full = self._render([self._user("x"), self._assistant(None, _A)])
        else:
            probe_full = self._render([self._user("x"), self._assistant(_T, _A)])
        tail = probe_full[len(probe_prompt):] if probe_full.startswith(probe_prompt) else None
        keeps = tail is not None and (_A in tail if self.thinking_off else _T in tail)
        # Template mode only if the template keeps the thinking of the turn being trained on (or, with thinking
        # off, renders the answer right after the prompt's empty block).
        self.mode = "template" if keeps and (self.thinking_off or not self.prefill) else "fallback"
        self.markers = self._markers(tail) if self.mode == "template" and not self.thinking_off else \
            (self.think.open_tag, self.think.close_tag)
        # A field-carrier template (harmony) opens an answer without thinking with its own header
        # ('<|channel|>final<|message|>'): an output that skips the thinking starts with it.
        self.answer_header = self._answer_header(probe_prompt) if self.carrier != "content" else ""
        native = self.carrier != "content" or bool(self.prefill) or self.parses_tags
        self.thinking = "off" if self.thinking_off else ("native" if native else "contract")
        self.end_of_turn = self._end_of_turn()

    # --- probing the template ---------------------------------------------------------------
    def _check_switch(self) -> None:
        if not self.kwargs:
            return
        on = self._render([self._user("x")], generation=True, enable_thinking=True)
        off = self._render([self._user("x")], generation=True, enable_thinking=False)
        if on == off:
            raise ChatTemplateError(
                f"think.enable_thinking is {self.think.enable_thinking}, but the chat template of "
                f"{getattr(self.tokenizer, 'name_or_path', 'this tokenizer')} renders the same prompt either way: it "
                "has no thinking switch (Qwen3's templates do). Remove think.enable_thinking for this model.")

    def _carrier(self) -> str:
        """'content', or the message field the template reads the thinking from (harmony: 'thinking')."""
        if self.parses_tags:
            return "content"
        for name in THINKING_FIELDS:
            msg = {"role": "assistant", "content": _A, name: _T}
            if _T in self._render([self._user("x"), msg]):
                return name
        return "content"

    def _parses_tags(self) -> bool:
        """Whether the template treats a thinking block in the content specially, rather than inserting the text
        as it is (SmolLM2's, Llama-3's and harmony's do the latter). Probed without the opening tag, which R1-Distill
        and Qwen3 templates add back or drop."""
        text = f"{_T}{self.think.close_tag}{_A}"
        verbatim = self._render([self._user("x"), {"role": "assistant", "content": _SENTINEL}]).replace(_SENTINEL, text)
        return self._render([self._user("x"), {"role": "assistant", "content": text}]) != verbatim

    def _prefill(self, prompt: str) -> tuple[str, bool]:
        """The part of the thinking block the generation prompt already holds, and whether it is closed:
        '<think>\\n' (R1-Distill: the model continues the thinking) or '<think>\\n\\n</think>\\n\\n' (Qwen3
        with enable_thinking false: no thinking at all)."""
        o, c = self.think.open_tag, self.think.close_tag
        idx = prompt.rfind(o)
        if idx < 0:
            return "", False
        rest = prompt[idx + len(o):]
        if rest.strip() == "":
            return prompt[idx:], False
        if rest.strip() == c:
            return prompt[idx:], True
        return "", False

    def _markers(self, tail: str) -> tuple[str, str]:
        """The text the template puts before and after the thinking (whitespace aside)."""
        head, rest = tail.split(_T, 1)
        return head.strip() or self.think.open_tag, rest.split(_A, 1)[0].strip() or self.think.close_tag

    def _answer_header(self, prompt: str) -> str:
        full = self._render([self._user("x"), self._assistant(None, _A)])
        return full[len(prompt):].split(_A, 1)[0].strip() if full.startswith(prompt) else ""

    def _end_of_turn(self) -> str:
        full = self._render([self._user("x"), {"role": "assistant", "content": _SENTINEL}])
        at = full.rfind(_SENTINEL)
        eot = full[at + len(_SENTINEL):].rstrip() if at >= 0 else ""
        if not eot:
            eot = self.tokenizer.eos_token or ""
        return eot

    # --- rendering -----------------------------------------------------------------------
    def _user(self, text: str) -> dict[str, str]:
        return {"role": "user", "content": text}

    def _assistant(self, thinking: str | None, answer: str) -> dict[str, str]:
        """The assistant message the template expects for a thinking and an answer."""
        if thinking is None:
            return {"role": "assistant", "content": answer}
        if self.carrier != "content":
            return {"role": "assistant", "content": answer, self.carrier: thinking}
        return {"role": "assistant", "content": self.think.wrap(thinking, answer)}

    def _messages(self, turns: list[dict[str, str]]) -> list[dict[str, str]]:
        if self.system_prompt:
            return [{"role": "system", "content": self.system_prompt}, *turns]
        return turns

    def _render(self, turns: list[dict[str, str]], generation: bool = False, **kwargs: Any) -> str:
        try:
            return self.tokenizer.apply_chat_template(
                self._messages(turns), tokenize=False, add_generation_prompt=generation, **(kwargs or self.kwargs)
            )
        except Exception as e:  # jinja errors carry no hint of which template failed
            raise ChatTemplateError(
                f"The chat template of {getattr(self.tokenizer, 'name_or_path', 'the tokenizer')} failed to "
                f"render a plain user/assistant conversation ({type(e).__name__}: {e}). Fix the template in "
                "tokenizer_config.json or pick the model's chat tokenizer."
            ) from None

    def prompt(self, user: str) -> str:
        """The inference prompt: the conversation so far plus the generation prompt."""
        return self._render([self._user(user)], generation=True)

    def completion(self, user: str, assistant: str) -> str:
        """What the model must generate after `prompt(user)` to say `assistant` (a contract text)."""
        return self.pair(user, assistant)[1]

    def pair(self, user: str, assistant: str) -> tuple[str, str]:
        """`prompt(user)` and `completion(user, assistant)` from one rendering of the prompt (encoding a
        training set renders each prompt once instead of twice: the template engine is most of its time)."""
        prompt = self.prompt(user)
        thinking, answer = self.think.parts(assistant)
        if self.mode == "template":
            if self.thinking_off or self.carrier != "content":
                turn = self._assistant(None if self.thinking_off else thinking, answer)
            else:  # the template parses the contract text itself
                turn = {"role": "assistant", "content": assistant}
            full = self._render([self._user(user), turn])
            return prompt, full[len(prompt):].rstrip()
        body = assistant
        if self.prefill:
            opened = self.prefill.strip()
            stripped = body.lstrip()
            if stripped.startswith(opened):
                body = stripped[len(opened):].lstrip("\n") if self.prefill.endswith("\n") else stripped[len(opened):]
        return prompt, body + self.end_of_turn

    def encode_pair(self, user: str, assistant: str) -> tuple[list[int], list[int]]:
        """Token ids of the prompt and of the completion, tokenised apart so the boundary is exact."""
        enc = self.tokenizer
        prompt, completion = self.pair(user, assistant)
        return enc(prompt, add_special_tokens=False)["input_ids"], enc(completion, add_special_tokens=False)["input_ids"]

    def encode_prompt(self, user: str) -> list[int]:
        return self.tokenizer(self.prompt(user), add_special_tokens=False)["input_ids"]

    # --- reading outputs ---------------------------------------------------------------------
    @property
    def keep_token_ids(self) -> set[int]:
        """Special tokens the split markers are made of (harmony's channel tokens): decoding must keep them."""
        decoder = getattr(self.tokenizer, "added_tokens_decoder", {}) or {}
        return {i for i, t in decoder.items() if getattr(t, "special", False) and str(t) in "".join(self.markers)}

    def decode(self, ids: list[int]) -> str:
        """Generated ids as text for `split_output`: special tokens dropped except the markers' own."""
        decoder = getattr(self.tokenizer, "added_tokens_decoder", {}) or {}
        keep = self.keep_token_ids
        drop = {i for i, t in decoder.items() if getattr(t, "special", False) and i not in keep}
        return self.tokenizer.decode([i for i in ids if i not in drop], skip_special_tokens=False)

    def split_output(self, generated: str) -> ThinkSplit:
        """Split generated text, counting the thinking block the prompt pre-filled."""
        split = split_think(self.prefill + generated, *self.markers)
        if split.thinking is None and self.answer_header and split.answer.startswith(self.answer_header):
            return ThinkSplit(None, split.answer[len(self.answer_header):].strip(), True)
        return split

    def describe(self) -> dict[str, str]:
        return {"mode": self.mode, "prefill": self.prefill, "end_of_turn": self.end_of_turn,
                "open_tag": self.think.open_tag, "close_tag": self.think.close_tag,
                "thinking": self.thinking, "carrier": self.carrier,
                "split_open": self.markers[0], "split_close": self.markers[1],
                "template_kwargs": ", ".join(f"{k}={v}" for k, v in self.kwargs.items())}
