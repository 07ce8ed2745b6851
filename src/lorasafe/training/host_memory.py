"""Host memory while training on a CPU: freed tensors handed back to the operating system at once.

Owns glibc malloc's mmap threshold during `SFTTrainer.train()` (`training.host_memory`). glibc serves a
block above its mmap threshold with its own mapping and unmaps it when freed, but raises the threshold to
the size of every mapped block it frees, up to 32 MiB; after the first training step a forward's
activations therefore come from the heap, where the holes that short-lived tensors leave between the
saved activations stay resident and add to the peak. `release` fixes the threshold at 1 MiB while
training, so activations of that size and more are mapped and unmapped, and puts the thresholds where
glibc's dynamic ones settle when training ends (generation, which grows its KV cache a token at a time,
runs faster from the heap). The numbers are the same either way; the mappings cost page faults.

Measured on SmolLM2-135M full fine-tuning (CPU, 2 threads, batch 8 of about 130 tokens, 8 steps,
bench/train_throughput.py, medians of 3 runs): peak RSS 3,446 MB kept, 3,102 MB released, at 80 vs 71
tokens/s. Thresholds of 2 MiB and more saved little, 128 KiB a little more at a quarter of the speed. On
the mini model, whose activations are all under 1 MiB, nothing changes.

Hand-written (ctypes `mallopt`) because neither torch nor a library of the field sets it, and glibc's
environment variable (MALLOC_MMAP_THRESHOLD_) takes effect only when set before the interpreter starts.
Elsewhere than glibc (macOS, musl) `release` does nothing and the trainer's setup record says so.
"""

from __future__ import annotations

import ctypes
from contextlib import contextmanager
from typing import Callable, Iterator

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
RELEASE_FROM = 1 << 20
# The highest that glibc's dynamic thresholds go (DEFAULT_MMAP_THRESHOLD_MAX, and twice that for trimming the
# heap's top): freeing a mapped block of up to 32 MiB raises them to its size, as loading a model does.
SETTLED_MMAP, SETTLED_TRIM = 32 << 20, 64 << 20


def _mallopt() -> Callable[[int, int], int] | None:
    """glibc's mallopt, or None where the C library is not glibc."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - glibc only: musl also has a mallopt, which does nothing
        fn = libc.mallopt
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return fn


@contextmanager
def host_memory(mode: str, device_type: str) -> Iterator[str]:
    """Within: with `mode` "release" while training on a CPU under glibc, blocks of 1 MiB and more are
    mapped and returned when freed. Yields what applies: "keep", "release" or "keep (release needs glibc)"."""
    if mode != "release" or device_type != "cpu":
        yield "keep"
        return
    fn = _mallopt()
    if fn is None or not (fn(M_MMAP_THRESHOLD, RELEASE_FROM) and fn(M_TRIM_THRESHOLD, SETTLED_TRIM)):
        yield "keep (release needs glibc)"
        return
    try:
        yield "release"
    finally:
        fn(M_MMAP_THRESHOLD, SETTLED_MMAP)
        fn(M_TRIM_THRESHOLD, SETTLED_TRIM)
