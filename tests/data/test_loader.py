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
    for row, label in enumerate(labels):
        a, b, seps = _segments(batch, row)
        s1, n1, s2, n2 = (int(fields[k][row]) for k in ("start1", "len1", "start2", "len2"))
        assert a == tokens[s1:s1 + n1].tolist() and b == tokens[s2:s2 + n2].tolist()
        types = batch["token_type_ids"][row]
        assert types[:seps[0] + 1].eq(0).all() and types[seps[0] + 1:seps[1] + 1].eq(1).all()
        if pairs == "nsp":
            if label == 0:
                assert s2 == s1 + n1 and doc_ids[s1] == doc_ids[s2]
            else:
                assert doc_ids[s2] != doc_ids[s1]
                assert s2 == 0 or sentence_ids[s2] != sentence_ids[s2 - 1]  # starts at a sentence
        else:
            first, second = (s1, s2) if label == 0 else (s2, s1)
            first_len = n1 if label == 0 else n2
            assert second == first + first_len and doc_ids[first] == doc_ids[second]
        # A/B cut at a sentence boundary whenever the chunk holds more than one sentence
        start, end = batches.window_starts[windows[row]], batches.window_ends[windows[row]]
        if len(set(sentence_ids[start:end])) > 1:
            cut = s1 + n1 if (pairs == "nsp" or label == 0) else s2 + n2
            assert sentence_ids[cut] != sentence_ids[cut - 1]


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
