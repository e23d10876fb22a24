"""The one encoder of text pairs: `[CLS] a [SEP] b [SEP]` (T5 style `a </s> b </s>`), and the one
truncation rule, BERT's `truncate_seq_pair`.

Fine-tuning, inspection and probes encode text here; the pretraining loader lays out shard windows the
same way with the same `truncation`. The special tokens are added here, not by a tokenizer's
post-processor, so every tokenizer (trained, vocab.txt, imported) gives the same layout. Everything is
vectorised over the examples (NumPy index arithmetic on the flat token arrays), so a 400k-example split
costs one `encode_batch` per side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import MaskbenchError
from .tokenizer import special_ids


def truncation(len1: np.ndarray, len2: np.ndarray, max_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """Tokens the reference's `truncate_seq_pair` removes from each segment: one at a time from the longer
    (the second on ties) until the pair fits in `max_tokens`."""
    excess = np.maximum(len1 + len2 - max_tokens, 0)
    gap = len1 - len2
    within = excess <= np.abs(gap)
    rest = excess - np.abs(gap)
    trim1 = np.where(within, np.where(gap > 0, excess, 0), np.maximum(gap, 0) + rest // 2)
    trim2 = np.where(within, np.where(gap > 0, 0, excess), np.maximum(-gap, 0) + rest - rest // 2)
    return trim1, trim2


@dataclass
class EncodedPairs:
    """Ragged rows stored flat: row r is `ids[offsets[r]:offsets[r] + lengths[r]]` (and so for the others).
    `word_ids` is the index of the word of `a` each token comes from, -1 elsewhere."""

    ids: np.ndarray  # int64
    type_ids: np.ndarray  # int64: 0 up to and including the first separator, 1 after
    word_ids: np.ndarray  # int64
    offsets: np.ndarray
    lengths: np.ndarray

    def padded(self, pad_id: int) -> dict[str, np.ndarray]:
        """[N, longest] arrays: `input_ids`, `attention_mask`, `token_type_ids`, `word_ids` (-1 on padding)."""
        n, length = len(self.lengths), int(self.lengths.max())
        mask = np.arange(length)[None, :] < self.lengths[:, None]
        out = {}
        for name, values, fill in (("input_ids", self.ids, pad_id), ("token_type_ids", self.type_ids, 0),
                                   ("word_ids", self.word_ids, -1)):
            array = np.full((n, length), fill, dtype=np.int64)
            array[mask] = values
            out[name] = array
        out["attention_mask"] = mask.astype(np.int64)
        return out


def _flat(encodings, field: str) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
    values = np.fromiter((-1 if v is None else v for e in encodings for v in getattr(e, field)), dtype=np.int64,
                         count=int(lengths.sum()))
    return values, lengths


def encode_pairs(tokenizer, texts: Sequence, pairs: Sequence[str] | None = None, max_length: int = 128,
                 pretokenized: bool = False, style: str = "bert") -> EncodedPairs:
    """Encode `texts` (with `pairs` as second segments) as `[CLS] a [SEP] (b [SEP])`, or `a </s> (b </s>)`
    with `style="t5"`, cut to `max_length` tokens by `truncation` (from the end of each segment, as BERT's
    run_classifier). `pretokenized`: each text is a list of words."""
    special = special_ids(tokenizer)
    if len(texts) == 0:
        raise MaskbenchError("no text to encode")
    if pairs is not None and len(pairs) != len(texts):
        raise MaskbenchError(f"{len(texts)} texts but {len(pairs)} second segments")
    lead = 1 if style == "bert" else 0
    budget = max_length - lead - (2 if pairs is not None else 1)
    if budget < 1:
        raise MaskbenchError(f"max_length {max_length} leaves no room for text between the special tokens")
    if tokenizer.padding is not None or tokenizer.truncation is not None:  # this layout pads and cuts itself
        from tokenizers import Tokenizer  # lazy: `maskbench --help` imports this module

        tokenizer = Tokenizer.from_str(tokenizer.to_str())
        tokenizer.no_padding()
        tokenizer.no_truncation()
    enc_a = tokenizer.encode_batch(list(texts), is_pretokenized=pretokenized, add_special_tokens=False)
    a_ids, a_len = _flat(enc_a, "ids")
    a_words, _ = _flat(enc_a, "word_ids")
    if pairs is not None:
        enc_b = tokenizer.encode_batch([str(p) for p in pairs], add_special_tokens=False)
        b_ids, b_len = _flat(enc_b, "ids")
    else:
        b_ids, b_len = np.zeros(1, dtype=np.int64), np.zeros_like(a_len)
    trim_a, trim_b = truncation(a_len, b_len, budget)
    keep_a, keep_b = a_len - trim_a, b_len - trim_b
    a_start = np.concatenate([[0], np.cumsum(a_len)[:-1]])
    b_start = np.concatenate([[0], np.cumsum(b_len)[:-1]])
    lengths = lead + keep_a + 1 + (keep_b + 1 if pairs is not None else 0)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    row = np.repeat(np.arange(len(lengths)), lengths)
    p = np.arange(int(lengths.sum())) - offsets[row]  # position within the row
    ka, kb = keep_a[row], keep_b[row]
    in_a = (p >= lead) & (p < lead + ka)
    in_b = (p > lead + ka) & (p < lead + ka + 1 + kb)
    a_index = np.where(in_a, a_start[row] + p - lead, 0)
    b_index = np.where(in_b, b_start[row] + p - lead - ka - 1, 0)
    ids = np.where(in_a, a_ids[a_index] if len(a_ids) else 0,
                   np.where(in_b, b_ids[b_index] if len(b_ids) else 0, special.sep))
    if lead:
        ids = np.where(p == 0, special.cls, ids)
    type_ids = (p > lead + ka).astype(np.int64)
    word_ids = np.where(in_a, a_words[a_index] if len(a_words) else -1, -1)
    return EncodedPairs(ids=ids.astype(np.int64), type_ids=type_ids, word_ids=word_ids.astype(np.int64),
                        offsets=offsets.astype(np.int64), lengths=lengths.astype(np.int64))
