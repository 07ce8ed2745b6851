"""Golden tests for code extraction and HumanEval-style scoring in the sandbox."""

from __future__ import annotations

import pytest

from lorasafe.errors import DataError
from lorasafe.scoring.code import CodeScorer, build_program, extract_code
from lorasafe.scoring.sandbox import SandboxLimits

ADD = {
    "prompt": 'def add(a: int, b: int) -> int:\n    """Return the sum of a and b."""\n',
    "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n",
    "entry_point": "add",
}
PALINDROME = {
    "prompt": 'def is_palindrome(text: str) -> bool:\n    """True if text reads the same backwards."""\n',
    "test": ("def check(candidate):\n    assert candidate('level')\n    assert candidate('')\n"
             "    assert not candidate('ab')\n"),
    "entry_point": "is_palindrome",
}
# Like HumanEval/32: the prompt brings an import and a helper the answer may not repeat.
ROOT = {
    "prompt": ("import math\n\n\ndef poly(xs: list, x: float) -> float:\n"
               "    return sum(c * math.pow(x, i) for i, c in enumerate(xs))\n\n\n"
               "def find_root(xs: list) -> float:\n"
               '    """A root of the linear polynomial xs[0] + xs[1] * x."""\n'),
    "test": "def check(candidate):\n    assert abs(poly([2, -4], candidate([2, -4]))) < 1e-9\n",
    "entry_point": "find_root",
}
UNIQUE = {
    "prompt": "from typing import List\n\n\ndef unique(xs: List[int]) -> List[int]:\n"
              '    """Sorted unique elements."""\n',
    "test": "def check(candidate):\n    assert candidate([3, 1, 3, 2]) == [1, 2, 3]\n",
    "entry_point": "unique",
}


def rec(answer, truncated=False, closed=True, thinking="I will write it."):
    return {"answer": answer, "thinking": thinking, "truncated": truncated, "think_closed": closed}


def fenced(code, tag="python"):
    return f"Here is my solution:\n\n```{tag}\n{code}\n```\n"


@pytest.mark.parametrize("answer,code", [
    (fenced("def f():\n    return 1"), "def f():\n    return 1"),
    (fenced("x = 1", tag=""), "x = 1"),
    (fenced("x = 1", tag="py"), "x = 1"),
    (fenced("x = 1") + "Or better:\n" + fenced("x = 2") + "Done.", "x = 2"),
    (fenced("x = 1") + fenced("echo hi", tag="bash"), "x = 1"),
    ("1. Solution:\n   ```python\n   y = 3\n   ```\n", "   y = 3"),
    (fenced("s = '```'\nprint(s)"), "s = '```'\nprint(s)"),
    ("def f(x):\n    return x + 1\n", "def f(x):\n    return x + 1\n"),
    ("I think the answer is to loop over the list.", None),
    ("Yes", None),
    (fenced("echo hi", tag="bash"), None),
    ("", None),
    ("   \n", None),
    (None, None),
])
def test_extract_code_golden(answer, code):
    assert extract_code(answer) == code


@pytest.mark.parametrize("answer,problem", [
    (fenced("def add(a, b):\n    return a + b"), ADD),
    (fenced("    return text == text[::-1]"), PALINDROME),  # a completion of the prompt
    (fenced("def find_root(xs):\n    return -xs[0] / xs[1]"), ROOT),  # uses the prompt's helper
    (fenced("def unique(xs: List[int]) -> List[int]:\n    return sorted(set(xs))"), UNIQUE),
    (fenced("def add(a, b):\n    return a + b\nif __name__ == '__main__':\n    raise SystemExit(1)"), ADD),
])
def test_correct_solutions_pass(answer, problem):
    score = CodeScorer().score(rec(answer), problem)
    assert (score.outcome, score.sandbox) == ("correct", "passed")
    assert score.extracted == extract_code(answer)


@pytest.mark.parametrize("answer,problem", [
    (fenced("def add(a, b):\n    return a - b"), ADD),
    (fenced("    return text == text"), PALINDROME),
    (fenced("def unique(xs):\n    return xs"), UNIQUE),
    (fenced("def add(a, b)\n    return a + b"), ADD),  # a syntax error
])
def test_broken_solutions_are_wrong(answer, problem):
    score = CodeScorer().score(rec(answer), problem)
    assert (score.outcome, score.sandbox) == ("wrong", "failed")


def test_a_solution_that_never_returns_is_wrong_by_timeout():
    scorer = CodeScorer(SandboxLimits(timeout_s=1, cpu_s=5))
    score = scorer.score(rec(fenced("def add(a, b):\n    while True:\n        pass")), ADD)
    assert (score.outcome, score.sandbox) == ("wrong", "timeout")


@pytest.mark.parametrize("record", [
    rec(fenced("def add(a, b):\n    return a + b"), truncated=True),
    rec(None, closed=False, thinking="def add(a, b):\n    return a + b"),
    rec(""),
    rec("The sum is computed by adding the two numbers."),
    # The thinking held working code, the answer only prose: the thinking never counts.
    rec("As shown above, add them.", thinking=fenced("def add(a, b):\n    return a + b")),
])
def test_no_answer_cases(record):
    score = CodeScorer().score(record, ADD)
    assert (score.outcome, score.extracted, score.sandbox) == ("no_answer", None, None)


def test_program_keeps_prompt_imports_and_helpers_but_not_its_stub():
    program = build_program("def find_root(xs):\n    return 0.0", ROOT)
    assert program.startswith("import math") and "def poly(" in program
    assert program.count("def find_root(") == 1 and program.rstrip().endswith("check(find_root)")


def test_problem_without_tests_is_a_data_error():
    with pytest.raises(DataError, match="test"):
        build_program("x = 1", {"prompt": "", "entry_point": "f"})
