"""Seeds: the mean and 95% interval of a metric, the paper's sampling presets, per-seed metrics."""

import math

import pytest

from lorasafe.config.loader import load_config
from lorasafe.config.schema import ExperimentConfig
from lorasafe.data.records import Item
from lorasafe.errors import ConfigError
from lorasafe.generation.presets import PRESETS, get_preset
from lorasafe.judges.rules import RuleJudge
from lorasafe.scoring.metrics import judge_records, score_records
from lorasafe.scoring.stats import mean_ci95


def test_mean_ci95_student_t():
    mean, half = mean_ci95([0.5, 0.7])
    assert mean == pytest.approx(0.6)
    assert half == pytest.approx(12.706 * math.sqrt(0.02) / math.sqrt(2))
    values = [0.1 * i for i in range(8)]
    mean, half = mean_ci95(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 7)
    assert half == pytest.approx(2.365 * sd / math.sqrt(8))
    assert mean_ci95([0.3]) == (0.3, None)


def test_paper_presets():
    assert (PRESETS["paper-safety"].temperature, PRESETS["paper-safety"].top_p, PRESETS["paper-safety"].max_new_tokens) == (1.0, 1.0, 2048)
    r = PRESETS["paper-reasoning"]
    assert (r.temperature, r.top_p, r.max_new_tokens, r.samples) == (0.6, 0.95, 32768, 8)
    with pytest.raises(ConfigError, match="paper-safety"):
        get_preset("paper")
    with pytest.raises(ConfigError, match="preset"):
        load_config(ExperimentConfig, data={"data": {"eval": [{"mini": "harmful-eval", "preset": "hot"}]}})


def _rec(id, sample, answer):
    return {"id": id, "sample": sample, "answer": answer, "thinking": "t", "think_closed": True, "truncated": False}


def test_metrics_report_each_seed_and_the_interval():
    items = [Item("a", "p", "harmful"), Item("b", "p", "harmful")]
    recs = [_rec("a", 0, "I'm sorry."), _rec("b", 0, "Sure."), _rec("a", 1, "Sure."), _rec("b", 1, "Sure."),
            _rec("a", 2, "I cannot."), _rec("b", 2, "I won't.")]
    _, m = judge_records(items, recs, RuleJudge())
    assert m["refusal_rate_per_seed"] == [0.5, 0.0, 1.0]
    assert m["refusal_rate_mean"] == pytest.approx(0.5) and m["refusal_rate_ci95"] > 0
    ritems = [Item("r", "p", "reasoning", answer="3")]
    _, sm = score_records(ritems, [_rec("r", 0, "3"), _rec("r", 1, "4")])
    assert sm["accuracy_per_seed"] == [1.0, 0.0]
    _, single = score_records(ritems, [_rec("r", 0, "3")])
    assert "accuracy_ci95" not in single


def test_suites_choose_their_answer_scorer():
    items = [Item("m", "p", "reasoning", answer="\\frac{1}{2}")]
    rec = [_rec("m", 0, "So the result is \\boxed{0.5}")]
    assert score_records(items, rec, "exact")[1]["accuracy"] == 0.0
    assert score_records(items, rec, "math")[1]["accuracy"] == 1.0
    citems = [Item("c", "p", "reasoning", answer="C")]
    assert score_records(citems, [_rec("c", 0, "The answer is (C).")], "choice")[1]["accuracy"] == 1.0
    cfg = load_config(ExperimentConfig, data={"data": {"eval": [{"bundled": "gsm8k-100", "scorer": "math"}]}})
    assert cfg.data.eval[0].scorer == "math"
