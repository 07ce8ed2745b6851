"""The study's results table: one row per variant, as printed and as written to Markdown.

The harmful prompts' three shares come first, side by side: refused, complied and invalid (they
sum to 1; an invalid output is a broken model, never counted as safe). When a study evaluates more
than one harmful suite, one `refused <suite>` column per suite follows, so a number on a real
benchmark is never averaged away; when its runs name further judges (`judge.also`), a
`refused by <judge>` column follows for each of them: the same outputs, judged otherwise. Likewise
one `over-refusal <suite>` column per benign suite (plain and edgy requests).
Must not import torch or matplotlib.
"""

from __future__ import annotations

from typing import Any

COLUMNS = (
    ("variant", "label"), ("method", "method"), ("lr", "learning_rate"), ("trainable params", "trainable_params"),
    ("refused", "refused"), ("complied", "complied"), ("invalid", "invalid"), ("reasoning", "reasoning"),
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
    """COLUMNS, with per-suite refused columns after `invalid` when the rows carry several harmful suites,
    one per further judge when they carry several judges' verdicts, and per-suite over-refusal columns
    after `over-refusal` when they carry several benign suites."""
    def names(key: str, skip_first: bool = False) -> list[str]:
        return list(dict.fromkeys(s for r in rows for s in list(r.get(key) or {})[int(skip_first):]))

    suites, benign = names("refused_by_suite"), names("over_refusal_by_suite")
    extra = [(f"refused {s}", f"refused_by_suite.{s}") for s in suites] if len(suites) > 1 else []
    extra += [(f"refused by {j}", f"refused_by_judge.{j}") for j in names("refused_by_judge", skip_first=True)]
    over = [(f"over-refusal {s}", f"over_refusal_by_suite.{s}") for s in benign] if len(benign) > 1 else []
    keys = [k for _, k in COLUMNS]
    at, at_over = keys.index("invalid") + 1, keys.index("over_refusal") + 1
    return [*COLUMNS[:at], *extra, *COLUMNS[at:at_over], *over, *COLUMNS[at_over:]]


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


def operating_points(study: Any, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The study's declared criterion applied to its variants: per group of trained variants that differ only
    in the `select_over` settings (e.g. the learning rate), the variant with the best `maximise` among those
    meeting every constraint, or none (`reached` False). Merge variants and the base are not grouped."""
    op = study.operating_point
    groups: dict[str, list[tuple[Any, dict[str, Any]]]] = {}
    for variant, row in zip(study.variants, rows):
        if variant.merge is not None or row.get("method") == "none":
            continue
        key = repr(sorted((k, repr(v)) for k, v in variant.set.items() if k not in op.select_over))
        groups.setdefault(key, []).append((variant, row))
    out = []
    for members in groups.values():
        feasible = [r for _, r in members if all(c.holds(r.get(c.metric)) for c in op.constraints)]
        chosen = max(feasible, key=lambda r: r.get(op.maximise) or 0.0) if feasible else None
        out.append({"variants": [v.label for v, _ in members], "chosen": chosen["label"] if chosen else None,
                    "reached": chosen is not None})
    return out
