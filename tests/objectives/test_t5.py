"""T5 objectives: the span-corruption arithmetic, reconstruction, shapes, sentinels, determinism."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maskbench.errors import ConfigError
from maskbench.objectives import build_objective, compute_input_and_target_lengths
from maskbench.objectives.t5 import span_corruption_counts, span_corruption_mask, spans_to_sentinels
from objectives_helpers import PAD, SENTINELS, SEP, SPECIAL, VOCAB, t5_wiring

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SENTINEL_OF = {s: i for i, s in enumerate(SENTINELS)}


def raw_batch(rows: int, length: int, seed: int, ragged: bool = False) -> dict:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(105, VOCAB, (rows, length), generator=g)
    lengths = torch.randint(1, length + 1, (rows,), generator=g) if ragged else torch.full((rows,), length)
    attention = (torch.arange(length) < lengths.view(-1, 1)).long()
    return {"input_ids": ids.masked_fill(attention == 0, PAD), "attention_mask": attention}


def build(name: str, **params):
    extra = {}
    if name in ("replace_spans", "span_corruption", "iid_mask", "bert_style"):
        extra["sentinel_ids"] = SENTINELS
    if name == "bert_style":
        extra["special_ids"] = SPECIAL
    return build_objective(name, **t5_wiring(), **extra, **params)


def rows_of(out: dict, key: str) -> list[list[int]]:
    """The unpadded rows of inputs (by attention mask) or labels (up to -100), EOS included."""
    if key == "input_ids":
        return [row[mask.bool()].tolist() for row, mask in zip(out["input_ids"], out["attention_mask"])]
    return [row[row != -100].tolist() for row in out["labels"]]


def originals(batch: dict) -> list[list[int]]:
    return [row[mask.bool()].tolist() for row, mask in zip(batch["input_ids"], batch["attention_mask"])]


def merge_sentinels(inputs: list[int], target: list[int]) -> list[int]:
    """Resolve every sentinel of the input with the tokens that follow it in the target (a target may end
    with a sentinel that holds nothing: the reference's mark for a row that ends with kept tokens)."""
    assert inputs[-1] == SEP and target[-1] == SEP
    pieces, current = {}, None
    for token in target[:-1]:
        if token in SENTINEL_OF:
            current = SENTINEL_OF[token]
            pieces[current] = []
        else:
            pieces[current].append(token)
    out = []
    for token in inputs[:-1]:
        out.extend(pieces.pop(SENTINEL_OF[token]) if token in SENTINEL_OF else [token])
    assert not any(pieces.values())
    return out


def test_lengths_helper_matches_t5():
    assert compute_input_and_target_lengths(512, 0.15, 3.0) == (568, 114)
    # 141 raw tokens: 21 noise in 7 spans -> 120 + 7 + EOS = 128 inputs, 21 + 7 + EOS = 29 targets;
    # 142 would give 121 + 7 + 1 = 129 inputs
    assert compute_input_and_target_lengths(128, 0.15, 3.0) == (141, 29)


@pytest.mark.parametrize("density", [0.1, 0.15, 0.25, 0.5])
@pytest.mark.parametrize("span", [2, 3, 5, 10])
def test_span_corruption_counts_follow_the_formula_and_fill_the_input_exactly(density, span):
    raw_length, target_length = compute_input_and_target_lengths(128, density, span)
    batch = raw_batch(6, raw_length, seed=span)
    obj = build("span_corruption", noise_density=density, mean_span_length=span)
    out = obj(batch, generator=torch.Generator().manual_seed(0), return_noise_mask=True)
    noise = out["noise_mask"]
    num_noise = round(raw_length * density)
    num_spans = max(1, round(num_noise / span))
    assert noise.sum(dim=1).tolist() == [num_noise] * 6
    starts = noise & ~torch.nn.functional.pad(noise[:, :-1], (1, 0))
    assert starts.sum(dim=1).tolist() == [num_spans] * 6
    assert not bool(noise[:, 0].any()) and bool(noise[:, -1].all())  # starts with non-noise, ends with noise
    assert out["input_ids"].shape == (6, 128) and bool(out["attention_mask"].all())
    assert out["labels"].shape[1] <= target_length and bool((out["labels"] != -100).all())
    sentinels_in = out["input_ids"][torch.isin(out["input_ids"], torch.tensor(SENTINELS))].view(6, -1)
    assert sentinels_in.tolist() == [SENTINELS[:num_spans]] * 6


def test_span_corruption_counts_helper_clamps_like_t5():
    noise, spans = span_corruption_counts(torch.tensor([1, 2, 10, 100]), 0.15, 3.0)
    assert noise.tolist() == [1, 1, 2, 15] and spans.tolist() == [1, 1, 1, 5]


@SETTINGS
@given(rows=st.integers(1, 5), length=st.integers(2, 80), seed=st.integers(0, 10**6),
       density=st.sampled_from([0.1, 0.15, 0.25, 0.5]), span=st.sampled_from([1.0, 2.0, 3.0, 5.0, 10.0]))
def test_span_corruption_reconstructs_the_original(rows, length, seed, density, span):
    batch = raw_batch(rows, length, seed, ragged=True)
    out = build("span_corruption", noise_density=density, mean_span_length=span)(
        batch, generator=torch.Generator().manual_seed(seed))
    for inputs, target, original in zip(rows_of(out, "input_ids"), rows_of(out, "labels"), originals(batch)):
        assert merge_sentinels(inputs, target) == original


# ---- T5's reference functions (t5/data/preprocessors.py), ported from TensorFlow to NumPy line by line.
# The reference takes sentinels from the top of its vocabulary downwards (sentinel_id = vocab_size - 1);
# REF_VOCAB keeps them clear of the test tokens, and `ours` maps them to maskbench's <extra_id_k> ids.
REF_VOCAB = 10**6


def ref_noise_span_to_unique_sentinel(tokens: np.ndarray, noise_mask: np.ndarray) -> np.ndarray:
    prev_token_is_noise = np.pad(noise_mask[:-1], [[1, 0]])
    first_noise_tokens = np.logical_and(noise_mask, np.logical_not(prev_token_is_noise))
    subsequent_noise_tokens = np.logical_and(noise_mask, prev_token_is_noise)
    sentinel = (REF_VOCAB - 1) + 1 - np.cumsum(first_noise_tokens.astype(tokens.dtype), axis=-1)
    tokens = np.where(first_noise_tokens, sentinel, tokens)
    return tokens[np.logical_not(subsequent_noise_tokens)]


def ref_nonnoise_span_to_unique_sentinel(tokens: np.ndarray, noise_mask: np.ndarray) -> np.ndarray:
    return ref_noise_span_to_unique_sentinel(tokens, np.logical_not(noise_mask))


def ref_drop_noise_tokens(tokens: np.ndarray, noise_mask: np.ndarray) -> np.ndarray:
    return tokens[np.logical_not(noise_mask)]


def ref_drop_nonnoise_tokens(tokens: np.ndarray, noise_mask: np.ndarray) -> np.ndarray:
    return tokens[noise_mask]


def ref_random_spans_noise_mask(length: int, noise_density: float, rng: np.random.Generator,
                                mean_noise_span_length: float = 3.0) -> np.ndarray:
    """`random_spans_noise_mask` (random_roll=False); `rng.permutation` stands in for stateless_shuffle.
    float32 as TF computes it; Python's round() and tf.round both round half to even."""
    orig_length = length
    length = max(length, 2)
    num_noise_tokens = int(np.round(np.float32(length) * np.float32(noise_density)))
    num_noise_tokens = min(max(num_noise_tokens, 1), length - 1)
    num_noise_spans = int(np.round(np.float32(num_noise_tokens) / np.float32(mean_noise_span_length)))
    num_noise_spans = max(num_noise_spans, 1)
    num_nonnoise_tokens = length - num_noise_tokens

    def _random_segmentation(num_items, num_segments):
        first_in_segment = np.pad(rng.permutation((np.arange(num_items - 1) < num_segments - 1).astype(np.int32)),
                                  [[1, 0]])
        segment_id = np.cumsum(first_in_segment)
        return np.bincount(segment_id)  # tf.math.segment_sum(ones, segment_id)

    noise_span_lengths = _random_segmentation(num_noise_tokens, num_noise_spans)
    nonnoise_span_lengths = _random_segmentation(num_nonnoise_tokens, num_noise_spans)
    interleaved = np.stack([nonnoise_span_lengths, noise_span_lengths], axis=1).reshape(num_noise_spans * 2)
    span_starts = np.cumsum(interleaved)[:-1]
    span_start_indicator = np.bincount(span_starts, minlength=length)[:length]
    span_num = np.cumsum(span_start_indicator)
    return (span_num % 2 == 1)[:orig_length]


def ours(reference: np.ndarray) -> list[int]:
    """Reference token ids with the reference's sentinels renamed to maskbench's (k-th from the top → k)."""
    return [SENTINELS[REF_VOCAB - 1 - t] if t >= REF_VOCAB - len(SENTINELS) else int(t) for t in reference]


@st.composite
def padded_noise(draw):
    """A right-padded batch and an arbitrary noise mask over its tokens (any start, any end)."""
    rows, width = draw(st.integers(1, 4)), draw(st.integers(1, 40))
    lengths = [draw(st.integers(1, width)) for _ in range(rows)]
    noise = [[draw(st.booleans()) if i < n else False for i in range(width)] for n in lengths]
    g = torch.Generator().manual_seed(draw(st.integers(0, 10**6)))
    attention = (torch.arange(width) < torch.tensor(lengths).view(-1, 1)).long()
    ids = torch.randint(105, VOCAB, (rows, width), generator=g).masked_fill(attention == 0, PAD)
    return {"input_ids": ids, "attention_mask": attention}, torch.tensor(noise, dtype=torch.bool)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=padded_noise())
