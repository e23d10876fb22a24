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

import dataclasses
import json
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..data.glue import load_task
from ..data.mixing import mixing_rates
from ..data.tokenizer import check_tokenizer_fits, load_tokenizer, special_ids
from ..errors import CheckpointError, ConfigError, DataError, MaskbenchError
from ..io import append_jsonl, atomic_dir, write_json, write_text
from ..models.checkpoint import model_config_json, resolve_model_dir
from ..models.encoder_decoder import EncoderDecoderConfig, EncoderDecoderModel
from ..models.heads import EncoderForSequenceClassification
from ..models.loading import load_model
from ..models.sizes import named_config
from ..progress import progress_bar
from ..runtime import resolve_device, seed_everything
from ..train.config import OptimConfig, ScheduleConfig
from ..train.logging import event_writer
from ..train.optim import Optimization, build_optimization
from ..train.state import TrainState, WindowStats
from . import metrics as metric_fns, text_to_text as t2t
from .best_model import MODEL_DIR, save_best_model
from .child_tuning import (ChildTuningD, ChildTuningF, fisher_information, pretrained_parameters, row_sparse_parameters,
                           top_fraction_masks)
from .config import FinetuneConfig, resolve_hyperparameters
from .mixture import UNSUPERVISED, UnsupervisedPart, build_mixture
from .regularizers import L2SP, apply_mixout, reinit_top_layers, remove_mixout
from .tasks import (EncodedSplit, batches_in_order, bucketed_batches, encode_split, shuffled_batches, steps_per_epoch,
                    submission_name)

RANDOM_PREFIX = "random:"


class FinetuneDiverged(MaskbenchError):
    """The training loss of one (method, seed) became NaN or infinite: that run stops, the others go on."""


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
    epochs: float = 3.0
    warmup: float = 0.1
    fisher: dict = field(default_factory=dict)
    head: TaskHead = field(default_factory=lambda: CLASSIFICATION)
    text_to_text: Any = None  # a text_to_text.TextToText for encoder-decoder checkpoints (T5's recipe)
    tokenizer: Any = None
    mixture: dict | None = None  # rates, sizes and rows of a multi-task mixture (`[mixture]`)

    @property
    def dev_splits(self) -> list[str]:
        return [s for s in self.splits if s.startswith("dev")]

    @property
    def test_splits(self) -> list[str]:
        return [s for s in self.splits if s.startswith("test") or s in ("ax", "diagnostic")]


def _resolve_tokenizer(cfg: FinetuneConfig):
    if cfg.tokenizer:
        return load_tokenizer(cfg.tokenizer)
    if cfg.checkpoint.startswith(RANDOM_PREFIX):
        raise ConfigError(f"checkpoint '{cfg.checkpoint}' is randomly initialised and has no vocabulary; "
                          "give the tokenizer (--tokenizer tok.json)", "tokenizer")

    path = Path(cfg.checkpoint)
    model_dir = resolve_model_dir(path)
    for candidate in (model_dir, path, path / "model"):
        if any((candidate / name).is_file() for name in ("tokenizer.json", "vocab.txt")):
            return load_tokenizer(candidate)
    raise CheckpointError(f"no tokenizer.json or vocab.txt found beside the checkpoint {cfg.checkpoint}; "
                          "give one with --tokenizer")


def _load_encoder(cfg: FinetuneConfig, vocab_size: int, special=None):
    """(model config, pre-trained state or None for a random model, head info of the checkpoint).

    An encoder checkpoint gives its encoder (a new head is added per seed); an encoder-decoder checkpoint
    (T5 study) gives the whole model, which is fine-tuned text-to-text.
    """
    if cfg.checkpoint.startswith(RANDOM_PREFIX):
        name = cfg.checkpoint[len(RANDOM_PREFIX):]
        config = named_config(name, vocab_size=vocab_size)
        if isinstance(config, EncoderDecoderConfig) and special is not None:
            config = dataclasses.replace(config, pad_id=special.pad, eos_id=special.eos)
        return config, None, None

    meta = model_config_json(cfg.checkpoint)
    head = meta.get("head") if isinstance(meta.get("head"), dict) else None
    if meta.get("architecture") == "EncoderDecoderModel" or meta.get("model_type") == "t5":
        model = load_model(cfg.checkpoint)
        return model.config, {k: v.detach().clone() for k, v in model.state_dict().items()}, None
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


