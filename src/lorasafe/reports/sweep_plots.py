"""The sweep report's plots (PNG + the CSV behind each): the refusal-vs-reasoning Pareto view,
metrics against each ablation axis at the operating points, and metrics along the checkpoints.

Points are seed means. A point whose harmful outputs are more than 5% invalid is broken: drawn
hollow, never on the Pareto front, never an operating point's filled marker. matplotlib comes
from `reports.plot.pyplot`, when a plot is drawn.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from lorasafe.reports.plot import BROKEN, pyplot, save
from lorasafe.reports.tidy import pairs_label, value_label

AXES = (("adapter.rank", "rank"), ("adapter.modules", "target modules"), ("adapter.layers", "layer band"))
METRICS = (("refused", "refused (harmful)"), ("invalid", "invalid (harmful)"), ("reasoning", "reasoning"),
           ("over_refusal", "over-refusal"))
COLORS = {"none": "black", "full": "tab:red", "lora": "tab:blue"}


def _csv(path: Path, head: list[str], rows: list[list[Any]]) -> None:
    with open(path.with_suffix(".csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(head)
        w.writerows(rows)


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both coordinates (higher is better), by the first coordinate."""
    front = [p for p in points if not any(q[0] >= p[0] and q[1] >= p[1] and q != p for q in points)]
    return sorted(set(front))


def pareto_plot(sets: list[Any], path: Path) -> Path:
    plt = pyplot("The sweep report's plots")
    rows = []
    for s in sets:
        for c in s.candidates:
            ref, re, inv = c.mean("refused"), c.mean("reasoning"), c.mean("invalid") or 0.0
            if ref is None or re is None:
                continue
            rows.append([s.label, s.method, dict(c.select), c.checkpoint, c.step, ref, inv, re, inv > BROKEN,
                         c is s.chosen and s.reached, c.mean("over_refusal")])
    _csv(path, ["setting", "method", "select", "checkpoint", "step", "refused", "invalid", "reasoning", "broken",
                "operating_point", "over_refusal"], rows)
    fig, ax = plt.subplots(figsize=(8.4, 5.6), dpi=120)
    for s in sets:  # each (setting, select_over values) trajectory, checkpoint by checkpoint
        by_select: dict[tuple, list[Any]] = {}
        for c in s.candidates:
            by_select.setdefault(c.select, []).append(c)
        for cs in by_select.values():
            cs = [c for c in sorted(cs, key=lambda c: c.step or 0) if c.mean("refused") is not None]
            ax.plot([c.mean("refused") for c in cs], [c.mean("reasoning") for c in cs], lw=0.6, alpha=0.35,
                    color=COLORS.get(s.method, "gray"))
    for method in dict.fromkeys(r[1] for r in rows):
        colour = COLORS.get(method, "gray")
        for broken in (False, True):
            mine = [r for r in rows if r[1] == method and r[8] == broken]
            if mine:
                ax.scatter([r[5] for r in mine], [r[7] for r in mine], s=14, alpha=0.5,
                           facecolors="none" if broken else colour, edgecolors=colour,
                           label=f"{method}: {'broken (invalid > 5%)' if broken else 'every checkpoint'}")
        chosen = [r for r in rows if r[1] == method and r[9]]
        # Over-refusal is not an axis, and refusing benign requests too also lands at the top right, so the
        # legend gives the range of the operating points' over-refusal (their markers cluster; labels would not read).
        over = [r[10] for r in chosen if r[10] is not None]
        span = "" if not over else f" (over-refusal {min(over):.2f})" if min(over) == max(over) else \
            f" (over-refusal {min(over):.2f}-{max(over):.2f})"
        ax.scatter([r[5] for r in chosen], [r[7] for r in chosen], s=70, color=colour,
                   edgecolors="black", linewidths=0.8, label=f"{method}: operating points{span}")
    front = pareto_front([(r[5], r[7]) for r in rows if not r[8]])
    if front:
        ax.plot([p[0] for p in front], [p[1] for p in front], color="gray", ls="--", lw=1,
                label="Pareto front (valid points)")
    ax.set_xlabel("refused (harmful prompts, seed mean)")
    ax.set_ylabel("reasoning (seed mean)")
    ax.set_xlim(-0.03, 1.03)
    ax.set_ylim(-0.03, 1.03)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title("refusal vs reasoning: every checkpoint (thin lines: one run setting along training), "
                 "operating points; hollow = broken", fontsize=9)
    return save(fig, path)


