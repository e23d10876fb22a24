"""Mixing rates equal T5's formulas (seqio's mixing_rate_num_examples, ported) on a toy mixture."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maskbench.data.mixing import mixing_rates, sample_tasks
from maskbench.errors import ConfigError


def rate_num_examples(num_examples: float, maximum=None, scale: float = 1.0, temperature: float = 1.0) -> float:
    """Port of seqio.utils.mixing_rate_num_examples for a task with `num_examples` training examples."""
    ret = num_examples
    ret *= scale
    if maximum:
        ret = min(ret, maximum)
    if temperature != 1.0:
        ret = ret ** (1.0 / temperature)
    return ret


def normalised(rates: dict) -> dict:
    total = sum(rates.values())
    return {k: v / total for k, v in rates.items()}


TOY = {"c4": 10_000_000, "mnli": 392_702, "rte": 2_490, "cola": 8_551}


def test_examples_proportional_with_limit():
    got = mixing_rates(TOY, "proportional", limit=2**19)
    assert got == pytest.approx(normalised({k: rate_num_examples(v, maximum=2**19) for k, v in TOY.items()}))
    # by hand: min(e, K) / sum
    k = 2**19
    assert got["rte"] == pytest.approx(2_490 / (k + 392_702 + 2_490 + 8_551))


def test_temperature_scaled():
    got = mixing_rates(TOY, "temperature", limit=2**21, temperature=2.0)
    expected = normalised({k: rate_num_examples(v, maximum=2**21, temperature=2.0) for k, v in TOY.items()})
    assert got == pytest.approx(expected)
    assert got["rte"] > mixing_rates(TOY, "proportional", limit=2**21)["rte"]


def test_equal():
    assert mixing_rates(TOY, "equal") == pytest.approx({k: 0.25 for k in TOY})


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from("abcdef"), st.integers(1, 10**7), min_size=1),
       st.one_of(st.none(), st.integers(1, 10**6)), st.floats(0.5, 16.0))
def test_rates_are_the_formula_and_sum_to_one(sizes, limit, temperature):
    got = mixing_rates(sizes, "temperature", limit=limit, temperature=temperature)
    expected = normalised({k: rate_num_examples(v, maximum=limit, temperature=temperature) for k, v in sizes.items()})
    assert got == pytest.approx(expected, rel=1e-9)
    assert sum(got.values()) == pytest.approx(1.0)


def test_sampler_follows_rates_and_is_repeatable():
    rates = {"a": 0.7, "b": 0.2, "c": 0.1}
    draws = np.concatenate([sample_tasks(rates, 1000, seed=3, step=s) for s in range(20)])
    assert np.bincount(draws, minlength=3) / len(draws) == pytest.approx([0.7, 0.2, 0.1], abs=0.01)
    assert np.array_equal(sample_tasks(rates, 64, 3, 5), sample_tasks(rates, 64, 3, 5))
    assert not np.array_equal(sample_tasks(rates, 64, 3, 5), sample_tasks(rates, 64, 3, 6))


def test_bad_mixtures_are_refused():
    with pytest.raises(ConfigError):
        mixing_rates({}, "equal")
    with pytest.raises(ConfigError):
        mixing_rates({"a": 0}, "proportional")
    with pytest.raises(ConfigError):
        mixing_rates({"a": 3}, "softmax")
