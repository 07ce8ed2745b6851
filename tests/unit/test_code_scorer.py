"""Golden tests for code extraction and HumanEval-style scoring in the sandbox."""

from __future__ import annotations

import os

import pytest

from lorasafe.errors import DataError, SandboxUnavailable
from lorasafe.scoring import sandbox
from lorasafe.scoring.code import CodeScorer, build_program, build_programs, extract_code, run_tests
from lorasafe.scoring.sandbox import Isolation, SandboxLimits, isolation

# CI must have bwrap (the Makefile installs it): there a missing sandbox fails rather than skips.
needs_sandbox = pytest.mark.skipif(isolation().kind != "bwrap" and not os.environ.get("CI"),
                                   reason=f"no kernel sandbox here: {isolation().detail}")

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


@needs_sandbox
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


@needs_sandbox
@pytest.mark.parametrize("answer,problem", [
    (fenced("def add(a, b):\n    return a - b"), ADD),
    (fenced("    return text == text"), PALINDROME),
    (fenced("def unique(xs):\n    return xs"), UNIQUE),
    (fenced("def add(a, b)\n    return a + b"), ADD),  # a syntax error
])
def test_broken_solutions_are_wrong(answer, problem):
    score = CodeScorer().score(rec(answer), problem)
    assert (score.outcome, score.sandbox) == ("wrong", "failed") and score.reason


@needs_sandbox
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


def test_each_side_gets_the_prompt_helpers_and_only_the_tests_get_the_tests():
    programs = build_programs("def find_root(xs):\n    return 0.0", ROOT)
    assert programs.solution.startswith("import math") and "def poly(" in programs.solution
    assert programs.solution.count("def find_root(") == 1 and "check" not in programs.solution
    assert programs.tests.startswith("import math") and "def poly(" in programs.tests
    assert "def find_root" not in programs.tests and "def check(candidate)" in programs.tests
    assert programs.entry_point == "find_root"


@pytest.mark.parametrize("build", [build_program, build_programs])
def test_problem_without_tests_is_a_data_error(build):
    with pytest.raises(DataError, match="test"):
        build("x = 1", {"prompt": "", "entry_point": "f"})


def problem(test, entry="f"):
    return {"prompt": f"def {entry}(*args):\n    \"\"\"Stub.\"\"\"\n", "test": test, "entry_point": entry}


@needs_sandbox
@pytest.mark.parametrize("value", [
    "None", "True", "-7", "10 ** 5000", "0.1", "float('inf')", "-0.0", "3 + 4j", "'text'", "b'\\x00\\xff'",
    "[1, [2.5, 'x']]", "(1, (2,))", "{'a': 1, (1, 2): [3]}", "{1, 2}", "frozenset({'x'})", "[]", "{}",
])
def test_plain_values_cross_exactly(value):
    # The tests compare with the same expression evaluated on their side, type included.
    test = (f"def check(candidate):\n    got = candidate()\n    want = {value}\n"
            "    assert type(got) is type(want) and (got == want or got != got), (got, want)\n")
    score = CodeScorer().score(rec(fenced(f"def f():\n    return {value}")), problem(test))
    assert (score.outcome, score.sandbox) == ("correct", "passed"), score.reason


@needs_sandbox
def test_tuple_and_list_stay_different_as_in_the_reference():
    test = "def check(candidate):\n    assert candidate() == (1, 2)\n"
    assert CodeScorer().score(rec(fenced("def f():\n    return [1, 2]")), problem(test)).outcome == "wrong"


@needs_sandbox
@pytest.mark.parametrize("returned,kind", [
    ("iter([1, 2])", "builtins.list_iterator"), ("range(3)", "builtins.range"),
    ("__import__('fractions').Fraction(1, 2)", "fractions.Fraction"),
])
def test_values_that_are_not_plain_data_are_wrong_and_named(returned, kind):
    test = "def check(candidate):\n    assert list(candidate()) == [1, 2]\n"
    score = CodeScorer().score(rec(fenced(f"def f():\n    return {returned}")), problem(test))
    assert (score.outcome, score.sandbox) == ("wrong", "failed") and kind in score.reason


