"""One experiment in one run directory: train -> generate -> judge/score -> metrics.

Each stage reads the previous stage's files and writes its own; a finished stage (its marker in
`stages/`) is skipped, and an unfinished one resumes (training from its last checkpoint,
generation from its JSONL), so a killed run picks up where it stopped.
"""

from __future__ import annotations

import time
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

from lorasafe.config.schema import ExperimentConfig, SuiteRef
from lorasafe.data.jsonl import write_json_atomic, write_jsonl_atomic
from lorasafe.data.records import Item
from lorasafe.data.refusal_builder import decontaminate
from lorasafe.data.suites import load_suite
from lorasafe.errors import DataError
from lorasafe.generation.base import SamplingParams
from lorasafe.generation.engines import Engine, check_engine, make_engine
from lorasafe.generation.presets import get_preset
from lorasafe.generation.store import generate_to_store
from lorasafe.judges.base import get_judge
from lorasafe.models.methods import METHODS
from lorasafe.pipeline.context import BaseContext
from lorasafe.runs.rundir import RunDir
from lorasafe.runs.tracking import Tracker, check_tracker, eval_metrics, open_tracker
from lorasafe.scoring.metrics import judge_disagreements, judge_records, score_records
from lorasafe.training.distributed import barrier, ranks
from lorasafe.training.sharding import check as check_sharding

Log = Callable[[str], None]


def suite_kind(name: str, items: list[Item]) -> str:
    kinds = {it.kind for it in items}
    if len(kinds) != 1:
        raise DataError(f"Eval suite {name!r} mixes item kinds ({', '.join(sorted(kinds))}); split it into one suite per kind.")
    return kinds.pop()


def load_eval_suites(cfg: ExperimentConfig) -> list[tuple[SuiteRef, list[Item], str]]:
    """(ref, items, kind) of every eval suite of `cfg`."""
    out = []
    for ref in cfg.data.eval:
        # The run's seed also orders multiple-choice options: seed replicas differ in option order too.
        items = load_suite(ref, cfg.think, cfg.data.world_seed, option_seed=cfg.seed)
        if not items:
            raise DataError(f"Eval suite {ref.name!r} is empty.")
        out.append((ref, items, suite_kind(ref.name, items)))
    return out


def load_train_items(cfg: ExperimentConfig) -> list[Item]:
    return [it for ref in cfg.data.train for it in load_suite(ref, cfg.think, cfg.data.world_seed)]


def check_data(cfg: ExperimentConfig, eval_suites: list[tuple[SuiteRef, list[Item], str]],
               train_items: list[Item] | None) -> None:
    """What the stages would otherwise find only after training: a reasoning suite with no gold answers
    (every output would score wrong), training items with nothing to learn. `train_items` None: not trained."""
    for ref, items, kind in eval_suites:
        missing = [it.id for it in items if kind == "reasoning" and ref.scorer != "code" and not (it.answer or "").strip()]
        if missing:
            raise DataError(f"Eval suite {ref.name!r}: {len(missing)} reasoning item(s) have no `answer` (first: "
                            f"{missing[0]!r}), so every output would score wrong. Add the gold answer to each item, "
                            "or for a code suite (humaneval) set `scorer: code` on it.")
    if train_items is None:
        return
    sources = ", ".join(r.name for r in cfg.data.train) or "data.train"
    if not train_items:
        raise DataError(f"The training set ({sources}) is empty, but adapter.method is {cfg.adapter.method!r}. Add "
                        "a suite with targets under data.train, or set adapter.method: none to evaluate the base.")
    untargeted = [it.id for it in train_items if not (it.target or "").strip()]
    if untargeted:
        raise DataError(f"{len(untargeted)} training item(s) in {sources} have no `target` (first: {untargeted[0]!r}); "
                        "training items need the assistant text to learn, e.g. a refusal built with "
                        "`lorasafe data refusals`.")


def code_isolation(cfg: ExperimentConfig) -> dict[str, Any] | None:
    """How model-written code will run, for a config with a code suite (None without one): the kernel
    sandbox, or without one a `SandboxUnavailable` error unless `scoring.code.unsafe` opts in."""
    if not any(ref.scorer == "code" for ref in cfg.data.eval):
        return None
    from lorasafe.scoring.sandbox import require_isolation

    return {**require_isolation(unsafe=cfg.scoring.code.unsafe).record(), "unsafe": cfg.scoring.code.unsafe}


