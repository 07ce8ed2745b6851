"""Running a sweep: every cell through the experiment stages, resumable, failures isolated.

Each cell runs in `<out>/runs/<cell id>/` (the id is its config hash), so a killed sweep resumes
where it stopped and an extended sweep runs only its new cells. All cells share one `BaseContext`
per base model, hence one loaded base model per process. A cell that raises is recorded in its
`failed.json` (error and traceback) and the sweep goes on; the next `sweep run` retries it.
Targets of every cell are resolved before anything runs.
"""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from lorasafe.config.loader import dump_yaml
from lorasafe.data.jsonl import write_json_atomic, write_text_atomic
from lorasafe.errors import ConfigError, LorasafeError
from lorasafe.pipeline.context import BaseContext
from lorasafe.sweeps.executors import Executor, LocalExecutor
from lorasafe.sweeps.spec import Cell, SweepConfig, check_select_over, expand

Log = Callable[[str], None]


@dataclass
class CellResult:
    cell: Cell
    status: str  # done | skipped (finished earlier) | failed
    metrics: dict[str, Any] | None
    error: str | None = None


def plan(sweep: SweepConfig, source: str = "sweep") -> tuple[list[Cell], dict[str, int]]:
    """The cells and their trainable-parameter counts, from model configs alone (nothing loads)."""
    cells = expand(sweep, source)  # unknown paths and bad values first: they are the likelier mistakes
    check_select_over(sweep)
    contexts: dict[str, BaseContext] = {}
    params = {}
    for cell in cells:
        ctx = contexts.setdefault(BaseContext.key(cell.cfg), BaseContext(cell.cfg))
        try:
            params[cell.id] = ctx.plan(cell.cfg.adapter).trainable_params
        except LorasafeError as e:
            raise ConfigError(f"{source}, cell ({cell.label()}): {e}") from None
    return cells, params


def run_dir(out: Path, cell: Cell) -> Path:
    return Path(out) / "runs" / cell.id


def run_sweep(sweep: SweepConfig, out: Path, log: Log = print, progress: bool = True,
              source: str = "sweep", executor: Executor | None = None) -> list[CellResult]:
    """Every cell not finished yet, run by `executor` (default: one after another in this process)."""
    from lorasafe.pipeline.experiment import check_inputs
    from lorasafe.training.distributed import ranks

    if ranks().world > 1:
        raise ConfigError(f"{source}: a sweep runs its cells in one process; under `accelerate launch` run a cell "
                          "as its own experiment (`lorasafe run`, data-parallel training, evaluated once).")
    executor = executor or LocalExecutor()
    cells, params = plan(sweep, source)
    out = Path(out)
    contexts: dict[str, BaseContext] = {}
    checked: set[str] = set()
    for cell in cells:  # models, data and judges of every cell, before the sweep directory exists
        ctx = contexts.setdefault(BaseContext.key(cell.cfg), BaseContext(cell.cfg))
        try:
            check_inputs(cell.cfg, ctx, checked)
        except LorasafeError as e:
            raise type(e)(f"{source}, cell ({cell.label()}): {e}") from None
    if out.exists() and not out.is_dir():
        raise LorasafeError(f"{out} is a file, not a sweep directory. Choose another --out, or move that file away.")
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "sweep.yaml", dump_yaml(sweep))
    write_json_atomic(out / "plan.json", [{"id": c.id, "values": c.values, "also": c.also,
                                          "trainable_params": params[c.id]} for c in cells])
    t0 = time.perf_counter()
    results: dict[str, CellResult] = {}
    pending = []
    for i, cell in enumerate(cells, start=1):
        d = run_dir(out, cell)
        if (d / "metrics.json").is_file():  # the cell's identity is its config hash: finished on any executor
            log(f"[{i}/{len(cells)}] {cell.id} ({cell.label()}): finished earlier, skipped")
            results[cell.id] = CellResult(cell, "skipped", json.loads((d / "metrics.json").read_text()))
            _analyze_checkpoints(d, sweep.analysis_k, log)
        else:
            pending.append(cell)
    outcomes = executor.run(out, pending, sweep, contexts, log, progress)
    for cell, (status, metrics, error) in zip(pending, outcomes):
        results[cell.id] = CellResult(cell, status, metrics, error)
    ordered_results = [results[c.id] for c in cells]
    done = sum(r.status != "failed" for r in ordered_results)
    log(f"sweep {sweep.name}: {done}/{len(cells)} cells finished, {len(cells) - done} failed, "
        f"{time.perf_counter() - t0:.0f} s ({executor.name})")
    return ordered_results


def run_cell(out: Path, cell: Cell, sweep: SweepConfig, contexts: dict[str, BaseContext] | None = None,
             log: Log = print, progress: bool = False) -> tuple[str, dict[str, Any] | None, str | None]:
    """Run one cell into `out/runs/<id>` (resuming what it holds): (status, metrics, error). Any executor calls
    this, in this process or a worker; a failure is recorded in the cell's failed.json, never raised."""
    from lorasafe.pipeline.experiment import Experiment

    d = run_dir(out, cell)
    if (d / "metrics.json").is_file():
        return "skipped", json.loads((d / "metrics.json").read_text()), None
    contexts = {} if contexts is None else contexts
    ctx = contexts.setdefault(BaseContext.key(cell.cfg), BaseContext(cell.cfg))
    d.mkdir(parents=True, exist_ok=True)
    write_json_atomic(d / "cell.json", {"id": cell.id, "sweep": sweep.name, "values": cell.values, "also": cell.also})
    try:
        metrics = Experiment(cell.cfg, d, ctx, log=log, progress=progress).run_all()
    except Exception as e:  # noqa: BLE001 - one failed cell must not stop the others
        error = f"{type(e).__name__}: {e}"
        write_json_atomic(d / "failed.json", {"error": error, "traceback": traceback.format_exc(),
                                              "values": cell.values})
        log(f"{cell.id} ({cell.label()}): FAILED ({error}); recorded in {d / 'failed.json'}, the sweep goes on")
        return "failed", None, error
    (d / "failed.json").unlink(missing_ok=True)
    _analyze_checkpoints(d, sweep.analysis_k, log)
    return "done", metrics, None


def _analyze_checkpoints(run: Path, ks: list[int] | None, log: Log) -> None:
    """The weight geometry of every checkpoint of a finished, trained run, unless already written."""
    marker = run / "stages" / "train.json"
    if not ks or not marker.is_file():  # the base has no update; geometry off
        return
    from lorasafe.pipeline.analysis import analyze_run

    for rel in json.loads(marker.read_text())["checkpoints"]:
        name = Path(rel).name
        if not (run / "analysis" / name / "geometry.csv").is_file():
            analyze_run(run, tuple(ks), log=lambda m: None, plots=False, checkpoint=name)
    log(f"{run.name}: weight geometry of every checkpoint in {run / 'analysis'}")
