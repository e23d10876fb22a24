"""Batches shaped like the loader's: [CLS] tokens [SEP] [PAD]..., word starts, the data stage's special ids."""

from __future__ import annotations

import torch

VOCAB = 1000
PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
SENTINELS = list(range(5, 105))
SPECIAL = [PAD, UNK, CLS, SEP, MASK, *SENTINELS]


def make_batch(rows: int, length: int, seed: int = 0, word_start_p: float = 0.6, min_len: int = 3) -> dict:
    """Right-padded rows of random lengths with [CLS]/[SEP], random word starts and pass-through keys."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(105, VOCAB, (rows, length), generator=g)
    lengths = torch.randint(min(min_len, length), length + 1, (rows,), generator=g)
    positions = torch.arange(length)
    attention = (positions < lengths.view(-1, 1)).long()
    ids = ids.masked_fill(attention == 0, PAD)
    ids[:, 0] = CLS
    ids[torch.arange(rows), lengths - 1] = SEP
    word_starts = (torch.rand(rows, length, generator=g) < word_start_p) & (attention == 1)
    return {"input_ids": ids, "attention_mask": attention, "word_starts": word_starts,
            "token_type_ids": torch.zeros_like(ids)}


def mlm_wiring() -> dict:
    return {"vocab_size": VOCAB, "mask_id": MASK, "special_ids": SPECIAL}


def t5_wiring() -> dict:
    return {"vocab_size": VOCAB, "eos_id": SEP, "pad_id": PAD}