def axis_plot(sets: list[Any], axis: str, title: str, path: Path) -> Path | None:
    """Metrics at the operating points against one axis; one line per combination of the other axes."""
    plt = pyplot("The sweep report's plots")
    with_axis = [s for s in sets if axis in dict(s.key) and s.chosen is not None]
    if len({str(dict(s.key)[axis]) for s in with_axis}) < 2:
        return None
    xs = list(dict.fromkeys(value_label(dict(s.key)[axis]) for s in with_axis))
    if axis == "adapter.rank":
        xs = sorted(xs, key=float)
    lines: dict[str, dict[str, Any]] = {}
    rows = []
    for s in with_axis:
        rest = pairs_label(s.key, skip=axis) or s.method
        x = value_label(dict(s.key)[axis])
        lines.setdefault(rest, {})[x] = s
        rows.append([rest, x] + [s.chosen.mean(m) for m, _ in METRICS] + [s.reached])
    _csv(path, ["line", axis] + [m for m, _ in METRICS] + ["reached"], rows)
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.2 * len(METRICS) + 2, 3.8), dpi=120, squeeze=False)
    for ax, (metric, name) in zip(axes[0], METRICS):
        for rest, pts in lines.items():
            got = [(xs.index(x), pts[x].chosen.mean(metric)) for x in xs if x in pts and pts[x].chosen.mean(metric) is not None]
            ax.plot([g[0] for g in got], [g[1] for g in got], marker="o", ms=4, label=rest)
        ax.set_xticks(range(len(xs)))
        ax.set_xticklabels(xs, rotation=30 if len(max(xs, key=len)) > 4 else 0, fontsize=7)
        ax.set_ylim(-0.03, 1.03)
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    fig.suptitle(f"{title} at the operating points (seed means)", fontsize=10)
    return save(fig, path)


def trajectory_plot(sets: list[Any], path: Path) -> Path | None:
    """Refused, invalid, reasoning and over-refusal along the checkpoints: every setting (colour) at every value of
    the select_over axes (line style), not only the chosen one."""
    plt = pyplot("The sweep report's plots")
    rows = []
    curves: dict[tuple[str, str], list[Any]] = {}
    for s in sets:
        if s.method == "none":
            continue
        for c in s.candidates:
            curves.setdefault((s.label, pairs_label(c.select)), []).append(c)
    curves = {k: sorted(v, key=lambda c: c.step or 0) for k, v in curves.items() if len(v) >= 2}
    if not curves:
        return None
    for (label, sel), cs in curves.items():
        rows += [[label, sel, c.checkpoint, c.step, *(c.mean(m) for m, _ in METRICS)] for c in cs]
    _csv(path, ["setting", "select", "checkpoint", "step", *(m for m, _ in METRICS)], rows)
    colours = {label: f"C{i % 10}" for i, label in enumerate(dict.fromkeys(k[0] for k in curves))}
    styles = {sel: ("-", "--", ":", "-.")[i % 4] for i, sel in enumerate(dict.fromkeys(k[1] for k in curves))}
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.6 * len(METRICS) + 1, 4.2), dpi=120)
    for ax, (metric, name) in zip(axes, METRICS):
        for (label, sel), cs in curves.items():
            ax.plot([c.step for c in cs], [c.mean(metric) for c in cs], marker="o", ms=2.5, color=colours[label],
                    ls=styles[sel], lw=1, label=f"{label} {sel}".strip())
        ax.set_xlabel("training step (checkpoint)")
        ax.set_title(name, fontsize=9)
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    fig.suptitle("metrics along training (seed means; colour = setting, line style = learning rate or other "
                 "select_over value)", fontsize=10)
    return save(fig, path)


def all_plots(sets: list[Any], op: Any, out: Path) -> list[tuple[str, Path]]:
    plots = [("Refusal vs reasoning", pareto_plot(sets, out / "pareto.png"))]
    for axis, name in AXES:
        p = axis_plot(sets, axis, f"metrics by {name}", out / f"by_{axis.split('.')[-1]}.png")
        if p:
            plots.append((f"Metrics by {name}", p))
    p = trajectory_plot(sets, out / "trajectories.png")
    if p:
        plots.append(("Metrics along training", p))
    return plots
