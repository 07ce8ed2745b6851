"""Runs under a directory -> one tidy table (one row per run × checkpoint × suite), and its views.

Owns reading finished (and failed) run directories: `config.yaml`, `metrics.json` (with its
per-checkpoint trajectory when the run evaluated every checkpoint), `cell.json` (a sweep cell's
axis values) and `failed.json`. The seed is a column, never averaged here; aggregation over seeds
and the operating-point choice live in `reports/sweep_report.py`. Must not import torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SUITE_METRICS = ("refusal_rate", "complied_rate", "invalid_rate", "accuracy", "no_answer_rate", "truncated_rate", "n")
POINT_METRICS = ("refused", "complied", "invalid", "reasoning", "over_refusal", "truncated_rate")


@dataclass
class Run:
    """One run directory, read back."""

    path: Path
    id: str
    config: dict[str, Any]
    values: dict[str, Any]  # sweep axis values (empty outside a sweep)
    status: str  # done | failed | unfinished
    metrics: dict[str, Any] | None = None
    error: str | None = None
    points: list[dict[str, Any]] = field(default_factory=list)  # one per evaluated checkpoint, earliest first

    @property
    def seed(self) -> int:
        return int(self.config.get("seed", 0))

    @property
    def method(self) -> str:
        return self.config["adapter"]["method"]


def _points(metrics: dict[str, Any], steps: int | None) -> list[dict[str, Any]]:
    if metrics.get("checkpoints"):
        return metrics["checkpoints"]
    return [{"checkpoint": "final", "step": steps,
             **{k: metrics.get(k) for k in POINT_METRICS}, "suites": metrics.get("suites", {})}]


def find_runs(root: Path) -> list[Run]:
    """Every run directory under `root` (a directory holding config.yaml and manifest.json)."""
    import yaml

    runs = []
    for cfg_path in sorted(Path(root).rglob("config.yaml")):
        d = cfg_path.parent
        if not (d / "manifest.json").is_file():
            continue
        cell = json.loads((d / "cell.json").read_text()) if (d / "cell.json").is_file() else {}
        run = Run(d, cell.get("id", d.name), yaml.safe_load(cfg_path.read_text()), cell.get("values", {}), "unfinished")
        if (d / "failed.json").is_file():
            run.status, run.error = "failed", json.loads((d / "failed.json").read_text())["error"]
        elif (d / "metrics.json").is_file():
            run.status, run.metrics = "done", json.loads((d / "metrics.json").read_text())
            marker = d / "stages" / "train.json"
            steps = json.loads(marker.read_text()).get("steps") if marker.is_file() else 0
            run.points = _points(run.metrics, steps)
        runs.append(run)
    return runs


def describe(config: dict[str, Any]) -> dict[str, Any]:
    """The columns that name a run's setup, from its resolved config."""
    a, t = config["adapter"], config["training"]
    layers = a["layers"] if isinstance(a["layers"], str) else f"{a['layers']['first']}-{a['layers']['last']}"
    lora = a["method"] == "lora"
    return {"method": a["method"], "rank": a["rank"] if lora else None,
            "modules": "+".join(a["modules"]) if lora else None, "layers": layers if lora else None,
            "learning_rate": t["learning_rate"] if a["method"] != "none" else None, "seed": config.get("seed", 0),
            "regulariser": (t.get("regulariser") or {}).get("name")}


def tidy_rows(runs: list[Run]) -> list[dict[str, Any]]:
    """One row per run × checkpoint × suite; a failed or unfinished run gets one row with its status."""
    rows = []
    for run in runs:
        base = {"run": run.id, "status": run.status, **describe(run.config),
                "trainable_params": (run.metrics or {}).get("trainable_params"),
                **{f"axis:{k}": json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in run.values.items()}}
        if run.status != "done":
            rows.append({**base, "error": run.error})
            continue
        for point in run.points:
            for suite, m in point.get("suites", {}).items():
                rows.append({**base, "checkpoint": point["checkpoint"], "step": point.get("step"), "suite": suite,
                             "kind": m.get("kind"), **{k: m.get(k) for k in SUITE_METRICS}, **_by_judge(m)})
    return rows


def _by_judge(m: dict[str, Any]) -> dict[str, Any]:
    """With `judge.also`: `<judge>:<metric>` for every judge of the run, and the share they agree on."""
    by = m.get("by_judge") or {}
    if not by:
        return {}
    return {"judge_agreement": m.get("judge_agreement"),
            **{f"{name}:{k}": v[k] for name, v in by.items() for k in ("refusal_rate", "complied_rate", "invalid_rate")
               if k in v}}


def value_label(v: Any) -> str:
    """An axis value as a report shows it: lists joined by +, floats compact; frozen JSON thawed first."""
    if isinstance(v, str) and v[:1] in "[{":
        v = json.loads(v)
    if isinstance(v, list):
        return "+".join(map(str, v))
    if isinstance(v, dict):
        return "-".join(map(str, v.values()))
    return f"{v:g}" if isinstance(v, float) else str(v)


def pairs_label(pairs: Any, skip: str | None = None) -> str:
    """`rank=4, learning_rate=0.001` from (dotted path, value) pairs, the last path segment as the name."""
    return ", ".join(f"{k.split('.')[-1]}={value_label(v)}" for k, v in pairs if k != skip)


def write_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    import csv

    cols = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    return path


def geometry_summary(rows: list[dict[str, Any]], k: int) -> dict[str, Any]:
    """One run's geometry in a few numbers: stable rank over modules, energy-weighted overlaps at k."""
    energy = [r["fro"] ** 2 for r in rows]
    total = sum(energy)

    def weighted(values: list[float]) -> float:
        return sum(v * e for v, e in zip(values, energy)) / total if total else float("nan")

    ranks = [r["stable_rank"] for r in rows]
    return {"k": k, "modules": len(rows), "update_fro": total ** 0.5,
            "stable_rank_mean": sum(ranks) / len(ranks), "stable_rank_max": max(ranks),
            "overlap_left": weighted([r[f"overlap_left@{k}"] for r in rows]),
            "overlap_right": weighted([r[f"overlap_right@{k}"] for r in rows]),
            "random_left": weighted([k / r["out"] for r in rows]),
            "random_right": weighted([k / r["in"] for r in rows])}


def read_geometry(path: Path) -> list[dict[str, Any]]:
    """The rows of an `analysis/geometry.csv` (`lorasafe analyze`), numbers as floats."""
    import csv

    with open(path, newline="") as f:
        return [{k: (v if k in ("method", "module") else float(v)) for k, v in r.items()} for r in csv.DictReader(f)]
