"""A study: several variants of one experiment, run on one loaded base model, reported together.

Every variant is validated (config and targets) before anything runs; then each runs through the
experiment stages in its own run directory under `<out>/variants/<label>`, one after another sharing
the tokenizer and base model, or `jobs` at a time in worker processes (pipeline/workers.py). A trained
variant also gets its weight geometry (`analysis/`); a merge variant evaluates the merged (optionally
projected) model of an earlier LoRA variant, written into its own run directory. The demo is a study.
"""

from __future__ import annotations

import copy
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from lorasafe.config.loader import apply_override, dump_yaml, validate
from lorasafe.config.schema import ExperimentConfig, MergeSpec, StudyConfig
from lorasafe.data.jsonl import write_json_atomic, write_text_atomic
from lorasafe.errors import ConfigError, LorasafeError
from lorasafe.pipeline.context import BaseContext
from lorasafe.pipeline.experiment import Experiment, check_inputs
from lorasafe.runs.rundir import RunDir, slug


REPORT_K = 8  # the subspace size the study report's geometry table uses (when analysed)


def merged_dir(out: Path, label: str) -> Path:
    return (Path(out) / "variants" / slug(label) / "merged").resolve()


def variant_configs(study: StudyConfig, source: str = "study", out: Path = Path(".")) -> list[tuple[str, ExperimentConfig]]:
    base = study.experiment.model_dump(mode="json")
    result, raws = [], {}
    for v in study.variants:
        if v.merge is not None:
            raw = copy.deepcopy(raws[v.merge.source])
            if raw["adapter"]["method"] != "lora":
                raise ConfigError(f"{source}, variant {v.label!r}: merge.source {v.merge.source!r} is not a LoRA "
                                  "variant; only LoRA updates are merged (and projected). Pick a LoRA variant.")
            # The merged model is a plain model: evaluated like the base, with no adapter and no training.
            raw["model"]["path"] = str(merged_dir(out, v.label))
            raw["adapter"]["method"] = "none"
            raw["training"]["regulariser"] = None
        else:
            raw = copy.deepcopy(base)
            for key, value in v.set.items():
                apply_override(raw, key, value)
        raw["name"] = v.label
        raws[v.label] = raw
        result.append((v.label, validate(ExperimentConfig, raw, f"{source}, variant {v.label!r}")))
    return result


def run_study(study: StudyConfig, out: Path, log: Callable[[str], None] = print, progress: bool = True,
              source: str = "study", jobs: int = 1) -> list[dict[str, Any]]:
    """Run every variant (resuming finished work) and return one metrics row per variant; `jobs` > 1 runs
    that many variants at a time in worker processes (0: as many as pays on this machine, pipeline/workers.py)."""
    from lorasafe.pipeline.workers import resolve_jobs, runs_on_cpu
    from lorasafe.training.distributed import ranks

    if ranks().world > 1:
        raise ConfigError(f"{source}: studies (and the demo) run in one process; under `accelerate launch` run each "
                          "variant as its own experiment (`lorasafe run`, which trains data-parallel and evaluates "
                          "once), or launch the study without accelerate.")
    t0 = time.perf_counter()
    out = Path(out)
    variants = variant_configs(study, source, out)
    merges = {v.label: v.merge for v in study.variants if v.merge is not None}
    contexts: dict[str, BaseContext] = {}
    for label, cfg in variants:  # resolve every target before any weights load
        if label in merges:  # its model is written by an earlier variant's merge
            continue
        ctx = contexts.setdefault(BaseContext.key(cfg), BaseContext(cfg))
        try:
            ctx.plan(cfg.adapter)
        except LorasafeError as e:
            raise ConfigError(f"{source}, variant {label!r}: {e}") from None
    checked: set[str] = set()
    for label, cfg in variants:  # models, data, judges and run directories too, before anything is written
        ctx = None if label in merges else contexts[BaseContext.key(cfg)]
        try:
            check_inputs(cfg, ctx, checked)
            RunDir.check(out / "variants" / slug(label), cfg)
        except LorasafeError as e:
            raise type(e)(f"{source}, variant {label!r}: {e}") from None
    if out.exists() and not out.is_dir():
        raise LorasafeError(f"{out} is a file, not a study directory. Choose another --out, or move that file away.")
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "study.yaml", dump_yaml(study))
    jobs = resolve_jobs(jobs, len(variants), runs_on_cpu(c for label, c in variants if label not in merges))
    if jobs == 1:
        rows = []
        for i, (label, cfg) in enumerate(variants, start=1):
            log(f"[{i}/{len(variants)}] {label}")
            ctx = contexts.setdefault(BaseContext.key(cfg), BaseContext(cfg))
            rows.append(run_variant(out, label, cfg, merges.get(label), study.analysis_k, ctx, log, progress))
    else:
        rows = _run_in_workers(out, variants, merges, study.analysis_k, jobs, log)
    by_label = {r["label"]: r for r in rows}
    for row in rows:
        if row["label"] in merges:  # its experiment sees a plain model; the row describes the update it carries
            src = by_label[merges[row["label"]].source]
            row.update(method=f"{src['method']}+merge", learning_rate=src.get("learning_rate"),
                       trainable_params=src.get("trainable_params"), merged_from=src["label"])
    write_json_atomic(out / "metrics.json", {"study": study.name, "wall_s": round(time.perf_counter() - t0, 1),
                                             "jobs": jobs, "rows": rows})
    return rows


