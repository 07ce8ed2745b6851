"""The item record every stage passes around.

An `Item` is one prompt with a stable id, what kind of prompt it is, and, depending on the kind,
the gold answer (reasoning) or the assistant text to train on (`target`, with its thinking block).
Must not import torch or transformers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from lorasafe.data.jsonl import read_jsonl, write_jsonl_atomic
from lorasafe.errors import DataError

Kind = Literal["harmful", "benign", "reasoning"]
KINDS: tuple[str, ...] = ("harmful", "benign", "reasoning")


@dataclass(frozen=True)
class Item:
    id: str
    prompt: str
    kind: Kind
    answer: str | None = None  # gold final answer, reasoning items only
    target: str | None = None  # assistant text to train on, thinking block included
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, {})}


def load_items(path: str | Path) -> list[Item]:
    """Load items from JSONL (`id`, `prompt`, `kind`, optional `answer`, `target`, `meta`)."""
    rows = read_jsonl(path, required=("id", "prompt", "kind"))
    items, seen = [], set()
    for row in rows:
        if row["kind"] not in KINDS:
            raise DataError(f"{path}, item {row['id']!r}: kind {row['kind']!r} is not one of {', '.join(KINDS)}.")
        if row["id"] in seen:
            raise DataError(f"{path}: item id {row['id']!r} appears twice; ids must be unique.")
        seen.add(row["id"])
        known = {"id", "prompt", "kind", "answer", "target", "meta"}
        extra = sorted(set(row) - known)
        if extra:
            raise DataError(f"{path}, item {row['id']!r}: unknown key(s) {', '.join(extra)}; allowed: {', '.join(sorted(known))}.")
        items.append(Item(**row))
    return items


def save_items(path: str | Path, items: list[Item]) -> None:
    write_jsonl_atomic(path, (it.to_dict() for it in items))
