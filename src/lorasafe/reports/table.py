"""The study's results table: one row per variant, as printed and as written to Markdown.

Must not import torch or matplotlib.
"""

from __future__ import annotations

from typing import Any

COLUMNS = (
    ("variant", "label"), ("method", "method"), ("lr", "learning_rate"), ("trainable params", "trainable_params"),
    ("safety", "safety"), ("refused", "refusal"), ("invalid", "invalid_rate"), ("reasoning", "reasoning"),
    ("over-refusal", "over_refusal"), ("truncated", "truncated_rate"), ("train s", "train_wall_s"),
    ("eval s", "eval_wall_s"),
)


def fmt(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key == "trainable_params":
        return f"{value:,}"
    if key == "learning_rate":
        return f"{value:g}"
    if key.endswith("_wall_s"):
        return f"{value:.1f}"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def cell(row: dict[str, Any], key: str) -> str:
    text = fmt(key, row.get(key))
    half = row.get(f"{key}_ci95")
    return f"{text} ± {half:.3f}" if half is not None else text  # mean ± 95% interval over seeds


def table_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    return [[cell(r, k) for _, k in COLUMNS] for r in rows]


def markdown_table(rows: list[dict[str, Any]]) -> str:
    head = "| " + " | ".join(h for h, _ in COLUMNS) + " |"
    sep = "|" + "|".join("---" if i < 2 else "---:" for i in range(len(COLUMNS))) + "|"
    body = ["| " + " | ".join(cells) + " |" for cells in table_rows(rows)]
    return "\n".join([head, sep, *body])


def rich_table(rows: list[dict[str, Any]], title: str) -> Any:
    from rich.table import Table

    t = Table(title=title)
    for i, (h, _) in enumerate(COLUMNS):
        t.add_column(h, justify="left" if i < 2 else "right")
    for cells in table_rows(rows):
        t.add_row(*cells)
    return t
