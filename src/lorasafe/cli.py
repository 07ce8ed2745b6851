"""The `lorasafe` command line: thin commands over the library.

A `LorasafeError` (bad config, data, target, template) is printed as its one-paragraph message
with exit code 2 and no traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from lorasafe.errors import LorasafeError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="lorasafe: safety-align reasoning LLMs with LoRA and measure the safety tax.")
mini_app = typer.Typer(no_args_is_help=True, help="The embedded mini world.")
app.add_typer(mini_app, name="mini")
data_app = typer.Typer(no_args_is_help=True, help="Benchmark suites: bundled, hub and mini-world.")
app.add_typer(data_app, name="data")
judge_app = typer.Typer(no_args_is_help=True, help="Judges and their agreement with human labels.")
app.add_typer(judge_app, name="judge")
sweep_app = typer.Typer(no_args_is_help=True, help="Ablation sweeps: axes over config paths, resumable.")
app.add_typer(sweep_app, name="sweep")
model_app = typer.Typer(no_args_is_help=True, help="Model files: GGUF import, models shipped in PyPI packages.")
app.add_typer(model_app, name="model")
console = Console()

SetOpt = typer.Option(None, "--set", help="dotted override KEY=VALUE, e.g. --set adapter.rank=2 (repeatable)")


def _check_out(out: Path, what: str, markers: tuple[str, ...] = ()) -> None:
    """Refuse an --out directory that cannot be one: an existing file, a path under a file, or (given the
    `markers` a directory of this kind holds) a non-empty directory written by something else."""
    if out.exists() and not out.is_dir():
        raise LorasafeError(f"--out {out} is an existing file; the {what} must be a directory. Choose another "
                            "--out, or move that file away.")
    _check_parents(out)
    if markers and out.is_dir() and any(out.iterdir()) and not any((out / m).exists() for m in markers):
        raise LorasafeError(f"--out {out} is a non-empty directory that is not a {what} (it has none of "
                            f"{', '.join(markers)}); lorasafe does not write among other files. Choose a new or empty "
                            "directory.")


def _check_out_file(out: Path) -> None:
    """Refuse an --out file path that names a directory or lies under a file."""
    if out.is_dir():
        raise LorasafeError(f"--out {out} is a directory; give the path of the file to write, "
                            f"e.g. {out / 'data.jsonl'}.")
    _check_parents(out)


def _check_parents(out: Path) -> None:
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise LorasafeError(f"--out {out} lies under {parent}, which is a file, not a directory. Choose "
                                    "another --out.")
            return


def _log(msg: str) -> None:
    from rich.markup import escape

    console.print(f"[bold cyan]>[/] {escape(msg)}")  # messages hold [lists] that are not markup


# Set by main(): this interpreter runs the `lorasafe` command, so the process may restart itself. In-process callers
# (tests' CliRunner, notebooks) never are, whatever the options or environment say.
_AS_COMMAND = False


@app.callback()
def _process(malloc: str = typer.Option(
        "system", "--malloc", envvar="LORASAFE_MALLOC", metavar="auto|system|tcmalloc|jemalloc", show_default=False,
        help="the process's malloc: auto (the command's default; `mini build`'s is system) = the C library's, with "
             "glibc's small-block caches off where it is glibc on a host without a GPU (lower CPU training peaks "
             "at the same speed); system = as the process started; tcmalloc (Linux, libtcmalloc-minimal4) or "
             "jemalloc (libjemalloc2) lowered peaks against glibc as it comes (jemalloc more on small models, "
             "tcmalloc faster on larger ones); the command restarts itself once where this changes anything"),
             mkl_dispatch: str = typer.Option(
        "vendor", "--mkl-dispatch", envvar="LORASAFE_MKL_DISPATCH", metavar="auto|isa|vendor", show_default=False,
        help="how Intel's MKL (PyTorch's CPU matmuls) picks kernels: isa = by instruction set on any CPU (AVX2 "
             "kernels on AMD: faster CPU training, other float rounding; the command restarts itself once with a "
             "one-function library preloaded, compiled with the system's C compiler); vendor = MKL's own rule "
             "(slower generic kernels on CPUs not made by Intel); auto (the command's default; `mini build`'s is "
             "vendor, the path measured to rebuild the shipped model bit for bit) = isa on a non-Intel x86-64 CPU "
             "when a C compiler is found")) -> None:
    # No docstring: typer would show it in place of the app's help.
    from lorasafe.training.host_blas import dispatch_env
    from lorasafe.training.host_memory import malloc_env, restart

    env = malloc_env(malloc, dispatch_env(mkl_dispatch, os.environ))  # checks the choices in-process too
    if _AS_COMMAND:
        restart(env)  # at most one restart for both


@app.command()
def demo(config: Optional[Path] = typer.Option(None, help="study YAML (default: the packaged demo)"),
         out: Path = typer.Option(Path("runs/demo"), help="study directory (resumed if it exists)"),
         set_: Optional[List[str]] = SetOpt, progress: bool = typer.Option(True, help="progress bars"),
         jobs: int = typer.Option(0, min=0, help="variants run at a time in worker processes; 0 = one per CPU core "
                                                  "(at most 4) on a CPU, 1 on a GPU")) -> None:
    """Base vs full fine-tuning vs LoRA variants on the mini world: train, generate, judge, report."""
    from lorasafe.config.loader import demo_config_path, load_config
    from lorasafe.config.schema import StudyConfig

    study = load_config(StudyConfig, config or demo_config_path(), set_ or [])
    _run_study(study, out, progress, str(config or "the packaged demo config"), jobs)


def _run_study(study, out: Path, progress: bool, source: str, jobs: int) -> None:
    import json

    from lorasafe.data.jsonl import write_text_atomic
    from lorasafe.pipeline.study import run_study
    from lorasafe.reports.geometry_plot import study_geometry_plots
    from lorasafe.reports.markdown import study_report
    from lorasafe.reports.plot import tradeoff_plot
    from lorasafe.reports.table import rich_table

    _check_out(out, "study directory", ("study.yaml", "variants"))
    rows = run_study(study, out, log=_log, progress=progress, source=source, jobs=jobs)
    wall = json.loads((out / "metrics.json").read_text())["wall_s"]
    plot = tradeoff_plot(rows, out / "tradeoff.png", f"{study.name}: refusal vs reasoning")
    geo = study_geometry_plots(study.name, rows, out)
    write_text_atomic(out / "report.md", study_report(study, rows, plot, wall, geo))
    # A table this wide wraps unreadably at 80 columns (pipes, CI logs): print it at its natural width.
    Console(width=max(console.width, 160)).print(rich_table(rows, f"{study.name} ({wall:.0f} s)"))
    console.print(f"Report: {out / 'report.md'}  Plot: {plot}")


@app.command()
def study(config: Path = typer.Argument(..., help="study YAML (an experiment plus variants)"),
          out: Optional[Path] = typer.Option(None, help="study directory (default runs/<name>)"),
          set_: Optional[List[str]] = SetOpt, progress: bool = typer.Option(True),
          jobs: int = typer.Option(1, min=0, help="variants run at a time in worker processes (each loads its own "
                                                   "model); 0 = one per CPU core (at most 4) on a CPU, 1 on a GPU")) -> None:
    """Run a study: several variants of one experiment on one base model, reported together."""
    from lorasafe.config.loader import load_config
    from lorasafe.config.schema import StudyConfig

    s = load_config(StudyConfig, config, set_ or [])
    _run_study(s, out or Path("runs") / s.name, progress, str(config), jobs)


@app.command()
def run(config: Path = typer.Argument(..., help="experiment YAML"),
        out: Optional[Path] = typer.Option(None, help="run directory (default runs/<name>)"),
        set_: Optional[List[str]] = SetOpt, progress: bool = typer.Option(True)) -> None:
    """Run one experiment: train, generate, judge and score into one run directory."""
    import json

    from lorasafe.config.loader import load_config
    from lorasafe.config.schema import ExperimentConfig

    cfg = load_config(ExperimentConfig, config, set_ or [])  # before the heavy imports: a typo fails fast
    out = out or Path("runs") / cfg.name
    _check_out(out, "run directory", ("manifest.json", "config.yaml"))
    from lorasafe.pipeline.context import BaseContext
    from lorasafe.pipeline.experiment import Experiment

    metrics = Experiment(cfg, out, BaseContext(cfg), log=_log, progress=progress).run_all()
    if metrics:  # under `accelerate launch`, only the main process evaluates and reports
        console.print_json(json.dumps({k: v for k, v in metrics.items() if k != "suites"}))


@app.command()
def targets(config: Path = typer.Argument(..., help="experiment YAML"),
            set_: Optional[List[str]] = SetOpt) -> None:
    """Print the modules an adapter config trains and its trainable-parameter count (no weights load)."""
    from lorasafe.config.loader import load_config
    from lorasafe.config.schema import ExperimentConfig
    from lorasafe.pipeline.context import BaseContext

    cfg = load_config(ExperimentConfig, config, set_ or [])
    ctx = BaseContext(cfg)
    plan = ctx.plan(cfg.adapter)
    st = ctx.structure
    console.print(f"model: {cfg.model.path} ({st.model_type}, {st.num_hidden_layers} layers)")
    console.print(f"method: {plan.method}")
    for name in (*plan.modules, *plan.parameters):
        console.print(f"  {name}  [{'x'.join(map(str, plan.shapes[name]))}]")
    if plan.method == "lora":
        experts = f" + {len(plan.parameters)} expert parameters (PEFT target_parameters)" if plan.parameters else ""
        console.print(f"matched modules: {len(plan.modules)}{experts} (layers {plan.layers[0]}..{plan.layers[-1]})")
    pct = 100 * plan.trainable_params / plan.total_params if plan.total_params else 0
    console.print(f"trainable parameters: {plan.trainable_params:,} of {plan.total_params:,} ({pct:.4f}%)")


@app.command()
def rejudge(run: Path = typer.Argument(..., help="a finished run directory, or a study directory (every variant)"),
            judge: str = typer.Option(..., "--judge", help="the judge to apply (a registered judge: rules, learned, llama-guard, ...)"),
            on: Optional[str] = typer.Option(None, help="answer, thinking or both (default: the run's judge.on)")) -> None:
    """Judge a finished run's generations with another judge, without generating again (verdicts and metrics are
    written beside the run's own, which stay as they are)."""
    from lorasafe.errors import ConfigError
    from lorasafe.pipeline.rejudge import rejudge as rejudge_runs

    if on is not None and on not in ("answer", "thinking", "both"):
        raise ConfigError(f"--on takes answer, thinking or both, got {on!r}.")
    for out in rejudge_runs(run, judge, on, log=_log):
        summary = json.loads(out.read_text())["final"]
        if summary:
            console.print(f"{out.parent.parent.name}: refused {_fmt(summary['refused'])}, complied "
                          f"{_fmt(summary['complied'])}, invalid {_fmt(summary['invalid'])}, over-refusal "
                          f"{_fmt(summary['over_refusal'])}")


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


