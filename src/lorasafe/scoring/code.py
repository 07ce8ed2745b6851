"""Code-benchmark scorer (HumanEval/MBPP style) on the answer part (after the thinking).

Owns finding the program in an answer (`extract_code`), splitting a problem into what the
solution's process and the tests' process run (`build_programs`), and the harness that makes a pass
something the tests report rather than something the solution claims (`run_tests`, `CodeScorer`).
Starting processes is `sandbox`'s job. Must not import torch.

Threat model: the solution is hostile, knows this file and controls its whole process: it can exit
with any status at any moment (`os._exit(0)`, `sys.exit`, atexit, trace or `__del__` hooks), patch
anything (`sys.exit`, `traceback`, builtins) and read every object, frame, descriptor and byte of
memory there. So nothing it could forge lives in its process:

- the solution and the tests run in two sandboxes (`sandbox.start`), joined only by two pipes. The
  tests call the solution's functions through proxies; each call and each answer crosses as data;
- only the tests' process holds the verdict pipe. It writes the verdict after `check` returned or
  raised, and a pass counts only if that verdict says passed, the tests' process exited 0 within
  the time limit, and the tests called the solution at least once.
The solution's exit status means nothing. No secret is needed, and none would help: a secret in
the solution's process would be readable there, while the test code, its expected values and the
verdict pipe never enter that process, so no frame walk or /proc read can find them. With
`unsafe=True` on a machine without bwrap, both run as plain processes of the same user, and the
solution could reach the tests' process: there the proof holds only against the exit tricks.

Equality rule: a value crosses from the solution only as plain data, meaning None, bool, int, float,
complex, str, bytes and list, tuple, dict, set, frozenset of those, each of exactly that built-in
type (no subclasses). The tests then compare with Python's built-in equality, as the reference
harness does for what the reference solutions return (all 164 HumanEval ones are plain). Anything
else (an object equal to everything, an int subclass, a generator) makes the item `wrong`, with the
type in the reason. Names the tests use but do not define (MBPP asserts call the function by name)
are proxied the same way, so a test that builds an object of a class the solution defines (a few
MBPP items) cannot cross the boundary and is wrong, with that reason.

Same outcome vocabulary as `exact.py`: a cut-off output, an empty answer or one without
recognisable code is `no_answer`, never silently dropped; the test status and its reason are kept
beside it so a report can tell a failed test from a timeout or a broken harness.
"""

from __future__ import annotations

import ast
import json
import os
import re
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from typing import Literal

from lorasafe.errors import DataError
from lorasafe.scoring.exact import Score
from lorasafe.scoring.sandbox import SandboxLimits, SandboxResult, start

TestStatus = Literal["passed", "failed", "timeout", "error"]

# A fence may be indented (inside a list item); the closing fence must start its own line so
# backticks inside the code do not end the block.
_FENCE = re.compile(r"^[ \t]*```([^\n`]*)\n(.*?)\n[ \t]*```", re.DOTALL | re.MULTILINE)
_PYTHON_TAGS = {"", "python", "python3", "py"}
_PROBLEM_KEYS = ("prompt", "test", "entry_point")
_VERDICT_BYTES = 64 * 1024
_GONE_GRACE_S = 2.0  # how long a solution that closed its pipes gets to finish exiting

# Plain data <-> JSON, in both processes. Decoding builds only exact built-in types, so whatever the
# solution's process sends, the tests never hold one of its objects.
_CODEC = r'''
import json
class NotPlain(TypeError):
    pass
PLAIN = {type(None), bool, int, float, str}
TAGGED = {tuple: "tuple", set: "set", frozenset: "frozenset"}
BUILD = {"tuple": tuple, "set": set, "frozenset": frozenset}
def encode(value, depth=0):
    kind = type(value)
    if depth > 100:
        raise NotPlain("a value nested deeper than 100 levels")
    if kind in PLAIN:
        return value
    if kind is list:
        return [encode(item, depth + 1) for item in value]
    if kind in TAGGED:
        return {TAGGED[kind]: [encode(item, depth + 1) for item in value]}
    if kind is dict:
        return {"dict": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]}
    if kind is bytes:
        return {"bytes": value.hex()}
    if kind is complex:
        return {"complex": [value.real, value.imag]}
    raise NotPlain(f"a value of type {kind.__module__}.{kind.__qualname__}")
def decode(data):
    if type(data) is list:
        return [decode(item) for item in data]
    if type(data) is not dict:
        return data
    (tag, body), = data.items()
    if tag == "dict":
        return {decode(k): decode(v) for k, v in body}
    if tag == "bytes":
        return bytes.fromhex(body)
    if tag == "complex":
        real, imag = body
        return complex(float(real), float(imag))
    return BUILD[tag](decode(item) for item in body)
'''