def test_replace_spans_equals_the_reference_for_every_noise_mask(case):
    batch, noise = case
    inputs, lengths, labels = spans_to_sentinels(batch, noise, torch.tensor(SENTINELS), SEP, PAD, "test")
    out = {"input_ids": inputs, "attention_mask": (torch.arange(inputs.shape[1]) < lengths.view(-1, 1)).long(),
           "labels": labels}
    for b, (got_in, got_target, original) in enumerate(zip(rows_of(out, "input_ids"), rows_of(out, "labels"),
                                                           originals(batch))):
        tokens, mask = np.array(original, dtype=np.int64), noise[b, :len(original)].numpy()
        assert got_in == ours(ref_noise_span_to_unique_sentinel(tokens, mask)) + [SEP]
        assert got_target == ours(ref_nonnoise_span_to_unique_sentinel(tokens, mask)) + [SEP]


@SETTINGS
@given(rows=st.integers(1, 5), length=st.integers(1, 80), seed=st.integers(0, 10**6),
       density=st.sampled_from([0.1, 0.15, 0.25, 0.5]), sampling=st.sampled_from(["exact", "bernoulli"]),
       name=st.sampled_from(["replace_spans", "drop", "span_corruption"]))
def test_objectives_equal_the_reference_on_their_own_noise(rows, length, seed, density, sampling, name):
    """Inputs and targets are the reference's functions of the noise mask each objective drew."""
    params = {"noise_density": density} | ({} if name == "span_corruption" else {"sampling": sampling})
    batch = raw_batch(rows, length, seed, ragged=True)
    out = build(name, **params)(batch, generator=torch.Generator().manual_seed(seed), return_noise_mask=True)
    inputs_fn, targets_fn = {"drop": (ref_drop_noise_tokens, ref_drop_nonnoise_tokens)}.get(
        name, (ref_noise_span_to_unique_sentinel, ref_nonnoise_span_to_unique_sentinel))
    for b, (got_in, got_target, original) in enumerate(zip(rows_of(out, "input_ids"), rows_of(out, "labels"),
                                                           originals(batch))):
        tokens, mask = np.array(original, dtype=np.int64), out["noise_mask"][b, :len(original)].numpy()
        assert got_in == ours(inputs_fn(tokens, mask)) + [SEP]
        assert got_target == ours(targets_fn(tokens, mask)) + [SEP]


