"""PretrainBatches: layout, determinism, resume by index, rank slicing, NSP/SOP labels, raw windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from maskbench.data.loader import PretrainBatches
from maskbench.data.shards import Shards
from maskbench.errors import ConfigError

PAD, CLS, SEP = 0, 2, 3


@pytest.fixture(scope="module")
def shards(synth_shards):
    return Shards.open(synth_shards)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_single_segment_layout_and_dtypes(shards):
    batches = PretrainBatches(shards, "train", batch_size=8, seq_len=64, seed=0)
    batch = batches.get(0)
    assert batch["input_ids"].shape == (8, 64) and batch["input_ids"].dtype == torch.int64
    assert batch["attention_mask"].dtype == torch.int64 and batch["word_starts"].dtype == torch.bool
    ids = batch["input_ids"]
    assert (ids[:, 0] == CLS).all()
    lengths = batch["attention_mask"].sum(1)
    assert (ids[torch.arange(8), lengths - 1] == SEP).all()
    assert ((ids == PAD) == (batch["attention_mask"] == 0)).all()
    assert (batch["token_type_ids"] == 0).all()
    assert not batch["word_starts"][batch["attention_mask"] == 0].any()


def test_windows_are_consecutive_slices_of_the_stream(shards):
    batches = PretrainBatches(shards, "train", batch_size=4, seq_len=32, seed=5)
    tokens = np.asarray(shards.split("train").tokens)
    _, _, windows = batches._rows(3)
    batch = batches.get(3)
    for row, w in enumerate(windows):
        start, end = batches.window_starts[w], batches.window_ends[w]
        n = end - start
        assert batch["input_ids"][row, 1:1 + n].tolist() == tokens[start:end].tolist()


def test_same_index_same_batch_and_resume(shards):
    a = PretrainBatches(shards, "train", batch_size=4, seq_len=64, seed=7, pairs="nsp")
    b = PretrainBatches(shards, "train", batch_size=4, seq_len=64, seed=7, pairs="nsp")
    run = list(a.iterate(0, 6))
    resumed = list(b.iterate(3, 6))
    assert all(_same(x, y) for x, y in zip(run[3:], resumed))
    assert _same(a.get(2), b.get(2))
    c = PretrainBatches(shards, "train", batch_size=4, seq_len=64, seed=8, pairs="nsp")
    assert not _same(a.get(2), c.get(2))


def test_epochs_wrap_with_a_new_permutation(shards):
    batches = PretrainBatches(shards, "validation", batch_size=16, seq_len=64, seed=1)
    n = len(batches)
    assert n == -(-batches.num_windows // 16)
    first_epoch = torch.cat([batches.get(i)["input_ids"] for i in range(n)])
    second_epoch = torch.cat([batches.get(n + i)["input_ids"] for i in range(n)])
    assert not torch.equal(first_epoch, second_epoch)
    # every window appears in an epoch (the last batch wraps around to fill up)
    seen = np.concatenate([batches._rows(i)[2] for i in range(n)])
    assert set(seen.tolist()) == set(range(batches.num_windows))


@pytest.mark.parametrize("pairs", [None, "nsp", "sop"])
def test_ranks_partition_the_global_batch(shards, pairs):
    whole = PretrainBatches(shards, "train", batch_size=4, seq_len=64, seed=3, pairs=pairs, world_size=3)
    glob = whole.get_global(5)
    parts = [PretrainBatches(shards, "train", batch_size=4, seq_len=64, seed=3, pairs=pairs, rank=r,
                             world_size=3).get(5) for r in range(3)]
    for key in glob:
        assert torch.equal(torch.cat([p[key] for p in parts]), glob[key])
    assert glob["input_ids"].shape[0] == 12


def _segments(batch, row):
    ids = batch["input_ids"][row]
    seps = (ids == SEP).nonzero().flatten().tolist()
    return ids[1:seps[0]].tolist(), ids[seps[0] + 1:seps[1]].tolist(), seps


def reference_chunks(sentence_lengths: list[int], target_seq_length: int) -> list[tuple[int, int]]:
    """Port of the chunking loop of google-research/albert `create_instances_from_document` (the same as
    BERT's), for a fixed target: (first sentence, end sentence) of every chunk."""
    chunks, current_chunk, current_length, i = [], [], 0, 0
    while i < len(sentence_lengths):
        current_chunk.append(i)
        current_length += sentence_lengths[i]
        if i == len(sentence_lengths) - 1 or current_length >= target_seq_length:
            if current_chunk:
                chunks.append((current_chunk[0], current_chunk[-1] + 1))
            current_chunk, current_length = [], 0
        i += 1
    return chunks


def reference_truncate_seq_pair(tokens_a: list, tokens_b: list, max_num_tokens: int, rng) -> None:
    """Port of the reference's `truncate_seq_pair`."""
    while True:
        total_length = len(tokens_a) + len(tokens_b)
        if total_length <= max_num_tokens:
            break
        trunc_tokens = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
        if rng.random() < 0.5:
            del trunc_tokens[0]
        else:
            trunc_tokens.pop()


@pytest.mark.parametrize("pairs", ["nsp", "sop"])
def test_chunks_are_the_references_whole_sentence_chunks(shards, pairs):
    batches = PretrainBatches(shards, "train", batch_size=8, seq_len=48, seed=5, pairs=pairs)
    arrays = shards.split("train")
    offsets = np.asarray(arrays.sentence_offsets)
    expected = []
    for doc in range(arrays.num_documents):
        first, last = batches._doc_first_sentence[doc], batches._doc_last_sentence[doc] + 1
        lengths = np.diff(offsets[first:last + 1]).tolist()
        expected += [(doc, first + a, first + b) for a, b in reference_chunks(lengths, int(batches.doc_targets[doc]))]
    got = sorted(zip(batches.window_docs.tolist(), batches.window_first_sentence.tolist(),
                     batches.window_end_sentence.tolist()))
    assert got == sorted(expected)
    # short_seq_prob: about 10% of the documents get a shorter target, uniform in [2, seq_len - 3]
    targets = batches.doc_targets
    share = float(np.mean(targets < 45))
    assert abs(share - 0.1) < 4 * np.sqrt(0.09 / len(targets)) and targets.min() >= 2
    none = PretrainBatches(shards, "train", batch_size=8, seq_len=48, seed=5, pairs=pairs, short_seq_prob=0.0)
    assert (none.doc_targets == 45).all()


@settings(max_examples=200, deadline=None)
@given(len1=st.integers(1, 60), len2=st.integers(1, 60), limit=st.integers(2, 70))
def test_truncation_counts_match_the_references_truncate_seq_pair(len1, len2, limit):
    import random

    from maskbench.data.encoding import truncation

    a, b = list(range(len1)), list(range(len2))
    reference_truncate_seq_pair(a, b, limit, random.Random(len1 * 1000 + len2))
    trim1, trim2 = truncation(np.array([len1]), np.array([len2]), limit)
    assert (len1 - int(trim1[0]), len2 - int(trim2[0])) == (len(a), len(b))


@pytest.mark.parametrize("pairs", ["nsp", "sop"])
def test_pair_labels_match_the_segments(shards, pairs):
    batches = PretrainBatches(shards, "train", batch_size=64, seq_len=64, seed=11, pairs=pairs)
    arrays = shards.split("train")
    tokens = np.asarray(arrays.tokens)
    doc_ids = np.asarray(arrays.doc_ids)
    sentence_ids = np.asarray(arrays.sentence_ids)
    epoch, position, windows = batches._rows(2)
    fields = batches._pair_fields(windows, np.random.default_rng([11, epoch, position, 0x5E17]))
    batch = batches.get(2)
    labels = batch["sentence_label"].tolist()
    assert 15 < sum(labels) < 49  # about half

    def starts_sentence(i):
        return i == 0 or sentence_ids[i] != sentence_ids[i - 1]

    for row, label in enumerate(labels):
        a, b, seps = _segments(batch, row)
        s1, n1, s2, n2 = (int(fields[k][row]) for k in ("start1", "len1", "start2", "len2"))
        assert a == tokens[s1:s1 + n1].tolist() and b == tokens[s2:s2 + n2].tolist()
        assert n1 >= 1 and n2 >= 1 and n1 + n2 <= 61  # truncate_seq_pair
        types = batch["token_type_ids"][row]
        assert types[:seps[0] + 1].eq(0).all() and types[seps[0] + 1:seps[1] + 1].eq(1).all()
        a0, an, b0, bn = (int(fields[k][row]) for k in ("a_start", "a_len", "b_start", "b_len"))
        window = windows[row]
        single = batches.window_end_sentence[window] - batches.window_first_sentence[window] == 1
        # A is whole sentences from the chunk's start; B begins at a sentence start
        assert a0 == batches.window_starts[window] and starts_sentence(a0) and starts_sentence(b0)
        assert starts_sentence(a0 + an) or a0 + an == len(tokens)
        random_b = doc_ids[b0] != doc_ids[a0] or (label == 1 and (pairs == "nsp" or single))
        if pairs == "nsp" or single:
            assert bool(random_b) == bool(label)
        if not random_b:
            assert b0 == a0 + an and doc_ids[a0] == doc_ids[b0]
            assert b0 + bn == batches.window_ends[window]
        # the laid-out segments are the (maybe swapped) pieces, cut by truncation only
        first, second = ((b0, bn), (a0, an)) if (pairs == "sop" and label == 1 and not single) else ((a0, an), (b0, bn))
        assert first[0] <= s1 and s1 + n1 <= first[0] + first[1]
        assert second[0] <= s2 and s2 + n2 <= second[0] + second[1]


def test_raw_windows_for_t5(shards):
    batches = PretrainBatches(shards, "train", batch_size=4, seq_len=32, seed=0, add_special=False)
    tokens = np.asarray(shards.split("train").tokens)
    batch = batches.get(1)
    _, _, windows = batches._rows(1)
    assert not (batch["input_ids"] == CLS).any()
    for row, w in enumerate(windows):
        start = batches.window_starts[w]
        n = int(batch["attention_mask"][row].sum())
        assert batch["input_ids"][row, :n].tolist() == tokens[start:start + n].tolist()
    assert batch["word_starts"][:, 0].all()


def test_bad_arguments(shards):
    with pytest.raises(ConfigError, match="pairs"):
        PretrainBatches(shards, pairs="mlm")
    with pytest.raises(ConfigError, match="add_special"):
        PretrainBatches(shards, pairs="nsp", add_special=False)
    with pytest.raises(ConfigError, match="rank"):
        PretrainBatches(shards, rank=2, world_size=2)


def test_works_as_a_torch_dataset(shards):
    batches = PretrainBatches(shards, "train", batch_size=2, seq_len=32, seed=0)
    loader = torch.utils.data.DataLoader(batches, batch_size=None, sampler=range(4, 7))
    got = list(loader)
    assert len(got) == 3 and _same(got[0], batches.get(4))


@settings(max_examples=25, deadline=None)
@given(index=st.integers(0, 10_000), batch_size=st.integers(1, 9), seq_len=st.integers(8, 80),
       pairs=st.sampled_from([None, "nsp", "sop"]), seed=st.integers(0, 2**31))
def test_every_row_starts_with_cls_and_is_well_formed(shards, index, batch_size, seq_len, pairs, seed):
    batch = PretrainBatches(shards, "train", batch_size=batch_size, seq_len=seq_len, seed=seed, pairs=pairs).get(index)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.shape == (batch_size, seq_len)
    assert (ids[:, 0] == CLS).all() and batch["word_starts"][:, 0].all()
    n_sep = (ids == SEP).sum(1)
    assert (n_sep == (2 if pairs else 1)).all()
    # attention covers a prefix: no hole before the padding
    assert (mask[:, 1:] <= mask[:, :-1]).all()
    if pairs:
        assert set(batch["sentence_label"].tolist()) <= {0, 1}
        seps = (ids == SEP).int().argmax(1)
        assert (seps >= 2).all()  # A is never empty


@pytest.mark.parametrize("max_tokens", [1000, 1234, 64 * 20])
def test_max_tokens_keeps_exactly_the_first_tokens(shards, max_tokens):
    """Every token a truncated loader yields over an epoch is one of the first N, each exactly once."""
    batches = PretrainBatches(shards, "train", batch_size=4, seq_len=64, seed=1, add_special=False,
                              max_tokens=max_tokens)
    assert batches.num_tokens == max_tokens
    stream = np.asarray(shards.split("train").tokens[:max_tokens], dtype=np.int64)
    seen = []
    for index in range(len(batches)):
        batch = batches.get_global(index)
        for row, mask in zip(batch["input_ids"].numpy(), batch["attention_mask"].numpy()):
            seen.append(row[mask.astype(bool)])
    windows = batches.num_windows
    flat = np.concatenate(seen[:windows] if len(seen) >= windows else seen)
    assert len(flat) == max_tokens
    assert sorted(flat.tolist()) == sorted(stream.tolist())
    starts = {int(s) for s in batches.window_starts}
    assert starts == set(range(0, max_tokens, 64))


def test_max_tokens_is_repeatable_and_a_prefix_of_the_full_stream(shards):
    full = PretrainBatches(shards, "train", batch_size=8, seq_len=64, seed=2)
    cut = PretrainBatches(shards, "train", batch_size=8, seq_len=64, seed=2, max_tokens=2048)
    again = PretrainBatches(shards, "train", batch_size=8, seq_len=64, seed=2, max_tokens=2048)
    for index in (0, 3, 17):
        assert _same(cut.get(index), again.get(index))
    assert np.array_equal(cut.window_starts, full.window_starts[:len(cut.window_starts)])
    assert cut.window_ends.max() == 2048
    big = PretrainBatches(shards, "train", batch_size=8, seq_len=64, seed=2, max_tokens=10**12)
    assert big.num_tokens == full.num_tokens and _same(big.get(5), full.get(5))


def test_max_tokens_refuses_pairs_and_nonpositive(shards):
    with pytest.raises(ConfigError):
        PretrainBatches(shards, "train", batch_size=2, seq_len=64, pairs="nsp", max_tokens=1000)
    with pytest.raises(ConfigError):
        PretrainBatches(shards, "train", batch_size=2, seq_len=64, max_tokens=0)
