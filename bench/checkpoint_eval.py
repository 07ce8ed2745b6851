"""Evaluating every checkpoint of one LoRA run: the lorasafe way vs the official recipe's, in one process.

Setup (not timed): one LoRA run on the mini world (rank 8 on all linear layers, 5 epochs, a
checkpoint per epoch). Then both ways generate greedy outputs for the same held-out prompts at every
checkpoint and judge/score them:
- lorasafe: one base model loaded once; each checkpoint is a PEFT adapter loaded onto it and swapped
  in (models/pool.py); nothing merged, nothing written.
- official recipe: per checkpoint, load the base model, merge the adapter into it, save the merged
  model (safetensors + tokenizer), load it back, generate.
Prints where the time goes (load, merge, save, generate, judge), the ratio of the totals and the
share of outputs on which the two ways agree (they should all agree: same weights, greedy).

Usage: python bench/checkpoint_eval.py [--model mini|DIR|HUB_ID] [--limit N] [--device auto]
On a GPU, pass a real model (e.g. --model deepseek-ai/DeepSeek-R1-Distill-Qwen-7B --precision bf16): there
merging, saving and reloading a multi-GB model per checkpoint dominates.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from lorasafe.config.schema import ExperimentConfig
from lorasafe.data.suites import load_suite
from lorasafe.generation.base import SamplingParams
from lorasafe.generation.hf import HFGenerator
from lorasafe.judges.rules import RuleJudge
from lorasafe.models.loading import load_model
from lorasafe.pipeline.context import BaseContext
from lorasafe.pipeline.experiment import Experiment


class Clock:
    def __init__(self) -> None:
        self.s: dict[str, float] = defaultdict(float)

    def __call__(self, phase: str):
        clock = self

        class _T:
            def __enter__(self):
                self.t = time.perf_counter()

            def __exit__(self, *exc):
                clock.s[phase] += time.perf_counter() - self.t

        return _T()


def judge_all(items, completions, renderer) -> None:
    """Rule-judge the harmful outputs and exact-score the reasoning ones, as the pipeline does."""
    from lorasafe.generation.store import record
    from lorasafe.scoring.metrics import judge_records, score_records

    recs = [record(it, 0, c.text, c.n_tokens, c.truncated, renderer) for it, c in zip(items, completions)]
    harmful = [(it, r) for it, r in zip(items, recs) if it.kind == "harmful"]
    reasoning = [(it, r) for it, r in zip(items, recs) if it.kind == "reasoning"]
    judge_records([i for i, _ in harmful], [r for _, r in harmful], RuleJudge(), "answer")
    score_records([i for i, _ in reasoning], [r for _, r in reasoning], "exact")


def generate(gen, model, ctx, items, batch: int, max_new: int) -> list:
    prompts = [ctx.renderer.prompt(it.prompt) for it in items]
    out = []
    for i in range(0, len(prompts), batch):
        out += gen.generate(model, prompts[i:i + batch], SamplingParams(max_new, 0.0, 1.0, 0))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mini")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--limit", type=int, default=64, help="prompts per suite (harmful and reasoning)")
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lorasafe-bench-"))
    cfg = ExperimentConfig.model_validate({
        "name": "bench", "model": {"path": args.model, "precision": args.precision, "device": args.device},
        "adapter": {"method": "lora", "rank": 8, "modules": ["q", "k", "v", "o", "gate", "up", "down"], "layers": "all"},
        "data": {"train": [{"mini": "harmful-align"}], "eval": [{"mini": "harmful-eval", "limit": args.limit},
                                                               {"mini": "reasoning-eval", "limit": args.limit}]},
        "training": {"learning_rate": 1e-3, "epochs": 5, "batch_size": 8, "max_length": 256},
    })
    ctx = BaseContext(cfg)
    exp = Experiment(cfg, work / "run", ctx, log=lambda m: None, progress=False)
    exp.train()
    ckpts = [work / "run" / rel / "weights" for rel in exp.run.stage_done("train")["checkpoints"]]
    items = [it for ref in cfg.data.eval for it in load_suite(ref, cfg.think, 0)]
    gen = HFGenerator(ctx.tokenizer, ctx.eos_ids)
    print(f"{len(ckpts)} checkpoints x {len(items)} prompts, {args.max_new_tokens} new tokens, model {args.model}")

    ours, t_ours = [], Clock()
    with t_ours("load"):
        ctx.pool.base  # noqa: B018 - the one base-model load
    for ck in ckpts:
        with t_ours("load"):
            cm = ctx.pool.model_for("lora", ck)
            model = cm.__enter__()
        with t_ours("generate"):
            outs = generate(gen, model, ctx, items, args.batch, args.max_new_tokens)
        cm.__exit__(None, None, None)
        with t_ours("judge"):
            judge_all(items, outs, ctx.renderer)
        ours.append([c.text for c in outs])

    from peft import PeftModel

    theirs, t_theirs = [], Clock()
    for i, ck in enumerate(ckpts):
        with t_theirs("load"):
            base = load_model(cfg.model)
        with t_theirs("merge"):
            merged = PeftModel.from_pretrained(base, str(ck)).merge_and_unload()
        out_dir = work / f"merged-{i}"
        with t_theirs("save"):
            merged.save_pretrained(str(out_dir), safe_serialization=True)
            ctx.tokenizer.save_pretrained(str(out_dir))
        del base, merged
        with t_theirs("load"):
            model = load_model(cfg.model, path=str(out_dir))
            model.eval()
        with t_theirs("generate"):
            outs = generate(gen, model, ctx, items, args.batch, args.max_new_tokens)
        with t_theirs("judge"):
            judge_all(items, outs, ctx.renderer)
        theirs.append([c.text for c in outs])
        del model

    phases = ["load", "merge", "save", "generate", "judge"]
    print(f"{'phase':<10}{'lorasafe s':>12}{'official s':>12}")
    for ph in phases:
        print(f"{ph:<10}{t_ours.s.get(ph, 0.0):>12.2f}{t_theirs.s.get(ph, 0.0):>12.2f}")
    a, b = sum(t_ours.s.values()), sum(t_theirs.s.values())
    print(f"{'total':<10}{a:>12.2f}{b:>12.2f}")
    same = sum(x == y for xs, ys in zip(ours, theirs) for x, y in zip(xs, ys)) / sum(len(x) for x in ours)
    print(f"official / lorasafe = {b / a:.2f}x; identical outputs: {same:.1%}")


if __name__ == "__main__":
    main()
