"""Sentence-level objectives (BERT's NSP, ALBERT's SOP), combined with any MLM policy.

The pairs themselves are built by the data loader from the shards' sentence and document boundaries
(`PretrainBatches(..., pairs="nsp"|"sop")` adds `token_type_ids` and a `sentence_label` [B]):

- `nsp`: segment B is the true continuation (label 0) or, half of the time, a segment from another
  document (label 1);
- `sop`: the two consecutive segments in order (label 0) or, half of the time, swapped (label 1).

An objective asks for them with `sentence = "nsp" | "sop"` (e.g. `[objective] name = "mlm"`,
`sentence = "sop"`; the registry names `nsp` and `sop` are the same MLM objective with that field preset).
The trainer reads `objective.sentence_task` to request pairs from the loader and a sentence head from the
model. The objective itself only checks that the pairs are there and carries the label through the
masking untouched (repeated with the rows when an MLM objective makes k copies).
"""

from __future__ import annotations

import torch

from ..errors import ConfigError

SENTENCE_TASKS = ("nsp", "sop")
SENTENCE_DESCRIPTIONS = {
    "nsp": "next-sentence prediction (BERT): 50% of pairs take segment B from another document",
    "sop": "sentence-order prediction (ALBERT): 50% of pairs have their two consecutive segments swapped",
}


def check_sentence_batch(batch: dict, task: str) -> None:
    """The batch must carry the loader's pairs: `sentence_label` [B] of 0/1 and `token_type_ids` [B, L]."""
    if "sentence_label" not in batch or "token_type_ids" not in batch:
        raise ConfigError(f"sentence = \"{task}\" needs sentence pairs in the batch ('sentence_label', "
                          f"'token_type_ids'); load batches with pairs=\"{task}\"", key="sentence")
    labels = batch["sentence_label"]
    rows = batch["input_ids"].shape[0]
    if not isinstance(labels, torch.Tensor) or labels.shape != (rows,):
        raise ConfigError(f"sentence_label must be a tensor of shape [{rows}], got "
                          f"{tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__}",
                          key="sentence")
    if labels.numel() and bool(((labels != 0) & (labels != 1)).any()):
        raise ConfigError("sentence_label must hold 0 or 1 only", key="sentence")
