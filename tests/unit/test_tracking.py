"""Experiment tracking: a short run logged to TensorBoard and to an MLflow file store, read back from each."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from lorasafe.cli import app

runner = CliRunner()


def _run(tmp_path, tracking: str):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("name: tracked\nmodel: {path: mini}\n"
                   "adapter: {method: lora, rank: 1, modules: [up], layers: middle}\n"
                   "data:\n  train: [{mini: harmful-align, limit: 16}]\n"
                   "  eval: [{mini: harmful-eval, limit: 4}, {mini: reasoning-eval, limit: 4}]\n"
                   "training: {learning_rate: 3.0e-3, epochs: 2, batch_size: 4}\n"
                   "generation: {max_new_tokens: 32, batch_size: 8}\ncheckpoints: all\n"
                   f"tracking: {tracking}\n")
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", str(cfg), "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    return out, metrics


def test_tensorboard_reads_back_the_loss_curve_and_metrics(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, metrics = _run(tmp_path, "{backend: tensorboard}")
    acc = EventAccumulator(str(out / "tracking" / "tensorboard"))
    acc.Reload()
    loss = acc.Scalars("train/loss")
    assert [e.step for e in loss] == list(range(1, 9))  # 16 examples / batch 4 x 2 epochs
    assert loss[-1].value == pytest.approx(_final_loss(out), rel=1e-6)
    refused = {e.step: e.value for e in acc.Scalars("eval/refused")}
    assert refused == {c["step"]: pytest.approx(c["refused"]) for c in metrics["checkpoints"]}
    assert "config/text_summary" in acc.Tags()["tensors"]  # the run's config and manifest


def _final_loss(out) -> float:
    return json.loads((out / "stages" / "train.json").read_text())["final_loss"]


def test_mlflow_file_store_reads_back_the_loss_curve_and_metrics(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store behind this switch
    from mlflow.tracking import MlflowClient

    uri = (tmp_path / "mlruns").as_uri()
    out, metrics = _run(tmp_path, f"{{backend: mlflow, project: lorasafe-test, uri: '{uri}'}}")
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("lorasafe-test").experiment_id])
    loss = client.get_metric_history(run.info.run_id, "train/loss")
    assert sorted(m.step for m in loss) == list(range(1, 9))
    assert max(loss, key=lambda m: m.step).value == pytest.approx(_final_loss(out), rel=1e-6)
    refused = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "eval/refused")}
    assert refused == {c["step"]: pytest.approx(c["refused"]) for c in metrics["checkpoints"]}
    assert run.data.params["config.adapter.rank"] == "1" and run.info.run_name == "tracked"
    assert run.info.status == "FINISHED"


def test_missing_tracker_package_is_one_clear_error_before_anything_runs(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "wandb", None)
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("name: t\nmodel: {path: mini}\nadapter: {method: none}\n"
                   "data: {eval: [{mini: harmful-eval, limit: 2}]}\ntracking: {backend: wandb}\n")
    result = runner.invoke(app, ["run", str(cfg), "--out", str(tmp_path / "run")])
    assert result.exit_code != 0 and "pip install wandb" in str(result.exception)
    assert not (tmp_path / "run").exists()
