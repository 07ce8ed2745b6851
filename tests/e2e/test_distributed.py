"""Training under `accelerate launch`: 2 CPU processes (gloo) train what 1 process trains.

The same small LoRA run, same global batch and seed (LoRA dropout 0: dropout masks are drawn per
process and could not agree), once as one process and once as two: the per-step losses agree to 1e-4,
one set of checkpoints is written, the evaluation runs once (no duplicated records), and a run
resumes under a different number of processes from a checkpoint the other wrote. The same for full
fine-tuning sharded by FSDP (configs/accelerate/fsdp-cpu.yaml): losses, whole checkpoints and resumes in
both directions, and the half-precision path with fp32 masters.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
STEPS = 8  # 32 examples / global batch 8 x 2 epochs
ROOT = Path(__file__).resolve().parents[2]
FSDP = "configs/accelerate/fsdp-cpu.yaml"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(tmp_path: Path) -> Path:
    cfg = tmp_path / "ddp.yaml"
    cfg.write_text("name: ddp\nmodel: {path: mini, device: cpu}\n"
                   "adapter: {method: lora, rank: 1, modules: [up], layers: middle, dropout: 0.0}\n"
                   "data:\n  train: [{mini: harmful-align, limit: 32}]\n  eval: [{mini: harmful-eval, limit: 6}]\n"
                   "training: {learning_rate: 3.0e-3, epochs: 2, batch_size: 8}\n"
                   "generation: {max_new_tokens: 24, batch_size: 8}\n")
    return cfg


def _run(cfg: Path, out: Path, processes: int, extra: tuple[str, ...] = (),
         accelerate_config: str | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "lorasafe.cli", "run", str(cfg), "--out", str(out), "--no-progress", *extra]
    if processes > 1:
        accelerate = str(Path(sys.executable).with_name("accelerate"))
        how = (["--config_file", str(ROOT / accelerate_config)] if accelerate_config else
               ["--multi_gpu", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"])
        cmd = [accelerate, "launch", *how, "--num_processes", str(processes),
               "--main_process_port", str(_free_port()), "-m", "lorasafe.cli", *cmd[3:]]
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)


def _losses(out: Path, steps: int = STEPS) -> list[float]:
    rows = [json.loads(x) for x in (out / "train" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, steps + 1)), "one log line per step, written once"
    return [r["loss"] for r in rows]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    cfg = _config(tmp)
    one, two = _run(cfg, tmp / "one", 1), _run(cfg, tmp / "two", 2)
    assert one.returncode == 0, one.stderr[-3000:]
    assert two.returncode == 0, two.stderr[-3000:]
    return tmp, cfg, one, two


def test_two_processes_take_the_steps_one_process_takes(runs):
    tmp, _, _, two = runs
    a, b = _losses(tmp / "one"), _losses(tmp / "two")
    assert max(abs(x - y) for x, y in zip(a, b)) < 1e-4, (a, b)
    assert a[0] != a[-1]  # it trained
    ckpts = lambda out: sorted(p.name for p in (out / "train" / "checkpoints").iterdir())  # noqa: E731
    assert ckpts(tmp / "one") == ckpts(tmp / "two") == ["step-000004", "step-000008"]
    assert two.stdout.count('"refused"') == 1  # one process reported metrics


def test_evaluation_runs_once(runs):
    tmp = runs[0]
    records = (tmp / "two" / "generations" / "mini-harmful-eval.jsonl").read_text().splitlines()
    assert len(records) == 6 and len({json.loads(r)["id"] for r in records}) == 6
    one = json.loads((tmp / "one" / "metrics.json").read_text())
    two = json.loads((tmp / "two" / "metrics.json").read_text())
    assert two["refused"] == pytest.approx(one["refused"], abs=1 / 6 + 1e-9)


def test_resume_under_another_number_of_processes(runs):
    """Training killed after its first checkpoint (here: cut to it) resumes with 2 processes from 1's checkpoint."""
    tmp, cfg, _, _ = runs
    out = tmp / "resumed"
    _cut_to_first_checkpoint(tmp / "one", out)
    res = _run(cfg, out, 2)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resumed from step 4" in res.stdout + res.stderr
    assert max(abs(x - y) for x, y in zip(_losses(out), _losses(tmp / "one"))) < 1e-4


