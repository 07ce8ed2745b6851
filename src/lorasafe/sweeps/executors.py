"""Where a sweep's cells run (`lorasafe sweep run --executor local | ray | slurm | submitit-local`).

Every executor runs the same function, `runner.run_cell`, which writes the cell's run directory under
the sweep directory and resumes what it holds; a cell's identity is its config hash, so a sweep killed
on one executor resumes on any other without redoing finished cells, and `lorasafe report` reads the
results the same way. The sweep directory must be visible to every worker (a shared filesystem on a
cluster).

- `local`: one cell after another in this process, one loaded base model shared by the cells; with
  `--jobs N`, N cells at a time in worker processes on this machine (pipeline/workers.py).
- `ray`: each cell a Ray task with the CPUs and GPUs it asks for, on the cluster at `address` (or a
  local one started here); tasks run as resources allow.
- `slurm` / `submitit-local`: each cell a job through submitit (an array job on SLURM: partition, time,
  GPUs and CPUs per cell; submitit's local executor runs the same jobs as local processes), logs in
  `<sweep>/submitit/`.
The packages are optional extras (`lorasafe[ray]`, `lorasafe[slurm]`), imported only when chosen.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

from lorasafe.errors import LorasafeError, require

Outcome = tuple[str, Any, Any]  # (status, metrics or None, error or None), as runner.run_cell returns
Log = Callable[[str], None]


class Executor(Protocol):
    name: str

    def run(self, out: Path, cells: list, sweep: Any, contexts: dict, log: Log, progress: bool) -> list[Outcome]:
        """Run every cell of `cells` (none finished yet); one outcome per cell, in order."""


def _require(module: str, extra: str) -> Any:
    return require(module, f"--executor {extra}", f"pip install 'lorasafe[{extra}]' (or pip install {module}), or use "
                                                  "--executor local")


def _cell_job(out: str, cell: Any, sweep: Any) -> Outcome:
    """One cell in a worker process: its own model contexts, its log lines prefixed with the cell id."""
    from lorasafe.pipeline.workers import prefixed, prepare_interpreter
    from lorasafe.sweeps.runner import run_cell

    prepare_interpreter()
    return run_cell(Path(out), cell, sweep, log=prefixed(cell.id))


@dataclass
class LocalExecutor:
    jobs: int = 1  # cells at a time; above 1 in worker processes (0 = as many as pay here, pipeline/workers.py)
    name: str = "local"

    def run(self, out, cells, sweep, contexts, log, progress):
        from lorasafe.pipeline.workers import resolve_jobs, runs_on_cpu
        from lorasafe.sweeps.runner import run_cell

        jobs = resolve_jobs(self.jobs, len(cells), runs_on_cpu(c.cfg for c in cells))
        if jobs > 1:
            return self._in_workers(out, cells, sweep, jobs, log)
        outcomes = []
        for i, cell in enumerate(cells, start=1):
            log(f"[{i}/{len(cells)}] {cell.id} ({cell.label()})")
            outcomes.append(run_cell(out, cell, sweep, contexts, log, progress))
        return outcomes

    @staticmethod
    def _in_workers(out, cells, sweep, jobs, log) -> list[Outcome]:
        from concurrent.futures import as_completed

        from lorasafe.pipeline.workers import pool, threads_per_job

        log(f"{len(cells)} cells, {jobs} at a time in worker processes of {threads_per_job(jobs)} thread(s) each")
        outcomes: list[Outcome | None] = [None] * len(cells)
        with pool(jobs) as workers:
            futures = {workers.submit(_cell_job, str(out), cell, sweep): i for i, cell in enumerate(cells)}
            for n, future in enumerate(as_completed(futures), start=1):
                i = futures[future]
                try:
                    outcomes[i] = future.result()
                except Exception as e:  # noqa: BLE001 - a worker that died (out of memory) fails its cell only
                    outcomes[i] = ("failed", None, f"{type(e).__name__}: the worker process died ({e})")
                log(f"[{n}/{len(cells)}] {cells[i].id} ({cells[i].label()}): {outcomes[i][0]}")
        return outcomes


@dataclass
class RayExecutor:
    address: str | None = None  # an existing cluster ("auto", "ray://host:10001"), else a local one started here
    cpus_per_cell: float = 1.0
    gpus_per_cell: float = 0.0
    name: str = "ray"

    def run(self, out, cells, sweep, contexts, log, progress):
        ray = _require("ray", "ray")
        if not ray.is_initialized():
            ray.init(address=self.address, log_to_driver=True, include_dashboard=False)
        task = ray.remote(num_cpus=self.cpus_per_cell, num_gpus=self.gpus_per_cell)(_cell_job)
        refs = {task.remote(str(out), cell, sweep): i for i, cell in enumerate(cells)}
        outcomes: list[Outcome | None] = [None] * len(cells)
        waiting = list(refs)
        while waiting:
            ready, waiting = ray.wait(waiting, num_returns=1)
            i = refs[ready[0]]
            try:
                outcomes[i] = ray.get(ready[0])
            except Exception as e:  # noqa: BLE001 - a worker that died (OOM, node lost) fails its cell only
                outcomes[i] = ("failed", None, f"{type(e).__name__}: {str(e).splitlines()[0]}")
            log(f"{cells[i].id} ({cells[i].label()}): {outcomes[i][0]} on ray "
                f"({len(cells) - len(waiting)}/{len(cells)})")
        return outcomes


@dataclass
class SubmititExecutor:
    cluster: str = "slurm"  # or "local": submitit's local executor, the same jobs as local processes
    partition: str | None = None
    time_min: int = 240
    gpus_per_cell: int = 0
    cpus_per_cell: int = 1
    name: str = "slurm"

    def run(self, out, cells, sweep, contexts, log, progress):
        submitit = _require("submitit", "slurm")
        executor = submitit.AutoExecutor(folder=str(Path(out) / "submitit" / "%j"), cluster=self.cluster)
        params: dict[str, Any] = {"timeout_min": self.time_min, "cpus_per_task": self.cpus_per_cell,
                                  "name": f"lorasafe-{Path(out).name}"}
        if self.cluster == "slurm":
            params.update(gpus_per_node=self.gpus_per_cell, **({"slurm_partition": self.partition} if self.partition else {}))
        executor.update_parameters(**params)
        with executor.batch():  # one array job on SLURM
            jobs = [executor.submit(_cell_job, str(out), cell, sweep) for cell in cells]
        outcomes: list[Outcome] = []
        for cell, job in zip(cells, jobs):
            while not job.done():
                time.sleep(1.0)
            try:
                outcomes.append(job.result())
            except Exception as e:  # noqa: BLE001 - a job that failed or was cancelled fails its cell only
                outcomes.append(("failed", None, f"{type(e).__name__}: {str(e).strip().splitlines()[-1][:300]}"))
            log(f"{cell.id} ({cell.label()}): {outcomes[-1][0]} (job {job.job_id}, logs in {Path(out) / 'submitit'})")
        return outcomes


def make_executor(name: str, *, address: str | None = None, partition: str | None = None, time_min: int = 240,
                  cpus_per_cell: float = 1.0, gpus_per_cell: float = 0.0, jobs: int = 1) -> Executor:
    if name == "local":
        return LocalExecutor(jobs)
    if jobs != 1:
        raise LorasafeError(f"--jobs is for --executor local; --executor {name} sizes its workers with --cpus-per-cell "
                            "and --gpus-per-cell (one cell per worker). Drop --jobs.")
    if name == "ray":
        return RayExecutor(address, cpus_per_cell, gpus_per_cell)
    if name in ("slurm", "submitit-local"):
        return SubmititExecutor("slurm" if name == "slurm" else "local", partition, time_min, int(gpus_per_cell),
                                max(1, int(cpus_per_cell)), name)
    raise LorasafeError(f"--executor {name!r} is unknown; choose local, ray, slurm or submitit-local.")
