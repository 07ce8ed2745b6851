"""The identity of a base model's weights, recorded in every run's manifest.

A config names its model by a path ('mini', a directory, a hub id) and the config hash covers only that name,
while the weights behind it can change: a rebuilt or upgraded mini model, a re-downloaded hub snapshot, an
edited checkpoint. A run resumed over another model's weights would mix two models' results in one table, so
each run records its base model's fingerprint and refuses to resume over different weights. Must not import
torch.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
IDENTITY_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja")
# Small models are hashed whole (the mini model: 10 MB, ~10 ms). Past this, a safetensors file contributes its
# header and the first TENSOR_SAMPLE bytes of every tensor (a LoRA merged into a few layers changes the first
# rows of those layers' matrices: a rank-r update touches every row its B does not zero), other weight files
# their size and first and last SAMPLE bytes: a 28 GB checkpoint answers in well under a second.
WHOLE_BELOW = 256 << 20
SAMPLE = 4 << 20
TENSOR_SAMPLE = 4096


def fingerprint(path: str) -> str | None:
    """'sha256:…' (or 'sampled-sha256:…') of a local model directory, 'hub:ID@COMMIT' of a hub id whose snapshot
    is in the local HF cache, None when neither can be known without downloading."""
    p = Path(path)
    if p.is_dir():
        return _directory(p)
    if p.exists():
        return None
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(path, "config.json")  # local lookup only: never reaches the hub
    except ValueError:  # not a valid hub id either (the model checks say why, before this is asked)
        return None
    return f"hub:{path}@{Path(cached).parent.name}" if isinstance(cached, str) else None


def _directory(d: Path) -> str:
    weights = sorted(f for f in d.rglob("*") if f.is_file() and f.suffix in WEIGHT_SUFFIXES)
    whole = sum(f.stat().st_size for f in weights) <= WHOLE_BELOW
    h = hashlib.sha256()
    for name in IDENTITY_FILES:
        if (d / name).is_file():
            h.update(name.encode() + b"\0" + (d / name).read_bytes())
    for f in weights:
        size = f.stat().st_size
        h.update(f"{f.relative_to(d).as_posix()}\0{size}\0".encode())
        with f.open("rb") as fh:
            if whole or size <= 2 * SAMPLE:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            elif f.suffix == ".safetensors":
                _tensor_starts(fh, h)
            else:
                h.update(fh.read(SAMPLE))
                fh.seek(size - SAMPLE)
                h.update(fh.read(SAMPLE))
    return ("sha256:" if whole else "sampled-sha256:") + h.hexdigest()[:16]


def _tensor_starts(fh: Any, h: Any) -> None:
    """The safetensors header (names, dtypes, shapes, offsets), then the first bytes of every tensor."""
    head = fh.read(8)
    n = int.from_bytes(head, "little")
    header = fh.read(n)
    h.update(head + header)
    try:
        entries = json.loads(header)
    except ValueError:
        return  # not a safetensors header: loading it says so
    spans = sorted(v["data_offsets"] for k, v in entries.items() if k != "__metadata__")
    for begin, end in spans:
        fh.seek(8 + n + begin)
        h.update(fh.read(min(TENSOR_SAMPLE, end - begin)))
