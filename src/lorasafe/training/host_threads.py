"""How the `lorasafe` command's OpenMP threads wait between parallel regions: PASSIVE, after a short spin.

PyTorch's CPU kernels run on OpenMP (libgomp in the Linux wheels). Between two parallel regions a worker thread
either spins, ready for the next one, or sleeps and has to be woken. libgomp's default, what a plain Python
script gets, spins about 300,000 times (some milliseconds): fastest for one process alone on its cores, and
ruinous for processes that share them (two 2-thread mini-model trainings at once on 2 cores ran 34-38x slower
than under PASSIVE, bench/train_throughput.py's child, 2026-12-04). PASSIVE (no spin) pays for each wake-up
instead: one mini-model training alone ran 1.23x slower than on the default.

The command sets PASSIVE, which every OpenMP runtime understands, and libgomp's own `GOMP_SPINCOUNT` (which it
honours under any wait policy; other runtimes ignore it and stay PASSIVE) to a short spin. Measured on 2 cores of
an AMD EPYC (the mini model's full fine-tuning, alternating bench children, 2026-12-04,
docs/training-speed/2026-12-04d-omp-spin.log; alone: 84 steps, the median per round of the ratio to PASSIVE, in
each section of rounds run; at once: 28 steps, both processes' tokens/s against both on PASSIVE; the spin counts
ran with the policy unset, which libgomp treats as PASSIVE plus the count, measured 1.095x against 1.096x):

| GOMP_SPINCOUNT | one training alone | two 2-thread trainings at once |
|---|---:|---:|
| 100 | 1.04x, 1.06x | 0.93-0.94x |
| 200 | 1.10x | 0.87-0.88x |
| 300 | 1.12x, 1.09x, 1.10x | 0.82-0.85x |
| 1,000 | 1.17x, 1.11x, 1.11x, 1.16x | 0.58x |
| 10,000 / 30,000 | 1.11x / 1.10x | 0.13x / 0.05x |
| libgomp's default (300,000) | 1.08x (1.14x in 2 rounds of 28 steps; 1.23x an earlier day) | 0.03x (an earlier day) |

300 gives about what longer spins give a process alone (greedy generation on the mini model: 1.06x, the median of 3
per-run ratios; SmolLM2-135M full fine-tuning 1.02-1.04x) and keeps processes that share the cores within a fifth of
PASSIVE. libgomp spins only its throttled count (0 under PASSIVE) once a process has more threads than cores.
Processes launched as several (`accelerate launch`, torchrun: WORLD_SIZE > 1) share their machine's cores, so they
wait PASSIVE without the spin. (Two-process CPU FSDP launches with it: the second process crashed 3 times in 110,
twice aborting as it exited, which happened without the spin too and is now skipped, training/distributed.py, and
once in a collective; none in 130 launches without it. docs/training-speed/2026-12-04d-fsdp-launches.log.) Values a
user sets win: an `OMP_WAIT_POLICY` of their own leaves both alone, a `GOMP_SPINCOUNT` of their own is kept. `mini
build` does not call this (one process with the cores to itself for 20-40 minutes: it keeps libgomp's default,
cli.main).
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

SPIN_COUNT = 300


def settle_wait(environ: MutableMapping[str, str] | None = None) -> None:
    """Set the command's wait (PASSIVE, GOMP_SPINCOUNT=300) in `environ` (default: this process's) unless the
    user chose a wait policy; it must happen before torch loads OpenMP, which reads these once."""
    environ = os.environ if environ is None else environ
    if "OMP_WAIT_POLICY" in environ:
        return
    environ["OMP_WAIT_POLICY"] = "PASSIVE"
    if int(environ.get("WORLD_SIZE", "1")) <= 1:  # launched as several, the processes share the cores: no spin
        environ.setdefault("GOMP_SPINCOUNT", str(SPIN_COUNT))


def wait_described(environ: MutableMapping[str, str] | None = None) -> str:
    """How this process's OpenMP threads wait, for the trainer's setup record: "PASSIVE, GOMP_SPINCOUNT=300",
    "the runtime's default" when nothing is set, and so on (GOMP_SPINCOUNT means something to libgomp only)."""
    environ = os.environ if environ is None else environ
    policy = environ.get("OMP_WAIT_POLICY")
    spin = environ.get("GOMP_SPINCOUNT")
    described = policy or "the runtime's default"
    return f"{described}, GOMP_SPINCOUNT={spin}" if spin is not None else described
