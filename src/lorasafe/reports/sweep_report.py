"""`lorasafe report DIR`: every run under DIR -> tidy CSV, the paper-style table, plots, Markdown + HTML.

Owns grouping runs into settings (the axis values minus the seed and the operating point's
`select_over` axes), the declared operating-point choice (sweeps/spec.py: best `maximise` among
the (select_over values, checkpoint) candidates whose seed means meet every declared constraint),
mean ± 95% interval over seeds at that point, and the report files. The whole trajectories are
plotted beside the chosen points, since which method looks better depends on what is held fixed.
Must not import torch.
"""

from __future__ import annotations

import html
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorasafe.judges.base import caveats
from lorasafe.reports.tidy import Run, find_runs, pairs_label, tidy_rows, value_label, write_csv
from lorasafe.scoring.stats import mean_ci95
from lorasafe.sweeps.spec import OperatingPoint


@dataclass
class Candidate:
    """One (select_over values, checkpoint) of a setting: its per-seed points."""

    select: tuple[tuple[str, Any], ...]
    checkpoint: str
    step: int | None
    points: list[dict[str, Any]] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)  # the run of each point

    def mean(self, key: str) -> float | None:
        vals = [p[key] for p in self.points if p.get(key) is not None]
        return sum(vals) / len(vals) if vals else None


@dataclass
class Setting:
    key: tuple[tuple[str, Any], ...]  # (axis path, value), lists and dicts frozen as JSON (hashable)
    runs: list[Run]
    candidates: list[Candidate]
    chosen: Candidate | None = None
    reached: bool = False

    @property
    def label(self) -> str:
        if not self.key:
            return "all runs"
        return pairs_label(self.key)

    @property
    def method(self) -> str:
        return self.runs[0].method


def _freeze(v: Any) -> Any:
    return json.dumps(v, sort_keys=True) if isinstance(v, (list, dict)) else v


def settings(runs: list[Run], op: OperatingPoint, order: dict[str, int] | None = None) -> list[Setting]:
    """Finished runs grouped into settings, each with its candidates and chosen operating point; `order`
    (run id -> position in the sweep's plan) keeps the axes' own order (early, middle, late)."""
    groups: dict[tuple, list[Run]] = defaultdict(list)
    for run in runs:
        if run.status != "done":
            continue
        key = tuple((k, v) for k, v in run.values.items() if k != "seed" and k not in op.select_over) \
            if run.values else (("run", run.config.get("name") or run.id),)  # a study's variant: its label
        groups[tuple((k, _freeze(v)) for k, v in key)].append(run)
    out = []
    for key, members in groups.items():
        cands: dict[tuple, Candidate] = {}
        for run in members:
            select = tuple((k, _freeze(run.values.get(k))) for k in op.select_over if k in run.values)
            for p in run.points:
                c = cands.setdefault((select, p["checkpoint"]), Candidate(select, p["checkpoint"], p.get("step")))
                c.points.append(p)
                c.runs.append(run)
        s = Setting(key, members, sorted(cands.values(), key=lambda c: (c.select, c.step or 0)))
        choose(s, op)
        out.append(s)
    rank = {"none": 0, "full": 1, "lora": 2}
    pos = order or {}
    return sorted(out, key=lambda s: (rank.get(s.method, 9), min(pos.get(r.id, 1 << 30) for r in s.runs), str(s.key)))


def choose(s: Setting, op: OperatingPoint) -> None:
    """The declared criterion: best seed-mean `maximise` among candidates meeting every constraint. When none
    does, the candidate closest to meeting them (smallest total shortfall) is shown, flagged not reached."""
    def means(c: Candidate) -> list[float | None]:
        return [c.mean(k.metric) for k in op.constraints]

    scored = [(c, means(c), c.mean(op.maximise) or 0.0) for c in s.candidates]
    feasible = [t for t in scored if all(k.holds(v) for k, v in zip(op.constraints, t[1]))]
    if feasible:
        s.chosen = max(feasible, key=lambda t: (t[2], -(t[0].step or 0)))[0]
        s.reached = True
    elif scored:
        s.chosen = min(scored, key=lambda t: (sum(k.shortfall(v) for k, v in zip(op.constraints, t[1])), -t[2],
                                              t[0].step or 0))[0]