def prepare(cfg: FinetuneConfig, required_splits: tuple[str, ...] = ("train", "dev", "test")) -> Prepared:
    """Read, check and tokenize the task, load the checkpoint; raises before anything is written.
    (`required_splits=("dev",)`: a task only evaluated, as the domain-transfer targets.)"""
    if not cfg.task:
        raise ConfigError("no task given (--task NAME_OR_DIR)", "task")
    if not cfg.checkpoint:
        raise ConfigError("no checkpoint given (--checkpoint RUN_OR_MODEL_DIR or random:SIZE)", "checkpoint")
    task = load_task(cfg.task, cfg.data)
    where = getattr(task, "name", None) or cfg.task
    for name in required_splits:
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

    special = special_ids(tokenizer)
    pad_id = special.pad
    model_config, state, saved_head = _load_encoder(cfg, tokenizer.get_vocab_size(), special)
    if saved_head and saved_head.get("type") == "classification":
        saved = int(saved_head.get("num_labels", 0))
        if (saved == 1) != regression:
            kind = "a regression head" if saved == 1 else f"a classification head ({saved} labels)"
            raise CheckpointError(f"checkpoint {cfg.checkpoint} has {kind} but task {where} is "
                                  f"{'regression' if regression else 'classification'}; fine-tune from the "
                                  "pre-trained model instead")
    check_tokenizer_fits(tokenizer, model_config.vocab_size, cfg.checkpoint)
    text_to_text = None
    if is_text_to_text(model_config):
        if model_config.variant == "encoder_only":
            raise CheckpointError(f"{cfg.checkpoint} is an encoder-only T5 variant; text-to-text fine-tuning needs "
                                  "a decoder (variant encoder_decoder or decoder_only)")
        if cfg.reinit_layers:
            raise ConfigError("reinit_layers applies to BERT/ALBERT encoders; set reinit_layers = 0 for an "
                              "encoder-decoder", "reinit_layers")
        text_to_text = t2t.build(task, tokenizer, cfg.scoring)
        splits = t2t.encode_task(text_to_text, tokenizer, task, cfg.max_length, where)
    else:
        if cfg.max_length > model_config.max_positions:
            raise ConfigError(f"max_length {cfg.max_length} exceeds the model's max_positions "
                              f"{model_config.max_positions}", "max_length")
        splits = {}
        for name, examples in task.splits.items():
            if examples is None:
                continue
            labelled = name == "train" or name.startswith("dev")
            splits[name] = encode_split(tokenizer, examples, num_labels, label_names, f"{where} {name}",
                                        require_labels=labelled, max_length=cfg.max_length)
    if cfg.max_train_examples and "train" in splits and len(splits["train"]) > cfg.max_train_examples:
        splits["train"] = splits["train"].subset(np.arange(cfg.max_train_examples))
    mixture = None
    if cfg.mixture.enabled:
        if text_to_text is None:
            raise ConfigError("multi-task mixing trains text-to-text; it needs an encoder-decoder checkpoint",
                              "mixture")
        splits["train"] = _mixture(cfg, str(where), splits["train"], tokenizer)
        mixture = splits["train"].describe()
    return Prepared(task_name=str(where), task=task, splits=splits, num_labels=num_labels, label_names=label_names,
                    metric_names=metric_names, model_config=model_config, encoder_state=state, pad_id=pad_id,
                    checkpoint=cfg.checkpoint, head=TEXT_TO_TEXT if text_to_text is not None else CLASSIFICATION,
                    text_to_text=text_to_text, tokenizer=tokenizer, mixture=mixture,
                    **resolve_for_model(cfg, model_config))


def is_text_to_text(model_config) -> bool:
    """Encoder-decoder (and decoder-only) checkpoints are fine-tuned text-to-text, as T5 was."""
    return isinstance(model_config, EncoderDecoderConfig)


def model_width(model_config) -> int:
    """The hidden size of an encoder (`hidden_size`) or an encoder-decoder (`d_model`)."""
    return int(getattr(model_config, "hidden_size", None) or model_config.d_model)


def resolve_for_model(cfg: FinetuneConfig, model_config) -> dict[str, float]:
    """lr, epochs and warmup for this model: the config's, else its size's (text-to-text: its own lr)."""
    return resolve_hyperparameters(cfg, model_width(model_config), is_text_to_text(model_config))


