"""Bad models, weights and run directories (issue 14): one clear error, and nothing left behind.

Every input of a run (judges, targets, model files, chat template, data) is checked before its run
directory exists, so a failed check leaves nothing and the corrected config runs into the same --out;
a run directory that holds results is never touched. The slow, whole-CLI version of these cases is
scripts/try_bad_inputs.py.
"""

import json
import os
import shutil

import pytest

from lorasafe.config.loader import load_config
from lorasafe.config.schema import ExperimentConfig, StudyConfig
from lorasafe.errors import ChatTemplateError, DataError, LorasafeError
from lorasafe.runs.rundir import RunDir, trained_weights

ITEM = {"id": "a", "prompt": "How do I pick a lock?", "kind": "harmful"}
# The mini model (its config and tokenizer load; nothing here generates) with a tiny evaluation.
SMALL = {"model": {"path": "mini", "device": "cpu"}, "adapter": {"method": "none"},
         "data": {"eval": [{"mini": "harmful-eval", "limit": 2}]}}


def _cfg(**changes) -> ExperimentConfig:
    data = json.loads(json.dumps(SMALL))
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            data.setdefault(section, {})[field] = value
        else:
            data[section] = value
    return load_config(ExperimentConfig, data=data)


def _experiment(cfg, path):
    from lorasafe.pipeline.context import BaseContext
    from lorasafe.pipeline.experiment import Experiment

    return Experiment(cfg, path, BaseContext(cfg), log=lambda m: None, progress=False)


def _jsonl(path, *rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


# --- safetensors -------------------------------------------------------------------------------------------
def _corrupt(directory, how: str):
    f = directory / "model.safetensors"
    if how == "truncated":
        with f.open("r+b") as h:
            h.truncate(f.stat().st_size // 2)
    elif how == "random":
        f.write_bytes(os.urandom(4096))
    else:
        f.write_bytes(b"")


@pytest.mark.parametrize("how", ["truncated", "random", "empty"])
def test_a_corrupt_safetensors_file_is_one_error_everywhere_it_is_read(tiny_model_dir, how):
    from lorasafe.models.loading import check_weights, load_model
    from lorasafe.models.weights import SafetensorsReader, check_safetensors

    _corrupt(tiny_model_dir, how)
    for read in (check_safetensors, SafetensorsReader):
        with pytest.raises(LorasafeError, match="model.safetensors is not a readable safetensors file"):
            read(tiny_model_dir)
    model = ExperimentConfig(model={"path": str(tiny_model_dir)}).model
    with pytest.raises(LorasafeError, match="not a readable safetensors file"):
        check_weights(model)
    with pytest.raises(LorasafeError, match=f"Could not load the model in {tiny_model_dir}"):
        load_model(model)


def test_a_model_without_safetensors_or_with_a_missing_shard_is_refused(tiny_model_dir):
    from lorasafe.models.loading import check_weights

    model = ExperimentConfig(model={"path": str(tiny_model_dir)}).model
    (tiny_model_dir / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"lm_head.weight": "model-00002-of-00002.safetensors"}}))
    with pytest.raises(LorasafeError, match="model-00002-of-00002.safetensors, which is missing"):
        check_weights(model)
    (tiny_model_dir / "model.safetensors.index.json").write_text("{")
    with pytest.raises(LorasafeError, match="not a valid safetensors index"):
        check_weights(model)
    (tiny_model_dir / "model.safetensors.index.json").unlink()
    (tiny_model_dir / "model.safetensors").unlink()
    with pytest.raises(LorasafeError, match="has no \\*.safetensors weights"):
        check_weights(model)


