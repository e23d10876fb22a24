"""Masked LM: exact counts, decoupled rates, k disjoint copies, the replacement split, units, determinism."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maskbench.errors import ConfigError
from maskbench.objectives import build_objective
from maskbench.objectives.selection import clipped_geometric_mean, geometric_span_starts, sample_clipped_geometric
from objectives_helpers import MASK, SPECIAL, VOCAB, make_batch, mlm_wiring

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SPECIAL_T = torch.tensor(SPECIAL)


def maskable_count(batch: dict) -> torch.Tensor:
    return ((~torch.isin(batch["input_ids"], SPECIAL_T)) & batch["attention_mask"].bool()).sum(dim=1)


def expected_count(n: torch.Tensor, rate: float) -> torch.Tensor:
    return torch.tensor([min(int(v), max(1, round(rate * int(v)))) for v in n])


def word_of_each_token(word_starts: torch.Tensor) -> torch.Tensor:
    return word_starts.long().cumsum(dim=1)


def assert_words_whole(selected: torch.Tensor, batch: dict) -> None:
    """Every token of a word shares the selection of the word's first token."""
    maskable = (~torch.isin(batch["input_ids"], SPECIAL_T)) & batch["attention_mask"].bool()
    starts = batch["word_starts"] | torch.nn.functional.pad(~maskable[:, :-1], (1, 0), value=True)
    starts &= maskable
    word = starts.long().cumsum(dim=1)
    first = torch.zeros(word.shape[0], word.shape[1] + 1, dtype=torch.long)
    first.scatter_(1, torch.where(starts, word, word.shape[1]), selected.long())
    assert torch.equal(first.gather(1, word)[maskable], selected.long()[maskable])


@SETTINGS
@given(rows=st.integers(1, 8), length=st.integers(3, 96), rate=st.floats(0.01, 0.99), seed=st.integers(0, 10**6))
def test_exact_token_count_per_sequence(rows, length, rate, seed):
    batch = make_batch(rows, length, seed)
    obj = build_objective("mlm", **mlm_wiring(), mask_rate=rate)
    out = obj(batch, generator=torch.Generator().manual_seed(seed))
    predicted = out["labels"] != -100
    assert torch.equal(predicted.sum(dim=1), expected_count(maskable_count(batch), rate))
    assert torch.equal(out["labels"][predicted], batch["input_ids"][predicted])


@SETTINGS
@given(rows=st.integers(1, 6), length=st.integers(3, 64), k=st.integers(2, 4), seed=st.integers(0, 10**6),
       unit=st.sampled_from(["token", "whole_word", "span"]))
def test_k_copies_are_disjoint_and_cover_the_union(rows, length, k, seed, unit):
    batch = make_batch(rows, length, seed)
    rate = 0.2
    obj = build_objective("mlm", **mlm_wiring(), mask_rate=rate, predict_rate=rate * k, unit=unit)
    assert obj.batch_multiplier == k
    out = obj(batch, generator=torch.Generator().manual_seed(seed))
    assert out["input_ids"].shape == (rows * k, length)
    assert torch.equal(out["token_type_ids"], batch["token_type_ids"].repeat_interleave(k, dim=0))
    predicted = (out["labels"] != -100).view(rows, k, length)
    assert int(predicted.sum(dim=1).max()) <= 1, "a token is predicted in two copies"
    union = predicted.any(dim=1).sum(dim=1)
    n = maskable_count(batch)
    if unit == "token":
        per_copy = expected_count(n, rate)
        assert torch.equal(union, torch.minimum(n, per_copy * k))
        full = per_copy * k <= n
        assert torch.equal(predicted.sum(dim=2)[full], per_copy[full].view(-1, 1).expand(-1, k))
    # inside a copy, corrupted = predicted (the other copies' tokens stay intact)
    changed = (out["input_ids"] != batch["input_ids"].repeat_interleave(k, dim=0)).view(rows, k, length)
    assert not bool((changed & ~predicted).any())


@SETTINGS
@given(rows=st.integers(1, 6), length=st.integers(8, 96), seed=st.integers(0, 10**6),
       sampling=st.sampled_from(["exact", "bernoulli"]))
def test_predict_rate_below_mask_rate_predicts_a_subset(rows, length, seed, sampling):
    batch = make_batch(rows, length, seed, min_len=8)
    obj = build_objective("mlm", **mlm_wiring(), mask_rate=0.5, predict_rate=0.2, replace=(1, 0, 0), sampling=sampling)
    out = obj(batch, generator=torch.Generator().manual_seed(seed))
    corrupted = out["input_ids"] == MASK
    predicted = out["labels"] != -100
    assert not bool((predicted & ~corrupted).any())
    if sampling == "exact":
        n = maskable_count(batch)
        assert torch.equal(corrupted.sum(dim=1), expected_count(n, 0.5))
        assert torch.equal(predicted.sum(dim=1), torch.minimum(expected_count(n, 0.2), expected_count(n, 0.5)))