@app.command()
def analyze(run: Path = typer.Argument(..., help="a finished run directory (or a study's variants/<label>)"),
            k: str = typer.Option("1,8,32", help="comma-separated subspace sizes k for the overlaps")) -> None:
    """Weight geometry of a run's update: norms, stable rank, overlap with W0's top-k subspaces, CSV + plots."""
    from lorasafe.errors import ConfigError
    from lorasafe.pipeline.analysis import analyze_run

    try:
        ks = tuple(int(x) for x in k.split(","))
    except ValueError:
        raise ConfigError(f"--k takes comma-separated integers such as 1,8,32, got {k!r}") from None
    analyze_run(run, ks, log=_log)


@app.command()
def merge(run: Path = typer.Argument(..., help="a finished LoRA run directory"),
          out: Path = typer.Option(..., help="directory for the merged model (must not exist or be empty)"),
          project_out: Optional[int] = typer.Option(None, "--project-out", help="remove ΔW's part in W0's top-k singular subspace"),
          side: str = typer.Option("left", help="which subspace: left (columns), right (rows) or both")) -> None:
    """Merge a LoRA run into a standard model (safetensors + tokenizer), optionally projected away from W0."""
    from lorasafe.models.merge import merge_run

    _check_out(out, "merged model directory")
    merge_run(run, out, project_out, side, log=_log)  # type: ignore[arg-type]


