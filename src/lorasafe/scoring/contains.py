"""Short-answer scorer: the gold answer appears, as whole words, in the first sentence of the answer.

For chat models that answer in a sentence ("The capital of France is Paris.") rather than with the
bare answer, where exact match would score almost nothing, and for small models that ramble after
answering, where matching the whole output would reward a correct word anywhere in a wrong paragraph
("...is Saturn. Jupiter is the second..."). Matching is case-insensitive, with punctuation read as
spaces, on whole words ("men" is not found in "women").

Outcomes as in `exact.py`: no answer (empty, thinking never closed) is `no_answer`; so is an output
the token limit cut before its first sentence ended. An output cut later is scored on its first
sentence, which is complete (the truncated rate is still reported beside the accuracy).
Must not import torch.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from lorasafe.scoring.exact import Score

_END = re.compile(r"[.!?](?=\s|$)|\n")


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def first_sentence(text: str) -> tuple[str, bool]:
    """The text up to the end of its first sentence (or line), and whether that end was found."""
    text = text.strip()
    m = _END.search(text)
    return (text[:m.end()], True) if m else (text, False)


class ContainsScorer:
    name = "contains"

    def score(self, record: Mapping[str, object], gold: str) -> Score:
        answer = record.get("answer")
        if not isinstance(answer, str) or not answer.strip() or record.get("think_closed") is False:
            return Score("no_answer", None)
        sentence, ended = first_sentence(answer)
        if not ended and record.get("truncated"):
            return Score("no_answer", None)
        found = f" {normalise(gold)} " in f" {normalise(sentence)} "
        return Score("correct" if found else "wrong", sentence)
