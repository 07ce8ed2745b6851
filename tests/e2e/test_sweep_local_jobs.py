"""`sweep run --jobs N`: the local executor's cells in N worker processes give the cells' sequential results."""

from __future__ import annotations

import json

import pytest

from lorasafe.config.loader import load_config
from lorasafe.models.loading import mini_model_dir
from lorasafe.sweeps.spec import SweepConfig

pytestmark = pytest.mark.skipif(not (mini_model_dir() / "config.json").exists(), reason="mini model not built")

SWEEP = {
    "name": "jobs",
    "experiment": {
        "model": {"path": "mini"},
        "adapter": {"method": "lora", "rank": 1, "modules": ["up"], "layers": "middle", "dropout": 0.0},
        "data": {"train": [{"mini": "harmful-align", "limit": 16}], "eval": [{"mini": "harmful-eval", "limit": 4}]},
        "training": {"epochs": 1, "batch_size": 8},
        "generation": {"max_new_tokens": 16, "batch_size": 8},
    },
    "grid": [{"path": "adapter.rank", "values": [1, 2]}, {"path": "training.learning_rate", "values": [1e-3, 3e-3]}],
    "operating_point": {"select_over": ["training.learning_rate"]},
}


def _results(out):
    res = {}
    for d in (out / "runs").iterdir():
        train = json.loads((d / "stages" / "train.json").read_text())
        raws = [json.loads(x)["raw"] for x in (d / "generations" / "mini-harmful-eval.jsonl").read_text().splitlines()]
        res[d.name] = (train["final_loss"], raws)
    return res


def test_cells_in_worker_processes_give_the_sequential_results(tmp_path, monkeypatch):
    import torch

    from lorasafe.pipeline import workers
    from lorasafe.sweeps.executors import LocalExecutor
    from lorasafe.sweeps.runner import run_sweep

    monkeypatch.setattr(workers, "cpu_cores", lambda: 2)  # one thread per worker, as in this process below
    sweep = load_config(SweepConfig, data=SWEEP)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_sweep(sweep, tmp_path / "serial", log=lambda m: None, progress=False)
    finally:
        torch.set_num_threads(threads)
    lines: list[str] = []
    results = run_sweep(sweep, tmp_path / "jobs", log=lines.append, progress=False, executor=LocalExecutor(jobs=2))
    assert [r.status for r in results] == ["done"] * 4
    assert any("4 cells, 2 at a time" in line for line in lines)
    assert _results(tmp_path / "jobs") == _results(tmp_path / "serial") and len(_results(tmp_path / "jobs")) == 4
    again = run_sweep(sweep, tmp_path / "jobs", log=lambda m: None, progress=False, executor=LocalExecutor(jobs=2))
    assert [r.status for r in again] == ["skipped"] * 4  # finished cells are not run again


def test_jobs_belong_to_the_local_executor():
    from lorasafe.errors import LorasafeError
    from lorasafe.sweeps.executors import make_executor

    assert make_executor("local", jobs=3).jobs == 3
    with pytest.raises(LorasafeError, match="--jobs is for --executor local"):
        make_executor("ray", jobs=2)