@app.command()
def theory(config: Optional[Path] = typer.Option(None, help="theory YAML (default: the built-in setup)"),
           out: Path = typer.Option(Path("runs/theory"), help="where theory.csv, fit.json and theory.png go"),
           set_: Optional[List[str]] = SetOpt) -> None:
    """Simulate rank overshoot vs the base task's intrinsic dimension and fit the relation."""
    from lorasafe.config.loader import load_config
    from lorasafe.theory import TheoryConfig, run_theory, verdict

    cfg = load_config(TheoryConfig, config, set_ or [])
    _check_out(out, "theory output directory")
    result = run_theory(cfg, out, log=_log)
    console.print(verdict(result))
    console.print(f"Plot: {out / 'theory.png'}  Data: {out / 'theory.csv'}  Fit: {out / 'fit.json'}")


def _sweep(config: Path, set_: Optional[List[str]]):
    from lorasafe.config.loader import load_config
    from lorasafe.sweeps.spec import SweepConfig

    return load_config(SweepConfig, config, set_ or [])


@sweep_app.command("plan")
def sweep_plan(config: Path = typer.Argument(..., help="sweep YAML"), set_: Optional[List[str]] = SetOpt) -> None:
    """Print the expanded table of runs (id, the changing fields, trainable parameters); nothing runs."""
    from rich.table import Table

    from lorasafe.sweeps.runner import plan
    from rich.markup import escape

    from lorasafe.sweeps.spec import short

    sweep = _sweep(config, set_)
    cells, params = plan(sweep, str(config))
    paths = list(dict.fromkeys(k for c in cells for k in c.values))
    t = Table(title=f"{sweep.name}: {len(cells)} runs")
    for col in ("id", *paths, "trainable params"):
        t.add_column(col, justify="right" if col == "trainable params" else "left")
    for c in cells:
        t.add_row(c.id, *(escape(short(c.values[p])) if p in c.values else "-" for p in paths), f"{params[c.id]:,}")
    Console(width=max(console.width, 140)).print(t)
    dup = sum(len(c.also) for c in cells)
    if dup:
        console.print(f"{dup} axis combinations resolve to a config already listed and run once.")