# The solution's side (untrusted: the solution may rewrite all of it). Loads the solution as module
# `solution`, then answers each call read from argv[1] on argv[2].
_SOLUTION_SIDE = _CODEC + r'''
import os, sys, types
sys.set_int_max_str_digits(0)
calls, answers = os.fdopen(int(sys.argv[1]), "rb"), os.fdopen(int(sys.argv[2]), "wb")
solution = types.ModuleType("solution")
solution.__file__ = "solution.py"
sys.modules["solution"] = solution
exec(compile(SOURCE, "solution.py", "exec"), solution.__dict__)
def describe(exc):
    try:
        return f"{type(exc).__name__}: {exc}"[:500]
    except Exception:
        return type(exc).__name__
def answer(request):
    function = getattr(solution, request["name"], None)
    if not callable(function):
        return {"raised": f"NameError: the solution defines no function {request['name']!r}"}
    try:
        value = function(*decode(request["args"]), **{k: decode(v) for k, v in request["kwargs"].items()})
    except Exception as exc:
        return {"raised": describe(exc)}
    try:
        return {"value": encode(value)}
    except NotPlain as exc:
        return {"refused": str(exc)}
def flush_output():
    # The solution is killed once the tests end, which loses what its buffered stdout/stderr still
    # hold; flushed before each answer, what it printed up to that answer is always reported.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
for line in calls:
    reply = json.dumps(answer(json.loads(line))).encode() + b"\n"
    flush_output()
    answers.write(reply)
    answers.flush()
'''

# The tests' side (trusted: benchmark code). Runs TESTS with the solution's functions replaced by
# proxies, and writes the one verdict on argv[1] once `check` has returned or raised.
_TEST_SIDE = _CODEC + r'''
import ast, builtins, linecache, os, sys, traceback
sys.set_int_max_str_digits(0)
verdict = os.fdopen(int(sys.argv[1]), "w")
calls, answers = os.fdopen(int(sys.argv[2]), "wb"), os.fdopen(int(sys.argv[3]), "rb")
LIMIT, count = 16 * 1024 * 1024, 0
linecache.cache["tests.py"] = (len(TESTS), None, TESTS.splitlines(True), "tests.py")
class SolutionFailed(Exception):
    """The solution raised, returned something that is not plain data, or stopped answering."""
class SolutionGone(SolutionFailed):
    """The solution's process ended (or closed its pipes) before answering."""
class TestsBroken(Exception):
    """The tests cannot run as written."""
def ask(name, args, kwargs):
    try:
        request = {"name": name, "args": [encode(a) for a in args],
                   "kwargs": {k: encode(v) for k, v in kwargs.items()}}
    except NotPlain as exc:
        raise TestsBroken(f"the tests passed {exc} to {name}; only plain data crosses") from None
    try:
        calls.write(json.dumps(request).encode() + b"\n")
        calls.flush()
    except OSError:
        raise SolutionGone(f"the solution's process had ended before call {count} ({name})") from None
    line = answers.readline(LIMIT + 1)
    if not line.endswith(b"\n"):
        raise SolutionGone(f"the solution's process ended during call {count} ({name})")
    try:
        (kind, body), = json.loads(line).items()
        value = decode(body) if kind == "value" else str(body)[:500]
    except Exception:
        raise SolutionFailed(f"call {count} ({name}) got an answer that is not plain data") from None
    if kind == "value":
        return value
    if kind == "refused":
        raise SolutionFailed(f"{name} returned {value}; only plain built-in values are compared")
    raise SolutionFailed(f"{name} raised {value}")
def remote(name):
    def call(*args, **kwargs):
        global count
        count += 1
        return ask(name, args, kwargs)
    call.__name__ = call.__qualname__ = name
    return call
def where(exc):
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == "tests.py"]
    return f" (tests.py line {frames[-1].lineno}: {frames[-1].line})" if frames else ""
def report(status, reason="", gone=False):
    verdict.write(json.dumps({"status": status, "reason": reason[:2000], "calls": count, "gone": gone}))
    verdict.close()
def main():
    namespace = {"__name__": "tests", "__builtins__": builtins}
    try:
        exec(compile(TESTS, "tests.py", "exec"), namespace)
    except Exception as exc:
        raise TestsBroken(f"the tests do not load: {type(exc).__name__}: {exc}") from None
    used = {node.id for node in ast.walk(ast.parse(TESTS)) if isinstance(node, ast.Name)}
    for name in sorted(used - set(namespace) - set(dir(builtins))) + [ENTRY]:
        namespace[name] = remote(name)
    if not callable(namespace.get("check")):
        raise TestsBroken("the tests define no check(candidate) function")
    namespace["check"](namespace[ENTRY])
try:
    main()
except TestsBroken as exc:
    report("error", str(exc))
except SolutionFailed as exc:
    report("failed", str(exc) + where(exc), isinstance(exc, SolutionGone))
except AssertionError as exc:
    report("failed", "a test assertion failed" + where(exc) + (f": {exc}" if str(exc) else ""))
except BaseException as exc:
    report("failed", f"{type(exc).__name__}: {exc}"[:500] + where(exc))
else:
    report("passed" if count else "error", "" if count else "the tests never called the solution")
'''


