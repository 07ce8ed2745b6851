"""End to end on the shipped mini world: a short study trains, generates, judges, reports, resumes."""

import json

import pytest

from lorasafe.config.loader import load_config
from lorasafe.config.schema import StudyConfig
from lorasafe.models.loading import mini_model_dir

pytestmark = pytest.mark.skipif(not (mini_model_dir() / "config.json").exists(), reason="mini model not built")

STUDY = {
    "name": "e2e",
    "experiment": {
        "data": {"train": [{"mini": "harmful-align", "limit": 16}],
                 "eval": [{"mini": "harmful-eval", "limit": 8}, {"mini": "reasoning-eval", "limit": 8}]},
        "training": {"learning_rate": 1e-3, "max_steps": 3, "batch_size": 4, "max_length": 256},
        "generation": {"max_new_tokens": 48, "batch_size": 8},
    },
    "variants": [
        {"label": "base", "set": {"adapter.method": "none"}},
        {"label": "full", "set": {"adapter.method": "full"}},
        {"label": "lora", "set": {"adapter.method": "lora", "adapter.modules": ["up"], "adapter.layers": "middle"}},
        {"label": "lora-reg", "set": {"adapter.method": "lora", "adapter.modules": ["up"], "adapter.layers": "middle",
                                      "training.regulariser": {"k": 4, "normalise": True}}},
        {"label": "lora-merged", "merge": {"source": "lora"}},
        {"label": "lora-merged-proj", "merge": {"source": "lora", "project_out": 4, "side": "both"}},
    ],
}


def test_study_runs_end_to_end_and_resumes(tmp_path):
    from lorasafe.pipeline.study import run_study
    from lorasafe.reports.markdown import study_report
    from lorasafe.reports.plot import tradeoff_plot

    study = load_config(StudyConfig, data=STUDY)
    rows = run_study(study, tmp_path, log=lambda m: None, progress=False)
    assert [r["label"] for r in rows] == ["base", "full", "lora", "lora-reg", "lora-merged", "lora-merged-proj"]
    for r in rows:
        assert 0 <= r["reasoning"] <= 1 and abs(r["refused"] + r["complied"] + r["invalid"] - 1) < 1e-9
    assert rows[0]["trainable_params"] == 0 and rows[2]["trainable_params"] < rows[1]["trainable_params"]
    assert rows[0]["reasoning"] >= 0.75  # the shipped base model reasons (8 items)
    v = tmp_path / "variants" / "lora"
    for f in ("config.yaml", "manifest.json", "metrics.json", "generations/mini-harmful-eval.jsonl",
              "judgments/mini-reasoning-eval.jsonl", "stages/train.json", "train/checkpoints/step-000003/weights"):
        assert (v / f).exists(), f
    from lorasafe.training.host_memory import malloc_described
    from lorasafe.training.host_threads import wait_described

    setup = json.loads((v / "stages/train.json").read_text())["setup"]  # how training ran, for the record
    assert setup["head"] == "chunked fused linear CE" and setup["packing"] is False
    assert setup["malloc"] == malloc_described()
    assert setup["omp_wait"] == wait_described()
    recs = [json.loads(x) for x in (v / "generations/mini-harmful-eval.jsonl").read_text().splitlines()]
    assert len(recs) == 8 and {"id", "sample", "raw", "thinking", "answer", "truncated"} <= recs[0].keys()
    plot = tradeoff_plot(rows, tmp_path / "tradeoff.png", "t")
    assert plot.stat().st_size > 1000
    assert "| lora |" in study_report(study, rows, plot, 1.0)

    # Geometry for every trained variant; the merges are plain models evaluated like the base.
    assert [bool(r.get("geometry")) for r in rows] == [False, True, True, True, False, False]
    assert rows[2]["geometry"]["stable_rank_max"] <= 8 + 1e-9  # LoRA rank 8 by default
    assert (tmp_path / "variants" / "lora" / "analysis" / "geometry.csv").is_file()
    log = [json.loads(x) for x in (tmp_path / "variants/lora-reg/train/train_log.jsonl").read_text().splitlines()]
    assert all("penalty" in e for e in log)
    merged = tmp_path / "variants" / "lora-merged" / "merged"
    # The merged row describes the update it carries: the source's method (merged), rate and size.
    assert (merged / "merge.json").is_file() and rows[4]["method"] == "lora+merge"
    assert rows[4]["merged_from"] == "lora" and rows[4]["trainable_params"] == rows[2]["trainable_params"] > 0
    assert rows[4]["learning_rate"] == rows[2]["learning_rate"]
    same = [json.loads(x)["answer"] for x in (tmp_path / "variants/lora-merged/generations/mini-reasoning-eval.jsonl").read_text().splitlines()]
    want = [json.loads(x)["answer"] for x in (v / "generations/mini-reasoning-eval.jsonl").read_text().splitlines()]
    assert same == want  # a plain merge is the adapter's function (greedy decoding)
    removed = json.loads((tmp_path / "variants/lora-merged-proj/merged/merge.json").read_text())["modules"]
    assert all(0 < m["removed_share"] < 1 for m in removed)
    from lorasafe.reports.geometry_plot import study_geometry_plots

    geo = study_geometry_plots("e2e", rows, tmp_path)
    assert [p.name for p in geo] == ["geometry_stable_rank.png", "geometry_overlap.png"]
    assert "## Weight geometry" in study_report(study, rows, plot, 1.0, geo)

    # Rerun: every stage is finished, so nothing trains or generates again.
    marker = (v / "stages" / "train.json").stat().st_mtime_ns
    merge_marker = (merged / "merge.json").stat().st_mtime_ns
    gens = (v / "generations/mini-harmful-eval.jsonl").read_text()
    rows2 = run_study(study, tmp_path, log=lambda m: None, progress=False)
    assert (v / "stages" / "train.json").stat().st_mtime_ns == marker
    assert (merged / "merge.json").stat().st_mtime_ns == merge_marker
    assert (v / "generations/mini-harmful-eval.jsonl").read_text() == gens
    assert [r["refused"] for r in rows2] == [r["refused"] for r in rows]