def suite_columns(settings_: list[Setting]) -> list[tuple[str, str, tuple[str, ...]]]:
    """(column title, suite, key path into the suite's metrics) for every suite seen: refused per harmful suite,
    over-refusal per benign suite, reasoning; with `judge.also`, each further judge's refused share right after
    the headline judge's for a harmful suite."""
    seen: dict[str, str] = {}
    judges: dict[str, list[str]] = {}
    for s in settings_:
        for c in s.candidates:
            for p in c.points:
                for name, m in p.get("suites", {}).items():
                    seen.setdefault(name, m.get("kind"))
                    known = judges.setdefault(name, [])
                    known += [j for j in list(m.get("by_judge") or {})[1:] if j not in known]  # [0]: headline
    metric = {"harmful": ("refused", "refusal_rate"), "benign": ("over-refusal", "refusal_rate"),
              "reasoning": ("reasoning", "accuracy")}
    order = {"harmful": 0, "benign": 1, "reasoning": 2}
    cols = []
    for n in sorted((n for n, k in seen.items() if k in metric), key=lambda n: (order[seen[n]], n)):
        title, key = metric[seen[n]]
        cols.append((f"{title} {n}", n, (key,)))
        if seen[n] == "harmful":
            cols += [(f"refused {n} by {j}", n, ("by_judge", j, "refusal_rate")) for j in judges.get(n, [])]
    return cols


def _get(m: dict[str, Any], path: tuple[str, ...]) -> Any:
    for k in path:
        m = (m or {}).get(k)
    return m


def main_table(settings_: list[Setting], op: OperatingPoint) -> tuple[list[str], list[list[str]]]:
    cols = suite_columns(settings_)
    head = ["setting", "method", "trainable params", "operating point", "seeds", "refused (harmful)",
            "complied (harmful)", "invalid (harmful)", *[c[0] for c in cols]]
    body = []
    for s in settings_:
        c = s.chosen
        if c is None:
            continue
        params = (s.runs[0].metrics or {}).get("trainable_params")
        where = pairs_label(c.select)
        step = f"step {c.step}" if c.step is not None else c.checkpoint
        point = "- (untrained)" if s.method == "none" else (
            f"{where + ', ' if where else ''}{step}" + ("" if s.reached else f" (not reached: {op.describe()})"))
        cells = [_cell([p[k] for p in c.points if p.get(k) is not None]) for k in ("refused", "complied", "invalid")]
        for _, suite, path in cols:
            vals = [_get(p["suites"][suite], path) for p in c.points if suite in p.get("suites", {})]
            cells.append(_cell([v for v in vals if v is not None]))
        body.append([s.label, s.method, f"{params:,}" if params is not None else "-", point, str(len(c.points)), *cells])
    return head, body


GEOMETRY_K = 8  # the subspace size of the geometry table (the sweep's analysis_k must include it)
GEOMETRY = (("‖ΔW‖_F", "update_fro"), ("stable rank (mean)", "stable_rank_mean"), ("stable rank (max)", "stable_rank_max"),
            ("overlap left", "overlap_left"), ("random left", "random_left"), ("overlap right", "overlap_right"),
            ("random right", "random_right"))


def geometry_table(settings_: list[Setting]) -> tuple[list[str], list[list[str]]] | None:
    """Weight geometry at each trained setting's operating point (mean ± 95% interval over seeds), read from
    the checkpoints' `analysis/<checkpoint>/geometry.csv` (a sweep with `analysis_k` writes them); None when
    no setting has them."""
    from lorasafe.reports.tidy import geometry_summary, read_geometry

    body = []
    for s in settings_:
        c = s.chosen
        if c is None or s.method == "none":
            continue
        paths = [r.path / "analysis" / ("" if c.checkpoint == "final" else c.checkpoint) / "geometry.csv" for r in c.runs]
        if not paths or not all(p.is_file() for p in paths):
            continue
        rows = [read_geometry(p) for p in paths]
        if any(f"overlap_left@{GEOMETRY_K}" not in r[0] for r in rows):
            continue
        summaries = [geometry_summary(r, GEOMETRY_K) for r in rows]
        step = f"step {c.step}" if c.step is not None else c.checkpoint
        where = ", ".join(filter(None, (pairs_label(c.select), step)))
        body.append([s.label, s.method, where, str(int(summaries[0]["modules"])),
                     *(_cell([x[key] for x in summaries]) for _, key in GEOMETRY)])
    if not body:
        return None
    return ["setting", "method", "operating point", "modules", *(h for h, _ in GEOMETRY)], body


def _cell(vals: list[float]) -> str:
    if not vals:
        return "-"
    mean, half = mean_ci95(vals)
    return f"{mean:.3f}" + (f" ± {half:.3f}" if half is not None else "")


