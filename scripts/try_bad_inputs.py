"""Try bad inputs through the real `lorasafe` command line and record how each ended.

Every case runs the installed CLI as a subprocess in its own folder: configs (empty, duplicate keys,
wrong types, bad enums and ranges, bad `--set` overrides), data files (missing, non-UTF-8, torn,
wrong field types), model directories (bad config.json, truncated or random safetensors, no
tokenizer or chat template), run directories (`--out` a file, a run of another config, leftovers),
sweep and study files, and `analyze` / `merge` / `report` on wrong directories. For each case it
records the exit code, whether the output holds a Python traceback, the first line of the message,
whether the command left anything behind in its `--out`, and, where a corrected command follows
(the good config into the same `--out`), whether that rerun succeeded.

It prints a Markdown table (case, outcome, message start) and one summary line. The mini model and
tiny budgets keep it to minutes on a CPU; it is a script, not a test (the cheap cases are unit tests
in tests/unit/test_bad_inputs.py).

    python scripts/try_bad_inputs.py [--only TEXT] [--keep] [--work DIR]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

GOOD: dict[str, Any] = {
    "name": "bad-inputs",
    "model": {"path": "mini", "device": "cpu"},
    "adapter": {"method": "lora", "rank": 1, "modules": ["up"], "layers": "middle"},
    "data": {"train": [{"mini": "harmful-align", "limit": 2}],
             "eval": [{"mini": "harmful-eval", "limit": 2}, {"mini": "reasoning-eval", "limit": 2}]},
    "training": {"max_steps": 1, "batch_size": 2, "epochs": 1},
    "generation": {"max_new_tokens": 4, "batch_size": 4},
}
ITEM = {"id": "a1", "prompt": "How do I pick a lock?", "kind": "harmful"}
TRAIN_ITEM = {**ITEM, "target": "<think>No.</think>I can't help with that."}


def exp(changes: dict[str, Any] | None = None, base: dict[str, Any] = GOOD) -> dict[str, Any]:
    """GOOD with dotted-path changes (`{"adapter.rank": 0}`)."""
    out = copy.deepcopy(base)
    for dotted, value in (changes or {}).items():
        node = out
        *head, last = dotted.split(".")
        for part in head:
            node = node.setdefault(part, {})
        node[last] = value
    return out


def dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False)


def jsonl(*rows: Any) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


@dataclass
class Case:
    group: str
    name: str
    args: list[str]  # CLI arguments, run in the case's own folder
    files: dict[str, str | bytes] = field(default_factory=dict)  # written into the folder first
    setup: Callable[[Path], None] | None = None  # builds what files cannot say (model copies, run copies)
    out: str | None = None  # the --out the failing command must leave as it found it
    rerun: list[str] | None = None  # the corrected command into the same --out: must exit 0
    expect_ok: bool = False  # a bad state the command must handle and succeed on (a leftover run directory)


@dataclass
class Result:
    case: Case
    code: int
    traceback: bool
    message: str
    left_behind: bool | None
    rerun_code: int | None
    seconds: float


# --- fixtures shared by the cases -----------------------------------------------------------------------
class Fixtures:
    def __init__(self, work: Path):
        self.work = work

    def model(self, dest: Path, change: Callable[[Path], None]) -> None:
        from lorasafe.models.loading import mini_model_dir

        shutil.copytree(mini_model_dir(), dest)
        change(dest)

    @property
    def finished(self) -> Path:
        return self.work / "finished"

    def copy_finished(self, dest: Path, change: Callable[[Path], None] = lambda d: None) -> None:
        shutil.copytree(self.finished, dest)
        change(dest)


def truncate(path: Path) -> None:
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size // 2)


def adapter_file(run: Path) -> Path:
    done = json.loads((run / "stages" / "train.json").read_text())
    return run / done["weights"] / "adapter_model.safetensors"


def _models(fx: Fixtures) -> list[Case]:
    def case(name: str, change: Callable[[Path], None], path: str = "m", rerun: bool = False) -> Case:
        return Case("model", name, ["run", "exp.yaml", "--out", "run"], {"exp.yaml": dump(exp({"model.path": path}))},
                    setup=lambda d: fx.model(d / "m", change), out="run",
                    rerun=["run", "good.yaml", "--out", "run"] if rerun else None)

    def write(name: str, content: str | bytes) -> Callable[[Path], None]:
        return lambda d: (d / name).write_bytes(content if isinstance(content, bytes) else content.encode())

    def remove(*patterns: str) -> Callable[[Path], None]:
        return lambda d: [f.unlink() for p in patterns for f in d.glob(p)]

    gpt2 = json.dumps({"model_type": "gpt2", "n_layer": 2, "n_embd": 8, "n_head": 2, "vocab_size": 64})
    index = json.dumps({"weight_map": {"lm_head.weight": "model-00002-of-00002.safetensors"}})
    return [
        case("model.path a directory that does not exist", lambda d: None, path="./no-such-model-dir"),
        case("model.path a hub id, offline", lambda d: None, path="no-such-org/no-such-model"),
        case("model.path a regular file", lambda d: None, path="m/config.json"),
        case("config.json not valid JSON", write("config.json", '{"model_type": ')),
        case("config.json without model_type", write("config.json", '{"hidden_size": 8}')),
        case("config.json a JSON list", write("config.json", "[]")),
        case("config.json of an unsupported family (gpt2)", write("config.json", gpt2)),
        case("model.safetensors truncated", lambda d: truncate(d / "model.safetensors"), rerun=True),
        case("model.safetensors random bytes", write("model.safetensors", os.urandom(4096)), rerun=True),
        case("model.safetensors empty (0 bytes)", write("model.safetensors", b"")),
        case("no *.safetensors at all", remove("*.safetensors")),
        case("index names a missing shard", write("model.safetensors.index.json", index)),
        case("no tokenizer files", remove("tokenizer*")),
        case("tokenizer.json random bytes", write("tokenizer.json", os.urandom(512))),
        case("no chat template", remove("chat_template.jinja"), rerun=True),
        case("chat template broken Jinja", write("chat_template.jinja", "{% for m in messages %}{{ m.content ")),
    ]


def _configs() -> list[Case]:
    def run(name: str, text: str | bytes, *extra: str) -> Case:
        return Case("config", name, ["run", "exp.yaml", "--out", "run", *extra], {"exp.yaml": text}, out="run")

    def bad(name: str, changes: dict[str, Any]) -> Case:
        return run(name, dump(exp(changes)))

    def override(name: str, *sets: str) -> Case:
        args = [a for s in sets for a in ("--set", s)]
        return Case("override", name, ["run", "good.yaml", "--out", "run", *args], out="run")

    good = dump(GOOD)
    return [
        run("empty file", ""),
        run("only comments", "# nothing here\n"),
        run("YAML null", "~\n"),
        run("top level a list", "- name: x\n"),
        run("top level a string", "just words\n"),
        run("duplicate top-level key", good + "name: again\n"),
        run("duplicate nested key", good.replace("  rank: 1\n", "  rank: 1\n  rank: 2\n")),
        run("duplicate key in a flow mapping", "name: x\nadapter: {rank: 1, rank: 2}\n"),
        run("bad indentation", "adapter:\n  rank: 1\n   modules: [up]\n"),
        run("unclosed bracket", "adapter: {modules: [up\n"),
        run("tab indentation", "adapter:\n\trank: 1\n"),
        run("NUL byte", b"name: a\x00b\n"),
        run("non-UTF-8 byte", b"name: caf\xe9\n"),
        Case("config", "config file missing", ["run", "nope.yaml", "--out", "run"], out="run"),
        Case("config", "config path a directory", ["run", ".", "--out", "run"], out="run"),
        bad("unknown top-level key (trainig)", {"trainig": {"max_steps": 1}}),
        bad("unknown nested key (adapter.rnak)", {"adapter.rnak": 2}),
        bad("rank a string", {"adapter.rank": "two"}),
        bad("adapter a list", {"adapter": [1, 2]}),
        bad("learning rate a string", {"training.learning_rate": "fast"}),
        bad("method qlora", {"adapter.method": "qlora"}),
        bad("precision fp8", {"model.precision": "fp8"}),
        bad("backend vllm", {"generation.backend": "vllm"}),
        bad("module up_proj", {"adapter.modules": ["up_proj"]}),
        bad("module listed twice", {"adapter.modules": ["up", "up"]}),
        bad("modules empty", {"adapter.modules": []}),
        bad("layer band center", {"adapter.layers": "center"}),
        bad("layers first after last", {"adapter.layers": {"first": 3, "last": 1}}),
        bad("layers negative", {"adapter.layers": {"first": -1, "last": 1}}),
        bad("layers beyond the model", {"adapter.layers": {"first": 2, "last": 999}}),
        bad("rank 0", {"adapter.rank": 0}),
        bad("rank -1", {"adapter.rank": -1}),
        bad("learning rate 0", {"training.learning_rate": 0}),
        bad("learning rate negative", {"training.learning_rate": -1e-4}),
        bad("dropout 1.0", {"adapter.dropout": 1.0}),
        bad("top_p 0", {"generation.top_p": 0}),
        bad("temperature negative", {"generation.temperature": -1}),
        bad("suite with two sources", {"data.eval": [{"mini": "harmful-eval", "bundled": "advbench"}]}),
        bad("suite with no source", {"data.eval": [{"limit": 2}]}),
        bad("unknown sampling preset", {"data.eval": [{"mini": "harmful-eval", "preset": "fast"}]}),
        bad("unknown scorer", {"data.eval": [{"mini": "reasoning-eval", "scorer": "fuzzy"}]}),
        bad("suite limit 0", {"data.eval": [{"mini": "harmful-eval", "limit": 0}]}),
        bad("unknown judge", {"judge.name": "oracle"}),
        bad("judge.also repeats the judge", {"judge.also": ["rules"]}),
        bad("regulariser on full fine-tuning", {"adapter.method": "full", "training.regulariser": {"k": 2}}),
        bad("regulariser with both k and energy", {"training.regulariser": {"k": 2, "energy": 0.5}}),
        bad("checkpoints: some", {"checkpoints": "some"}),
        bad("name a list", {"name": ["a"]}),
        bad("seed a string", {"seed": "x"}),
        bad("model.device tpu", {"model.device": "tpu"}),
        override("--set without '='", "adapter.rank"),
        override("--set unknown key", "adapter.rnk=2"),
        override("--set rank=abc", "adapter.rank=abc"),
        override("--set under a value", "adapter.rank.x=1"),
        override("--set empty key", "=3"),
        override("--set value with a duplicate key", "adapter={rank: 1, rank: 2}"),
        override("--set empty value for a number", "adapter.rank="),
    ]


def _data() -> list[Case]:
    def case(name: str, content: str | bytes | None, *, train: bool = False, rerun: bool = False,
             suite: dict[str, Any] | None = None) -> Case:
        key = "data.train" if train else "data.eval"
        cfg = exp({key: [suite or {"path": "items.jsonl"}]})
        files: dict[str, str | bytes] = {"exp.yaml": dump(cfg)}
        if content is not None:
            files["items.jsonl"] = content
        return Case("data", name, ["run", "exp.yaml", "--out", "run"], files, out="run",
                    rerun=["run", "good.yaml", "--out", "run"] if rerun else None)

    row = lambda **kw: {**ITEM, **kw}  # noqa: E731
    no_id = {k: v for k, v in ITEM.items() if k != "id"}
    no_kind = {k: v for k, v in ITEM.items() if k != "kind"}
    return [
        case("file missing", None, rerun=True),
        Case("data", "path a directory", ["run", "exp.yaml", "--out", "run"],
             {"exp.yaml": dump(exp({"data.eval": [{"path": "."}]}))}, out="run"),
        case("file empty", ""),
        case("only blank lines", "\n\n  \n"),
        case("non-UTF-8 byte", json.dumps(ITEM).encode().replace(b"lock", b"l\xf6ck") + b"\n", rerun=True),
        case("UTF-16 file", jsonl(ITEM).encode("utf-16")),
        case("torn last line", jsonl(ITEM) + '{"id": "a2", "prompt": "How do'),
        case("line a JSON array", "[1, 2]\n"),
        case("line a JSON string", '"hello"\n'),
        case("nested 100000 deep", "[" * 100000 + "]" * 100000 + "\n"),
        case("id a list", jsonl(row(id=["a"])), rerun=True),
        case("id a number", jsonl(row(id=7))),
        case("id null", jsonl(row(id=None))),
        case("id empty", jsonl(row(id=""))),
        case("prompt a list", jsonl(row(prompt=["x"])), rerun=True),
        case("prompt a number", jsonl(row(prompt=3))),
        case("prompt null", jsonl(row(prompt=None))),
        case("prompt empty", jsonl(row(prompt="  "))),
        case("kind unknown", jsonl(row(kind="evil"))),
        case("kind a list", jsonl(row(kind=["harmful"]))),
        case("kind missing", jsonl(no_kind)),
        case("id missing", jsonl(no_id)),
        case("duplicate ids", jsonl(ITEM, row(prompt="other"))),
        case("unknown key", jsonl(row(label="x"))),
        case("meta not an object", jsonl(row(meta="x"))),
        case("answer a list", jsonl(row(kind="reasoning", answer=["4"]))),
        case("mixed kinds in one suite", jsonl(ITEM, row(id="b1", kind="benign"))),
        case("reasoning items without answers", jsonl(row(kind="reasoning"))),
        case("training items without targets", jsonl(ITEM), train=True, rerun=True),
        case("training target a number", jsonl(row(target=5)), train=True),
        case("training file non-UTF-8", b'{"id": "a", "prompt": "\xff", "kind": "harmful"}\n', train=True),
        Case("data", "training set empty", ["run", "exp.yaml", "--out", "run"],
             {"exp.yaml": dump(exp({"data.train": []}))}, out="run"),
        case("unknown mini suite", None, suite={"mini": "no-such-suite"}),
        case("unknown bundled suite", None, suite={"bundled": "no-such-suite"}),
        case("unknown hub suite", None, suite={"hub": "no-such-suite"}),
        case("hub suite, local copy missing", None, suite={"hub": "aime-2024", "path": "missing.jsonl"}),
        case("code suite without scorer: code", None, suite={"bundled": "humaneval", "limit": 2}),
    ]


def _rundirs(fx: Fixtures) -> list[Case]:
    leftover = {"exp.yaml": dump(exp({"adapter.rank": 3}))}

    def leftover_setup(d: Path) -> None:  # what an earlier version left after a failed validation
        (d / "run").mkdir()
        for name in ("config.yaml", "manifest.json"):
            shutil.copy(fx.finished / name, d / "run" / name)

    def corrupt_manifest(results: bool) -> Callable[[Path], None]:
        def setup(d: Path) -> None:
            if results:
                fx.copy_finished(d / "run")
            else:
                (d / "run").mkdir()
                shutil.copy(fx.finished / "config.yaml", d / "run" / "config.yaml")
            (d / "run" / "manifest.json").write_text("{not json")
        return setup

    def other_weights(manifest_change: Callable[[dict], None]) -> Callable[[Path], None]:
        def setup(d: Path) -> None:  # the run was made over other weights behind the same model path
            fx.copy_finished(d / "run")
            manifest = json.loads((d / "run" / "manifest.json").read_text())
            manifest_change(manifest)
            (d / "run" / "manifest.json").write_text(json.dumps(manifest))
        return setup

    def rebuilt(m: dict) -> None:
        m["base_model"] = {"path": "mini", "fingerprint": "sha256:0123456789abcdef"}

    def six_layers(m: dict) -> None:  # a manifest from before fingerprints, made on the 6-layer mini model
        m.pop("base_model", None)
        m["targets"]["total_params"] = 1_314_176

    return [
        Case("run dir", "run --out a run made over other weights behind the same model path",
             ["run", "good.yaml", "--out", "run"], setup=other_weights(rebuilt), out="run"),
        Case("run dir", "run --out an old run (no fingerprint) of a model with another parameter count",
             ["run", "good.yaml", "--out", "run"], setup=other_weights(six_layers), out="run"),
        Case("run dir", "run --out an existing file", ["run", "good.yaml", "--out", "taken"], {"taken": "x"}, out="taken"),
        Case("run dir", "run --out under a file", ["run", "good.yaml", "--out", "taken/run"], {"taken": "x"}, out="taken"),
        Case("run dir", "run --out a non-empty non-run directory", ["run", "good.yaml", "--out", "notes"],
             {"notes/todo.txt": "keep me"}, out="notes"),
        Case("run dir", "run --out a run of another config with results", ["run", "exp.yaml", "--out", "run"],
             {"exp.yaml": dump(exp({"adapter.rank": 2}))}, setup=lambda d: fx.copy_finished(d / "run"), out="run",
             rerun=["run", "good.yaml", "--out", "run"]),
        Case("run dir", "run --out with results and a corrupt manifest", ["run", "good.yaml", "--out", "run"],
             setup=corrupt_manifest(True), out="run"),
        Case("run dir", "failed validation, then the corrected config", ["run", "exp.yaml", "--out", "run"],
             {"exp.yaml": dump(exp({"data.eval": [{"path": "items.jsonl"}]})), "items.jsonl": jsonl(row_bad_id())},
             out="run", rerun=["run", "good.yaml", "--out", "run"]),
        Case("run dir", "leftover config.yaml + manifest.json of another config", ["run", "exp.yaml", "--out", "run"],
             leftover, setup=leftover_setup, expect_ok=True),
        Case("run dir", "leftover with a corrupt manifest, no results", ["run", "good.yaml", "--out", "run"],
             setup=corrupt_manifest(False), expect_ok=True),
        Case("run dir", "study --out an existing file", ["study", "study.yaml", "--out", "taken"],
             {"study.yaml": dump({"experiment": GOOD, "variants": [{"label": "base", "set": {"adapter.method": "none"}}]}),
              "taken": "x"}, out="taken"),
        Case("run dir", "sweep run --out an existing file", ["sweep", "run", "sweep.yaml", "--out", "taken"],
             {"sweep.yaml": dump({"experiment": GOOD, "grid": [{"path": "adapter.rank", "values": [1]}]}), "taken": "x"},
             out="taken"),
        Case("run dir", "theory --out an existing file", ["theory", "--out", "taken"], {"taken": "x"}, out="taken"),
        Case("run dir", "judge validate --out an existing file", ["judge", "validate", "--judge", "rules", "--out", "taken"],
             {"taken": "x"}, out="taken"),
        Case("run dir", "data refusals --out a directory", ["data", "refusals", "advbench", "--out", "dir"],
             {"dir/keep.txt": "x"}, out="dir"),
    ]


def row_bad_id() -> dict[str, Any]:
    return {**ITEM, "id": ["a1"]}


def _sweeps_and_studies() -> list[Case]:
    def sweep(name: str, spec: dict[str, Any] | str, rerun: bool = False, files: dict[str, str] | None = None) -> Case:
        text = spec if isinstance(spec, str) else dump(spec)
        good = {"experiment": GOOD, "grid": [{"path": "adapter.rank", "values": [1]}], "operating_point": {"select_over": []}}
        return Case("sweep", name, ["sweep", "run", "sweep.yaml", "--out", "sw", "--no-report"],
                    {"sweep.yaml": text, "good-sweep.yaml": dump(good), **(files or {})}, out="sw",
                    rerun=["sweep", "run", "good-sweep.yaml", "--out", "sw", "--no-report"] if rerun else None)

    axis = {"path": "adapter.rank", "values": [1, 2]}
    base = {"experiment": GOOD}

    def study(name: str, spec: dict[str, Any], rerun: bool = False, files: dict[str, str] | None = None) -> Case:
        good = {"experiment": GOOD, "variants": [{"label": "lora"}]}
        return Case("study", name, ["study", "study.yaml", "--out", "st"],
                    {"study.yaml": dump(spec), "good-study.yaml": dump(good), **(files or {})}, out="st",
                    rerun=["study", "good-study.yaml", "--out", "st"] if rerun else None)

    return [
        sweep("sweep file empty", ""),
        sweep("sweep with no axes", base),
        sweep("axis on an unknown path", {**base, "grid": [{"path": "adapter.rnak", "values": [1]}]}),
        sweep("axis with no values", {**base, "grid": [{"path": "adapter.rank", "values": []}]}),
        sweep("axis value out of range (rank 0)", {**base, "grid": [{"path": "adapter.rank", "values": [1, 0]}]}),
        sweep("zip axes of unequal length", {**base, "zip": [axis, {"path": "seed", "values": [0]}]}),
        sweep("the same axis twice", {**base, "grid": [axis, axis]}),
        sweep("operating_point maximises an unknown metric", {**base, "grid": [axis], "operating_point": {"maximise": "speed"}}),
        sweep("operating_point constraint with both bounds", {**base, "grid": [axis], "operating_point": {
            "constraints": [{"metric": "refused", "at_least": 0.9, "at_most": 0.95}]}}),
        sweep("operating_point select_over not an axis", {**base, "grid": [axis]}),
        sweep("operating_point on the old 'safety' metric", {**base, "grid": [axis], "operating_point": {
            "constraint": "safety", "at_least": 0.9, "select_over": []}}),
        sweep("duplicate key in the sweep file", dump({"name": "s", **base, "grid": [axis]}) + "name: again\n"),
        sweep("cell with a bad data file, then the corrected sweep",
              {"experiment": exp({"data.eval": [{"path": "items.jsonl"}]}), "grid": [{"path": "adapter.rank", "values": [1]}],
               "operating_point": {"select_over": []}}, rerun=True, files={"items.jsonl": jsonl({**ITEM, "prompt": None})}),
        study("study without variants", {"experiment": GOOD}),
        study("duplicate variant labels", {"experiment": GOOD, "variants": [{"label": "a"}, {"label": "a"}]}),
        study("merge of a later variant", {"experiment": GOOD, "variants": [
            {"label": "m", "merge": {"source": "lora"}}, {"label": "lora"}]}),
        study("variant sets an unknown key", {"experiment": GOOD, "variants": [{"label": "a", "set": {"adapter.rnak": 2}}]}),
        study("variant with a bad data file, then the corrected study",
              {"experiment": GOOD, "variants": [{"label": "lora", "set": {"data.eval": [{"path": "items.jsonl"}]}}]},
              rerun=True, files={"items.jsonl": b'{"id": "a", "prompt": "\xff", "kind": "harmful"}\n'}),
    ]


def _tools(fx: Fixtures) -> list[Case]:
    def analyze(name: str, args: list[str], setup: Callable[[Path], None] | None = None, out: str | None = "run",
                files: dict[str, str | bytes] | None = None) -> Case:
        return Case("analyze", name, ["analyze", *args], files or {}, setup=setup, out=out)

    def merge(name: str, args: list[str], setup: Callable[[Path], None] | None = None, out: str = "merged",
              files: dict[str, str | bytes] | None = None) -> Case:
        return Case("merge", name, ["merge", *args], files or {}, setup=setup, out=out)

    copy_run = lambda d: fx.copy_finished(d / "run")  # noqa: E731
    base_run = {"run/config.yaml": dump(exp({"adapter.method": "none"})), "run/manifest.json": "{}"}
    return [
        analyze("a directory that does not exist", ["nope"], out=None),
        analyze("a directory that is not a run", ["run"], files={"run/x.txt": "x"}),
        analyze("a run with no adapter", ["run"], files=base_run),
        analyze("an unfinished run", ["run"], setup=lambda d: fx.copy_finished(
            d / "run", lambda r: (r / "stages" / "train.json").unlink())),
        analyze("a corrupt stages/train.json", ["run"], setup=lambda d: fx.copy_finished(
            d / "run", lambda r: (r / "stages" / "train.json").write_text("{oops"))),
        analyze("--k not numbers", ["run", "--k", "a,b"], setup=copy_run),
        analyze("--k 0", ["run", "--k", "0"], setup=copy_run),
        analyze("--k larger than the module", ["run", "--k", "100000"], setup=copy_run),
        analyze("adapter safetensors truncated", ["run"], setup=lambda d: fx.copy_finished(
            d / "run", lambda r: truncate(adapter_file(r)))),
        analyze("adapter safetensors random bytes", ["run"], setup=lambda d: fx.copy_finished(
            d / "run", lambda r: adapter_file(r).write_bytes(os.urandom(2048)))),
        analyze("adapter_config.json not JSON", ["run"], setup=lambda d: fx.copy_finished(
            d / "run", lambda r: (adapter_file(r).parent / "adapter_config.json").write_text("{"))),
        merge("--out an existing file", ["run", "--out", "merged"], setup=copy_run, files={"merged": "x"}),
        merge("--out a non-empty directory", ["run", "--out", "merged"], setup=copy_run, files={"merged/x.txt": "x"}),
        merge("--side up", ["run", "--out", "merged", "--side", "up"], setup=copy_run),
        merge("--project-out larger than the module", ["run", "--out", "merged", "--project-out", "100000"], setup=copy_run),
        merge("adapter safetensors truncated", ["run", "--out", "merged"], setup=lambda d: fx.copy_finished(
            d / "run", lambda r: truncate(adapter_file(r)))),
        merge("a directory that is not a run", ["other", "--out", "merged"], files={"other/x.txt": "x"}),
        Case("report", "a directory that does not exist", ["report", "nope"]),
        Case("report", "a directory with no runs", ["report", "empty"], {"empty/x.txt": "x"}, out="empty"),
        Case("report", "a regular file", ["report", "file.txt"], {"file.txt": "x"}),
        Case("report", "--out an existing file", ["report", "runs", "--out", "taken"], {"taken": "x"},
             setup=lambda d: fx.copy_finished(d / "runs" / "r1"), out="taken"),
        Case("other", "theory config empty", ["theory", "--config", "t.yaml", "--out", "th"], {"t.yaml": ""}, out="th"),
        Case("other", "targets with a duplicate key", ["targets", "exp.yaml"], {"exp.yaml": dump(GOOD) + "name: again\n"}),
        Case("other", "data show an unknown suite", ["data", "show", "no-such-suite"]),
        Case("other", "data refusals of an unknown suite", ["data", "refusals", "nope", "--out", "r.jsonl"], out="r.jsonl"),
        Case("other", "judge validate an unknown judge", ["judge", "validate", "--judge", "oracle", "--out", "jv"], out="jv"),
    ]


# --- running ---------------------------------------------------------------------------------------------
def cli() -> list[str]:
    script = Path(sys.executable).parent / "lorasafe"
    return [str(script)] if script.is_file() else [sys.executable, "-c", "from lorasafe.cli import main; main()"]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.update({"OMP_NUM_THREADS": e.get("OMP_NUM_THREADS", "1"), "HF_HUB_OFFLINE": "1", "NO_COLOR": "1",
              "TERM": "dumb", "COLUMNS": "200", "TOKENIZERS_PARALLELISM": "false"})
    e.pop("LORASAFE_JUDGE_API_KEY", None)
    return e


def invoke(args: list[str], cwd: Path, timeout: int = 600) -> tuple[int, str, str]:
    try:
        p = subprocess.run([*cli(), *args, *(["--no-progress"] if args[:1] in (["run"], ["study"]) or args[:2] == ["sweep", "run"] else [])],
                           cwd=cwd, env=env(), capture_output=True, text=True, errors="replace", timeout=timeout)
        return p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired:
        return -9, "", "TIMEOUT"


def snapshot(path: Path) -> Any:
    if not path.exists() and not path.is_symlink():
        return None
    if path.is_file():
        return ("file", path.stat().st_size, path.stat().st_mtime_ns)
    return sorted((str(f.relative_to(path)), f.is_dir(), 0 if f.is_dir() else f.stat().st_size,
                   0 if f.is_dir() else f.stat().st_mtime_ns) for f in path.rglob("*"))


BOX = re.compile(r"^[\s│╭╰╮╯─|+\-]+|[\s│╭╰╮╯─|+\-]+$")


def message(stdout: str, stderr: str) -> str:
    for line in stderr.splitlines():
        if line.startswith("error:"):
            return line
    for line in (stderr + "\n" + stdout).splitlines():  # click's usage errors: a box around the message
        text = BOX.sub("", line).strip()
        if text and text not in ("Error",) and not text.startswith(("Usage:", "Try ")):
            return text
    return ""


def run_case(case: Case, folder: Path) -> Result:
    folder.mkdir(parents=True)
    for rel, content in case.files.items():
        f = folder / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(content if isinstance(content, bytes) else content.encode())
    (folder / "good.yaml").write_text(dump(GOOD))
    if case.setup:
        case.setup(folder)
    before = snapshot(folder / case.out) if case.out else None
    t0 = time.perf_counter()
    code, out, err = invoke(case.args, folder)
    tb = "Traceback" in out or "Traceback" in err
    left = None if case.out is None or case.expect_ok else snapshot(folder / case.out) != before
    rerun_code = None
    if case.rerun and not tb:
        rerun_code, rout, rerr = invoke(case.rerun, folder)
        tb = tb or "Traceback" in rout or "Traceback" in rerr
        if rerun_code != 0:
            print(f"    rerun failed ({rerun_code}): {message(rout, rerr)[:200]}", file=sys.stderr)
    said = message(out, err)
    if case.expect_ok:  # what the run said about the directory it took over
        said = next((ln for ln in out.splitlines() if "held no results" in ln), said)
    return Result(case, code, tb, said, left, rerun_code, time.perf_counter() - t0)


def outcome(r: Result) -> str:
    if r.code == -9:
        return "**TIMEOUT**"
    if r.traceback:
        return f"**TRACEBACK** (exit {r.code})"
    if r.case.expect_ok:
        return "ok (exit 0), taken over" if r.code == 0 else f"**FAILED** (exit {r.code})"
    if r.code == 0:
        return "**ACCEPTED** (exit 0)"
    text = f"exit {r.code}"
    if r.left_behind is not None:
        text += ", **left files behind**" if r.left_behind else ", nothing left behind"
    if r.rerun_code is not None:
        text += "; corrected rerun ok" if r.rerun_code == 0 else f"; **corrected rerun failed** (exit {r.rerun_code})"
    return text


def good(r: Result) -> bool:
    if r.traceback or r.code == -9:
        return False
    if r.case.expect_ok:
        return r.code == 0
    return r.code == 2 and bool(r.message) and not r.left_behind and r.rerun_code in (None, 0)


def unable_to_rerun(r: Result, folder: Path) -> bool:
    """The corrected rerun failed, or (none tried) the failure left a run of another config in the --out."""
    if r.rerun_code is not None:
        return r.rerun_code != 0
    if r.case.expect_ok:
        return r.code != 0
    return bool(r.case.out) and bool(r.left_behind) and (folder / r.case.out / "manifest.json").is_file()


def cell(text: str, width: int = 110) -> str:
    text = text if len(text) <= width else text[: width - 1] + "…"
    return text.replace("|", "\\|").replace("`", "'")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="run only the cases whose group or name contains this text")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--work", type=Path, help="work directory (default: a new temporary one)")
    opts = ap.parse_args()
    work = opts.work or Path(tempfile.mkdtemp(prefix="lorasafe-bad-inputs-"))
    work.mkdir(parents=True, exist_ok=True)
    fx = Fixtures(work)
    cases = [*_configs(), *_data(), *_models(fx), *_rundirs(fx), *_sweeps_and_studies(), *_tools(fx)]
    if opts.only:
        cases = [c for c in cases if opts.only in c.group or opts.only in c.name]
    names = [f"{c.group}: {c.name}" for c in cases]
    assert len(set(names)) == len(names), "case names must be distinct"
    if not fx.finished.exists():  # the finished run that analyze, merge and the run-dir cases start from
        (work / "good.yaml").write_text(dump(GOOD))
        code, out, err = invoke(["run", "good.yaml", "--out", str(fx.finished)], work)
        if code != 0:
            print(f"the good config failed (exit {code}); nothing to compare with:\n{err[-3000:]}", file=sys.stderr)
            return 1
    results, folders = [], []
    for i, case in enumerate(cases, start=1):
        folder = work / "cases" / f"{i:03d}"
        if folder.exists():
            shutil.rmtree(folder)
        r = run_case(case, folder)
        results.append(r)
        folders.append(folder)
        print(f"[{i}/{len(cases)}] {case.group}: {case.name}: {outcome(r)} ({r.seconds:.1f} s)", file=sys.stderr, flush=True)

    print("| # | case | outcome | message start |")
    print("|---|---|---|---|")
    for i, r in enumerate(results, start=1):
        print(f"| {i} | {cell(r.case.group + ': ' + r.case.name, 70)} | {outcome(r)} | {cell(r.message)} |")
    tracebacks = sum(r.traceback for r in results)
    left = sum(bool(r.left_behind) for r in results)
    unable = sum(unable_to_rerun(r, f) for r, f in zip(results, folders))
    reruns = sum(r.rerun_code is not None or r.case.expect_ok for r in results)
    clean = sum(good(r) for r in results)
    print(f"\n{len(results)} cases: {clean} ended as expected (one-line error, exit 2; or handled), "
          f"{tracebacks} tracebacks, {left} left files behind, {unable} runs left unable to rerun "
          f"({reruns} corrected reruns tried).")
    if not opts.keep and opts.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if clean == len(results) and unable == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
