"""Host memory while training on a CPU: freed tensors handed back to the operating system.

Owns the process's malloc (`lorasafe --malloc`, env LORASAFE_MALLOC) and what glibc's malloc does with freed
memory during `SFTTrainer.train()` (`training.host_memory`).

`--malloc auto`, the command's default (but for `mini build`, which keeps the C library's malloc as it comes),
turns off glibc's per-thread cache and its fastbins (GLIBC_TUNABLES `glibc.malloc.tcache_count=0` and
`glibc.malloc.mxfast=0`). A block freed into the per-thread cache (requests up to 1,032 bytes, 7 per size) stays
marked in use until it is reused, so it never merges with the free memory around it; one freed into a fastbin
(up to 128 bytes) merges only when glibc consolidates them (on a request of 1 KiB or more, or a free of 64 KiB or
more). A few such blocks between the buffers a training step frees split that free space into pieces the next
step's buffers do not fit, and the heap grows. Training the mini model's LoRA at glibc's defaults, the heap grew
from 180 to 212 MB over the first steps while 168-171 MB of it were in use before each backward (`mallinfo2`):
21-43 MB free there from the second step on, for about 31 MB of activations. With both off a freed block merges
at once; either alone moved the peak 0-2 MB (medians; single runs up to 4 MB), so it takes both. Measured on 2
cores of an AMD EPYC (bench/train_throughput.py's children of lorasafe's side, alternating, 2026-12-04,
docs/training-speed/2026-12-04e-malloc-ab.log; medians of 3 runs on the mini model, 2 on SmolLM2-135M; peak RSS
and tokens/s, auto against glibc's defaults): the mini model's LoRA 492 against 504 MB (11,570 against 11,221),
its full fine-tuning 534 against 555 (6,889 against 6,948), SmolLM2's LoRA 1,561 against 1,636 (763 against
761), its full fine-tuning 2,822 against 3,036 (393 against 389); losses identical; the demo study ran in the same
time (57 and 57 s against 57 and 55). glibc takes the per-thread cache's setting only as a process starts (the
fastbins' could be changed later with mallopt; both are set in one place), so the command restarts itself once,
together with the MKL restart where that applies (training/host_blas.py); processes it starts (the worker pool,
vLLM's, a compiler's) inherit it. A GLIBC_TUNABLES value of the user's for either stays. auto does nothing
elsewhere than glibc, on a malloc the user preloaded (an LD_PRELOAD library named *malloc*), and on a host with a
GPU (/dev/nvidiactl or /dev/kfd): there the host's heap is not what limits training, and auto has not run beside
CUDA or vLLM. `--malloc system` leaves the malloc as the process started.

`training.host_memory: auto` (the default) trims glibc's heap once per backward, just before the input embeddings'
gradient, where full fine-tuning of a model with a large vocabulary peaks: by then the activations the forward kept
are freed, but their pages stay resident in the heap, and that gradient (vocabulary x hidden; for a tied head the
head's gradient is held beside it until they are summed) is larger than glibc's largest mmap threshold (32 MiB), so
it gets a fresh mapping on top of them whatever the heap holds. `malloc_trim` hands the heap's free pages back
first; the next forward faults them in again. It applies only where that gradient is at least 32 MiB (trained
embeddings, glibc, a CPU, not compiled): on the mini model's full fine-tuning (a 1,026-token vocabulary) a trim per
step cost 15-30% of the speed for 10 MB. Measured on SmolLM2-135M full fine-tuning (113 MB embeddings, tied; CPU, 2
threads, 8 steps, 2026-12-04): peak RSS 2,961-2,979 MB trimmed against 3,094-3,223 MB without, at 389-410 against
405-406 tokens/s (alternating single runs); bench medians 3,003 and 3,019 against 3,182 MB at 385 and 382 against
404 tokens/s (bench/train_throughput.py, 3 runs each; docs/training-speed/2026-12-04d-trim.log).

`release` fixes glibc's mmap threshold instead. glibc serves a block above its mmap threshold with its own
mapping and unmaps it when freed, but raises the threshold to the size of every mapped block it frees, up to 32
MiB; after the first training step a forward's activations therefore come from the heap, where the holes that
short-lived tensors leave between the saved activations stay resident and add to the peak. `release` fixes the
threshold at 1 MiB while training, so activations of that size and more are mapped and unmapped, and puts the
thresholds where glibc's dynamic ones settle when training ends (generation, which grows its KV cache a token at
a time, runs faster from the heap). The numbers are the same either way; the mappings cost page faults.

Measured on SmolLM2-135M full fine-tuning (CPU, 2 threads, batch 8 of about 130 tokens, 8 steps,
bench/train_throughput.py, medians of 3 runs): peak RSS 3,446 MB kept, 3,102 MB released, at 80 vs 71
tokens/s. Thresholds of 2 MiB and more saved little, 128 KiB a little more at a quarter of the speed. On
the mini model, whose activations are all under 1 MiB, nothing changes.

Hand-written (ctypes `mallopt`) because neither torch nor a library of the field sets it, and glibc's
environment variable (MALLOC_MMAP_THRESHOLD_) takes effect only when set before the interpreter starts.
Elsewhere than glibc (macOS, musl) `release` does nothing and the trainer's setup record says so.

Also owns the choice of malloc itself (`lorasafe --malloc tcmalloc|jemalloc`, env LORASAFE_MALLOC): gperftools'
tcmalloc reuses freed spans by size instead of leaving glibc's heap holes, which keeps the training peak
lower at the same speed; a malloc can only be chosen when a process starts (LD_PRELOAD), so the command
restarts itself once with the library preloaded (Intel's PyTorch launcher does the same for CPU training).
Measured on SmolLM2-135M (CPU, 2 threads, 8 steps, single runs): full fine-tuning peak RSS 3,067-3,177 MB
under tcmalloc against 3,413-3,525 MB under glibc, LoRA 1,462 against 1,648-1,687 MB, at the same tokens/s
(identical losses). jemalloc (`--malloc jemalloc`, Debian's libjemalloc2) hands freed pages back to the system
over time instead: the lowest peak on small models, whose peak tcmalloc barely moves (bench medians,
docs/training-speed/2026-12-04b-*: the mini model's full fine-tuning 568-576 MB against 595-600 MB on glibc,
LoRA 497-498 against 510), for the page faults of taking them again (2.5-3x glibc's; that training 8% slower,
LoRA 2%, 4 alternating pairs, 2026-12-04b-malloc-ab.log); on SmolLM2 full fine-tuning 3,086 MB against 3,401,
at 0-3% less speed, LoRA 1,490 against 1,697 at 5-9% less.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from lorasafe.errors import LorasafeError

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
RELEASE_FROM = 1 << 20
# The highest that glibc's dynamic thresholds go (DEFAULT_MMAP_THRESHOLD_MAX, and twice that for trimming the
# heap's top): freeing a mapped block of up to 32 MiB raises them to its size, as loading a model does.
SETTLED_MMAP, SETTLED_TRIM = 32 << 20, 64 << 20
# A malloc the command can run on instead of the C library's: its name in find_library's terms, and the Debian
# package that has it.
MALLOCS = {"tcmalloc": ("tcmalloc_minimal", "libtcmalloc-minimal4"), "jemalloc": ("jemalloc", "libjemalloc2")}
CHOICES = ("auto", "system", *MALLOCS)
# `--malloc auto` (the command's default): glibc's per-thread cache and fastbins off (module docstring). glibc reads
# GLIBC_TUNABLES only as a process starts.
TUNABLES = {"glibc.malloc.tcache_count": "0", "glibc.malloc.mxfast": "0"}
_RESTARTED = "LORASAFE_MALLOC_RESTARTED"  # set in the restarted process: a second restart would loop


def allocator() -> str:
    """The malloc this process runs on: a name of MALLOCS when its library is mapped, else "system"."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "system"
    return next((name for name, (lib, _) in MALLOCS.items() if f"lib{lib}." in maps), "system")


