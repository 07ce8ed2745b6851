"""Multiple-choice scorer (GPQA style) on the answer part (after the thinking).

Owns reading the chosen letter out of an answer (`extract_choice`) and grading it (`ChoiceScorer`).
The letter set is a parameter ("ABCD" by default). Must not import torch.

Evidence is read in tiers, strongest first, and a weaker tier is consulted only when every
stronger one found nothing:
  1. explicit statements: `\\boxed{B}`, "the answer is (B)", "Answer: C", "C is correct";
     the LAST one wins, so a model that changes its mind is graded on its final word;
  2. a last line that is nothing but a letter ("**D**", "(c)", "B.");
  3. formatting cues anywhere (bold or bracketed letters, "B) because...", a lone letter line);
  4. bare capital letters in the last line's prose ("I'd go with C").
Tiers 3 and 4 must agree on a single letter: "A or B", or an answer that walks through every
option, gives None rather than a guess. Same outcome vocabulary as `exact.py`: no letter, a cut-off
output or an unclosed thinking block is `no_answer`, never silently dropped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from lorasafe.errors import DataError
from lorasafe.scoring.exact import Score

# A letter is a whole token: not part of a word ("Ab", "A's", "13C"), not a LaTeX command.
_START, _END = r"(?<![\w\\])", r"(?![\w'])"
# In prose a capital followed by a lowercase word is English ("A good choice", "B cells",
# "vitamin D deficiency") unless the word is one of these ("A or B", "C is correct").
_CONNECTORS = "or|and|is|was|would|should|seems|looks|appears|fits|matches|because|since|then"


@dataclass(frozen=True)
class _Patterns:
    statement: re.Pattern[str]
    claim: re.Pattern[str]
    boxed: re.Pattern[str]
    hedge_after: re.Pattern[str]
    hedge_before: re.Pattern[str]
    lone: re.Pattern[str]
    cues: tuple[re.Pattern[str], ...]
    bare: re.Pattern[str]


@lru_cache(maxsize=8)
def _patterns(letters: str) -> _Patterns:
    upper = f"[{letters}]"
    both = f"[{letters}{letters.lower()}]"
    # Lower case only where delimiters make it unmistakable: "(c)" is a letter, "is a" is not.
    token = rf"(?:\(\s*({both})\s*\)|({upper}){_END})"
    return _Patterns(
        statement=re.compile(
            r"\b(?i:answer|option|choice)\s*(?:\*\*)?\s*"
            r"(?:(?i:is|would\s+be|should\s+be|must\s+be)\b|[:=])\s*:?\s*(?:\*\*)?\s*"
            rf"(?:(?i:option|choice)\s+)?{token}"),
        claim=re.compile(rf"{_START}{token}\s*(?:\*\*)?\s+(?i:is|would\s+be)\s+"
                         r"(?i:the\s+)?(?i:correct|right)\b"),
        boxed=re.compile(r"\\(?:boxed|fbox)\s*\{[\s(]*(?:\\(?:text\w*|math\w+)\s*\{[\s(]*)?"
                         rf"({both})\s*[).:]?\s*\}}?\s*\}}"),
        hedge_after=re.compile(rf"\s*(?:(?i:or|and)\b|/|&)\s*{token}"
                               rf"|\s*,\s*{token}(?=\s*(?:$|[.,;]|(?i:or|and)\b))", re.MULTILINE),
        hedge_before=re.compile(rf"{token}\s*(?:(?i:or)\b|/)\s*\Z"),
        lone=re.compile(rf"\(?\s*({both})\s*\)?\s*[.):]?"),
        cues=(
            re.compile(rf"\*\*\s*\(?\s*({both})\s*\)?\s*[.):]?\s*\*\*"),
            re.compile(rf"\*\*\s*(?:\(\s*({both})\s*\)|({upper})[).:])\s[^*\n]*\*\*"),
            re.compile(rf"{_START}\(\s*({both})\s*\)"),
            re.compile(rf"^[\s>#*-]*({upper})[).:](?:\s|$)", re.MULTILINE),
            re.compile(rf"^\s*({both})\s*$", re.MULTILINE),
        ),
        bare=re.compile(rf"{_START}(?<!not )(?<!n't )({upper}){_END}"
                        rf"(?!\s+(?!(?:{_CONNECTORS})\b)[a-z])"),
    )


def extract_choice(answer: str | None, letters: str = "ABCD") -> str | None:
    """The letter (upper case) an answer chooses, or None when it chooses none or is ambiguous.
    Give it the answer only: a letter in the thinking never counts."""
    _check_letters(letters)
    if answer is None or not answer.strip():
        return None
    p = _patterns(letters)
    stated = [*p.statement.finditer(answer), *p.claim.finditer(answer), *p.boxed.finditer(answer)]
    if stated:
        last = max(stated, key=lambda m: m.end())
        # A final word hedged between letters ("the answer is A or B", "A or B is correct") is
        # no answer at all, not the first letter named.
        others = (p.hedge_after.match(answer, last.end()),
                  p.hedge_before.search(answer, 0, last.start()))
        if any(o and _letter(o) != _letter(last) for o in others):
            return None
        return _letter(last)
    final_line = answer.strip().splitlines()[-1].strip(" \t*#>-")
    lone = p.lone.fullmatch(final_line)
    if lone:
        return _letter(lone)
    cued = {_letter(m) for pattern in p.cues for m in pattern.finditer(answer)}
    if cued:
        return cued.pop() if len(cued) == 1 else None
    bare = {_letter(m) for m in p.bare.finditer(final_line)}
    return bare.pop() if len(bare) == 1 else None


class ChoiceScorer:
    """Scores a generation record's answer against the gold option letter."""

    name = "choice"

    def __init__(self, letters: str = "ABCD") -> None:
        _check_letters(letters)
        self.letters = letters

    def score(self, record: Mapping[str, object], gold_letter: str) -> Score:
        gold = gold_letter.strip().strip("()").upper() if isinstance(gold_letter, str) else ""
        if len(gold) != 1 or gold not in self.letters:
            raise DataError(f"Gold answer {gold_letter!r} is not one of the option letters "
                            f"{', '.join(self.letters)}. Fix the benchmark file or its loader, or "
                            "give the scorer the letter set the benchmark uses.")
        answer = record.get("answer")
        if record.get("truncated") or record.get("think_closed") is False:
            return Score("no_answer", None)
        got = extract_choice(answer if isinstance(answer, str) else None, self.letters)
        if got is None:
            return Score("no_answer", None)
        return Score("correct" if got == gold else "wrong", got)


def _letter(match: re.Match[str]) -> str:
    return next(g for g in match.groups() if g).upper()


def _check_letters(letters: str) -> None:
    # The letters go into regex character classes, so only distinct capitals are safe there.
    if not letters or not re.fullmatch(r"[A-Z]+", letters) or len(set(letters)) != len(letters):
        raise ValueError(f"Option letters must be distinct capitals such as 'ABCD', "
                         f"got {letters!r}.")
