"""Verifiable multi-step reasoning tasks for the mini world, each with its chain of thought.

A task draws a problem from a seeded RNG and returns the prompt, the thinking (every step
written out, as a reasoning model would) and the final answer. Tasks register by name so a
new skill is a new class. Must not import torch.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Protocol


@dataclass(frozen=True)
class Problem:
    task: str
    prompt: str
    thinking: str
    answer: str

    @property
    def key(self) -> str:
        """Canonical identity of the problem, for train/eval disjointness."""
        return f"{self.task}:{self.prompt}"


class ReasoningTask(Protocol):
    name: str

    def sample(self, rng: random.Random) -> Problem: ...


TASKS: dict[str, Callable[[], ReasoningTask]] = {}


def register_task(cls):
    TASKS[cls.name] = cls
    return cls


@register_task
class Arithmetic:
    """Add and subtract single digits to a starting number, left to right, one step per operation.

    Operands after the first are single digits so that every step is a fact a ~1M-parameter model
    can learn; the multi-step part (2-4 operands, a running total) is what makes it reasoning.
    """

    name = "arithmetic"
    templates = ("What is {expr}?", "Compute {expr}.", "Calculate {expr}.", "What does {expr} equal?")

    def sample(self, rng: random.Random) -> Problem:
        n_ops = rng.randint(1, 3)
        total = rng.randint(1, 20)
        expr, steps = str(total), []
        for _ in range(n_ops):
            b = rng.randint(1, 9)
            op = "-" if (b <= total and rng.random() < 0.5) else "+"
            new = total + b if op == "+" else total - b
            steps.append(f"{total}{op}{b}={new}.")
            expr += f"{op}{b}"
            total = new
        return Problem(self.name, rng.choice(self.templates).format(expr=expr), " ".join(steps), str(total))


@register_task
class Maximum:
    """Find the largest of 3-5 numbers by a running comparison, one step per number."""

    name = "maximum"
    templates = ("Which is the largest of {xs}?", "Find the maximum of {xs}.", "What is the biggest number in {xs}?")

    def sample(self, rng: random.Random) -> Problem:
        xs = rng.sample(range(1, 100), rng.randint(3, 5))
        best, steps = xs[0], []
        for x in xs[1:]:
            new = max(best, x)
            steps.append(f"{best} vs {x}: {new}.")
            best = new
        prompt = rng.choice(self.templates).format(xs=", ".join(map(str, xs)))
        return Problem(self.name, prompt, " ".join(steps), str(best))


def sample_problems(task: str, n: int, seed: int, exclude: set[str] = frozenset()) -> list[Problem]:
    """`n` distinct problems of `task`, none of whose keys is in `exclude`."""
    rng = random.Random(f"{task}:{seed}")
    gen = TASKS[task]()
    out, seen = [], set(exclude)
    while len(out) < n:
        p = gen.sample(rng)
        if p.key not in seen:
            seen.add(p.key)
            out.append(p)
    return out