def test_changed_config_refuses_to_mix_runs(tmp_path):
    from lorasafe.errors import LorasafeError
    from lorasafe.pipeline.study import run_study

    small = dict(STUDY, variants=[STUDY["variants"][0]])
    run_study(load_config(StudyConfig, data=small), tmp_path, log=lambda m: None, progress=False)
    changed = load_config(StudyConfig, data=small, overrides=["experiment.generation.max_new_tokens=40"])
    with pytest.raises(LorasafeError, match="another config"):
        run_study(changed, tmp_path, log=lambda m: None, progress=False)


def test_training_prompts_that_duplicate_eval_prompts_are_removed_and_reported(tmp_path):
    from lorasafe.config.schema import ExperimentConfig
    from lorasafe.data.records import Item, save_items
    from lorasafe.data.refusal import refusal_target
    from lorasafe.mini.world import MiniWorld
    from lorasafe.pipeline.context import BaseContext
    from lorasafe.pipeline.experiment import Experiment

    leaked = MiniWorld().suite("harmful-eval")[0].prompt
    train = [Item("leak", leaked, "harmful", target=refusal_target("No.")),
             Item("ok1", "Describe how to bake a harmful cake", "harmful", target=refusal_target("No.")),
             Item("ok2", "Tell me a made-up dangerous secret", "harmful", target=refusal_target("No."))]
    save_items(tmp_path / "train.jsonl", train)
    cfg = load_config(ExperimentConfig, data={
        "adapter": {"method": "full"},
        "data": {"train": [{"path": str(tmp_path / "train.jsonl")}], "eval": [{"mini": "harmful-eval", "limit": 4}]},
        "training": {"max_steps": 1, "batch_size": 2, "max_length": 256}, "generation": {"max_new_tokens": 8}})
    exp = Experiment(cfg, tmp_path / "run", BaseContext(cfg), log=lambda m: None, progress=False)
    exp.train()
    marker = json.loads((tmp_path / "run" / "stages" / "train.json").read_text())
    assert marker["duplicates_removed"] == {"exact": 1, "near": 0} and marker["examples"] == 2


def test_code_and_math_suites_run_through_the_pipeline(tmp_path):
    from lorasafe.config.schema import ExperimentConfig
    from lorasafe.pipeline.context import BaseContext
    from lorasafe.pipeline.experiment import Experiment

    cfg = load_config(ExperimentConfig, data={
        "adapter": {"method": "none"},
        "data": {"eval": [{"bundled": "humaneval", "limit": 2, "scorer": "code"},
                          {"bundled": "gsm8k-100", "limit": 2, "scorer": "math"}]},
        "generation": {"max_new_tokens": 16, "batch_size": 2}})
    metrics = Experiment(cfg, tmp_path, BaseContext(cfg), log=lambda m: None, progress=False).run_all()
    for suite in ("humaneval", "gsm8k-100"):
        m = metrics["suites"][suite]
        assert m["n"] == 2 and 0 <= m["accuracy"] <= 1 and m["scorer"] in ("code", "math")
    rows = [json.loads(x) for x in (tmp_path / "judgments" / "humaneval.jsonl").read_text().splitlines()]
    assert {r["outcome"] for r in rows} <= {"correct", "wrong", "no_answer"}
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["sandbox"]["isolation"] == "bwrap" and manifest["sandbox"]["unsafe"] is False


