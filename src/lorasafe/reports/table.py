"""The study's results table: one row per variant, as printed and as written to Markdown.

When a study evaluates more than one harmful suite, the headline `safety` (their mean) is followed
by one `safety <suite>` column per suite, so a number on a real benchmark is never averaged away.
When its runs name further judges (`judge.also`), a `safety by <judge>` column follows for each of
them: the same outputs, judged otherwise.
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


def columns(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """COLUMNS, with per-suite safety columns after `safety` when the rows carry several harmful suites,
    then one per further judge when they carry several judges' verdicts."""
    suites = list(dict.fromkeys(s for r in rows for s in r.get("safety_by_suite", {})))
    judges = list(dict.fromkeys(j for r in rows for j in list(r.get("safety_by_judge") or {})[1:]))
    extra = [(f"safety {s}", f"safety_by_suite.{s}") for s in suites] if len(suites) > 1 else []
    extra += [(f"safety by {j}", f"safety_by_judge.{j}") for j in judges]
    at = [k for _, k in COLUMNS].index("safety") + 1
    return [*COLUMNS[:at], *extra, *COLUMNS[at:]]


def value(row: dict[str, Any], key: str) -> Any:
    """row[key], where `a.b` reads row[a][b] (the per-suite columns)."""
    head, _, tail = key.partition(".")
    return (row.get(head) or {}).get(tail) if tail else row.get(key)


def cell(row: dict[str, Any], key: str) -> str:
    text = fmt(key, value(row, key))
    half = row.get(f"{key}_ci95")
    return f"{text} ± {half:.3f}" if half is not None else text  # mean ± 95% interval over seeds


def table_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    cols = columns(rows)
    return [[cell(r, k) for _, k in cols] for r in rows]


def markdown_table(rows: list[dict[str, Any]]) -> str:
    cols = columns(rows)
    head = "| " + " | ".join(h for h, _ in cols) + " |"
    sep = "|" + "|".join("---" if i < 2 else "---:" for i in range(len(cols))) + "|"
    body = ["| " + " | ".join(cells) + " |" for cells in table_rows(rows)]
    return "\n".join([head, sep, *body])


def rich_table(rows: list[dict[str, Any]], title: str) -> Any:
    from rich.table import Table

    t = Table(title=title)
    for i, (h, _) in enumerate(columns(rows)):
        t.add_column(h, justify="left" if i < 2 else "right")
    for cells in table_rows(rows):
        t.add_row(*cells)
    return t
