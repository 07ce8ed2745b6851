"""Reading single tensors out of safetensors checkpoints without loading whole models.

Owns: finding a base model's weight files (a local directory, the mini model, or a hub id already
in the local cache or fetchable), the tensor-name -> file index (`model.safetensors.index.json` or a
scan of the headers), and LoRA adapter directories (factors per module, the scale from
`adapter_config.json`). Analysis and merging read one matrix at a time through this, so a 14B model
never has to fit in memory twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorasafe.errors import LorasafeError
from lorasafe.models.loading import resolve_path

PEFT_PREFIX = "base_model.model."


def base_weights_dir(path: str) -> Path:
    """The directory holding the base model's safetensors: local, the mini model, or the hub cache."""
    local = Path(resolve_path(path))
    if local.is_dir():
        if not any(local.glob("*.safetensors")):
            raise LorasafeError(f"{local} holds no *.safetensors files; the base weights are needed to compare a "
                                "fine-tuned model with them. Point model.path at a directory with the safetensors.")
        return local
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(path, allow_patterns=["*.safetensors", "*.json"]))
    except Exception as e:  # noqa: BLE001 - any hub failure means the same thing to the user
        raise LorasafeError(
            f"The base weights of {path!r} are not available here ({type(e).__name__}). Analysing or merging a run "
            "compares it with the base model, so they are needed: download the model on a machine with network "
            "access and set model.path to that local directory (e.g. --set model.path=/models/X)."
        ) from None


class SafetensorsReader:
    """Tensors by name from a directory of safetensors files, opened lazily."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        index = self.directory / "model.safetensors.index.json"
        if index.is_file():
            self._file_of = {k: self.directory / v for k, v in json.loads(index.read_text())["weight_map"].items()}
        else:
            from safetensors import safe_open

            self._file_of = {}
            for f in sorted(self.directory.glob("*.safetensors")):
                with safe_open(str(f), framework="pt") as h:
                    self._file_of.update({k: f for k in h.keys()})
        if not self._file_of:
            raise LorasafeError(f"No safetensors weights found in {self.directory}.")

    def names(self) -> list[str]:
        return list(self._file_of)

    def __contains__(self, name: str) -> bool:
        return name in self._file_of

    def get(self, name: str) -> Any:
        from safetensors import safe_open

        if name not in self._file_of:
            raise LorasafeError(f"{self.directory} has no tensor {name!r}; is this checkpoint from the run's base model?")
        with safe_open(str(self._file_of[name]), framework="pt") as h:
            return h.get_tensor(name)


@dataclass(frozen=True)
class AdapterFactors:
    """One LoRA module: A (r×in), B (out×r) and the scale alpha/r (alpha/√r with rsLoRA)."""

    module: str  # module path in the plain model, e.g. model.layers.2.mlp.up_proj
    A: Any
    B: Any
    scale: float


def read_adapter(directory: Path) -> list[AdapterFactors]:
    """Every LoRA module of a PEFT adapter directory, in file order."""
    cfg_path = Path(directory) / "adapter_config.json"
    if not cfg_path.is_file():
        raise LorasafeError(f"{directory} is not a LoRA adapter directory (no adapter_config.json).")
    cfg = json.loads(cfg_path.read_text())
    reader = SafetensorsReader(Path(directory))
    out = []
    for name in reader.names():
        if not name.endswith(".lora_A.weight"):
            continue
        module = name.removesuffix(".lora_A.weight").removeprefix(PEFT_PREFIX)
        rank = int(cfg.get("rank_pattern", {}).get(module, cfg["r"]))
        alpha = float(cfg.get("alpha_pattern", {}).get(module, cfg["lora_alpha"]))
        scale = alpha / rank ** 0.5 if cfg.get("use_rslora") else alpha / rank
        out.append(AdapterFactors(module, reader.get(name), reader.get(name.replace(".lora_A.", ".lora_B.")), scale))
    if not out:
        raise LorasafeError(f"{directory} holds no LoRA factors (no *.lora_A.weight tensors).")
    return out
