"""Benchmark files bundled in the package, each checked against its checksum on load.

Owns the list of bundled files (name, file, licence, sha256). Must not import torch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from lorasafe.data.jsonl import read_jsonl
from lorasafe.data.records import Item
from lorasafe.errors import DataError


@dataclass(frozen=True)
class BundledFile:
    name: str
    file: str
    kind: str
    licence: str
    source: str
    sha256: str


BUNDLED: dict[str, BundledFile] = {
    "advbench": BundledFile(
        name="advbench",
        file="advbench.jsonl",
        kind="harmful",
        licence="MIT (LICENSE-advbench.txt)",
        source="llm-attacks/llm-attacks via pyrit==1.1.0",
        sha256="a1e1e83abd5a0dbb55b1f6b4237b19a0606d6c3832a8381df291abc43e6dd19b",
    ),
}


def load_bundled(name: str) -> list[Item]:
    spec = BUNDLED[name]
    path = resources.files("lorasafe.data") / "bundled" / spec.file
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != spec.sha256:
        raise DataError(
            f"Bundled file {path} has checksum {digest[:12]}..., expected {spec.sha256[:12]}...: the "
            "installed copy was modified or corrupted. Reinstall lorasafe (pip install --force-reinstall)."
        )
    rows = read_jsonl(str(path), required=("id", "prompt"))
    return [Item(id=r["id"], prompt=r["prompt"], kind=spec.kind, meta={"categories": r.get("categories", [])})
            for r in rows]