def markdown(head: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" if i < 2 else "---:" for i in range(len(head))) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def html_table(head: list[str], body: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{rows}</tbody></table>"


def failed_runs(runs: list[Run]) -> list[list[str]]:
    return [[r.id, r.status, ", ".join(f"{k}={value_label(v)}" for k, v in r.values.items()) or str(r.path), r.error or ""]
            for r in runs if r.status != "done"]


def write_report(root: Path, out: Path | None = None) -> dict[str, Path]:
    """Collect every run under `root` and write report.md, report.html, runs.csv and the plots into `out`."""
    import yaml

    from lorasafe.errors import LorasafeError
    from lorasafe.reports import sweep_plots

    root = Path(root)
    out = Path(out or root / "report")
    runs = find_runs(root)
    if not runs:
        raise LorasafeError(f"No run directories under {root} (a run directory holds config.yaml and manifest.json). "
                            "Pass the --out directory of `lorasafe sweep run`, `lorasafe study` or `lorasafe run`.")
    spec = yaml.safe_load((root / "sweep.yaml").read_text()) if (root / "sweep.yaml").is_file() else {}
    op = OperatingPoint(**(spec.get("operating_point") or {}))
    name = spec.get("name", root.name)
    out.mkdir(parents=True, exist_ok=True)
    files = {"csv": write_csv(tidy_rows(runs), out / "runs.csv")}
    plan_file = root / "plan.json"
    order = {c["id"]: i for i, c in enumerate(json.loads(plan_file.read_text()))} if plan_file.is_file() else None
    sets = settings(runs, op, order)
    head, body = main_table(sets, op)
    plots = sweep_plots.all_plots(sets, op, out)
    geometry = geometry_table(sets)
    failed = failed_runs(runs)
    crit = (f"best seed-mean {op.maximise} among the candidates whose seed means meet {op.describe()}; "
            "candidates are every evaluated checkpoint"
            + (f" × {', '.join(op.select_over)}" if op.select_over else "")
            + " (declared in the sweep file before it ran)")
    intro = (f"{len(runs)} runs ({sum(r.status == 'done' for r in runs)} finished, "
             f"{sum(r.status == 'failed' for r in runs)} failed, {sum(r.status == 'unfinished' for r in runs)} "
             f"unfinished) in {len(sets)} settings. Cells: mean ± 95% interval over seeds (Student t) at each "
             f"setting's operating point: {crit}. Refused, complied and invalid are the three shares of the "
             "harmful prompts (they sum to 1; invalid = no answer after the thinking block, a broken output, never "
             "counted as a refusal); over-refusal = share of benign requests refused; reasoning = accuracy on the "
             "answer after the thinking block. A setting that meets no candidate is shown at the candidate closest "
             "to the constraints, flagged 'not reached'.")
    judge = (spec.get("experiment") or {}).get("judge") or {}
    notes = [f"Caveat, judge `{n}`: {t}." for n, t in
             caveats([judge.get("name", "rules"), *judge.get("also", [])]).items()]
    intro = " ".join([intro, *notes])
    md = [f"# {name}", "", intro, "", markdown(head, body), ""]
    if geometry:
        md += ["## Weight geometry at the operating points", "", GEOMETRY_TEXT, "", markdown(*geometry), ""]
    if failed:
        md += ["## Failed or unfinished runs", "", markdown(["run", "status", "setting", "error"], failed), ""]
    for title, path in plots:
        md += [f"## {title}", "", f"![{title}]({path.name})", "", f"Data behind the plot: `{path.with_suffix('.csv').name}`.", ""]
    md += ["All rows (run × checkpoint × suite, seeds not averaged): `runs.csv`.", ""]
    files["md"] = out / "report.md"
    files["md"].write_text("\n".join(md))
    files["html"] = out / "report.html"
    files["html"].write_text(_html(name, intro, head, body, failed, plots, geometry))
    return files


GEOMETRY_TEXT = (f"ΔW against the base weights W0 at each setting's operating-point checkpoint, per seed, then mean ± "
                 f"95% interval. Stable rank = ‖ΔW‖_F²/‖ΔW‖_2² over the adapted modules; overlap = share of ‖ΔW‖_F² "
                 f"inside W0's top-{GEOMETRY_K} left (column) or right (row) singular subspace, weighted by each module's "
                 f"‖ΔW‖_F²; 'random' is the share a random update of the same modules would have. A setting that did "
                 f"not reach the criterion is shown at the candidate closest to it, as in the main table.")


def _html(name: str, intro: str, head: list[str], body: list[list[str]], failed: list[list[str]],
          plots: list[tuple[str, Path]], geometry: tuple[list[str], list[list[str]]] | None = None) -> str:
    """A self-contained page: the tables and every plot inlined as base64 PNG."""
    import base64

    parts = [f"<h1>{html.escape(name)}</h1>", f"<p>{html.escape(intro)}</p>", html_table(head, body)]
    if geometry:
        parts += ["<h2>Weight geometry at the operating points</h2>", f"<p>{html.escape(GEOMETRY_TEXT)}</p>",
                  html_table(*geometry)]
    if failed:
        parts += ["<h2>Failed or unfinished runs</h2>", html_table(["run", "status", "setting", "error"], failed)]
    for title, path in plots:
        data = base64.b64encode(path.read_bytes()).decode()
        parts += [f"<h2>{html.escape(title)}</h2>", f'<img alt="{html.escape(title)}" src="data:image/png;base64,{data}">',
                  f"<p>Data: {html.escape(path.with_suffix('.csv').name)}</p>"]
    style = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
             "td:first-child,th:first-child,td:nth-child(2){text-align:left}img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(name)}</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n")


