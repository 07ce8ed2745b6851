"""Worker processes for independent runs on one machine: how many, with how many threads, set up how.

A study's variants (and a sweep's cells) are independent runs: each writes only its own run directory. On a
CPU the mini world's matrices are too small for a second thread to help one run much (measured on 2 cores:
the demo's base evaluation takes 42.9 s with 1 thread and 39.7 s with 2, while two 1-thread runs side by
side take 46.1 s), so N processes with cores/N threads each finish N runs in about the time of one. On a GPU
the runs would compete for one device: there the answer is one process.

Workers are spawned, not forked: a fork after torch has started its thread pools can deadlock, and spawn
behaves the same on Linux and macOS. The pool itself is the standard library's (concurrent.futures): nothing
here replaces it, this module only decides its size and prepares each interpreter.
"""

from __future__ import annotations

import os
from typing import Any, Iterable

AUTO_CAP = 4  # auto never starts more: each worker holds its own copy of the model and of torch (some hundred MB)


def cpu_cores() -> int:
    """The cores this process may run on (a container's or taskset's limit, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS has no affinity call
        return os.cpu_count() or 1


def resolve_jobs(jobs: int, runs: int, cpu_only: bool) -> int:
    """`jobs` as asked (0 = auto: one per core up to AUTO_CAP on a CPU, 1 where a GPU or a server does the
    work), never more than there are runs."""
    if jobs == 0:
        jobs = min(cpu_cores(), AUTO_CAP) if cpu_only else 1
    return max(1, min(jobs, runs))


def threads_per_job(jobs: int) -> int:
    return max(1, cpu_cores() // jobs)


def runs_on_cpu(cfgs: Iterable[Any]) -> bool:
    """Whether every config generates with transformers on the CPU (the case where worker processes pay)."""
    from lorasafe.models.loading import resolve_device

    return all(c.generation.backend == "hf" and resolve_device(c.model.device) == "cpu" for c in cfgs)


def prepare_interpreter() -> None:
    """A worker's interpreter set up as the `lorasafe` command sets up its own (cli.main)."""
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # transformers' per-file load/save bars and PEFT's deprecation notice drown our own progress.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


def start_worker(threads: int) -> None:
    """A pool worker: the interpreter prepared, with its share of the cores."""
    prepare_interpreter()
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


def pool(jobs: int) -> Any:
    """A process pool of `jobs` spawned workers, each with its share of the cores."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=start_worker, initargs=(threads_per_job(jobs),))


def prefixed(tag: str) -> Any:
    """A worker's log: one flushed line per message, tagged with its run (unless it begins with its name), so
    parallel runs' lines stay apart."""
    return lambda message: print(message if message.startswith(f"{tag}:") else f"[{tag}] {message}", flush=True)
