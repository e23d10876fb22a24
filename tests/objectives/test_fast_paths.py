"""The NumPy selection paths against a plain per-row Python oracle of the same rule, and their random source."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maskbench.errors import ConfigError
from maskbench.objectives import build_objective
from maskbench.objectives.selection import (assign_copies, exact_units, numpy_rng, random_keys, sort_values,
                                             token_selection, unit_selection, unit_starts_from_word_starts)
from objectives_helpers import SPECIAL, make_batch, mlm_wiring

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SPECIAL_T = torch.tensor(SPECIAL)


def maskable_of(batch: dict) -> torch.Tensor:
    return (~torch.isin(batch["input_ids"], SPECIAL_T)) & batch["attention_mask"].bool()


def as_set(selection) -> set:
    return set(zip(selection.rows.tolist(), selection.cols.tolist(), selection.copy.tolist()))


def oracle(units: list[list[tuple[int, int, int]]], targets: list[int], copies: int, length: int) -> set:
    """The rule, one row at a time: units (start column, size, key) in (longer than target, key, position)
    order; a unit goes to copy floor(midpoint / target) of its centre in the running token count."""
    chosen = set()
    for row, (row_units, target) in enumerate(zip(units, targets)):
        before = 0
        for start, size, _ in sorted(row_units, key=lambda u: (u[1] > target, u[2], u[0])):
            copy = (2 * before + size) // (2 * target)
            if copy < copies:
                chosen.update((row, start + i, copy) for i in range(size))
            before += size
    return chosen


@SETTINGS
@given(rows=st.integers(1, 5), length=st.integers(1, 60), copies=st.integers(1, 3), data=st.data())
def test_exact_units_follow_the_midpoint_rule_of_the_oracle(rows, length, copies, data):
    units, targets = [], []
    values = np.full(rows * length, 1 << 62, dtype=np.int64)
    sizes = np.zeros(rows * length, dtype=np.int64)
    for row in range(rows):
        cuts = sorted(data.draw(st.sets(st.integers(1, max(1, length - 1)), max_size=length)) | {0})
        cuts = [c for c in cuts if c < length] + [length]
        row_units = []
        for start, end in zip(cuts, cuts[1:]):
            if data.draw(st.booleans()) or not row_units:  # some gaps: non-maskable stretches
                key = data.draw(st.integers(0, 2 ** 32 - 1)) if row_units else 0
                row_units.append((start, end - start, key))
        target = data.draw(st.integers(1, max(1, sum(u[1] for u in row_units))))
        units.append(row_units)
        targets.append(target)
        flat = np.array([row * length + u[0] for u in row_units], dtype=np.int64)
        size = np.array([u[1] for u in row_units], dtype=np.int64)
        keys = np.array([u[2] for u in row_units], dtype=np.uint64) << np.uint64(32)  # random_keys' layout
        values[flat] = sort_values(flat, keys, size > target)
        sizes[flat] = size
    got = exact_units(values.reshape(rows, length), sizes, np.array(targets), copies, length)
    assert as_set(got) == oracle(units, targets, copies, length)
    assert len(as_set(got)) == len(got.flat), "a token was selected twice"


@SETTINGS
@given(rows=st.integers(1, 6), length=st.integers(3, 300), rate=st.floats(0.02, 0.95), k=st.integers(1, 3),
       seed=st.integers(0, 10 ** 6))
def test_exact_tokens_fill_each_copy_with_the_target_in_rank_order(rows, length, rate, k, seed):
    maskable = maskable_of(make_batch(rows, length, seed)).numpy()
    sel = token_selection(maskable, rate, k, "exact", torch.Generator().manual_seed(seed))
    n = maskable.sum(axis=1)
    target = np.maximum(1, np.rint(n * rate)).astype(int)
    need = np.minimum(target * k, n)
    assert maskable.reshape(-1)[sel.flat].all()
    assert np.array_equal(np.bincount(sel.rows, minlength=rows), need)
    for row in range(rows):
        ranks = np.sort(sel.rank[sel.rows == row])
        assert np.array_equal(ranks, np.arange(need[row]))
    assert np.array_equal(sel.copy, sel.rank // target[sel.rows])


@SETTINGS
@given(rows=st.integers(1, 5), length=st.integers(3, 96), k=st.integers(1, 3), seed=st.integers(0, 10**6),
       rate=st.floats(0.05, 0.5))
def test_unit_selection_hits_the_same_token_counts_as_the_dense_assignment(rows, length, k, seed, rate):
    """Same rule (midpoint in key order, long units last), different keys: the per-row, per-copy token counts
    of the unit list and of the dense torch assignment agree whenever all units are single tokens, where
    the count is forced."""
    batch = make_batch(rows, length, seed)
    maskable = maskable_of(batch)
    counts = maskable.sum(dim=1)
    sparse = unit_selection(maskable, maskable, counts, rate, k, "exact", torch.Generator().manual_seed(seed))
    dense = assign_copies(maskable, maskable, rate, k, "exact", torch.Generator().manual_seed(seed))
    for copy in range(k):
        per_row = np.bincount(sparse.rows[sparse.copy == copy], minlength=rows)
        assert np.array_equal(per_row, (dense == copy).sum(dim=1).numpy())


@SETTINGS
@given(rows=st.integers(1, 6), length=st.integers(3, 160), k=st.integers(1, 3), seed=st.integers(0, 10**6),
       sampling=st.sampled_from(["exact", "bernoulli"]))
def test_units_are_selected_whole_and_once(rows, length, k, seed, sampling):
    batch = make_batch(rows, length, seed, word_start_p=0.5)
    maskable = maskable_of(batch)
    starts = unit_starts_from_word_starts(batch["word_starts"], maskable)
    sel = unit_selection(starts, maskable, maskable.sum(dim=1), 0.15, k, sampling, torch.Generator().manual_seed(seed))
    assert len(as_set(sel)) == len(sel.flat), "a token was selected twice"
    unit_id = np.cumsum(starts.numpy().reshape(-1))
    chosen = np.zeros(rows * length, dtype=bool)
    chosen[sel.flat] = True
    for unit in np.unique(unit_id[sel.flat]):
        members = (unit_id == unit) & maskable.numpy().reshape(-1)
        assert chosen[members].all(), "a unit was cut"


def test_random_keys_cover_the_int32_range_uniformly():
    keys = random_keys(200_001, numpy_rng(torch.Generator().manual_seed(0)))
    assert keys.shape == (200_001,) and keys.dtype == np.uint64
    below = ((keys >> np.uint64(32)) < 2 ** 30).mean()  # a quarter of the 32-bit key range
    assert abs(below - 0.25) < 4 * (0.25 * 0.75 / 200_001) ** 0.5


def test_numpy_rng_follows_the_torch_generator():
    a, b = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    first = numpy_rng(a).random(4)
    assert np.array_equal(first, numpy_rng(b).random(4)), "same torch state -> same draws"
    assert not np.array_equal(first, numpy_rng(a).random(4)), "the torch generator advances per call"
    assert not np.array_equal(numpy_rng(torch.Generator().manual_seed(8)).random(4), first)
    rng = np.random.default_rng(0)
    assert numpy_rng(rng) is rng


def test_numpy_rng_is_per_thread():
    results = {}

    def draw(name):
        results[name] = [numpy_rng(torch.Generator().manual_seed(3)).random(1000) for _ in range(50)]

    threads = [threading.Thread(target=draw, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for draws in results.values():
        for d in draws:
            assert np.array_equal(d, results[0][0])


def test_a_batch_too_large_for_the_position_bits_is_refused():
    with pytest.raises(ConfigError, match="too large"):
        token_selection(np.broadcast_to(np.ones(1, dtype=bool), (1, 1 << 29)), 0.15, 1, "exact", torch.Generator().manual_seed(0))


@pytest.mark.parametrize("unit", ["token", "whole_word"])
def test_non_contiguous_input_ids_are_accepted(unit):
    batch = make_batch(4, 40, 3)
    batch["input_ids"] = batch["input_ids"].t().contiguous().t()
    obj = build_objective("mlm", **mlm_wiring(), unit=unit)
    out = obj(batch, generator=torch.Generator().manual_seed(0))
    predicted = out["labels"] != -100
    assert torch.equal(out["labels"][predicted], batch["input_ids"][predicted])
    assert torch.equal(out["input_ids"][~predicted], batch["input_ids"][~predicted])


@pytest.mark.parametrize("unit", ["token", "whole_word"])
def test_long_rows_take_the_partition_path_and_stay_exact(unit):
    batch = make_batch(8, 1200, 5, min_len=400)
    obj = build_objective("mlm", **mlm_wiring(), unit=unit)
    out = obj(batch, generator=torch.Generator().manual_seed(0))
    n = maskable_of(batch).sum(dim=1)
    selected = (out["labels"] != -100).sum(dim=1)
    expected = torch.round(n.double() * 0.15).long().clamp(min=1)
    if unit == "token":
        assert torch.equal(selected, expected)
    else:  # the unit straddling the target is kept only when that lands nearer: within half a word
        assert ((selected - expected).abs() <= 8).all()


@pytest.mark.parametrize("bad_id", [1000, 5000, -1, -100])
@pytest.mark.parametrize("unit", ["token", "whole_word"])
def test_ids_outside_the_vocabulary_are_refused(bad_id, unit):
    batch = make_batch(3, 20, 1)
    batch["input_ids"][1, 4] = bad_id  # VOCAB is 1000
    obj = build_objective("mlm", **mlm_wiring(), unit=unit)
    with pytest.raises(ConfigError, match="outside the vocabulary"):
        obj(batch, generator=torch.Generator().manual_seed(0))