def test_iid_noise_is_bernoulli_per_token_by_default():
    """T5's iid_noise_mask: uniform < density per token, so per-row counts vary around density * n."""
    obj = build("replace_spans", noise_density=0.15)
    assert obj.sampling == "bernoulli"
    out = obj(raw_batch(200, 100, seed=2), generator=torch.Generator().manual_seed(0), return_noise_mask=True)
    counts = out["noise_mask"].sum(dim=1).float()
    assert abs(counts.mean().item() - 15) < 1.0  # sd of the mean: sqrt(100 * .15 * .85 / 200) = 0.25
    assert 2.5 < counts.std().item() < 4.6  # binomial sd 3.57; exact sampling would give 0
    exact = build("replace_spans", noise_density=0.15, sampling="exact")(
        raw_batch(200, 100, seed=2), generator=torch.Generator().manual_seed(0), return_noise_mask=True)
    assert exact["noise_mask"].sum(dim=1).tolist() == [15] * 200


@pytest.mark.parametrize("length", list(range(2, 60)) + [128, 512, 568])
@pytest.mark.parametrize("density, span", [(0.15, 3.0), (0.5, 2.0), (0.25, 10.0), (0.1, 1.0)])
def test_span_corruption_has_the_reference_noise_and_span_counts(length, density, span):
    reference = ref_random_spans_noise_mask(length, density, np.random.default_rng(length), span)
    ref_noise = int(reference.sum())
    ref_spans = int((reference & ~np.pad(reference[:-1], [[1, 0]])).sum())
    if ref_spans > length - ref_noise:
        pytest.skip("the reference cannot cut fewer kept tokens into more gaps (TF shape error)")
    noise = span_corruption_mask(torch.ones(3, length, dtype=torch.bool), density, span,
                                 torch.Generator().manual_seed(length))
    starts = noise & ~torch.nn.functional.pad(noise[:, :-1], (1, 0))
    assert noise.sum(dim=1).tolist() == [ref_noise] * 3
    assert starts.sum(dim=1).tolist() == [ref_spans] * 3
    assert not bool(noise[:, 0].any()) and bool(noise[:, -1].all()) == bool(reference[-1])


