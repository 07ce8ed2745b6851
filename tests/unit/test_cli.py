"""The command line: dry-run targeting on a config-only model and clean errors for bad input."""

import json

from typer.testing import CliRunner

from lorasafe.cli import app
from tests.conftest import tiny_config

runner = CliRunner()


def _config_only_model(tmp_path, layers=48):
    d = tmp_path / "qwen2-48"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(tiny_config("qwen2", layers=layers).to_dict()))
    return d


def _invoke(*args):
    import pytest

    from lorasafe.errors import LorasafeError

    try:
        return runner.invoke(app, list(args), catch_exceptions=False)
    except LorasafeError as e:  # main() turns these into a message and exit code 2
        pytest.fail(f"unexpected error: {e}")


def test_targets_up_16_31_on_48_layers_lists_16_modules(tmp_path):
    model = _config_only_model(tmp_path)
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(f"model: {{path: {model}}}\nadapter: {{method: lora, rank: 1, modules: [up], layers: {{first: 16, last: 31}}}}\n")
    res = _invoke("targets", str(cfg))
    assert res.exit_code == 0, res.output
    listed = [ln for ln in res.output.splitlines() if ln.strip().startswith("model.layers.")]
    assert len(listed) == 16 and "mlp.up_proj" in listed[0]
    assert "matched modules: 16" in res.output and f"trainable parameters: {16 * (32 + 48):,}" in res.output


def test_bad_input_is_one_message_without_traceback(tmp_path):
    import subprocess
    import sys

    model = _config_only_model(tmp_path, layers=6)
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(f"model: {{path: {model}}}\nadapter: {{layers: {{first: 2, last: 9}}}}\n")
    out = subprocess.run([sys.executable, "-c", "from lorasafe.cli import main; main()", "targets", str(cfg)],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert "outside the model" in out.stderr and "Traceback" not in out.stderr
    cfg.write_text("adapter: {rnak: 2}\n")
    out = subprocess.run([sys.executable, "-c", "from lorasafe.cli import main; main()", "targets", str(cfg)],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "adapter.rank" in out.stderr and "Traceback" not in out.stderr


def test_data_list_shows_every_bundled_count():
    res = _invoke("data", "list")
    assert res.exit_code == 0, res.output
    for name, count in (("strongreject", 313), ("jbb-harmful", 100), ("harmbench", 200), ("advbench", 520),
                        ("donotanswer", 939), ("humaneval", 164), ("gsm8k-100", 100)):
        line = next(ln for ln in res.output.splitlines() if f" {name} " in ln)
        assert f" {count} " in line


def test_judge_validate_prints_agreement_beside_recorded_judges(tmp_path):
    res = _invoke("judge", "validate", "--judge", "rules", "--out", str(tmp_path))
    assert res.exit_code == 0, res.output
    table = json.loads((tmp_path / "agreement.json").read_text())
    names = [row["judge"] for row in table]
    assert names[0] == "rules" and "recorded Llama Guard" in names and "recorded GPT-4" in names
    assert all(0 <= row["agreement"] <= 1 and row["tp"] + row["tn"] + row["fp"] + row["fn"] == 100 for row in table)
