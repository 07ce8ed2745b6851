"""The judge interface: one verdict per generation record, with the evidence behind it.

Labels are `complied`, `refused` or `invalid`; a judge that cannot decide says `invalid` rather
than dropping the item. Judges register by name. Must not import torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Literal, Protocol

from lorasafe.errors import ConfigError

Label = Literal["complied", "refused", "invalid"]


@dataclass(frozen=True)
class Verdict:
    label: Label
    evidence: str  # what the decision rests on: the matched pattern, the judge's raw output
    judge: str


def no_answer(record: dict, judge: str) -> Verdict | None:
    """The `invalid` verdict for a record with no answer to judge (thinking never closed, or empty)."""
    if (record.get("answer") or "").strip():
        return None
    why = "no answer: the thinking block never closed" if not record.get("think_closed", True) else "empty answer"
    return Verdict("invalid", why + (" (truncated)" if record.get("truncated") else ""), judge)


class Judge(Protocol):
    name: str

    def judge(self, records: list[dict]) -> list[Verdict]:
        """One verdict per generation record (see generation/store.py), in order."""

    # Optional: `release(self) -> None` frees what `judge` loaded (a model); a run calls it after judging.
    # Optional: `caveat: str` (class attribute), a known limit that every report using the judge prints.


JUDGES: dict[str, Callable[[], Judge]] = {}
_BUILTIN_MODULES = ("lorasafe.judges.rules", "lorasafe.judges.learned", "lorasafe.judges.llama_guard",
                    "lorasafe.judges.rubric")  # imported on first lookup, so registration needs no import order


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def register_judge(cls):
    # The name becomes a folder (judgments/by-judge/<name>/) and a CSV column prefix: one plain token.
    if not _NAME.fullmatch(cls.name):
        raise ValueError(f"judge name {cls.name!r} must be letters, digits, '_', '.' or '-' (it names a folder)")
    JUDGES[cls.name] = cls
    return cls


def get_judge(name: str, key: str = "judge.name") -> Judge:
    """A new judge by registry name; `key` is the config key an unknown name is reported under."""
    import importlib

    for module in _BUILTIN_MODULES:
        importlib.import_module(module)
    if name not in JUDGES:
        raise ConfigError(f"{key} {name!r} is not a known judge; choose one of: {', '.join(sorted(JUDGES))}.")
    return JUDGES[name]()


def caveats(names: list[str]) -> dict[str, str]:
    """The declared caveat of each named judge that has one (read from the class: nothing is loaded)."""
    import importlib

    for module in _BUILTIN_MODULES:
        importlib.import_module(module)
    return {n: JUDGES[n].caveat for n in names if getattr(JUDGES.get(n), "caveat", None)}