def preloaded(env: Mapping[str, str], library: str) -> dict[str, str]:
    """`env` with `library` first in LD_PRELOAD (what was preloaded before stays, after it)."""
    out = dict(env)
    out["LD_PRELOAD"] = ":".join(x for x in (library, env.get("LD_PRELOAD")) if x)
    return out


def preload_env(name: str, env: Mapping[str, str]) -> dict[str, str]:
    """`env` for processes started on malloc `name`: its library preloaded; for "auto", glibc's small-block
    caches off where the C library is glibc (GLIBC_TUNABLES, module docstring); "system": unchanged."""
    if name == "system":
        return dict(env)
    if name == "auto":
        return tuned_env(env) if _glibc() is not None else dict(env)
    if name not in MALLOCS:
        raise LorasafeError(f"--malloc {name}: unknown malloc; choose one of: {', '.join(CHOICES)}.")
    lib, package = MALLOCS[name]
    found = ctypes.util.find_library(lib) if sys.platform.startswith("linux") else None
    if found is None:
        raise LorasafeError(
            f"--malloc {name} (or LORASAFE_MALLOC={name}): lib{lib} was not found"
            f"{'' if sys.platform.startswith('linux') else ' (Linux only)'}. Install it (Debian/Ubuntu: "
            f"apt-get install {package}; `make install` does so when run as root), or run with --malloc system.")
    out = preloaded(env, found)
    if name == "tcmalloc":  # it reports allocations over 1 GiB on stderr by default: a real model's weights
        out.setdefault("TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD", str(1 << 40))
    return out


