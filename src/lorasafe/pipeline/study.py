"""A study: several variants of one experiment, run on one loaded base model, reported together.

Every variant is validated (config and targets) before anything runs; then each runs through the
experiment stages in its own run directory under `<out>/variants/<label>`, sharing the tokenizer
and base model. The demo is a study.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any, Callable

from lorasafe.config.loader import apply_override, dump_yaml, validate
from lorasafe.config.schema import ExperimentConfig, StudyConfig
from lorasafe.data.jsonl import write_json_atomic, write_text_atomic
from lorasafe.errors import ConfigError, LorasafeError
from lorasafe.pipeline.context import BaseContext
from lorasafe.pipeline.experiment import Experiment


def variant_configs(study: StudyConfig, source: str = "study") -> list[tuple[str, ExperimentConfig]]:
    base = study.experiment.model_dump(mode="json")
    out = []
    for v in study.variants:
        raw = copy.deepcopy(base)
        for key, value in v.set.items():
            apply_override(raw, key, value)
        raw["name"] = v.label
        out.append((v.label, validate(ExperimentConfig, raw, f"{source}, variant {v.label!r}")))
    return out


def slug(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in label).strip("-") or "variant"


def run_study(study: StudyConfig, out: Path, log: Callable[[str], None] = print, progress: bool = True,
              source: str = "study") -> list[dict[str, Any]]:
    """Run every variant (resuming finished work) and return one metrics row per variant."""
    t0 = time.perf_counter()
    out = Path(out)
    variants = variant_configs(study, source)
    contexts: dict[str, BaseContext] = {}
    for label, cfg in variants:  # resolve every target before any weights load
        ctx = contexts.setdefault(BaseContext.key(cfg), BaseContext(cfg))
        try:
            ctx.plan(cfg.adapter)
        except LorasafeError as e:
            raise ConfigError(f"{source}, variant {label!r}: {e}") from None
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "study.yaml", dump_yaml(study))
    rows = []
    for i, (label, cfg) in enumerate(variants, start=1):
        log(f"[{i}/{len(variants)}] {label}")
        exp = Experiment(cfg, out / "variants" / slug(label), contexts[BaseContext.key(cfg)], log=log, progress=progress)
        rows.append({"label": label, **exp.run_all()})
    write_json_atomic(out / "metrics.json", {"study": study.name, "wall_s": round(time.perf_counter() - t0, 1), "rows": rows})
    return rows