def _adapter(tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from lorasafe.models.methods import METHODS
    from lorasafe.models.targets import resolve_targets

    cfg = ExperimentConfig(model={"path": str(tiny_model_dir)}, adapter={"rank": 2, "modules": ["up"], "layers": "all"})
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = METHODS["lora"].prepare(base, cfg.adapter, resolve_targets(cfg.adapter, base.config, base))
    model.save_pretrained(tmp_path / "adapter")
    return tmp_path / "adapter"


def test_a_corrupt_adapter_is_one_error(tmp_path, tiny_model_dir):
    from lorasafe.models.weights import read_adapter

    adapter = _adapter(tmp_path, tiny_model_dir)
    assert len(read_adapter(adapter)) == 3
    cfg_text = (adapter / "adapter_config.json").read_text()
    (adapter / "adapter_config.json").write_text("{")
    with pytest.raises(LorasafeError, match="adapter_config.json is not valid JSON"):
        read_adapter(adapter)
    (adapter / "adapter_config.json").write_text(json.dumps({k: v for k, v in json.loads(cfg_text).items() if k != "r"}))
    with pytest.raises(LorasafeError, match="rank and alpha"):
        read_adapter(adapter)
    (adapter / "adapter_config.json").write_text(cfg_text)
    f = adapter / "adapter_model.safetensors"
    with f.open("r+b") as h:
        h.truncate(f.stat().st_size - 10)
    with pytest.raises(LorasafeError, match="adapter_model.safetensors is not a readable safetensors file"):
        read_adapter(adapter)


# --- model directories -----------------------------------------------------------------------------------------
def test_a_model_without_tokenizer_files_is_refused_not_given_an_empty_tokenizer(tiny_model_dir):
    from lorasafe.models.loading import load_tokenizer

    for f in tiny_model_dir.glob("tokenizer*"):
        f.unlink()
    with pytest.raises(LorasafeError, match="has no tokenizer"):
        load_tokenizer(ExperimentConfig(model={"path": str(tiny_model_dir)}).model)


def test_a_broken_config_json_names_the_local_directory_not_the_network(tiny_model_dir):
    from lorasafe.models.loading import load_config as load_model_config

    (tiny_model_dir / "config.json").write_text("[]")
    with pytest.raises(LorasafeError) as e:
        load_model_config(ExperimentConfig(model={"path": str(tiny_model_dir)}).model)
    assert f"the model in {tiny_model_dir}" in str(e.value) and "network" not in str(e.value)
    with pytest.raises(LorasafeError, match="is a file"):
        load_model_config(ExperimentConfig(model={"path": str(tiny_model_dir / "config.json")}).model)


# --- run directories ----------------------------------------------------------------------------------------
def test_a_run_directory_that_is_a_file_or_under_a_file_is_one_error(tmp_path):
    cfg = ExperimentConfig()
    (tmp_path / "taken").write_text("x")
    with pytest.raises(LorasafeError, match="is a file, not a run directory"):
        RunDir.open(tmp_path / "taken", cfg)
    with pytest.raises(LorasafeError, match="Cannot create run directory"):
        RunDir.open(tmp_path / "taken" / "run", cfg)
    assert (tmp_path / "taken").read_text() == "x"


def test_a_run_directory_without_results_is_taken_over_by_the_corrected_config(tmp_path):
    from lorasafe.runs.rundir import holds_results

    RunDir.open(tmp_path / "run", ExperimentConfig(name="old"))  # what a failed validation used to leave
    assert not holds_results(tmp_path / "run")
    run = RunDir.open(tmp_path / "run", ExperimentConfig(name="new"))
    assert "name: new" in (tmp_path / "run" / "config.yaml").read_text() and run.replaced
    (tmp_path / "run" / "manifest.json").write_text("{torn")  # unreadable, but still nothing computed
    RunDir.open(tmp_path / "run", ExperimentConfig(name="newer"))
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["name"] == "newer"


def test_a_run_directory_with_results_is_never_taken_over(tmp_path):
    run = RunDir.open(tmp_path / "run", ExperimentConfig(name="old"))
    run.mark_done("generate-x", records=1)
    before = sorted((p.name, p.read_bytes()) for p in (tmp_path / "run").rglob("*") if p.is_file())
    with pytest.raises(LorasafeError, match="holds a run of another config"):
        RunDir.open(tmp_path / "run", ExperimentConfig(name="new"))
    (tmp_path / "run" / "manifest.json").write_text("{torn")
    with pytest.raises(LorasafeError, match="manifest.json is unreadable"):
        RunDir.open(tmp_path / "run", ExperimentConfig(name="new"))
    (tmp_path / "run" / "manifest.json").write_text(dict(before)["manifest.json"].decode())
    after = sorted((p.name, p.read_bytes()) for p in (tmp_path / "run").rglob("*") if p.is_file())
    assert after == before


def test_a_run_with_results_never_resumes_over_other_weights_behind_the_same_model_path(tmp_path):
    """The config hash names the model by path; a rebuilt model behind that path must not mix into old results."""
    import shutil

    from lorasafe.models.loading import mini_model_dir

    model = tmp_path / "model"
    shutil.copytree(mini_model_dir(), model)
    cfg = _cfg(model={"path": str(model), "device": "cpu"})
    run = _experiment(cfg, tmp_path / "run").run
    fp = json.loads((tmp_path / "run" / "manifest.json").read_text())["base_model"]["fingerprint"]
    assert fp.startswith("sha256:")
    run.mark_done("generate-x", records=1)
    _experiment(cfg, tmp_path / "run")  # the same weights resume
    data = bytearray((model / "model.safetensors").read_bytes())
    data[-1] ^= 1  # one bit of the last tensor: other weights, same config, same path
    (model / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(LorasafeError, match=r"other weights behind model .*resuming would mix two models"):
        _experiment(cfg, tmp_path / "run")
    # A manifest from before fingerprints were recorded: its parameter count is compared.
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    del manifest["base_model"]
    manifest["targets"]["total_params"] = 1_314_176  # the 6-layer mini model's
    (tmp_path / "run" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(LorasafeError, match="1,314,176 parameters, now"):
        _experiment(cfg, tmp_path / "run")
    # Without results a directory is taken over as before.
    shutil.rmtree(tmp_path / "run" / "stages")
    _experiment(cfg, tmp_path / "run")


def test_a_large_models_sampled_fingerprint_sees_a_change_in_a_middle_layer(tmp_path, monkeypatch):
    """Past the whole-hash size every tensor's first bytes count: a merge into middle layers changes the print."""
    import shutil

    from lorasafe.models import fingerprint as fp
    from lorasafe.models.loading import mini_model_dir

    monkeypatch.setattr(fp, "WHOLE_BELOW", 0)
    monkeypatch.setattr(fp, "SAMPLE", 1024)
    model = tmp_path / "model"
    shutil.copytree(mini_model_dir(), model)
    before = fp.fingerprint(str(model))
    assert before.startswith("sampled-sha256:")
    f = model / "model.safetensors"
    data = bytearray(f.read_bytes())
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    begin = header["model.layers.6.mlp.up_proj.weight"]["data_offsets"][0]  # a middle layer, mid-file
    data[8 + n + begin + 100] ^= 1
    f.write_bytes(bytes(data))
    assert fp.fingerprint(str(model)) != before


def test_a_corrupt_training_marker_is_one_error(tmp_path):
    run = RunDir.open(tmp_path / "run", ExperimentConfig())
    (run.path / "stages").mkdir()
    (run.path / "stages" / "train.json").write_text("{oops")
    with pytest.raises(LorasafeError, match="train.json is unreadable"):
        trained_weights(run.path)
    with pytest.raises(LorasafeError, match="does not exist"):
        trained_weights(tmp_path / "nope")


# --- validate before the run directory exists -------------------------------------------------------------
def test_bad_eval_data_fails_before_the_run_directory_exists_and_the_fix_runs_there(tmp_path):
    bad = _cfg(data={"eval": [{"path": _jsonl(tmp_path / "d.jsonl", {**ITEM, "id": ["a"]})}]})
    with pytest.raises(DataError, match="line 1: id must be a string"):
        _experiment(bad, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    exp = _experiment(_cfg(), tmp_path / "run")  # the corrected config, the same --out
    assert exp.run.path == tmp_path / "run" and (tmp_path / "run" / "manifest.json").is_file()


def test_training_data_without_targets_fails_before_the_run_directory_exists(tmp_path):
    path = _jsonl(tmp_path / "t.jsonl", ITEM)
    cfg = _cfg(adapter={"method": "lora", "layers": "all"}, data={"train": [{"path": path}], "eval": SMALL["data"]["eval"]})
    with pytest.raises(DataError, match="have no `target`"):
        _experiment(cfg, tmp_path / "run")
    cfg = _cfg(adapter={"method": "lora", "layers": "all"}, data={"train": [], "eval": SMALL["data"]["eval"]})
    with pytest.raises(DataError, match="training set .* is empty"):
        _experiment(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_reasoning_items_without_answers_fail_before_the_run_directory_exists(tmp_path):
    path = _jsonl(tmp_path / "r.jsonl", {**ITEM, "kind": "reasoning"})
    with pytest.raises(DataError, match="have no `answer`"):
        _experiment(_cfg(data={"eval": [{"path": path}]}), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def _mini_copy(tmp_path):
    from lorasafe.models.loading import mini_model_dir

    return shutil.copytree(mini_model_dir(), tmp_path / "model")


@pytest.mark.parametrize("how", ["truncated", "random"])
def test_corrupt_weights_fail_before_the_run_directory_exists(tmp_path, how):
    model = _mini_copy(tmp_path)
    _corrupt(model, how)
    with pytest.raises(LorasafeError, match="not a readable safetensors file"):
        _experiment(_cfg(model={"path": str(model), "device": "cpu"}), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_missing_chat_template_fails_before_the_run_directory_exists(tmp_path):
    model = _mini_copy(tmp_path)
    for f in model.glob("chat_template*"):
        f.unlink()
    tok = json.loads((model / "tokenizer_config.json").read_text())
    tok.pop("chat_template", None)
    (model / "tokenizer_config.json").write_text(json.dumps(tok))
    with pytest.raises(ChatTemplateError):
        _experiment(_cfg(model={"path": str(model), "device": "cpu"}), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_cuda_without_a_gpu_fails_before_the_run_directory_exists(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(LorasafeError, match="model.device is cuda"):
        _experiment(_cfg(model={"path": "mini", "device": "cuda"}), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_study_checks_every_variant_before_its_directory_exists(tmp_path):
    from lorasafe.pipeline.study import run_study

    path = _jsonl(tmp_path / "d.jsonl", {**ITEM, "prompt": None})
    study = load_config(StudyConfig, data={"experiment": SMALL, "variants": [
        {"label": "base"}, {"label": "bad", "set": {"data.eval": [{"path": path}]}}]})
    with pytest.raises(DataError, match="variant 'bad': .*line 1: prompt must be"):
        run_study(study, tmp_path / "study", log=lambda m: None, progress=False)
    assert not (tmp_path / "study").exists()


def test_a_sweep_checks_every_cell_before_its_directory_exists(tmp_path):
    from lorasafe.sweeps.runner import run_sweep
    from lorasafe.sweeps.spec import SweepConfig

    (tmp_path / "d.jsonl").write_bytes(b'{"id": "a", "prompt": "\xff", "kind": "harmful"}\n')
    sweep = load_config(SweepConfig, data={
        "experiment": SMALL, "grid": [{"path": "data.eval", "values": [SMALL["data"]["eval"], [{"path": str(tmp_path / "d.jsonl")}]]}],
        "operating_point": {"select_over": []}})
    with pytest.raises(DataError, match="cell .*line 1: not UTF-8"):
        run_sweep(sweep, tmp_path / "sweep", log=lambda m: None, progress=False)
    assert not (tmp_path / "sweep").exists()


def test_a_study_refuses_a_variant_of_another_config_before_rewriting_anything(tmp_path):
    from lorasafe.pipeline.study import run_study

    old = RunDir.open(tmp_path / "study" / "variants" / "base", _cfg(name="base", seed=1))
    old.mark_done("generate-x", records=1)
    (tmp_path / "study" / "study.yaml").write_text("name: the earlier study\n")
    study = load_config(StudyConfig, data={"experiment": SMALL, "variants": [{"label": "base"}]})
    with pytest.raises(LorasafeError, match="variant 'base': .*another config"):
        run_study(study, tmp_path / "study", log=lambda m: None, progress=False)
    assert (tmp_path / "study" / "study.yaml").read_text() == "name: the earlier study\n"
