"""One fine-tuning run (one method, one seed) and what every run shares (`Prepared`).

`prepare(config)` does everything that does not depend on the seed or the method once: reads and checks
the task, tokenizes every split, loads the checkpoint's encoder weights and picks the learning rate.
It validates all user input before anything is written, so a bad task, label, checkpoint or vocabulary
stops the command with one line and no output. `train_seed` then builds the model for a seed (new head
initialised from that seed), attaches the method, trains with AdamW + linear warm-up/decay, evaluates on
every dev split each epoch, and writes the seed's folder atomically: `metrics.jsonl`, `best.json` and
the test predictions in GLUE submission format.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError, ConfigError, DataError
from ..io import append_jsonl, atomic_dir, write_json, write_text
from . import metrics as metric_fns
from .config import FinetuneConfig, default_lr
from .tasks import (EncodedSplit, batches_in_order, encode_split, pair_tokenizer, shuffled_batches,
                    steps_per_epoch, submission_name)

RANDOM_PREFIX = "random:"


@dataclass
class Prepared:
    """Everything shared by the runs of one (checkpoint, task): data, encoder weights, defaults."""

    task_name: str
    task: Any
    splits: dict[str, EncodedSplit]
    num_labels: int
    label_names: list | None
    metric_names: list[str]
    model_config: Any
    encoder_state: dict[str, torch.Tensor] | None
    pad_id: int
    lr: float
    checkpoint: str
    fisher: dict = field(default_factory=dict)

    @property
    def dev_splits(self) -> list[str]:
        return [s for s in self.splits if s.startswith("dev")]

    @property
    def test_splits(self) -> list[str]:
        return [s for s in self.splits if s.startswith("test") or s in ("ax", "diagnostic")]


def _resolve_tokenizer(cfg: FinetuneConfig):
    from ..data.tokenizer import load_tokenizer

    if cfg.tokenizer:
        return load_tokenizer(cfg.tokenizer)
    if cfg.checkpoint.startswith(RANDOM_PREFIX):
        raise ConfigError(f"checkpoint '{cfg.checkpoint}' is randomly initialised and has no vocabulary; "
                          "give the tokenizer (--tokenizer tok.json)", "tokenizer")
    from ..models.checkpoint import resolve_model_dir

    path = Path(cfg.checkpoint)
    model_dir = resolve_model_dir(path)
    for candidate in (model_dir, path, path / "model"):
        if any((candidate / name).is_file() for name in ("tokenizer.json", "vocab.txt")):
            return load_tokenizer(candidate)
    raise CheckpointError(f"no tokenizer.json or vocab.txt found beside the checkpoint {cfg.checkpoint}; "
                          "give one with --tokenizer")


def _load_encoder(cfg: FinetuneConfig, vocab_size: int):
    """(EncoderConfig, encoder state or None for a random model, head info of the checkpoint)."""
    if cfg.checkpoint.startswith(RANDOM_PREFIX):
        from ..models.encoder import EncoderConfig
        from ..models.sizes import named_config

        name = cfg.checkpoint[len(RANDOM_PREFIX):]
        config = named_config(name, vocab_size=vocab_size)
        if not isinstance(config, EncoderConfig):
            raise ConfigError(f"'{name}' is not an encoder size; fine-tuning needs a BERT/ALBERT size "
                              "(see `maskbench model list`)", "checkpoint")
        return config, None, None
    from ..models.checkpoint import load_model, model_config_json

    meta = model_config_json(cfg.checkpoint)
    head = meta.get("head") if isinstance(meta.get("head"), dict) else None
    encoder = load_model(cfg.checkpoint, head="encoder")
    if not hasattr(encoder, "embeddings"):
        raise CheckpointError(f"{cfg.checkpoint} is not an encoder (BERT/ALBERT) model; fine-tuning needs one")
    state = {k: v.detach().clone() for k, v in encoder.state_dict().items()}
    return encoder.config, state, head


def _require_split(task, name: str, where: str) -> Any:
    splits = getattr(task, "splits", {}) or {}
    if name not in splits or splits[name] is None:
        raise DataError(f"task {where} lacks its {name} split ({name}.tsv); fine-tuning needs train, dev and test")
    return splits[name]


def prepare(cfg: FinetuneConfig) -> Prepared:
    """Read, check and tokenize the task, load the checkpoint; raises before anything is written."""
    from ..data.glue import load_task

    if not cfg.task:
        raise ConfigError("no task given (--task NAME_OR_DIR)", "task")
    if not cfg.checkpoint:
        raise ConfigError("no checkpoint given (--checkpoint RUN_OR_MODEL_DIR or random:SIZE)", "checkpoint")
    task = load_task(cfg.task, cfg.data)
    where = getattr(task, "name", None) or cfg.task
    for name in ("train", "dev", "test"):
        _require_split(task, name, where)
    num_labels = int(task.num_labels)
    label_names = list(task.label_names) if getattr(task, "label_names", None) else None
    metric_names = getattr(task, "metric", None) or getattr(task, "metrics", None)
    metric_names = [metric_names] if isinstance(metric_names, str) else list(metric_names or [])
    if not metric_names:
        metric_names = ["pearson", "spearman"] if num_labels == 1 else ["accuracy"]
    metric_names = [metric_fns.canonical(m) for m in metric_names]
    regression = num_labels == 1
    if cfg.head == "classification" and regression:
        raise ConfigError(f"task {where} is a regression task (one real-valued label); a classification head "
                          "cannot fit it: set head = \"auto\" or \"regression\"", "head")
    if cfg.head == "regression" and not regression:
        raise ConfigError(f"task {where} is a classification task with {num_labels} labels; a regression "
                          "head cannot fit it: set head = \"auto\" or \"classification\"", "head")

    tokenizer = _resolve_tokenizer(cfg)
    from ..data.tokenizer import special_ids

    pad_id = special_ids(tokenizer).pad
    model_config, state, saved_head = _load_encoder(cfg, tokenizer.get_vocab_size())
    if saved_head and saved_head.get("type") == "classification":
        saved = int(saved_head.get("num_labels", 0))
        if (saved == 1) != regression:
            kind = "a regression head" if saved == 1 else f"a classification head ({saved} labels)"
            raise CheckpointError(f"checkpoint {cfg.checkpoint} has {kind} but task {where} is "
                                  f"{'regression' if regression else 'classification'}; fine-tune from the "
                                  "pre-trained model instead")
    if model_config.vocab_size != tokenizer.get_vocab_size():
        raise CheckpointError(f"checkpoint {cfg.checkpoint} has a vocabulary of {model_config.vocab_size} tokens "
                              f"but the tokenizer has {tokenizer.get_vocab_size()}; use the tokenizer the "
                              "model was pretrained with")
    if cfg.max_length > model_config.max_positions:
        raise ConfigError(f"max_length {cfg.max_length} exceeds the model's max_positions "
                          f"{model_config.max_positions}", "max_length")

    encoder = pair_tokenizer(tokenizer, cfg.max_length)
    splits: dict[str, EncodedSplit] = {}
    for name, examples in task.splits.items():
        if examples is None:
            continue
        labelled = name == "train" or name.startswith("dev")
        splits[name] = encode_split(encoder, examples, num_labels, label_names, f"{where} {name}",
                                    require_labels=labelled)
    if cfg.max_train_examples and len(splits["train"]) > cfg.max_train_examples:
        splits["train"] = splits["train"].subset(np.arange(cfg.max_train_examples))
    lr = cfg.lr if cfg.lr is not None else default_lr(model_config.hidden_size)
    return Prepared(task_name=str(where), task=task, splits=splits, num_labels=num_labels, label_names=label_names,
                    metric_names=metric_names, model_config=model_config, encoder_state=state, pad_id=pad_id,
                    lr=lr, checkpoint=cfg.checkpoint)


def build_model(prep: Prepared, seed: int) -> torch.nn.Module:
    """The classifier for one seed: pre-trained encoder, new head (and, for `random:`, encoder) from `seed`."""
    from ..models.heads import EncoderForSequenceClassification

    generator = torch.Generator().manual_seed(seed)
    model = EncoderForSequenceClassification(prep.model_config, prep.num_labels, generator)
    if prep.encoder_state is not None:
        model.encoder.load_state_dict(prep.encoder_state, strict=True)
    return model


def head_parameters(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {f"classifier.{n}": p for n, p in model.classifier.named_parameters()}


# ---------------------------------------------------------------------------------------------------- Fisher


def fisher_scores(prep: Prepared, cfg: FinetuneConfig, seed: int | None = None) -> tuple[dict, dict]:
    """Fisher information of the ranked parameters on the training set, cached per (settings, seed).

    `child.fisher_per_seed = true` (default, as the official code, which builds the model from the run's
    seed) estimates it with the seed's own head, data order and dropout draws; `false` uses
    `child.fisher_seed` for all three, so one pass serves every seed.
    """
    from .child_tuning import fisher_information, pretrained_parameters

    child = cfg.child
    head_seed = seed if child.fisher_per_seed and seed is not None else child.fisher_seed
    key = (head_seed, child.fisher_batch_size, child.fisher_examples, child.fisher_clip, child.fisher_scope,
           child.fisher_mode, cfg.batch_size, cfg.device)
    if key in prep.fisher:
        return prep.fisher[key]
    device = _device(cfg)
    model = build_model(prep, head_seed).to(device)
    params = pretrained_parameters(model, child.fisher_scope)
    train = prep.splits["train"]
    order = np.random.default_rng(head_seed).permutation(len(train))
    if child.fisher_examples:
        order = order[:child.fisher_examples]
    size = child.fisher_batch_size or cfg.batch_size
    groups = [order[i:i + size] for i in range(0, len(order), size)]
    bar = _progress(cfg, len(groups), "Fisher", "batch")
    start = time.perf_counter()
    batches = ({k: v.to(device) for k, v in train.batch(rows, prep.pad_id).items()} for rows in groups)
    scores = fisher_information(model, batches, params, len(groups), child.fisher_clip, bar.update,
                                train_mode=child.fisher_mode == "train", seed=head_seed)
    seconds = time.perf_counter() - start
    bar.close()
    scores = {k: v.cpu() for k, v in scores.items()}
    info = {"seconds": round(seconds, 3), "examples": int(len(order)), "batches": len(groups),
            "batch_size": size, "clip": child.fisher_clip, "scope": child.fisher_scope, "mode": child.fisher_mode,
            "head_seed": head_seed,
            "parameters": int(sum(v.numel() for v in scores.values()))}
    prep.fisher[key] = (scores, info)
    return scores, info


# ---------------------------------------------------------------------------------------------------- running


def _device(cfg: FinetuneConfig) -> torch.device:
    from ..runtime import resolve_device

    return resolve_device(cfg.device)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **kw) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(cfg: FinetuneConfig, total: int, desc: str, unit: str):
    if not cfg.progress:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True)


def _optimizer(model: torch.nn.Module, cfg: FinetuneConfig, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases and LayerNorm weights (BERT's recipe)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if name.endswith("bias") or "LayerNorm" in name else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=tuple(cfg.betas), eps=cfg.adam_eps,
                             foreach=True)


def _schedule(optimizer, warmup_steps: int, total_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@torch.inference_mode()
def predict(model: torch.nn.Module, split: EncodedSplit, pad_id: int, batch_size: int,
            device: torch.device) -> np.ndarray:
    """Logits for every example of `split`, in the split's order (batches grouped by length)."""
    was_training = model.training
    model.eval()
    out = None
    for rows in batches_in_order(split, batch_size):
        batch = split.batch(rows, pad_id)
        batch.pop("labels", None)
        logits = model(**{k: v.to(device) for k, v in batch.items()})["logits"].float().cpu().numpy()
        if out is None:
            out = np.empty((len(split), logits.shape[1]), dtype=np.float32)
        out[rows] = logits
    model.train(was_training)
    return out


