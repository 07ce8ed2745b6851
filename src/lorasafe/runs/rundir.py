"""One run directory: its layout, its manifest and its finished-stage markers.

A run directory belongs to exactly one resolved config (identified by its hash). Opening it again
with the same config resumes it; with a different config is an error, so results are never mixed
or overwritten. A stage writes its outputs first and its marker last (atomically), so a marker
means the stage finished. Must not import torch.
"""

from __future__ import annotations

import json
import platform
import subprocess
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from lorasafe.config.loader import config_hash, dump_yaml
from lorasafe.config.schema import ExperimentConfig
from lorasafe.data.jsonl import write_json_atomic, write_text_atomic
from lorasafe.errors import LorasafeError

_PACKAGES = ("lorasafe", "torch", "transformers", "peft", "tokenizers", "accelerate")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def git_sha() -> str | None:
    try:
        r = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                           cwd=Path(__file__).parent)
        return r.stdout.strip() or None if r.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        return None


@dataclass
class RunDir:
    path: Path
    config: ExperimentConfig

    @classmethod
    def open(cls, path: str | Path, config: ExperimentConfig) -> "RunDir":
        """Create the run directory, or reopen it if it holds this very config."""
        run = cls(Path(path), config)
        digest = config_hash(config)
        manifest = run.path / "manifest.json"
        if manifest.exists():
            old = json.loads(manifest.read_text()).get("config_hash")
            if old != digest:
                raise LorasafeError(
                    f"Run directory {run.path} holds a run of another config (hash {old}, this one is {digest}); "
                    "results of different configs are never mixed. Choose a new output directory (--out) or "
                    "delete that one to start over."
                )
            return run
        run.path.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run.path / "config.yaml", dump_yaml(config))
        write_json_atomic(manifest, {
            "config_hash": digest, "name": config.name, "seed": config.seed, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "versions": versions(), "git_sha": git_sha(), "precision": config.model.precision,
            "trust_remote_code": config.model.trust_remote_code,
        })
        return run

    # --- layout ------------------------------------------------------------------------------
    @property
    def train_dir(self) -> Path:
        return self.path / "train"

    def generations(self, suite: str, tag: str | None = None) -> Path:
        """The suite's records; `tag` (e.g. step-000015) for an earlier checkpoint's, in its own folder."""
        return self.path / "generations" / (tag or "") / f"{suite}.jsonl"

    def judgments(self, suite: str, tag: str | None = None, judge: str | None = None) -> Path:
        """The headline judge's verdicts; `judge` names one of `judge.also`, whose verdicts sit in by-judge/<judge>/."""
        base = self.path / "judgments" / (tag or "")
        return (base / "by-judge" / judge if judge else base) / f"{suite}.jsonl"

    def disagreements(self, suite: str, tag: str | None = None) -> Path:
        """The items of a suite where the run's judges disagree, with every judge's verdict and evidence."""
        return self.path / "judgments" / (tag or "") / "disagreements" / f"{suite}.jsonl"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.json"

    # --- manifest and stages -------------------------------------------------------------------
    def update_manifest(self, **fields: Any) -> None:
        path = self.path / "manifest.json"
        data = json.loads(path.read_text())
        data.update(fields)
        write_json_atomic(path, data)

    def stage_done(self, stage: str) -> dict | None:
        marker = self.path / "stages" / f"{stage}.json"
        return json.loads(marker.read_text()) if marker.exists() else None

    def mark_done(self, stage: str, **info: Any) -> None:
        write_json_atomic(self.path / "stages" / f"{stage}.json", {"finished": time.strftime("%Y-%m-%dT%H:%M:%S"), **info})
