"""The sweep file and its expansion into cells (one resolved experiment config each).

A sweep is a base experiment plus axes over dotted config paths: `grid` axes are crossed,
`zip` axes advance together (equal lengths) and are crossed with the grid. A cell's identity is
the hash of its resolved config, so two cells that resolve to the same config run once, and a
sweep extended with new axis values keeps the ids of the old cells. Every cell is validated before
anything runs; an unknown path gets the nearest valid key, a bad value names its cell.

The operating point is declared here, before the sweep runs: per group of cells that differ only
in seed and the `select_over` axes (e.g. the learning rate), the report picks the (select_over
values, checkpoint) with the best `maximise` metric among those whose seed means meet every
constraint (by default refused >= 0.9 and invalid <= 0.05: a broken output is never a refusal),
and shows the whole trajectories beside it.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator

from lorasafe.config.loader import apply_override, config_hash, validate
from lorasafe.config.schema import Constraint, ExperimentConfig, OperatingPoint  # noqa: F401 (re-exported)
from lorasafe.errors import ConfigError

class Axis(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="dotted config path, e.g. adapter.rank")
    values: list[Any] = Field(min_length=1)


class SweepConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = "sweep"
    experiment: ExperimentConfig = Field(default_factory=ExperimentConfig)
    grid: list[Axis] = Field(default_factory=list)
    zip: list[Axis] = Field(default_factory=list)
    operating_point: OperatingPoint = Field(default_factory=OperatingPoint)
    analysis_k: list[PositiveInt] | None = Field(None, description=(
        "subspace sizes: when set, every checkpoint of every trained cell gets its weight geometry "
        "(analysis/<checkpoint>/geometry.csv) and the report a geometry table at the operating points"))

    @model_validator(mode="after")
    def _axes(self) -> "SweepConfig":
        paths = [a.path for a in (*self.grid, *self.zip)]
        dup = {p for p in paths if paths.count(p) > 1}
        if dup:
            raise ValueError(f"an axis path appears twice: {', '.join(sorted(dup))}")
        if len({len(a.values) for a in self.zip}) > 1:
            raise ValueError("zip axes advance together, so they need equal lengths: "
                             + ", ".join(f"{a.path} has {len(a.values)}" for a in self.zip))
        if not paths:
            raise ValueError("a sweep needs at least one axis under grid or zip")
        return self


@dataclass(frozen=True)
class Cell:
    id: str  # the first 12 hex digits of the resolved config's hash
    values: dict[str, Any]  # axis path -> value
    cfg: ExperimentConfig
    also: list[dict[str, Any]] = field(default_factory=list)  # other axis values resolving to this config

    def label(self) -> str:
        return ", ".join(f"{k}={short(v)}" for k, v in self.values.items())


def short(v: Any) -> str:
    if isinstance(v, list):
        return "[" + ",".join(short(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}:{short(x)}" for k, x in v.items()) + "}"
    return f"{v:g}" if isinstance(v, float) else str(v)


def combinations(sweep: SweepConfig) -> list[dict[str, Any]]:
    grid = [[(a.path, v) for v in a.values] for a in sweep.grid]
    zipped = [list(zip(*[[(a.path, v) for v in a.values] for a in sweep.zip]))] if sweep.zip else []
    out = []
    for combo in itertools.product(*grid, *zipped):
        values: dict[str, Any] = {}
        for part in combo:
            for path, v in (part if isinstance(part[0], tuple) else (part,)):
                values[path] = v
        out.append(values)
    return out


def canonical(cfg: ExperimentConfig) -> ExperimentConfig:
    """The config with the fields that cannot affect its run reset to their defaults, so that equal runs
    hash equal: LoRA settings for full fine-tuning and the base, training settings for the base."""
    if cfg.adapter.method == "lora":
        return cfg
    adapter = type(cfg.adapter)(method=cfg.adapter.method)
    update: dict[str, Any] = {"adapter": adapter}
    if cfg.adapter.method == "none":
        update["training"] = type(cfg.training)()
        update["data"] = cfg.data.model_copy(update={"train": []})
    return cfg.model_copy(update=update)


def ignored(path: str, method: str) -> bool:
    """Whether `canonical` resets the field at `path` for this method."""
    if method == "lora":
        return False
    if path.startswith("adapter.") and path != "adapter.method":
        return True
    return method == "none" and (path.startswith("training.") or path == "data.train")


def expand(sweep: SweepConfig, source: str = "sweep") -> list[Cell]:
    """Every distinct cell, in axis order; a bad path or value is an error naming the cell."""
    base = sweep.experiment.model_dump(mode="json")
    base["name"] = sweep.name  # part of the hash: cells of one sweep share it, so ids depend on the axes only
    cells: dict[str, Cell] = {}
    for values in combinations(sweep):
        raw = copy.deepcopy(base)
        for path, v in values.items():
            apply_override(raw, path, copy.deepcopy(v))
        where = ", ".join(f"{k}={short(v)}" for k, v in values.items())
        cfg = canonical(validate(ExperimentConfig, raw, f"{source}, cell ({where})"))
        # An axis the canonical form ignores (rank for full fine-tuning) does not describe the run.
        values = {k: v for k, v in values.items() if not ignored(k, cfg.adapter.method)}
        cid = config_hash(cfg)[:12]
        if cid in cells:
            cells[cid].also.append(values)
            continue
        cells[cid] = Cell(cid, values, cfg)
    return list(cells.values())


def check_select_over(sweep: SweepConfig) -> None:
    paths = {a.path for a in (*sweep.grid, *sweep.zip)}
    missing = [p for p in sweep.operating_point.select_over if p not in paths]
    if missing:
        raise ConfigError(f"operating_point.select_over names {', '.join(missing)}, which no axis varies; "
                          f"use axis paths ({', '.join(sorted(paths))}) or an empty list.")
