"""Loading configs, tokenizers and models: local directories, the embedded mini model, hub ids.

Policy, recorded per run: weights load from safetensors only; `trust_remote_code` stays off
unless the config turns it on; one precision for every method of a run.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from lorasafe.config.schema import ModelConfig
from lorasafe.errors import LorasafeError

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def mini_model_dir() -> Path:
    return Path(str(resources.files("lorasafe.mini") / "assets" / "model"))


def resolve_path(path: str) -> str:
    """'mini' -> the shipped mini model; a local directory as is; anything else is a hub id."""
    if path == "mini":
        d = mini_model_dir()
        if not (d / "config.json").is_file():
            raise LorasafeError(
                f"The embedded mini model is missing from {d}. Rebuild it with `lorasafe mini build` "
                "or reinstall lorasafe."
            )
        return str(d)
    return path


def _hub_hint(path: str, e: Exception) -> LorasafeError:
    return LorasafeError(
        f"Could not load {path!r} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). If it is a "
        "hub id, this machine needs network access to the Hugging Face hub (or set HF_HOME to a cache that "
        "holds it); if it is a local directory, check that it exists and holds config.json."
    )


def load_config(cfg: ModelConfig) -> Any:
    from transformers import AutoConfig

    path = resolve_path(cfg.path)
    try:
        return AutoConfig.from_pretrained(path, trust_remote_code=cfg.trust_remote_code)
    except (OSError, ValueError) as e:
        raise _hub_hint(path, e) from None


def load_tokenizer(cfg: ModelConfig) -> Any:
    from transformers import AutoTokenizer

    path = resolve_path(cfg.path)
    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=cfg.trust_remote_code)
    except (OSError, ValueError) as e:
        raise _hub_hint(path, e) from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(cfg: ModelConfig, path: str | None = None) -> Any:
    """The causal LM at `path` (default: the config's base model) in the run's precision."""
    import torch
    from transformers import AutoModelForCausalLM

    src = path or resolve_path(cfg.path)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            src, dtype=getattr(torch, DTYPES[cfg.precision]), use_safetensors=True,
            trust_remote_code=cfg.trust_remote_code,
        )
    except (OSError, ValueError) as e:
        raise _hub_hint(src, e) from None
    return model.to(resolve_device(cfg.device))


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise LorasafeError("model.device is cuda but torch sees no CUDA device; use model.device=auto or cpu, "
                            "or install a CUDA build of torch.")
    return device
