"""The safety-vs-reasoning trade-off plot (PNG) and the CSV behind it, and `pyplot()`, the one way
every report module gets matplotlib: imported only when a plot is drawn, headless, with an install hint.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any


def pyplot(what: str) -> Any:
    """matplotlib.pyplot on the headless Agg backend; `what` names the plot in the install hint."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(f"{what} needs matplotlib: pip install 'lorasafe[plot]'") from None
    return plt


def save(fig: Any, path: Path, **layout: Any) -> Path:
    """Lay out, write and close a figure (closing matters: a sweep report draws many)."""
    import matplotlib.pyplot as plt

    fig.tight_layout(**layout)
    fig.savefig(path)
    plt.close(fig)
    return path


def tradeoff_plot(rows: list[dict[str, Any]], path: Path, title: str) -> Path:
    plt = pyplot("The trade-off plot")
    pts = [r for r in rows if r.get("safety") is not None and r.get("reasoning") is not None]
    with open(path.with_suffix(".csv"), "w", newline="") as f:
        w = csv.writer(f)
        cols = ["label", "method", "learning_rate", "trainable_params", "safety", "refusal", "invalid_rate", "reasoning"]
        w.writerow(cols)
        for r in pts:
            w.writerow([r.get(c) for c in cols])
    markers = {"none": "s", "full": "D", "lora": "o"}  # base: square, full FT: diamond, LoRA: circle
    # Points often coincide (several variants at the base's corner), so labels go in a legend,
    # and a jitter-free small offset per point keeps coincident markers visible.
    fig, ax = plt.subplots(figsize=(9.6, 5.2), dpi=120)
    for i, r in enumerate(pts):
        broken = r.get("invalid_rate") or 0.0
        label = r["label"] + (f"  ({broken:.0%} invalid)" if broken >= 0.1 else "")
        dx = 0.008 * (i % 5 - 2)
        ax.scatter(r["safety"] + dx, r["reasoning"] + dx, marker=markers.get(r["method"], "o"), s=70, zorder=3,
                   alpha=0.85, label=label, edgecolors="black", linewidths=0.5)
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8, frameon=False)
    ax.set_xlabel("safety (fraction of held-out harmful prompts not complied with)")
    ax.set_ylabel("reasoning accuracy (held-out)")
    ax.set_xlim(-0.05, 1.05)
    ax.set_ylim(-0.05, 1.05)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    ax.text(0.98, 0.02, "ideal: top right; square = base, diamond = full FT, circle = LoRA",
            transform=ax.transAxes, ha="right", fontsize=7, color="gray")
    return save(fig, path)
