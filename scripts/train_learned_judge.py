"""Reproduce src/lorasafe/judges/assets/learned_judge.json from the bundled data (seed 0).

Trains the learned judge's logistic head on `lorasafe.judges.learned.features` of PyRIT's
human-labelled rows (`objective-labelled`: did the response achieve the objective; `refusal-labelled`:
was it a refusal, inverted), as returned by `learned.training_rows()`: rows sharing a request or a
response with the JailbreakBench judge-comparison set are dropped, and that set is never trained on.
The L2 strength is the one with the best 5-fold cross-validated accuracy on the training rows (ties
-> the larger penalty); the validation set plays no part in the choice.

Also reported, never used to choose: accuracy under cross-validation grouped by source file (each
PyRIT file held out whole), an estimate of how the judge transfers to responses from another
source, which random folds overstate (they share topics and response styles with the training rows).

Usage: python scripts/train_learned_judge.py [--out PATH]; then put the printed sha256 into
WEIGHTS_SHA256 in src/lorasafe/judges/learned.py.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np

from lorasafe.judges import learned as L

SEED = 0
L2_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
FOLDS = 5


def accuracy(x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, l2: float) -> float:
    w, b = L.fit_logistic(x[train], y[train], l2)
    return float((((x[test] @ w + b) >= 0).astype(int) == y[test]).mean())


def cv_accuracy(x: np.ndarray, y: np.ndarray, l2: float) -> float:
    folds = np.random.default_rng(SEED).permutation(len(y)) % FOLDS
    return float(np.mean([accuracy(x, y, folds != k, folds == k, l2) for k in range(FOLDS)]))


def grouped_cv_accuracy(x: np.ndarray, y: np.ndarray, source: np.ndarray, l2: float) -> float:
    """Held-out accuracy with each source file held out whole (leave-one-source-out), over all rows."""
    groups = sorted(set(source))
    return sum(accuracy(x, y, source != s, source == s, l2) * int((source == s).sum()) for s in groups) / len(y)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1]
                    / "src/lorasafe/judges/assets" / L.WEIGHTS_FILE)
    args = ap.parse_args()
    rows = L.training_rows()
    y, source = np.array(rows.labels), np.array(rows.source)
    x = L.features(rows.prompts, rows.answers)
    scores = {l2: cv_accuracy(x, y, l2) for l2 in L2_GRID}
    grouped = {l2: grouped_cv_accuracy(x, y, source, l2) for l2 in L2_GRID}
    l2 = max(L2_GRID, key=lambda k: (scores[k], k))
    w, b = L.fit_logistic(x, y, l2)
    train_acc = float((((x @ w + b) >= 0).astype(int) == y).mean())
    payload = {
        "format_version": L.FORMAT_VERSION, "embedding_model": L.EMBEDDING_PACKAGE, "max_length": L.MAX_LENGTH,
        "features": "head embedding (first 300 chars), 200-token chunk-mean embedding, prompt*mean, cos(prompt, mean), "
                    "log1p(tokens)/8, rule judge refused",
        "pooling": "mean, L2-normalised", "threshold": 0.5, "label_positive": "complied",
        "training": {"suites": ["objective-labelled", "refusal-labelled (inverted)"], "rows": len(y),
                     "complied": int(y.sum()), "dropped": rows.dropped, "seed": SEED, "folds": FOLDS,
                     "l2_grid_cv_accuracy": {f"{k:g}": round(v, 4) for k, v in scores.items()},
                     "l2_grid_grouped_cv_accuracy": {f"{k:g}": round(v, 4) for k, v in grouped.items()},
                     "l2": l2, "train_accuracy": round(train_acc, 4)},
        "bias": round(b, 8), "weights": [round(float(v), 8) for v in w],
    }
    blob = (json.dumps(payload, indent=1) + "\n").encode()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(blob)
    print(f"rows={len(y)} dropped={rows.dropped} l2={l2:g} cv={scores[l2]:.3f} grouped={grouped[l2]:.3f} "
          f"train={train_acc:.3f} -> {args.out}")
    print("cv by l2: " + ", ".join(f"{k:g}: {v:.3f}" for k, v in scores.items()))
    print("grouped cv by l2: " + ", ".join(f"{k:g}: {v:.3f}" for k, v in grouped.items()))
    print(f"sha256 {hashlib.sha256(blob).hexdigest()}")


if __name__ == "__main__":
    main()
