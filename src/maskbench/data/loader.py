"""Fixed-length pretraining batches from prepared shards: deterministic, resumable by index, rank-aware.

A batch is a pure function of (seed, index): epoch `e = index // len(batches)` visits the windows in a
permutation seeded by (seed, e), and every random choice for sentence pairs is drawn from a generator
seeded by (seed, e, position). So the trainer resumes by saving one integer, and two processes asked for
the same index build the same batch. With `world_size` > 1 each global batch holds
`batch_size * world_size` examples and rank r takes rows [r*batch_size, (r+1)*batch_size); the random draws
are made for the whole global batch before slicing, so the union over ranks equals `get_global(index)`.

Windows:
- single segments (`pairs=None`): the split's token stream is cut into consecutive windows of
  `seq_len - 2` tokens (documents are packed back to back, as in RoBERTa's FULL-SENTENCES), then laid out
  as `[CLS] window [SEP] [PAD]...`;
- raw windows (`add_special=False`, for the T5 objectives): consecutive windows of exactly `seq_len` tokens;
- sentence pairs (`pairs="nsp"|"sop"`): each document is cut into near-equal chunks of at most
  `seq_len - 3` tokens; a chunk is split into A and B at a random sentence boundary inside it (at a random
  token when it holds a single sentence). NSP: with probability 1/2 B is replaced by a segment starting at
  a random sentence of another document (label 1 = random next). SOP: with probability 1/2 A and B are
  swapped (label 1 = swapped). Layout `[CLS] A [SEP] B [SEP]`, token_type_ids 0 for `[CLS] A [SEP]`, 1 after.

`max_tokens = N` keeps only the first N tokens of the split, in the order the shards store them (documents in
the order `maskbench prepare` read them: input files in the order given, documents in file order); the
window containing token N is cut there and later windows are dropped. This is the T5 study's data-size
knob (Raffel et al. Table 9): a fixed step budget then repeats the data steps·batch·seq / N times.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from .shards import Shards

PAIR_TASKS = (None, "nsp", "sop")


def _seeded(*words: int) -> np.random.Generator:
    return np.random.default_rng([int(w) for w in words])


def _load_torch():
    import torch

    try:
        from torch.utils.data import Dataset
    except ImportError:  # pragma: no cover
        Dataset = object
    return torch, Dataset


_torch, _Dataset = _load_torch()


class PretrainBatches(_Dataset):
    """Batches of a shard split; `get(index)` for any index >= 0 (wrapping epochs), `len()` per epoch.

    Also a map-style `torch.utils.data.Dataset` whose items are whole batches: use it with
    `DataLoader(batches, batch_size=None, sampler=range(start, stop))` to prefetch in workers.
    """

    def __init__(self, shards_dir: str | Path | Shards, split: str = "train", batch_size: int = 32,
                 seq_len: int = 128, seed: int = 0, pairs: str | None = None, add_special: bool = True,
                 rank: int = 0, world_size: int = 1, max_tokens: int | None = None):
        if pairs not in PAIR_TASKS:
            raise ConfigError(f"must be one of none, nsp, sop, got {pairs!r}", "pairs")
        if pairs is not None and not add_special:
            raise ConfigError("sentence pairs need [CLS]/[SEP]; use add_special=True with pairs", "pairs")
        if batch_size < 1:
            raise ConfigError(f"must be >= 1, got {batch_size}", "batch_size")
        if seq_len < 8:
            raise ConfigError(f"must be >= 8, got {seq_len}", "seq_len")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} is outside 0..{world_size - 1}", "rank")
        if seed < 0:
            raise ConfigError(f"must be >= 0, got {seed}", "seed")
        if max_tokens is not None and max_tokens < 1:
            raise ConfigError(f"must be >= 1, got {max_tokens}", "max_tokens")
        if max_tokens is not None and pairs is not None:
            raise ConfigError("truncating the corpus works with single-segment objectives only (NSP/SOP pairs draw "
                              "from whole documents); remove data.max_tokens or the sentence task", "max_tokens")
        self.shards = shards_dir if isinstance(shards_dir, Shards) else Shards.open(shards_dir)
        self.split_name = split
        self.data = self.shards.split(split)
        self.batch_size = batch_size
        self.seq_len = seq_len
        self.seed = seed
        self.pairs = pairs
        self.add_special = add_special
        self.rank = rank
        self.world_size = world_size
        self.global_batch_size = batch_size * world_size
        self.special = self.shards.special_ids()
        self._perm_epoch = -1
        self._perm: np.ndarray | None = None
        n = len(self.data) if max_tokens is None else min(len(self.data), int(max_tokens))
        self.num_tokens = n
        if n == 0:
            raise DataError(f"split '{split}' of {self.shards.root} holds no tokens; prepare more text "
                            f"or use the other split")
        if pairs is None:
            width = seq_len - 2 if add_special else seq_len
            self.window_starts = np.arange(0, n, width, dtype=np.int64)
            self.window_ends = np.minimum(self.window_starts + width, n)
            self.window_docs = None
        else:
            self.window_starts, self.window_ends, self.window_docs = self._pair_chunks(seq_len - 3)
            if len(self.window_starts) == 0:
                raise DataError(f"split '{split}' has no document of 2 or more tokens; sentence pairs need them")
            self._doc_first_sentence = np.searchsorted(self.data.sentence_offsets, self.data.doc_offsets[:-1])
            self._doc_last_sentence = np.searchsorted(self.data.sentence_offsets, self.data.doc_offsets[1:]) - 1
        self.num_windows = len(self.window_starts)

    def _pair_chunks(self, width: int):
        """Cut every document into ceil(len/width) near-equal chunks; drop chunks of fewer than 2 tokens."""
        offsets = np.asarray(self.data.doc_offsets, dtype=np.int64)
        lengths = np.diff(offsets)
        pieces = -(-lengths // width)
        per_chunk = np.where(pieces > 0, -(-lengths // np.maximum(pieces, 1)), 0)
        doc = np.repeat(np.arange(len(lengths)), pieces)
        first_chunk = np.cumsum(pieces) - pieces
        j = np.arange(len(doc)) - np.repeat(first_chunk, pieces)
        starts = offsets[doc] + j * per_chunk[doc]
        ends = np.minimum(starts + per_chunk[doc], offsets[doc + 1])
        keep = ends - starts >= 2
        return starts[keep], ends[keep], doc[keep]

    def __len__(self) -> int:
        return -(-self.num_windows // self.global_batch_size)

    @property
    def epoch_size(self) -> int:
        return len(self)

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:
            self._perm = _seeded(self.seed, epoch, 0x9E12).permutation(self.num_windows)
            self._perm_epoch = epoch
        return self._perm

    def _rows(self, index: int) -> tuple[int, int, np.ndarray]:
        if index < 0:
            raise IndexError(f"batch index must be >= 0, got {index}")
        epoch, position = divmod(int(index), len(self))
        perm = self._permutation(epoch)
        take = (position * self.global_batch_size + np.arange(self.global_batch_size)) % self.num_windows
        return epoch, position, perm[take]

    def get(self, index: int) -> dict:
        """This rank's share of global batch `index`."""
        lo = self.rank * self.batch_size
        return self._build(index, slice(lo, lo + self.batch_size))

    def get_global(self, index: int) -> dict:
        """The whole global batch `index` (all ranks' rows, in rank order)."""
        return self._build(index, slice(None))

    def __getitem__(self, index: int) -> dict:
        return self.get(index)

    def iterate(self, start: int = 0, stop: int | None = None):
        """Batches start, start+1, ... (forever when stop is None): resume by passing the saved index."""
        index = start
        while stop is None or index < stop:
            yield self.get(index)
            index += 1

    def _build(self, index: int, rows_slice: slice) -> dict:
        epoch, position, windows = self._rows(index)
        if self.pairs is None:
            starts = self.window_starts[windows][rows_slice]
            lengths = (self.window_ends[windows] - self.window_starts[windows])[rows_slice]
            if not self.add_special:
                return self._raw(starts, lengths)
            zero = np.zeros_like(starts)
            return self._layout(starts, lengths, zero, zero, pair=False)
        rng = _seeded(self.seed, epoch, position, 0x5E17)
        fields = self._pair_fields(windows, rng)
        fields = {k: v[rows_slice] for k, v in fields.items()}
        batch = self._layout(fields["start1"], fields["len1"], fields["start2"], fields["len2"], pair=True)
        batch["sentence_label"] = _torch.from_numpy(fields["label"].astype(np.int64))
        return batch

    def _pair_fields(self, windows: np.ndarray, rng: np.random.Generator) -> dict:
        """Segment starts/lengths and labels for every row of the global batch (drawn before rank slicing)."""
        rows = len(windows)
        width = self.seq_len - 3
        starts = self.window_starts[windows]
        lengths = self.window_ends[windows] - starts
        coin = rng.random(rows) < 0.5
        scores = rng.random((rows, width))
        fallback = rng.random(rows)
        other_doc = rng.random(rows)
        other_sentence = rng.random(rows)

        columns = np.arange(width)
        inside = columns[None, :] < lengths[:, None]
        positions = np.where(inside, starts[:, None] + columns[None, :], 0)
        sentence = np.asarray(self.data.sentence_ids[positions.ravel()]).reshape(rows, width)
        boundary = inside.copy()
        boundary[:, 0] = False
        boundary[:, 1:] &= sentence[:, 1:] != sentence[:, :-1]
        has_boundary = boundary.any(axis=1)
        cut_at_boundary = np.argmax(np.where(boundary, scores, -1.0), axis=1)
        cut_anywhere = 1 + np.floor(fallback * (lengths - 1)).astype(np.int64)
        len_a = np.where(has_boundary, cut_at_boundary, cut_anywhere).astype(np.int64)
        len_b = lengths - len_a
        start_b = starts + len_a

        if self.pairs == "nsp":
            docs = self.window_docs[windows]
            n_docs = self.data.num_documents
            if n_docs > 1:
                shift = 1 + np.floor(other_doc * (n_docs - 1)).astype(np.int64)
                random_doc = (docs + shift) % n_docs
            else:
                random_doc = docs
            first = self._doc_first_sentence[random_doc]
            last = self._doc_last_sentence[random_doc]
            sentence_pick = first + np.floor(other_sentence * (last - first + 1)).astype(np.int64)
            random_start = np.asarray(self.data.sentence_offsets[sentence_pick], dtype=np.int64)
            random_end = np.asarray(self.data.doc_offsets[random_doc + 1], dtype=np.int64)
            random_len = np.maximum(np.minimum(len_b, random_end - random_start), 1)
            start2 = np.where(coin, random_start, start_b)
            len2 = np.where(coin, random_len, len_b)
            start1, len1 = starts, len_a
        else:  # sop
            start1 = np.where(coin, start_b, starts)
            len1 = np.where(coin, len_b, len_a)
            start2 = np.where(coin, starts, start_b)
            len2 = np.where(coin, len_a, len_b)
        return {"start1": start1, "len1": len1, "start2": start2, "len2": len2, "label": coin.astype(np.int64)}

    def _layout(self, start1, len1, start2, len2, pair: bool) -> dict:
        """`[CLS] seg1 [SEP] (seg2 [SEP]) [PAD]...` by one vectorised gather from the memory maps."""
        special = self.special
        p = np.arange(self.seq_len)[None, :]
        len1 = len1[:, None]
        len2 = len2[:, None]
        in1 = (p >= 1) & (p < 1 + len1)
        sep1 = p == 1 + len1
        in2 = (p >= 2 + len1) & (p < 2 + len1 + len2)
        sep2 = (p == 2 + len1 + len2) if pair else np.zeros_like(in1)
        cls = np.broadcast_to(p == 0, in1.shape)
        source = np.where(in1, start1[:, None] + p - 1, np.where(in2, start2[:, None] + p - 2 - len1, 0))
        content = in1 | in2
        tokens = np.asarray(self.data.tokens[source.ravel()]).reshape(source.shape).astype(np.int64)
        starts = np.asarray(self.data.word_starts[source.ravel()]).reshape(source.shape)
        input_ids = np.where(content, tokens, special.pad)
        input_ids = np.where(cls, special.cls, np.where(sep1 | sep2, special.sep, input_ids))
        attention = content | cls | sep1 | sep2
        word_starts = (content & starts) | cls | sep1 | sep2 | (p == 1) | (in2 & (p == 2 + len1))
        token_type = (in2 | sep2).astype(np.int64)
        return {
            "input_ids": _torch.from_numpy(input_ids),
            "attention_mask": _torch.from_numpy(attention.astype(np.int64)),
            "token_type_ids": _torch.from_numpy(token_type),
            "word_starts": _torch.from_numpy(word_starts & attention),
        }

    def _raw(self, starts, lengths) -> dict:
        p = np.arange(self.seq_len)[None, :]
        inside = p < lengths[:, None]
        source = np.where(inside, starts[:, None] + p, 0)
        tokens = np.asarray(self.data.tokens[source.ravel()]).reshape(source.shape).astype(np.int64)
        word_starts = np.asarray(self.data.word_starts[source.ravel()]).reshape(source.shape) | (p == 0)
        return {
            "input_ids": _torch.from_numpy(np.where(inside, tokens, self.special.pad)),
            "attention_mask": _torch.from_numpy(inside.astype(np.int64)),
            "token_type_ids": _torch.from_numpy(np.zeros(inside.shape, dtype=np.int64)),
            "word_starts": _torch.from_numpy(word_starts & inside),
        }

    def state(self, index: int) -> dict:
        """What a checkpoint stores to resume exactly: the next batch index and the loader's identity."""
        return {"index": int(index), "seed": self.seed, "split": self.split_name, "batch_size": self.batch_size,
                "seq_len": self.seq_len, "pairs": self.pairs, "world_size": self.world_size,
                "num_tokens": self.num_tokens,
                "tokenizer_hash": self.shards.manifest["tokenizer_hash"]}
