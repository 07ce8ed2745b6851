import pytest

from lorasafe.config.loader import config_hash, load_config, parse_override
from lorasafe.config.schema import ExperimentConfig, StudyConfig
from lorasafe.errors import ConfigError


def _bad(data=None, overrides=(), model=ExperimentConfig):
    with pytest.raises(ConfigError) as e:
        load_config(model, data=data or {}, overrides=list(overrides))
    return str(e.value)


def test_misspelled_key_suggests_the_right_one():
    msg = _bad({"adapter": {"rnak": 2}})
    assert "adapter.rnak" in msg and "did you mean 'adapter.rank'" in msg.lower()
    assert "trainig" in _bad({"trainig": {}}) and "'training'" in _bad({"trainig": {}})


def test_unknown_module_lists_valid_names():
    msg = _bad({"adapter": {"modules": ["up_proj"]}})
    for name in ("'q'", "'gate'", "'up'", "'down'"):
        assert name in msg


@pytest.mark.parametrize("rank", [0, -1])
def test_rank_must_be_positive(rank):
    assert "adapter.rank" in _bad({"adapter": {"rank": rank}})


def test_layer_range_and_bands():
    assert "inclusive" in _bad({"adapter": {"layers": {"first": 5, "last": 2}}})
    assert "early, middle, late" in _bad({"adapter": {"layers": "center"}})
    cfg = load_config(ExperimentConfig, data={"adapter": {"layers": {"first": 16, "last": 31}}})
    assert (cfg.adapter.layers.first, cfg.adapter.layers.last) == (16, 31)


def test_dotted_overrides_are_typed():
    cfg = load_config(ExperimentConfig, data={}, overrides=["adapter.rank=2", "adapter.modules=[up, down]",
                                                           "training.learning_rate=1e-4", "model.path=/x"])
    assert cfg.adapter.rank == 2 and cfg.adapter.modules == ["up", "down"]
    assert cfg.training.learning_rate == pytest.approx(1e-4) and cfg.model.path == "/x"
    assert parse_override("a.b=[1, 2]") == ("a.b", [1, 2])
    assert "KEY=VALUE" in _bad(overrides=["adapter.rank"])
    assert "did you mean 'adapter.rank'" in _bad(overrides=["adapter.rnk=3"]).lower()


def test_paper_defaults():
    cfg = ExperimentConfig()
    assert cfg.adapter.alpha == 16 and cfg.adapter.dropout == 0.05
    t = cfg.training
    assert (t.learning_rate, t.scheduler, t.weight_decay, t.warmup_ratio) == (5e-5, "cosine", 1e-4, 0.0)


def test_yaml_errors_name_file_and_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("adapter:\n  rank: 1\n   modules: [up]\n")
    with pytest.raises(ConfigError) as e:
        load_config(ExperimentConfig, p)
    assert str(p) in str(e.value) and "line" in str(e.value)


def test_hash_changes_with_any_field():
    a, b = ExperimentConfig(), ExperimentConfig()
    assert config_hash(a) == config_hash(b)
    b.adapter.rank = 2
    assert config_hash(a) != config_hash(b)


def test_study_variants_validate_with_their_label():
    from lorasafe.pipeline.study import variant_configs

    study = load_config(StudyConfig, data={"variants": [{"label": "ok", "set": {"adapter.rank": 4}},
                                                         {"label": "broken", "set": {"adapter.rank": 0}}]})
    with pytest.raises(ConfigError) as e:
        variant_configs(study)
    assert "broken" in str(e.value)
    assert "unique" in _bad({"variants": [{"label": "a"}, {"label": "a"}]}, model=StudyConfig)


def test_merge_variants_name_an_earlier_lora_variant(tmp_path):
    from lorasafe.pipeline.study import variant_configs

    lora = {"label": "l", "set": {"adapter.method": "lora"}}
    assert "not an earlier variant" in _bad({"variants": [{"label": "m", "merge": {"source": "l"}}, lora]},
                                            model=StudyConfig)
    assert "drop `set`" in _bad({"variants": [lora, {"label": "m", "set": {"seed": 1}, "merge": {"source": "l"}}]},
                                model=StudyConfig)
    full = load_config(StudyConfig, data={"variants": [{"label": "f", "set": {"adapter.method": "full"}},
                                                        {"label": "m", "merge": {"source": "f"}}]})
    with pytest.raises(ConfigError, match="not a LoRA variant"):
        variant_configs(full)
    ok = load_config(StudyConfig, data={"variants": [lora, {"label": "m", "merge": {"source": "l", "project_out": 4}}]})
    (_, merged), = [v for v in variant_configs(ok, out=tmp_path) if v[0] == "m"]
    assert merged.adapter.method == "none" and merged.model.path == str((tmp_path / "variants/m/merged").resolve())


def test_unquoted_yaml_on_key_means_judge_on(tmp_path):
    p = tmp_path / "e.yaml"
    p.write_text("judge: {name: rules, on: both}\n")
    assert load_config(ExperimentConfig, p).judge.on == "both"
