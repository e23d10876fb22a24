"""The one text-pair encoder against BERT's run_classifier layout and `_truncate_seq_pair`."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, models, pre_tokenizers

from maskbench.data.encoding import encode_pairs
from maskbench.errors import MaskbenchError

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = [f"w{i}" for i in range(40)]


def word_tokenizer() -> Tokenizer:
    vocab = {token: i for i, token in enumerate(SPECIALS + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return tok


def reference_truncate_seq_pair(tokens_a: list, tokens_b: list, max_length: int) -> None:
    """google-research/bert run_classifier.py `_truncate_seq_pair`, as written there."""
    while True:
        total_length = len(tokens_a) + len(tokens_b)
        if total_length <= max_length:
            break
        if len(tokens_a) > len(tokens_b):
            tokens_a.pop()
        else:
            tokens_b.pop()


def reference_example(a: list[int], b: list[int] | None, max_seq_length: int) -> tuple[list[int], list[int]]:
    """run_classifier's `convert_single_example`: ids and segment ids (CLS=2, SEP=3 here)."""
    a = list(a)
    if b is not None:
        b = list(b)
        reference_truncate_seq_pair(a, b, max_seq_length - 3)
    else:
        a = a[:max_seq_length - 2]
    ids, segments = [2] + a + [3], [0] * (len(a) + 2)
    if b is not None:
        ids += b + [3]
        segments += [1] * (len(b) + 1)
    return ids, segments


rows = st.lists(st.integers(0, len(WORDS) - 1), min_size=0, max_size=25)


@settings(max_examples=60, deadline=None)
@given(examples=st.lists(st.tuples(rows, rows), min_size=1, max_size=6), pair=st.booleans(),
       max_length=st.integers(4, 40))
def test_layout_and_truncation_match_bert_run_classifier(examples, pair, max_length):
    tok = word_tokenizer()
    texts = [" ".join(WORDS[i] for i in a) for a, _ in examples]
    seconds = [" ".join(WORDS[i] for i in b) for _, b in examples] if pair else None
    encoded = encode_pairs(tok, texts, seconds, max_length)
    for row, (a, b) in enumerate(examples):
        ids, segments = reference_example([i + len(SPECIALS) for i in a],
                                          [i + len(SPECIALS) for i in b] if pair else None, max_length)
        lo, n = encoded.offsets[row], encoded.lengths[row]
        assert encoded.ids[lo:lo + n].tolist() == ids
        assert encoded.type_ids[lo:lo + n].tolist() == segments


def test_padded_arrays_and_word_ids():
    tok = word_tokenizer()
    batch = encode_pairs(tok, [["w1", "w2"], ["w3"]], max_length=8, pretokenized=True).padded(pad_id=0)
    assert batch["input_ids"].tolist() == [[2, 6, 7, 3], [2, 8, 3, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    assert batch["word_ids"].tolist() == [[-1, 0, 1, -1], [-1, 0, -1, -1]]


def test_t5_style_has_no_cls_and_ends_segments_with_eos():
    encoded = encode_pairs(word_tokenizer(), ["w1 w2"], ["w3"], max_length=10, style="t5")
    assert encoded.ids.tolist() == [6, 7, 3, 8, 3]
    assert encoded.type_ids.tolist() == [0, 0, 0, 1, 1]


def test_a_tokenizer_that_pads_itself_is_not_padded_twice():
    tok = word_tokenizer()
    tok.enable_padding(length=12)
    tok.enable_truncation(max_length=3)
    assert encode_pairs(tok, ["w1 w2 w3 w4"], max_length=16).lengths.tolist() == [6]


@pytest.mark.parametrize("texts, pairs, max_length", [([], None, 8), (["w1"], ["w2"], 3), (["w1"], ["a", "b"], 8)])
def test_bad_requests_are_one_line_errors(texts, pairs, max_length):
    with pytest.raises(MaskbenchError):
        encode_pairs(word_tokenizer(), texts, pairs, max_length)
