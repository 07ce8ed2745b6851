"""Config-only model directories (configs/models/) answer for hub ids when the hub cannot be reached.

`lorasafe targets` and `lorasafe sweep plan` print module counts and trainable parameters from them,
checked here by hand. conftest sets HF_HUB_OFFLINE=1, which is how every test sees "no hub".
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lorasafe.cli import app
from lorasafe.models import offline
from lorasafe.models.structure import ModelStructure, known_structure

runner = CliRunner()

# hub id, layers of the `middle` band, hidden, intermediate: LoRA r=1 on up_proj trains layers * (hidden + inter).
MIDDLE_UP = {
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B": (range(9, 18), 1536, 8960),  # 28 layers: middle third 9..17
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B": (range(9, 18), 3584, 18944),
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B": (range(16, 32), 5120, 13824),  # 48 layers: 16..31
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B": (range(21, 42), 5120, 27648),  # 64 layers: 21..41
    "deepseek-ai/DeepSeek-R1-Distill-Llama-8B": (range(10, 20), 4096, 14336),  # 32 layers: 10..19
    "Qwen/Qwen3-8B": (range(12, 24), 4096, 12288),  # 36 layers: 12..23
}


def _targets(tmp_path, hub_id: str, adapter: str = "{method: lora, rank: 1, modules: [up], layers: middle}"):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(f"name: t\nmodel: {{path: {hub_id}, precision: bf16}}\nadapter: {adapter}\n")
    result = runner.invoke(app, ["targets", str(cfg)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(autouse=True)
def _fresh_notes(monkeypatch):
    monkeypatch.setattr(offline, "_said", set())


@pytest.mark.parametrize("hub_id", sorted(MIDDLE_UP))
def test_targets_offline_from_config_only_copies(tmp_path, hub_id):
    layers, hidden, inter = MIDDLE_UP[hub_id]
    out = _targets(tmp_path, hub_id)
    assert f"matched modules: {len(layers)} (layers {layers[0]}..{layers[-1]})" in out
    assert f"trainable parameters: {len(layers) * (hidden + inter):,} of" in out


def test_paper_flagship_16_modules_303104_parameters(tmp_path, caplog):
    """R1-Distill-Qwen-14B, rank 1, up_proj, layers 16..31: 16 * (5120 + 13824) = 303,104; one line says offline."""
    with caplog.at_level(logging.WARNING, logger="lorasafe"):
        out = _targets(tmp_path, "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B",
                       "{method: lora, rank: 1, modules: [up], layers: {first: 16, last: 31}}")
    assert "matched modules: 16 (layers 16..31)" in out and "trainable parameters: 303,104 of 14,770,033,664" in out
    notes = [r.getMessage() for r in caplog.records if "config-only" in r.getMessage()]
    assert len(notes) == 1 and "not reachable" in notes[0]


def test_total_parameters_by_hand_r1_1_5b(tmp_path):
    """Untied embeddings 2 * 151936 * 1536, 28 layers of (q,k,v with bias; o; 3 MLP; 2 norms), final norm."""
    per_layer = (1536 * 1536 + 1536) + 2 * (1536 * 256 + 256) + 1536 * 1536 + 3 * 1536 * 8960 + 2 * 1536
    total = 2 * 151936 * 1536 + 28 * per_layer + 1536
    assert total == 1_777_088_000
    assert f"of {total:,} " in _targets(tmp_path, "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B")


def test_targets_offline_moe_expert_parameters(tmp_path):
    out = _targets(tmp_path, "openai/gpt-oss-20b",
                   "{method: lora, rank: 1, modules: [experts_gate_up], layers: middle, dropout: 0.0}")
    assert "matched modules: 0 + 8 expert parameters (PEFT target_parameters) (layers 8..15)" in out
    assert "model.layers.8.mlp.experts.gate_up_proj  [32x2880x5760]" in out
    assert "trainable parameters: 2,211,840 of" in out  # 8 layers * 32 experts * (2880 + 5760)


def test_sweep_plan_offline(tmp_path):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        "name: s\nexperiment:\n  model: {path: deepseek-ai/DeepSeek-R1-Distill-Qwen-14B, precision: bf16}\n"
        "  adapter: {method: lora, rank: 1, modules: [up], layers: middle}\n"
        "grid:\n  - {path: adapter.rank, values: [1, 2]}\noperating_point: {select_over: []}\n")
    result = runner.invoke(app, ["sweep", "plan", str(sweep)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "303,104" in result.output and "606,208" in result.output


def test_unknown_hub_id_offline_is_one_clear_error(tmp_path):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("name: t\nmodel: {path: nobody/no-such-model}\n")
    result = runner.invoke(app, ["targets", str(cfg)])
    assert result.exit_code != 0
    assert "not reachable" in str(result.exception) or "not reachable" in result.output


def _probe(monkeypatch, endpoint: str) -> tuple[bool, float]:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    offline.hub_reachable.cache_clear()
    t0 = time.perf_counter()
    try:
        return offline.hub_reachable(), time.perf_counter() - t0
    finally:
        offline.hub_reachable.cache_clear()


def test_probe_refused_connection_is_unreachable(monkeypatch):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    reachable, _ = _probe(monkeypatch, f"http://127.0.0.1:{port}")
    assert not reachable


def test_probe_silent_server_is_bounded(monkeypatch):
    """A server that accepts and never answers costs one probe timeout, not a retry storm."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    held = []
    threading.Thread(target=lambda: held.append(srv.accept()), daemon=True).start()
    try:
        reachable, took = _probe(monkeypatch, f"http://127.0.0.1:{srv.getsockname()[1]}")
    finally:
        srv.close()
    assert not reachable and took < offline.PROBE_TIMEOUT_S + 1.5


