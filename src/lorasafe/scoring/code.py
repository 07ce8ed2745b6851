"""Code-benchmark scorer (HumanEval/MBPP style) on the answer part (after the thinking).

Owns two things: finding the program in an answer (`extract_code`) and turning it plus a problem's
tests into one program whose exit status is the verdict (`build_program`, `CodeScorer`). Running
it is `sandbox.run`'s job; nothing here executes code. Must not import torch.

Same outcome vocabulary as `exact.py`: a cut-off output, an empty answer or one without
recognisable code is `no_answer`, never silently dropped; the sandbox status is kept beside it so
a report can tell a wrong answer from a timeout or a refused operation.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from dataclasses import dataclass

from lorasafe.errors import DataError
from lorasafe.scoring.exact import Score
from lorasafe.scoring.sandbox import SandboxLimits, SandboxStatus, run

# A fence may be indented (inside a list item); the closing fence must start its own line so
# backticks inside the code do not end the block.
_FENCE = re.compile(r"^[ \t]*```([^\n`]*)\n(.*?)\n[ \t]*```", re.DOTALL | re.MULTILINE)
_PYTHON_TAGS = {"", "python", "python3", "py"}
_PROBLEM_KEYS = ("prompt", "test", "entry_point")


@dataclass(frozen=True)
class CodeScore(Score):
    """A `Score` whose `extracted` is the code that ran, plus how the sandbox run ended."""

    sandbox: SandboxStatus | None = None  # None when nothing ran (no_answer)


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


def build_program(code: str, problem: Mapping[str, str]) -> str:
    """The program the HumanEval harness would run: solution, then the tests, then the check.

    Code that defines the entry point itself replaces the prompt's function but keeps the prompt's
    imports and helpers (HumanEval/10, /32 and /38 call helpers defined only in the prompt), placed
    first so the answer's own versions win. Any other code completes the prompt.
    """
    missing = [key for key in _PROBLEM_KEYS if not isinstance(problem.get(key), str)]
    if missing:
        raise DataError(f"A code problem needs string fields {', '.join(_PROBLEM_KEYS)}; this one "
                        f"lacks {', '.join(missing)} (keys present: {', '.join(sorted(problem))}). "
                        "Fix the benchmark file or its loader so every problem has all three.")
    prompt, entry = problem["prompt"], problem["entry_point"]
    head = _context(prompt, entry) if _defines(code, entry) else prompt
    return f"{head}\n{code}\n\n{problem['test']}\n\ncheck({entry})\n"


class CodeScorer:
    """Scores a generation record against a HumanEval-style problem by running its tests."""

    name = "code"

    def __init__(self, limits: SandboxLimits | None = None) -> None:
        self.limits = limits or SandboxLimits()

    def score(self, record: Mapping[str, object], problem: Mapping[str, str]) -> CodeScore:
        answer = record.get("answer")
        if record.get("truncated") or record.get("think_closed") is False:
            return CodeScore("no_answer", None)
        code = extract_code(answer if isinstance(answer, str) else None)
        if code is None:
            return CodeScore("no_answer", None)
        result = run(build_program(code, problem), self.limits, as_main=False)
        return CodeScore("correct" if result.status == "passed" else "wrong", code, result.status)


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
