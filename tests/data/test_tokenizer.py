"""Tokenizers: the fixed special-token layout, loading tokenizer.json / vocab.txt, hashes, bad input."""

from __future__ import annotations

import pytest

from maskbench.data.tokenizer import (KINDS, MIN_VOCAB_SIZE, SPECIAL_TOKENS, load_tokenizer, special_ids,
                                      tokenizer_hash, train_tokenizer)
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