@sweep_app.command("run")
def sweep_run(config: Path = typer.Argument(..., help="sweep YAML"),
              out: Optional[Path] = typer.Option(None, help="sweep directory (default runs/sweeps/<name>; resumed)"),
              set_: Optional[List[str]] = SetOpt, progress: bool = typer.Option(True, help="progress bars"),
              report: bool = typer.Option(True, help="write the report when the runs are done"),
              executor: str = typer.Option("local", help="local, ray, slurm or submitit-local"),
              jobs: int = typer.Option(1, min=0, help="local: cells run at a time in worker processes; 0 = one per "
                                                       "CPU core (at most 4) on a CPU, 1 on a GPU"),
              address: Optional[str] = typer.Option(None, help="ray: the cluster to join (default: start a local one)"),
              partition: Optional[str] = typer.Option(None, help="slurm: the partition"),
              time_min: int = typer.Option(240, help="slurm: minutes per cell"),
              cpus_per_cell: float = typer.Option(1.0, help="ray/slurm: CPUs each cell asks for"),
              gpus_per_cell: float = typer.Option(0.0, help="ray/slurm: GPUs each cell asks for")) -> None:
    """Run every cell of a sweep (finished runs are skipped, failures recorded), then report."""
    from lorasafe.sweeps.executors import make_executor
    from lorasafe.sweeps.runner import run_sweep

    sweep = _sweep(config, set_)
    out = out or Path("runs") / "sweeps" / sweep.name
    _check_out(out, "sweep directory", ("sweep.yaml", "plan.json", "runs"))
    runner = make_executor(executor, address=address, partition=partition, time_min=time_min,
                           cpus_per_cell=cpus_per_cell, gpus_per_cell=gpus_per_cell, jobs=jobs)
    run_sweep(sweep, out.resolve(), log=_log, progress=progress, source=str(config), executor=runner)
    if report:
        _report(out, None)


