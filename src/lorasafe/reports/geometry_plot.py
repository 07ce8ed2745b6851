"""Plots of weight geometry by layer (PNG + the CSV behind each), for one run or several side by side.

`stable_rank_plot`: stable rank of ΔW by layer, one line per module (the paper's Figure-1 view).
`overlap_by_layer_plot`: per layer, the share of ‖ΔW‖_F² inside W0's top-k left singular subspace,
summed over the layer's adapted modules (energy-weighted), one line per run, with the share a
random update would have (k / out) for reference. matplotlib comes from `reports.plot.pyplot`.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import Any

from lorasafe.reports.plot import pyplot, save


def layer_overlap(rows: list[dict[str, Any]], k: int, side: str = "left") -> dict[int, tuple[float, float]]:
    """layer -> (energy-weighted overlap at k, the random-update expectation k/out, energy-weighted)."""
    num, den, rnd = defaultdict(float), defaultdict(float), defaultdict(float)
    for r in rows:
        e = r["fro"] ** 2
        num[int(r["layer"])] += r[f"overlap_{side}@{k}"] * e
        den[int(r["layer"])] += e
        rnd[int(r["layer"])] += e * k / (r["out"] if side == "left" else r["in"])
    return {layer: (num[layer] / den[layer], rnd[layer] / den[layer]) for layer in sorted(den) if den[layer] > 0}


def stable_rank_plot(runs: dict[str, list[dict[str, Any]]], path: Path, title: str) -> Path:
    plt = pyplot("Geometry plots")
    from matplotlib.ticker import MaxNLocator
    with open(path.with_suffix(".csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "layer", "module", "stable_rank"])
        for label, rows in runs.items():
            w.writerows([label, int(r["layer"]), r["module"], r["stable_rank"]] for r in rows)
    cols = min(len(runs), 4)
    nrows = -(-len(runs) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols + 1.5, 3.4 * nrows + 0.4), dpi=120, squeeze=False,
                             sharey=True)
    flat = [ax for row in axes for ax in row]
    for ax in flat[len(runs):]:
        ax.set_visible(False)
    for ax, (label, rows) in zip(flat, runs.items()):
        by_module: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for r in rows:
            by_module[r["module"]].append((int(r["layer"]), r["stable_rank"]))
        for module, pts in by_module.items():
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=module)
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("layer")
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3, which="both")
    for row in axes:
        row[0].set_ylabel("stable rank ‖ΔW‖_F² / ‖ΔW‖_2²")
    handles, labels = max(((ax.get_legend_handles_labels()) for ax in flat[:len(runs)]), key=lambda hl: len(hl[1]))
    fig.legend(handles, labels, fontsize=7, loc="center right", frameon=False)
    fig.subplots_adjust(right=0.9)
    fig.suptitle(title, fontsize=10)
    return save(fig, path, rect=(0, 0, 0.92, 1))


def overlap_by_layer_plot(runs: dict[str, list[dict[str, Any]]], path: Path, k: int, title: str) -> Path:
    plt = pyplot("Geometry plots")
    from matplotlib.ticker import MaxNLocator
    curves = {label: layer_overlap(rows, k) for label, rows in runs.items()}
    with open(path.with_suffix(".csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "layer", f"overlap_left@{k}", "random_expectation"])
        for label, curve in curves.items():
            w.writerows([label, layer, o, rnd] for layer, (o, rnd) in curve.items())
    fig, ax = plt.subplots(figsize=(8.4, 4.2), dpi=120)
    for label, curve in curves.items():
        layers = list(curve)
        ax.plot(layers, [curve[x][0] for x in layers], marker="o", ms=4, label=label)
    ref = [v[1] for c in curves.values() for v in c.values()]
    if ref:
        ax.axhline(sum(ref) / len(ref), color="gray", ls=":", lw=1, label=f"random update (k/out ≈ {sum(ref) / len(ref):.2f})")
    ax.set_xlabel("layer")
    ax.set_ylabel(f"share of ‖ΔW‖_F² in W0's top-{k} left subspace")
    top = max([v[0] for c in curves.values() for v in c.values()] + ref + [0.0])
    ax.set_ylim(0, min(1.02, max(0.25, 1.3 * top)))  # small overlaps are the usual case: do not squash them
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    ax.set_title(title, fontsize=10)
    return save(fig, path)


def study_geometry_plots(name: str, rows: list[dict[str, Any]], out: Path) -> list[Path]:
    """Stable rank by layer (one panel per trained variant) and overlap by layer (all variants in one)."""
    from lorasafe.reports.tidy import read_geometry
    from lorasafe.runs.rundir import slug
    from lorasafe.reports.geometry_plot import overlap_by_layer_plot, stable_rank_plot

    runs = {r["label"]: read_geometry(out / "variants" / slug(r["label"]) / "analysis" / "geometry.csv")
            for r in rows if r.get("geometry")}
    if not runs:
        return []
    k = next(r["geometry"]["k"] for r in rows if r.get("geometry"))
    return [stable_rank_plot(runs, out / "geometry_stable_rank.png", f"{name}: stable rank of ΔW by layer and module"),
            overlap_by_layer_plot(runs, out / "geometry_overlap.png", k,
                                  f"{name}: share of ΔW in W0's top-{k} left singular subspace")]
