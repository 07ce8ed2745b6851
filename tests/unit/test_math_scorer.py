"""Golden tests for final-answer extraction and math-verify equivalence on the answer part."""

from __future__ import annotations

import importlib.util
import sys
import threading

import pytest

from lorasafe.scoring.exact import Score
from lorasafe.scoring.math_answer import (MathScorer, boxed_contents, equivalent, extract_final_answer,
                                   normalize_math)

# Extraction needs nothing; equivalence needs the `math` extra.
needs_math_verify = pytest.mark.skipif(importlib.util.find_spec("math_verify") is None,
                                       reason="pip install 'lorasafe[math]'")


def rec(answer, truncated=False, closed=True, thinking="Let me compute."):
    return {"answer": answer, "thinking": thinking, "truncated": truncated, "think_closed": closed}


@pytest.mark.parametrize("text,contents", [
    (r"\boxed{\frac{1}{2}}", [r"\frac{1}{2}"]),
    (r"\boxed{1}\boxed{2}", ["1", "2"]),
    (r"\fbox{7} and \boxed {8}", ["7", "8"]),
    (r"\boxed{\{1, 2\}}", [r"\{1, 2\}"]),
    (r"\boxed{\left(\frac{a}{b}\right)}", [r"\left(\frac{a}{b}\right)"]),
    (r"\boxed{\left\{1\right.} \boxed{2}", [r"\left\{1\right.", "2"]),
    (r"\boxed{3", [None]),
    (r"Use \boxed to mark it: \boxed{4}", ["4"]),
    ("no box", []),
])
def test_boxed_contents(text, contents):
    assert boxed_contents(text) == contents


@pytest.mark.parametrize("answer,final", [
    (r"So the result is $\boxed{\frac{1}{2}}$.", r"\frac{1}{2}"),
    (r"\boxed{1}\boxed{2}", "2"),
    (r"First \boxed{12}, but correcting: \boxed{13}", "13"),
    (r"\[\boxed{x=3}\]", "x=3"),
    (r"\boxed{$42$}", "42"),
    (r"\boxed{1} then \boxed{2", None),
    (r"\boxed{}", None),
    (r"The final answer is $\frac{3}{4}$.", r"\frac{3}{4}"),
    ("**Final Answer:** 42", "42"),
    ("Answer: 0.5. That is half.", "0.5"),
    ("The answer is 5 because 2 + 3 = 5", "5"),
    ("Adding them gives **17**.", "17"),
    ("There are 3 apples and 12 pears, 15 fruit in all.", "15"),
    ("So the total is 1,000 dollars", "1,000"),
    ("pages 3-4", "4"),
    ("I cannot solve this.", None),
])
def test_extract_final_answer(answer, final):
    assert extract_final_answer(answer) == final


@pytest.mark.parametrize("text,key", [
    (r"$\dfrac{3}{4}$", r"\frac{3}{4}"),
    (r"\text{Monday}.", "monday"),
    ("1,000,000", "1000000"),
    (r"1{,}000", "1000"),
    (r"\left( 1, 2 \right)", "(1,2)"),
])
def test_normalize_math(text, key):
    assert normalize_math(text) == key


