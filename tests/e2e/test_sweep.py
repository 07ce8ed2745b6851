"""A tiny sweep on the mini world: every checkpoint evaluated, killed and resumed without redoing
finished runs (training starts counted), a failing cell recorded while the others finish, the report."""

import json

import pytest

from lorasafe.config.loader import load_config
from lorasafe.models.loading import mini_model_dir
from lorasafe.sweeps.spec import SweepConfig

pytestmark = pytest.mark.skipif(not (mini_model_dir() / "config.json").exists(), reason="mini model not built")

SWEEP = {
    "name": "tiny",
    "experiment": {
        "adapter": {"method": "lora", "modules": ["up"], "layers": "middle"},
        "data": {"train": [{"mini": "harmful-align", "limit": 8}],
                 "eval": [{"mini": "harmful-eval", "limit": 4}, {"mini": "reasoning-eval", "limit": 4},
                          {"mini": "benign-eval", "limit": 4}]},
        "training": {"learning_rate": 1e-3, "epochs": 2, "batch_size": 4, "max_length": 256},
        "generation": {"max_new_tokens": 32, "batch_size": 8},
        "checkpoints": "all",
    },
    "grid": [{"path": "adapter.rank", "values": [1, 2]}, {"path": "seed", "values": [0, 1]}],
    "operating_point": {"select_over": [], "constraints": [{"metric": "refused", "at_least": 0.5}]},
    "analysis_k": [1, 8],
}


class Killed(Exception):
    pass


def _count_training(monkeypatch):
    from lorasafe.training import sft

    starts = []
    original = sft.SFTTrainer.train

    def counting(self):
        starts.append(self.out_dir)
        return original(self)

    monkeypatch.setattr(sft.SFTTrainer, "train", counting)
    return starts


def test_sweep_resumes_without_redoing_finished_runs_and_reports(tmp_path, monkeypatch):
    from lorasafe.reports.sweep_report import write_report
    from lorasafe.sweeps.runner import run_sweep

    sweep = load_config(SweepConfig, data=SWEEP)
    starts = _count_training(monkeypatch)

    def kill_at_third(msg):
        if msg.startswith("[3/4]"):
            raise Killed  # like Ctrl-C: not a cell failure

    with pytest.raises(Killed):
        run_sweep(sweep, tmp_path, log=kill_at_third, progress=False)
    assert len(starts) == 2
    results = run_sweep(sweep, tmp_path, log=lambda m: None, progress=False)
    assert [r.status for r in results] == ["skipped", "skipped", "done", "done"]
    assert len(starts) == 4  # only the two unfinished cells trained

    # Every checkpoint (one per epoch) was evaluated, each into its own folder.
    run = tmp_path / "runs" / results[2].cell.id
    traj = json.loads((run / "metrics.json").read_text())["checkpoints"]
    assert [p["checkpoint"] for p in traj] == ["step-000002", "step-000004"] and traj[0]["step"] == 2
    assert (run / "generations" / "step-000002" / "mini-harmful-eval.jsonl").is_file()
    for step in ("step-000002", "step-000004"):  # analysis_k: the geometry of every checkpoint
        assert (run / "analysis" / step / "geometry.csv").is_file()

    # Extending an axis runs only the new cells.
    bigger = load_config(SweepConfig, data={**SWEEP, "grid": [{"path": "adapter.rank", "values": [1, 2, 4]},
                                                                {"path": "seed", "values": [0, 1]}]})
    results = run_sweep(bigger, tmp_path, log=lambda m: None, progress=False)
    assert sum(r.status == "done" for r in results) == 2 and len(starts) == 6

    files = write_report(tmp_path)
    text = files["md"].read_text()
    assert "| rank=1 | lora |" in text and "rank=4" in text
    assert "refused mini-harmful-eval" in text and "reasoning mini-reasoning-eval" in text and "± " in text
    csv_rows = files["csv"].read_text().splitlines()
    assert len(csv_rows) == 1 + 6 * 2 * 3  # runs × checkpoints × suites
    for name in ("pareto.png", "pareto.csv", "by_rank.png", "trajectories.png", "report.html"):
        assert (tmp_path / "report" / name).stat().st_size > 0, name
    assert "data:image/png;base64," in files["html"].read_text()
    geometry = text.split("## Weight geometry at the operating points")[1].split("##")[0]
    assert "| rank=1 | lora |" in geometry and "stable rank (mean)" in geometry


def test_a_failing_cell_is_recorded_and_the_others_finish(tmp_path):
    from lorasafe.reports.sweep_report import write_report
    from lorasafe.sweeps.runner import run_sweep

    # A cell that passes every up-front check and fails while training (no prompt fits max_length 1).
    broken = {**SWEEP, "grid": [{"path": "adapter.rank", "values": [1]},
                                {"path": "training.max_length", "values": [1, 256]}],
              "experiment": {**SWEEP["experiment"], "checkpoints": "last"}}
    results = run_sweep(load_config(SweepConfig, data=broken), tmp_path / "s", log=lambda m: None, progress=False)
    assert [r.status for r in results] == ["failed", "done"]
    failed = json.loads((tmp_path / "s" / "runs" / results[0].cell.id / "failed.json").read_text())
    assert "max_length" in failed["error"]
    text = write_report(tmp_path / "s")["md"].read_text()
    assert "## Failed or unfinished runs" in text and results[0].cell.id in text
