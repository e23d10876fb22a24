"""Deterministic validation: the same sequences, corrupted the same way, at every evaluation.

Batch i of the validation split is corrupted with a generator seeded from (eval seed, i), so two
evaluations of one model give identical numbers and curves over training are free of masking noise.
Encoders are also scored at a fixed reference corruption (default 15%, token units, exact count,
80-10-10 replacement — BERT's recipe), so runs trained at different masking rates can be compared on
one scale; the training objective's own score answers "how well does it do its task".
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch

from ..labels import IGNORE_INDEX
from .distributed import World

TRAIN_STREAM = 0
EVAL_STREAM = 1
REFERENCE_STREAM = 2


def stream_generator(seed: int, stream: int, index: int) -> torch.Generator:
    """A CPU generator for (seed, stream, index): masking of step/batch `index` never depends on history."""
    state = np.random.SeedSequence([int(seed), int(stream), int(index)]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 31 ^ int(state[1]))


@dataclass(frozen=True)
class Term:
    """One loss the model reports: `name` in logs, the output keys of its mean loss / #correct / #predicted,
    and the batch key whose entries != IGNORE_INDEX are the predictions (for global normalisation)."""

    name: str
    loss_key: str
    correct_key: str
    count_key: str
    label_key: str


ENCODER_TERMS = (Term("mlm", "mlm_loss", "mlm_correct", "mlm_count", "labels"),)
SENTENCE_TERM = Term("sentence", "sentence_loss", "sentence_correct", "sentence_count", "sentence_label")
SEQ2SEQ_TERMS = (Term("target", "loss", "correct", "count", "labels"),)


def count_predictions(batch: dict, terms: tuple[Term, ...]) -> list[int]:
    return [int((batch[t.label_key] != IGNORE_INDEX).sum()) for t in terms]


def rank_rows(batch: dict, world: World) -> dict:
    """This rank's contiguous share of the rows of a global batch (other values pass through)."""
    rows = batch["input_ids"].shape[0]
    if world.world_size == 1:
        return batch
    per_rank = rows // world.world_size
    lo = world.rank * per_rank
    return {k: v[lo:lo + per_rank] if isinstance(v, torch.Tensor) and v.dim() and v.shape[0] == rows else v
            for k, v in batch.items()}


def to_device(batch: dict, keys: tuple[str, ...], device: torch.device) -> dict:
    """The model's inputs on `device`. An attention mask with nothing padded is left out (the models read
    None as "attend everywhere", SDPA's fastest case); it is looked at here, on the CPU, since the same look
    on a GPU would make the host wait for the device, and under `torch.compile` it would break the graph.
    To a GPU the tensors go through pinned memory: a copy from pageable memory waits for the device's
    stream to drain (a host sync per step); from pinned memory it is queued like a kernel."""
    cuda = device.type == "cuda"

    def move(value: torch.Tensor) -> torch.Tensor:
        if cuda and value.device.type == "cpu":
            return value.pin_memory().to(device, non_blocking=True)
        return value.to(device)

    return {k: move(batch[k]) for k in keys
            if k in batch and not (k == "attention_mask" and batch[k].device.type == "cpu" and bool(batch[k].all()))}


def autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader, objective, terms: tuple[Term, ...], model_keys: tuple[str, ...],
             batches: int, seed: int, world: World, precision: str, reference=None) -> dict:
    """Scores over `batches` validation batches: `{name}_loss` and `{name}_accuracy` per term, and with a
    reference objective `ref_mlm_loss`/`ref_mlm_accuracy`. Every rank scores its rows; sums are all-reduced."""
    was_training = model.training
    model.eval()
    n = len(terms)
    sums = torch.zeros(3 * n + 3, dtype=torch.float64)
    device = world.device
    try:
        for index in range(batches):
            raw = loader.get_global(index)
            jobs = [(objective, EVAL_STREAM, terms, 0)]
            if reference is not None:
                jobs.append((reference, REFERENCE_STREAM, ENCODER_TERMS, 3 * n))
            for obj, stream, job_terms, offset in jobs:
                batch = rank_rows(obj(raw, generator=stream_generator(seed, stream, index)), world)
                with autocast(device, precision):
                    out = model(**to_device(batch, model_keys, device))
                for i, term in enumerate(job_terms):
                    count = out[term.count_key].double().cpu()
                    sums[offset + 3 * i] += float(out[term.loss_key].double().cpu() * count)
                    sums[offset + 3 * i + 1] += float(out[term.correct_key].double().cpu())
                    sums[offset + 3 * i + 2] += float(count)
    finally:
        model.train(was_training)
    sums = world.all_reduce_sum(sums.to(device)).cpu()
    metrics = {}
    named = [(t.name, 3 * i) for i, t in enumerate(terms)]
    if reference is not None:
        named.append(("ref_mlm", 3 * n))
    for name, offset in named:
        loss_sum, correct, count = (float(x) for x in sums[offset:offset + 3])
        if count > 0:
            metrics[f"{name}_loss"] = loss_sum / count
            metrics[f"{name}_accuracy"] = correct / count
    if len(terms) > 1 and all(f"{t.name}_loss" in metrics for t in terms):
        metrics["loss"] = sum(metrics[f"{t.name}_loss"] for t in terms)
    elif terms and f"{terms[0].name}_loss" in metrics:
        metrics["loss"] = metrics[f"{terms[0].name}_loss"]
    return metrics