def _tunable_entries(env: Mapping[str, str]) -> list[str]:
    """The NAME=VALUE entries of `env`'s GLIBC_TUNABLES."""
    return [x for x in env.get("GLIBC_TUNABLES", "").split(":") if x]


def tuned_env(env: Mapping[str, str]) -> dict[str, str]:
    """`env` with TUNABLES added to GLIBC_TUNABLES; a value the user gave one of them there stays (`env`'s own
    entries unchanged when it names them all)."""
    given = _tunable_entries(env)
    named = {x.split("=", 1)[0] for x in given}
    out = dict(env)
    out["GLIBC_TUNABLES"] = ":".join(given + [f"{k}={v}" for k, v in TUNABLES.items() if k not in named])
    return out


def tunables(env: Mapping[str, str] | None = None) -> str:
    """The malloc settings in `env`'s GLIBC_TUNABLES (default: this process's, which glibc read when the process
    started), e.g. "glibc.malloc.tcache_count=0:glibc.malloc.mxfast=0"; "" when none."""
    return ":".join(x for x in _tunable_entries(os.environ if env is None else env) if x.startswith("glibc.malloc."))


def malloc_described() -> str:
    """The malloc this process runs on, for the trainer's setup record: allocator(), and glibc's malloc
    tunables when it runs on glibc's with some set (e.g. "system (glibc.malloc.tcache_count=0:...)")."""
    running, tuned = allocator(), tunables()
    on_glibc = running == "system" and not _preloaded_malloc(os.environ) and _glibc() is not None
    return f"{running} ({tuned})" if tuned and on_glibc else running


def _preloaded_malloc(env: Mapping[str, str]) -> bool:
    """Whether `env` preloads a malloc (a library named *malloc*: tcmalloc, jemalloc, mimalloc...)."""
    return any("malloc" in Path(x).name for x in env.get("LD_PRELOAD", "").replace(" ", ":").split(":") if x)


def _gpu_host() -> bool:
    """Whether this host has an NVIDIA or AMD GPU driver's device (where `--malloc auto` leaves glibc as it is)."""
    return any(Path(p).exists() for p in ("/dev/nvidiactl", "/dev/kfd"))


