"""MKL's kernel choice on CPUs not made by Intel: by instruction set, not by vendor.

PyTorch's x86 wheels do their float matmuls with Intel's MKL, which picks its kernels by asking whether the
CPU is an Intel one (`mkl_serv_intel_cpu_true`) before it asks what instructions it has: on an AMD CPU with
AVX2 it runs a slower generic path. Answering that question "yes" makes MKL dispatch by instruction set (its
AVX2 kernels on an AVX2 CPU, which AMD's run); the answer can only be given by a library preloaded when the
process starts, so the command restarts itself once with one (`lorasafe --mkl-dispatch`, env
LORASAFE_MKL_DISPATCH; the same mechanism as `--malloc`, training/host_memory.py). The library is one C
function, compiled on first use with the system's C compiler into the user's cache directory.

Measured on an AMD EPYC (Zen 3, AVX2, 2 cores): fp32 matmuls of the mini model's shapes 1.2-2.2x faster
(e.g. 4,800x128 by 128x384: 78-88 -> 118-134 GFLOP/s), a mini-build training step 1.19-1.26x faster; on an
AMD EPYC with AVX-512, training 1.4x faster on the mini model and 1.9-2.0x on SmolLM2-135M
(bench/train_throughput.py, 2026-12-04).
Results change by float rounding only (another kernel sums in another order). On Intel CPUs, and where
PyTorch does not use MKL (ARM, macOS), nothing changes.

Hand-written because no library of the field does this: it is the widely used workaround for MKL on AMD
since MKL 2020 dropped its MKL_DEBUG_CPU_TYPE switch.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Mapping

from lorasafe.errors import LorasafeError
from lorasafe.training.host_memory import preloaded, restart

SHIM_NAME = "liblorasafe_mkl_isa.so"
_SOURCE = "int mkl_serv_intel_cpu_true(void) { return 1; }\n"
_RESTARTED = "LORASAFE_MKL_DISPATCH_RESTARTED"  # set in the restarted process: a second restart would loop
MODES = ("auto", "isa", "vendor")


def cpu_vendor() -> str:
    """The CPU vendor id from /proc/cpuinfo (e.g. GenuineIntel, AuthenticAMD); "" where unknown."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("vendor_id"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def applies() -> bool:
    """True where the shim can change anything: Linux on x86-64 with a CPU not made by Intel."""
    return (sys.platform.startswith("linux") and platform.machine() in ("x86_64", "AMD64")
            and cpu_vendor() not in ("", "GenuineIntel"))


def active() -> str:
    """How MKL dispatches in this process: "isa" when the shim is loaded, else "vendor" (MKL's own rule)."""
    try:
        return "isa" if SHIM_NAME in Path("/proc/self/maps").read_text() else "vendor"
    except OSError:
        return "vendor"


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lorasafe"


def shim_path() -> Path | None:
    """The shim library, compiled on first use; None when no C compiler is found, compiling fails or the cache
    directory cannot be written."""
    path = _cache_dir() / SHIM_NAME
    if path.is_file():
        return path
    cc = next((c for c in (os.environ.get("CC"), "cc", "gcc", "clang") if c and shutil.which(c)), None)
    if cc is None:
        return None
    try:  # an unwritable cache or a broken compiler is "no shim", never a failed command
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            src, lib = Path(tmp) / "shim.c", Path(tmp) / SHIM_NAME
            src.write_text(_SOURCE)
            done = subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(lib), str(src)], capture_output=True,
                                  timeout=120)
            if done.returncode != 0 or not lib.is_file():
                return None
            os.replace(lib, path)  # atomic: concurrent first uses each compile, one wins
    except (OSError, subprocess.SubprocessError):
        return None
    return path


def restart_for(mode: str) -> None:
    """Run this process with MKL dispatching as `mode` says (dispatch_env): restarted once when it does not."""
    restart(dispatch_env(mode, os.environ))


def dispatch_env(mode: str, env: Mapping[str, str]) -> dict[str, str]:
    """`env` for this process to have MKL dispatch as `mode` says: "isa" with the shim preloaded, "auto" so where
    it applies (a non-Intel x86-64 CPU on Linux) and a C compiler is found, "vendor" (MKL's own rule) unchanged;
    `env` itself (a copy) when the process already runs as asked."""
    if mode not in MODES:
        raise LorasafeError(f"--mkl-dispatch {mode} (or LORASAFE_MKL_DISPATCH={mode}): unknown; choose one of "
                            f"{', '.join(MODES)}.")
    if mode == "vendor" or active() == "isa" or (mode == "auto" and not applies()):
        return dict(env)
    if env.get(_RESTARTED):
        if mode == "auto":
            return dict(env)
        raise LorasafeError(f"--mkl-dispatch isa: the process was restarted with {env.get('LD_PRELOAD')} "
                            "preloaded and the library is still not loaded (the dynamic loader ignored LD_PRELOAD). "
                            "Run with --mkl-dispatch vendor.")
    shim = shim_path()
    if shim is None:
        if mode == "auto":
            return dict(env)
        raise LorasafeError("--mkl-dispatch isa (or LORASAFE_MKL_DISPATCH=isa): no C compiler was found to build "
                            "the one-function library it preloads (or compiling failed). Install one (Debian/"
                            "Ubuntu: apt-get install gcc), or run with --mkl-dispatch vendor.")
    out = preloaded(env, str(shim))
    out[_RESTARTED] = "1"
    return out
