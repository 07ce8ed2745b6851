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


# --- bad config files (issue 14): one error naming the file, line or key ---------------------------------
def _load_file(tmp_path, content: str | bytes):
    p = tmp_path / "exp.yaml"
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ConfigError) as e:
        load_config(ExperimentConfig, p)
    return p, str(e.value)


@pytest.mark.parametrize("content", ["", "\n", "# only a comment\n", "~\n", "null\n"])
def test_an_empty_config_file_is_an_error_not_the_default_experiment(tmp_path, content):
    p, msg = _load_file(tmp_path, content)
    assert str(p) in msg and "empty" in msg


def test_an_explicit_empty_mapping_still_means_the_defaults(tmp_path):
    p = tmp_path / "exp.yaml"
    p.write_text("{}\n")
    assert load_config(ExperimentConfig, p) == ExperimentConfig()


def test_a_duplicate_key_names_the_key_and_both_lines(tmp_path):
    p, msg = _load_file(tmp_path, "name: a\nadapter:\n  rank: 1\n  modules: [up]\n  rank: 2\n")
    assert str(p) in msg and "'rank'" in msg and "line 5" in msg and "lines 3 and 5" in msg
    _, msg = _load_file(tmp_path, "name: a\nseed: 1\nname: b\n")
    assert "'name'" in msg and "lines 1 and 3" in msg
    _, msg = _load_file(tmp_path, "adapter: {rank: 1, rank: 2}\n")
    assert "'rank'" in msg and "line 1" in msg


def test_the_same_key_in_different_sections_and_yaml_merge_keys_are_fine(tmp_path):
    p = tmp_path / "exp.yaml"
    p.write_text("name: a\ndata:\n  eval:\n    - {mini: harmful-eval, limit: 2}\n    - {mini: reasoning-eval, limit: 2}\n"
                 "training: &t {epochs: 1, batch_size: 2}\ngeneration:\n  batch_size: 4\n")
    cfg = load_config(ExperimentConfig, p)
    assert [r.limit for r in cfg.data.eval] == [2, 2] and cfg.generation.batch_size == 4
    from lorasafe.config.loader import load_yaml

    p.write_text("base: &b {x: 1, y: 2}\nmerged:\n  <<: *b\n  y: 3\n")
    assert load_yaml(p)["merged"] == {"x": 1, "y": 3}


def test_a_duplicate_judge_on_key_is_named_on(tmp_path):
    _, msg = _load_file(tmp_path, "judge:\n  on: answer\n  on: both\n")
    assert "'on'" in msg and "lines 2 and 3" in msg


@pytest.mark.parametrize("content,expect", [
    (b"name: caf\xe9\n", "line 1 is not UTF-8"),
    (b"name: a\nseed: \x00\n", "line 2 is not valid YAML"),
    ("- name: a\n", "not a list"),
    ("just words\n", "not a string"),
])
def test_undecodable_or_non_mapping_configs_are_one_error(tmp_path, content, expect):
    p, msg = _load_file(tmp_path, content)
    assert str(p) in msg and expect in msg and "\n" not in msg


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    p = tmp_path / "exp.yaml"
    p.write_bytes(b"\xef\xbb\xbfname: bom\n")
    assert load_config(ExperimentConfig, p).name == "bom"


def test_a_directory_as_config_says_so(tmp_path):
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(ExperimentConfig, tmp_path)


def test_bad_overrides_are_one_error():
    assert "names no key" in _bad(overrides=["=3"])
    assert "names no key" in _bad(overrides=["adapter..rank=3"])
    msg = _bad(overrides=["adapter={rank: 1, rank: 2}"])
    assert "'rank' appears twice" in msg
    assert "is a value, not a section" in _bad(overrides=["adapter.rank=1", "adapter.rank.x=2"])


def test_a_huge_bad_value_is_shortened_and_a_missing_field_named():
    msg = _bad({"adapter": {"modules": ["x" * 500]}})
    assert len(msg) < 400 and "..." in msg
    msg = _bad({}, model=StudyConfig)
    assert "variants: required but missing" in msg


def test_mini_build_overrides_change_one_field_of_the_default_recipe():
    # A stage's mixture has no default of its own; an override of a nested field must keep it (it used to
    # replace the whole stage: "parent.mixture: required but missing").
    from lorasafe.mini.build import MiniBuildConfig, load_recipe

    default = MiniBuildConfig()
    cfg = load_recipe(3, ["parent.training.max_steps=8", "premise=null"])
    assert cfg.seed == 3 and cfg.premise is None
    assert cfg.parent.training.max_steps == 8 and cfg.parent.mixture == default.parent.mixture
    assert cfg.parent.training.learning_rate == default.parent.training.learning_rate
    assert cfg.distill == default.distill and load_recipe() == default