def _report(root: Path, out: Optional[Path]) -> None:
    from lorasafe.reports.sweep_report import write_report

    if not root.is_dir():
        raise LorasafeError(f"{root} is not a directory of runs ({'a file' if root.exists() else 'it does not exist'}). "
                            "Pass the --out directory of `lorasafe sweep run`, `lorasafe study` or `lorasafe run`.")
    _check_out(out or root / "report", "report directory")
    files = write_report(root, out)
    console.print("Report: " + "  ".join(f"{k}: {v}" for k, v in files.items()))


@app.command()
def report(root: Path = typer.Argument(..., help="a directory of runs (a sweep's, a study's, or any)"),
           out: Optional[Path] = typer.Option(None, help="where the report goes (default ROOT/report)")) -> None:
    """Collect every run under ROOT into a tidy CSV, the main table, plots, Markdown and HTML."""
    _report(root, out)


@mini_app.command("build")
def mini_build(out: Path = typer.Option(None, help="model directory (default: the packaged model's place)"),
               work: Path = typer.Option(Path("runs/mini-build"), help="training checkpoints (a rerun of the same "
                                         "recipe resumes; another recipe is refused)"),
               seed: int = typer.Option(0), set_: Optional[List[str]] = SetOpt,
               progress: bool = typer.Option(True),
               compile: bool = typer.Option(False, help="train with torch.compile (a step 1.1-1.3x faster on 2 CPU "
                                            "cores, needs a C++ compiler; other float rounding, recorded under the "
                                            "report's host). Off: two compiled full-size builds of one seed are not "
                                            "yet bit-identical, two eager ones are")
               ) -> None:
    """Build the mini reasoning model: a safe parent, then reasoning distillation (about 40 minutes on 2 CPU cores)."""
    from lorasafe.mini.build import build_mini, load_recipe
    from lorasafe.models.loading import mini_model_dir

    cfg = load_recipe(seed, set_ or [])
    target = out or mini_model_dir()
    report = build_mini(target, cfg, work_dir=work, progress=progress, log=_log, compile=compile)
    console.print(f"Built {target}: {report['params']:,} parameters in {report['wall_s']:.0f} s; "
                  f"report: {target / 'build_report.json'}")
    for name, check in report["checks"].items():
        mark = "[green]pass[/]" if check["pass"] else "[bold red]FAIL[/]"
        console.print(f"  {mark}  {name}: {_short(check['value'])} ({check['bound']})")
    if not all(c["pass"] for c in report["checks"].values()):
        console.print("[bold yellow]warning:[/] the model misses part of the mini world's premise (see the FAIL "
                      "lines); the report records what it reached. Change the recipe (--set), not the evaluation.")


def _short(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v:.3f}" for k, v in value.items())
    return f"{value:.3f}"


@data_app.command("list")
def data_list() -> None:
    """Every suite a config can name: `bundled: NAME`, `hub: NAME` (network or `path:` to a local copy), `mini: NAME`."""
    from rich.table import Table

    from lorasafe.data.bundled import BUNDLED
    from lorasafe.data.hub import HUB_SUITES
    from lorasafe.mini.world import SUITES, MiniWorld

    t = Table(title="suites (details: lorasafe data show NAME)")
    for col in ("name", "key", "kind", "items", "licence"):
        t.add_column(col, justify="right" if col == "items" else "left", no_wrap=True)
    for spec in BUNDLED.values():
        t.add_row(spec.name, "bundled", spec.kind, str(spec.count), spec.licence.split(" (")[0])
    for spec in HUB_SUITES.values():
        t.add_row(spec.name, "hub", spec.kind, "hub", spec.licence)
    world = MiniWorld()
    for name in SUITES:
        t.add_row(name, "mini", world.suite(name)[0].kind, str(len(world.suite(name))), "MIT, Apache-2.0 / generated")
    Console(width=max(console.width, 120)).print(t)


