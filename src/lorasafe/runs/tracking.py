"""Experiment tracking (`tracking:` in an experiment config) through each tracker's own library.

A run logs its resolved config and manifest as parameters, the training loss, learning rate and
regulariser penalty at every optimiser step (`train/...`), and the headline metrics of every evaluated
checkpoint at its step (`eval/...`). Backends: TensorBoard (`torch.utils.tensorboard`, needs the
`tensorboard` package), MLflow, Weights & Biases and Trackio; each package is an optional extra
(`lorasafe[track]` holds tensorboard and mlflow-skinny) imported only when chosen, with a one-line
error naming it when missing. Only the process that writes the run's files logs (see `Experiment`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Protocol

from lorasafe.config.schema import TrackingConfig
from lorasafe.errors import LorasafeError, require


class Tracker(Protocol):
    """Built with the run's parameters (flattened config and manifest), then fed metrics until closed."""

    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...

    def close(self) -> None: ...


def _require(module: str, package: str) -> Any:
    return require(module, "tracking.backend", f"pip install {package} (or 'lorasafe[track]'), or remove the tracking "
                                               "block")


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config/manifest values as dotted keys with scalar values (lists and None as JSON text)."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v if isinstance(v, (bool, int, float, str)) else json.dumps(v)
    return out


class TensorBoardTracker:
    def __init__(self, cfg: TrackingConfig, run_dir: Path, name: str, params: dict[str, Any]):
        _require("tensorboard", "tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(Path(cfg.uri) / name if cfg.uri else run_dir / "tracking" / "tensorboard"))
        # TensorBoard's parameter table (hparams) wants final metrics up front: the config goes in as one text entry.
        self.writer.add_text("config", "\n".join(f"    {k}: {v}" for k, v in params.items()))

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for k, v in metrics.items():
            self.writer.add_scalar(k, v, step)

    def close(self) -> None:
        self.writer.close()


class MLflowTracker:
    def __init__(self, cfg: TrackingConfig, run_dir: Path, name: str, params: dict[str, Any]):
        self.mlflow = _require("mlflow", "mlflow-skinny")
        if cfg.uri:
            self.mlflow.set_tracking_uri(cfg.uri)
        try:
            self.mlflow.set_experiment(cfg.project)
            self.run = self.mlflow.start_run(run_name=name)
        except Exception as e:  # noqa: BLE001 - the store's own message says what is wrong with it
            # MLflow 3 refuses a file store (./mlruns, file:...) unless MLFLOW_ALLOW_FILE_STORE=true is set.
            raise LorasafeError(f"MLflow could not open its tracking store {self.mlflow.get_tracking_uri()} "
                                f"({str(e).splitlines()[0][:400]}). Fix tracking.uri (or MLFLOW_TRACKING_URI) and "
                                "run again; nothing computed is lost.") from None
        # MLflow caps a parameter value at 6,000 characters; the chat template in the manifest can be longer.
        self.mlflow.log_params({k: str(v)[:6000] for k, v in params.items()})

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.mlflow.log_metrics(metrics, step=step)

    def close(self) -> None:
        self.mlflow.end_run()


class WandbTracker:
    def __init__(self, cfg: TrackingConfig, run_dir: Path, name: str, params: dict[str, Any]):
        self.wandb = _require("wandb", "wandb")
        self.run = self.wandb.init(project=cfg.project, name=name, dir=str(run_dir), config=params)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def close(self) -> None:
        self.run.finish()


class TrackioTracker:
    def __init__(self, cfg: TrackingConfig, run_dir: Path, name: str, params: dict[str, Any]):
        self.trackio = _require("trackio", "trackio")
        self.trackio.init(project=cfg.project, name=name, config=params)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.trackio.log(metrics, step=step)

    def close(self) -> None:
        self.trackio.finish()


TRACKERS: dict[str, Callable[[TrackingConfig, Path, str, dict[str, Any]], Tracker]] = {
    "tensorboard": TensorBoardTracker, "mlflow": MLflowTracker, "wandb": WandbTracker, "trackio": TrackioTracker}


def open_tracker(cfg: TrackingConfig | None, run_dir: Path, default_name: str, params: dict[str, Any]) -> Tracker | None:
    """The configured tracker with `params` logged (flattened), or None when tracking is off."""
    if cfg is None:
        return None
    return TRACKERS[cfg.backend](cfg, run_dir, cfg.run_name or default_name, flatten(params))


def check_tracker(cfg: TrackingConfig | None) -> None:
    """Before anything runs: the tracker's package is installed."""
    if cfg is not None:
        module, package = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow-skinny"),
                           "wandb": ("wandb", "wandb"), "trackio": ("trackio", "trackio")}[cfg.backend]
        _require(module, package)


HEADLINE = ("refused", "complied", "invalid", "reasoning", "over_refusal")


def eval_metrics(row: dict[str, Any]) -> dict[str, float]:
    """A run's or checkpoint's headline numbers as `eval/...` metrics (the ones it has)."""
    return {f"eval/{k}": float(row[k]) for k in HEADLINE if row.get(k) is not None}