def test_studies_refuse_several_processes_with_one_clear_line(tmp_path):
    study = tmp_path / "study.yaml"
    study.write_text("name: s\nexperiment:\n  model: {path: mini}\n  data: {eval: [{mini: harmful-eval, limit: 2}]}\n"
                     "variants:\n  - {label: base, set: {adapter.method: none}}\n")
    accelerate = str(Path(sys.executable).with_name("accelerate"))
    res = subprocess.run([accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                          "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
                          "-m", "lorasafe.cli", "study", str(study), "--out", str(tmp_path / "out")],
                         env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode != 0 and "lorasafe run" in res.stderr


# --- full fine-tuning sharded by FSDP --------------------------------------------------------------------
def _full_config(tmp_path: Path, precision: str = "fp32", masters: bool = False, examples: int = 32,
                 batch: int = 8) -> Path:
    cfg = tmp_path / f"full-{precision}-{examples}.yaml"
    cfg.write_text(f"name: fsdp\nmodel: {{path: mini, device: cpu, precision: {precision}}}\nadapter: {{method: full}}\n"
                   f"data:\n  train: [{{mini: harmful-align, limit: {examples}}}]\n  eval: [{{mini: harmful-eval, limit: 6}}]\n"
                   f"training: {{learning_rate: 3.0e-4, epochs: 2, batch_size: {batch}, fp32_optimizer_state: {str(masters).lower()}}}\n"
                   "generation: {max_new_tokens: 24, batch_size: 8}\n")
    return cfg


def _weights(out: Path, step: int = STEPS) -> dict:
    from safetensors.torch import load_file

    return load_file(str(out / "train" / "checkpoints" / f"step-{step:06d}" / "weights" / "model.safetensors"))


def _cut_to_first_checkpoint(src: Path, out: Path) -> None:
    shutil.copytree(src, out)
    for p in [out / "stages", out / "generations", out / "judgments", out / "metrics.json",
              out / "train" / "checkpoints" / f"step-{STEPS:06d}"]:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    log = out / "train" / "train_log.jsonl"
    log.write_text("".join(line + "\n" for line in log.read_text().splitlines()[:STEPS // 2]))


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fsdp")
    cfg = _full_config(tmp)
    one, two = _run(cfg, tmp / "one", 1), _run(cfg, tmp / "two", 2, accelerate_config=FSDP)
    assert one.returncode == 0, one.stderr[-3000:]
    assert two.returncode == 0, two.stderr[-3000:]
    return tmp, cfg, two


def test_fsdp_full_fine_tuning_takes_the_steps_one_process_takes(sharded):
    tmp, _, two = sharded
    setup = lambda out: json.loads((out / "stages" / "train.json").read_text())["setup"]  # noqa: E731
    assert setup(tmp / "one")["saved_activations"] == "lean"
    assert setup(tmp / "two")["saved_activations"].startswith("all (FSDP")  # training/activations.py: why
    a, b = _losses(tmp / "one"), _losses(tmp / "two")
    assert max(abs(x - y) for x, y in zip(a, b)) < 1e-4, (a, b)
    assert a[0] != a[-1]
    ckpts = lambda out: sorted(p.name for p in (out / "train" / "checkpoints").iterdir())  # noqa: E731
    assert ckpts(tmp / "one") == ckpts(tmp / "two") == ["step-000004", "step-000008"]
    # Whole checkpoints in the single-process form: the same tensor names (tied head written once), equal weights.
    w1, w2 = _weights(tmp / "one"), _weights(tmp / "two")
    assert sorted(w1) == sorted(w2) and "lm_head.weight" not in w2
    assert max(float((w1[k] - w2[k]).abs().max()) for k in w1) < 1e-4
    assert two.stdout.count('"refused"') == 1
    records = (tmp / "two" / "generations" / "mini-harmful-eval.jsonl").read_text().splitlines()
    assert len(records) == 6


@pytest.mark.parametrize("processes", [2, 1])
def test_fsdp_resumes_from_a_checkpoint_another_process_count_wrote(sharded, processes):
    """2 sharded processes resume one process's checkpoint, and one process resumes the sharded run's."""
    tmp, cfg, _ = sharded
    src = tmp / ("one" if processes == 2 else "two")
    out = tmp / f"resumed-{processes}"
    _cut_to_first_checkpoint(src, out)
    res = _run(cfg, out, processes, accelerate_config=FSDP)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resumed from step 4" in res.stdout + res.stderr
    assert max(abs(x - y) for x, y in zip(_losses(out), _losses(tmp / "one"))) < 1e-4
    w1, w2 = _weights(tmp / "one"), _weights(out)
    assert max(float((w1[k] - w2[k]).abs().max()) for k in w1) < 1e-4


def test_fsdp_a_micro_batch_smaller_than_the_process_count(tmp_path):
    """9 examples in batches of 4: each epoch ends on a 1-example micro-batch, so one process has no share and
    joins FSDP's collectives with a zero-weight example; the steps are still one process's."""
    cfg = _full_config(tmp_path, examples=9, batch=4)
    one, two = _run(cfg, tmp_path / "one", 1), _run(cfg, tmp_path / "two", 2, accelerate_config=FSDP)
    assert one.returncode == 0 and two.returncode == 0, (one.stderr[-2000:], two.stderr[-2000:])
    a, b = _losses(tmp_path / "one", steps=6), _losses(tmp_path / "two", steps=6)
    assert max(abs(x - y) for x, y in zip(a, b)) < 1e-4, (a, b)


def test_fsdp_half_precision_with_fp32_masters(tmp_path):
    """bf16 weights, fp32 masters: FSDP's fp32 shards computing in bf16 follow one process's master weights
    (bf16 rounding of the two processes' partial sums differs, hence the looser bound)."""
    import torch

    cfg = _full_config(tmp_path, "bf16", masters=True)
    one, two = _run(cfg, tmp_path / "one", 1), _run(cfg, tmp_path / "two", 2, accelerate_config=FSDP)
    assert one.returncode == 0 and two.returncode == 0, (one.stderr[-2000:], two.stderr[-2000:])
    a, b = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert max(abs(x - y) for x, y in zip(a, b)) < 1e-2, (a, b)
    assert {v.dtype for v in _weights(tmp_path / "two").values()} == {torch.bfloat16}
    load = lambda out: torch.load(out / "train" / "checkpoints" / f"step-{STEPS:06d}" / "optimizer.pt",  # noqa: E731
                                  weights_only=True)
    config = json.loads((tmp_path / "two" / "train" / "checkpoints" / f"step-{STEPS:06d}" / "weights" / "config.json").read_text())
    assert config["dtype"] == "bfloat16"  # the weights' dtype, not the fp32 shards'
    m1, m2 = load(tmp_path / "one")["master"], load(tmp_path / "two")["master"]
    assert len(m1) == len(m2) and all(x.dtype == y.dtype == torch.float32 for x, y in zip(m1, m2))
    assert max(float((x - y).abs().max()) for x, y in zip(m1, m2)) < 1e-2


def test_fsdp_refuses_lora_before_writing_anything(tmp_path):
    res = _run(_config(tmp_path), tmp_path / "lora", 2, accelerate_config=FSDP)
    assert res.returncode != 0 and "full fine-tuning only" in res.stderr and "ddp-" in res.stderr
    assert not (tmp_path / "lora").exists()


def test_deepspeed_and_regularised_fsdp_are_refused_with_the_fix(monkeypatch):
    from lorasafe.errors import LorasafeError
    from lorasafe.training.sharding import check

    check("lora", True)  # not launched for sharding: nothing to refuse
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    with pytest.raises(LorasafeError, match="DeepSpeed, which lorasafe does not run.*fsdp-gpus.yaml"):
        check("full", False)
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED")
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(LorasafeError, match="regulariser is not supported under FSDP"):
        check("full", True)
    check("full", False)
