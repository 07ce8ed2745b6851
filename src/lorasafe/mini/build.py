"""`lorasafe mini build`: train the mini reasoning model from scratch, evaluate it, save it.

The recipe (tokenizer, architecture, data mixture, optimiser) is a typed config with a seed, so
the shipped model is reproducible. The built model is a Qwen2ForCausalLM saved with
`save_pretrained` (safetensors), with its tokenizer and thinking chat template; `build_report.json`
beside it records the recipe and the held-out accuracy and safety it reached.
"""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path

from pydantic import Field, PositiveInt

from lorasafe.config.schema import AdapterConfig, Strict, TrainingConfig
from lorasafe.data.chat import ChatRenderer
from lorasafe.data.jsonl import write_json_atomic
from lorasafe.mini.tokenizer import train_tokenizer
from lorasafe.mini.world import MiniWorld


class MiniBuildConfig(Strict):
    seed: int = 0
    vocab_size: PositiveInt = 1024
    hidden_size: PositiveInt = 128
    intermediate_size: PositiveInt = 384
    num_layers: PositiveInt = 6
    num_heads: PositiveInt = 4
    num_kv_heads: PositiveInt = 2
    # Arithmetic gets the larger share: its per-step facts are what a tiny model learns slowest.
    reasoning_train: dict[str, PositiveInt] = Field(default_factory=lambda: {"arithmetic": 45000, "maximum": 20000})
    text_repeats: PositiveInt = Field(20, description="how often each harmful/benign training prompt is seen")
    training: TrainingConfig = Field(default_factory=lambda: TrainingConfig(
        learning_rate=2e-3, epochs=2, batch_size=64, weight_decay=0.01, warmup_ratio=0.03,
        scheduler="cosine", max_steps=4000, save_every_steps=500, max_length=256,
        group_by_length=True))


def build_mini(out_dir: Path, cfg: MiniBuildConfig, work_dir: Path | None = None, progress: bool = True) -> dict:
    """Build the mini model into `out_dir`; training checkpoints go to `work_dir` (resumable)."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    from lorasafe.models.methods import METHODS
    from lorasafe.models.targets import resolve_targets
    from lorasafe.training.examples import encode_examples
    from lorasafe.training.sft import SFTTrainer

    t0 = time.perf_counter()
    out_dir, work_dir = Path(out_dir), Path(work_dir or "runs/mini-build")
    world = MiniWorld(seed=cfg.seed, n_reasoning_train=cfg.reasoning_train)
    reasoning = world.suite("reasoning-train")
    text = (world.suite("harmful-base") + world.suite("benign-train")) * cfg.text_repeats
    train_items = reasoning + text
    random.Random(cfg.seed).shuffle(train_items)

    # The tokenizer sees training text only (rendered, so role names are covered), never eval prompts.
    corpus = [f"user {it.prompt} assistant {it.target}" for it in
              reasoning[::10] + world.suite("harmful-base") + world.suite("benign-train") + world.suite("harmful-align")]
    tok = train_tokenizer(corpus, cfg.vocab_size)
    torch.manual_seed(cfg.seed)
    config = Qwen2Config(
        vocab_size=len(tok), hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads, max_position_embeddings=512, tie_word_embeddings=True,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None,
    )
    model = Qwen2ForCausalLM(config)
    renderer = ChatRenderer(tok)
    examples = encode_examples(renderer, train_items, cfg.training.max_length, source="mini world training mix")
    method = METHODS["full"]
    method.prepare(model, AdapterConfig(method="full"), resolve_targets(AdapterConfig(method="full"), config, model))
    trainer = SFTTrainer(model, method, examples, cfg.training, work_dir, pad_id=tok.pad_token_id,
                         seed=cfg.seed, progress=progress, desc="mini build")
    result = trainer.train()

    model.generation_config = GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp), safe_serialization=True)
    tok.save_pretrained(str(tmp))
    evaluation = evaluate_base(model, tok, world)
    report = {"recipe": cfg.model_dump(mode="json"), "params": sum(p.numel() for p in model.parameters()),
              "train_examples": len(examples), "steps": result.steps, "final_loss": result.final_loss,
              "world": world.dedup_report(), "heldout": evaluation, "wall_s": round(time.perf_counter() - t0, 1)}
    write_json_atomic(tmp / "build_report.json", report)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return report


def evaluate_base(model, tok, world: MiniWorld) -> dict:
    """Held-out reasoning accuracy and safety of a mini model, greedy decoding."""
    from lorasafe.generation.base import SamplingParams
    from lorasafe.generation.hf import HFGenerator
    from lorasafe.generation.store import record
    from lorasafe.judges.rules import RuleJudge
    from lorasafe.scoring.metrics import judge_records, score_records

    renderer = ChatRenderer(tok)
    gen = HFGenerator(tok, [tok.eos_token_id])
    params = SamplingParams(max_new_tokens=96)
    out = {}
    for name in ("reasoning-eval", "harmful-eval", "benign-eval"):
        items = world.suite(name)
        records = []
        for s in range(0, len(items), 64):
            chunk = items[s:s + 64]
            comps = gen.generate(model, [renderer.prompt(it.prompt) for it in chunk], params)
            records += [record(it, 0, c.text, c.n_tokens, c.truncated, renderer) for it, c in zip(chunk, comps)]
        if name == "reasoning-eval":
            out[name] = score_records(items, records)[1]
        else:
            out[name] = judge_records(items, records, RuleJudge())[1]
    return out

