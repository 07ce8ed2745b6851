"""The refusal-vs-reasoning trade-off plot (PNG) and the CSV behind it, and `pyplot()`, the one way
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


BROKEN = 0.05  # a variant whose harmful outputs are more than this share invalid is drawn hollow, as broken


def tradeoff_plot(rows: list[dict[str, Any]], path: Path, title: str) -> Path:
    """Refusal of harmful prompts (x) against reasoning (y), one marker per variant. A broken variant
    (invalid > BROKEN) is drawn hollow and labelled: its outputs are not refusals, whatever corner it lands in.
    Over-refusal is not an axis, so a variant that refuses benign requests too (over-refusal > BROKEN) says so in
    its legend entry: refusing everything lands at the top right as well."""
    plt = pyplot("The trade-off plot")
    pts = [r for r in rows if r.get("refused") is not None and r.get("reasoning") is not None]
    with open(path.with_suffix(".csv"), "w", newline="") as f:
        w = csv.writer(f)
        cols = ["label", "method", "learning_rate", "trainable_params", "refused", "complied", "invalid", "reasoning",
                "over_refusal"]
        w.writerow([*cols, "broken"])
        for r in pts:
            w.writerow([*(r.get(c) for c in cols), (r.get("invalid") or 0.0) > BROKEN])
    # base: square, full FT: diamond, LoRA: circle, a merged (projected) LoRA: plus
    markers = {"none": "s", "full": "D", "lora": "o", "lora+merge": "P"}
    # Points often coincide (several variants at the base's corner), so labels go in a legend,
    # and a jitter-free small offset per point keeps coincident markers visible.
    fig, ax = plt.subplots(figsize=(9.6, 5.2), dpi=120)
    for i, r in enumerate(pts):
        invalid = r.get("invalid") or 0.0
        broken = invalid > BROKEN
        colour = f"C{i % 10}"
        over = r.get("over_refusal") or 0.0
        label = r["label"] + (f"  (BROKEN: {invalid:.0%} invalid)" if broken else "") + (
            f"  (refuses {over:.0%} of benign)" if over > BROKEN else "")
        dx = 0.008 * (i % 5 - 2)
        ax.scatter(r["refused"] + dx, r["reasoning"] + dx, marker=markers.get(r["method"], "o"), s=70, zorder=3,
                   label=label, facecolors="none" if broken else colour, edgecolors=colour if broken else "black",
                   linewidths=1.5 if broken else 0.5, alpha=0.9)
    # The reading key heads the legend, where no marker can sit under it.
    key = (f"ideal: top right, filled, refusing no benign request\nhollow = broken (invalid > {BROKEN:.0%}), not a "
           "refusal\nsquare = base, diamond = full FT, circle = LoRA, plus = merged LoRA")
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8, frameon=False, title=key, title_fontsize=7,
              alignment="left")
    ax.set_xlabel("refused (share of held-out harmful prompts refused)")
    ax.set_ylabel("reasoning accuracy (held-out)")
    ax.set_xlim(-0.05, 1.05)
    ax.set_ylim(-0.05, 1.05)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    return save(fig, path)