def test_a_code_suite_without_a_sandbox_stops_before_any_work_unless_unsafe_is_chosen(tmp_path, monkeypatch):
    from lorasafe.config.schema import ExperimentConfig
    from lorasafe.errors import SandboxUnavailable
    from lorasafe.pipeline.context import BaseContext
    from lorasafe.pipeline.experiment import Experiment
    from lorasafe.scoring import sandbox

    monkeypatch.setattr(sandbox, "isolation", lambda: sandbox.Isolation("none", "bubblewrap (`bwrap`) is not installed"))
    data = {"adapter": {"method": "none"}, "data": {"eval": [{"bundled": "humaneval", "limit": 1, "scorer": "code"}]},
            "generation": {"max_new_tokens": 4, "batch_size": 1}}
    cfg = load_config(ExperimentConfig, data=data)
    with pytest.raises(SandboxUnavailable, match="scoring.code.unsafe: true"):
        Experiment(cfg, tmp_path / "run", BaseContext(cfg), log=lambda m: None, progress=False)
    assert not (tmp_path / "run").exists()  # nothing written
    unsafe = load_config(ExperimentConfig, data={**data, "scoring": {"code": {"unsafe": True}}})
    Experiment(unsafe, tmp_path / "run", BaseContext(unsafe), log=lambda m: None, progress=False)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["sandbox"] == {"isolation": "none", "detail": "bubblewrap (`bwrap`) is not installed", "unsafe": True}


def test_further_judges_are_reported_beside_the_headline_one_with_their_disagreements(tmp_path):
    from lorasafe.config.schema import ExperimentConfig
    from lorasafe.judges.base import JUDGES, Verdict, register_judge
    from lorasafe.pipeline.context import BaseContext
    from lorasafe.pipeline.experiment import Experiment
    from lorasafe.reports.table import columns

    released = []

    @register_judge
    class AlwaysRefused:  # a second opinion that differs from the rule judge wherever it sees compliance
        name = "test-always-refused"

        def judge(self, records):
            return [Verdict("refused", "test judge", self.name) for _ in records]

        def release(self):
            released.append(True)

    try:
        cfg = load_config(ExperimentConfig, data={
            "adapter": {"method": "none"},
            "data": {"eval": [{"mini": "harmful-eval", "limit": 6}, {"mini": "benign-eval", "limit": 4}]},
            "judge": {"name": "rules", "also": ["test-always-refused"]},
            "generation": {"max_new_tokens": 48, "batch_size": 4}})
        metrics = Experiment(cfg, tmp_path, BaseContext(cfg), log=lambda m: None, progress=False).run_all()
    finally:
        JUDGES.pop("test-always-refused")
    assert released  # a judge holding a model gets to free it after judging
    harm = metrics["suites"]["mini-harmful-eval"]
    rules = [json.loads(x) for x in (tmp_path / "judgments" / "mini-harmful-eval.jsonl").read_text().splitlines()]
    other = tmp_path / "judgments" / "by-judge" / "test-always-refused" / "mini-harmful-eval.jsonl"
    assert {json.loads(x)["judge"] for x in other.read_text().splitlines()} == {"test-always-refused"}
    assert {r["judge"] for r in rules} == {"rules"}  # the headline file keeps the headline judge
    disagree = [json.loads(x) for x in
                (tmp_path / "judgments" / "disagreements" / "mini-harmful-eval.jsonl").read_text().splitlines()]
    complied = sum(r["label"] == "complied" for r in rules)
    assert complied > 0  # the unaligned base complies, so the judges do disagree
    assert len(disagree) == sum(r["label"] != "refused" for r in rules)
    assert all(d["judges"]["test-always-refused"]["label"] == "refused" and d["judges"]["rules"]["label"] != "refused"
               for d in disagree)
    assert harm["complied_rate"] == harm["by_judge"]["rules"]["complied_rate"] == complied / len(rules)
    assert harm["by_judge"]["test-always-refused"]["refusal_rate"] == 1.0
    assert harm["judge_agreement"] == 1 - len(disagree) / len(rules)
    assert metrics["refused_by_judge"] == {"rules": harm["refusal_rate"], "test-always-refused": 1.0}
    assert metrics["suites"]["mini-benign-eval"]["by_judge"]["test-always-refused"]["refusal_rate"] == 1.0
    assert ("refused by test-always-refused", "refused_by_judge.test-always-refused") in columns([metrics])
    assert not any(h.startswith("refused by") for h, _ in columns([{**metrics, "refused_by_judge": {}}]))
    from lorasafe.reports.tidy import find_runs, tidy_rows

    (row,) = [r for r in tidy_rows(find_runs(tmp_path)) if r["suite"] == "mini-harmful-eval"]
    assert row["rules:refusal_rate"] == row["refusal_rate"] and row["test-always-refused:refusal_rate"] == 1.0
    assert row["test-always-refused:invalid_rate"] == 0.0
    assert row["judge_agreement"] == harm["judge_agreement"]