@needs_sandbox
def test_mbpp_style_tests_call_the_solution_by_name_with_arguments():
    test = ("import math\n\ndef check(candidate):\n    assert is_even(4) == True\n"
            "    assert math.isclose(halve(n=3), 1.5)\n    pass\n")
    code = "def is_even(n):\n    return n % 2 == 0\n\ndef halve(n):\n    return n / 2"
    score = CodeScorer().score(rec(fenced(code)), problem(test, entry="is_even"))
    assert (score.outcome, score.sandbox) == ("correct", "passed"), score.reason


@needs_sandbox
@pytest.mark.parametrize("code,reason", [
    ("def f():\n    raise ValueError('no')", "f raised ValueError: no"),
    ("import os\ndef f():\n    os._exit(0)", "the solution's process exited with status 0"),
    ("def f():\n    return 1\ndel f", "the solution defines no function 'f'"),
    ("def f(:\n    pass", "the solution's process exited with status 1 (SyntaxError"),
])
def test_the_reason_says_why_it_is_not_a_pass(code, reason):
    score = CodeScorer().score(rec(fenced(code)), problem("def check(candidate):\n    assert candidate() == 1\n"))
    assert score.outcome == "wrong" and reason in score.reason, score.reason
    assert "(tests.py line 4: assert candidate() == 1)" in score.reason


@needs_sandbox
@pytest.mark.parametrize("test,reason", [
    ("def check(candidate):\n    pass\n", "the tests never called the solution"),
    ("def check(candidate):\n    assert candidate(lambda: 1) == 1\n", "the tests passed a value of type builtins.function"),
    ("def check(candidate)\n    pass\n", "the tests do not load: SyntaxError"),
])
def test_tests_that_cannot_prove_anything_are_an_error(test, reason):
    score = CodeScorer().score(rec(fenced("def f(*a):\n    return 1")), problem(test))
    assert (score.outcome, score.sandbox) == ("wrong", "error") and reason in score.reason, score.reason


@needs_sandbox
def test_a_pass_is_the_tests_verdict_with_both_sandboxes_reported():
    ran = run_tests(build_programs("def add(a, b):\n    return a + b", ADD), SandboxLimits(timeout_s=5))
    assert (ran.status, ran.reason) == ("passed", "")
    assert ran.tests.isolation == ran.solution.isolation == "bwrap" and ran.tests.returncode == 0


@needs_sandbox
def test_what_a_stopped_solution_printed_before_answering_is_reported():
    # A thread that outlives the call keeps the solution's process up after the tests end, so it is
    # killed rather than exiting (which would flush): its printing reaches us only if flushed first.
    code = ("import threading, time\nprint('loaded')\n"
            "threading.Thread(target=time.sleep, args=(30,)).start()\n"
            "def add(a, b):\n    print('called', a, b)\n    return 0")
    ran = run_tests(build_programs(code, ADD), SandboxLimits(timeout_s=10))
    assert ran.status == "failed" and ran.solution.stopped, ran
    assert ran.solution.stdout.split() == ["loaded", "called", "2", "3"]


def test_without_a_sandbox_scoring_refuses_unless_unsafe(monkeypatch):
    monkeypatch.setattr(sandbox, "isolation", lambda: Isolation("none", "bubblewrap (`bwrap`) is not installed"))
    answer = rec(fenced("def add(a, b):\n    return a + b"))
    with pytest.raises(SandboxUnavailable, match="scoring.code.unsafe: true"):
        CodeScorer().score(answer, ADD)
    score = CodeScorer(unsafe=True).score(answer, ADD)
    assert (score.outcome, score.sandbox) == ("correct", "passed")
