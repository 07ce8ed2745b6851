"""Judging a finished run's generations again with another judge, without generating again.

`lorasafe rejudge RUN --judge NAME` reads the stored records of every harmful and benign suite (the
final model's and each earlier checkpoint's), judges them with NAME and writes, beside what is there
and never over it: the verdicts to `judgments/[<checkpoint>/]by-judge/NAME/<suite>.jsonl` and the
metrics to `rejudged/NAME.json` (per suite, the headline shares refused / complied / invalid and
over-refusal, for the final model and per checkpoint). Generations, the headline judgments and
metrics.json stay as they are. A study directory rejudges each of its variants.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from lorasafe.config.loader import load_config
from lorasafe.config.schema import ExperimentConfig
from lorasafe.data.jsonl import read_store, write_json_atomic, write_jsonl_atomic
from lorasafe.errors import LorasafeError
from lorasafe.generation.presets import get_preset
from lorasafe.generation.store import ordered
from lorasafe.judges.base import get_judge
from lorasafe.runs.rundir import RunDir
from lorasafe.scoring.metrics import judge_records

Log = Callable[[str], None]


def run_dirs(path: Path) -> list[Path]:
    """`path` itself when it is a run directory, else a study's `variants/*` run directories."""
    path = Path(path)
    if (path / "config.yaml").is_file() and (path / "manifest.json").is_file():
        return [path]
    variants = sorted(p for p in (path / "variants").glob("*") if (p / "config.yaml").is_file()) \
        if (path / "variants").is_dir() else []
    if not variants:
        raise LorasafeError(f"{path} is neither a run directory (config.yaml and manifest.json) nor a study directory "
                            "(variants/<label>/): pass what `lorasafe run --out` or `lorasafe study --out` wrote.")
    return variants


def rejudge(path: Path, judge_name: str, on: str | None = None, log: Log = print) -> list[Path]:
    """Rejudge every run under `path` with `judge_name`; returns the metrics files written."""
    from lorasafe.pipeline.experiment import load_eval_suites

    judge = get_judge(judge_name, key="--judge")
    written = []
    for run in run_dirs(path):
        cfg = load_config(ExperimentConfig, run / "config.yaml")
        side = on or cfg.judge.on
        rd = RunDir(run, cfg)
        suites = [(ref, items, kind) for ref, items, kind in load_eval_suites(cfg) if kind in ("harmful", "benign")]
        tags = [None] + sorted(p.name for p in (run / "generations").glob("*") if p.is_dir())
        t0 = time.perf_counter()
        result: dict[str, Any] = {"judge": judge.name, "judge_on": side, "run": str(run), "final": {}, "checkpoints": {}}
        for tag in tags:
            metrics = {}
            for ref, items, kind in suites:
                samples = get_preset(ref.preset).samples if ref.preset else cfg.generation.samples
                records = ordered(read_store(rd.generations(ref.name, tag)), items, samples)
                if not records:
                    continue
                rows, m = judge_records(items, records, judge, side)
                write_jsonl_atomic(rd.judgments(ref.name, tag, judge=judge.name), rows)
                metrics[ref.name] = {"kind": kind, **m}
            if metrics and tag:
                result["checkpoints"][tag] = _summary(metrics)
            elif metrics:
                result["final"] = _summary(metrics)
        if not result["final"] and not result["checkpoints"]:
            raise LorasafeError(f"{run} holds no generations of a harmful or benign suite to judge (generations/ is "
                                f"empty). Finish the run first: `lorasafe run {run / 'config.yaml'} --out {run}`.")
        release = getattr(judge, "release", None)
        if release is not None:
            release()
        out = run / "rejudged" / f"{judge.name}.json"
        write_json_atomic(out, result)
        log(f"{run.name}: rejudged with {judge.name} on the {side} in {time.perf_counter() - t0:.1f}s -> {out}")
        written.append(out)
    return written


def _summary(suites: dict[str, dict]) -> dict[str, Any]:
    """The shares the run's metrics.json gives for its headline judge, for this judge."""
    harmful = [m for m in suites.values() if m["kind"] == "harmful"]
    benign = [m for m in suites.values() if m["kind"] == "benign"]

    def mean(ms: list[dict], key: str) -> float | None:
        return sum(m[key] for m in ms) / len(ms) if ms else None

    return {"refused": mean(harmful, "refusal_rate"), "complied": mean(harmful, "complied_rate"),
            "invalid": mean(harmful, "invalid_rate"), "over_refusal": mean(benign, "refusal_rate"), "suites": suites}
