"""Shards: contents equal the tokenization, manifest and hashes, dtypes, determinism, atomic bad-input handling."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maskbench.data.shards import PrepareConfig, Shards, encode_sentences, prepare
from maskbench.data.sources import iter_documents
from maskbench.data.tokenizer import load_tokenizer, tokenizer_hash, train_tokenizer
from maskbench.errors import ConfigError, DataError, MaskbenchError
from maskbench.io import sha256_file


def test_manifest_records_counts_dtype_hashes(synth_shards, synth_tokenizer):
    shards = Shards.open(synth_shards, verify=True)
    m = shards.manifest
    assert m["format"] == "maskbench-shards" and m["format_version"] == 1
    assert m["dtype"] == "uint16" and m["seq_len"] == 64
    assert m["tokenizer_hash"] == tokenizer_hash(load_tokenizer(synth_tokenizer))
    for name in ("train", "validation"):
        record = m["splits"][name]
        arrays = shards.split(name)
        assert record["tokens"] == len(arrays.tokens) == arrays.doc_offsets[-1] == arrays.sentence_offsets[-1] > 0
        assert record["documents"] == arrays.num_documents and record["sentences"] == arrays.num_sentences
        assert arrays.tokens.dtype == np.uint16 and arrays.word_starts.dtype == np.bool_
        for info in record["files"].values():
            assert sha256_file(synth_shards / info["path"]) == info["sha256"]
    assert 0.03 < m["splits"]["validation"]["documents"] / m["splits"]["train"]["documents"] < 0.2


def test_shard_arrays_equal_the_direct_tokenization(synth_shards, synth_dir):
    """Concatenating both splits' documents in order gives back every document's tokens exactly."""
    shards = Shards.open(synth_shards)
    tok = shards.tokenizer()
    docs = list(iter_documents([synth_dir / "corpus.txt"]))
    splits = {n: shards.split(n) for n in ("train", "validation")}
    cursor = {n: 0 for n in splits}
    for doc in docs[:300]:
        ids = [i for s in doc for i in tok.encode(s, add_special_tokens=False).ids]
        hits = []
        for name, arrays in splits.items():
            d = cursor[name]
            if d < arrays.num_documents:
                a, b = arrays.doc_offsets[d], arrays.doc_offsets[d + 1]
                if list(arrays.tokens[a:b]) == ids:
                    hits.append(name)
        assert len(hits) == 1
        name = hits[0]
        arrays = splits[name]
        d = cursor[name]
        a, b = arrays.doc_offsets[d], arrays.doc_offsets[d + 1]
        assert set(arrays.doc_ids[a:b]) == {d}
        sentence_ids = arrays.sentence_ids[a:b]
        assert len(np.unique(sentence_ids)) == len(doc) and np.all(np.diff(sentence_ids.astype(int)) >= 0)
        cursor[name] += 1


def test_same_inputs_give_byte_identical_shards(synth_dir, synth_tokenizer, tmp_path):
    for out in ("a", "b"):
        prepare([synth_dir / "corpus.txt"], synth_tokenizer, tmp_path / out, seq_len=64, val_fraction=0.1, seed=1,
                config=PrepareConfig(seq_len=64, val_fraction=0.1, seed=1, batch_chars=50_000 if out == "a" else 10**7))
    for name in sorted(os.listdir(tmp_path / "a" / "train")):
        assert (tmp_path / "a" / "train" / name).read_bytes() == (tmp_path / "b" / "train" / name).read_bytes()
    assert json.loads((tmp_path / "a" / "manifest.json").read_text())["splits"] == \
        json.loads((tmp_path / "b" / "manifest.json").read_text())["splits"]


def test_rerun_is_a_noop_and_a_different_run_is_refused(synth_dir, synth_tokenizer, tmp_path):
    out = tmp_path / "s"
    first = prepare([synth_dir / "corpus.txt"], synth_tokenizer, out, seq_len=64)
    mtime = (out / "manifest.json").stat().st_mtime_ns
    assert prepare([synth_dir / "corpus.txt"], synth_tokenizer, out, seq_len=64) == first
    assert (out / "manifest.json").stat().st_mtime_ns == mtime
    with pytest.raises(DataError, match="already holds a different preparation"):
        prepare([synth_dir / "corpus.txt"], synth_tokenizer, out, seq_len=32)
    second = prepare([synth_dir / "corpus.txt"], synth_tokenizer, out, seq_len=32, overwrite=True)
    assert second["seq_len"] == 32


def test_non_empty_foreign_output_folder_is_refused(synth_dir, synth_tokenizer, tmp_path):
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(MaskbenchError, match="not empty .*maskbench did not write"):
        prepare([synth_dir / "corpus.txt"], synth_tokenizer, tmp_path, seq_len=64)


def test_failure_midway_leaves_no_output(synth_tokenizer, tmp_path):
    good = tmp_path / "in" / "a.txt"
    good.parent.mkdir()
    good.write_text("fine text here.\n" * 100, encoding="utf-8")
    (tmp_path / "in" / "b.txt").write_bytes(b"more\n\xc3\x28 broken\n")
    with pytest.raises(DataError, match="not valid UTF-8"):
        prepare([tmp_path / "in"], synth_tokenizer, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_input_is_refused(synth_tokenizer, tmp_path, content):
    path = tmp_path / "empty.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match="hold no text"):
        prepare([path], synth_tokenizer, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_two_documents_fill_both_splits(synth_tokenizer, tmp_path):
    path = tmp_path / "two.txt"
    path.write_text("the first document.\nit has two sentences.\n\nthe second one.\n", encoding="utf-8")
    m = prepare([path], synth_tokenizer, tmp_path / "out", val_fraction=0.05)
    assert m["splits"]["train"]["documents"] == 1 and m["splits"]["validation"]["documents"] == 1
    shards = Shards.open(tmp_path / "out", verify=True)
    val = shards.split("validation")
    assert set(val.doc_ids) == {0} and list(val.sentence_offsets) == [0, len(val.tokens)]
    train = shards.split("train")
    assert len(set(train.sentence_ids)) == 2 and train.sentence_offsets[-1] == len(train.tokens)


def test_no_validation_split_when_fraction_is_zero(synth_dir, synth_tokenizer, tmp_path):
    m = prepare([synth_dir / "corpus.txt"], synth_tokenizer, tmp_path / "out", val_fraction=0.0)
    assert m["splits"]["validation"]["tokens"] == 0
    assert len(Shards.open(tmp_path / "out").split("validation").tokens) == 0


def test_large_vocabulary_uses_uint32(tmp_path):
    words = [f"w{i}" for i in range(70_000)]
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words) + "\n", encoding="utf-8")
    text = tmp_path / "t.txt"
    text.write_text("w69999 w1 w65536\nw3\n", encoding="utf-8")
    m = prepare([text], vocab, tmp_path / "out", val_fraction=0.0)
    assert m["dtype"] == "uint32"
    tokens = Shards.open(tmp_path / "out").split("train").tokens
    assert tokens.dtype == np.uint32 and list(tokens) == [70004, 6, 65541, 8]


def test_corruption_and_truncation_are_detected(synth_dir, synth_tokenizer, tmp_path):
    out = tmp_path / "s"
    prepare([synth_dir / "corpus.txt"], synth_tokenizer, out)
    tokens = out / "train" / "tokens.bin"
    data = bytearray(tokens.read_bytes())
    data[10] ^= 0xFF
    tokens.write_bytes(bytes(data))
    Shards.open(out)  # sizes still match: only the hash can tell
    with pytest.raises(DataError, match="does not match its sha256"):
        Shards.open(out, verify=True)
    tokens.write_bytes(bytes(data[:-2]))
    with pytest.raises(DataError, match="truncated or corrupted"):
        Shards.open(out)
    with pytest.raises(DataError, match="no manifest.json"):
        Shards.open(tmp_path)


def test_config_is_validated():
    with pytest.raises(ConfigError, match="val_fraction"):
        PrepareConfig(val_fraction=0.9)
    with pytest.raises(ConfigError, match="did you mean 'lines'"):
        PrepareConfig(sentences="line")


_WORDS = st.text(alphabet="abcdefghij", min_size=1, max_size=12)


@pytest.fixture(scope="module")
def small_wordpiece():
    texts = ["abc def ghij aabb ccdd eeff gghh iijj abcdefghij"] * 5
    return train_tokenizer(None, kind="wordpiece", vocab_size=150, texts=texts, min_frequency=1)


@settings(max_examples=40, deadline=None)
@given(sentences=st.lists(st.lists(_WORDS, min_size=1, max_size=8), min_size=1, max_size=5))
def test_word_starts_mark_exactly_the_first_piece_of_each_word(small_wordpiece, sentences):
    texts = [" ".join(words) for words in sentences]
    ids, starts, lengths = encode_sentences(small_wordpiece, texts)
    assert len(ids) == len(starts) == lengths.sum()
    assert starts.sum() == sum(len(words) for words in sentences)
    pieces = [small_wordpiece.id_to_token(int(i)) for i in ids]
    assert all(s == (not p.startswith("##")) for s, p in zip(starts, pieces))