def to_predictions(logits: np.ndarray, num_labels: int) -> np.ndarray:
    return logits[:, 0] if num_labels == 1 else logits.argmax(axis=1)


def evaluate(model, prep: Prepared, split_name: str, cfg: FinetuneConfig, device) -> dict[str, float]:
    split = prep.splits[split_name]
    predictions = to_predictions(predict(model, split, prep.pad_id, cfg.eval_batch_size, device), prep.num_labels)
    return metric_fns.compute(prep.metric_names, predictions, split.labels)


def submission_text(predictions: np.ndarray, index: list, num_labels: int, label_names: list | None) -> str:
    """GLUE's submission TSV: a header `index\\tprediction`, then one line per test example."""
    lines = ["index\tprediction"]
    if num_labels == 1:
        lines += [f"{i}\t{float(v):.3f}" for i, v in zip(index, predictions)]
    else:
        names = [str(n) for n in label_names] if label_names else [str(i) for i in range(num_labels)]
        lines += [f"{i}\t{names[int(v)]}" for i, v in zip(index, predictions)]
    return "\n".join(lines) + "\n"


def train_seed(prep: Prepared, cfg: FinetuneConfig, method: str, seed: int, seed_dir: str | os.PathLike,
               fisher: tuple[dict, dict] | None = None, fingerprint: str = "") -> dict:
    """Fine-tune one (method, seed) and write its folder atomically; returns the content of `best.json`."""
    from ..runtime import seed_everything
    from .child_tuning import ChildTuningD, ChildTuningF, pretrained_parameters, row_sparse_parameters, \
        top_fraction_masks
    from .regularizers import L2SP, apply_mixout, reinit_top_layers, remove_mixout

    seed_everything(seed)
    device = _device(cfg)
    model = build_model(prep, seed)
    generator = torch.Generator().manual_seed(seed)
    reinit_top_layers(model, cfg.reinit_layers, generator)
    model.to(device).train()
    method_info: dict[str, Any] = {}
    l2sp = None
    if method == "mixout":
        method_info["mixout_layers"] = apply_mixout(model, cfg.mixout.p, torch.Generator(device).manual_seed(seed + 1),
                                                    cfg.mixout.keep_dropout, cfg.mixout.exact_gradient)
    if method == "l2sp":
        l2sp = L2SP(pretrained_parameters(model), head_parameters(model), cfg.l2sp.alpha, cfg.l2sp.head_alpha)
    # L2-SP's penalty replaces weight decay (decoupled decay only when l2sp.weight_decay asks for it)
    optimizer = _optimizer(model, cfg, prep.lr, cfg.l2sp.weight_decay if method == "l2sp" else cfg.weight_decay)
    hook = None
    if method == "child_f":
        hook = ChildTuningF(optimizer, cfg.child.p_f, seed + 2, row_sparse_parameters(model))
    elif method == "child_d" and cfg.child.p_d >= 1.0:  # the whole network: vanilla, no Fisher needed
        total = sum(p.numel() for p in pretrained_parameters(model, cfg.child.fisher_scope).values())
        method_info["fisher"] = {"kept": total, "total": total}
    elif method == "child_d":
        scores, info = fisher if fisher is not None else fisher_scores(prep, cfg, seed)
        masks, stats = top_fraction_masks(scores, cfg.child.p_d)
        named = dict(model.named_parameters())
        hook = ChildTuningD(optimizer, {named[n]: m.to(device) for n, m in masks.items()})
        method_info["fisher"] = {**info, **stats}

    train = prep.splits["train"]
    per_epoch = steps_per_epoch(len(train), cfg.batch_size)
    total_steps = max(1, int(round(cfg.epochs * per_epoch)))
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    scheduler = _schedule(optimizer, int(round(cfg.warmup * total_steps)), total_steps)
    data_rng = np.random.default_rng(seed)
    params = [p for p in model.parameters() if p.requires_grad]

    seed_dir = Path(seed_dir)
    best: dict[str, Any] | None = None
    best_state = None
    stale = 0
    step = 0
    step_times: list[float] = []
    started = time.perf_counter()
    with atomic_dir(seed_dir) as tmp:
        metrics_path = tmp / "metrics.jsonl"
        epoch = 0
        while step < total_steps:
            epoch += 1
            batches = shuffled_batches(len(train), cfg.batch_size, data_rng)[:total_steps - step]
            bar = _progress(cfg, sum(len(b) for b in batches), f"{method} seed {seed} epoch {epoch}", "ex")
            losses = []
            for rows in batches:
                t0 = time.perf_counter()
                batch = {k: v.to(device) for k, v in train.batch(rows, prep.pad_id).items()}
                loss = model(**batch)["loss"]
                loss.backward()
                if l2sp is not None:
                    l2sp.apply()
                if cfg.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm, foreach=True)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step_times.append(time.perf_counter() - t0)
                losses.append(float(loss.detach()))
                step += 1
                bar.update(len(rows))
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
            bar.close()
            record = {"epoch": epoch, "step": step, "train_loss": float(np.mean(losses)),
                      "lr": scheduler.get_last_lr()[0], "seconds": round(time.perf_counter() - started, 3)}
            for name in prep.dev_splits:
                record[name] = evaluate(model, prep, name, cfg, device)
            record["score"] = record["dev"]["score"]
            append_jsonl(metrics_path, record)
            if best is None or record["score"] > best["score"]:
                best = dict(record)
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                stale = 0
            else:
                stale += 1
                if cfg.early_stopping and stale >= cfg.early_stopping:
                    break
        model.load_state_dict(best_state)
        if method == "mixout":
            remove_mixout(model)
        if hook is not None:
            hook.remove()
        predictions = {}
        for name in prep.test_splits:
            split = prep.splits[name]
            values = to_predictions(predict(model, split, prep.pad_id, cfg.eval_batch_size, device), prep.num_labels)
            file = f"{submission_name(prep.task, name)}.tsv"
            write_text(tmp / file, submission_text(values, split.index, prep.num_labels, prep.label_names))
            predictions[name] = file
        result = {
            "method": method, "seed": seed, "task": prep.task_name, "checkpoint": prep.checkpoint,
            "best_epoch": best["epoch"], "best_step": best["step"], "score": best["score"],
            **{name: best[name] for name in prep.dev_splits},
            "epochs_run": epoch, "steps": step, "lr": prep.lr,
            "train_seconds": round(time.perf_counter() - started, 3),
            "step_seconds_median": round(statistics.median(step_times), 6) if step_times else None,
            "predictions": predictions, "fingerprint": fingerprint, **method_info,
        }
        write_json(tmp / "best.json", result)
    return json.loads((seed_dir / "best.json").read_text(encoding="utf-8"))