@SETTINGS
@given(rows=st.integers(1, 6), length=st.integers(3, 64), seed=st.integers(0, 10**6),
       unit=st.sampled_from(["token", "whole_word", "span"]), sampling=st.sampled_from(["exact", "bernoulli"]))
def test_special_and_padding_tokens_are_never_selected_or_inserted(rows, length, seed, unit, sampling):
    batch = make_batch(rows, length, seed)
    obj = build_objective("mlm", **mlm_wiring(), mask_rate=0.6, replace=(0.2, 0.7, 0.1), unit=unit, sampling=sampling)
    out = obj(batch, generator=torch.Generator().manual_seed(seed))
    special = torch.isin(batch["input_ids"], SPECIAL_T) | (batch["attention_mask"] == 0)
    assert not bool((out["labels"] != -100)[special].any())
    assert torch.equal(out["input_ids"][special], batch["input_ids"][special])
    replaced = (out["input_ids"] != batch["input_ids"]) & (out["input_ids"] != MASK)
    assert not bool(torch.isin(out["input_ids"][replaced], SPECIAL_T).any())


@SETTINGS
@given(rows=st.integers(1, 6), length=st.integers(3, 80), seed=st.integers(0, 10**6), rate=st.floats(0.05, 0.6),
       unit=st.sampled_from(["whole_word", "span"]), sampling=st.sampled_from(["exact", "bernoulli"]))
def test_whole_word_units_are_never_split(rows, length, seed, rate, unit, sampling):
    batch = make_batch(rows, length, seed, word_start_p=0.4)
    obj = build_objective("mlm", **mlm_wiring(), mask_rate=rate, unit=unit, sampling=sampling)
    out = obj(batch, generator=torch.Generator().manual_seed(seed))
    selected = out["labels"] != -100
    assert_words_whole(selected, batch)
    if sampling == "exact":
        # as close to the token target as word boundaries allow: off by at most the longest word
        maskable = (~torch.isin(batch["input_ids"], SPECIAL_T)) & batch["attention_mask"].bool()
        starts = (batch["word_starts"] | torch.nn.functional.pad(~maskable[:, :-1], (1, 0), value=True)) & maskable
        word = starts.long().cumsum(dim=1) * maskable
        longest = torch.stack([torch.bincount(w[w > 0]).max() for w in word])
        error = (selected.sum(dim=1) - expected_count(maskable_count(batch), rate)).abs()
        assert bool((error <= longest).all()), (error, longest)


def test_whole_word_rate_is_counted_in_tokens():
    batch = make_batch(64, 128, seed=3, word_start_p=0.4, min_len=128)
    obj = build_objective("mlm", **mlm_wiring(), mask_rate=0.15, unit="whole_word")
    out = obj(batch, generator=torch.Generator().manual_seed(0))
    share = (out["labels"] != -100).sum() / maskable_count(batch).sum()
    assert abs(float(share) - 0.15) < 0.01


def test_replacement_proportions_within_four_sigma_over_a_million_tokens():
    rows, length = 1024, 1024
    batch = {"input_ids": torch.randint(105, VOCAB, (rows, length), generator=torch.Generator().manual_seed(1)),
             "attention_mask": torch.ones(rows, length, dtype=torch.long)}
    split = (0.8, 0.1, 0.1)
    obj = build_objective("mlm", **mlm_wiring(), mask_rate=0.99, replace=split)
    out = obj(batch, generator=torch.Generator().manual_seed(2))
    selected = out["labels"] != -100
    total = int(selected.sum())
    assert total >= 10**6
    masked = int((out["input_ids"] == MASK).sum())
    unchanged = int(((out["input_ids"] == batch["input_ids"]) & selected).sum())
    pool = VOCAB - len(SPECIAL)
    p_keep = split[2] + split[1] / pool  # a random draw may pick the original token
    for count, p in ((masked, split[0]), (total - masked - unchanged, split[1] - split[1] / pool), (unchanged, p_keep)):
        sigma = math.sqrt(total * p * (1 - p))
        assert abs(count - total * p) < 4 * sigma, (count, total * p, sigma)


