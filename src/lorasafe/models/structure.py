"""A model's shape without the model: its linear modules, fused expert parameters and parameter counts.

Targets (models/targets.py) are resolved from a `ModelStructure`. It is measured from the model built
on the meta device (no weights; exact for any architecture transformers knows) and kept as JSON, keyed
by the sha256 of the model's config.json: beside a config-only copy (`structure.json`, written by
`lorasafe model structure DIR` and checked against a fresh measurement by the tests) and in the cache
(`$LORASAFE_CACHE/structures`) for any other model. A known structure answers `lorasafe targets` and
`sweep plan` without importing torch or transformers' modelling code, which costs ~4 s per process.
Must not import torch at module level.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("lorasafe")
FILE = "structure.json"
_FORMAT = 1


@dataclass(frozen=True)
class ModelStructure:
    model_type: str
    num_hidden_layers: int
    total_params: int
    trainable_params: int  # parameters with requires_grad (what full fine-tuning trains)
    linears: dict[str, tuple[int, int]]  # module name -> (out_features, in_features)
    experts: dict[str, tuple[int, ...]]  # 3-D parameter name -> shape (fused MoE expert weights)

    @classmethod
    def measure(cls, config: Any, model: Any | None = None) -> "ModelStructure":
        """Read the structure off `model`, or off the model built from `config` on the meta device."""
        model = model if model is not None else meta_model(config)
        params = list(model.named_parameters())
        return cls(
            model_type=config.model_type,
            num_hidden_layers=config.num_hidden_layers,
            total_params=sum(p.numel() for _, p in params),
            trainable_params=sum(p.numel() for _, p in params if p.requires_grad),
            linears={n: (m.out_features, m.in_features) for n, m in model.named_modules()
                     if hasattr(m, "in_features") and hasattr(m, "out_features")},
            experts={n: tuple(p.shape) for n, p in params if p.dim() == 3},
        )

    def to_json(self, config_sha256: str) -> str:
        from importlib.metadata import version

        body = {"format": _FORMAT, "config_sha256": config_sha256, "measured_with": f"transformers {version('transformers')}",
                **asdict(self)}
        return json.dumps(body, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str, config_sha256: str) -> "ModelStructure | None":
        """The structure stored in `text` if it was measured from this very config.json, else None."""
        try:
            d = json.loads(text)
            if d.get("format") != _FORMAT or d.get("config_sha256") != config_sha256:
                return None
            return cls(d["model_type"], int(d["num_hidden_layers"]), int(d["total_params"]), int(d["trainable_params"]),
                       {k: tuple(v) for k, v in d["linears"].items()}, {k: tuple(v) for k, v in d["experts"].items()})
        except (ValueError, KeyError, TypeError, AttributeError):
            return None  # a damaged or foreign file is not an answer: measure again


def meta_model(config: Any) -> Any:
    """The model built from `config` on the meta device: structure and shapes, no weights."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def config_sha256(config_json: Path) -> str:
    return hashlib.sha256(config_json.read_bytes()).hexdigest()


def _cached_file(sha: str) -> Path:
    from lorasafe.models.gguf import cache_root

    return cache_root() / "structures" / f"{sha}.json"


def known_structure(model_dir: Path) -> ModelStructure | None:
    """The stored structure of the model whose config.json is in `model_dir`: its own structure.json, else
    the cache; None when neither was measured from this config.json."""
    config_json = model_dir / "config.json"
    if not config_json.is_file():
        return None
    sha = config_sha256(config_json)
    for candidate in (model_dir / FILE, _cached_file(sha)):
        if candidate.is_file():
            found = ModelStructure.from_json(candidate.read_text(encoding="utf-8"), sha)
            if found is not None:
                return found
    return None


def remember(model_dir: Path, structure: ModelStructure) -> None:
    """Keep a measured structure in the cache (best effort: a read-only cache only costs the next run time)."""
    config_json = model_dir / "config.json"
    if not config_json.is_file():
        return
    sha = config_sha256(config_json)
    target = _cached_file(sha)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(structure.to_json(sha), encoding="utf-8")
        tmp.replace(target)
    except OSError as e:
        log.debug("could not cache the model structure in %s: %s", target, e)


def write_structure(model_dir: Path) -> tuple[Path, ModelStructure]:
    """Measure the model of `model_dir` (config.json; no weights needed) and write `structure.json` beside it."""
    from transformers import AutoConfig

    config_json = model_dir / "config.json"
    structure = ModelStructure.measure(AutoConfig.from_pretrained(str(model_dir)))
    out = model_dir / FILE
    out.write_text(structure.to_json(config_sha256(config_json)), encoding="utf-8")
    return out, structure
