"""The SmolLM2 real-model study (configs/real/smollm2-135m.yaml) and the pieces it added: declared random
subsets of suites (`sample`), the basic-qa utility suite and its first-sentence `contains` scorer.
Nothing here loads the model."""

from __future__ import annotations

from pathlib import Path

import pytest

from lorasafe.config.schema import StudyConfig, SuiteRef, ThinkConfig
from lorasafe.data.suites import load_suite
from lorasafe.scoring.contains import ContainsScorer, first_sentence

ROOT = Path(__file__).resolve().parents[2]
STUDY = ROOT / "configs" / "real" / "smollm2-135m.yaml"


def _rec(answer, truncated=False, closed=True):
    return {"answer": answer, "truncated": truncated, "think_closed": closed}


@pytest.mark.parametrize("answer,gold,outcome", [
    ("The capital of France is Paris.", "Paris", "correct"),
    ("The largest planet is Saturn. Jupiter is second.", "Jupiter", "wrong"),  # only the first sentence counts
    ("The plural of woman is women.", "men", "wrong"),  # whole words
    ("Mexico City, of course", "Mexico City", "correct"),
    ("About 149.7 million km away.", "149.7", "correct"),  # a decimal point is not a sentence end
    ("It is 1497 km.", "149.7", "wrong"),
    ("birds fly south in the winter", "Birds fly south in the winter.", "correct"),
    ("", "Paris", "no_answer"),
    (None, "Paris", "no_answer"),
])
def test_contains_scorer(answer, gold, outcome):
    assert ContainsScorer().score(_rec(answer), gold).outcome == outcome


def test_contains_scorer_truncation_and_open_thinking():
    s = ContainsScorer()
    assert s.score(_rec("It is Paris and then it goes on", truncated=True), "Paris").outcome == "no_answer"
    assert s.score(_rec("It is Paris. And then it goes on", truncated=True), "Paris").outcome == "correct"
    assert s.score(_rec("Paris.", closed=False), "Paris").outcome == "no_answer"
    assert first_sentence("3 + 4 = 7\n\nThis is a classic") == ("3 + 4 = 7\n", True)


def test_sample_is_a_fixed_subset_in_suite_order():
    think = ThinkConfig()
    full = load_suite(SuiteRef(bundled="strongreject"), think)
    a = load_suite(SuiteRef(bundled="strongreject", sample=50), think)
    assert [it.id for it in a] == [it.id for it in load_suite(SuiteRef(bundled="strongreject", sample=50), think)]
    order = {it.id: i for i, it in enumerate(full)}
    assert len(a) == 50 and [order[it.id] for it in a] == sorted(order[it.id] for it in a)
    assert len({it.meta["category"] for it in a}) == 6  # spans the categories; `limit: 50` would not
    assert len({it.meta["category"] for it in full[:50]}) == 1
    with pytest.raises(ValueError, match="limit"):
        SuiteRef(bundled="strongreject", sample=5, limit=5)


def test_study_config_declares_its_variants_subsets_and_operating_point():
    from lorasafe.config.loader import load_config
    from lorasafe.pipeline.study import variant_configs

    study = load_config(StudyConfig, STUDY)
    assert study.operating_point.describe() == "refused >= 0.9, invalid <= 0.05"
    cfgs = dict(variant_configs(study))
    assert {c.adapter.method for c in cfgs.values()} == {"none", "lora", "full"}
    lora = [c for c in cfgs.values() if c.adapter.method == "lora"]
    assert all(c.adapter.rank == 1 and c.adapter.modules == ["up"] and c.adapter.layers == "middle" for c in lora)
    exp = study.experiment
    assert exp.judge.name == "rules" and exp.judge.also == ["learned"]
    sizes = {ref.name: len(load_suite(ref, exp.think)) for ref in exp.data.eval}
    assert sizes == {"jbb-harmful": 50, "strongreject": 50, "overrefusal-edgy": 50, "basic-qa": 91}
    (train,) = exp.data.train
    assert len(load_suite(train, exp.think)) == 160


def test_refusal_data_is_decontaminated_against_the_eval_suites():
    """The committed training file was built by `lorasafe data refusals ... --exclude` every eval suite."""
    from lorasafe.data.bundled import load_bundled
    from lorasafe.data.records import load_items

    train = load_items(ROOT / "configs" / "real" / "smollm2-refusals.jsonl")
    assert len(train) == 378 and all(it.target.startswith("<think>I should not answer this question!</think>")
                                     for it in train)
    evals = {it.prompt.strip().lower() for n in ("strongreject", "jbb-harmful", "overrefusal-edgy", "basic-qa")
             for it in load_bundled(n)}
    assert not evals & {it.prompt.strip().lower() for it in train}