def test_span_corruption_draws_every_reference_mask_equally_often():
    """Length 10, density 0.3, mean span 1.5: 3 noise tokens in 2 spans, 7 kept in 2 gaps; the reference's
    support is the 2 x 6 compositions, each with probability 1/12; ours must have the same law."""
    rng = np.random.default_rng(0)
    support = {tuple(ref_random_spans_noise_mask(10, 0.3, rng, 1.5)) for _ in range(500)}
    assert len(support) == 12
    noise = span_corruption_mask(torch.ones(6000, 10, dtype=torch.bool), 0.3, 1.5, torch.Generator().manual_seed(1))
    seen = Counter(tuple(row) for row in noise.tolist())
    assert set(seen) == support
    assert all(abs(n - 500) < 5 * 500 ** 0.5 for n in seen.values())


@SETTINGS
@given(rows=st.integers(1, 5), length=st.integers(1, 80), seed=st.integers(0, 10**6),
       density=st.sampled_from([0.1, 0.15, 0.25, 0.5]))
def test_drop_reconstructs_the_original_from_the_dropped_positions(rows, length, seed, density):
    batch = raw_batch(rows, length, seed, ragged=True)
    out = build("drop", noise_density=density, sampling="exact")(batch, generator=torch.Generator().manual_seed(seed),
                                                return_noise_mask=True)
    for b, (inputs, target, original) in enumerate(zip(rows_of(out, "input_ids"), rows_of(out, "labels"),
                                                       originals(batch))):
        noise = out["noise_mask"][b, :len(original)].tolist()
        kept, dropped = iter(inputs[:-1]), iter(target[:-1])
        assert [next(dropped) if is_noise else next(kept) for is_noise in noise] == original
        assert len(target) - 1 == sum(noise) == max(1, round(density * len(original)))


