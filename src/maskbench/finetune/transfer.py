"""The generalisation tests of Child-Tuning (Xu et al. 2021, section 5), run on each fine-tuned model.

- **Domain transfer** (`transfer.eval_tasks`): the model fine-tuned on the task, unchanged, scored on the
  dev split of other tasks with the same label set (the paper trains on MNLI and scores on SNLI, SICK,
  SciTail...; in the GLUE layout RTE and QNLI share {entailment, not_entailment}; bring MNLI/SNLI as task
  folders). Labels are matched by name, so their order in the files does not matter.
- **Task transfer** (`transfer.task`): the fine-tuned encoder is frozen and a new head, initialised from
  the run's seed, is trained on another task (`transfer.epochs`, at `transfer.lr` or the run's learning
  rate) and scored on that task's dev split (best epoch). A better encoder for unseen tasks gives a
  better head on top of it; this compares the encoders vanilla fine-tuning and Child-Tuning leave behind.

Both are reported in the run's `best.json` under `transfer`, in `summary.json`/`summary.md`, and, in
experiments, as extra rows named "TARGET (domain transfer from TASK)" / "(task transfer from TASK)".
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..errors import ConfigError
from ..runtime import resolve_device
from ..train.state import TrainState, WindowStats
from . import metrics as metric_fns
from .config import FinetuneConfig
from .loop import MethodHooks, Prepared, build_model, finetune_optimization, prepare, train_step
from .tasks import shuffled_batches, steps_per_epoch


@dataclass
class Targets:
    """The prepared tasks of the transfer tests (every split tokenized with the run's tokenizer)."""

    domain: list[Prepared]
    task: Prepared | None

    def __bool__(self) -> bool:
        return bool(self.domain) or self.task is not None


def label_order(source: Prepared, target: Prepared) -> np.ndarray | None:
    """For each of `source`'s class indices, the index of the same label name in `target` (None for
    regression); a different label set is a ConfigError naming both."""
    if (source.num_labels == 1) != (target.num_labels == 1):
        raise ConfigError(f"domain transfer from {source.task_name} to {target.task_name} mixes a regression "
                          "and a classification task; pick a task with the same labels", "transfer.eval_tasks")
    if source.num_labels == 1:
        return None
    mine = [str(n) for n in (source.label_names or range(source.num_labels))]
    theirs = [str(n) for n in (target.label_names or range(target.num_labels))]
    if sorted(mine) != sorted(theirs):
        raise ConfigError(f"domain transfer needs the same labels: {source.task_name} has {{{', '.join(mine)}}}, "
                          f"{target.task_name} has {{{', '.join(theirs)}}}", "transfer.eval_tasks")
    return np.array([theirs.index(name) for name in mine])


def prepare_targets(cfg: FinetuneConfig, prep: Prepared, prepared: Callable[[FinetuneConfig], Prepared]) -> Targets:
    """Tokenize the transfer tasks (through `prepared`, the caller's cache) and check their labels, before
    anything is written."""
    spec = cfg.transfer
    if (spec.eval_tasks or spec.task) and prep.head.name != "classification":
        raise ConfigError(f"the transfer tests need a classification or regression task; {prep.task_name} is "
                          f"{prep.head.name}", "transfer")
    domain = [prepare(dataclasses.replace(cfg, task=name), required_splits=("dev",)) for name in spec.eval_tasks]
    for target in domain:
        label_order(prep, target)
    task = None
    if spec.task:
        task = prepared(dataclasses.replace(cfg, task=spec.task,
                                           max_train_examples=spec.max_train_examples or cfg.max_train_examples))
    return Targets(domain, task)


def domain_transfer(model: torch.nn.Module, prep: Prepared, target: Prepared, cfg: FinetuneConfig,
                    device: torch.device) -> dict:
    """The fine-tuned model's scores on the dev splits of `target` (labels mapped by name)."""
    order = label_order(prep, target)
    out: dict = {"task": target.task_name, "kind": "domain"}
    for name in target.dev_splits:
        split = target.splits[name]
        predictions = prep.head.predict(model, prep, split, cfg.eval_batch_size, device)
        if order is not None:
            predictions = order[predictions.astype(np.int64)]
        out[name] = metric_fns.compute(target.metric_names, predictions, split.labels)
    out["score"] = out["dev"]["score"]
    return out


def task_transfer(model: torch.nn.Module, target: Prepared, cfg: FinetuneConfig, seed: int,
                  device: torch.device) -> dict:
    """A new head for `target` on the frozen fine-tuned encoder; its best dev score over the epochs."""
    spec = cfg.transfer
    probe = build_model(target, seed)
    probe.encoder.load_state_dict(model.encoder.state_dict())
    for param in probe.encoder.parameters():
        param.requires_grad_(False)
    probe.to(device).train()
    run_cfg = dataclasses.replace(cfg, epochs=spec.epochs)
    train = target.splits["train"]
    steps = max(1, int(round(spec.epochs * steps_per_epoch(len(train), cfg.batch_size))))
    if cfg.max_steps:
        steps = min(steps, cfg.max_steps)
    lr = spec.lr if spec.lr is not None else target.lr
    optimization = finetune_optimization(probe, run_cfg, lr, steps)
    hooks = MethodHooks("vanilla")
    state = TrainState(seed=seed, window=WindowStats((), device), device=device)
    rng = np.random.default_rng([seed, 0x7A5C])
    started = time.perf_counter()
    best: dict | None = None
    epoch = 0
    while state.step < steps:
        epoch += 1
        for rows in shuffled_batches(len(train), cfg.batch_size, rng)[:steps - state.step]:
            batch = {k: v.to(device) for k, v in train.batch(rows, target.pad_id).items()}
            train_step(probe, batch, optimization, state, hooks)
        record = {"epoch": epoch}
        for name in target.dev_splits:
            split = target.splits[name]
            predictions = target.head.predict(probe, target, split, cfg.eval_batch_size, device)
            record[name] = metric_fns.compute(target.metric_names, predictions, split.labels)
        record["score"] = record["dev"]["score"]
        if best is None or record["score"] > best["score"]:
            best = record
    return {"task": target.task_name, "kind": "task", "lr": lr, "steps": state.step, "best_epoch": best["epoch"],
            **{k: v for k, v in best.items() if k != "epoch"}, "seconds": round(time.perf_counter() - started, 3)}


def run_transfer(model: torch.nn.Module, prep: Prepared, targets: Targets, cfg: FinetuneConfig, seed: int) -> dict:
    """Both tests on one fine-tuned model: {"transfer": {name: result}} for the run's `best.json`."""
    device = resolve_device(cfg.device)
    results = {}
    for target in targets.domain:
        results[transfer_name(target.task_name, prep.task_name, "domain")] = domain_transfer(
            model, prep, target, cfg, device)
    if targets.task is not None:
        results[transfer_name(targets.task.task_name, prep.task_name, "task")] = task_transfer(
            model, targets.task, cfg, seed, device)
    return {"transfer": results}


def transfer_name(target: str, source: str, kind: str) -> str:
    """How a transfer score is named in summaries and reports."""
    return f"{target} ({kind} transfer from {source})"