@dataclass(frozen=True)
class CodeScore(Score):
    """A `Score` whose `extracted` is the code that ran, plus how its tests ended and why."""

    sandbox: TestStatus | None = None  # None when nothing ran (no_answer)
    reason: str | None = None  # why it is not a pass, as the tests or the sandbox reported it


@dataclass(frozen=True)
class Programs:
    """What each side runs: the solution (prompt context + answer) and the tests (context + tests)."""

    solution: str
    tests: str
    entry_point: str


@dataclass(frozen=True)
class TestRun:
    """How one problem's tests ended: `status` is "passed" only when proven (module docstring)."""

    __test__ = False  # not a pytest class

    status: TestStatus
    reason: str
    tests: SandboxResult
    solution: SandboxResult


def extract_code(answer: str | None) -> str | None:
    """The program in an answer: the last ```python (or untagged) fenced block, else the whole
    answer if it is Python, else None. Give it the answer only: code in the thinking never counts.
    """
    if answer is None or not answer.strip():
        return None
    blocks = [body for tag, body in _FENCE.findall(answer) if tag.strip().lower() in _PYTHON_TAGS]
    if blocks:
        return blocks[-1] if blocks[-1].strip() else None
    try:
        tree = ast.parse(answer)
    except (SyntaxError, ValueError):
        return None
    # A lone word ("Yes") or a bare expression parses too, but is not a program.
    if all(isinstance(node, ast.Expr) for node in tree.body):
        return None
    return answer


def build_programs(code: str, problem: Mapping[str, str]) -> Programs:
    """The solution's program and the tests' program for `code` answering `problem`.

    Code that defines the entry point itself replaces the prompt's function but keeps the prompt's
    imports and helpers (HumanEval/10, /32 and /38 call helpers defined only in the prompt), placed
    first so the answer's own versions win; any other code completes the prompt. The tests get the
    prompt's imports and helpers too (HumanEval/32 and /38 test with them), never the answer's.
    """
    _validate(problem)
    prompt, entry = problem["prompt"], problem["entry_point"]
    head = _context(prompt, entry) if _defines(code, entry) else prompt
    return Programs(f"{head}\n{code}\n", f"{_context(prompt, entry)}\n\n{problem['test']}\n", entry)


def build_program(code: str, problem: Mapping[str, str]) -> str:
    """The single program the reference HumanEval harness runs (solution, tests, `check(...)`), whose
    exit status it reads as the verdict. `CodeScorer` does not run it (see the module docstring);
    it is the baseline in bench/sandbox_cost.py and a way to check a benchmark's own tests."""
    _validate(problem)
    prompt, entry = problem["prompt"], problem["entry_point"]
    head = _context(prompt, entry) if _defines(code, entry) else prompt
    return f"{head}\n{code}\n\n{problem['test']}\n\ncheck({entry})\n"


def run_tests(programs: Programs, limits: SandboxLimits | None = None, *,
              unsafe: bool = False) -> TestRun:
    """Run the tests against the solution, each in its own sandbox, and read the tests' verdict.

    Raises `SandboxUnavailable` when there is no isolation and `unsafe` is false.
    """
    limits = limits or SandboxLimits()
    with ExitStack() as stack:
        fds = stack.enter_context(_Pipes())
        calls_r, calls_w, answers_r, answers_w, verdict_r, verdict_w = fds.open(3)
        solution = stack.enter_context(start(
            f"SOURCE = {programs.solution!r}\n{_SOLUTION_SIDE}", limits, module="harness",
            argv=[str(calls_r), str(answers_w)], pass_fds=(calls_r, answers_w), unsafe=unsafe))
        tests = stack.enter_context(start(
            f"TESTS = {programs.tests!r}\nENTRY = {programs.entry_point!r}\n{_TEST_SIDE}", limits,
            module="harness", argv=[str(verdict_w), str(calls_w), str(answers_r)],
            pass_fds=(verdict_w, calls_w, answers_r), unsafe=unsafe))
        fds.close(calls_r, calls_w, answers_r, answers_w, verdict_w)  # EOF must reach each side
        tests_ended = tests.finish()
        verdict = _verdict(verdict_r)
        # A solution that closed its pipes is ending by itself, but its sandbox can take a moment to tear
        # down on a loaded machine: wait for that (bounded) so its exit status is reported, not "stopped".
        # One still answering when the tests ended is stopped now.
        gone = verdict is not None and verdict.get("gone") is True
        solution_ended = solution.finish(deadline=time.monotonic() + (_GONE_GRACE_S if gone else 0.0))
    return _judge(verdict, tests_ended, solution_ended, limits)


