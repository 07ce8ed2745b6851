"""`lorasafe merge RUN`: a LoRA run written as a standard model, optionally projected away from W0.

Owns merging: W = W0 + P(ΔW), where ΔW = s·B·A comes from the run's final adapter and P removes
the part of ΔW inside W0's top-k singular subspaces (left: (I − U_kU_kᵀ)ΔW, right: ΔW(I − V_kV_kᵀ),
both: the two together); plain merge (no k) is the default and equals the adapter's function. The
sum is formed in float64 and cast once to the run's precision. Writes safetensors, the config,
the tokenizer and its chat template unchanged, and `merge.json` recording what was removed.
Evaluation never needs this (adapters are swapped, see models/pool.py); it is for shipping a model
and for the merge-time overlap reduction.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Literal

from lorasafe.errors import ConfigError

Side = Literal["left", "right", "both"]


def project_out(delta: Any, w0: Any, k: int, side: Side) -> Any:
    """ΔW with its part in W0's top-k left/right/both singular subspaces removed (float64)."""
    from lorasafe.geometry import top_subspaces

    sub = top_subspaces(w0, k)
    d = delta.double()
    if side in ("left", "both"):
        d = d - sub.U @ (sub.U.T @ d)
    if side in ("right", "both"):
        d = d - (d @ sub.V) @ sub.V.T
    return d


def merge_run(run: Path, out: Path, k: int | None = None, side: Side = "left",
              log: Callable[[str], None] = print) -> Path:
    """Write the merged model of a finished LoRA run to `out`; returns `out`."""
    import torch

    from lorasafe.geometry import LowRank
    from lorasafe.models.loading import load_model, load_tokenizer
    from lorasafe.models.weights import read_adapter
    from lorasafe.runs.rundir import trained_weights

    cfg, weights = trained_weights(run)
    if cfg.adapter.method != "lora":
        raise ConfigError(
            f"{run} is a full-fine-tuning run: its checkpoint {weights} already is a standalone model, and the "
            "merge-time projection works on LoRA updates only (a full update is not low-rank). Merge a LoRA run, "
            "or use the checkpoint directory as it is.")
    if side not in ("left", "right", "both"):
        raise ConfigError(f"--side must be left, right or both, not {side!r}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} exists and is not empty; merging never overwrites. Choose another --out.")
    # On the CPU whatever the run used: merging is one pass of additions, and a GPU may not hold a second copy.
    model = load_model(cfg.model.model_copy(update={"device": "cpu"}))
    params = dict(model.named_parameters())
    record: list[dict[str, Any]] = []
    for f in read_adapter(weights):
        param = params[f.module + ".weight"]
        w0 = param.detach()
        delta = LowRank(f.B, f.A, f.scale).dense()
        kept = delta
        if k is not None:
            if k > min(w0.shape):
                raise ConfigError(f"--project-out {k} is larger than module {f.module} allows (weight "
                                  f"{tuple(w0.shape)}, so k <= {min(w0.shape)}); pass a smaller k.")
            kept = project_out(delta, w0, k, side)
        total = float(delta.pow(2).sum())
        record.append({"module": f.module, "removed_share": 1 - float(kept.pow(2).sum()) / total if total else 0.0})
        with torch.no_grad():
            param.copy_((w0.double() + kept).to(param.dtype))
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    load_tokenizer(cfg.model).save_pretrained(str(out))  # the same tokenizer and chat template
    (out / "merge.json").write_text(json.dumps({
        "run": str(Path(run).resolve()), "adapter": str(weights), "base": cfg.model.path,
        "project_out_k": k, "side": side if k is not None else None, "precision": cfg.model.precision,
        "modules": record}, indent=1) + "\n")
    mean = sum(r["removed_share"] for r in record) / len(record)
    log(f"merged {len(record)} modules into {out}" + (f"; projection removed {mean:.1%} of ‖ΔW‖² on average"
                                                       if k is not None else ""))
    return out
