"""`lorasafe analyze RUN`: the geometry of a run's weight update against its base weights.

Owns the walk over a finished run: for every adapted (layer, module), ΔW against W0 (LoRA from its
factors, never materialised; full fine-tuning as the dense difference of the safetensors), the norms,
stable rank, overlap with W0's top-k singular subspaces and the principal angle of ΔW's leading
direction to them. Writes `analysis/geometry.csv` and its plots into the run directory. The maths
lives in `lorasafe.geometry`; tensors are read one matrix at a time (`models/weights.py`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from lorasafe.config.schema import ExperimentConfig
from lorasafe.errors import ConfigError, LorasafeError
from lorasafe.runs.rundir import trained_weights

DEFAULT_KS = (1, 8, 32)
SIDES = ("left", "right", "both")


@dataclass(frozen=True)
class ModuleUpdate:
    layer: int
    module: str  # canonical name: q, k, v, o, gate, up, down
    path: str  # module path in the plain model
    w0: Any  # the base weight (out × in)
    update: Any  # geometry.Update


def module_updates(cfg: ExperimentConfig, weights: Path) -> Iterator[ModuleUpdate]:
    """ΔW for every adapted module of the run, in layer order."""
    import torch

    from lorasafe.geometry import Dense, LowRank
    from lorasafe.models.families import family_for
    from lorasafe.models.loading import load_config as load_model_config
    from lorasafe.models.weights import SafetensorsReader, base_weights_dir, read_adapter

    mcfg = load_model_config(cfg.model)
    family = family_for(mcfg.model_type)
    where = {family.module_path(i, m): (i, m) for i in range(mcfg.num_hidden_layers) for m in family.modules}
    base = SafetensorsReader(base_weights_dir(cfg.model.path))
    if cfg.adapter.method == "lora":
        items = []
        for f in read_adapter(weights):
            if f.module not in where:
                raise LorasafeError(
                    f"adapter module {f.module} is not a decoder-layer projection of {cfg.model.path}: weight geometry "
                    "covers LoRA on linear projections and full fine-tuning, not LoRA on MoE expert parameters yet")
            items.append((*where[f.module], f))
        for layer, module, f in sorted(items, key=lambda t: (t[0], list(family.modules).index(t[1]))):
            w0 = base.get(f.module + ".weight").float()
            yield ModuleUpdate(layer, module, f.module, w0, LowRank(f.B.float(), f.A.float(), f.scale))
        return
    tuned = SafetensorsReader(weights)
    for path, (layer, module) in where.items():
        w0 = base.get(path + ".weight").float()
        yield ModuleUpdate(layer, module, path, w0, Dense(tuned.get(path + ".weight").float() - w0))


def measure(mu: ModuleUpdate, ks: tuple[int, ...]) -> dict[str, Any]:
    """One CSV row: norms, stable rank, and per k the overlaps and the leading direction's angle."""
    from lorasafe.geometry import overlap, principal_angles, top_subspaces
    from lorasafe.geometry.update import stable_rank

    if max(ks) > min(mu.w0.shape):
        raise ConfigError(f"k={max(ks)} is larger than module {mu.path} allows: its weight is "
                          f"{tuple(mu.w0.shape)}, so the top-k singular subspace needs k <= {min(mu.w0.shape)}. "
                          "Pass smaller values, e.g. --k 1,8.")
    sub = top_subspaces(mu.w0, max(ks))
    u = mu.update
    row: dict[str, Any] = {"layer": mu.layer, "module": mu.module, "out": u.shape[0], "in": u.shape[1],
                           "w0_fro": float(mu.w0.double().norm()), "fro": u.frobenius(), "spectral": u.spectral(),
                           "stable_rank": stable_rank(u)}
    lead = u.column_basis(1) if row["fro"] > 0 else None
    for k in ks:
        top = sub.top(k)
        for side in SIDES:
            row[f"overlap_{side}@{k}"] = overlap(u, top, side)
        row[f"angle_deg@{k}"] = math.degrees(principal_angles(lead, top.U)[0]) if lead is not None else float("nan")
    return row


def analyze_run(run: Path, ks: tuple[int, ...] = DEFAULT_KS, log: Callable[[str], None] = print,
                plots: bool = True, checkpoint: str | None = None) -> Path:
    """Write `<run>/analysis/geometry.csv` (+ plots) for the final checkpoint, or
    `<run>/analysis/<checkpoint>/geometry.csv` for an earlier one; returns the CSV path."""
    cfg, weights = trained_weights(run, checkpoint)
    ks = tuple(sorted(set(ks)))
    if not ks or ks[0] < 1:
        raise ConfigError(f"--k needs positive integers, got {ks}")
    rows = [{"method": cfg.adapter.method, **measure(mu, ks)} for mu in module_updates(cfg, weights)]
    out = Path(run) / "analysis" / (checkpoint or "")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "geometry.csv"
    from lorasafe.reports.tidy import write_csv

    write_csv(rows, path)
    log(f"{len(rows)} modules -> {path}")
    if plots:
        from lorasafe.reports.geometry_plot import overlap_by_layer_plot, stable_rank_plot

        stable_rank_plot({cfg.name: rows}, out / "stable_rank.png", f"{cfg.name}: stable rank of ΔW by layer")
        overlap_by_layer_plot({cfg.name: rows}, out / "overlap.png", max(ks),
                              f"{cfg.name}: overlap of ΔW with W0's top-{max(ks)} left singular subspace")
    return path
