"""Tokenizers: the fixed special-token layout, loading tokenizer.json / vocab.txt, hashes, bad input."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maskbench.data.tokenizer import (KINDS, MIN_VOCAB_SIZE, SPECIAL_TOKENS, _pieces, build_untrained,
                                      load_tokenizer, special_ids, tokenizer_hash, train_tokenizer)
from maskbench.errors import DataError

TEXTS = ["the quick brown fox jumps over the lazy dog.", "a lazy dog sleeps, the fox runs!",
         "foxes and dogs are friends; unbelievable friendships happen."] * 20


@pytest.mark.parametrize("kind", KINDS)
def test_special_ids_are_fixed_for_every_kind(kind, tmp_path):
    out = tmp_path / "tok.json"
    tok = train_tokenizer(None, kind=kind, vocab_size=300, out_path=out, texts=TEXTS, min_frequency=1)
    ids = special_ids(load_tokenizer(out))
    assert (ids.pad, ids.unk, ids.cls, ids.sep, ids.mask) == (0, 1, 2, 3, 4)
    assert ids.sentinels == list(range(5, 105))
    assert ids.eos == ids.sep and ids.all == list(range(105))
    pair = tok.encode("the fox", "a dog")
    assert pair.ids[0] == 2 and pair.ids.count(3) == 2
    assert pair.type_ids[-1] == 1 and pair.type_ids[0] == 0
    assert tokenizer_hash(tok) == tokenizer_hash(load_tokenizer(out))


@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
def test_training_is_deterministic_and_hash_tracks_content(kind):
    """Many equally frequent merges here: the library's own WordPiece trainer breaks those ties at random."""
    big, small = (300, 180) if kind == "wordpiece" else (500, 400)  # byte-level BPE starts from 256 bytes
    a = train_tokenizer(None, kind=kind, vocab_size=big, texts=TEXTS, min_frequency=1)
    b = train_tokenizer(None, kind=kind, vocab_size=big, texts=TEXTS, min_frequency=1)
    c = train_tokenizer(None, kind=kind, vocab_size=small, texts=TEXTS, min_frequency=1)
    assert tokenizer_hash(a) == tokenizer_hash(b) != tokenizer_hash(c)