def _mixture(cfg: FinetuneConfig, name: str, train, tokenizer):
    """The task's training split mixed with the other tasks and the unsupervised objective (T5 §3.5.2)."""
    mix = cfg.mixture
    parts = {name: train}
    for other in mix.tasks:
        task = load_task(other, cfg.data, splits=["train"])
        label = str(getattr(task, "name", other))
        if label in parts:
            continue
        _require_split(task, "train", label)
        tt = t2t.build(task, tokenizer)
        parts[label] = t2t.encode_split(t2t.plain_tokenizer(tokenizer), task.splits["train"], tt.format, tt.words,
                                        tt.eos_id, cfg.max_length, f"{label} train", require_labels=True)
    if mix.unsupervised:
        if not mix.shards:
            raise ConfigError("the unsupervised part of a mixture needs the pretraining shards (mixture.shards)",
                              "mixture.shards")
        parts[UNSUPERVISED] = UnsupervisedPart(mix.shards, mix.objective, tokenizer, mix.seq_len, mix.seed)

    rates = mixing_rates({k: len(v) for k, v in parts.items()}, mix.strategy, mix.limit, mix.temperature)
    rows = mix.rows or max(1, int(round(len(train) / rates[name])))
    return build_mixture(parts, mix.strategy, mix.limit, mix.temperature, rows, mix.seed)


def build_model(prep: Prepared, seed: int) -> torch.nn.Module:
    """The model of `prep.head` for one seed."""
    return prep.head.build(prep, seed)


def build_classifier(prep: Prepared, seed: int) -> torch.nn.Module:
    """The classifier for one seed: pre-trained encoder, new head (and, for `random:`, encoder) from `seed`."""
    generator = torch.Generator().manual_seed(seed)
    model = EncoderForSequenceClassification(prep.model_config, prep.num_labels, generator)
    if prep.encoder_state is not None:
        model.encoder.load_state_dict(prep.encoder_state, strict=True)
    return model


