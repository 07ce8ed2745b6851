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
    replaced: str | None = None  # the config hash of a result-less run this one took over ("unreadable" if unknown)

    @classmethod
    def check(cls, path: str | Path, config: ExperimentConfig) -> tuple[bool, str | None]:
        """Whether `path` can hold a run of `config`, creating nothing: (it already does, the hash of the
        result-less run it would take over). A file, or a run of another config with results, is an error."""
        path, digest = Path(path), config_hash(config)
        manifest = path / "manifest.json"
        if path.exists() and not path.is_dir():
            raise LorasafeError(f"{path} is a file, not a run directory. Choose another output directory (--out), "
                                "or move that file away.")
        if not manifest.is_file():
            return False, None
        old = _manifest_hash(manifest)
        if old == digest:
            return True, None
        if holds_results(path):
            found = ("its manifest.json is unreadable" if old is None
                     else f"it holds a run of another config (hash {old}, this one is {digest})")
            raise LorasafeError(
                f"Run directory {path} has results and {found}; results of different configs are never "
                "mixed or overwritten. Choose a new output directory (--out), or delete that one to start over."
            )
        return False, old or "unreadable"

    @staticmethod
    def check_base(path: str | Path, model: str, fingerprint: str | None, total_params: int) -> None:
        """A run directory with results resumes only over the base model it was made with: the config names the
        model by path, and the weights behind a path can change (a rebuilt mini model, a new hub snapshot).
        Manifests from before fingerprints were recorded are compared by the model's parameter count."""
        path = Path(path)
        if not holds_results(path):
            return
        try:
            data = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return  # check() already refuses an unreadable manifest over results
        old = (data.get("base_model") or {}).get("fingerprint")
        old_params = (data.get("targets") or {}).get("total_params")
        if old and fingerprint and old != fingerprint:
            found = f"weights {old}, now {fingerprint}"
        elif not old and old_params is not None and old_params != total_params:
            found = f"{old_params:,} parameters, now {total_params:,}"
        else:
            return
        raise LorasafeError(
            f"Run directory {path} has results made with other weights behind model {model!r} than it has now "
            f"({found}); resuming would mix two models' results. Choose a new output directory (--out), or delete "
            "that one to start over."
        )

    @classmethod
    def open(cls, path: str | Path, config: ExperimentConfig) -> "RunDir":
        """Create the run directory, or reopen it if it holds this very config.

        A directory of another config that holds no results yet (only its config.yaml and manifest.json, as a
        run stopped before its first stage leaves it) is taken over by this config: nothing computed is lost,
        and a corrected config runs into the same directory. One that holds results is never touched."""
        run = cls(Path(path), config)
        digest = config_hash(config)
        manifest = run.path / "manifest.json"
        same, run.replaced = cls.check(run.path, config)
        if same:
            return run
        try:
            run.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise LorasafeError(f"Cannot create run directory {run.path} ({e.strerror or e}); choose an output "
                                "directory (--out) whose parents are directories you can write to.") from None
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


# What a run directory holds before any stage has written anything: these alone are no results.
_IDENTITY = ("config.yaml", "manifest.json")


def _manifest_hash(manifest: Path) -> str | None:
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data.get("config_hash") if isinstance(data, dict) else None


def holds_results(path: Path) -> bool:
    """Whether a run directory holds anything beyond its identity (config.yaml, manifest.json, the temp files
    of their atomic writes, empty folders): a finished stage, a checkpoint, a generation, anything computed."""
    for f in Path(path).rglob("*"):
        if f.is_dir():
            continue
        rel = f.relative_to(path)
        if len(rel.parts) == 1 and (rel.name in _IDENTITY or any(rel.name.startswith(f".{n}.") for n in _IDENTITY)):
            continue
        return True
    return False


def slug(label: str) -> str:
    """A label as a folder name (a study's `variants/<slug>/`)."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in label).strip("-") or "variant"


def trained_weights(run: Path, checkpoint: str | None = None) -> tuple[ExperimentConfig, Path]:
    """A trained run's config and the weights directory of its final checkpoint (or of `checkpoint`,
    e.g. `step-000030`), with a clear error for a directory that is not a finished, trained run."""
    from lorasafe.config.loader import load_config
    from lorasafe.errors import ConfigError

    run = Path(run)
    if not run.exists():
        raise LorasafeError(f"Run directory {run} does not exist. Pass a directory written by `lorasafe run` or one "
                            "of a study's `variants/<label>/` directories.")
    if not (run / "config.yaml").is_file():
        raise LorasafeError(f"{run} is not a run directory (no config.yaml). Pass a directory written by "
                            "`lorasafe run` or one of a study's `variants/<label>/` directories.")
    cfg = load_config(ExperimentConfig, run / "config.yaml")
    if cfg.adapter.method == "none":
        raise ConfigError(f"{run} is a run with no adapter (adapter.method: none): it has no weight update to "
                          "analyse or merge. Pass a LoRA or full-fine-tuning run.")
    marker = run / "stages" / "train.json"
    if not marker.is_file():
        raise LorasafeError(f"{run} has not finished training (no stages/train.json). Finish it first: "
                            f"`lorasafe run {run / 'config.yaml'} --out {run}` resumes it.")
    try:
        done = json.loads(marker.read_text(encoding="utf-8"))
        weights = str(done["weights"])
        checkpoints = [str(c) for c in done.get("checkpoints", [])] if checkpoint is not None else []
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise LorasafeError(f"{marker} is unreadable ({type(e).__name__}: {e}); it is corrupt. Delete it and rerun "
                            f"`lorasafe run {run / 'config.yaml'} --out {run}`: training resumes from its last "
                            "checkpoint.") from None
    if checkpoint is None:
        return cfg, run / weights
    known = {Path(c).name: c for c in checkpoints}
    if checkpoint not in known:
        raise LorasafeError(f"{run} has no checkpoint {checkpoint!r}; it has: {', '.join(known)}.")
    return cfg, run / known[checkpoint] / "weights"
