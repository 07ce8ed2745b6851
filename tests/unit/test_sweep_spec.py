"""Sweep files: grid and zip expansion, identity by resolved config, clear errors before anything runs."""

import pytest

from lorasafe.config.loader import load_config
from lorasafe.errors import ConfigError
from lorasafe.sweeps.spec import SweepConfig, canonical, combinations, expand


def _sweep(**kw):
    return load_config(SweepConfig, data={"name": "s", **kw})


def test_grid_crosses_and_zip_advances_together():
    s = _sweep(grid=[{"path": "adapter.rank", "values": [1, 2]}],
               zip=[{"path": "adapter.modules", "values": [["up"], ["gate"]]},
                    {"path": "adapter.layers", "values": ["early", "late"]}])
    combos = combinations(s)
    assert len(combos) == 4
    assert {"adapter.rank": 2, "adapter.modules": ["gate"], "adapter.layers": "late"} in combos
    assert all((c["adapter.modules"], c["adapter.layers"]) in ((["up"], "early"), (["gate"], "late")) for c in combos)


def test_the_paper_ablation_grid_has_the_expected_cells():
    s = _sweep(grid=[{"path": "adapter.rank", "values": [1, 2, 4, 8, 16, 32, 64]},
                     {"path": "adapter.modules", "values": [["up"], ["gate"], ["down"], ["gate", "up", "down"],
                                                             ["q", "k", "v", "o", "gate", "up", "down"]]},
                     {"path": "adapter.layers", "values": ["early", "middle", "late"]}])
    cells = expand(s)
    assert len(cells) == 7 * 5 * 3 and len({c.id for c in cells}) == 105


def test_identical_resolved_configs_run_once():
    s = _sweep(grid=[{"path": "adapter.method", "values": ["lora", "full"]}, {"path": "adapter.rank", "values": [1, 8]}])
    cells = expand(s)
    assert len(cells) == 3  # full fine-tuning ignores the rank
    full = next(c for c in cells if c.cfg.adapter.method == "full")
    assert full.values == {"adapter.method": "full"} and len(full.also) == 1


def test_ids_survive_extending_an_axis():
    small = expand(_sweep(grid=[{"path": "adapter.rank", "values": [1, 2]}]))
    big = expand(_sweep(grid=[{"path": "adapter.rank", "values": [1, 2, 4]}]))
    assert [c.id for c in small] == [c.id for c in big][:2]


def test_unknown_path_suggests_the_nearest_and_bad_values_name_the_cell():
    with pytest.raises(ConfigError, match="Did you mean 'adapter.rank'"):
        expand(_sweep(grid=[{"path": "adapter.rnak", "values": [1]}]))
    with pytest.raises(ConfigError) as e:
        expand(_sweep(grid=[{"path": "adapter.rank", "values": [1, 0]}]))
    assert "cell (adapter.rank=0)" in str(e.value)


@pytest.mark.parametrize("bad, match", [
    ({"zip": [{"path": "seed", "values": [0, 1]}, {"path": "adapter.rank", "values": [1]}]}, "equal lengths"),
    ({"grid": [{"path": "seed", "values": [0]}, {"path": "seed", "values": [1]}]}, "appears twice"),
    ({}, "at least one axis"),
])
def test_malformed_sweeps_are_rejected(bad, match):
    with pytest.raises(ConfigError, match=match):
        _sweep(**bad)


def test_canonical_form_of_the_base_drops_training():
    from lorasafe.config.schema import ExperimentConfig

    a = canonical(ExperimentConfig(adapter={"method": "none"}, training={"learning_rate": 1e-3}))
    b = canonical(ExperimentConfig(adapter={"method": "none", "rank": 4}))
    assert a == b and a.data.train == []


def test_plan_counts_trainable_parameters_for_the_mini_model():
    from lorasafe.sweeps.runner import plan

    cells, params = plan(_sweep(grid=[{"path": "adapter.rank", "values": [1, 2]},
                                      {"path": "adapter.modules", "values": [["up"], ["q"]]}],
                                operating_point={"select_over": []}))
    assert sorted(params.values()) == sorted([2048, 4096, 1024, 2048])  # up: (128+384)*r*4 layers; q: 256*r*4


def test_the_14b_sweeps_plan_from_the_config_only_directory_with_the_papers_targets():
    from pathlib import Path

    from lorasafe.pipeline.context import BaseContext
    from lorasafe.sweeps.runner import plan

    root = Path(__file__).resolve().parents[2] / "configs" / "sweeps"
    sweep = load_config(SweepConfig, root / "r1-14b-layers.yaml")
    cells, params = plan(sweep)
    assert len(cells) == 3 * 3 * 3
    middle = next(c for c in cells if c.values["adapter.layers"] == "middle")
    target = BaseContext(middle.cfg).plan(middle.cfg.adapter)
    assert target.layers == list(range(16, 32)) and len(target.modules) == 16
    assert params[middle.id] == 16 * (5120 + 13824)  # rank 1 on up_proj of 16 layers
    for name in ("rank", "modules", "lora-vs-full"):
        for world in ("mini", "r1-14b"):
            assert plan(load_config(SweepConfig, root / f"{world}-{name}.yaml"))[0]


def test_every_shipped_mini_comparison_uses_the_one_learning_rate_grid_and_the_refusal_criterion():
    """The demo, the mini sweeps and the build's premise check give every method the same grid, and
    declare their operating point on refusal with an invalid ceiling (never on 'not complied')."""
    from pathlib import Path

    from lorasafe.config.loader import demo_config_path
    from lorasafe.config.schema import StudyConfig
    from lorasafe.mini.build import LEARNING_RATES, PremiseConfig

    want = sorted(LEARNING_RATES)
    assert sorted(PremiseConfig().learning_rates) == want
    demo = load_config(StudyConfig, demo_config_path())
    by_method: dict[str, set] = {}
    for v in demo.variants:
        if v.merge is None and v.set.get("adapter.method") != "none" and "training.regulariser" not in v.set:
            by_method.setdefault(repr({k: x for k, x in v.set.items() if k != "training.learning_rate"}), set()).add(
                v.set["training.learning_rate"])
    assert by_method and all(sorted(lrs) == want for lrs in by_method.values())
    root = Path(__file__).resolve().parents[2] / "configs" / "sweeps"
    ops = [demo.operating_point]
    for name in ("rank", "modules", "layers", "lora-vs-full"):
        sweep = load_config(SweepConfig, root / f"mini-{name}.yaml")
        assert sorted(next(a.values for a in sweep.grid if a.path == "training.learning_rate")) == want
        ops.append(sweep.operating_point)
    for op in ops:
        assert {(c.metric, c.at_least, c.at_most) for c in op.constraints} == {("refused", 0.9, None),
                                                                               ("invalid", None, 0.05)}