def head_parameters(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {f"classifier.{n}": p for n, p in model.classifier.named_parameters()}


def build_text_to_text(prep: Prepared, seed: int) -> torch.nn.Module:
    """The encoder-decoder for one seed: all pre-trained (no new head; the label words are written by the
    LM head), or for `random:` initialised from `seed`."""
    model = EncoderDecoderModel(prep.model_config, torch.Generator().manual_seed(seed))
    if prep.encoder_state is not None:
        model.load_state_dict(prep.encoder_state, strict=True)
    return model


# ---------------------------------------------------------------------------------------------------- Fisher


def fisher_scores(prep: Prepared, cfg: FinetuneConfig, seed: int | None = None) -> tuple[dict, dict]:
    """Fisher information of the ranked parameters on the training set, cached per (settings, seed).

    `child.fisher_per_seed = true` (default, as the official code, which builds the model from the run's
    seed) estimates it with the seed's own head, data order and dropout draws; `false` uses
    `child.fisher_seed` for all three, so one pass serves every seed.
    """
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
    return progress_bar(total, desc, unit)


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


def predict_labels(model: torch.nn.Module, prep: Prepared, split: EncodedSplit, batch_size: int,
                   device: torch.device) -> np.ndarray:
    """A classifier's predictions in label space: the class index, or the regression value."""
    return to_predictions(predict(model, split, prep.pad_id, batch_size, device), prep.num_labels)


@dataclass(frozen=True)
class TaskHead:
    """How a model family plugs into the one fine-tuning loop: `build(prep, seed)` makes the model (its
    `forward(**batch)` returns a dict with `loss`), `new_parameters(model)` names what is not pre-trained
    (L2-SP's head term), `predict(model, prep, split, batch_size, device)` gives label-space predictions
    that the task's metrics and the submission file take; `score(prep, predictions, split)` the metrics when
    they are not the task's label metrics (QA, text-to-text's invalid outputs), `predict_test` the
    predictions of a submission file (every line a valid label)."""

    name: str
    build: Callable[[Any, int], torch.nn.Module]
    new_parameters: Callable[[torch.nn.Module], dict]
    predict: Callable[..., np.ndarray]
    score: Callable[..., dict] | None = None  # (prep, predictions, split) → metrics; None: the task's metrics
    predict_test: Callable[..., Any] | None = None  # a submission file's predictions (None: `predict`)


CLASSIFICATION = TaskHead("classification", build_classifier, head_parameters, predict_labels)


def _predict_text(model, prep: Prepared, split, batch_size: int, device) -> np.ndarray:
    return prep.text_to_text.predictions(model, split, batch_size, device)[0]


def _predict_text_test(model, prep: Prepared, split, batch_size: int, device) -> np.ndarray:
    return prep.text_to_text.test_predictions(model, split, batch_size, device)[0]


def _score_text(prep: Prepared, predictions: np.ndarray, split) -> dict[str, float]:
    return prep.text_to_text.score(predictions, split.labels, prep.metric_names)


#: Encoder-decoders: T5's text-to-text recipe (see `text_to_text`); nothing is new, so L2-SP has no head term.
TEXT_TO_TEXT = TaskHead("text_to_text", build_text_to_text, lambda model: {}, _predict_text, _score_text,
                        _predict_text_test)


def evaluate(model, prep: Prepared, split_name: str, cfg: FinetuneConfig, device) -> dict[str, float]:
    split = prep.splits[split_name]
    predictions = prep.head.predict(model, prep, split, cfg.eval_batch_size, device)
    if prep.head.score is not None:
        return prep.head.score(prep, predictions, split)
    return metric_fns.compute(prep.metric_names, predictions, split.labels)


def log_events(writer, record: dict) -> None:
    """One epoch's record as TensorBoard scalars at its step: train/loss, train/lr, SPLIT/METRIC."""
    step = record["step"]
    writer.add_scalar("train/loss", record["train_loss"], step)
    writer.add_scalar("train/lr", record["lr"], step)
    for split, values in record.items():
        if isinstance(values, dict):
            for metric, value in values.items():
                if isinstance(value, (int, float)):
                    writer.add_scalar(f"{split}/{metric}", value, step)
    writer.flush()


def submission_text(predictions: np.ndarray, index: list, num_labels: int, label_names: list | None) -> str:
    """GLUE's submission TSV: a header `index\\tprediction`, then one line per test example."""
    lines = ["index\tprediction"]
    if num_labels == 1:
        lines += [f"{i}\t{float(v):.3f}" for i, v in zip(index, predictions)]
    else:
        names = [str(n) for n in label_names] if label_names else [str(i) for i in range(num_labels)]
        lines += [f"{i}\t{names[int(v)]}" for i, v in zip(index, predictions)]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------- methods


@dataclass
class MethodHooks:
    """What a fine-tuning method adds to the shared loop: L2-SP's gradient term after each backward pass,
    Child-Tuning's optimiser hook, Mixout's parametrization (removed before predicting the test sets)."""

    method: str
    info: dict = field(default_factory=dict)  # reported in best.json (Mixout layers, Fisher statistics)
    l2sp: Any = None  # L2SP, or None
    optimizer_hook: Any = None  # ChildTuningF / ChildTuningD, or None
    mixout: bool = False

    def after_backward(self) -> None:
        if self.l2sp is not None:
            self.l2sp.apply()

    def detach(self, model: torch.nn.Module) -> None:
        """Plain parameters and a plain optimiser again (for prediction and saving)."""
        if self.mixout:
            remove_mixout(model)
        if self.optimizer_hook is not None:
            self.optimizer_hook.remove()


def attach_method(model: torch.nn.Module, method: str, cfg: FinetuneConfig, seed: int,
                  build: Callable[[torch.nn.Module], Optimization],
                  fisher: Callable[[], tuple[dict, dict]] | None = None,
                  new_parameters: Callable[[torch.nn.Module], dict] = head_parameters) -> tuple[Optimization, MethodHooks]:
    """Attach `method` to `model` and build its optimisation with `build(model)`, in the order the method
    needs: Mixout and L2-SP see the model before the optimiser exists, Child-Tuning hooks the optimiser.
    `fisher()` gives Child-Tuning-D its (scores, info) (only called when needed); `new_parameters(model)`
    are the parameters L2-SP pulls towards zero instead of their start. Seeds: Mixout draws from
    seed + 1, Child-Tuning-F from seed + 2."""
    hooks = MethodHooks(method)
    if method == "mixout":
        generator = torch.Generator(next(model.parameters()).device).manual_seed(seed + 1)
        hooks.info["mixout_layers"] = apply_mixout(model, cfg.mixout.p, generator, cfg.mixout.keep_dropout,
                                                   cfg.mixout.exact_gradient)
        hooks.mixout = True
    if method == "l2sp":
        hooks.l2sp = L2SP(pretrained_parameters(model), new_parameters(model), cfg.l2sp.alpha, cfg.l2sp.head_alpha)
    optimization = build(model)
    if method == "child_f":
        hooks.optimizer_hook = ChildTuningF(optimization.optimizer, cfg.child.p_f, seed + 2,
                                            row_sparse_parameters(model))
    elif method == "child_d" and cfg.child.p_d >= 1.0:  # the whole network: vanilla, no Fisher needed
        total = sum(p.numel() for p in pretrained_parameters(model, cfg.child.fisher_scope).values())
        hooks.info["fisher"] = {"kept": total, "total": total}
    elif method == "child_d":
        if fisher is None:
            raise ValueError("Child-Tuning-D needs Fisher scores")
        scores, info = fisher()
        masks, stats = top_fraction_masks(scores, cfg.child.p_d)
        named = dict(model.named_parameters())
        hooks.optimizer_hook = ChildTuningD(optimization.optimizer,
                                            {named[n]: m.to(named[n].device) for n, m in masks.items()})
        hooks.info["fisher"] = {**info, **stats}
    return optimization, hooks


def method_weight_decay(method: str, cfg: FinetuneConfig) -> float:
    """L2-SP's penalty replaces weight decay (decoupled decay only when `l2sp.weight_decay` asks for it)."""
    return cfg.l2sp.weight_decay if method == "l2sp" else cfg.weight_decay


def finetune_optimization(model: torch.nn.Module, cfg: FinetuneConfig, lr: float, total_steps: int,
                          weight_decay: float | None = None, warmup: float | None = None) -> Optimization:
    """AdamW (multi-tensor), linear warm-up over `cfg.warmup` of the steps then linear decay to 0, clipping
    at `max_grad_norm`: the training core's one optimiser builder and one schedule with BERT's settings
    (`optimizer = "adafactor"`, `lr_schedule = "constant"`, `warmup = 0` is T5's fine-tuning recipe).
    `weight_decay` defaults to `cfg.weight_decay`, `warmup` to `cfg.warmup` (0.1 when unset)."""
    decay = cfg.weight_decay if weight_decay is None else weight_decay
    warmup = warmup if warmup is not None else (cfg.warmup if cfg.warmup is not None else 0.1)
    optim = OptimConfig(name=cfg.optimizer, lr=lr, betas=tuple(cfg.betas), eps=cfg.adam_eps,
                        weight_decay=decay, grad_clip=cfg.max_grad_norm or 0.0, fused=False)
    schedule = ScheduleConfig(warmup_steps=int(round(warmup * total_steps)), decay=cfg.lr_schedule)
    return build_optimization(model, optim, schedule, total_steps)


def total_steps(prep: Prepared, cfg: FinetuneConfig) -> int:
    """Optimiser steps of one run: `epochs` over the training split, capped by `max_steps`."""
    epochs = cfg.epochs if cfg.epochs is not None else prep.epochs
    steps = max(1, int(round(epochs * steps_per_epoch(len(prep.splits["train"]), cfg.batch_size))))
    return min(steps, cfg.max_steps) if cfg.max_steps else steps


def train_step(model: torch.nn.Module, batch: dict, optimization: Optimization, state: TrainState,
               hooks: MethodHooks) -> torch.Tensor:
    """One optimiser step on `batch` (model inputs and labels): forward, backward, the method's gradient
    term, clipping, the update at the schedule's rate for `state.step`. Returns the (detached) loss."""
    optimization.set_lr(state.step)
    loss = model(**batch)["loss"]
    if not torch.isfinite(loss):  # before the update: a diverged run must not pass for a trained one
        raise FinetuneDiverged(f"the training loss became {float(loss.detach())} at step {state.step + 1} (lower the "
                               f"learning rate or set max_grad_norm)")
    loss.backward()
    hooks.after_backward()
    optimization.clip()
    optimization.step()
    state.step += 1
    return loss.detach()


# ---------------------------------------------------------------------------------------------------- the loop


def train_seed(prep: Prepared, cfg: FinetuneConfig, method: str, seed: int, seed_dir: str | os.PathLike,
               fisher: tuple[dict, dict] | None = None, fingerprint: str = "",
               extra: Callable[[torch.nn.Module], dict] | None = None) -> dict:
    """Fine-tune one (method, seed) and write its folder atomically; returns the content of `best.json`.
    `extra(model)` adds results computed on the final model (the transfer tests) to `best.json`.

    Epochs of shuffled batches through `train_step`; after each, every dev split is scored and the best
    state kept (early stopping after `early_stopping` epochs without a better dev score); the best state
    predicts the test splits.
    """
    seed_everything(seed)
    device = _device(cfg)
    model = build_model(prep, seed)
    reinit_top_layers(model, cfg.reinit_layers, torch.Generator().manual_seed(seed))
    model.to(device).train()
    steps = total_steps(prep, cfg)
    optimization, hooks = attach_method(
        model, method, cfg, seed, lambda m: finetune_optimization(m, cfg, prep.lr, steps, method_weight_decay(method, cfg),
                                                           prep.warmup),
        fisher=lambda: fisher if fisher is not None else fisher_scores(prep, cfg, seed),
        new_parameters=prep.head.new_parameters)
    state = TrainState(seed=seed, window=WindowStats((), device), device=device)
    train = prep.splits["train"]
    data_rng = np.random.default_rng(seed)

    seed_dir = Path(seed_dir)
    best: dict[str, Any] | None = None
    best_state = None
    stale = 0
    step_times: list[float] = []
    started = time.perf_counter()
    with atomic_dir(seed_dir, kind="fine-tuning seed") as tmp:
        metrics_path = tmp / "metrics.jsonl"
        events = event_writer(tmp / "tensorboard") if cfg.tensorboard else None
        epoch = 0
        while state.step < steps:
            epoch += 1
            batches = (bucketed_batches(train.lengths, cfg.batch_size, data_rng) if cfg.length_bucketing
                       else shuffled_batches(len(train), cfg.batch_size, data_rng))[:steps - state.step]
            bar = _progress(cfg, sum(len(b) for b in batches), f"{method} seed {seed} epoch {epoch}", "ex")
            losses = []
            for rows in batches:
                t0 = time.perf_counter()
                batch = {k: v.to(device) for k, v in train.batch(rows, prep.pad_id).items()}
                losses.append(float(train_step(model, batch, optimization, state, hooks)))
                step_times.append(time.perf_counter() - t0)
                bar.update(len(rows))
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
            bar.close()
            state.elapsed = time.perf_counter() - started
            record = {"epoch": epoch, "step": state.step, "train_loss": float(np.mean(losses)),
                      "lr": optimization.schedule.lr(state.step), "seconds": round(state.elapsed, 3)}
            for name in prep.dev_splits:
                record[name] = evaluate(model, prep, name, cfg, device)
            record["score"] = record["dev"]["score"]
            append_jsonl(metrics_path, record)
            if events is not None:
                log_events(events, record)
            if best is None or record["score"] > best["score"]:
                best = dict(record)
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                stale = 0
            else:
                stale += 1
                if cfg.early_stopping and stale >= cfg.early_stopping:
                    break
        if events is not None:
            events.close()
        model.load_state_dict(best_state)
        hooks.detach(model)
        saved = {}
        if cfg.save_model:
            saved = save_best_model(model.eval(), tmp / MODEL_DIR, prep.checkpoint,
                                    prep.tokenizer.to_str() if prep.tokenizer is not None else None)
        predictions = {}
        predict_test = prep.head.predict_test or prep.head.predict
        for name in prep.test_splits:
            split = prep.splits[name]
            values = predict_test(model, prep, split, cfg.eval_batch_size, device)
            file = f"{submission_name(prep.task, name)}.tsv"
            write_text(tmp / file, submission_text(values, split.index, prep.num_labels, prep.label_names))
            predictions[name] = file
        result = {
            "method": method, "seed": seed, "task": prep.task_name, "checkpoint": prep.checkpoint,
            "best_epoch": best["epoch"], "best_step": best["step"], "score": best["score"],
            **{name: best[name] for name in prep.dev_splits},
            "epochs_run": epoch, "steps": state.step, "lr": prep.lr,
            "train_seconds": round(time.perf_counter() - started, 3),
            "step_seconds_median": round(statistics.median(step_times), 6) if step_times else None,
            "predictions": predictions, **({"model": MODEL_DIR, **saved} if saved else {}),
            "fingerprint": fingerprint, **hooks.info,
        }
        if prep.mixture is not None:
            result["mixture"] = prep.mixture
        if prep.text_to_text is not None:
            result["text_to_text"] = {"scoring": prep.text_to_text.scoring, "prefix": prep.text_to_text.format.benchmark,
                                      "targets": prep.text_to_text.words or "stsb",
                                      "invalid_test": prep.text_to_text.invalid_counts(
                                          {name: prep.splits[name] for name in prep.test_splits})}
        if extra is not None:
            result.update(extra(model))
        write_json(tmp / "best.json", result)
    return json.loads((seed_dir / "best.json").read_text(encoding="utf-8"))