@SETTINGS
@given(rows=st.integers(1, 5), length=st.integers(1, 60), seed=st.integers(0, 10**6))
def test_prefix_lm_splits_the_text_in_two(rows, length, seed):
    batch = raw_batch(rows, length, seed, ragged=True)
    out = build("prefix_lm")(batch, generator=torch.Generator().manual_seed(seed))
    for inputs, target, original in zip(rows_of(out, "input_ids"), rows_of(out, "labels"), originals(batch)):
        assert inputs[:-1] + target[:-1] == original and inputs[-1] == SEP == target[-1]
        assert len(inputs) >= 2 and (len(target) >= 2 or len(original) == 1)


@SETTINGS
@given(rows=st.integers(1, 5), length=st.integers(1, 60), seed=st.integers(0, 10**6))
def test_deshuffle_permutes_the_input_and_targets_the_original(rows, length, seed):
    batch = raw_batch(rows, length, seed, ragged=True)
    out = build("deshuffle")(batch, generator=torch.Generator().manual_seed(seed))
    for inputs, target, original in zip(rows_of(out, "input_ids"), rows_of(out, "labels"), originals(batch)):
        assert sorted(inputs[:-1]) == sorted(original) and target[:-1] == original


@pytest.mark.parametrize("name", ["iid_mask", "bert_style"])
def test_masking_objectives_target_the_whole_text(name):
    batch = raw_batch(64, 100, seed=4)
    out = build(name, sampling="exact")(batch, generator=torch.Generator().manual_seed(0), return_noise_mask=True)
    assert rows_of(out, "labels") == [row + [SEP] for row in originals(batch)]
    changed = out["input_ids"][:, :100] != batch["input_ids"]
    assert not bool((changed & ~out["noise_mask"]).any())
    assert out["noise_mask"].sum(dim=1).tolist() == [15] * 64
    masked = int((out["input_ids"] == SENTINELS[0]).sum())
    if name == "iid_mask":
        assert masked == 64 * 15
    else:  # 90% mask, 10% random token (never special)
        assert 0.85 < masked / (64 * 15) < 0.95
        random = out["input_ids"][:, :100][changed & (out["input_ids"][:, :100] != SENTINELS[0])]
        assert not bool(torch.isin(random, torch.tensor(SPECIAL)).any())


def test_mask_with_the_mask_token():
    obj = build("iid_mask", mask_with="mask", mask_id=4, sampling="exact")
    out = obj(raw_batch(2, 40, 0), generator=torch.Generator().manual_seed(0))
    assert int((out["input_ids"] == 4).sum()) == 12


@pytest.mark.parametrize("name", ["prefix_lm", "bert_style", "deshuffle", "iid_mask", "replace_spans", "drop",
                                  "span_corruption"])
def test_same_seed_same_output_different_seed_different(name):
    batch = raw_batch(4, 64, seed=1)
    obj = build(name)
    a = obj(batch, generator=torch.Generator().manual_seed(3))
    b = obj(batch, generator=torch.Generator().manual_seed(3))
    c = obj(batch, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], b["labels"])
    assert not (torch.equal(a["input_ids"], c["input_ids"]) and torch.equal(a["labels"], c["labels"]))


def test_too_few_sentinels_is_an_error():
    obj = build_objective("span_corruption", **t5_wiring(), sentinel_ids=SENTINELS[:3], noise_density=0.5,
                          mean_span_length=2)
    with pytest.raises(ConfigError, match="needs 16 sentinels .* has 3"):
        obj(raw_batch(2, 64, 0), generator=torch.Generator())
    with pytest.raises(ConfigError, match="sentinel"):
        build_objective("replace_spans", **t5_wiring(), sentinel_ids=[])


@pytest.mark.parametrize("params, key", [
    ({"noise_density": 0.0}, "noise_density"),
    ({"noise_density": 1.0}, "noise_density"),
    ({"mean_span_length": 0.5}, "mean_span_length"),
    ({"sentinel_ids": [5, 5]}, "sentinel_ids"),
    ({"eos_id": VOCAB}, "eos_id"),
])
def test_bad_span_corruption_parameters(params, key):
    with pytest.raises(ConfigError) as info:
        build_objective("span_corruption", **(t5_wiring() | {"sentinel_ids": SENTINELS} | params))
    assert key in str(info.value)