@data_app.command("show")
def data_show(name: str = typer.Argument(..., help="a bundled suite name"),
              n: int = typer.Option(3, help="rows to print")) -> None:
    """Print a bundled suite's provenance and its first rows."""
    import json

    from lorasafe.data.bundled import BUNDLED, load_bundled_rows

    rows = load_bundled_rows(name)  # checks the checksum, count and columns
    spec = BUNDLED[name]
    console.print(f"{spec.name}: {spec.kind}, {len(rows)} items, {spec.licence}; source {spec.source}; sha256 {spec.sha256}")
    for row in rows[:n]:
        console.print_json(json.dumps(row, ensure_ascii=False))


@data_app.command("refusals")
def data_refusals(name: str = typer.Argument(..., help="bundled harmful suite to turn into refusal data"),
                  out: Path = typer.Option(..., help="JSONL file to write (id, prompt, kind, target)"),
                  exclude: Optional[List[str]] = typer.Option(None, help="bundled suites to decontaminate against"),
                  seed: int = typer.Option(0)) -> None:
    """Refusal SFT data in the think-format contract from a harmful suite, minus eval overlaps."""
    from lorasafe.data.bundled import load_bundled
    from lorasafe.data.records import save_items
    from lorasafe.data.refusal_builder import refusal_items

    _check_out_file(out)
    against = [it for other in exclude or [] for it in load_bundled(other)]
    built = refusal_items(load_bundled(name), against, seed=seed)
    save_items(out, built.items)
    console.print(f"{out}: {len(built.items)} refusal items from {name}; removed {built.exact_removed} exact and "
                  f"{built.near_removed} near duplicates (within {name} or of {', '.join(exclude or []) or 'nothing'})")


@judge_app.command("validate")
def judge_validate(judges: Optional[List[str]] = typer.Option(None, "--judge", help="judges to score (default: every offline one)"),
                   out: Path = typer.Option(Path("runs/judge-validation"), help="where the tables and the disagreement report go")) -> None:
    """Score offline judges against JailbreakBench's human majority labels (100 rows), beside Llama Guard and GPT-4."""
    import json

    from rich.table import Table

    from lorasafe.data.jsonl import write_json_atomic, write_jsonl_atomic
    from lorasafe.judges.base import get_judge
    from lorasafe.judges.validate import disagreements, judge_labels, validate

    _check_out(out, "judge validation directory")
    chosen = [get_judge(n) for n in (judges or ["rules", "learned"])]
    labels = judge_labels(chosen)
    table = validate(chosen, labels)
    t = Table(title="agreement with the human majority (jbb-judge-comparison, 100 rows)")
    for col in ("judge", "agreement", "tp", "tn", "fp", "fn"):
        t.add_column(col, justify="left" if col == "judge" else "right")
    for row in table:
        t.add_row(row["judge"], f"{row['agreement']:.2f}", *(str(row[k]) for k in ("tp", "tn", "fp", "fn")))
    console.print(t)
    if any(j.name == "learned" for j in chosen):
        from lorasafe.judges.learned import training_summary

        console.print(training_summary())
    from lorasafe.judges.probes import probe_accuracy

    probes = {}
    for j in chosen:  # reasoning-model outputs whose thinking and answer disagree (judges/probes.py)
        probes[j.name] = {on: probe_accuracy(j, on)[:2] for on in ("answer", "both")}
        console.print(f"{j.name} on the reasoning-output probes: " + ", ".join(
            f"{c} of {n} right with judge.on: {on}" for on, (c, n) in probes[j.name].items()))
    write_json_atomic(out / "probes.json", probes)
    write_json_atomic(out / "agreement.json", table)
    if len(chosen) > 1:
        rows = disagreements(labels)
        write_jsonl_atomic(out / "disagreements.jsonl", rows)
        console.print(f"{len(rows)} rows where the judges disagree: {out / 'disagreements.jsonl'}")
    console.print(f"Tables: {out / 'agreement.json'}")


