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


def _open(path: Path) -> Any:
    """`safe_open` with a truncated, empty or foreign file reported as such (safetensors checks the header
    and that the header's tensors cover the file exactly, without reading the tensors)."""
    from safetensors import SafetensorError, safe_open

    try:
        return safe_open(str(path), framework="pt")
    except (SafetensorError, OSError) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise LorasafeError(f"{path} is not a readable safetensors file ({why}): it is truncated, corrupt or not "
                            "safetensors. Copy or download it again, or re-save the model with "
                            "save_pretrained(..., safe_serialization=True).") from None


def _read_index(index: Path, directory: Path) -> dict[str, Path]:
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        return {str(k): directory / str(v) for k, v in weight_map.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise LorasafeError(f"{index} is not a valid safetensors index ({type(e).__name__}: {e}); it needs a "
                            '"weight_map" object of tensor name -> file. Copy or download it again.') from None


def check_safetensors(directory: Path) -> list[Path]:
    """The safetensors files of a model or adapter directory, each checked readable (headers only, cheap);
    a missing shard named by the index, a truncated or a random-bytes file is a `LorasafeError`."""
    directory = Path(directory)
    files = sorted(directory.glob("*.safetensors"))
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        for name, f in _read_index(index, directory).items():
            if not f.is_file():
                raise LorasafeError(f"{index} places tensor {name!r} in {f.name}, which is missing from {directory}. "
                                    "Copy or download every shard of the model.")
    for f in files:
        with _open(f):
            pass
    return files


class SafetensorsReader:
    """Tensors by name from a directory of safetensors files, opened lazily."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        index = self.directory / "model.safetensors.index.json"
        if index.is_file():
            self._file_of = _read_index(index, self.directory)
        else:
            self._file_of = {}
            for f in sorted(self.directory.glob("*.safetensors")):
                with _open(f) as h:
                    self._file_of.update({k: f for k in h.keys()})
        if not self._file_of:
            raise LorasafeError(f"No safetensors weights found in {self.directory}.")

    def names(self) -> list[str]:
        return list(self._file_of)

    def __contains__(self, name: str) -> bool:
        return name in self._file_of

    def get(self, name: str) -> Any:
        from safetensors import SafetensorError

        if name not in self._file_of:
            raise LorasafeError(f"{self.directory} has no tensor {name!r}; is this checkpoint from the run's base model?")
        with _open(self._file_of[name]) as h:
            try:
                return h.get_tensor(name)
            except SafetensorError as e:
                raise LorasafeError(f"{self._file_of[name]}: tensor {name!r} cannot be read ({e}); the file is "
                                    "corrupt. Copy or download it again.") from None


def _adapter_config(path: Path) -> dict[str, Any]:
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:
        raise LorasafeError(f"{path} is not valid JSON ({e}); it is corrupt. Retrain the run or restore the "
                            "file.") from None
    if not isinstance(cfg, dict):
        raise LorasafeError(f"{path} must be a JSON object (PEFT's adapter config), not {type(cfg).__name__}.")
    return cfg


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
    cfg = _adapter_config(cfg_path)
    reader = SafetensorsReader(Path(directory))
    out = []
    for name in reader.names():
        if not name.endswith(".lora_A.weight"):
            continue
        module = name.removesuffix(".lora_A.weight").removeprefix(PEFT_PREFIX)
        try:
            rank = int((cfg.get("rank_pattern") or {}).get(module, cfg["r"]))
            alpha = float((cfg.get("alpha_pattern") or {}).get(module, cfg["lora_alpha"]))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise LorasafeError(f"{cfg_path} does not give module {module}'s rank and alpha ({type(e).__name__}: "
                                f"{e}); it needs numeric `r` and `lora_alpha` as PEFT writes them.") from None
        if rank < 1:
            raise LorasafeError(f"{cfg_path}: module {module} has rank {rank}; a LoRA rank is at least 1.")
        scale = alpha / rank ** 0.5 if cfg.get("use_rslora") else alpha / rank
        b_name = name.replace(".lora_A.", ".lora_B.")
        if b_name not in reader:
            raise LorasafeError(f"{directory} has {name} but not its pair {b_name}; the adapter is incomplete.")
        out.append(AdapterFactors(module, reader.get(name), reader.get(b_name), scale))
    if not out:
        raise LorasafeError(f"{directory} holds no LoRA factors (no *.lora_A.weight tensors).")
    return out