class CodeScorer:
    """Scores a generation record against a HumanEval-style problem by running its tests.

    `unsafe=True` is the explicit opt-in to run code where no kernel sandbox is available (the
    config key `scoring.code.unsafe`); without it such a machine raises `SandboxUnavailable`.
    """

    name = "code"

    def __init__(self, limits: SandboxLimits | None = None, *, unsafe: bool = False) -> None:
        self.limits = limits or SandboxLimits()
        self.unsafe = unsafe

    def score(self, record: Mapping[str, object], problem: Mapping[str, str]) -> CodeScore:
        answer = record.get("answer")
        if record.get("truncated") or record.get("think_closed") is False:
            return CodeScore("no_answer", None)
        code = extract_code(answer if isinstance(answer, str) else None)
        if code is None:
            return CodeScore("no_answer", None)
        ran = run_tests(build_programs(code, problem), self.limits, unsafe=self.unsafe)
        return CodeScore("correct" if ran.status == "passed" else "wrong", code, ran.status,
                         ran.reason or None)


class _Pipes(AbstractContextManager):
    """Pipe ends this process holds, each closed exactly once (a second close could hit a
    descriptor another thread has opened since)."""

    def __init__(self) -> None:
        self._open: list[int] = []

    def open(self, count: int) -> list[int]:
        for _ in range(count):
            self._open += os.pipe()
        return list(self._open)

    def close(self, *fds: int) -> None:
        for fd in fds:
            self._open.remove(fd)
            os.close(fd)

    def __exit__(self, *exc_info) -> None:
        self.close(*self._open)


def _verdict(fd: int) -> dict | None:
    """The tests' verdict, or None when they wrote none (or garbage): read once both have ended."""
    os.set_blocking(fd, False)
    try:
        data = os.read(fd, _VERDICT_BYTES)
        verdict = json.loads(data)
    except (OSError, ValueError):
        return None
    ok = isinstance(verdict, dict) and verdict.get("status") in ("passed", "failed", "error")
    return verdict if ok and isinstance(verdict.get("reason"), str) else None


def _judge(verdict: dict | None, tests: SandboxResult, solution: SandboxResult,
           limits: SandboxLimits) -> TestRun:
    if tests.status == "timeout":
        status, reason = "timeout", f"the tests did not finish within {limits.timeout_s:g} s"
    elif verdict is None or tests.returncode != 0:
        said = (tests.stderr.strip().splitlines() or [f"exit status {tests.returncode}"])[-1]
        status, reason = "error", f"the tests' process ended without a verdict ({said})"
    else:
        status, reason = verdict["status"], verdict["reason"]
    if status == "passed":
        return TestRun("passed", "", tests, solution)
    # How the solution ended matters when it stopped answering; otherwise it ended because the
    # tests closed its pipe, which says nothing.
    gone = verdict is None or verdict.get("gone") is True or status != "failed"
    return TestRun(status, "; ".join(filter(None, [reason, gone and _ending(solution)])), tests,
                   solution)


def _ending(solution: SandboxResult) -> str:
    """How the solution's process ended, when it ended by itself rather than being stopped."""
    if solution.stopped:  # still running when the tests ended
        return ""
    code = solution.returncode if solution.returncode >= 0 else 128 - solution.returncode
    how = f"was killed by signal {code - 128}" if code > 128 else f"exited with status {code}"
    last = (solution.stderr.strip().splitlines() or [""])[-1]
    return f"the solution's process {how}" + (f" ({last[:300]})" if last else "")


def _validate(problem: Mapping[str, str]) -> None:
    missing = [key for key in _PROBLEM_KEYS if not isinstance(problem.get(key), str)]
    if missing:
        raise DataError(f"A code problem needs string fields {', '.join(_PROBLEM_KEYS)}; this one "
                        f"lacks {', '.join(missing)} (keys present: {', '.join(sorted(problem))}). "
                        "Fix the benchmark file or its loader so every problem has all three.")


def _defines(code: str, entry: str) -> bool:
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return False  # e.g. an indented function body: a completion of the prompt
    return any(_is_entry(node, entry) for node in tree.body)


def _context(prompt: str, entry: str) -> str:
    """The prompt's top-level statements except the entry point's own definition."""
    try:
        tree = ast.parse(prompt)
    except (SyntaxError, ValueError):
        return ""  # a prose prompt (MBPP) has no imports or helpers to keep
    kept = [ast.unparse(node) for node in tree.body
            if not _is_entry(node, entry)
            and not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))]
    return "\n\n".join(kept)


def _is_entry(node: ast.stmt, entry: str) -> bool:
    return isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == entry
