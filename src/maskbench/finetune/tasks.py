"""From a GLUE-format task to padded tensors: label checks, pair encoding, dynamic padding.

`maskbench.data.glue.load_task` reads the files; here every split is tokenized once (in Rust, in
parallel) as `[CLS] a [SEP] b [SEP]` cut to `max_length` by BERT's `truncate_seq_pair` rule
(`maskbench.data.encoding`), and stored as one flat id
array with offsets. A batch is cut from it with NumPy fancy indexing and padded only to its own longest
sequence (dynamic padding), so short tasks never pay for 128 positions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.encoding import encode_pairs
from ..errors import DataError

#: GLUE's submission file names for each task's test splits (the server expects exactly these).
SUBMISSION_NAMES = {
    "cola": {"test": "CoLA"}, "sst-2": {"test": "SST-2"}, "sst2": {"test": "SST-2"}, "mrpc": {"test": "MRPC"},
    "sts-b": {"test": "STS-B"}, "stsb": {"test": "STS-B"}, "qqp": {"test": "QQP"},
    "mnli": {"test": "MNLI-m", "test_matched": "MNLI-m", "test_mismatched": "MNLI-mm", "ax": "AX",
             "diagnostic": "AX", "test_ax": "AX"},
    "qnli": {"test": "QNLI"}, "rte": {"test": "RTE"}, "wnli": {"test": "WNLI"}, "ax": {"test": "AX"},
}


@dataclass
class EncodedSplit:
    """One split, tokenized: flat ids + offsets, per-example lengths, integer/float labels, GLUE indices."""

    ids: np.ndarray
    type_ids: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    labels: np.ndarray | None
    index: list

    def __len__(self) -> int:
        return len(self.lengths)

    def batch(self, rows: np.ndarray, pad_id: int) -> dict[str, torch.Tensor]:
        """Rows padded to their longest member: input_ids, attention_mask, token_type_ids (+ labels)."""
        rows = np.asarray(rows)
        lengths = self.lengths[rows]
        width = int(lengths.max())
        positions = np.arange(width)
        valid = positions[None, :] < lengths[:, None]
        gather = np.minimum(self.offsets[rows][:, None] + positions[None, :], len(self.ids) - 1)
        input_ids = np.where(valid, self.ids[gather], pad_id)
        type_ids = np.where(valid, self.type_ids[gather], 0)
        out = {
            "input_ids": torch.from_numpy(input_ids.astype(np.int64)),
            "attention_mask": torch.from_numpy(valid.astype(np.int64)),
            "token_type_ids": torch.from_numpy(type_ids.astype(np.int64)),
        }
        if self.labels is not None:
            out["labels"] = torch.from_numpy(self.labels[rows])
        return out

    def subset(self, rows) -> "EncodedSplit":
        """The examples at `rows`, in that order, as a split of their own."""
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.lengths[rows]
        offsets = np.zeros(len(rows), dtype=np.int64)
        np.cumsum(lengths[:-1], out=offsets[1:])
        gather = np.arange(int(lengths.sum())) + np.repeat(self.offsets[rows] - offsets, lengths)
        return EncodedSplit(ids=self.ids[gather], type_ids=self.type_ids[gather], offsets=offsets, lengths=lengths,
                            labels=None if self.labels is None else self.labels[rows],
                            index=[self.index[i] for i in rows])


def task_key(task) -> str:
    name = getattr(task, "name", None) or ""
    return str(name).lower()


def submission_name(task, split: str) -> str:
    """`TASK.tsv`'s stem for a test split: GLUE's names for GLUE tasks, the task name otherwise."""
    names = SUBMISSION_NAMES.get(task_key(task))
    if names and split in names:
        return names[split]
    base = getattr(task, "name", None) or "task"
    base = Path(str(base)).name
    return base if split == "test" else f"{base}-{split.removeprefix('test_').removeprefix('test-')}"


def label_array(labels: list, num_labels: int, label_names: list | None, where: str) -> np.ndarray:
    """Labels as class indices (int64) or floats (regression); a label outside the set is a DataError."""
    if num_labels == 1:
        try:
            return np.asarray([float(v) for v in labels], dtype=np.float32)
        except (TypeError, ValueError):
            bad = next(v for v in labels if not _is_number(v))
            raise DataError(f"{where}: regression label {bad!r} is not a number") from None
    lookup = {str(name): i for i, name in enumerate(label_names)} if label_names else {}
    # integer labels index the names unless the names are themselves integers ("0", "1" in CoLA)
    by_position = not any(_is_index(name, 10**9) for name in lookup)
    out = np.empty(len(labels), dtype=np.int64)
    for row, value in enumerate(labels):
        key = str(value)
        if key in lookup:
            out[row] = lookup[key]
        elif by_position and _is_index(value, num_labels):
            out[row] = int(value)
        else:
            allowed = ", ".join(map(str, label_names)) if label_names else f"0..{num_labels - 1}"
            raise DataError(f"{where}: label {value!r} (example {row}) is not in the label set {{{allowed}}}")
    return out


def _is_index(value, num_labels: int) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, np.integer)):
        return 0 <= int(value) < num_labels
    return isinstance(value, str) and value.isdigit() and int(value) < num_labels


def _is_number(value) -> bool:
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


def encode_split(tokenizer, examples, num_labels: int, label_names: list | None, where: str,
                 require_labels: bool, max_length: int) -> EncodedSplit:
    """Tokenize one `Examples` split with `data.encoding.encode_pairs` (pairs when `text_b` is given)."""
    text_a = [str(t) for t in examples.text_a]
    if not text_a:
        raise DataError(f"{where} has no examples")
    text_b = [str(t) for t in examples.text_b] if examples.text_b is not None else None
    encoded = encode_pairs(tokenizer, text_a, text_b, max_length)
    lengths, offsets = encoded.lengths, encoded.offsets
    ids, type_ids = encoded.ids.astype(np.int32), encoded.type_ids.astype(np.int8)
    labels = None
    if examples.labels is not None and any(v is not None and v != "" for v in examples.labels):
        labels = label_array(list(examples.labels), num_labels, label_names, where)
    elif require_labels:
        raise DataError(f"{where} has no labels; training and dev splits need them")
    return EncodedSplit(ids=ids, type_ids=type_ids, offsets=offsets, lengths=lengths, labels=labels,
                        index=list(examples.index) if examples.index is not None else list(range(len(lengths))))


def batches_in_order(split: EncodedSplit, batch_size: int) -> list[np.ndarray]:
    """Evaluation batches grouped by length (least padding); callers restore the original order."""
    order = np.argsort(split.lengths, kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def shuffled_batches(n: int, batch_size: int, generator: np.random.Generator) -> list[np.ndarray]:
    order = generator.permutation(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def bucketed_batches(lengths: np.ndarray, batch_size: int, generator: np.random.Generator,
                     pool: int = 64) -> list[np.ndarray]:
    """`shuffled_batches` with length bucketing: the shuffled order is cut into pools of `pool` batches,
    each pool is sorted by length and cut into batches, and the batches are shuffled again. Every example
    still appears once per epoch; a batch pads only to members of similar length (less padding, fewer
    wasted FLOPs). The grouping follows the examples' lengths, so batches are less random than plain
    shuffling; `pool=1` gives `shuffled_batches`' batch contents."""
    order = generator.permutation(len(lengths))
    span = batch_size * pool
    batches = []
    for start in range(0, len(order), span):
        chunk = order[start:start + span]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in generator.permutation(len(batches))]


def steps_per_epoch(n: int, batch_size: int) -> int:
    return math.ceil(n / batch_size)
