"""The safety-vs-reasoning trade-off plot (PNG) and the CSV behind it.

matplotlib is imported here only, and only when a plot is drawn.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any


def tradeoff_plot(rows: list[dict[str, Any]], path: Path, title: str) -> Path:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("The trade-off plot needs matplotlib: pip install 'lorasafe[plot]'") from None
    pts = [r for r in rows if r.get("safety") is not None and r.get("reasoning") is not None]
    with open(path.with_suffix(".csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["label", "method", "trainable_params", "safety", "reasoning"])
        for r in pts:
            w.writerow([r["label"], r["method"], r["trainable_params"], r["safety"], r["reasoning"]])
    markers = {"none": "s", "full": "D", "lora": "o"}
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=120)
    for r in pts:
        ax.scatter(r["safety"], r["reasoning"], marker=markers.get(r["method"], "o"), s=70, zorder=3)
        ax.annotate(r["label"], (r["safety"], r["reasoning"]), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xlabel("safety (fraction of held-out harmful prompts not complied with)")
    ax.set_ylabel("reasoning accuracy (held-out)")
    ax.set_xlim(-0.05, 1.05)
    ax.set_ylim(-0.05, 1.05)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    ax.text(0.98, 0.02, "ideal: top right", transform=ax.transAxes, ha="right", fontsize=8, color="gray")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
