"""Spec parsing: did-you-mean errors, grid vs zip expansion, scales, and stable cell hashes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maskbench.errors import ConfigError, MaskbenchError
from maskbench.config import config_hash
from maskbench.experiments.spec import list_presets, load_spec, parse_spec


def spec(**extra):
    data = {"experiment": {"name": "t"}, "base": {"pretrain": {"objective": {"mask_rate": 0.15}}}}
    data.update(extra)
    return data


def test_unknown_top_level_key_suggests_the_nearest():
    with pytest.raises(ConfigError, match="did you mean 'axes'"):
        parse_spec(spec(axis=[]))


def test_unknown_base_section_suggests_the_nearest():
    with pytest.raises(ConfigError, match="did you mean 'base.pretrain'"):
        parse_spec({"experiment": {"name": "t"}, "base": {"pretrian": {}}})


def test_unknown_axis_field_names_its_place():
    with pytest.raises(ConfigError, match=r"axes\[0\]\.kinds.*did you mean 'axes\[0\]\.kind'"):
        parse_spec(spec(axes=[{"kinds": "zip", "values": {"pretrain.x": [1]}}]))


def test_axis_key_outside_any_section_is_an_error():
    s = parse_spec(spec(axes=[{"values": {"pretrian.objective.mask_rate": [0.1, 0.2]}}]))
    with pytest.raises(ConfigError, match="did you mean 'pretrain'"):
        s.resolve("tiny")


def test_zip_axis_needs_equal_lengths():
    with pytest.raises(ConfigError, match="equal length"):
        parse_spec(spec(axes=[{"kind": "zip", "values": {"pretrain.a": [1, 2], "pretrain.b": [1]}}]))


def test_validator_errors_reach_the_user():
    def validate(config):
        if "mask_rat" in config["pretrain"]["objective"]:
            raise ConfigError("unknown key 'pretrain.objective.mask_rat'; did you mean 'pretrain.objective.mask_rate'?")

    s = parse_spec(spec(axes=[{"values": {"pretrain.objective.mask_rat": [0.1]}}]))
    with pytest.raises(ConfigError, match="did you mean 'pretrain.objective.mask_rate'"):
        s.resolve("tiny", validate=validate)


def test_unknown_preset_suggests_the_nearest():
    with pytest.raises(MaskbenchError, match="did you mean 'mask-rate'"):
        load_spec("mask-rates")


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=3), st.lists(st.integers(1, 4), min_size=0, max_size=2),
       st.integers(1, 4))
def test_grid_crosses_and_zip_pairs(grid_sizes, other_grid_sizes, zip_size):
    axes = [{"kind": "grid", "values": {f"pretrain.g{i}": list(range(n)) for i, n in enumerate(grid_sizes)}},
            {"kind": "zip", "values": {"finetune.z1": list(range(zip_size)), "finetune.z2": list(range(zip_size))}}]
    if other_grid_sizes:
        axes.append({"values": {f"probe.h{i}": list(range(n)) for i, n in enumerate(other_grid_sizes)}})
    cells = parse_spec(spec(axes=axes)).resolve("tiny")
    expected = zip_size
    for n in grid_sizes + other_grid_sizes:
        expected *= n
    assert len(cells) == expected
    assert len({c.id for c in cells}) == expected


def test_series_union_deduplicates_identical_cells():
    s = parse_spec(spec(series=[
        {"name": "rates", "axes": [{"values": {"pretrain.objective.mask_rate": [0.15, 0.4]}}]},
        {"name": "replace", "axes": [{"values": {"pretrain.objective.replace": [[0.8, 0.1, 0.1], [1, 0, 0]]}}]},
    ], base={"pretrain": {"objective": {"mask_rate": 0.15, "replace": [0.8, 0.1, 0.1]}}}))
    cells = s.resolve("tiny")
    assert len(cells) == 3  # the 15% / 80-10-10 cell is in both series
    shared = [c for c in cells if len(c.series) == 2]
    assert len(shared) == 1 and set(shared[0].series) == {"rates", "replace"}


def test_scales_override_base_and_axes():
    s = parse_spec(spec(axes=[{"name": "rate", "values": {"pretrain.objective.mask_rate": [0.15, 0.3, 0.4]}}],
                        scales={"tiny": {"set": {"pretrain.steps": 5}, "axes": {"rate": {"pretrain.objective.mask_rate": [0.15, 0.4]}}},
                                "paper": {"set": {"pretrain.steps": 23000}}}))
    tiny = s.resolve("tiny")
    paper = s.resolve("paper")
    assert [c.config["pretrain"]["steps"] for c in tiny] == [5, 5]
    assert len(paper) == 3 and paper[0].config["pretrain"]["steps"] == 23000
    with pytest.raises(ConfigError, match="did you mean"):
        parse_spec(spec(scales={"tiyn": {}}))


def test_zip_labels_name_the_points():
    s = parse_spec(spec(axes=[{"name": "pretraining", "kind": "zip", "labels": ["none", "15%"],
                               "values": {"pretrain.enabled": [False, True], "pretrain.objective.mask_rate": [0.15, 0.15]}}]))
    assert [c.labels["pretraining"] for c in s.resolve("tiny")] == ["none", "15%"]


json_values = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False)
                           | st.text(max_size=5), lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
                           max_leaves=10)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.text(max_size=5), json_values, max_size=5))
def test_hash_is_stable_under_key_order(config):
    reordered = dict(reversed(list(config.items())))
    assert config_hash(config) == config_hash(reordered)


def test_hash_distinguishes_configs_and_ignores_int_float_spelling():
    a = {"pretrain": {"objective": {"mask_rate": 0.15}, "steps": 100}}
    assert config_hash(a) == config_hash({"pretrain": {"steps": 100.0, "objective": {"mask_rate": 0.15}}})
    assert config_hash(a) != config_hash({"pretrain": {"objective": {"mask_rate": 0.4}, "steps": 100}})


def test_same_spec_resolves_to_the_same_cell_folders():
    data = spec(axes=[{"values": {"pretrain.objective.mask_rate": [0.15, 0.4]}}])
    assert [c.id for c in parse_spec(data).resolve()] == [c.id for c in parse_spec(data).resolve()]


def test_presets_parse_and_validate_at_every_scale():
    from maskbench.experiments.stages import validate_config

    assert {"mask-rate", "t5-objectives", "albert", "child-tuning", "demo"} <= set(list_presets())
    for name in list_presets():
        s = load_spec(name)
        assert s.experiment.paper and s.experiment.findings, name
        for scale in ("tiny", "small", "paper"):
            cells = s.resolve(scale, validate=validate_config)  # every stage's dataclass, model and objective
            assert cells, (name, scale)


def test_model_and_objective_typos_are_caught_before_running():
    from maskbench.experiments.stages import validate_config

    base = load_spec("demo")
    with pytest.raises(ConfigError, match="did you mean 'pretrain.objective.mask_rate'"):
        parse_spec({**base.to_dict(), "series": [], "base": {**base.base, "pretrain": {
            **base.base["pretrain"], "objective": {"name": "mlm", "mask_rat": 0.4}}}}).resolve(validate=validate_config)
    with pytest.raises(ConfigError, match="pretrain.model"):
        parse_spec({**base.to_dict(), "series": [], "base": {**base.base, "pretrain": {
            **base.base["pretrain"], "model": {"size": "bert-tiny", "hiden_size": 64}}}}).resolve(validate=validate_config)
