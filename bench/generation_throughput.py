"""Generation throughput: `backend: openai` against a local server (concurrency 1 and 8) vs `backend: hf`.

The same rendered prompts (mini-world harmful and reasoning prompts, greedy, the same max_new_tokens)
go through three ways, all measured in this run:
- baseline: lorasafe's HF backend in this process (`HFGenerator`, batch of `--batch` prompts);
- server c=1 and c=8: `ServerGenerator` against `transformers serve` holding the same model on
  127.0.0.1, with 1 and 8 requests in flight.
The ways take turns round by round, so load on the machine hits them alike. Prints tokens/s per way
(median over rounds), the ratio to the baseline, and how many outputs agree with the baseline's.
The server gets the same thread count as this process (`--threads`). `transformers serve` batches
requests only with continuous batching (`--cb`), so concurrency alone mostly overlaps HTTP and
tokenisation; vLLM and SGLang batch concurrent requests themselves (not measured here: no GPU).

Usage: python bench/generation_throughput.py [--prompts N] [--max-new-tokens T] [--rounds R] [--cb]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def start_server(model_dir: Path, threads: int, cb: bool) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    cmd = [str(Path(sys.executable).with_name("transformers")), "serve", str(model_dir), "--host", "127.0.0.1",
           "--port", str(port), "--device", "cpu", *(["--continuous-batching"] if cb else [])]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            with urllib.request.urlopen(url + "/health", timeout=2):
                return proc, url + "/v1"
        except OSError:
            time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    raise SystemExit("transformers serve did not start (pip install 'lorasafe[serve-local]')")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64, help="HF backend batch size")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cb", action="store_true", help="start transformers serve with continuous batching")
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM

    from lorasafe.config.schema import ExperimentConfig
    from lorasafe.generation.base import SamplingParams
    from lorasafe.generation.hf import HFGenerator
    from lorasafe.generation.server import ServerGenerator
    from lorasafe.mini.world import MiniWorld
    from lorasafe.models.loading import mini_model_dir
    from lorasafe.pipeline.context import BaseContext

    torch.set_num_threads(args.threads)
    ctx = BaseContext(ExperimentConfig.model_validate({"name": "bench"}))
    world = MiniWorld(0)
    items = (world.suite("harmful-eval") + world.suite("reasoning-eval"))[:args.prompts]
    prompts = [ctx.renderer.prompt(it.prompt) for it in items]
    params = SamplingParams(args.max_new_tokens)
    model = AutoModelForCausalLM.from_pretrained(str(mini_model_dir())).eval()
    proc, url = start_server(mini_model_dir(), args.threads, args.cb)
    try:
        hf = HFGenerator(ctx.tokenizer, ctx.eos_ids, decode=ctx.renderer.decode)
        ways = {
            f"hf backend (batch {args.batch})": lambda: [c for i in range(0, len(prompts), args.batch)
                                                        for c in hf.generate(model, prompts[i:i + args.batch], params)],
            "openai backend, concurrency 1": lambda: ServerGenerator(url, tokenizer=ctx.tokenizer, concurrency=1)
            .generate(str(mini_model_dir()), prompts, params),
            "openai backend, concurrency 8": lambda: ServerGenerator(url, tokenizer=ctx.tokenizer, concurrency=8)
            .generate(str(mini_model_dir()), prompts, params),
        }
        rates: dict[str, list[float]] = {w: [] for w in ways}
        outputs: dict[str, list] = {}
        for r in range(args.rounds):
            for way, fn in ways.items():
                t0 = time.perf_counter()
                outs = fn()
                dt = time.perf_counter() - t0
                rates[way].append(sum(o.n_tokens + (not o.truncated) for o in outs) / dt)
                outputs[way] = outs
                print(f"round {r + 1}: {way}: {rates[way][-1]:.0f} tokens/s", flush=True)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
    base_way = next(iter(ways))
    base = statistics.median(rates[base_way])
    print(f"\n{len(prompts)} prompts, {args.max_new_tokens} new tokens max, greedy, {args.threads} threads each, "
          f"{args.rounds} rounds{' (server with continuous batching)' if args.cb else ''}")
    for way in ways:
        same = sum(a.text == b.text for a, b in zip(outputs[way], outputs[base_way]))
        print(f"{way:34s} {statistics.median(rates[way]):8.0f} tokens/s  {statistics.median(rates[way]) / base:5.2f}x"
              f"  outputs equal to the hf backend's: {same}/{len(prompts)}")


if __name__ == "__main__":
    main()
