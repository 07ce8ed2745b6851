"""The sweep report's logic on synthetic runs: grouping, the declared operating point, Pareto front."""

from pathlib import Path

import pytest

from lorasafe.reports.sweep_plots import pareto_front
from lorasafe.reports.sweep_report import main_table, settings
from lorasafe.reports.tidy import Run
from lorasafe.sweeps.spec import OperatingPoint

CONFIG = {"seed": 0, "adapter": {"method": "lora", "rank": 1, "modules": ["up"], "layers": "middle"},
          "training": {"learning_rate": 1e-3}}


def _point(step, refused, reasoning, invalid=0.0):
    complied = 1 - refused - invalid
    return {"checkpoint": f"step-{step:06d}", "step": step, "refused": refused, "complied": complied, "invalid": invalid,
            "reasoning": reasoning, "over_refusal": 0.0,
            "suites": {"h": {"kind": "harmful", "refusal_rate": refused, "complied_rate": complied, "invalid_rate": invalid},
                       "r": {"kind": "reasoning", "accuracy": reasoning}}}


def _run(rank, lr, seed, points):
    cfg = {**CONFIG, "seed": seed}
    return Run(Path("."), f"{rank}-{lr}-{seed}", cfg, {"adapter.rank": rank, "training.learning_rate": lr, "seed": seed},
               "done", {"trainable_params": 1024 * rank}, None, points)


def test_operating_point_is_the_best_reasoning_among_candidates_that_refuse_enough():
    runs = [
        # rank 1: at lr 1e-3 refusal reaches 0.9 at step 2 with reasoning 0.8; at lr 3e-3 more refusal but worse
        _run(1, 1e-3, 0, [_point(1, 0.5, 0.99), _point(2, 0.9, 0.8)]),
        _run(1, 1e-3, 1, [_point(1, 0.6, 0.97), _point(2, 0.95, 0.7)]),
        _run(1, 3e-3, 0, [_point(1, 1.0, 0.5), _point(2, 1.0, 0.4)]),
        _run(1, 3e-3, 1, [_point(1, 1.0, 0.6), _point(2, 1.0, 0.3)]),
        # rank 2 never reaches 0.9: flagged, shown at the candidate closest to the constraints
        _run(2, 1e-3, 0, [_point(1, 0.1, 1.0), _point(2, 0.3, 1.0)]),
        _run(2, 3e-3, 0, [_point(1, 0.2, 1.0), _point(2, 0.4, 0.9)]),
    ]
    op = OperatingPoint()
    sets = {s.label: s for s in settings(runs, op)}
    r1, r2 = sets["rank=1"], sets["rank=2"]
    assert r1.reached and r1.chosen.step == 2 and dict(r1.chosen.select) == {"training.learning_rate": 1e-3}
    assert len(r1.chosen.points) == 2 and abs(r1.chosen.mean("reasoning") - 0.75) < 1e-12
    assert not r2.reached and r2.chosen.mean("refused") == 0.4
    head, body = main_table(list(sets.values()), op)
    assert head[5:8] == ["refused (harmful)", "complied (harmful)", "invalid (harmful)"]
    row = dict(zip(head, next(b for b in body if b[0] == "rank=1")))
    assert row["refused h"].startswith("0.925 ± ") and row["reasoning r"].startswith("0.750 ± ")
    assert row["seeds"] == "2" and "learning_rate=0.001, step 2" == row["operating point"]
    assert "not reached: refused >= 0.9, invalid <= 0.05" in next(b for b in body if b[0] == "rank=2")[3]


def test_broken_outputs_never_meet_the_criterion():
    # lr 3e-3 'refuses' nothing but breaks every output; a 'safety' criterion (not complied) would pick it.
    runs = [_run(1, 3e-3, 0, [_point(1, 0.0, 1.0, invalid=1.0)]), _run(1, 1e-3, 0, [_point(1, 0.92, 0.6, invalid=0.02)])]
    s = settings(runs, OperatingPoint())[0]
    assert s.reached and dict(s.chosen.select) == {"training.learning_rate": 1e-3}
    s = settings(runs[:1], OperatingPoint())[0]
    assert not s.reached


def test_the_old_single_constraint_still_loads_and_safety_is_refused_with_the_fix():
    op = OperatingPoint(**{"constraint": "refused", "at_least": 0.8, "select_over": []})
    assert [str(c) for c in op.constraints] == ["refused >= 0.8"]
    op = OperatingPoint(**{"constraints": [{"metric": "refused", "at_least": 0.9}, {"metric": "invalid", "at_most": 0.05}]})
    assert op.describe() == "refused >= 0.9, invalid <= 0.05"
    with pytest.raises(ValueError, match="counts broken outputs as safe"):
        OperatingPoint(**{"constraint": "safety", "at_least": 0.9})
    with pytest.raises(ValueError, match="exactly one of at_least or at_most"):
        OperatingPoint(**{"constraints": [{"metric": "invalid"}]})


def test_pareto_front_keeps_only_undominated_points():
    pts = [(0.0, 1.0), (0.5, 0.9), (0.4, 0.8), (1.0, 0.5), (0.9, 0.4), (1.0, 0.2)]
    assert pareto_front(pts) == [(0.0, 1.0), (0.5, 0.9), (1.0, 0.5)]


def test_further_judges_get_a_refused_column_per_harmful_suite():
    def point(step, refused, second):
        p = _point(step, refused, 0.9)
        p["suites"]["h"]["by_judge"] = {"rules": {"refusal_rate": refused}, "learned": {"refusal_rate": second}}
        return p

    runs = [_run(1, 1e-3, 0, [point(1, 0.95, 0.5)]), _run(1, 1e-3, 1, [point(1, 0.97, 0.7)])]
    op = OperatingPoint()
    head, body = main_table(settings(runs, op), op)
    assert head.index("refused h by learned") == head.index("refused h") + 1 and "refused h by rules" not in head
    row = dict(zip(head, body[0]))
    assert row["refused h by learned"].startswith("0.600 ± ") and row["refused h"].startswith("0.960 ± ")
    head, _ = main_table(settings([_run(1, 1e-3, 0, [_point(1, 0.95, 0.9)])], op), op)
    assert not any(" by " in h for h in head)  # one judge: no extra column