def test_train_from_files(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("\r\n".join(TEXTS) + "\r\n", encoding="utf-8")
    tok = train_tokenizer([path], kind="unigram", vocab_size=200, min_frequency=1)
    assert tok.token_to_id("[MASK]") == 4


def _bert_vocab(tmp_path, extra=("the", "fox", "##es", "dog", "un", "##believ", "##able", ".", ",")):
    tokens = ["[PAD]"] + [f"[unused{i}]" for i in range(3)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(extra)
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return path


def test_load_bert_vocab_txt_and_folder(tmp_path):
    path = _bert_vocab(tmp_path)
    for source in (path, tmp_path):
        tok = load_tokenizer(source)
        ids = special_ids(tok)
        assert (ids.pad, ids.unk, ids.cls, ids.sep, ids.mask) == (0, 4, 5, 6, 7)
        assert ids.sentinels == []
        enc = tok.encode("The foxes, unbelievable.")
        assert enc.tokens == ["[CLS]", "the", "fox", "##es", ",", "un", "##believ", "##able", ".", "[SEP]"]
        assert enc.word_ids[1:-1] == [0, 1, 1, 2, 3, 3, 3, 4]


def test_folder_prefers_tokenizer_json(tmp_path):
    _bert_vocab(tmp_path)
    train_tokenizer(None, vocab_size=300, texts=TEXTS, out_path=tmp_path / "tokenizer.json", min_frequency=1)
    assert special_ids(load_tokenizer(tmp_path)).cls == 2


def test_unknown_kind_suggests_the_nearest():
    with pytest.raises(DataError, match="unknown tokenizer kind 'wordpeice'.*did you mean 'wordpiece'"):
        train_tokenizer(None, kind="wordpeice", vocab_size=300, texts=TEXTS)


def test_vocabulary_too_small_for_the_special_tokens():
    with pytest.raises(DataError, match=f"too small for the {len(SPECIAL_TOKENS)} special tokens.*{MIN_VOCAB_SIZE}"):
        train_tokenizer(None, vocab_size=100, texts=TEXTS)


def test_empty_training_input(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("\n\n   \n", encoding="utf-8")
    with pytest.raises(DataError, match="inputs are empty"):
        train_tokenizer([path], vocab_size=300)


@pytest.mark.parametrize("content,message", [
    ("{not json", "not a valid tokenizer.json"),
    (None, "tokenizer not found"),
])
def test_bad_tokenizer_files(tmp_path, content, message):
    path = tmp_path / "tok.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        load_tokenizer(path)


def test_vocab_txt_without_special_tokens(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("a\nb\nc\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"lacks the special tokens \[PAD\] \[UNK\] \[CLS\] \[SEP\] \[MASK\]"):
        load_tokenizer(path)


def test_wordpiece_training_matches_the_library_vocabulary_shape():
    """Word-initial pieces and ##continuations, every character of the text covered, no [UNK] on it."""
    tok = train_tokenizer(None, kind="wordpiece", vocab_size=400, texts=TEXTS, min_frequency=1)
    vocab = tok.get_vocab()
    assert "##s" in vocab and "f" in vocab and not any(t.startswith("##") and len(t) == 2 for t in vocab)
    for text in TEXTS[:3]:
        enc = tok.encode(text, add_special_tokens=False)
        assert 1 not in enc.ids
        assert tok.decode(enc.ids).replace(" ;", ";") == text


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=60, deadline=None)
@given(text=st.lists(st.tuples(st.text("abc,.é", min_size=1, max_size=5), st.sampled_from([" ", "  ", "\t ", " \t "])),
                     min_size=1, max_size=30).map(lambda parts: "".join(w + s for w, s in parts)),
       limit=st.integers(12, 40))
def test_cutting_a_long_text_keeps_its_words(kind, text, limit):
    """Training cuts long lines into pieces; each kind's pre-tokenizer must see the words of the whole line."""
    tok = build_untrained(kind)

    def words(piece: str) -> list[str]:
        return [w for w, _ in tok.pre_tokenizer.pre_tokenize_str(tok.normalizer.normalize_str(piece))]

    pieces = list(_pieces(text, limit))
    assert all(0 < len(p) <= limit for p in pieces) and " ".join(pieces) == text
    assert [w for p in pieces for w in words(p)] == words(text)


# Peak memory of training on a short text, then on 8x more of the same text, then on 4x of it as one line.
# A trainer that holds its input (or hands the library whole lines, which it copies ~17 bytes per byte)
# grows by 70-200 MB here; a streaming one by a few MB (the one-line text itself is 1.3 MB).
MEMORY_PROBE = """
import random, resource, sys
from maskbench.data.tokenizer import train_tokenizer

rng = random.Random(0)
vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(3000)]
weights = [1 / rank for rank in range(1, len(vocab) + 1)]  # Zipf's law: a few words are most of the text
lines = [" ".join(rng.choices(vocab, weights, k=12)) for _ in range(4000)]

def peak_mb(texts):
    train_tokenizer(None, kind=sys.argv[1], vocab_size=400, texts=texts)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

base = peak_mb(iter(lines))
longer = peak_mb(line for _ in range(8) for line in lines)
one_line = peak_mb(iter([" ".join(lines * 4)]))
print(longer - base, one_line - longer)
"""


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in kB on Linux only")
@pytest.mark.parametrize("kind", KINDS)
def test_training_streams_its_input(kind):
    run = subprocess.run([sys.executable, "-c", MEMORY_PROBE, kind], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    more_text, one_line = map(float, run.stdout.split())
    assert more_text < 24, f"8x more text raised peak memory by {more_text:.0f} MB"
    assert one_line < 24, f"the same text as one line raised peak memory by {one_line:.0f} MB"