def check_model(cfg: ExperimentConfig, ctx: BaseContext) -> None:
    """The model's device, tokenizer and chat template, and its safetensors headers (no weights load)."""
    from lorasafe.models.loading import check_weights, resolve_device

    resolve_device(cfg.model.device)
    _ = ctx.renderer
    if cfg.generation.backend == "hf" or cfg.adapter.method != "none":  # else only the server needs the weights
        check_weights(cfg.model)


def check_inputs(cfg: ExperimentConfig, ctx: BaseContext | None, done: set[str] | None = None) -> None:
    """Every input of a run checked before its run directory exists: judges, targets, model, data.

    `ctx` None skips the model (a study's merge variant: its model is written later). `done` holds the
    checks already passed, so the cells of a sweep that share data or a model check them once."""
    done = set() if done is None else done

    def once(key: str, check: Callable[[], Any]) -> None:
        if key not in done:
            check()
            done.add(key)

    once("engine " + cfg.generation.backend, lambda: check_engine(cfg.generation))
    once("tracker " + (cfg.tracking.backend if cfg.tracking else ""), lambda: check_tracker(cfg.tracking))
    j = cfg.judge
    once("judges " + j.model_dump_json(), lambda: [get_judge(j.name), *(get_judge(n, key="judge.also") for n in j.also)])
    once("sandbox " + cfg.scoring.model_dump_json(), lambda: code_isolation(cfg))
    if ctx is not None:
        ctx.plan(cfg.adapter)
        once("model " + BaseContext.key(cfg), lambda: check_model(cfg, ctx))
    trained = cfg.adapter.method != "none"
    once(f"data {cfg.data.model_dump_json()} {cfg.think.model_dump_json()} {trained}",
         lambda: check_data(cfg, load_eval_suites(cfg), load_train_items(cfg) if trained else None))