def malloc_env(name: str, env: Mapping[str, str]) -> dict[str, str]:
    """`env` for this process to run on malloc `name` (preload_env), or `env` itself (a copy) when it already
    does: the library is loaded, or for "auto" every tunable is named in GLIBC_TUNABLES (by the user or a
    restart), another malloc is preloaded, or the host has a GPU."""
    running = allocator()
    if name == "system" or running == name:
        return dict(env)
    if name == "auto":  # a malloc the user preloaded themselves stays, untuned; so does a GPU host's glibc
        kept = running != "system" or _preloaded_malloc(env) or _gpu_host()
        return dict(env) if kept else preload_env(name, env)  # unchanged where every tunable is named already
    if env.get(_RESTARTED) == name:
        raise LorasafeError(f"--malloc {name}: the process was restarted with {env.get('LD_PRELOAD')} "
                            f"preloaded, and {name} is still not loaded (the dynamic loader ignored LD_PRELOAD). "
                            "Run with --malloc system.")
    out = preload_env(name, env)
    out[_RESTARTED] = name
    return out


def restart_with(name: str) -> None:
    """Run this process on malloc `name` (malloc_env): restarted once, same interpreter and arguments, when it
    does not already."""
    restart(malloc_env(name, os.environ))


def restart(env: Mapping[str, str]) -> None:
    """Restart this process under `env` (reexec) when `env` differs from its own; else nothing."""
    if dict(env) != dict(os.environ):
        reexec(env)


def reexec(env: Mapping[str, str]) -> None:
    """Replace this process by itself (same interpreter and arguments) under `env`: how a library is preloaded
    into a running command (here the malloc; training/host_blas.py the MKL shim)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, env)


def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (musl has a mallopt too, which does nothing), else None."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - glibc only
    except (OSError, AttributeError):
        return None
    return libc


def _mallopt() -> Callable[[int, int], int] | None:
    """glibc's mallopt, or None where the C library is not glibc."""
    libc = _glibc()
    if libc is None:
        return None
    fn = libc.mallopt
    fn.argtypes, fn.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return fn


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where the C library is not glibc."""
    libc = _glibc()
    if libc is None:
        return None
    fn = libc.malloc_trim
    fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return fn


@contextmanager
def host_memory(mode: str, device_type: str, model: Any = None, compiled: bool = False) -> Iterator[str]:
    """Within: what `mode` asks of glibc's malloc while training `model` on a CPU (module docstring). Yields what
    applies, for the trainer's setup record: "keep", "trim before the input embeddings' gradient", "release", or
    "keep (...)" with why not."""
    if mode == "keep" or device_type != "cpu":
        yield "keep"
        return
    running = allocator()
    # tcmalloc's mallopt is a stub that reports success; under jemalloc glibc's tunes an arena nothing allocates from
    if running != "system":
        yield f"keep ({mode} needs glibc's malloc, not {running})"
        return
    if mode == "auto":
        with _trimmed(_input_embeddings(model), compiled) as applied:
            yield applied
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


def _input_embeddings(model: Any) -> Any:
    """The model's input embedding module, or None where it has none (`auto` then keeps)."""
    try:
        return model.get_input_embeddings()
    except (AttributeError, NotImplementedError):
        return None


@contextmanager
def _trimmed(embeddings: Any, compiled: bool) -> Iterator[str]:
    """Within: a malloc_trim(0) each time the gradient reaches `embeddings`' output (once per backward), where the
    embedding weight trains and is 32 MiB or more (in its stored dtype: under FSDP with half-precision compute,
    the fp32 shard's size). Yields what applies."""
    weight = getattr(embeddings, "weight", None)
    trim = _malloc_trim()
    if weight is None or not weight.requires_grad or weight.numel() * weight.element_size() < SETTLED_MMAP:
        yield "keep"  # no gradient large enough to need its own mapping: a trim would cost more than it saves
        return
    if compiled or trim is None:
        yield "keep (trimming is not done under compile)" if trim is not None else "keep (trimming needs glibc)"
        return

    def before_gradient(grad: Any) -> None:
        trim(0)

    def on_forward(module: Any, args: Any, output: Any) -> None:
        if getattr(output, "requires_grad", False):
            output.register_hook(before_gradient)  # runs once the decoder's backward is done

    handle = embeddings.register_forward_hook(on_forward)
    try:
        yield "trim before the input embeddings' gradient"
    finally:
        handle.remove()
