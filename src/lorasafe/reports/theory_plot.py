"""The rank-overshoot plot of `lorasafe theory` (PNG; the CSV behind it is theory.csv).

Left: excess base-task degradation against rank overshoot, one line per intrinsic dimension d
(mean over seeds, log-log). Right: the same multiplied by d; if the degradation is inversely
proportional to d, the lines collapse onto one. matplotlib is imported here only.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from lorasafe.reports.plot import pyplot, save


def theory_plot(rows: list[dict[str, Any]], result: dict[str, Any], path: Path) -> Path:
    plt = pyplot("The theory plot")
    by: dict[int, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["overshoot"] > 0:
            by[r["d"]][r["overshoot"]].append(r["excess"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=120)
    for d in sorted(by):
        xs = sorted(by[d])
        ys = [sum(by[d][x]) / len(by[d][x]) for x in xs]
        axes[0].plot(xs, ys, marker="o", ms=4, label=f"d = {d}")
        axes[1].plot(xs, [y * d for y in ys], marker="o", ms=4, label=f"d = {d}")
    for ax, ylab in zip(axes, ("excess base degradation", "excess base degradation × d")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("rank overshoot r − r_task")
        ax.set_ylabel(ylab)
        ax.grid(alpha=0.3, which="both")
    axes[1].legend(fontsize=8, frameon=False)
    c, h = result["c"], result["c_ci95"]
    fig.suptitle(f"fit: excess ∝ overshoot^{result['b']:.2f} · d^{c:.2f} (95% CI of the d exponent "
                 f"[{c - h:.2f}, {c + h:.2f}]); inverse proportionality "
                 f"{'holds' if result['inverse_proportional'] else 'does not hold'}", fontsize=9)
    return save(fig, path)
