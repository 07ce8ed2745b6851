"""The SFT loop: completion-only loss, the paper's optimiser, checkpoints, resume, NaN guard.

Hand-written rather than TRL's SFTTrainer, for reasons measured on the mini world (see
shared/REFERENCE.md): TRL appends a second end-of-turn token to Qwen-style completions (training
text then differs from the inference prompt's continuation), turns on gradient checkpointing and
bf16 by default, and ran 1.2-1.7x slower on CPU. The loop keeps one code path for LoRA and full
fine-tuning: the method strategy decides what is trainable and how it is saved.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from lorasafe.config.schema import TrainingConfig
from lorasafe.data.jsonl import append_jsonl, write_json_atomic
from lorasafe.errors import TrainingDiverged
from lorasafe.models.methods import Method
from lorasafe.training.examples import Example, collate


@dataclass(frozen=True)
class TrainResult:
    steps: int
    checkpoints: list[str]
    final_loss: float | None
    resumed_from: int
    wall_s: float


def _checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints (state.json is written last), oldest first."""
    return sorted(p.parent for p in root.glob("step-*/state.json"))


def _schedule(optimizer: Any, cfg: TrainingConfig, total: int) -> Any:
    from transformers import get_scheduler

    warmup = int(round(cfg.warmup_ratio * total))
    name = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}[cfg.scheduler]
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total)


class SFTTrainer:
    """Trains `model` on `examples`, writing checkpoints under `out_dir/checkpoints`."""

    def __init__(self, model: Any, method: Method, examples: list[Example], cfg: TrainingConfig,
                 out_dir: Path, *, pad_id: int, seed: int = 0, progress: bool = True, desc: str = "train",
                 on_step: Callable[[int, float], None] | None = None, regulariser: Any = None):
        self.model, self.method, self.examples, self.cfg = model, method, examples, cfg
        self.out_dir, self.pad_id, self.seed, self.progress, self.desc = Path(out_dir), pad_id, seed, progress, desc
        self.on_step = on_step  # called after every optimiser step (and its checkpoint), e.g. for logging
        self.regulariser = regulariser  # training/regularisers.py: a loss term, logged as `penalty`
        self.ckpt_root = self.out_dir / "checkpoints"
        per_step = cfg.batch_size * cfg.grad_accum
        self.steps_per_epoch = max(1, math.ceil(len(examples) / per_step))
        self.total_steps = cfg.max_steps or cfg.epochs * self.steps_per_epoch

    def _save_points(self) -> set[int]:
        every = self.cfg.save_every_steps or self.steps_per_epoch
        return set(range(every, self.total_steps + 1, every)) | {self.total_steps}

    def _batches(self, epoch: int) -> list[list[Example]]:
        order = list(range(len(self.examples)))
        rng = random.Random(f"{self.seed}:{epoch}")
        rng.shuffle(order)
        b = self.cfg.batch_size
        if self.cfg.group_by_length:
            # Sort within windows of 8 batches so a batch holds similar lengths (less padding) while
            # staying mixed (wide windows make batches of a single task when tasks differ in length);
            # then shuffle the batches so the length order does not leak into the schedule.
            w = b * 8
            order = [i for s in range(0, len(order), w)
                     for i in sorted(order[s:s + w], key=lambda i: len(self.examples[i].input_ids))]
        micro = [[self.examples[i] for i in order[s:s + b]] for s in range(0, len(order), b)]
        if self.cfg.group_by_length:
            rng.shuffle(micro)
        a = self.cfg.grad_accum
        return [micro[s:s + a] for s in range(0, len(micro), a)]

    def _save(self, step: int, optimizer: Any, scheduler: Any, loss: float) -> Path:
        import torch

        final = self.ckpt_root / f"step-{step:06d}"
        tmp = self.ckpt_root / f".tmp-step-{step:06d}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        self.method.save(self.model, tmp / "weights")
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / "optimizer.pt")
        write_json_atomic(tmp / "state.json", {"step": step, "loss": loss, "total_steps": self.total_steps})
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        return final

    def train(self) -> TrainResult:
        import torch

        t0 = time.perf_counter()
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.cfg.learning_rate, weight_decay=self.cfg.weight_decay)
        scheduler = _schedule(optimizer, self.cfg, self.total_steps)
        step, last_loss = 0, None
        done = _checkpoints(self.ckpt_root)
        if done:  # resume from the newest complete checkpoint
            last = done[-1]
            self.method.restore(self.model, last / "weights")
            state = torch.load(last / "optimizer.pt", weights_only=True)
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            step = json.loads((last / "state.json").read_text())["step"]
        resumed_from = step
        save_at = self._save_points()
        self.model.train()
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.total_steps, initial=step, desc=self.desc, unit="step", leave=False)
        log = self.out_dir / "train_log.jsonl"
        try:
            step, last_loss = self._loop(step, optimizer, scheduler, params, save_at, bar, log)
        finally:
            if bar:
                bar.close()
        if last_loss is None and done:  # resumed at the end: the loss is the last checkpoint's
            last_loss = json.loads((done[-1] / "state.json").read_text())["loss"]
        return TrainResult(step, [str(p) for p in _checkpoints(self.ckpt_root)], last_loss, resumed_from,
                           time.perf_counter() - t0)

    def _loop(self, step, optimizer, scheduler, params, save_at, bar, log) -> tuple[int, float | None]:
        import torch

        last_loss = None
        device = next(self.model.parameters()).device
        while step < self.total_steps:
            epoch, pos = divmod(step, self.steps_per_epoch)
            groups = self._batches(epoch)
            for group in groups[pos:]:
                if step >= self.total_steps:
                    break
                torch.manual_seed(hash((self.seed, step)) & 0x7FFFFFFF)  # dropout, identical on resume
                optimizer.zero_grad(set_to_none=True)
                total = 0.0
                for micro in group:
                    batch = {k: v.to(device) for k, v in collate(micro, self.pad_id).items()}
                    loss = self.model(**batch).loss / len(group)
                    if not torch.isfinite(loss):
                        kept = _checkpoints(self.ckpt_root)
                        where = f"the last good checkpoint {kept[-1]} is kept" if kept else "no checkpoint was written yet"
                        raise TrainingDiverged(
                            f"Training diverged at step {step + 1}: the loss is {loss.item()}; {where}. Lower "
                            f"training.learning_rate (now {self.cfg.learning_rate}) or check the training data, and "
                            "run again into a new output directory (--out); nothing written so far is removed."
                        )
                    loss.backward()
                    total += loss.item()
                penalty = None
                if self.regulariser is not None:  # once per optimiser step, on the weights being stepped
                    pen = self.regulariser.penalty()
                    if not torch.isfinite(pen):
                        raise TrainingDiverged(
                            f"The {self.regulariser.name} regulariser's penalty is {pen.item()} at step {step + 1}; "
                            "lower training.regulariser.beta or training.learning_rate and run again into a new "
                            "output directory (--out); checkpoints written so far are kept.")
                    pen.backward()
                    penalty = pen.item()
                if self.cfg.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(params, self.cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                step += 1
                last_loss = total
                if step % 10 == 0 or step in save_at:
                    entry = {"step": step, "loss": total, "lr": scheduler.get_last_lr()[0]}
                    append_jsonl(log, [entry if penalty is None else {**entry, "penalty": penalty}])
                if bar:
                    bar.update(1)
                    bar.set_postfix(loss=f"{total:.4f}", **({} if penalty is None else {"penalty": f"{penalty:.3g}"}))
                if step in save_at:
                    self._save(step, optimizer, scheduler, total)
                if self.on_step:
                    self.on_step(step, total)
        return step, last_loss