def test_bernoulli_sampling_hits_the_rate_on_average():
    batch = make_batch(256, 128, seed=5, min_len=128)
    obj = build_objective("mlm", **mlm_wiring(), mask_rate=0.3, sampling="bernoulli")
    counts = (obj(batch, generator=torch.Generator().manual_seed(0))["labels"] != -100).sum(dim=1)
    n = maskable_count(batch)
    assert abs(float(counts.sum() / n.sum()) - 0.3) < 0.01
    assert len(set(counts.tolist())) > 1  # independent draws: counts vary per row


def test_span_lengths_follow_the_clipped_geometric_mean():
    target = clipped_geometric_mean(0.2, 10)
    assert abs(target - 3.8) < 0.01  # SpanBERT reports 3.8 words
    lengths = sample_clipped_geometric((200_000,), 0.2, 10, torch.Generator().manual_seed(0), "cpu")
    assert int(lengths.min()) == 1 and int(lengths.max()) == 10
    assert abs(float(lengths.double().mean()) - target) < 0.03
    # the span units the objective builds: words grouped into those lengths (the last group of a row may be cut)
    rows, length = 512, 256
    words = torch.ones(rows, length, dtype=torch.bool)
    starts, _ = geometric_span_starts(words, words, 0.2, 10, torch.Generator().manual_seed(1))
    positions = torch.arange(length).expand(rows, -1)
    start_pos = positions[starts].view(-1)
    gaps = (start_pos[1:] - start_pos[:-1])
    gaps = gaps[gaps > 0]
    assert abs(float(gaps.double().mean()) - target) < 0.1


def test_span_masking_selects_runs_longer_than_single_words():
    batch = make_batch(128, 128, seed=9, word_start_p=1.0, min_len=128)
    obj = build_objective("mlm", **mlm_wiring(), mask_rate=0.15, unit="span")
    selected = obj(batch, generator=torch.Generator().manual_seed(0))["labels"] != -100
    starts = selected & ~torch.nn.functional.pad(selected[:, :-1], (1, 0))
    mean_run = float(selected.sum() / starts.sum())
    assert 3.0 < mean_run < 5.5  # 3.8 words per span, some adjacent spans merge, the budget cuts some


def ref_merge_intervals(intervals: list[list[int]]) -> list[list[int]]:
    """SpanBERT's `merge_intervals` (pretraining/fairseq/data/masking.py): touching spans become one."""
    merged = []
    for interval in sorted(intervals, key=lambda x: x[0]):
        if not merged or merged[-1][1] + 1 < interval[0]:
            merged.append(list(interval))
        else:
            merged[-1][1] = max(merged[-1][1], interval[1])
    return merged


def span_categories(out: dict, batch: dict, k: int = 1) -> list[set[str]]:
    """Per merged span of predicted positions: which of mask / random / keep its tokens received."""
    original = batch["input_ids"].repeat_interleave(k, dim=0)
    found = []
    for row in range(out["labels"].shape[0]):
        chosen = (out["labels"][row] != -100).nonzero().squeeze(1).tolist()
        for start, end in ref_merge_intervals([[i, i] for i in chosen]):
            got, was = out["input_ids"][row, start:end + 1], original[row, start:end + 1]
            found.append({"mask" if g == MASK else "keep" if g == w else "random" for g, w in zip(got.tolist(),
                                                                                              was.tolist())})
    return found


@pytest.mark.parametrize("predict_rate", [None, 0.4])
def test_span_replacement_is_one_choice_per_span(predict_rate):
    """SpanBERT's `span_masking` (replacement='span'): one draw per merged span decides [MASK] (80%), random
    tokens (10%) or the original (10%), so a span never mixes them; random tokens are drawn per token."""
    batch = make_batch(256, 128, seed=3, word_start_p=0.7, min_len=100)
    obj = build_objective("mlm", **mlm_wiring(), mask_rate=0.2, predict_rate=predict_rate, unit="span")
    k = obj.batch_multiplier
    spans = span_categories(obj(batch, generator=torch.Generator().manual_seed(0)), batch, k)
    assert not any("mask" in c and len(c) > 1 for c in spans)
    mixed = sum(c == {"random", "keep"} for c in spans)  # a random token equal to the original: ~1/900 each
    assert mixed <= 0.02 * len(spans)
    share_mask = sum(c == {"mask"} for c in spans) / len(spans)
    assert len(spans) > 1000 and abs(share_mask - 0.8) < 0.05  # sd 0.013 at 1,000 spans
    assert abs(sum(c == {"keep"} for c in spans) / len(spans) - 0.1) < 0.035