@model_app.command("import")
def model_import(gguf: Path = typer.Argument(..., help="a .gguf model file, or a packaged model's name (lorasafe model list)"),
                 out: Path = typer.Argument(..., help="directory for the safetensors copy (new or empty)")) -> None:
    """De-quantise a GGUF model once into a model directory (safetensors, tokenizer, chat template)."""
    from lorasafe.models.gguf import import_gguf
    from lorasafe.models.packaged import is_packaged, packaged_file

    _check_out(out, "model directory")
    src = packaged_file(str(gguf)) if is_packaged(str(gguf)) else gguf
    if not src.is_file():
        raise LorasafeError(f"{gguf} is not a file (nor a packaged model: see lorasafe model list).")
    import_gguf(src, out, log=_log)
    console.print(f"model.path: {out}")


@model_app.command("structure")
def model_structure(model_dir: Path = typer.Argument(..., help="a model directory (config.json; weights not needed)")) -> None:
    """Measure a model's modules and parameter counts (meta device) into DIR/structure.json, so `targets` and
    `sweep plan` answer without loading torch (do this for a config-only copy in configs/models)."""
    from lorasafe.models.structure import write_structure

    if not (model_dir / "config.json").is_file():
        raise LorasafeError(f"{model_dir} holds no config.json: point at a model directory (or a config-only copy).")
    out, st = write_structure(model_dir)
    console.print(f"{out}: {st.model_type}, {st.num_hidden_layers} layers, {len(st.linears)} linear modules, "
                  f"{len(st.experts)} expert parameters, {st.total_params:,} parameters")


@model_app.command("list")
def model_list() -> None:
    """Models that ship as a file in a PyPI package: `model.path: NAME` uses one (imported once into the cache)."""
    from importlib import metadata

    from rich.table import Table

    from lorasafe.models.packaged import PACKAGED

    t = Table(title="packaged models")
    for col in ("name", "package", "installed", "licence", "model"):
        t.add_column(col)
    for m in PACKAGED.values():
        try:
            have = metadata.version(m.distribution)
        except metadata.PackageNotFoundError:
            have = f"no: {m.install}"
        t.add_row(m.name, f"{m.distribution}=={m.version}", have, m.licence, m.description)
    Console(width=max(console.width, 140)).print(t)


def main() -> None:
    from lorasafe.pipeline.workers import prepare_interpreter
    from lorasafe.training.host_threads import settle_wait

    # OpenMP threads wait PASSIVE after a short spin (training/host_threads.py: spinning is fastest alone and
    # ruinous when processes share cores), except in `mini build`, one process that has the cores to itself for
    # 20-40 minutes: it keeps libgomp's default (a mini-build step 0.98-1.32 s against 1.48-1.55 s under PASSIVE,
    # 2 cores, interleaved runs). An OMP_WAIT_POLICY set in the environment wins.
    args = sys.argv[1:]
    mini_build = "mini" in args and args[args.index("mini") + 1:args.index("mini") + 2] == ["build"]
    if not mini_build:
        settle_wait()
    # The command's defaults (below the options and their environment variables, above the options' own, which
    # in-process callers get; not exported, so processes it starts do not take them for a user's choice). `mini
    # build` keeps MKL's own rule and the C library's malloc as it comes: with them (and eager training) two
    # full-size builds of one seed were bit-identical, which is what reproducing the shipped model asks; the isa
    # path and the tuned malloc were not measured so.
    global _AS_COMMAND
    _AS_COMMAND = True
    defaults = {"mkl_dispatch": "vendor" if mini_build else "auto", "malloc": "system" if mini_build else "auto"}
    prepare_interpreter()
    if "--no-progress" in sys.argv[1:]:
        # Bars that libraries draw with plain tqdm (transformers' GGUF de-quantisation) follow the flag too;
        # tqdm reads this when it is first imported, which is after this line.
        os.environ.setdefault("TQDM_DISABLE", "1")
    try:
        app(default_map=defaults)
    except LorasafeError as e:
        from rich.markup import escape

        # Escaped: messages quote user input ([lists], brackets) that is not markup. Not wrapped: one paragraph
        # stays one line, whole for grep and CI logs.
        Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)
        sys.exit(2)
    except SystemExit as e:  # typer's way of returning
        if e.code in (None, 0):
            from lorasafe.training.distributed import end_launched_process

            end_launched_process()
        raise


if __name__ == "__main__":
    main()
