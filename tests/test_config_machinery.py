"""The configuration machinery: TOML <-> dataclasses, overrides, and one-line errors."""

from __future__ import annotations

import dataclasses
from typing import Literal, Optional

import pytest
from hypothesis import given
from hypothesis import strategies as st

from maskbench.config import (
    apply_overrides,
    check_range,
    dumps_toml,
    from_dict,
    load_config,
    parse_value,
    save_toml,
    to_dict,
)
from maskbench.errors import ConfigError, MaskbenchError


@dataclasses.dataclass
class Inner:
    mask_rate: float = 0.15
    replace: tuple[float, float, float] = (0.8, 0.1, 0.1)
    unit: Literal["token", "whole_word"] = "token"

    def __post_init__(self):
        check_range("mask_rate", self.mask_rate, 0, 1, low_open=True, high_open=True)


@dataclasses.dataclass
class Outer:
    name: str = "run"
    steps: int = 10
    seed: Optional[int] = None
    tags: list[str] = dataclasses.field(default_factory=list)
    objective: Inner = dataclasses.field(default_factory=Inner)


def test_round_trip_through_toml(tmp_path):
    cfg = Outer(name="x", steps=3, seed=7, tags=["a"], objective=Inner(0.4, (1.0, 0.0, 0.0), "whole_word"))
    save_toml(cfg, tmp_path / "c.toml")
    back = load_config(Outer, tmp_path / "c.toml")
    assert back == cfg


def test_none_fields_are_dropped_and_restored():
    assert "seed" not in to_dict(Outer())
    assert from_dict(Outer, to_dict(Outer())) == Outer()


def test_unknown_key_suggests_nearest():
    with pytest.raises(ConfigError, match=r"unknown key 'objective.mask_rat'; did you mean 'objective.mask_rate'\?"):
        from_dict(Outer, {"objective": {"mask_rat": 0.2}})


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match=r"^steps: expected an integer"):
        from_dict(Outer, {"steps": "ten"})


def test_out_of_range_names_the_dotted_key():
    with pytest.raises(ConfigError, match=r"^objective.mask_rate: must be in \(0, 1\), got 1.5"):
        from_dict(Outer, {"objective": {"mask_rate": 1.5}})


def test_literal_choice_suggests():
    with pytest.raises(ConfigError, match="did you mean 'whole_word'"):
        from_dict(Outer, {"objective": {"unit": "whole_wrd"}})


def test_int_accepted_for_float_and_list_for_tuple():
    cfg = from_dict(Outer, {"objective": {"mask_rate": 0.5, "replace": [1, 0, 0]}})
    assert cfg.objective.replace == (1.0, 0.0, 0.0)


def test_overrides_parse_toml_literals():
    data = apply_overrides({}, ["objective.mask_rate=0.4", "name=bert", "tags=['a', 'b']", "seed=3"])
    cfg = from_dict(Outer, data)
    assert cfg.objective.mask_rate == 0.4 and cfg.name == "bert" and cfg.tags == ["a", "b"] and cfg.seed == 3


def test_override_without_equals_is_an_error():
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["objective.mask_rate"])


def test_missing_and_invalid_toml_files(tmp_path):
    with pytest.raises(MaskbenchError, match="not found"):
        load_config(Outer, tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(MaskbenchError, match="not valid TOML"):
        load_config(Outer, bad)


def test_errors_are_value_errors():
    assert issubclass(ConfigError, ValueError)


@given(st.floats(min_value=1e-6, max_value=1 - 1e-6), st.integers(min_value=0, max_value=10**6),
       st.lists(st.text(min_size=1, max_size=5), max_size=3))
def test_round_trip_property(rate, steps, tags):
    cfg = Outer(steps=steps, tags=tags, objective=Inner(mask_rate=rate))
    from maskbench.config import tomllib

    assert from_dict(Outer, tomllib.loads(dumps_toml(cfg))) == cfg


@given(st.one_of(st.integers(), st.booleans(), st.floats(allow_nan=False, allow_infinity=False)))
def test_parse_value_reads_scalars(value):
    text = {True: "true", False: "false"}.get(value, repr(value)) if isinstance(value, bool) else repr(value)
    assert parse_value(text) == value


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_check_range_refuses_non_finite_numbers(value):
    with pytest.raises(ConfigError, match="must be a finite number"):
        check_range("mask_rate", value, 0, 1)
    with pytest.raises(ConfigError, match="must be a finite number"):
        check_range("lr", value)  # no bounds at all: still refused


@pytest.mark.parametrize("override", ["objective.mask_rate=nan", "objective.replace=[0.8, nan, 0.1]",
                                      "objective.mask_rate=inf"])
def test_non_finite_values_are_refused_wherever_a_number_goes(override):
    with pytest.raises(ConfigError, match="must be a finite number"):
        load_config(Outer, None, [override])


def test_non_finite_values_in_free_tables_are_refused():
    @dataclasses.dataclass
    class Free:
        table: dict = dataclasses.field(default_factory=dict)

    with pytest.raises(ConfigError, match=r"table\.a\.b\[1\]: must be a finite number"):
        from_dict(Free, {"table": {"a": {"b": [1.0, float("nan")]}}})