def test_probe_http_answer_is_reachable(monkeypatch):
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class NotFound(BaseHTTPRequestHandler):
        def do_HEAD(self):  # noqa: N802 - http.server's naming
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.handle_request, daemon=True).start()
    try:
        reachable, _ = _probe(monkeypatch, f"http://127.0.0.1:{server.server_port}")
    finally:
        server.server_close()
    assert reachable  # any status is an answer


# Shipped structure.json files: stored measurements of the config-only copies, so `targets` needs no torch.
CONFIG_DIRS = sorted(p for p in (Path(__file__).resolve().parents[2] / "configs" / "models").iterdir() if p.is_dir())


@pytest.mark.parametrize("model_dir", CONFIG_DIRS, ids=lambda p: p.name)
def test_shipped_structure_matches_a_fresh_meta_measurement(model_dir):
    """Fails when a config.json changes without `lorasafe model structure DIR`, or transformers lays a model out
    differently from the stored file."""
    from transformers import AutoConfig

    stored = known_structure(model_dir)
    assert stored is not None, f"{model_dir}/structure.json is missing or stale: run lorasafe model structure {model_dir}"
    assert stored == ModelStructure.measure(AutoConfig.from_pretrained(str(model_dir)))


def test_targets_offline_imports_neither_torch_nor_transformers(tmp_path):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("name: t\nmodel: {path: deepseek-ai/DeepSeek-R1-Distill-Qwen-14B}\n"
                   "adapter: {method: lora, rank: 1, modules: [up], layers: {first: 16, last: 31}}\n")
    code = ("import sys; from lorasafe.cli import main; sys.argv = ['lorasafe', 'targets', sys.argv[1]]\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('imported:', sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(cfg)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "HF_HUB_OFFLINE": "1", "LORASAFE_CACHE": str(tmp_path / "cache")})
    assert "trainable parameters: 303,104 of 14,770,033,664" in out.stdout, out.stdout + out.stderr
    assert "imported: []" in out.stdout


def test_a_changed_config_is_measured_again_and_cached(tmp_path, monkeypatch):
    """structure.json is keyed by the config's sha256: an edited config.json is never answered from a stale file."""
    import json
    import shutil

    from lorasafe.config.schema import ExperimentConfig
    from lorasafe.pipeline.context import BaseContext

    monkeypatch.setenv("LORASAFE_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "m"
    shutil.copytree(CONFIG_DIRS[0], model)
    config = json.loads((model / "config.json").read_text())
    config["num_hidden_layers"] = 3
    (model / "config.json").write_text(json.dumps(config))
    assert known_structure(model) is None  # the shipped file describes the original config
    cfg = ExperimentConfig.model_validate({"name": "t", "model": {"path": str(model)}})
    assert BaseContext(cfg).structure.num_hidden_layers == 3
    cached = known_structure(model)  # now from the cache
    assert cached is not None and cached.num_hidden_layers == 3
    assert len(list((tmp_path / "cache" / "structures").iterdir())) == 1
