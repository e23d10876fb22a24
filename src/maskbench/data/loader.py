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
- sentence pairs (`pairs="nsp"|"sop"`), as BERT's and ALBERT's `create_instances_from_document`: each
  document gets a target length, `seq_len - 3` tokens or, with probability `short_seq_prob` (0.1 as the
  reference), a uniform integer in [2, seq_len - 3]; its sentences are gathered into chunks that end at a
  sentence boundary once they hold the target (or at the document's end). A chunk of several sentences is
  split into A and B at a random sentence boundary (`a_end` uniform in 1..sentences - 1). SOP: with
  probability 1/2 A and B are swapped (label 1 = swapped). NSP: with probability 1/2 B is replaced by
  sentences of another document from a random sentence on, up to the target (label 1 = random next). A
  chunk of one sentence gets such a random B in both tasks (label 1), as the reference does. The pair is
  then cut to `seq_len - 3` tokens as the reference's `truncate_seq_pair`: a token at a time from the
  longer segment (B on ties), from its front or back with probability 1/2 each. Not reproduced: NSP's
  "put back" of the unused sentences of a random-next chunk (chunks here are fixed once per loader).
  Layout `[CLS] A [SEP] B [SEP]`, token_type_ids 0 for `[CLS] A [SEP]`, 1 after.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, DataError
from .encoding import truncation
from .shards import Shards

PAIR_TASKS = (None, "nsp", "sop")


def _seeded(*words: int) -> np.random.Generator:
    return np.random.default_rng([int(w) for w in words])


def _load_torch():
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
                 rank: int = 0, world_size: int = 1, max_tokens: int | None = None, short_seq_prob: float = 0.1):
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
        if not 0.0 <= short_seq_prob <= 1.0:
            raise ConfigError(f"must be in [0, 1], got {short_seq_prob}", "short_seq_prob")
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
        self.short_seq_prob = float(short_seq_prob)
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
            self._sentence_offsets = np.asarray(self.data.sentence_offsets, dtype=np.int64)
            self._doc_first_sentence = np.searchsorted(self._sentence_offsets, self.data.doc_offsets[:-1])
            self._doc_last_sentence = np.searchsorted(self._sentence_offsets, self.data.doc_offsets[1:]) - 1
            self._sentence_chunks(seq_len - 3)
            if len(self.window_starts) == 0:
                raise DataError(f"split '{split}' has no document with a token; sentence pairs need them")
        self.num_windows = len(self.window_starts)

    def _sentence_chunks(self, max_tokens: int) -> None:
        """Chunks of whole sentences per document, as the reference's `create_instances_from_document`:
        sentences are added until the chunk holds the document's target length or the document ends.
        The targets are drawn once per loader from its seed; chunks are found for all documents at once,
        one chunk per document per step."""
        offsets = self._sentence_offsets
        first, last = self._doc_first_sentence, self._doc_last_sentence + 1
        docs = np.flatnonzero(last > first)
        rng = _seeded(self.seed, 0xC4C7)
        short = rng.random(len(docs)) < self.short_seq_prob
        targets = np.where(short, rng.integers(2, max(max_tokens, 2) + 1, len(docs)), max_tokens)
        chunk_doc, chunk_first, chunk_end, chunk_target = [], [], [], []
        current, active = first[docs].copy(), np.arange(len(docs))
        while len(active):
            start = current[active]
            end = np.searchsorted(offsets, offsets[start] + targets[active], side="left")
            end = np.clip(end, start + 1, last[docs[active]])
            chunk_doc.append(docs[active])
            chunk_first.append(start)
            chunk_end.append(end)
            chunk_target.append(targets[active])
            current[active] = end
            active = active[end < last[docs[active]]]
        join = (lambda parts: np.concatenate(parts)) if chunk_doc else (lambda parts: np.zeros(0, dtype=np.int64))
        self.window_docs, self.window_first_sentence = join(chunk_doc), join(chunk_first)
        self.window_end_sentence, self.window_targets = join(chunk_end), join(chunk_target)
        self.window_starts = offsets[self.window_first_sentence]
        self.window_ends = offsets[self.window_end_sentence]
        self.doc_targets = np.full(self.data.num_documents, max_tokens, dtype=np.int64)
        self.doc_targets[docs] = targets

    def __len__(self) -> int:
        return -(-self.num_windows // self.global_batch_size)

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
        """Segment starts/lengths and labels for every row of the global batch (drawn before rank slicing);
        `a_*`/`b_*` hold the segments before `truncate_seq_pair`, `start1`... the laid-out, truncated ones."""
        rows = len(windows)
        offsets = self._sentence_offsets
        coin = rng.random(rows) < 0.5
        split_draw = rng.random(rows)
        other_doc = rng.random(rows)
        other_sentence = rng.random(rows)
        first = self.window_first_sentence[windows]
        count = self.window_end_sentence[windows] - first
        single = count == 1
        a_end = first + 1 + np.floor(split_draw * np.maximum(count - 1, 1)).astype(np.int64)
        a_end = np.where(single, first + 1, a_end)
        a_start, a_len = offsets[first], offsets[a_end] - offsets[first]
        b_start, b_len = offsets[a_end], offsets[first + count] - offsets[a_end]
        random_b = single | (coin if self.pairs == "nsp" else False)
        # a random B: another document's sentences from a random one on, until B reaches target - len(A)
        docs = self.window_docs[windows]
        n_docs = self.data.num_documents
        shift = 1 + np.floor(other_doc * max(n_docs - 1, 1)).astype(np.int64)
        random_doc = (docs + shift) % n_docs if n_docs > 1 else docs
        lo, hi = self._doc_first_sentence[random_doc], self._doc_last_sentence[random_doc] + 1
        usable = hi > lo
        random_doc = np.where(usable, random_doc, docs)
        lo, hi = self._doc_first_sentence[random_doc], self._doc_last_sentence[random_doc] + 1
        pick = lo + np.floor(other_sentence * (hi - lo)).astype(np.int64)
        want = np.maximum(self.window_targets[windows] - a_len, 1)
        stop = np.clip(np.searchsorted(offsets, offsets[pick] + want, side="left"), pick + 1, hi)
        b_start = np.where(random_b, offsets[pick], b_start)
        b_len = np.where(random_b, offsets[stop] - offsets[pick], b_len)
        swapped = (coin & ~single) if self.pairs == "sop" else np.zeros(rows, dtype=np.bool_)
        label = random_b if self.pairs == "nsp" else (swapped | single)
        start1, len1 = np.where(swapped, b_start, a_start), np.where(swapped, b_len, a_len)
        start2, len2 = np.where(swapped, a_start, b_start), np.where(swapped, a_len, b_len)
        trim1, trim2 = truncation(len1, len2, self.seq_len - 3)
        front1, front2 = rng.binomial(trim1, 0.5), rng.binomial(trim2, 0.5)
        return {"start1": start1 + front1, "len1": len1 - trim1, "start2": start2 + front2, "len2": len2 - trim2,
                "label": label.astype(np.int64), "a_start": a_start, "a_len": a_len, "b_start": b_start,
                "b_len": b_len}

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