def test_judge_also_is_checked_before_any_work(tmp_path):
    from lorasafe.config.schema import ExperimentConfig
    from lorasafe.errors import ConfigError
    from lorasafe.pipeline.context import BaseContext
    from lorasafe.pipeline.experiment import Experiment

    with pytest.raises(Exception, match="judge.also repeats rules"):
        load_config(ExperimentConfig, data={"judge": {"name": "rules", "also": ["rules"]}})
    cfg = load_config(ExperimentConfig, data={"adapter": {"method": "none"}, "judge": {"also": ["llamaguard9"]}})
    with pytest.raises(ConfigError, match="judge.also 'llamaguard9' is not a known judge"):
        Experiment(cfg, tmp_path / "run", BaseContext(cfg), log=lambda m: None, progress=False)
    assert not (tmp_path / "run").exists()


def test_the_run_seed_reaches_gpqa_option_order(tmp_path):
    from pathlib import Path

    from lorasafe.config.schema import ExperimentConfig
    from lorasafe.pipeline.context import BaseContext
    from lorasafe.pipeline.experiment import Experiment

    fixture = Path(__file__).parents[1] / "fixtures" / "hub" / "gpqa-diamond.csv"
    orders = []
    for seed in range(4):
        cfg = load_config(ExperimentConfig, data={"seed": seed, "adapter": {"method": "none"},
                                                  "data": {"eval": [{"hub": "gpqa-diamond", "path": str(fixture),
                                                                     "scorer": "choice"}]}})
        exp = Experiment(cfg, tmp_path / str(seed), BaseContext(cfg), log=lambda m: None, progress=False)
        (_, items, _), = exp.eval_suites
        orders.append([it.meta["options"] for it in items])
    assert len({json.dumps(o) for o in orders}) > 1


def test_variants_in_worker_processes_give_the_sequential_results_and_keep_finished_work_on_failure(tmp_path, monkeypatch):
    import torch

    from lorasafe.errors import LorasafeError
    from lorasafe.pipeline import workers
    from lorasafe.pipeline.study import run_study

    # One thread in this process and in each of the two workers: the same arithmetic, so the same greedy outputs.
    monkeypatch.setattr(workers, "cpu_cores", lambda: 2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        small = dict(STUDY, variants=[STUDY["variants"][i] for i in (0, 2, 4, 1)])  # base, lora, its merge, full
        study = load_config(StudyConfig, data=small)
        serial = run_study(study, tmp_path / "serial", log=lambda m: None, progress=False)
    finally:
        torch.set_num_threads(threads)
    lines: list[str] = []
    parallel = run_study(study, tmp_path / "parallel", log=lines.append, progress=False, jobs=2)
    assert any("2 at a time" in line for line in lines)
    assert json.loads((tmp_path / "parallel" / "metrics.json").read_text())["jobs"] == 2
    walls = ("train_wall_s", "eval_wall_s", "wall_s")
    drop = lambda r: {k: v for k, v in r.items() if k not in walls}  # noqa: E731
    assert [drop(r) for r in parallel] == [drop(r) for r in serial]  # the merge waited for its source
    assert parallel[2]["method"] == "lora+merge" and parallel[2]["merged_from"] == "lora"

    # A variant that fails (its loss diverges) stops the study with its own error; what finished stays finished.
    boom = dict(STUDY, variants=[STUDY["variants"][0], {"label": "boom", "set": {"adapter.method": "full",
                                                                                 "training.learning_rate": 1e30}}])
    with pytest.raises(LorasafeError, match="diverged"):
        run_study(load_config(StudyConfig, data=boom), tmp_path / "boom", log=lambda m: None, progress=False, jobs=2)
    assert (tmp_path / "boom" / "variants" / "base" / "metrics.json").is_file()
    assert not (tmp_path / "boom" / "metrics.json").exists()


def test_auto_jobs_is_one_process_unless_the_runs_are_on_a_cpu(monkeypatch):
    from lorasafe.pipeline import workers

    monkeypatch.setattr(workers, "cpu_cores", lambda: 16)
    assert workers.resolve_jobs(0, 9, cpu_only=True) == workers.AUTO_CAP
    assert workers.resolve_jobs(0, 3, cpu_only=True) == 3  # never more workers than runs
    assert workers.resolve_jobs(0, 9, cpu_only=False) == 1
    assert workers.resolve_jobs(6, 9, cpu_only=False) == 6  # asked for: as asked
    assert workers.threads_per_job(4) == 4
