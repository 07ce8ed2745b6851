"""GGUF model files: read once with transformers (`gguf_file=`), kept as a safetensors copy.

A GGUF file carries the weights (quantised), the tokenizer and the chat template. lorasafe loads
weights from safetensors only, so a GGUF is de-quantised once (to float32, which holds the
de-quantised values exactly) into a model directory: `lorasafe model import FILE.gguf DIR`, or
automatically into the cache (`$LORASAFE_CACHE`, default ~/.cache/lorasafe) when `model.path`
names a GGUF file. Every load after that is a plain safetensors load in the run's precision, and
analysis and merging find the base weights where they find any model's. The copy's
`lorasafe_import.json` records the source file, its sha256 and the library versions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from functools import lru_cache
from pathlib import Path
from typing import Callable

from lorasafe.errors import LorasafeError

log = logging.getLogger("lorasafe")
_MAGIC = b"GGUF"
RECORD = "lorasafe_import.json"


def is_gguf(path: str | Path) -> bool:
    """A file that starts with the GGUF magic bytes (the format's own marker, not the file name)."""
    p = Path(path)
    if not p.is_file():
        return False
    with p.open("rb") as f:
        return f.read(4) == _MAGIC


@lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime: float) -> str:  # size and mtime key the cache: a changed file re-hashes
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256(path: Path) -> str:
    st = path.stat()
    return _sha256(str(path.resolve()), st.st_size, st.st_mtime)


def cache_root() -> Path:
    env = os.environ.get("LORASAFE_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lorasafe"


def cached_import(file: Path) -> Path:
    """The safetensors copy of GGUF `file` in the cache, imported now if it is not there yet."""
    digest = sha256(file)
    target = cache_root() / "gguf" / f"{file.stem}-{digest[:12]}"
    if (target / RECORD).is_file():
        return target
    log.warning("importing %s once into %s (de-quantising to float32, about 30 s on 2 CPU cores)", file, target)
    return import_gguf(file, target, digest=digest)


def _require_gguf() -> None:
    try:
        import gguf  # noqa: F401 - transformers reads GGUF files through it
    except ImportError:
        raise LorasafeError("Reading a GGUF model file needs the `gguf` package: pip install gguf (or "
                            "pip install 'lorasafe[smol]').") from None


def import_gguf(file: Path, out: Path, digest: str | None = None, log: Callable[[str], None] | None = None) -> Path:
    """Write the model, tokenizer and chat template of GGUF `file` to `out` as safetensors (float32)."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _require_gguf()
    file, out = Path(file).resolve(), Path(out)
    if not is_gguf(file):
        raise LorasafeError(f"{file} is not a GGUF file (it does not start with the GGUF magic bytes).")
    if out.exists() and any(out.iterdir()):
        raise LorasafeError(f"{out} exists and is not empty; importing never overwrites. Choose another directory.")
    t0 = time.perf_counter()
    tmp = out.parent / f".tmp-{out.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tok = AutoTokenizer.from_pretrained(str(file.parent), gguf_file=file.name)
        model = AutoModelForCausalLM.from_pretrained(str(file.parent), gguf_file=file.name, dtype=torch.float32)
        # transformers marks a GGUF-loaded model as quantised (an hf_quantizer and config.quantization_config)
        # although its weights are de-quantised tensors; left in place they would make save_pretrained write a
        # quantisation that is not there, and every later load would look for a GGUF file.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            delattr(model.config, "quantization_config")
        model.save_pretrained(str(tmp), safe_serialization=True)
        tok.save_pretrained(str(tmp))
        from importlib.metadata import version

        (tmp / RECORD).write_text(json.dumps({
            "source": str(file), "sha256": digest or sha256(file), "bytes": file.stat().st_size, "dtype": "float32",
            "transformers": transformers.__version__, "gguf": version("gguf"),
            "torch": torch.__version__, "wall_s": round(time.perf_counter() - t0, 1)}, indent=1) + "\n")
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            if out.exists() and not any(out.iterdir()):
                out.rmdir()
            tmp.rename(out)
        except OSError:
            if not (out / RECORD).is_file():  # not another process's finished import of the same file
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if log:
        log(f"imported {file.name} into {out} in {time.perf_counter() - t0:.0f} s")
    return out
