"""A pretrained model's sentence head scored on held-out NSP pairs and on SOP pairs (ALBERT, Table 5).

Both tasks label a pair 1 when it is *not* the document's text in order (NSP: B comes from another
document; SOP: A and B are swapped), so one head answers both: an NSP-trained head that only learned
topic shift sits near chance on SOP pairs, which share their topic, while an SOP-trained head, which had
to learn order, also tells most random pairs apart. The pairs are the loader's (`PretrainBatches`,
built as the reference's `create_instances_from_document`), from the split the model was not trained on.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..data.loader import PretrainBatches
from ..data.shards import Shards
from ..errors import DataError

PAIR_TASKS = ("nsp", "sop")


@torch.inference_mode()
def sentence_pair_accuracy(model: torch.nn.Module, shards: str | Path | Shards, seq_len: int, batch_size: int = 32,
                           batches: int = 8, seed: int = 1234, split: str = "validation",
                           device: torch.device | str = "cpu") -> dict[str, float | None]:
    """{"nsp": accuracy, "sop": accuracy} of `model`'s sentence head on `batches` batches of each kind of
    pair from `split`; empty when the model has no sentence head, None for a task the split cannot build."""
    if getattr(model, "sentence", None) is None:
        return {}
    was_training = model.training
    model.eval()
    shards = shards if isinstance(shards, Shards) else Shards.open(shards)
    out: dict[str, float | None] = {}
    try:
        for task in PAIR_TASKS:
            try:
                loader = PretrainBatches(shards, split, batch_size=batch_size, seq_len=seq_len, seed=seed, pairs=task)
            except DataError:
                out[task] = None
                continue
            correct = count = 0
            for index in range(min(batches, len(loader))):
                batch = {k: v.to(device) for k, v in loader.get(index).items()}
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                               token_type_ids=batch["token_type_ids"])["sentence_logits"]
                correct += int((logits.argmax(dim=-1) == batch["sentence_label"]).sum())
                count += int(batch["sentence_label"].numel())
            out[task] = correct / count if count else None
    finally:
        model.train(was_training)
    return out
