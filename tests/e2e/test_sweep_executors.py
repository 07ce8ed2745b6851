"""Sweep executors: a 4-cell sweep on a local Ray cluster (2 CPU workers), its driver killed midway and
rerun (4 finished cells, none run twice), and the same sweep through submitit's local executor giving
the same cell results."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="the ray extra is not installed")
pytest.importorskip("submitit", reason="the slurm extra (submitit) is not installed")

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}
SWEEP = """name: exec
experiment:
  model: {path: mini}
  adapter: {method: lora, rank: 1, modules: [up], layers: middle, dropout: 0.0}
  data:
    train: [{mini: harmful-align, limit: 16}]
    eval: [{mini: harmful-eval, limit: 4}]
  training: {epochs: 1, batch_size: 8}
  generation: {max_new_tokens: 16, batch_size: 8}
grid:
  - {path: adapter.rank, values: [1, 2]}
  - {path: training.learning_rate, values: [1.0e-3, 3.0e-3]}
operating_point: {select_over: [training.learning_rate]}
"""


def _cmd(sweep: Path, out: Path, executor: str, cpus: int = 1) -> list[str]:
    return [sys.executable, "-m", "lorasafe.cli", "sweep", "run", str(sweep), "--out", str(out), "--executor", executor,
            "--no-report", "--no-progress", "--cpus-per-cell", str(cpus)]


def _stop_ray() -> None:
    """Stop the local cluster and wait until none of its processes is left: a worker that outlives `ray stop`
    on a loaded machine would go on writing a cell after the rerun finished it (seen under pytest -n 2)."""
    subprocess.run([str(Path(sys.executable).with_name("ray")), "stop", "--force"], capture_output=True, env=ENV)
    pattern = "ray::|raylet|gcs_server|default_worker.py|dashboard/agent.py"
    deadline = time.time() + 30
    while subprocess.run(["pgrep", "-f", pattern], capture_output=True).returncode == 0 and time.time() < deadline:
        time.sleep(0.5)
    subprocess.run(["pkill", "-9", "-f", pattern], capture_output=True)


def _finished(out: Path) -> dict[str, float]:
    return {p.parent.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*/metrics.json")} if out.exists() else {}


def _cell_results(out: Path) -> dict[str, tuple]:
    res = {}
    for d in (out / "runs").iterdir():
        train = json.loads((d / "stages" / "train.json").read_text())
        records = [json.loads(x)["raw"] for x in (d / "generations" / "mini-harmful-eval.jsonl").read_text().splitlines()]
        res[d.name] = (train["final_loss"], train["steps"], records)
    return res


@pytest.fixture(scope="module")
def sweep_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("sweep") / "sweep.yaml"
    path.write_text(SWEEP)
    return path


@pytest.fixture(scope="module")
def ray_run(sweep_file):
    out = sweep_file.parent / "ray"
    env = {**ENV, "RAY_DEDUP_LOGS": "0"}
    # Each cell asks for both CPUs of the local cluster, so cells finish one by one and the kill lands midway
    # (with one CPU each, two cells finishing together could leave nothing to resume).
    driver = subprocess.Popen(_cmd(sweep_file, out, "ray", cpus=2), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              start_new_session=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not _finished(out) and driver.poll() is None:
            time.sleep(0.2)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the local cluster it started
        driver.wait()
        _stop_ray()
    before = _finished(out)
    assert 1 <= len(before) < 4, f"the driver was not killed midway ({len(before)} of 4 cells finished)"
    # The rerun uses the 2 CPUs as 2 workers, one cell each.
    again = subprocess.run(_cmd(sweep_file, out, "ray", cpus=1), env=env, capture_output=True, text=True, timeout=600)
    _stop_ray()
    assert again.returncode == 0, again.stderr[-3000:]
    return out, before, " ".join((again.stdout + again.stderr).split())  # rich wraps long lines


def test_a_killed_ray_sweep_resumes_without_redoing_finished_cells(ray_run):
    out, before, log = ray_run
    after = _finished(out)
    assert len(after) == 4
    assert {k: after[k] for k in before} == before  # finished cells were not run again
    assert log.count("finished earlier, skipped") == len(before)
    assert "4/4 cells finished, 0 failed" in log


def test_submitit_local_gives_the_same_cell_results(ray_run, sweep_file):
    out = sweep_file.parent / "submitit"
    res = subprocess.run(_cmd(sweep_file, out, "submitit-local"), env=ENV, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (out / "submitit").is_dir()  # the jobs' logs
    ray_results, sub_results = _cell_results(ray_run[0]), _cell_results(out)
    assert sorted(ray_results) == sorted(sub_results) and len(sub_results) == 4
    for cell, (loss, steps, records) in sub_results.items():
        assert steps == ray_results[cell][1] and loss == pytest.approx(ray_results[cell][0], abs=1e-6)
        assert records == ray_results[cell][2]
