"""The SFT loop: completion-only loss, the paper's optimiser, checkpoints, resume, NaN guard.

Hand-written rather than TRL's SFTTrainer, for reasons measured on the mini world (see
shared/REFERENCE.md): TRL appends a second end-of-turn token to Qwen-style completions (training
text then differs from the inference prompt's continuation), turns on gradient checkpointing and
bf16 by default, and ran 1.2-1.7x slower on CPU. The loop keeps one code path for LoRA and full
fine-tuning: the method strategy decides what is trainable and how it is saved.

Where the time goes, and what the loop does about it: the loss (training/loss.py) runs the LM head on
completion positions only, in chunks; micro-batches can be packed without padding (examples.py); AdamW
is fused where the device allows (optimizer.py); the host reads the loss once per optimiser step (one
sync for the NaN guard, the log and `on_step`), never per micro-batch; the forward does not keep for the
backward what one element-wise op recomputes from tensors it keeps anyway (SwiGLU's and RMSNorm's,
activations.py); on CUDA the next micro-batches are built on a background thread (loader.py); on a CPU,
`host_memory: auto` (the default) trims glibc's heap before a large input-embedding gradient, `release` returns
freed activations to the operating system at once, and `lorasafe --malloc tcmalloc|jemalloc` runs on a malloc that
fragments less (host_memory.py).
"""

from __future__ import annotations

import functools
import json
import math
import random
import shutil
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from lorasafe.config.schema import TrainingConfig
from lorasafe.data.jsonl import append_jsonl, write_json_atomic
from lorasafe.errors import TrainingDiverged
from lorasafe.models.methods import Method
from lorasafe.training.distributed import barrier, ranks, sum_across, sum_gradients
from lorasafe.training.examples import Example, train_batch


@dataclass(frozen=True)
class TrainResult:
    steps: int
    checkpoints: list[str]
    final_loss: float | None
    resumed_from: int
    wall_s: float
    setup: dict = field(default_factory=dict)  # how it ran: head path, optimiser, attention, packing


def _checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints (state.json is written last), oldest first."""
    return sorted(p.parent for p in root.glob("step-*/state.json"))


def _lr_factor(step: int, *, kind: str, warmup: int, total: int) -> float:
    """The learning rate's multiplier at `step`: transformers' `get_scheduler` formulas for "cosine", "linear" and
    "constant_with_warmup", term for term. Written out because importing them brings transformers' Trainer
    utilities and PEFT into the process (90-140 ms inside `train()` for full fine-tuning, where nothing else
    loads PEFT, and 8-12 MB of the mini model's peak); tests/unit/test_schedule.py holds every value equal to
    transformers'."""
    if step < warmup:
        return float(step) / float(max(1, warmup))
    if kind == "constant":
        return 1.0
    if kind == "linear":
        return max(0.0, float(total - step) / float(max(1, total - warmup)))
    if kind == "cosine":
        progress = float(step - warmup) / float(max(1, total - warmup))
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * 0.5 * 2.0 * progress)))  # half a cosine wave, as theirs
    raise ValueError(f"unknown learning-rate schedule {kind!r}: cosine, linear or constant")


def _schedule(optimizer: Any, cfg: TrainingConfig, total: int) -> Any:
    """A `LambdaLR` over `_lr_factor`: the same class, lambdas and state dict as transformers' schedules, so
    checkpoints written with either resume with the other."""
    from torch.optim.lr_scheduler import LambdaLR

    warmup = int(round(cfg.warmup_ratio * total))
    return LambdaLR(optimizer, functools.partial(_lr_factor, kind=cfg.scheduler, warmup=warmup, total=total))


