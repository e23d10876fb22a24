"""ALBERT's n-gram masking (unit = "ngram") against a port of the reference's n-gram choice."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from maskbench.errors import ConfigError
from maskbench.objectives import build_objective
from maskbench.objectives.selection import ngram_choices, ngram_probabilities
from objectives_helpers import SPECIAL, make_batch, mlm_wiring

SPECIAL_T = torch.tensor(SPECIAL)


def reference_ngram_masking(cand_indexes: list[list[int]], num_to_predict: int, max_ngram: int,
                            rng: random.Random, np_rng: np.random.RandomState) -> tuple[set[int], list[int]]:
    """Port of the selection in google-research/albert `create_masked_lm_predictions` (whole-word units
    `cand_indexes`, favor_shorter_ngram, no permutation): the covered token indexes and the accepted
    n-gram lengths. `num_to_predict` is given (the reference computes it from the sequence length)."""
    ngrams = np.arange(1, max_ngram + 1, dtype=np.int64)
    pvals = 1. / np.arange(1, max_ngram + 1)
    pvals /= pvals.sum(keepdims=True)
    ngram_indexes = []
    for idx in range(len(cand_indexes)):
        ngram_index = []
        for n in ngrams:
            ngram_index.append(cand_indexes[idx:idx + n])
        ngram_indexes.append(ngram_index)
    rng.shuffle(ngram_indexes)
    masked_lms, accepted = [], []
    covered_indexes = set()
    for cand_index_set in ngram_indexes:
        if len(masked_lms) >= num_to_predict:
            break
        if not cand_index_set:
            continue
        n = np_rng.choice(ngrams[:len(cand_index_set)],
                          p=pvals[:len(cand_index_set)] / pvals[:len(cand_index_set)].sum(keepdims=True))
        index_set = sum(cand_index_set[n - 1], [])
        n -= 1
        while len(masked_lms) + len(index_set) > num_to_predict:
            if n == 0:
                break
            index_set = sum(cand_index_set[n - 1], [])
            n -= 1
        if len(masked_lms) + len(index_set) > num_to_predict:
            continue
        if any(index in covered_indexes for index in index_set):
            continue
        for index in index_set:
            covered_indexes.add(index)
            masked_lms.append(index)
        accepted.append(n + 1)
    return covered_indexes, accepted


def _layout(seed: int, length: int = 40):
    batch = make_batch(1, length, seed, word_start_p=0.6, min_len=length)
    ids, starts = batch["input_ids"][0], batch["word_starts"][0]
    maskable = ~torch.isin(ids, SPECIAL_T)
    cand, current = [], None
    for i in range(length):
        if not maskable[i]:
            current = None
            continue
        if current is None or starts[i]:
            current = [i]
            cand.append(current)
        else:
            current.append(i)
    return batch, maskable, cand


def test_ngram_length_probabilities_are_inverse_n():
    assert np.allclose(ngram_probabilities(3), [6 / 11, 3 / 11, 2 / 11])


@pytest.mark.slow
def test_ngram_choice_matches_the_reference_in_distribution():
    """Over 3,000 draws on one word layout: the share of each accepted n-gram length, the per-token
    masking frequency and the masked-token count match the reference port within sampling noise."""
    batch, maskable, cand = _layout(seed=11)
    draws, rate = 3000, 0.3
    target = round(rate * int(maskable.sum()))
    rng, np_rng = random.Random(0), np.random.RandomState(0)
    ref_freq = np.zeros(maskable.shape[0])
    ref_lengths = np.zeros(4)
    ref_counts = []
    for _ in range(draws):
        covered, lengths = reference_ngram_masking(cand, target, 3, rng, np_rng)
        ref_freq[list(covered)] += 1
        np.add.at(ref_lengths, lengths, 1)
        ref_counts.append(len(covered))
    rows = batch["word_starts"].repeat(draws, 1)
    many_maskable = maskable.repeat(draws, 1)
    counts = many_maskable.sum(dim=1).numpy()
    choices, _ = ngram_choices(rows.numpy() & many_maskable.numpy(), many_maskable.numpy(), counts, rate, 1,
                               torch.Generator().manual_seed(0))
    our_lengths = np.bincount(choices.n, minlength=4).astype(float)
    our_counts = np.bincount(choices.rows, weights=choices.size, minlength=draws)
    obj = build_objective("mlm", **mlm_wiring(), mask_rate=rate, unit="ngram")
    many = {k: v.repeat(draws, 1) for k, v in batch.items()}
    our_freq = (obj(many, torch.Generator().manual_seed(1))["labels"] != -100).sum(dim=0).numpy()
    ref_share, our_share = ref_lengths[1:] / ref_lengths.sum(), our_lengths[1:] / our_lengths.sum()
    assert np.abs(ref_share - our_share).max() < 0.02, (ref_share, our_share)
    assert np.abs(ref_freq - our_freq).max() / draws < 0.045
    assert abs(np.mean(ref_counts) - our_counts.mean()) < 0.1
    assert our_counts.max() <= target and ref_share[0] > 6 / 11 - 0.05  # short n-grams favoured, budget kept


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(1, 6), length=st.integers(4, 80), seed=st.integers(0, 10**6), rate=st.floats(0.05, 0.6),
       max_ngram=st.integers(1, 4))
def test_ngrams_are_whole_words_within_budget_and_never_overlap(rows, length, seed, rate, max_ngram):
    batch = make_batch(rows, length, seed, word_start_p=0.5)
    maskable = (~torch.isin(batch["input_ids"], SPECIAL_T)) & batch["attention_mask"].bool()
    words = ((batch["word_starts"] | torch.nn.functional.pad(~maskable[:, :-1], (1, 0), value=True))
             & maskable).numpy()
    counts = maskable.sum(dim=1).numpy()
    choices, (_, _, _, _, per_row) = ngram_choices(words, maskable.numpy(), counts, rate, 1,
                                                   torch.Generator().manual_seed(seed), max_ngram)
    target = np.minimum(np.maximum(np.rint(counts * rate).astype(int), 1), counts)
    assert (np.bincount(choices.rows, weights=choices.size, minlength=rows) <= target).all()
    assert ((choices.n >= 1) & (choices.n <= max_ngram)).all()
    assert (choices.word + choices.n <= per_row.take(choices.rows)).all()
    for r in range(rows):
        spans = sorted((w, w + n) for row, w, n in zip(choices.rows, choices.word, choices.n) if row == r)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))  # disjoint
    obj = build_objective("mlm", **mlm_wiring(), mask_rate=rate, unit="ngram", max_ngram=max_ngram)
    out = obj(batch, torch.Generator().manual_seed(seed))
    selected = out["labels"] != -100
    assert not bool(selected[~maskable].any())
    assert (selected.sum(dim=1).numpy() <= target).all()


def test_ngram_with_copies_keeps_copies_disjoint():
    batch = make_batch(4, 64, 3, min_len=40)
    obj = build_objective("mlm", **mlm_wiring(), mask_rate=0.15, predict_rate=0.3, unit="ngram")
    out = obj(batch, torch.Generator().manual_seed(0))
    predicted = (out["labels"] != -100).view(4, 2, 64)
    assert int(predicted.sum(dim=1).max()) <= 1 and bool(predicted.any(dim=2).all())


def test_ngram_needs_exact_sampling_and_a_positive_max():
    with pytest.raises(ConfigError, match="sampling"):
        build_objective("mlm", **mlm_wiring(), unit="ngram", sampling="bernoulli")
    with pytest.raises(ConfigError, match="max_ngram"):
        build_objective("mlm", **mlm_wiring(), unit="ngram", max_ngram=0)