# Decided: `x=3` against gold `3` is correct. math-verify reads a "variable = value" answer as its
# value when the gold is a bare value (AIME/MATH questions ask for the value, and models often
# write the assignment); the same rule makes `y=3` correct too.
@needs_math_verify
@pytest.mark.parametrize("answer,gold,outcome,extracted", [
    (r"\boxed{\frac{1}{2}}", "0.5", "correct", r"\frac{1}{2}"),
    (r"\boxed{\frac{1}{2}}", "1/2", "correct", r"\frac{1}{2}"),
    (r"\boxed{0.5}", r"\frac{1}{2}", "correct", "0.5"),
    (r"\boxed{\dfrac{3}{4}}", "0.75", "correct", r"\dfrac{3}{4}"),
    (r"\boxed{x=3}", "3", "correct", "x=3"),
    (r"\boxed{1,000}", "1000", "correct", "1,000"),
    (r"\boxed{1000}", "1,000", "correct", "1000"),
    (r"\boxed{1}\boxed{2}", "2", "correct", "2"),
    (r"\boxed{1}\boxed{2}", "1", "wrong", "2"),
    (r"\boxed{2\sqrt{2}}", r"\sqrt{8}", "correct", r"2\sqrt{2}"),
    (r"\boxed{x^2 + 2x + 1}", "(x+1)^2", "correct", "x^2 + 2x + 1"),
    (r"\boxed{\text{Monday}}", "Monday", "correct", r"\text{Monday}"),
    (r"The final answer is $\frac{3}{4}$.", "0.75", "correct", r"\frac{3}{4}"),
    ("So 3 + 4 = 7", "7", "correct", "7"),
    (r"\boxed{2}", r"\boxed{2}", "correct", "2"),
    (r"\boxed{7}", "8", "wrong", "7"),
    (r"\boxed{-5}", "5", "wrong", "-5"),
    (r"\boxed{\frac{1}{3}}", "0.33", "wrong", r"\frac{1}{3}"),
    (r"\boxed{\text{Tuesday}}", "Monday", "wrong", r"\text{Tuesday}"),
    ("So 3 + 4 = 7", "3", "wrong", "7"),
    ("I cannot solve this.", "7", "no_answer", None),
    (r"\boxed{3", "3", "no_answer", None),
])
def test_math_scorer_golden(answer, gold, outcome, extracted):
    score = MathScorer().score(rec(answer), gold)
    assert (score.outcome, score.extracted) == (outcome, extracted)


@needs_math_verify
def test_answer_in_thinking_is_ignored():
    scorer = MathScorer()
    thinking = r"Compute 2 + 3 = 5, so \boxed{5}."
    assert scorer.score(rec("I am not sure.", thinking=thinking), "5").outcome == "no_answer"
    assert scorer.score(rec("The answer is 4.", thinking=thinking), "5").outcome == "wrong"


@pytest.mark.parametrize("record", [
    rec(r"\boxed{5}", truncated=True),
    rec(r"\boxed{5}", closed=False),
    rec(None, closed=False),
    rec(None),
    rec("   \n"),
])
def test_no_answer_even_when_the_text_holds_the_gold(record):
    assert MathScorer().score(record, "5") == Score("no_answer", None)


@needs_math_verify
def test_timeout_reaches_math_verify_on_the_main_thread_only(monkeypatch):
    import math_verify

    seen: list[tuple[str, object]] = []

    def parse(text, parsing_timeout=5):
        seen.append(("parse", parsing_timeout))
        return [text]

    def verify(gold, pred, timeout_seconds=5):
        seen.append(("verify", timeout_seconds))
        return False

    monkeypatch.setattr(math_verify, "parse", parse)
    monkeypatch.setattr(math_verify, "verify", verify)
    MathScorer(timeout_s=2).score(rec(r"\boxed{7}"), "8")
    assert seen == [("parse", 2), ("parse", 2), ("verify", 2)]
    seen.clear()
    worker = threading.Thread(target=lambda: equivalent("7", "8", timeout_s=2))
    worker.start()
    worker.join()
    assert seen == [("parse", None), ("parse", None), ("verify", None)]


@needs_math_verify
def test_works_in_a_worker_thread():
    # math-verify's signal-based timeout raises off the main thread; the scorer must not.
    result: dict[str, bool] = {}
    worker = threading.Thread(target=lambda: result.update(ok=equivalent(r"\frac{1}{2}", "0.5")))
    worker.start()
    worker.join()
    assert result == {"ok": True}


def test_missing_math_verify_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "math_verify", None)
    # Equal strings need no sympy, so they still score without the extra installed.
    assert MathScorer().score(rec(r"\boxed{\dfrac{1}{2}}"), r"\frac{1}{2}").outcome == "correct"
    with pytest.raises(ImportError, match=r"pip install 'lorasafe\[math\]'"):
        MathScorer().score(rec(r"\boxed{\frac{1}{2}}"), "0.5")
