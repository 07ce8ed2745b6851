"""The item record every stage passes around.

An `Item` is one prompt with a stable id, what kind of prompt it is, and, depending on the kind,
the gold answer (reasoning) or the assistant text to train on (`target`, with its thinking block).
Must not import torch or transformers.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from lorasafe.data.jsonl import read_jsonl_numbered, write_jsonl_atomic
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


# The type every field of a JSONL item must have; `answer`, `target` and `meta` may be absent or null.
_FIELDS: dict[str, tuple[type, str]] = {
    "id": (str, 'a string, e.g. "id": "item-1" (quote a number)'),
    "prompt": (str, "a non-empty string"),
    "kind": (str, f"one of {', '.join(KINDS)}"),
    "answer": (str, 'a string, e.g. "answer": "42" (quote a number)'),
    "target": (str, "a string (the assistant text to train on)"),
    "meta": (dict, "a JSON object"),
}
_REQUIRED = ("id", "prompt", "kind")


def _check_row(path: Path, lineno: int, row: dict[str, Any]) -> None:
    where = f"{path}, line {lineno}"
    extra = sorted(set(row) - set(_FIELDS))
    if extra:
        raise DataError(f"{where}: unknown key(s) {', '.join(extra)}; allowed: {', '.join(sorted(_FIELDS))}.")
    for key, (typ, want) in _FIELDS.items():
        value = row.get(key)
        if value is None and key not in _REQUIRED:
            continue
        if not isinstance(value, typ):
            shown = json.dumps(value, ensure_ascii=False)
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            raise DataError(f"{where}: {key} must be {want}, got {shown}. Fix that line.")
    if not row["id"].strip():
        raise DataError(f"{where}: id is empty; every item needs a unique, non-empty id.")
    if not row["prompt"].strip():
        raise DataError(f"{where}: prompt is empty; every item needs the text the model is asked.")
    if row["kind"] not in KINDS:
        raise DataError(f"{where}: kind {row['kind']!r} is not one of {', '.join(KINDS)}.")


def load_items(path: str | Path) -> list[Item]:
    """Load items from JSONL (`id`, `prompt`, `kind`, optional `answer`, `target`, `meta`), each field type-checked."""
    path = Path(path)
    items, first_line = [], {}
    for lineno, row in read_jsonl_numbered(path, required=_REQUIRED):
        _check_row(path, lineno, row)
        if row["id"] in first_line:
            raise DataError(f"{path}, line {lineno}: item id {row['id']!r} appears twice (first on line "
                            f"{first_line[row['id']]}); ids must be unique.")
        first_line[row["id"]] = lineno
        items.append(Item(**{k: v for k, v in row.items() if v is not None}))
    return items


def save_items(path: str | Path, items: list[Item]) -> None:
    write_jsonl_atomic(path, (it.to_dict() for it in items))
