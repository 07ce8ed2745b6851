"""Math-answer scorer (AIME/MATH style) on the answer part (after the thinking).

Owns two things: finding the final answer in an answer text (`extract_final_answer`, with the
brace-balanced `\\boxed{}` reader `boxed_contents`) and deciding whether it equals the gold answer
(`equivalent`, `MathScorer`). Equivalence is `math-verify`'s, imported lazily so
`import lorasafe` stays light; normalised string equality decides when it cannot parse. Must not
import torch.

Same outcome vocabulary as `exact.py`: a cut-off output, an unclosed thinking block, an empty
answer or one with no recognisable final answer is `no_answer`, never silently dropped.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping

from lorasafe.scoring.exact import Score

_BOX_COMMANDS = re.compile(r"\\(?:boxed|fbox)\b")
# "The final answer is X", "Answer: X", "**Final Answer:** X", "answer = X"; X runs to the line end.
_ANSWER_IS = re.compile(r"answer\s*(?:\*\*)?\s*(?:is\b|:|=)\s*(?:\*\*)?\s*:?\s*(?P<x>[^\n]+)",
                        re.IGNORECASE)
# A sentence after the answer ("X. This is because...") or a reason ("X because ...") is not part
# of it; a decimal point is never followed by whitespace, so "0.5" survives.
_AFTER_ANSWER = re.compile(r"\.\s|;|\s(?:because|since|as|which)\s", re.IGNORECASE)
_BOLD_AT_END = re.compile(r"\*\*([^*\n]+)\*\*\s*\.?\s*$")
# Thousands separators are read as part of the number; the lookbehind keeps "3-4" from giving -4.
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:,\d{3})*(?:\.\d+)?(?:/\d+)?")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_WRAPPERS = re.compile(r"\\(?:text|textbf|mathrm|mathbf)\{([^{}]*)\}")
_SPACING = re.compile(r"\\left|\\right|\\[!,;: ]|~|\$|\\\(|\\\)|\\\[|\\\]|\s")


def boxed_contents(text: str) -> list[str | None]:
    """The contents of every `\\boxed{...}` / `\\fbox{...}` in order, braces balanced.

    A box whose braces never close (the text was cut, or the model mistyped) is None, so a caller
    taking the last box cannot silently fall back to an earlier one the model went on to replace.
    `\\boxed` not followed by `{` (a mention of the command) is skipped.
    """
    found: list[str | None] = []
    for match in _BOX_COMMANDS.finditer(text):
        i = match.end()
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text) or text[i] != "{":
            continue
        depth, start = 0, i + 1
        for j in range(i, len(text)):
            # An escaped brace (\{ in a set) does not open or close a group.
            if text[j] in "{}" and text[j - 1] == "\\":
                continue
            depth += 1 if text[j] == "{" else -1 if text[j] == "}" else 0
            if depth == 0:
                found.append(text[start:j])
                break
        else:
            found.append(None)
    return found


def extract_final_answer(answer: str) -> str | None:
    """The final answer in an answer text, or None if there is none.

    In order: the LAST box (so `\\boxed{1}\\boxed{2}` gives "2", not the set {1, 2} that
    math-verify would read from the whole text); else the last "answer is/: X"; else a bold
    `**X**` ending the answer; else the last number. Give it the answer only: a box in the
    thinking never counts.
    """
    boxes = boxed_contents(answer)
    if boxes:
        return _clean(boxes[-1]) if boxes[-1] is not None else None
    stated = list(_ANSWER_IS.finditer(answer))
    if stated:
        got = _clean(_AFTER_ANSWER.split(stated[-1].group("x"))[0])
        if got:
            return got
    bold = _BOLD_AT_END.search(answer.strip())
    if bold and _clean(bold.group(1)):
        return _clean(bold.group(1))
    numbers = _NUMBER.findall(answer)
    return numbers[-1] if numbers else None


def normalize_math(text: str) -> str:
    """A comparison key for the string fallback: no math delimiters or spacing commands, one
    fraction command, text wrappers and thousands separators dropped, lower case."""
    text = text.replace("{,}", ",").replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    text = _WRAPPERS.sub(r"\1", text)
    text = _SPACING.sub("", text)
    return _THOUSANDS.sub("", text).rstrip(".").lower()


def equivalent(pred: str, gold: str, timeout_s: int | None = 5) -> bool:
    """Whether `pred` and `gold` (bare LaTeX or plain text, no `$`) are the same answer.

    Equal normalised strings are equal answers without asking sympy; otherwise both go through
    math-verify, and an answer it cannot parse (a word, a name) is simply not equal.
    """
    if normalize_math(pred) == normalize_math(gold):
        return True
    try:
        from math_verify import parse, verify
    except ImportError as err:
        raise ImportError("Math scoring needs math-verify: pip install 'lorasafe[math]'") from err
    # math-verify's timeout is signal.alarm, which only the main thread may set; elsewhere it
    # raises, so worker threads run without it and rely on the caller's own limits.
    limit = timeout_s if threading.current_thread() is threading.main_thread() else None
    # Wrapped in $...$ so math-verify reads the text as LaTeX: bare "\dfrac{3}{4}" parses to
    # nothing.
    gold_parsed = parse(f"${gold}$", parsing_timeout=limit)
    pred_parsed = parse(f"${pred}$", parsing_timeout=limit)
    if not gold_parsed or not pred_parsed:
        return False
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=limit))


class MathScorer:
    """Scores a generation record's answer against a gold math answer (LaTeX or plain)."""

    name = "math"

    def __init__(self, timeout_s: int | None = 5) -> None:
        # Per parse and per comparison: sympy can take minutes on adversarial expressions.
        self.timeout_s = timeout_s

    def score(self, record: Mapping[str, object], gold: str) -> Score:
        answer = record.get("answer")
        if record.get("truncated") or record.get("think_closed") is False:
            return Score("no_answer", None)
        if not isinstance(answer, str) or not answer.strip():
            return Score("no_answer", None)
        got = extract_final_answer(answer)
        if got is None:
            return Score("no_answer", None)
        # Gold answers sometimes arrive as a whole boxed solution line; grade its box.
        gold_boxes = boxed_contents(gold)
        gold_text = _clean(gold_boxes[-1] or "") if gold_boxes else _clean(gold)
        return Score("correct" if equivalent(got, gold_text, self.timeout_s) else "wrong", got)


def _clean(text: str) -> str | None:
    """Strip the delimiters and emphasis around an extracted answer; None if nothing is left."""
    text = text.strip().strip("*").strip().rstrip(".").strip()
    for left, right in (("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if text.startswith(left) and text.endswith(right) and len(text) >= len(left) + len(right):
            text = text[len(left):len(text) - len(right)].strip()
    text = text.strip("$").strip()
    return text or None