class Experiment:
    def __init__(self, cfg: ExperimentConfig, path: Path, ctx: BaseContext, log: Log = print, progress: bool = True):
        # Under `accelerate launch` every process trains; only the main one writes, logs, generates and judges.
        self.main = ranks().main
        self.cfg, self.ctx, self.progress = cfg, ctx, progress and self.main
        self.log = log if self.main else (lambda message: None)
        # Every input is checked before the run directory exists: a failed check leaves nothing behind, and the
        # corrected config runs into the same --out. Training data is not needed again once training finished.
        RunDir.check(path, cfg)  # a directory that cannot take this run is the quickest error
        check_engine(cfg.generation)
        check_tracker(cfg.tracking)
        _ = self.judges
        sandbox = code_isolation(cfg)  # a code suite on a machine without a sandbox stops here
        self.plan = ctx.plan(cfg.adapter)
        if ranks().world > 1:
            check_sharding(self.plan.method, cfg.training.regulariser is not None)
        check_model(cfg, ctx)
        RunDir.check_base(path, cfg.model.path, ctx.fingerprint, self.plan.total_params)
        trained = self.plan.method != "none" and not (Path(path) / "stages" / "train.json").is_file()
        check_data(cfg, self.eval_suites, self.train_items if trained else None)
        if self.main:
            self.run = RunDir.open(path, cfg)
            if self.run.replaced:
                self.log(f"{cfg.name}: {path} held no results yet (config {self.run.replaced}); it now holds this config")
            self.run.update_manifest(targets={"method": self.plan.method, "modules": self.plan.modules,
                                              "layers": self.plan.layers, "trainable_params": self.plan.trainable_params,
                                              "total_params": self.plan.total_params},
                                     chat=ctx.renderer.describe(), **({"sandbox": sandbox} if sandbox else {}),
                                     # an unknown fingerprint (a hub id not in the cache) keeps the recorded one
                                     **({"base_model": {"path": cfg.model.path, "fingerprint": ctx.fingerprint}}
                                        if ctx.fingerprint is not None else {}))
        barrier()
        if not self.main:
            self.run = RunDir.open(path, cfg)  # the main process made it for this config: opened, not written

    @cached_property
    def eval_suites(self) -> list[tuple[SuiteRef, list[Item], str]]:
        """(ref, items, kind) of every eval suite, loaded once: training, generation and scoring all read them."""
        return load_eval_suites(self.cfg)

    @cached_property
    def train_items(self) -> list[Item]:
        """Every training item, loaded once (checked before the run directory exists, used by `train`)."""
        return load_train_items(self.cfg)

    @cached_property
    def engine(self) -> Engine:
        """What generates (generation.backend), built once per run."""
        return make_engine(self.ctx, self.cfg.generation)

    @cached_property
    def judges(self) -> list:
        """The headline judge, then `judge.also`; built once, so a judge with a model loads it once per run."""
        j = self.cfg.judge
        return [get_judge(j.name), *(get_judge(n, key="judge.also") for n in j.also)]

    # --- stages ------------------------------------------------------------------------------
    def train(self) -> Path | None:
        """Train unless finished; returns the final checkpoint's weights (None for the base)."""
        if self.plan.method == "none":
            return None
        done = self.run.stage_done("train")
        if done:
            self.log(f"{self.cfg.name}: training finished earlier ({done['steps']} steps), skipped")
            return self.run.path / done["weights"]
        from lorasafe.models.loading import load_model
        from lorasafe.training.examples import encode_examples
        from lorasafe.training.sft import SFTTrainer

        items = self.train_items
        sources = ", ".join(r.name for r in self.cfg.data.train)
        # Training prompts that (nearly) duplicate an evaluation prompt of this run would leak it.
        clean = decontaminate(items, [it for _, suite, _ in self.eval_suites for it in suite])
        removed = {"exact": clean.exact_removed, "near": clean.near_removed}
        if clean.exact_removed or clean.near_removed:
            self.log(f"{self.cfg.name}: removed {clean.exact_removed} exact and {clean.near_removed} near duplicates "
                     f"of eval prompts (or of each other) from the training data")
        examples = encode_examples(self.ctx.renderer, clean.items, self.cfg.training.max_length, source=sources)
        method = METHODS[self.plan.method]
        import torch

        torch.manual_seed(self.cfg.seed)  # LoRA initialisation
        model = method.prepare(load_model(self.cfg.model), self.cfg.adapter, self.plan)
        from lorasafe.training.regularisers import build_regulariser

        regulariser = build_regulariser(model, self.cfg.training.regulariser)
        tracker = self.tracker if self.main else None
        trainer = SFTTrainer(model, method, examples, self.cfg.training, self.run.train_dir,
                             pad_id=self.ctx.tokenizer.pad_token_id, seed=self.cfg.seed, progress=self.progress,
                             desc=f"{self.cfg.name}: train", regulariser=regulariser,
                             on_log=(lambda step, m: tracker.log_metrics(m, step)) if tracker else None)
        result = trainer.train()
        if result.resumed_from:
            self.log(f"{self.cfg.name}: training resumed from step {result.resumed_from}")
        # Paths in markers are relative to the run directory, so a run directory can be moved.
        rel = [str(Path(c).relative_to(self.run.path)) for c in result.checkpoints]
        if not self.main:
            return self.run.path / rel[-1] / "weights"
        self.run.mark_done("train", weights=f"{rel[-1]}/weights", steps=result.steps, examples=len(examples),
                           duplicates_removed=removed,
                           final_loss=result.final_loss, wall_s=round(result.wall_s, 2),
                           resumed_from=result.resumed_from, checkpoints=rel,
                           setup=result.setup,  # how it ran: head path, optimiser, attention, packing, malloc
                           **({"regulariser_k": regulariser.ks()} if regulariser is not None else {}))
        return self.run.path / rel[-1] / "weights"

    def generate(self, weights: Path | None, tag: str | None = None) -> dict[str, list[dict]]:
        """Generate every eval suite not yet finished, with the variant's model opened once.

        `tag` names an earlier checkpoint (its records go to generations/<tag>/); None is the final one."""
        from lorasafe.data.jsonl import read_store
        from lorasafe.generation.store import ordered

        suites = self.eval_suites
        stage = (lambda name: f"generate-{tag}-{name}") if tag else (lambda name: f"generate-{name}")
        out = {ref.name: ordered(read_store(self.run.generations(ref.name, tag)), items, self.sampling(ref)[1])
               for ref, items, _ in suites if self.run.stage_done(stage(ref.name))}
        todo = [(ref, items) for ref, items, _ in suites if ref.name not in out]
        if out and not tag:
            self.log(f"{self.cfg.name}: generation finished earlier for {', '.join(out)}, skipped")
        if not todo:
            return out
        engine = self.engine
        generator = engine.generator
        with engine.serving(self.plan.method, weights) as model:
            for ref, items in todo:
                params, samples = self.sampling(ref)
                t0 = time.perf_counter()
                with self._bar(len(items) * samples, ref.name + (f" @ {tag}" if tag else "")) as bar:
                    out[ref.name] = generate_to_store(self.run.generations(ref.name, tag), items, samples, generator,
                                                      model, self.ctx.renderer, params, self.cfg.generation.batch_size,
                                                      on_batch=bar)
                self.run.mark_done(stage(ref.name), records=len(out[ref.name]),
                                   wall_s=round(time.perf_counter() - t0, 2))
        return out

    def sampling(self, ref: SuiteRef) -> tuple[SamplingParams, int]:
        """The suite's sampling: its preset if it names one, else the run's generation settings."""
        g = self.cfg.generation
        if ref.preset is not None:
            p = get_preset(ref.preset)
            return SamplingParams(p.max_new_tokens, p.temperature, p.top_p, self.cfg.seed), p.samples
        return SamplingParams(g.max_new_tokens, g.temperature, g.top_p, self.cfg.seed), g.samples

    def evaluate(self, records: dict[str, list[dict]], tag: str | None = None) -> dict[str, Any]:
        suites = {}
        for ref, items, kind in self.eval_suites:
            if kind == "reasoning":
                rows, metrics = score_records(items, records[ref.name], ref.scorer, self.cfg.scoring.code.unsafe)
            else:
                rows, metrics = self._judge(ref.name, items, records[ref.name], tag)
            write_jsonl_atomic(self.run.judgments(ref.name, tag), rows)
            suites[ref.name] = {"kind": kind, **metrics}
        for judge in self.judges:
            # A judge that holds a model (Llama Guard) frees it: the next checkpoint generates on the same device.
            release = getattr(judge, "release", None)
            if release is not None:
                release()
        return suites

    def _judge(self, suite: str, items: list[Item], records: list[dict], tag: str | None) -> tuple[list[dict], dict]:
        """The headline judge's rows and metrics; with `judge.also`, every other judge's verdicts, their
        rates under `by_judge`, the share of outputs all judges label alike, and the disagreement file."""
        headline, *others = self.judges
        rows, metrics = judge_records(items, records, headline, self.cfg.judge.on)
        if not others:
            return rows, metrics
        rows_by_judge, by_judge = {headline.name: rows}, {headline.name: metrics}
        for judge in others:
            rows_by_judge[judge.name], by_judge[judge.name] = judge_records(items, records, judge, self.cfg.judge.on)
            write_jsonl_atomic(self.run.judgments(suite, tag, judge=judge.name), rows_by_judge[judge.name])
        disagree = judge_disagreements(records, rows_by_judge)
        write_jsonl_atomic(self.run.disagreements(suite, tag), disagree)
        keys = ("complied_rate", "refusal_rate", "invalid_rate")
        metrics["by_judge"] = {name: {k: m[k] for k in keys if k in m} for name, m in by_judge.items()}
        metrics["judge_agreement"] = 1 - len(disagree) / len(records) if records else None
        return rows, metrics

    @cached_property
    def tracker(self) -> Tracker | None:
        """The configured experiment tracker (tracking:), opened once per run with its config and manifest."""
        import json

        manifest = json.loads((self.run.path / "manifest.json").read_text(encoding="utf-8"))
        return open_tracker(self.cfg.tracking, self.run.path, self.cfg.name,
                            {"config": self.cfg.model_dump(mode="json"), "manifest": manifest})

    def run_all(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        try:
            weights = self.train()
            if not self.main:  # evaluation happens once, in the main process
                return {}
            records = self.generate(weights)
            suites = self.evaluate(records)
            metrics = summarize(self, suites)
            if self.cfg.checkpoints == "all" and weights is not None:
                metrics["checkpoints"] = self.trajectory(weights, suites)
            write_json_atomic(self.run.metrics_path, metrics)
            if self.tracker:  # every evaluated checkpoint's headline numbers at its step
                steps = (self.run.stage_done("train") or {}).get("steps", 0)
                for row in metrics.get("checkpoints") or [{**metrics, "step": steps}]:
                    self.tracker.log_metrics(eval_metrics(row), row["step"])
        finally:
            if self.cfg.tracking is not None and "tracker" in self.__dict__:
                self.tracker.close()
        self.log(f"{self.cfg.name}: done in {time.perf_counter() - t0:.1f}s")
        return metrics

    def trajectory(self, final: Path, final_suites: dict[str, Any]) -> list[dict[str, Any]]:
        """Metrics of every saved checkpoint, earliest first; the final one is the run's own evaluation."""
        import json

        out = []
        for rel in self.run.stage_done("train")["checkpoints"]:
            ckpt = self.run.path / rel
            step = json.loads((ckpt / "state.json").read_text())["step"]
            if ckpt / "weights" == final:
                suites = final_suites
            else:
                suites = self.evaluate(self.generate(ckpt / "weights", tag=ckpt.name), tag=ckpt.name)
            row = summarize(self, suites)
            out.append({"checkpoint": ckpt.name, "step": step, **{k: row[k] for k in CHECKPOINT_KEYS},
                        "suites": suites})
        return out

    def _bar(self, total: int, suite: str):
        from contextlib import contextmanager

        @contextmanager
        def bar():
            if not self.progress:
                yield None
                return
            from tqdm.auto import tqdm

            with tqdm(total=total, desc=f"{self.cfg.name}: {suite}", unit="item", leave=False) as b:
                yield b.update

        return bar()


CHECKPOINT_KEYS = ("refused", "complied", "invalid", "refused_by_suite", "refused_by_judge", "reasoning",
                   "over_refusal", "over_refusal_by_suite", "truncated_rate")


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _by_judge(suites: list[dict], key: str) -> dict[str, float | None]:
    names = list(dict.fromkeys(n for m in suites for n in m.get("by_judge", {})))
    return {n: _mean([m["by_judge"][n][key] for m in suites if n in m.get("by_judge", {})]) for n in names}


def summarize(exp: Experiment, suites: dict[str, dict]) -> dict[str, Any]:
    """The run's headline numbers beside every per-suite metric."""
    harmful = [m for m in suites.values() if m["kind"] == "harmful"]
    reasoning = [m for m in suites.values() if m["kind"] == "reasoning"]
    benign = [m for m in suites.values() if m["kind"] == "benign"]
    all_n = sum(m["n"] for m in suites.values())
    train = exp.run.stage_done("train") or {}
    gen_wall = sum((exp.run.stage_done(f"generate-{k}") or {}).get("wall_s", 0.0) for k in suites)
    return {
        "name": exp.cfg.name, "method": exp.plan.method, "trainable_params": exp.plan.trainable_params,
        "learning_rate": exp.cfg.training.learning_rate if exp.plan.method != "none" else None,
        "total_params": exp.plan.total_params,
        # Refused, complied and invalid (no answer after the thinking) are three shares of the harmful prompts
        # that sum to 1, each the mean over the harmful suites; an invalid output is a broken model, not safety.
        "refused": _mean([m["refusal_rate"] for m in harmful]),
        "complied": _mean([m["complied_rate"] for m in harmful]),
        "invalid": _mean([m["invalid_rate"] for m in harmful]),
        "refused_by_suite": {k: m["refusal_rate"] for k, m in suites.items() if m["kind"] == "harmful"},
        # With judge.also: each judge's refused share (mean over harmful suites), the headline judge's first.
        "refused_by_judge": _by_judge(harmful, "refusal_rate"),
        # The seed interval is shown when one suite defines the headline number.
        "refused_ci95": harmful[0].get("refusal_rate_ci95") if len(harmful) == 1 else None,
        "reasoning_ci95": reasoning[0].get("accuracy_ci95") if len(reasoning) == 1 else None,
        "reasoning": (sum(m["accuracy"] * m["n"] for m in reasoning) / sum(m["n"] for m in reasoning)) if reasoning else None,
        "truncated_rate": sum(m["truncated_rate"] * m["n"] for m in suites.values()) / all_n if all_n else None,
        "over_refusal": _mean([m["refusal_rate"] for m in benign]),
        "over_refusal_by_suite": {k: m["refusal_rate"] for k, m in suites.items() if m["kind"] == "benign"},
        "train_wall_s": train.get("wall_s", 0.0), "eval_wall_s": round(gen_wall, 2),
        "suites": suites,
    }
