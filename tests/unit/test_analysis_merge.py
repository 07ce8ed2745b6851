"""`analyze` and `merge` on tiny finished runs: CSV values, plots, logits equality, projection, errors."""

import csv
import json
import shutil

import pytest
import torch

from lorasafe.config.schema import ExperimentConfig
from lorasafe.errors import ConfigError, LorasafeError
from lorasafe.models.merge import merge_run
from lorasafe.pipeline.analysis import analyze_run
from lorasafe.runs.rundir import RunDir

WEIGHTS = "train/checkpoints/step-000001/weights"


def _run(tmp_path, model_dir, method, name="r"):
    cfg = ExperimentConfig(name=name, model={"path": str(model_dir)},
                           adapter={"method": method, "rank": 2, "modules": ["up", "q"], "layers": "all"})
    run = RunDir.open(tmp_path / name, cfg)
    return cfg, run


@pytest.fixture
def lora_run(tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from lorasafe.models.methods import METHODS
    from lorasafe.models.targets import resolve_targets

    cfg, run = _run(tmp_path, tiny_model_dir, "lora")
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = METHODS["lora"].prepare(base, cfg.adapter, resolve_targets(cfg.adapter, base.config, base))
    torch.manual_seed(1)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.2)
    model.save_pretrained(run.path / WEIGHTS)
    run.mark_done("train", weights=WEIGHTS)
    return run.path


@pytest.fixture
def full_run(tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    cfg, run = _run(tmp_path, tiny_model_dir, "full", name="f")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():  # layer 1's up_proj gets an exact rank-1 update; the rest small dense noise
        for n, p in model.named_parameters():
            if p.ndim == 2 and ".layers." in n:
                p.add_(0.01 * torch.randn(p.shape, generator=g))
        up = model.model.layers[1].mlp.up_proj.weight
        up.sub_(up - AutoModelForCausalLM.from_pretrained(tiny_model_dir).model.layers[1].mlp.up_proj.weight)
        up.add_(torch.outer(torch.randn(up.shape[0], generator=g), torch.randn(up.shape[1], generator=g)))
    model.save_pretrained(run.path / WEIGHTS)
    run.mark_done("train", weights=WEIGHTS)
    return run.path


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_analyze_lora_run(lora_run):
    path = analyze_run(lora_run, (1, 4), log=lambda m: None)
    rows = _rows(path)
    assert [(r["layer"], r["module"]) for r in rows] == [(str(i), m) for i in range(3) for m in ("q", "up")]
    for r in rows:
        assert 1.0 <= float(r["stable_rank"]) <= 2.0 + 1e-9  # rank-2 update
        for side in ("left", "right", "both"):
            assert 0.0 <= float(r[f"overlap_{side}@4"]) <= 1.0
        assert float(r["overlap_left@1"]) <= float(r["overlap_left@4"]) + 1e-12  # nested subspaces
    for png in ("stable_rank.png", "overlap.png", "stable_rank.csv", "overlap.csv"):
        assert (lora_run / "analysis" / png).stat().st_size > 0


def test_analyze_full_run_reads_the_dense_difference(full_run):
    rows = _rows(analyze_run(full_run, (1, 8), log=lambda m: None, plots=False))
    assert len(rows) == 3 * 7
    up1 = next(r for r in rows if r["layer"] == "1" and r["module"] == "up")
    assert float(up1["stable_rank"]) == pytest.approx(1.0, rel=1e-5)  # the constructed rank-1 update
    assert all(float(r["stable_rank"]) > 3 for r in rows if r is not up1)  # dense noise is spread out


def test_plain_merge_gives_the_adapters_logits(lora_run, tmp_path):
    from transformers import AutoModelForCausalLM

    from lorasafe.config.loader import load_config
    from lorasafe.models.pool import ModelPool

    out = merge_run(lora_run, tmp_path / "merged", log=lambda m: None)
    assert (out / "model.safetensors").is_file() and (out / "tokenizer_config.json").is_file()
    cfg = load_config(ExperimentConfig, lora_run / "config.yaml")
    ids = torch.tensor([[1, 5, 9, 14, 3, 7]])
    with torch.no_grad(), ModelPool(cfg.model).model_for("lora", lora_run / WEIGHTS) as adapted:
        want = adapted(ids).logits
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    with torch.no_grad():
        got = merged(ids).logits
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5)
    assert json.loads((out / "merge.json").read_text())["project_out_k"] is None


@pytest.mark.parametrize("side", ["left", "right", "both"])
def test_projected_merge_removes_the_subspace_part(lora_run, tmp_path, tiny_model_dir, side):
    from safetensors.torch import load_file

    from lorasafe.geometry import top_subspaces

    out = merge_run(lora_run, tmp_path / f"p-{side}", k=3, side=side, log=lambda m: None)
    base, merged = load_file(str(tiny_model_dir / "model.safetensors")), load_file(str(out / "model.safetensors"))
    name = "model.layers.0.mlp.up_proj.weight"
    delta = (merged[name].double() - base[name].double())
    sub = top_subspaces(base[name], 3)
    if side in ("left", "both"):
        assert (sub.U.T @ delta).abs().max() < 1e-5
    if side in ("right", "both"):
        assert (delta @ sub.V).abs().max() < 1e-5
    info = json.loads((out / "merge.json").read_text())
    assert info["project_out_k"] == 3 and all(0 < m["removed_share"] < 1 for m in info["modules"])


def test_bad_requests_are_clear_errors(lora_run, full_run, tmp_path, tiny_model_dir):
    with pytest.raises(ConfigError, match="full-fine-tuning run"):
        merge_run(full_run, tmp_path / "x", k=2)
    with pytest.raises(ConfigError, match="larger than module"):
        analyze_run(lora_run, (1, 64), log=lambda m: None)
    with pytest.raises(ConfigError, match="larger than module"):
        merge_run(lora_run, tmp_path / "y", k=500)
    _, none_run = _run(tmp_path, tiny_model_dir, "none", name="n")
    with pytest.raises(ConfigError, match="no adapter"):
        analyze_run(none_run.path)
    _, unfinished = _run(tmp_path, tiny_model_dir, "lora", name="u")
    with pytest.raises(LorasafeError, match="not finished training"):
        analyze_run(unfinished.path)
    with pytest.raises(LorasafeError, match="not a run directory"):
        analyze_run(tmp_path)


def test_missing_base_weights_are_a_clear_error(lora_run, tiny_model_dir):
    for f in tiny_model_dir.glob("*.safetensors"):
        f.unlink()
    with pytest.raises(LorasafeError, match="no \\*.safetensors"):
        analyze_run(lora_run, (1,), log=lambda m: None)
    shutil.rmtree(tiny_model_dir)
    with pytest.raises(LorasafeError):
        analyze_run(lora_run, (1,), log=lambda m: None)
