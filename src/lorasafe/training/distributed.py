"""Data-parallel training across the processes of `accelerate launch` (or torchrun): who is who, the sums, and
how a launched process ends.

`lorasafe run` / `study` / `sweep run` started as N processes train each variant together and evaluate
it once: every process builds the same global batches (same seed), takes its share of each micro-batch
(examples rank, rank + N, ...), and scales its loss by the micro-batch's global number of completion
targets, so after summing the gradients across processes every step is the one a single process takes
on the whole batch (same global batch, same learning-rate schedule, same completion-only loss).
Gradients are summed by all-reduce after the backward (lorasafe's loss reaches the decoder and head
directly, which `DistributedDataParallel`'s forward hooks would not see). Only the main process writes
checkpoints, logs, manifests and records, and only it generates and judges.

Under a DDP config every process holds the whole model and optimiser state; under an FSDP config full
fine-tuning shards them (training/sharding.py). Checkpoints are whole either way, so a run resumes under any
number of processes. The process group comes from accelerate's `PartialState` (gloo on CPUs, nccl on
GPUs); on CPUs the test suite runs both with 2 processes, GPUs have not run them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Any

# Main evaluates a variant while the other processes wait at the next variant's first collective: long
# evaluations must not trip the process group's default 30-minute timeout.
_TIMEOUT = timedelta(hours=24)
_BUCKET = 1 << 24  # floats per all-reduce bucket (64 MB in fp32): bounded extra memory for big models


@dataclass(frozen=True)
class Ranks:
    rank: int
    world: int

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        """Whether full fine-tuning shards its model across the processes (FSDP, training/sharding.py)."""
        from lorasafe.training.sharding import requested

        return self.world > 1 and requested() == "fsdp"


def _launched() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@lru_cache(maxsize=1)
def ranks() -> Ranks:
    """This process's place among the launched ones (0 of 1 when not launched as several)."""
    if not _launched():
        return Ranks(0, 1)
    import torch
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available(), timeout=_TIMEOUT)
    return Ranks(state.process_index, state.num_processes)


def end_launched_process() -> None:
    """After a launched process's command succeeded: its process group destroyed and, in every process but the
    main one, the process ended at once (os._exit) rather than through the interpreter's and the C++ runtime's
    teardown. In two-process CPU runs the second process, done with training while the main one evaluated,
    sometimes aborted in that teardown with nothing left to do ("terminate called without an active exception"
    with no Python frame left, or a corrupted heap): 5 times, 3 of them in about 215 two-process FSDP launches and 2
    in test-suite runs (2026-12-04), also with the process group destroyed first. With this, 100 launches had no
    such abort (one segfault during training among them, under the short OpenMP spin that launched processes no
    longer get, training/host_threads.py; docs/training-speed/2026-12-04d-fsdp-launches.log). Such a process
    writes no files and reports to no tracker (the main one does both); its output is flushed first."""
    if not _launched():
        return
    import logging
    import sys

    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0:
        return
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing left to say
            pass
    os._exit(0)


def barrier() -> None:
    if ranks().world > 1:
        import torch.distributed as dist

        dist.barrier()


def sum_across(values: Any) -> Any:
    """The element-wise sum of a tensor over all processes (in place; the tensor itself when alone)."""
    if ranks().world > 1:
        import torch.distributed as dist

        dist.all_reduce(values)
    return values


def sum_gradients(params: list[Any]) -> None:
    """Sum every parameter's gradient over all processes (a process that saw no example contributes zeros)."""
    if ranks().world == 1:
        return
    import torch
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    bucket: list[Any] = []
    size = 0
    for p in [*params, None]:
        if p is not None and (not bucket or (size + p.numel() <= _BUCKET and p.grad.dtype == bucket[0].dtype)):
            bucket.append(p.grad)
            size += p.numel()
            continue
        if bucket:
            flat = sum_across(_flatten_dense_tensors(bucket))
            for g, s in zip(bucket, _unflatten_dense_tensors(flat, bucket)):
                g.copy_(s)
        bucket, size = ([p.grad], p.numel()) if p is not None else ([], 0)
