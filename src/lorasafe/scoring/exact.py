"""Exact-match reasoning scorer on the answer part (after the thinking).

An output whose thinking block never closed, or that the token limit cut, is counted wrong and
reported in its own category (`no_answer`), never silently dropped. Must not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Outcome = Literal["correct", "wrong", "no_answer"]


@dataclass(frozen=True)
class Score:
    outcome: Outcome
    extracted: str | None


def normalize_answer(text: str) -> str:
    return " ".join(text.strip().rstrip(".").split()).lower()


class ExactMatchScorer:
    name = "exact"

    def score(self, record: dict, gold: str) -> Score:
        answer = record.get("answer")
        if record.get("truncated") or answer is None or not answer.strip():
            return Score("no_answer", None)
        got = normalize_answer(answer)
        return Score("correct" if got == normalize_answer(gold) else "wrong", got)