def run_variant(out: Path, label: str, cfg: ExperimentConfig, merge: MergeSpec | None, ks: list[int],
                ctx: BaseContext | None = None, log: Callable[[str], None] = print, progress: bool = False) -> dict[str, Any]:
    """One variant into `<out>/variants/<label>` (its merge first, when it is one); its metrics row. Runs in a
    worker process too, where it builds its own base context."""
    run_dir = out / "variants" / slug(label)
    if merge is not None:
        _merge_variant(out, label, merge, log)
    ctx = ctx or BaseContext(cfg)
    row = {"label": label, **Experiment(cfg, run_dir, ctx, log=log, progress=progress).run_all()}
    if cfg.adapter.method != "none":
        row["geometry"] = _geometry(run_dir, ks, log)
    return row


def _worker_variant(out: Path, label: str, cfg: ExperimentConfig, merge: MergeSpec | None, ks: list[int]) -> dict[str, Any]:
    from lorasafe.pipeline.workers import prefixed

    return run_variant(out, label, cfg, merge, ks, log=prefixed(label))


def _run_in_workers(out: Path, variants: list[tuple[str, ExperimentConfig]], merges: dict[str, MergeSpec],
                    ks: list[int], jobs: int, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Every variant in `jobs` worker processes, a merge once its source has finished; rows in variant order.
    A variant that fails stops new ones from starting; those running finish (their results are kept for the
    rerun, which resumes), then the first failure is raised."""
    from concurrent.futures import FIRST_COMPLETED, wait
    from concurrent.futures.process import BrokenProcessPool

    from lorasafe.pipeline.workers import pool, threads_per_job

    log(f"{len(variants)} variants, {jobs} at a time in worker processes of {threads_per_job(jobs)} thread(s) each")
    t0 = time.perf_counter()
    rows: dict[str, dict[str, Any]] = {}
    waiting = [(label, cfg) for label, cfg in variants]
    failure: BaseException | None = None
    with pool(jobs) as workers:
        running: dict[Any, str] = {}
        while waiting or running:
            if failure is None:  # start every variant whose inputs exist (a merge's source has finished)
                for label, cfg in [(lb, c) for lb, c in waiting if lb not in merges or merges[lb].source in rows]:
                    running[workers.submit(_worker_variant, out, label, cfg, merges.get(label), ks)] = label
                    waiting.remove((label, cfg))
            elif not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                label = running.pop(future)
                try:
                    rows[label] = future.result()
                    log(f"[{len(rows)}/{len(variants)}] {label} finished ({time.perf_counter() - t0:.0f} s)")
                except BrokenProcessPool:  # the OS killed a worker (out of memory, most often): no error of its own
                    log(f"{label}: its worker process died")
                    failure = failure or LorasafeError(
                        f"a worker process died while running variant {label!r} (killed by the system: out of memory "
                        f"is the usual cause with {jobs} copies of the model). Finished variants are kept in {out}; "
                        "rerun the same command with fewer --jobs (or --jobs 1) and it resumes.")
                except BaseException as e:  # noqa: BLE001 - kept and raised once the running variants finished
                    log(f"{label}: failed ({type(e).__name__})")
                    failure = failure or e
    if failure is not None:
        raise failure
    return [rows[label] for label, _ in variants]


def _merge_variant(out: Path, label: str, spec: MergeSpec, log: Callable[[str], None]) -> None:
    """Write the merged model of `spec.source` unless a finished one (its merge.json) is there."""
    from lorasafe.models.merge import merge_run

    target = merged_dir(out, label)
    if (target / "merge.json").is_file():
        return
    if target.exists():  # a merge killed half-way: start it again
        shutil.rmtree(target)
    merge_run(out / "variants" / slug(spec.source), target, spec.project_out, spec.side, log=log)


def _geometry(run_dir: Path, ks: list[int], log: Callable[[str], None]) -> dict[str, Any] | None:
    """The run's geometry summary, analysing it first unless analysis/geometry.csv exists; None (logged) when
    the update cannot be analysed (LoRA on MoE expert parameters), so the study's results stand without it."""
    from lorasafe.pipeline.analysis import analyze_run
    from lorasafe.reports.tidy import geometry_summary, read_geometry

    path = run_dir / "analysis" / "geometry.csv"
    if not path.is_file():
        try:
            analyze_run(run_dir, tuple(ks), log=log)
        except LorasafeError as e:
            log(f"{run_dir.name}: no weight geometry ({e})")
            return None
    return geometry_summary(read_geometry(path), REPORT_K if REPORT_K in ks else max(ks))
