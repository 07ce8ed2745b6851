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


# --- bad input through main() (issue 14): exit 2, one line, no traceback, nothing left behind ---------------
def _main(*args, cwd=None):
    import os
    import subprocess
    import sys

    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "80"}
    out = subprocess.run([sys.executable, "-c", "from lorasafe.cli import main; main()", *map(str, args)],
                         capture_output=True, text=True, cwd=cwd, env=env)
    assert "Traceback" not in out.stdout + out.stderr, out.stderr
    assert out.returncode == 2, out.stdout + out.stderr
    return out.stderr


def test_run_out_an_existing_file_or_a_foreign_directory_is_refused_untouched(tmp_path):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("name: x\nadapter: {method: none}\n")
    (tmp_path / "taken").write_text("keep")
    err = _main("run", cfg, "--out", tmp_path / "taken")
    assert "is an existing file" in err and (tmp_path / "taken").read_text() == "keep"
    err = _main("run", cfg, "--out", tmp_path / "taken" / "run")
    assert "which is a file" in err
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep")
    err = _main("run", cfg, "--out", tmp_path / "notes")
    assert "not a run directory" in err and [p.name for p in (tmp_path / "notes").iterdir()] == ["todo.txt"]


def test_other_outs_that_are_files_are_refused(tmp_path):
    (tmp_path / "taken").write_text("keep")
    assert "is an existing file" in _main("merge", tmp_path / "nope", "--out", tmp_path / "taken")
    assert "is an existing file" in _main("theory", "--out", tmp_path / "taken")
    assert "is a directory" in _main("data", "refusals", "advbench", "--out", tmp_path)
    assert "does not exist" in _main("report", tmp_path / "nope")
    assert (tmp_path / "taken").read_text() == "keep"


def test_an_error_is_one_unwrapped_line_and_brackets_in_it_are_not_markup(tmp_path):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text('adapter: {"[/x]": 1, "[bold]": 2}\n')
    err = _main("targets", cfg)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and len(lines[0]) > 80
    assert "'adapter.[/x]'" in err


def test_a_launched_process_but_the_main_one_ends_without_the_teardown_once_its_command_succeeded(monkeypatch):
    # Under `accelerate launch` a process other than the main one leaves by os._exit after its command succeeded
    # (training/distributed.py, end_launched_process); the main one, a failed command and a process that was not
    # launched as several leave the usual way.
    import os
    import sys

    import pytest

    from lorasafe import cli

    class Ended(Exception):
        pass

    def ended(code):
        raise Ended(code)

    monkeypatch.setattr(os, "_exit", ended)
    monkeypatch.setattr("logging.shutdown", lambda: None)  # would close this test process's own log handlers
    monkeypatch.setattr(sys, "argv", ["lorasafe", "data", "list"])
    monkeypatch.setattr(cli, "_AS_COMMAND", False)  # main sets it; restored after, so no later test restarts
    environ = dict(os.environ)
    for world, rank, code, leaves in (("2", "1", 0, Ended), ("2", "0", 0, SystemExit), ("2", "1", 1, SystemExit),
                                      ("1", "0", 0, SystemExit)):
        # main sets the command's environment defaults: a copy of the environment keeps them out of later tests
        monkeypatch.setattr(os, "environ", {**environ, "WORLD_SIZE": world, "RANK": rank})
        monkeypatch.setattr(cli, "app", lambda **kw: sys.exit(code))
        with pytest.raises(leaves) as left:
            cli.main()
        assert left.value.args == (0,) if leaves is Ended else left.value.code == code
