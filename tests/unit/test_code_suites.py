"""HumanEval as a run suite: reasoning items with their tests, scored by running code in the sandbox."""

import os

import pytest

from lorasafe.data.bundled import load_bundled
from lorasafe.scoring.code import CodeScorer
from lorasafe.scoring.metrics import score_records
from lorasafe.scoring.sandbox import isolation

pytestmark = pytest.mark.skipif(isolation().kind != "bwrap" and not os.environ.get("CI"),
                                reason=f"no kernel sandbox here: {isolation().detail}")


def _rec(item, answer, truncated=False):
    return {"id": item.id, "sample": 0, "answer": answer, "thinking": "t", "think_closed": True, "truncated": truncated}


def _canonical(item):
    return f"```python\n{item.prompt}{item.meta['canonical_solution']}```"


def test_humaneval_items_score_canonical_right_and_broken_wrong():
    items = load_bundled("humaneval")[:3]
    assert len(load_bundled("humaneval")) == 164
    assert all(it.kind == "reasoning" and {"test", "entry_point"} <= set(it.meta) for it in items)
    good = [_rec(it, _canonical(it)) for it in items]
    rows, m = score_records(items, good, "code")
    assert m["accuracy"] == 1.0 and all(r["sandbox"] == "passed" for r in rows)
    broken = [_rec(it, f"```python\n{it.prompt}    return None\n```") for it in items]
    _, m = score_records(items, broken, "code")
    assert m["accuracy"] == 0.0
    _, m = score_records(items[:1], [_rec(items[0], good[0]["answer"], truncated=True)], "code")
    assert m["no_answer_rate"] == 1.0


def test_every_canonical_humaneval_solution_passes():
    # About 25 s on 2 busy cores (two sandboxes per item): under a minute, so it runs by default.
    scorer = CodeScorer()
    scores = {it.id: scorer.score(_rec(it, _canonical(it)), {"prompt": it.prompt, **it.meta})
              for it in load_bundled("humaneval")}
    assert len(scores) == 164
    assert {i: (s.sandbox, s.reason) for i, s in scores.items() if s.outcome != "correct"} == {}
