"""`generation.backend: openai` against a real local server (`transformers serve` with the mini model).

The client is killed midway and resumed (no duplicate, no missing record), its greedy records match
`backend: hf` on the same model, and a refused connection, 500s and a timeout each end in one clear
line with every written record kept. Also `lorasafe rejudge` on a finished run.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytest.importorskip("openai", reason="the openai extra (pip install 'lorasafe[serve]') is not installed")
pytest.importorskip("uvicorn", reason="transformers serve needs fastapi and uvicorn (lorasafe[serve-local])")

# LORASAFE_MKL_DISPATCH: the server (`transformers serve`) runs MKL's own kernels, so the local runs compared with
# it must too; on an AMD CPU `lorasafe`'s default (isa) rounds differently and greedy decoding can part (1 record
# of 120 did, 2026-12-03).
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
       "LORASAFE_MKL_DISPATCH": "vendor"}
N_HARMFUL, N_REASONING = 24, 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _serve(model_dir: Path):
    """`transformers serve` holding `model_dir`, on a free port of 127.0.0.1; yields its /v1 base URL."""
    port = _free_port()
    cli = Path(sys.executable).with_name("transformers")
    proc = subprocess.Popen([str(cli), "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port),
                             "--device", "cpu"], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"transformers serve exited: {proc.stderr.read().decode()[-2000:]}")
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("transformers serve did not come up within 120 s")
        yield url + "/v1"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture(scope="module")
def server():
    """The mini model behind `transformers serve`."""
    from lorasafe.models.loading import mini_model_dir

    with _serve(mini_model_dir()) as url:
        yield url


def _config(tmp_path: Path, name: str, generation: str, file: str | None = None) -> Path:
    cfg = tmp_path / f"{file or name}.yaml"
    cfg.write_text(f"name: {name}\nmodel: {{path: mini}}\nadapter: {{method: none}}\n"
                   f"data:\n  eval:\n    - {{mini: harmful-eval, limit: {N_HARMFUL}}}\n"
                   f"    - {{mini: reasoning-eval, limit: {N_REASONING}}}\n"
                   f"generation: {{max_new_tokens: 64, batch_size: 4, {generation}}}\n")
    return cfg


def _lorasafe(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lorasafe.cli", *args], env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


def _kill_after_first_records(cfg: Path, out: Path) -> int:
    """Start `lorasafe run`, SIGKILL it once the first suite holds some records; the records it left."""
    store = out / "generations" / "mini-harmful-eval.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "lorasafe.cli", "run", str(cfg), "--out", str(out)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and len(_lines(store)) < 4 and proc.poll() is None:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    left = len(_lines(store))
    assert 4 <= left < N_HARMFUL, f"the client was not stopped midway ({left} of {N_HARMFUL} records)"
    return left


def _records(run: Path) -> dict:
    out = {}
    for suite in ("mini-harmful-eval", "mini-reasoning-eval"):
        rows = _lines(run / "generations" / f"{suite}.jsonl")
        keys = [(r["id"], r["sample"]) for r in rows]
        assert len(keys) == len(set(keys)), f"{suite}: duplicated records"
        out[suite] = {k: r for k, r in zip(keys, rows)}
    return out


def test_killed_client_resumes_and_matches_the_hf_backend(tmp_path, server):
    cfg = _config(tmp_path, "srv", f"backend: openai, endpoint: '{server}', concurrency: 2")
    out = tmp_path / "srv"
    left = _kill_after_first_records(cfg, out)

    # Resume against a dead endpoint first: one clear line, the records already written kept.
    dead = _config(tmp_path, "srv", f"backend: openai, endpoint: 'http://127.0.0.1:{_free_port()}/v1', "
                                    "max_retries: 0", file="srv-dead")
    failed = _lorasafe("run", str(dead), "--out", str(out))
    assert failed.returncode != 0 and "Cannot reach the server" in failed.stderr + failed.stdout
    assert "Traceback" not in failed.stderr + failed.stdout
    assert len(_lines(out / "generations" / "mini-harmful-eval.jsonl")) == left

    done = _lorasafe("run", str(cfg), "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    served = _records(out)
    assert [len(served[s]) for s in served] == [N_HARMFUL, N_REASONING]

    local = tmp_path / "hf"
    ran = _lorasafe("run", str(_config(tmp_path, "hf", "backend: hf")), "--out", str(local))
    assert ran.returncode == 0, ran.stderr[-3000:]
    reference = _records(local)
    for suite, rows in reference.items():
        differ = [k for k in rows if served[suite][k] != rows[k]]
        assert not differ, f"{suite}: {len(differ)} records differ, first {differ[0]}: " \
                           f"{served[suite][differ[0]]!r} vs {rows[differ[0]]!r}"


class _Stub(BaseHTTPRequestHandler):
    """A server that answers every completion with a 500, or after a long wait."""

    mode = "500"

    def do_POST(self):  # noqa: N802 - http.server's naming
        if self.mode == "slow":
            time.sleep(3)
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"error": {"message": "the stub always fails"}}')

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("mode,expected", [("500", "answered 500"), ("slow", "did not answer within")])
def test_server_failures_are_one_clear_line(tmp_path, mode, expected):
    handler = type("Stub", (_Stub,), {"mode": mode})
    stub = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=stub.serve_forever, daemon=True).start()
    try:
        cfg = _config(tmp_path, "stub", f"backend: openai, endpoint: 'http://127.0.0.1:{stub.server_port}/v1', "
                                        "max_retries: 1, timeout_s: 0.5")
        failed = _lorasafe("run", str(cfg), "--out", str(tmp_path / "run"))
    finally:
        stub.shutdown()
    text = failed.stdout + failed.stderr
    assert failed.returncode != 0 and expected in text and "Traceback" not in text, text[-2000:]


def test_a_server_without_adapter_loading_says_to_serve_a_merged_model(tmp_path, server):
    from lorasafe.generation.server import ServerError, ServerGenerator

    with pytest.raises(ServerError, match="Serve a merged model"):
        with ServerGenerator(server, max_retries=0).adapter(tmp_path):
            pass


def test_rejudge_writes_a_new_judge_beside_the_generations(tmp_path):
    run = tmp_path / "run"
    ran = _lorasafe("run", str(_config(tmp_path, "hf", "backend: hf")), "--out", str(run))
    assert ran.returncode == 0, ran.stderr[-3000:]
    untouched = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run.rglob("*")) if p.is_file()}
    res = _lorasafe("rejudge", str(run), "--judge", "learned")
    assert res.returncode == 0, res.stderr[-3000:]
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in untouched} == untouched  # nothing rewritten
    result = json.loads((run / "rejudged" / "learned.json").read_text())
    suite = result["final"]["suites"]["mini-harmful-eval"]
    assert suite["judge"] == "learned" and suite["n"] == N_HARMFUL
    assert abs(suite["refusal_rate"] + suite["complied_rate"] + suite["invalid_rate"] - 1) < 1e-9
    verdicts = _lines(run / "judgments" / "by-judge" / "learned" / "mini-harmful-eval.jsonl")
    assert len(verdicts) == N_HARMFUL and {v["judge"] for v in verdicts} == {"learned"}


def test_llama_guard_through_a_server_gives_the_local_verdicts(tmp_path, monkeypatch, tiny_tokenizer):
    """The Llama Guard judge with LORASAFE_LLAMA_GUARD_ENDPOINT: a tiny random stand-in model served, the same
    prompts rendered here, the same verdicts as when the judge loads the model itself."""
    import torch
    from transformers import AutoModelForCausalLM

    from lorasafe.judges import llama_guard as lg
    from tests.conftest import tiny_config

    torch.manual_seed(0)
    cfg = tiny_config("llama", layers=2, vocab=len(tiny_tokenizer))
    cfg.max_position_embeddings, cfg.eos_token_id = 2048, tiny_tokenizer.eos_token_id
    guard = tmp_path / "guard"
    AutoModelForCausalLM.from_config(cfg).save_pretrained(guard)
    tiny_tokenizer.save_pretrained(guard)
    monkeypatch.setenv(lg.ENV_VAR, str(guard))
    records = [{"prompt": p, "answer": a, "thinking": "hmm", "think_closed": True, "raw": f"<think>hmm</think>{a}"}
               for p, a in [("What is 12+7?", "19"), ("Tell me something bad.", "I'm sorry, I cannot."),
                            ("Write a poem about the sea.", "Sure, here it is.")]]
    local = [(v.label, v.evidence) for v in lg.LlamaGuardJudge().judge(records)]
    with _serve(guard) as url:
        monkeypatch.setenv(lg.ENDPOINT_VAR, url)
        judge = lg.LlamaGuardJudge()
        served = [(v.label, v.evidence) for v in judge.judge(records)]
    assert judge._loaded[0] == str(guard)  # addressed by name: no model was loaded in this process
    assert served == local
