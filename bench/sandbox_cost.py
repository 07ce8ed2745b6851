"""What the code sandbox costs per HumanEval item, against running the reference program bare.

Every item's canonical solution is scored three ways, all measured in this run, in this process:
- baseline: the reference harness's single program (`code.build_program`: solution, tests,
  `check(...)`) in a plain `python -I -S -B -c` subprocess, read by its exit status, with no isolation
  and no proof, which is what the HumanEval reference harness does;
- one sandbox: the same single program through `sandbox.run` (bwrap, namespaces, uid 65534,
  rlimits), still read by its exit status: what the kernel isolation alone costs;
- lorasafe: `code.run_tests`, the solution and the tests in two sandboxes joined by pipes, the pass
  proven by the tests' verdict: what `CodeScorer` does per item.
Prints the mean seconds per item for each, the ratios to the baseline, and how many items each way
passed (all must pass). The ways take turns item by item, so load on the machine hits them alike.

Usage: python bench/sandbox_cost.py [--limit N] [--repeats R]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from lorasafe.data.bundled import load_bundled
from lorasafe.scoring.code import build_program, build_programs, run_tests
from lorasafe.scoring.sandbox import SandboxLimits, require_isolation, run


def baseline(problem: dict, code: str, limits: SandboxLimits) -> bool:
    done = subprocess.run([sys.executable, "-I", "-S", "-B", "-c", build_program(code, problem)],
                          capture_output=True, timeout=limits.timeout_s)
    return done.returncode == 0


def one_sandbox(problem: dict, code: str, limits: SandboxLimits) -> bool:
    return run(build_program(code, problem), limits, as_main=False).status == "ok"


def lorasafe(problem: dict, code: str, limits: SandboxLimits) -> bool:
    return run_tests(build_programs(code, problem), limits).status == "passed"


WAYS = {"baseline (bare python -c)": baseline, "one sandbox, exit status": one_sandbox,
        "lorasafe (two sandboxes, proven)": lorasafe}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=164, help="HumanEval items (of 164)")
    ap.add_argument("--repeats", type=int, default=1, help="runs of each item per way")
    args = ap.parse_args()
    found = require_isolation()
    items = load_bundled("humaneval")[:args.limit]
    limits = SandboxLimits(timeout_s=30, cpu_s=30)
    seconds: dict[str, list[float]] = {way: [] for way in WAYS}
    passed = dict.fromkeys(WAYS, 0)
    for item in items:
        problem = {"prompt": item.prompt, **item.meta}
        code = item.prompt + item.meta["canonical_solution"]
        for _ in range(args.repeats):
            for way, score in WAYS.items():
                start = time.perf_counter()
                passed[way] += score(problem, code, limits)
                seconds[way].append(time.perf_counter() - start)
    runs = len(items) * args.repeats
    base = statistics.mean(seconds[next(iter(WAYS))])
    print(f"{len(items)} HumanEval items x {args.repeats} run(s), canonical solutions; sandbox: {found.detail}")
    print(f"{'way':<34}{'s/item':>9}{'median':>9}{'x baseline':>12}{'passed':>10}")
    for way, times in seconds.items():
        mean = statistics.mean(times)
        print(f"{way:<34}{mean:>9.3f}{statistics.median(times):>9.3f}{mean / base:>11.2f}x"
              f"{passed[way]:>6}/{runs}")


if __name__ == "__main__":
    main()