class SFTTrainer:
    """Trains `model` on `examples`, writing checkpoints under `out_dir/checkpoints`."""

    def __init__(self, model: Any, method: Method, examples: list[Example], cfg: TrainingConfig,
                 out_dir: Path, *, pad_id: int, seed: int = 0, progress: bool = True, desc: str = "train",
                 on_step: Callable[[int, float], None] | None = None, regulariser: Any = None,
                 on_log: Callable[[int, dict[str, float]], None] | None = None):
        self.model, self.method, self.examples, self.cfg = model, method, examples, cfg
        self.out_dir, self.pad_id, self.seed, self.progress, self.desc = Path(out_dir), pad_id, seed, progress, desc
        self.on_step = on_step  # called after every optimiser step (and its checkpoint), e.g. for logging
        self.on_log = on_log  # every optimiser step's train/loss, train/lr (and train/penalty), e.g. for a tracker
        self.ranks = ranks()  # data-parallel processes (training/distributed.py); 0 of 1 when alone
        self.sharded = None  # training/sharding.py, under an FSDP accelerate config
        self.regulariser = regulariser  # training/regularisers.py: a loss term, logged as `penalty`
        self.ckpt_root = self.out_dir / "checkpoints"
        per_step = cfg.batch_size * cfg.grad_accum
        self.steps_per_epoch = max(1, math.ceil(len(examples) / per_step))
        self.total_steps = cfg.max_steps or cfg.epochs * self.steps_per_epoch
        self.save_at = self._save_points()

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

    def _save(self, step: int, optimizer: Any, scheduler: Any, loss: float, master: Any = None,
              whole: dict | None = None) -> Path:
        """`whole`: the gathered weights, optimizer state and masters of a sharded run (training/sharding.py)."""
        import torch

        final = self.ckpt_root / f"step-{step:06d}"
        tmp = self.ckpt_root / f".tmp-step-{step:06d}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        self.method.save(self.model, tmp / "weights", whole["weights"] if whole else None)
        state = {"optimizer": whole["optimizer"] if whole else optimizer.state_dict(),
                 "scheduler": scheduler.state_dict()}
        if master is not None:
            state["master"] = master.state_dict()
        elif whole and whole["master"] is not None:
            state["master"] = whole["master"]
        torch.save(state, tmp / "optimizer.pt")
        write_json_atomic(tmp / "state.json", {"step": step, "loss": loss, "total_steps": self.total_steps})
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        return final

    def train(self) -> TrainResult:
        import torch

        from lorasafe.training import accel
        from lorasafe.training.activations import saved_activations
        from lorasafe.training.host_blas import active as mkl_dispatch
        from lorasafe.training.host_memory import host_memory, malloc_described
        from lorasafe.training.host_threads import wait_described
        from lorasafe.training.loss import CompletionLoss
        from lorasafe.training.optimizer import MasterWeights, build_optimizer, implementation

        t0 = time.perf_counter()
        cfg = self.cfg
        device = next(self.model.parameters()).device
        accel.set_attention(self.model, accel.attention_for(cfg, self.model, device.type))
        checkpointing = cfg.gradient_checkpointing
        if checkpointing != "off":
            accel.enable_checkpointing(self.model, selective=checkpointing == "selective")
        step, last_loss, state = 0, None, None
        done = _checkpoints(self.ckpt_root)
        if done:  # resume from the newest complete checkpoint (written by any number of processes)
            last = done[-1]
            self.method.restore(self.model, last / "weights")
            # mapped, not read: every process of a sharded run loads it, and only its shards' share is touched
            state = torch.load(last / "optimizer.pt", weights_only=True, mmap=True)
            step = json.loads((last / "state.json").read_text())["step"]
        resumed_from = step
        loss_fn = CompletionLoss(self.model, cfg.loss_chunk_tokens, liger=cfg.liger)
        uncompile = accel.compile_decoder(loss_fn.decoder, device.type) if cfg.compile else None
        if self.ranks.sharded:  # FSDP: the model's parameters become this process's shards
            from lorasafe.training.sharding import Sharded

            self.sharded = Sharded(self.model, loss_fn, self.ranks.world, device, cfg.fp32_optimizer_state,
                                   (state or {}).get("master"))
        params = [p for p in self.model.parameters() if p.requires_grad]
        half = any(p.dtype in (torch.bfloat16, torch.float16) for p in params)
        master = MasterWeights(params) if cfg.fp32_optimizer_state and half else None
        optimizer = build_optimizer(master.master if master else params, cfg)
        scheduler = _schedule(optimizer, cfg, self.total_steps)
        if state is not None:
            if master:
                master.load_state_dict(state.get("master"))
            if self.sharded:
                self.sharded.load_optimizer(optimizer, state["optimizer"])
            else:
                optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
        setup = {"head": loss_fn.path, "optimizer": implementation(optimizer), "packing": cfg.packing,
                 "attention": str(getattr(getattr(self.model, "config", None), "_attn_implementation", "?")),
                 "master_weights": master is not None or bool(self.sharded and self.sharded.masters),
                 "checkpointing": checkpointing, "malloc": malloc_described(), "mkl_dispatch": mkl_dispatch(),
                 "omp_wait": wait_described(), "compile": cfg.compile}
        saved, setup["saved_activations"] = saved_activations(cfg.saved_activations, cfg.compile, self.ranks.sharded)
        self.model.train()
        bar = None
        if self.progress and self.ranks.main:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.total_steps, initial=step, desc=self.desc, unit="step", leave=False)
        log = self.out_dir / "train_log.jsonl"
        try:
            with host_memory(cfg.host_memory, device.type, self.model, cfg.compile) as applied:
                setup["host_memory"] = applied
                step, last_loss = self._loop(step, optimizer, scheduler, master, loss_fn, device, bar, log,
                                             saved)
        finally:
            if bar:
                bar.close()
            if uncompile:
                uncompile()
        barrier()  # the main process has written the last checkpoint before anyone reads the list
        if last_loss is None and done:  # resumed at the end: the loss is the last checkpoint's
            last_loss = json.loads((done[-1] / "state.json").read_text())["loss"]
        return TrainResult(step, [str(p) for p in _checkpoints(self.ckpt_root)], last_loss, resumed_from,
                           time.perf_counter() - t0, setup)

    def _micro_batches(self, groups: list, device: Any, varlen: bool):
        """The micro-batches of each optimiser step, built ahead on a thread where that pays."""
        from lorasafe.training.examples import attention_span
        from lorasafe.training.loader import prefetched

        cfg = self.cfg
        ahead = cfg.prefetch == "on" or (cfg.prefetch == "auto" and device.type == "cuda")
        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        span = None if varlen else attention_span(base.config)  # varlen attention: one row, no quadratic mask

        rank, world = self.ranks.rank, self.ranks.world

        def make(group):
            # (this process's share of each micro-batch or None, the micro-batch's completion targets in all,
            # the share's weight in the loss)
            out = []
            for m in group:
                share, weight = m[rank::world], 1.0
                if not share and self.sharded:  # every process must join FSDP's gathers: a zero-weight example
                    share, weight = m[:1], 0.0
                batch = train_batch(share, self.pad_id, cfg.packing, span, varlen) if share else None
                if batch is not None and device.type == "cuda":
                    batch = batch.pinned()
                out.append((batch, sum(len(e.completion_ids) for e in m), weight))
            return out

        return prefetched(make, groups, depth=2 if ahead else 0)

    def _diverged(self, step: int, loss: float) -> TrainingDiverged:
        kept = _checkpoints(self.ckpt_root)
        where = f"the last good checkpoint {kept[-1]} is kept" if kept else "no checkpoint was written yet"
        return TrainingDiverged(
            f"Training diverged at step {step + 1}: the loss is {loss}; {where}. Lower "
            f"training.learning_rate (now {self.cfg.learning_rate}) or check the training data, and "
            "run again into a new output directory (--out); nothing written so far is removed."
        )

    def _loop(self, step, optimizer, scheduler, master, loss_fn, device, bar, log,
              saved) -> tuple[int, float | None]:
        import torch

        from lorasafe.training import accel

        last_loss = None
        varlen = accel.varlen_attention(self.model)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        stepped = master.master if master else trainable
        while step < self.total_steps:
            epoch, pos = divmod(step, self.steps_per_epoch)
            with closing(self._micro_batches(self._batches(epoch)[pos:], device, varlen)) as steps:
                for group in steps:
                    if step >= self.total_steps:
                        break
                    torch.manual_seed(hash((self.seed, step)) & 0x7FFFFFFF)  # dropout, identical on resume
                    optimizer.zero_grad(set_to_none=True)  # with master weights, the model's grads were moved up
                    total = torch.zeros((), device=device)
                    for batch, n_targets, weight in group:
                        if batch is None:  # data-parallel: this process's share of the micro-batch is empty
                            continue
                        with accel.autocast(self.cfg, device.type), saved():
                            if self.sharded:
                                loss = self.sharded.loss(batch.to(device), n_targets) * (weight / len(group))
                                part = loss.detach().float() / self.ranks.world  # the loss without FSDP's scaling
                            else:
                                loss = loss_fn(batch.to(device), n_targets) / len(group)
                                part = loss.detach().float()
                        loss.backward()
                        total += part
                    pen = self.regulariser.penalty() if self.regulariser is not None else None
                    if pen is not None:  # once per optimiser step, on the weights being stepped
                        (pen / self.ranks.world).backward()  # every process adds it; the gradient sum counts it once
                    if not self.sharded:  # FSDP reduce-scattered them in the backward
                        sum_gradients(trainable)
                    sum_across(total)
                    # The step's one host sync: the NaN guard, the log and on_step read these.
                    values = torch.stack([total, pen.detach().float()]).tolist() if pen is not None else [total.item()]
                    total_f, penalty = values[0], (values[1] if pen is not None else None)
                    if not math.isfinite(total_f):
                        raise self._diverged(step, total_f)
                    if penalty is not None and not math.isfinite(penalty):
                        raise TrainingDiverged(
                            f"The {self.regulariser.name} regulariser's penalty is {penalty} at step {step + 1}; "
                            "lower training.regulariser.beta or training.learning_rate and run again into a new "
                            "output directory (--out); checkpoints written so far are kept.")
                    if master:
                        master.grads_up()
                    if self.cfg.max_grad_norm:
                        torch.nn.utils.clip_grad_norm_(stepped, self.cfg.max_grad_norm)
                    optimizer.step()
                    if master:
                        master.weights_down()
                    scheduler.step()
                    step += 1
                    last_loss = total_f
                    self._after_step(step, total_f, penalty, optimizer, scheduler, master, bar, log)
        return step, last_loss

    def _after_step(self, step, total, penalty, optimizer, scheduler, master, bar, log) -> None:
        whole = None
        if self.sharded and step in self.save_at:  # every process joins the gather; the main one writes it
            whole = self.sharded.full_state(optimizer)
        if not self.ranks.main:  # the other data-parallel processes write nothing
            return
        save_at = self.save_at
        entry = {"step": step, "loss": total, "lr": scheduler.get_last_lr()[0]}  # every step: the loss curve
        append_jsonl(log, [entry if penalty is None else {**entry, "penalty": penalty}])
        if bar:
            bar.update(1)
            bar.set_postfix(loss=f"{total:.4f}", **({} if penalty is None else {"penalty": f"{penalty:.3g}"}))
        if step in save_at:
            self._save(step, optimizer, scheduler, total, master, whole)
        if self.on_step:
            self.on_step(step, total)
        if self.on_log:
            metrics = {"train/loss": total, "train/lr": scheduler.get_last_lr()[0]}
            self.on_log(step, metrics if penalty is None else {**metrics, "train/penalty": penalty})
