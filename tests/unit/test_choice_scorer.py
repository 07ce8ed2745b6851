"""Golden tests for multiple-choice letter extraction and scoring on the answer part."""

from __future__ import annotations

import pytest

from lorasafe.errors import DataError
from lorasafe.scoring.choice import ChoiceScorer, extract_choice
from lorasafe.scoring.exact import Score


def rec(answer, truncated=False, closed=True, thinking="Let me weigh the options."):
    return {"answer": answer, "thinking": thinking, "truncated": truncated, "think_closed": closed}


ANALYSIS = ("**A) 12 kJ**: too small.\n**B) 24 kJ**: sign error.\n**C) 36 kJ**: matches.\n"
            "**D) 48 kJ**: double counts.\n\n")


@pytest.mark.parametrize("answer,letter", [
    # Explicit statements; the last one wins.
    ("The answer is (B).", "B"),
    ("Answer: C", "C"),
    (r"\boxed{A}", "A"),
    (r"Final answer: $\boxed{\text{(D)}}$", "D"),
    ("The answer is: **B**", "B"),
    ("**Final Answer: B**", "B"),
    ("The correct answer is\n\n**(C)**", "C"),
    ("answer: (a)", "A"),
    ("Option C is correct.", "C"),
    ("C is the correct answer", "C"),
    ("I first thought A, but the answer is C.", "C"),
    (r"At first \boxed{B}; on reflection the answer is D.", "D"),
    (r"The answer is B. Wait, no: \boxed{D}", "D"),
    ("The answer is A. Hmm, no: the answer is C.", "C"),
    ("Therefore the correct option is D. Option A is wrong.", "D"),
    ("The answer is C, and A is wrong.", "C"),
    (ANALYSIS + "The answer is **C**.", "C"),
    # "A" as an article, and letters inside words or names, are not choices.
    ("A good choice is C", "C"),
    ("A good pick: C", "C"),
    ("B cells make antibodies, so the answer is C", "C"),
    ("Vitamin D deficiency fits; the best pick is (B)", "B"),
    # Formatting cues.
    ("**D**", "D"),
    ("(c)", "C"),
    ("B) because it is the only stable isomer", "B"),
    ("After all that:\n\nC\n", "C"),
    ("I'd go with C.", "C"),
    # Ambiguous or absent: None, never a guess.
    ("A or B", None),
    ("The answer is A or B.", None),
    ("A or B is correct", None),
    ("Answer: A, B, or C", None),
    ("A) 12 kJ\nB) 24 kJ\nC) 36 kJ\nD) 48 kJ", None),
    (ANALYSIS, None),
    ("The answer is not A", None),
    ("The answer is a bit unclear", None),
    ("I think it is E", None),
    (r"\boxed{42}", None),
    ("", None),
    (None, None),
])
def test_extract_choice_golden(answer, letter):
    assert extract_choice(answer) == letter


def test_letter_set_is_a_parameter():
    assert extract_choice("The answer is (E).", letters="ABCDE") == "E"
    assert extract_choice("The answer is (E).") is None
    assert extract_choice("The answer is C.", letters="AB") is None
    with pytest.raises(ValueError, match="distinct capitals"):
        extract_choice("A", letters="a-d")
    with pytest.raises(ValueError, match="distinct capitals"):
        ChoiceScorer(letters="AAB")


@pytest.mark.parametrize("record,gold,outcome,extracted", [
    (rec("The answer is (B)."), "B", "correct", "B"),
    (rec("The answer is (B)."), "b", "correct", "B"),
    (rec("The answer is (B)."), "(B)", "correct", "B"),
    (rec("The answer is (B)."), "C", "wrong", "B"),
    (rec("A or B"), "A", "no_answer", None),
    (rec("The answer is (B).", truncated=True), "B", "no_answer", None),
    (rec("The answer is (B).", closed=False), "B", "no_answer", None),
    (rec(None, closed=False), "B", "no_answer", None),
    (rec("   "), "B", "no_answer", None),
])
def test_choice_scorer(record, gold, outcome, extracted):
    assert ChoiceScorer().score(record, gold) == Score(outcome, extracted)


def test_answer_in_thinking_is_ignored():
    thinking = "Clearly the answer is B."
    scorer = ChoiceScorer()
    assert scorer.score(rec("The answer is C.", thinking=thinking), "B").outcome == "wrong"
    assert scorer.score(rec("I am not sure.", thinking=thinking), "B").outcome == "no_answer"


@pytest.mark.parametrize("gold", ["E", "AB", "", "the second"])
def test_gold_outside_the_letter_set_is_a_data_error(gold):
    with pytest.raises(DataError, match="option letters"):
        ChoiceScorer().score(rec("The answer is (B)."), gold)
