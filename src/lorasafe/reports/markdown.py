"""The study's Markdown report: what was run, the table as measured, the plot, the files.

Must not import torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lorasafe.config.schema import StudyConfig
from lorasafe.judges.base import caveats
from lorasafe.reports.table import markdown_table, operating_points


def geometry_section(rows: list[dict[str, Any]], plots: list[Path]) -> list[str]:
    """The weight-geometry table and plots, for the variants that were analysed."""
    geo = [r for r in rows if r.get("geometry")]
    if not geo:
        return []
    k = geo[0]["geometry"]["k"]
    lines = [
        "## Weight geometry", "",
        f"ΔW against the base weights W0, per trained variant (`lorasafe analyze`; per-module CSV in each variant's "
        f"`analysis/geometry.csv`). Stable rank = ‖ΔW‖_F²/‖ΔW‖_2², averaged over the adapted modules (a rank-r "
        f"LoRA update has at most r). Overlap = share of ‖ΔW‖_F² inside W0's top-{k} left (column) or right (row) "
        f"singular subspace, weighted by each module's ‖ΔW‖_F²; 'random' is the share a random update of the same "
        f"modules would have (k/out, k/in).", "",
        "| variant | modules | ‖ΔW‖_F | stable rank (mean) | stable rank (max) | overlap left | random left "
        "| overlap right | random right |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in geo:
        g = r["geometry"]
        lines.append(f"| {r['label']} | {g['modules']} | {g['update_fro']:.3f} | {g['stable_rank_mean']:.2f} | "
                     f"{g['stable_rank_max']:.2f} | {g['overlap_left']:.3f} | {g['random_left']:.3f} | "
                     f"{g['overlap_right']:.3f} | {g['random_right']:.3f} |")
    lines.append("")
    for p in plots:
        lines += [f"![{p.stem}]({p.name})", "", f"Data behind the plot: `{p.with_suffix('.csv').name}`.", ""]
    return lines


def operating_point_section(study: StudyConfig, rows: list[dict[str, Any]]) -> list[str]:
    """Which variant of each group the declared criterion picks (or that none qualifies)."""
    op = study.operating_point
    groups = [g for g in operating_points(study, rows) if len(g["variants"]) > 1]
    if not groups:
        return []
    lines = ["## Operating points", "",
             f"Declared in the study file before it ran: per group of variants that differ only in "
             f"{', '.join(op.select_over) or 'nothing'}, the best {op.maximise} among the variants with "
             f"{op.describe()}.", "", "| group | operating point |", "|---|---|"]
    for g in groups:
        lines.append(f"| {' / '.join(g['variants'])} | {g['chosen'] or 'none qualifies'} |")
    return lines + [""]


def study_report(study: StudyConfig, rows: list[dict[str, Any]], plot: Path | None, wall_s: float,
                 geometry_plots: list[Path] = ()) -> str:
    e = study.experiment
    lrs = sorted({r["learning_rate"] for r in rows if r.get("learning_rate") is not None})
    lr_text = f"lr {lrs[0]:g}" if len(lrs) == 1 else "lr " + " or ".join(f"{x:g}" for x in lrs) + " (column lr)"
    t, g = e.training, e.generation
    suites = ", ".join(r.name for r in e.data.eval)
    scorers = {n: m["scorer"] for r in rows for n, m in (r.get("suites") or {}).items() if m.get("kind") == "reasoning"}
    train = ", ".join(r.name for r in e.data.train)
    lines = [
        f"# {study.name}",
        "",
        f"Model `{e.model.path}` ({e.model.precision}); training data: {train}; evaluation: {suites}; "
        f"judge: `{e.judge.name}`{' (also ' + ', '.join(f'`{j}`' for j in e.judge.also) + ')' if e.judge.also else ''}, "
        f"reading the {e.judge.on}; reasoning scored on the answer after the thinking block"
        + (f" ({', '.join(f'{n}: {sc}' for n, sc in scorers.items())})" if scorers else "") + ".",
        "",
        f"Every trained variant used the same data and optimiser settings: {lr_text}, {t.scheduler} "
        f"schedule, warm-up ratio {t.warmup_ratio:g}, weight decay {t.weight_decay:g}, batch {t.batch_size}"
        f"x{t.grad_accum}, {t.max_steps or t.epochs} {'steps' if t.max_steps else 'epochs'}, seed {e.seed}. "
        f"Generation: {'greedy' if g.temperature == 0 else f'temperature {g.temperature:g}, top-p {g.top_p:g}'}, "
        f"at most {g.max_new_tokens} new tokens, {g.samples} sample(s) per prompt.",
        "",
        "Refused, complied and invalid are the three shares of the held-out harmful prompts (they sum to 1, "
        "averaged over the harmful suites, each suite's refused share beside them). Invalid = no answer after the "
        "thinking block (e.g. a turn that ends inside `<think>`): a broken model, never counted as a refusal; the "
        "plot draws a variant with more than 5% invalid hollow, as broken. Over-refusal = fraction of held-out "
        "benign requests refused (plain and edgy requests, each suite beside the mean). Truncated = outputs cut "
        "by the token limit, over all suites.",
        "",
        markdown_table(rows),
        "",
    ]
    lines += [f"Caveat, judge `{name}`: {text}." for name, text in caveats([e.judge.name, *e.judge.also]).items()]
    lines += [""] if lines[-1] != "" else []
    lines += operating_point_section(study, rows)
    if plot is not None:
        lines += [f"![refusal vs reasoning]({plot.name})", "", f"Data behind the plot: `{plot.with_suffix('.csv').name}`.", ""]
    lines += geometry_section(rows, list(geometry_plots))
    lines += [
        "These numbers are as measured on this run, whichever way they point. One learning rate and one "
        "checkpoint per method is a single operating point: which method looks better can change with what is "
        "held fixed (learning rate, steps, or refusal level).",
        "",
        f"Wall time of the invocation that wrote this report: {wall_s:.0f} s (stages finished by an earlier "
        "invocation are skipped; the train and eval seconds in the table are those of the run that did them). "
        "Per-variant files: `variants/<label>/` (config.yaml, manifest.json, "
        "generations/*.jsonl, judgments/*.jsonl, metrics.json, train/).",
        "",
    ]
    return "\n".join(lines)