def test_span_replacement_per_token_is_an_option():
    batch = make_batch(96, 96, seed=3, word_start_p=0.7, min_len=64)
    obj = build_objective("mlm", **mlm_wiring(), mask_rate=0.2, unit="span", span_replacement="per_token")
    spans = span_categories(obj(batch, generator=torch.Generator().manual_seed(0)), batch)
    assert sum("mask" in c and len(c) > 1 for c in spans) > 0.2 * len(spans)
    with pytest.raises(ConfigError, match="span_replacement"):
        build_objective("mlm", **mlm_wiring(), unit="span", span_replacement="span")


@pytest.mark.parametrize("unit", ["token", "whole_word", "span"])
def test_same_seed_same_output_different_seed_different(unit):
    batch = make_batch(8, 64, seed=0)
    obj = build_objective("mlm", **mlm_wiring(), mask_rate=0.3, unit=unit)
    a = obj(batch, generator=torch.Generator().manual_seed(7))
    b = obj(batch, generator=torch.Generator().manual_seed(7))
    c = obj(batch, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], b["labels"])
    assert not torch.equal(a["labels"], c["labels"])


def test_word_ids_work_like_word_starts():
    batch = make_batch(4, 32, seed=1)
    word_ids = batch["word_starts"].long().cumsum(dim=1)
    word_ids = word_ids.masked_fill(batch["attention_mask"] == 0, -1)
    with_ids = {k: v for k, v in batch.items() if k != "word_starts"} | {"word_ids": word_ids}
    obj = build_objective("mlm", **mlm_wiring(), mask_rate=0.3, unit="whole_word")
    a = obj(batch, generator=torch.Generator().manual_seed(3))
    b = obj(with_ids, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a["labels"], b["labels"])


def test_other_keys_pass_through_untouched():
    batch = make_batch(4, 16, seed=2) | {"sentence_label": torch.tensor([0, 1, 1, 0]), "note": "x"}
    out = build_objective("sop", **mlm_wiring())(batch, generator=torch.Generator().manual_seed(0))
    assert out["sentence_label"] is batch["sentence_label"] and out["note"] == "x"
    assert out["token_type_ids"] is batch["token_type_ids"]
    assert torch.equal(out["attention_mask"], batch["attention_mask"])


def test_sentence_objective_needs_pairs_and_repeats_labels_with_copies():
    obj = build_objective("nsp", **mlm_wiring(), mask_rate=0.1, predict_rate=0.2)
    assert obj.sentence_task == "nsp" and obj.batch_multiplier == 2
    batch = make_batch(3, 16, seed=2)
    with pytest.raises(ConfigError, match="pairs"):
        obj(batch, generator=torch.Generator())
    out = obj(batch | {"sentence_label": torch.tensor([1, 0, 1])}, generator=torch.Generator())
    assert out["sentence_label"].tolist() == [1, 1, 0, 0, 1, 1]


def test_summary_says_the_batch_grows():
    obj = build_objective("mlm", **mlm_wiring(), mask_rate=0.15, predict_rate=0.45)
    assert "batch x3" in obj.summary()


@pytest.mark.parametrize("params, key", [
    ({"mask_rate": 0.0}, "mask_rate"),
    ({"mask_rate": 1.0}, "mask_rate"),
    ({"mask_rate": -0.2}, "mask_rate"),
    ({"replace": (0.8, 0.1, 0.2)}, "replace"),
    ({"mask_rate": 0.2, "predict_rate": 0.5}, "predict_rate"),
    ({"unit": "span", "max_span": 0}, "max_span"),
    ({"unit": "sentence"}, "unit"),
    ({"sampling": "poisson"}, "sampling"),
    ({"unit": "pmi"}, "pmi_path"),
    ({"sentence": "nxp"}, "sentence"),
    ({"mask_id": 5000}, "mask_id"),
])
def test_bad_parameters_raise_config_error(params, key):
    with pytest.raises(ConfigError) as info:
        build_objective("mlm", **(mlm_wiring() | params))
    assert key in str(info.value)


def test_a_sequence_with_nothing_to_mask_is_an_error():
    batch = make_batch(3, 8, seed=0)
    batch["input_ids"][1] = 0
    batch["input_ids"][1, 0] = 2
    batch["input_ids"][1, 1] = 3
    obj = build_objective("mlm", **mlm_wiring())
    with pytest.raises(ConfigError, match="sequence 1 .* no maskable token"):
        obj(batch, generator=torch.Generator())


def test_whole_word_without_word_boundaries_is_an_error():
    batch = make_batch(2, 8, seed=0)
    del batch["word_starts"]
    obj = build_objective("mlm", **mlm_wiring(), unit="whole_word")
    with pytest.raises(ConfigError, match="word_starts"):
        obj(batch, generator=torch.Generator())
