"""Multi-task training as in T5 (Section 3.5.2): the task, other tasks and the unsupervised objective, mixed.

A `MixtureSplit` stands where the task's training split stands: `len()` rows per epoch and
`batch(rows, pad_id)`, so fine-tuning's loop, Fisher pass and seeds need not know about mixing. Row r of
the epoch is assigned once, from `mixture.seed`, to a task drawn with the mixing rates of `data.mixing`
(examples-proportional with limit K, temperature-scaled, or equal) and to a uniformly drawn example of that
task; the loop's per-seed shuffling then orders the rows. Text-to-text tasks contribute their formatted
examples; the unsupervised part contributes windows of the pretraining shards corrupted by the objective
(`span_corruption` by default) with a generator seeded by the batch's rows, so a batch is a pure function of
its rows. Inputs are padded with the pad id and targets with -100 to the batch's longest.

Evaluation stays on the fine-tuned task's own dev split (the main task of the config).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..data.loader import PretrainBatches
from ..data.mixing import mixing_rates
from ..data.tokenizer import special_ids
from ..errors import ConfigError
from ..labels import IGNORE_INDEX
from ..objectives import build_objective_for_tokenizer
from ..objectives.t5 import Seq2SeqObjective
from .text_to_text import TextToTextSplit

UNSUPERVISED = "unsupervised"


class UnsupervisedPart:
    """Windows of a shard split, corrupted by a T5 objective into (input_ids, labels) on demand."""

    def __init__(self, shards: str, objective: dict, tokenizer, seq_len: int, seed: int):
        params = dict(objective)
        name = params.pop("name", "span_corruption")
        self.objective = build_objective_for_tokenizer(name, special_ids(tokenizer),
                                                       tokenizer.get_vocab_size(with_added_tokens=True), **params)
        if not isinstance(self.objective, Seq2SeqObjective):
            raise ConfigError(f"objective '{name}' is not one of the T5 objectives; a text-to-text mixture needs "
                              "one (e.g. span_corruption)", "mixture.objective")
        lengths = getattr(self.objective, "lengths", None)
        raw = lengths(seq_len)[0] if callable(lengths) else seq_len - 1
        self.windows = PretrainBatches(shards, "train", batch_size=1, seq_len=raw, seed=seed, add_special=False)
        self.seed = seed

    def __len__(self) -> int:
        return self.windows.num_windows

    def input_length(self) -> int:
        """The raw window length, a bound of the corrupted input's (what length bucketing sorts by)."""
        return self.windows.seq_len

    def batch(self, examples: np.ndarray) -> dict[str, torch.Tensor]:
        w = self.windows
        starts = w.window_starts[examples]
        raw = w._raw(starts, w.window_ends[examples] - starts)
        state = np.random.SeedSequence([self.seed, *examples.tolist()]).generate_state(1)[0]
        return self.objective(raw, generator=torch.Generator().manual_seed(int(state)))


@dataclass
class MixtureSplit:
    """Rows of an epoch assigned to (part, example); `batch(rows)` gathers and pads them."""

    parts: dict[str, Any]  # name → TextToTextSplit or UnsupervisedPart
    rates: dict[str, float]
    part_of: np.ndarray
    example_of: np.ndarray
    labels: Any = None

    def __len__(self) -> int:
        return len(self.part_of)

    @property
    def lengths(self) -> np.ndarray:
        """Input length of every row (for length bucketing)."""
        out = np.zeros(len(self), dtype=np.int64)
        for p, part in enumerate(self.parts.values()):
            where = self.part_of == p
            out[where] = part.lengths[self.example_of[where]] if isinstance(part, TextToTextSplit) \
                else part.input_length()
        return out

    def batch(self, rows: np.ndarray, pad_id: int) -> dict[str, torch.Tensor]:
        rows = np.asarray(rows)
        names = list(self.parts)
        pieces = []
        for p, name in enumerate(names):
            mine = rows[self.part_of[rows] == p]
            if len(mine) == 0:
                continue
            examples = self.example_of[mine]
            part = self.parts[name]
            batch = part.batch(examples, pad_id) if isinstance(part, TextToTextSplit) else part.batch(examples)
            pieces.append((np.flatnonzero(self.part_of[rows] == p), batch))
        width = max(int(b["input_ids"].shape[1]) for _, b in pieces)
        target = max(int(b["labels"].shape[1]) for _, b in pieces)
        input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        labels = torch.full((len(rows), target), IGNORE_INDEX, dtype=torch.long)
        for where, b in pieces:
            index = torch.from_numpy(where)
            input_ids[index, :b["input_ids"].shape[1]] = b["input_ids"]
            mask[index, :b["attention_mask"].shape[1]] = b["attention_mask"]
            labels[index, :b["labels"].shape[1]] = b["labels"]
        return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}

    def describe(self) -> dict:
        sizes = {name: len(part) for name, part in self.parts.items()}
        counts = np.bincount(self.part_of, minlength=len(self.parts))
        return {"rates": self.rates, "sizes": sizes, "rows_per_epoch": len(self),
                "rows": {name: int(c) for name, c in zip(self.parts, counts)}}


def build_mixture(parts: dict[str, Any], strategy: str, limit: int | None, temperature: float, rows: int,
                  seed: int) -> MixtureSplit:
    """Assign `rows` rows to parts by the mixing rates and to uniformly drawn examples of each part."""
    sizes = {name: len(part) for name, part in parts.items()}
    rates = mixing_rates(sizes, strategy, limit, temperature)
    rng = np.random.default_rng([int(seed), 0x317C])
    probabilities = np.asarray(list(rates.values()))
    part_of = rng.choice(len(parts), size=rows, p=probabilities / probabilities.sum())
    example_of = np.zeros(rows, dtype=np.int64)
    for p, size in enumerate(sizes.values()):
        where = part_of == p
        example_of[where] = rng.integers(0, size, size=int(where.sum()))
    return MixtureSplit(parts=parts, rates=rates, part_of=part_of, example_of=example_of)
