"""The shortcuts of the fast selection paths give exactly what the plain computation would."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maskbench.objectives import build_objective
from maskbench.objectives.selection import (assign_copies, key_threshold, random_keys, token_selection,
                                             unit_selection, unit_starts_from_word_starts)
from objectives_helpers import SPECIAL, make_batch, mlm_wiring

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SPECIAL_T = torch.tensor(SPECIAL)


def maskable_of(batch: dict) -> torch.Tensor:
    return (~torch.isin(batch["input_ids"], SPECIAL_T)) & batch["attention_mask"].bool()


def as_set(selection) -> set:
    return set(zip(selection.rows.tolist(), selection.cols.tolist(), selection.copy.tolist()))


@SETTINGS
@given(rows=st.integers(1, 6), length=st.integers(3, 200), rate=st.floats(0.02, 0.95), seed=st.integers(0, 10**6))
def test_unranked_token_cut_picks_the_same_tokens_as_the_ranking(rows, length, rate, seed):
    maskable = maskable_of(make_batch(rows, length, seed))
    ranked = token_selection(maskable, rate, 1, "exact", torch.Generator().manual_seed(seed))
    cut = token_selection(maskable, rate, 1, "exact", torch.Generator().manual_seed(seed), ranked=False)
    assert as_set(ranked) == as_set(cut)
    assert torch.equal(cut.flat, cut.rows * length + cut.cols)


@SETTINGS
@given(rows=st.integers(1, 6), length=st.integers(3, 160), k=st.integers(1, 3), seed=st.integers(0, 10**6),
       sampling=st.sampled_from(["exact", "bernoulli"]))
def test_unit_candidates_shortcut_equals_the_full_ranking(rows, length, k, seed, sampling):
    batch = make_batch(rows, length, seed, word_start_p=0.5)
    maskable = maskable_of(batch)
    starts = unit_starts_from_word_starts(batch["word_starts"], maskable)
    counts = maskable.sum(dim=1)
    fast = unit_selection(starts, maskable, counts, 0.15, k, sampling, torch.Generator().manual_seed(seed))
    full = unit_selection(starts, maskable, counts, 0.15, k, sampling, torch.Generator().manual_seed(seed),
                          margin=-1e9)
    assert as_set(fast) == as_set(full)
    assert len(as_set(fast)) == fast.rows.shape[0], "a token was selected twice"


@SETTINGS
@given(rows=st.integers(1, 5), length=st.integers(3, 96), k=st.integers(1, 3), seed=st.integers(0, 10**6),
       rate=st.floats(0.05, 0.5))
def test_unit_selection_hits_the_same_token_counts_as_the_dense_assignment(rows, length, k, seed, rate):
    """Same rule (midpoint in key order, long units last), different keys: the per-row, per-copy token counts
    of a unit list and of the dense [B, L] assignment agree whenever all units are single words of equal
    length (here: single tokens), where the count is forced."""
    batch = make_batch(rows, length, seed)
    maskable = maskable_of(batch)
    counts = maskable.sum(dim=1)
    sparse = unit_selection(maskable, maskable, counts, rate, k, "exact", torch.Generator().manual_seed(seed))
    dense = assign_copies(maskable, maskable, rate, k, "exact", torch.Generator().manual_seed(seed))
    for copy in range(k):
        per_row = torch.bincount(sparse.rows[sparse.copy == copy], minlength=rows)
        assert torch.equal(per_row, (dense == copy).sum(dim=1))


def test_random_keys_cover_the_int32_range_uniformly():
    keys = random_keys(200_001, torch.Generator().manual_seed(0), "cpu")
    assert keys.shape == (200_001,) and keys.dtype == torch.int32
    below = (keys <= key_threshold(torch.tensor(0.25))).double().mean().item()
    assert abs(below - 0.25) < 4 * (0.25 * 0.75 / 200_001) ** 0.5
    assert int(key_threshold(torch.tensor(1.0))) == 2 ** 31 - 1


@pytest.mark.parametrize("unit", ["token", "whole_word"])
def test_non_contiguous_input_ids_are_accepted(unit):
    batch = make_batch(4, 40, 3)
    batch["input_ids"] = batch["input_ids"].t().contiguous().t()
    obj = build_objective("mlm", **mlm_wiring(), unit=unit)
    out = obj(batch, generator=torch.Generator().manual_seed(0))
    predicted = out["labels"] != -100
    assert torch.equal(out["labels"][predicted], batch["input_ids"][predicted])
    assert torch.equal(out["input_ids"][~predicted], batch["input_ids"][~predicted])


@pytest.mark.parametrize("seed", range(6))
def test_unranked_cut_on_long_rows_uses_the_candidate_block_and_agrees(seed):
    from maskbench.objectives import selection

    length = selection.DENSE_CUT_MAX_LENGTH + 150
    maskable = maskable_of(make_batch(8, length, seed, min_len=length // 3))
    ranked = token_selection(maskable, 0.15, 1, "exact", torch.Generator().manual_seed(seed))
    cut = token_selection(maskable, 0.15, 1, "exact", torch.Generator().manual_seed(seed), ranked=False)
    assert as_set(ranked) == as_set(cut)
    expected = torch.round(maskable.sum(dim=1).double() * 0.15).long().clamp(min=1)
    assert torch.equal(torch.bincount(cut.rows, minlength=8), expected)
