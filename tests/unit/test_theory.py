"""The rank-overshoot simulation: the fit recovers known exponents, cells are deterministic, bad configs fail."""

import json
import math

import pytest

from lorasafe.theory import TheoryConfig, fit, one_cell, run_theory, verdict


def _synthetic(b: float, c: float):
    return [{"d": d, "overshoot": o, "excess": 0.3 * o ** b * d ** c * (1 + 0.01 * ((d + o) % 3 - 1))}
            for d in (4, 8, 16, 32) for o in (1, 2, 4, 8)]


@pytest.mark.parametrize("c, holds", [(-1.0, True), (-0.5, False), (0.0, False)])
def test_fit_recovers_known_exponents_and_judges_them(c, holds):
    result = fit(_synthetic(0.8, c))
    assert result["b"] == pytest.approx(0.8, abs=0.02) and result["c"] == pytest.approx(c, abs=0.02)
    assert result["inverse_proportional"] is holds


def test_one_cell_is_deterministic_and_overshoot_costs_the_base_task():
    cfg = TheoryConfig(n_in=24, n_out=16, dims=[4, 8], overshoots=[0, 2, 4], samples=64, steps=150)
    rows = one_cell(cfg, 8, 0)
    assert rows == one_cell(cfg, 8, 0)
    assert rows[0]["excess"] == 0.0 and rows[-1]["excess"] > rows[1]["excess"] > 0
    assert all(math.isfinite(r["task_error"]) for r in rows)


def test_run_theory_writes_its_files(tmp_path):
    cfg = TheoryConfig(n_in=24, n_out=16, dims=[4, 8], overshoots=[0, 1, 2], samples=64, steps=100, seeds=[0])
    result = run_theory(cfg, tmp_path, log=lambda m: None)
    assert {"theory.csv", "fit.json", "theory.png"} <= {p.name for p in tmp_path.iterdir()}
    assert json.loads((tmp_path / "fit.json").read_text())["points"] == result["points"]
    assert "inverse proportionality" in verdict(result)


@pytest.mark.parametrize("field, value", [("overshoots", [1, 2, 4]), ("overshoots", [0, 1]), ("dims", [8])])
def test_bad_theory_configs_are_rejected(field, value):
    with pytest.raises(ValueError):
        TheoryConfig(**{field: value})
