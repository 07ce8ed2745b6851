"""A study: several variants of one experiment, run on one loaded base model, reported together.

Every variant is validated (config and targets) before anything runs; then each runs through the
experiment stages in its own run directory under `<out>/variants/<label>`, sharing the tokenizer
and base model. A trained variant also gets its weight geometry (`analysis/`); a merge variant
evaluates the merged (optionally projected) model of an earlier LoRA variant, written into its own
run directory. The demo is a study.
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
              source: str = "study") -> list[dict[str, Any]]:
    """Run every variant (resuming finished work) and return one metrics row per variant."""
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
    rows = []
    for i, (label, cfg) in enumerate(variants, start=1):
        log(f"[{i}/{len(variants)}] {label}")
        run_dir = out / "variants" / slug(label)
        if label in merges:
            _merge_variant(out, label, merges[label], log)
        ctx = contexts.setdefault(BaseContext.key(cfg), BaseContext(cfg))
        row = {"label": label, **Experiment(cfg, run_dir, ctx, log=log, progress=progress).run_all()}
        if label in merges:  # its experiment sees a plain model; the row describes the update it carries
            src = next(r for r in rows if r["label"] == merges[label].source)
            row.update(method=f"{src['method']}+merge", learning_rate=src.get("learning_rate"),
                       trainable_params=src.get("trainable_params"), merged_from=src["label"])
        if cfg.adapter.method != "none":
            row["geometry"] = _geometry(run_dir, study.analysis_k, log)
        rows.append(row)
    write_json_atomic(out / "metrics.json", {"study": study.name, "wall_s": round(time.perf_counter() - t0, 1), "rows": rows})
    return rows


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
