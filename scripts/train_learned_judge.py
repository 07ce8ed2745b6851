"""Reproduce src/lorasafe/judges/assets/learned_judge.json from the bundled data (seed 0).

Trains the learned refusal judge's logistic-regression head on MiniLM embeddings of the bundled
`refusal-labelled` suite ONLY. The JailbreakBench judge-comparison rows are the validation set and
are never read here. The L2 strength is chosen by 5-fold cross-validation on the training rows.

Excluded rows: PyRIT labels a non-sequitur (a fluent answer to a different, benign question) as a
refusal. An answer-only judge cannot see that, and those rows teach it that ordinary helpful prose
is a refusal, so they are dropped; the ids are listed in NON_SEQUITUR_IDS and recorded in the file.

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
L2_GRID = (1e-4, 1e-3, 3e-3, 1e-2, 3e-2)
FOLDS = 5
NON_SEQUITUR_IDS = tuple(f"refusal-labelled-{i:03d}" for i in (58, 59, 60, 61, 62, 63, 64, 65, 66, 67))


def cv_accuracy(x: np.ndarray, y: np.ndarray, l2: float) -> float:
    folds = np.random.default_rng(SEED).permutation(len(y)) % FOLDS
    acc = []
    for k in range(FOLDS):
        w, b = L.fit_logistic(x[folds != k], y[folds != k], l2)
        acc.append(float((((x[folds == k] @ w + b) >= 0).astype(int) == y[folds == k]).mean()))
    return float(np.mean(acc))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1]
                    / "src/lorasafe/judges/assets" / L.WEIGHTS_FILE)
    args = ap.parse_args()
    from lorasafe.data.bundled import load_bundled_rows

    rows = [r for r in load_bundled_rows("refusal-labelled") if r["id"] not in NON_SEQUITUR_IDS]
    texts = [L._normalise(r["meta"]["assistant_response"]) for r in rows]
    y = np.array([int(r["meta"]["human_score"]) for r in rows])
    x = L.embed(texts).astype(np.float64)
    scores = {l2: cv_accuracy(x, y, l2) for l2 in L2_GRID}
    l2 = max(L2_GRID, key=lambda k: (scores[k], k))  # ties -> the larger penalty
    w, b = L.fit_logistic(x, y, l2)
    train_acc = float((((x @ w + b) >= 0).astype(int) == y).mean())
    payload = {
        "format_version": L.FORMAT_VERSION, "embedding_model": L.EMBEDDING_PACKAGE, "max_length": L.MAX_LENGTH,
        "pooling": "mean, L2-normalised", "threshold": 0.5, "label_positive": "refused",
        "training": {"suite": "refusal-labelled", "rows": len(rows), "refusals": int(y.sum()),
                     "excluded_non_sequitur_ids": list(NON_SEQUITUR_IDS), "seed": SEED, "folds": FOLDS,
                     "l2_grid_cv_accuracy": {str(k): round(v, 4) for k, v in scores.items()}, "l2": l2,
                     "train_accuracy": round(train_acc, 4)},
        "bias": round(b, 8), "weights": [round(float(v), 8) for v in w],
    }
    data = (json.dumps(payload, indent=1) + "\n").encode()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    print(f"l2={l2} cv={scores[l2]:.3f} train={train_acc:.3f} -> {args.out}")
    print(f"sha256 {hashlib.sha256(data).hexdigest()}")


if __name__ == "__main__":
    main()
