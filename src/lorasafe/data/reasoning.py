"""Splitting a model output into its thinking part and its answer part.

Owns the one definition of "the answer is what follows the closed thinking block". Judges and
scorers read `ThinkSplit`, never the raw text. Must not import torch or transformers.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ThinkSplit:
    thinking: str | None  # None when the output has no thinking block at all
    answer: str | None  # None when the thinking block never closed
    closed: bool  # False when a thinking block was opened and never closed

    @property
    def has_answer(self) -> bool:
        return self.answer is not None and self.answer.strip() != ""


def split_think(text: str, open_tag: str = "<think>", close_tag: str = "</think>") -> ThinkSplit:
    """Split `text` (the prompt's pre-filled part included, if any) at the first closing tag.

    - `<think>a</think>b` -> thinking "a", answer "b"
    - `<think>a` (cut by the token limit) -> thinking "a", answer None, closed False
    - `b` (no thinking block) -> thinking None, answer "b", closed True
    - `a</think>b` (opening tag lost) -> thinking "a", answer "b": the closing tag decides.
    """
    close = text.find(close_tag)
    if close >= 0:
        head = text[:close]
        start = head.find(open_tag)
        thinking = head[start + len(open_tag):] if start >= 0 else head
        return ThinkSplit(thinking.strip(), text[close + len(close_tag):].strip(), True)
    start = text.find(open_tag)
    if start >= 0:
        return ThinkSplit(text[start + len(open_tag):].strip(), None, False)
    return ThinkSplit(None, text.strip(), True)
