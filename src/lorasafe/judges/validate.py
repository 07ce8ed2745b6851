"""Judges scored against human labels: the bundled JailbreakBench judge-comparison set.

Owns `validate` (agreement of each judge with the human majority, beside the agreement of the
Llama Guard and GPT-4 verdicts recorded in the same file, computed from it) and `disagreements`
(rows where the given judges disagree with each other, for a report the caller writes). A verdict
`complied` counts as jailbroken (1); `refused` and `invalid` count as 0, as the safety score does.
The JBB rows have no thinking block, so each response is judged as a closed answer. Must not
import torch (the judges import what they need).
"""

from __future__ import annotations

from typing import Any

from lorasafe.judges.base import Judge

SUITE = "jbb-judge-comparison"
RECORDED = {"llama_guard": "recorded Llama Guard", "gpt_4": "recorded GPT-4", "gpt_4_turbo": "recorded GPT-4 Turbo"}


def _rows() -> list[dict[str, Any]]:
    from lorasafe.data.bundled import load_bundled_rows

    return load_bundled_rows(SUITE)


def _records(rows: list[dict[str, Any]]) -> list[dict]:
    return [{"id": r["id"], "sample": 0, "prompt": r["meta"]["goal"], "answer": r["meta"]["target_response"],
             "thinking": "", "think_closed": True, "truncated": False} for r in rows]


def _score(name: str, pred: list[int], human: list[int], invalid: int = 0) -> dict[str, Any]:
    tp = sum(p == 1 and h == 1 for p, h in zip(pred, human))
    tn = sum(p == 0 and h == 0 for p, h in zip(pred, human))
    fp = sum(p == 1 and h == 0 for p, h in zip(pred, human))
    fn = sum(p == 0 and h == 1 for p, h in zip(pred, human))
    n = len(human)
    return {"judge": name, "n": n, "agreement": (tp + tn) / n if n else float("nan"),
            "tp": tp, "tn": tn, "fp": fp, "fn": fn, "invalid": invalid}


def judge_labels(judges: list[Judge], rows: list[dict[str, Any]] | None = None) -> dict[str, list[str]]:
    """Each judge's labels on the JBB responses, in row order."""
    rows = _rows() if rows is None else rows
    records = _records(rows)
    return {j.name: [v.label for v in j.judge(records)] for j in judges}


def validate(judges: list[Judge], labels: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
    """One row per judge, then per recorded judge: agreement with the human majority and the confusion
    counts (tp = both say jailbroken, fp = judge says jailbroken, humans do not). `labels` reuses
    `judge_labels` output so a caller that also wants `disagreements` judges only once."""
    rows = _rows()
    human = [int(r["meta"]["human_majority"]) for r in rows]
    labels = judge_labels(judges, rows) if labels is None else labels
    table = [_score(name, [int(x == "complied") for x in ls], human, sum(x == "invalid" for x in ls))
             for name, ls in labels.items()]
    table += [_score(title, [int(r["meta"][key]) for r in rows], human) for key, title in RECORDED.items()]
    return table


def disagreements(labels: dict[str, list[str]], snippet: int = 200) -> list[dict[str, Any]]:
    """Rows where the judges in `labels` (from `judge_labels`) do not all agree, with a response snippet
    and the human majority, for the caller to write as a report."""
    rows = _rows()
    out = []
    for i, r in enumerate(rows):
        verdicts = {name: ls[i] for name, ls in labels.items()}
        if len({int(v == "complied") for v in verdicts.values()}) > 1:
            text = " ".join(r["meta"]["target_response"].split())
            out.append({"id": r["id"], "goal": r["meta"]["goal"], "human_majority": int(r["meta"]["human_majority"]),
                        **verdicts, "response": text[:snippet] + ("..." if len(text) > snippet else "")})
    return out
