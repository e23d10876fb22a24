"""The pretraining loop: global batch → objective → this rank's rows → micro-batches → one optimiser step.

Exactness by construction:
- batch `s` is `PretrainBatches.get_global(s)`, a pure function of (seed, s);
- the objective corrupts it with a generator seeded from (seed, s), so masking never depends on history;
- dropout draws from torch's global generator, whose state every checkpoint saves and restores;
- the learning rate is a pure function of the step (step budgets).
So a run killed at any point and resumed from its last checkpoint writes the same losses, bit for bit, as
a run that never stopped. Every rank corrupts the whole global batch and keeps its slice, and each loss is
normalised by the number of predictions in the *global* batch, so N processes follow the same curve as
one process with the same global batch (up to float summation order).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import dumps_toml, from_dict, to_dict
from ..data.loader import PretrainBatches
from ..data.shards import Shards
from ..data.tokenizer import load_tokenizer, special_ids, tokenizer_hash
from ..errors import CheckpointError, ConfigError, DataError, MaskbenchError
from ..io import MARKER, RunLock, append_jsonl, atomic_dir, claim_out_dir, mark_dir, marked_kind, read_jsonl, write_json
from ..labels import IGNORE_INDEX
from ..models import EncoderDecoderModel, EncoderForPretraining, named_config
from ..models.checkpoint import MODEL_KIND, save_model
from ..models.encoder import EncoderConfig
from ..objectives import WIRING_FIELDS, build_objective_for_tokenizer
from ..objectives.t5 import Seq2SeqObjective
from ..runtime import make_deterministic
from . import checkpoint as ckpt
from .config import FORMAT_VERSION, PretrainConfig, load_pretrain_config
from .distributed import (World, close_world, full_model_state, full_state_dicts, init_world, load_full_state_dicts,
                          no_sync, wrap_model)
from .evaluate import (ENCODER_TERMS, SENTENCE_TERM, SEQ2SEQ_TERMS, TRAIN_STREAM, Term, autocast, count_predictions,
                       evaluate, rank_rows, stream_generator, to_device)
from .logging import MetricsLog, format_eta, truncate_metrics
from .optim import Optimization, build_optimization
from .state import TrainState, WindowStats

#: Sections that may change when a run is resumed (they do not change what a step computes).
RESUMABLE_CHANGES = ("budget", "eval", "log", "checkpoint", "threads", "distributed", "compile", "compile_mode",
                     "device")
#: Settings that may change on resume although they change the steps: the remedies for a diverged run.
#: Each change is recorded in the run's history.jsonl.
RECOVERY_CHANGES = ("optim.lr", "optim.grad_clip", "schedule.warmup_steps", "schedule.warmup_fraction")
RUN_KIND = "pretraining run"
HISTORY = "history.jsonl"


class TrainingDiverged(MaskbenchError):
    """The loss or the gradient norm became NaN or infinite."""


# --- set-up ------------------------------------------------------------------------------------------------

@dataclass
class Setup:
    """What a run is built from, resolved from the config and the data (cheap to build: no training)."""

    config: PretrainConfig
    shards_dir: Path
    tokenizer_path: Path
    tokenizer: Any
    objective: Any
    reference: Any
    model: torch.nn.Module
    seq2seq: bool
    raw_seq_len: int
    terms: tuple[Term, ...]
    model_keys: tuple[str, ...]
    new_model: Any = None  # builds another model like `model` (FSDP gathers its state into one)
    notes: list[str] = field(default_factory=list)


def build_objectives(params: dict, special, vocab_size: int, reference_rate: float | None,
                     reference_replace: tuple[float, float, float]) -> tuple[Any, Any]:
    """The training objective from `[objective]` (token ids wired from the tokenizer), plus the fixed-rate
    reference MLM that evaluation scores encoders with."""
    params = dict(params)
    name = params.pop("name")
    for key in WIRING_FIELDS:
        if key in params:
            raise ConfigError("is set from the tokenizer; remove it from [objective]", f"objective.{key}")
    objective = build_objective_for_tokenizer(name, special, vocab_size, **params)
    reference = None
    if reference_rate is not None and not is_seq2seq(objective):
        reference = build_objective_for_tokenizer(
            "mlm", special, vocab_size, mask_rate=reference_rate, replace=tuple(reference_replace), unit="token",
            sampling="exact", sentence=getattr(objective, "sentence_task", None))
    return objective, reference


def is_seq2seq(objective) -> bool:
    """T5-study objectives: the target is a separate sequence for a decoder, not labels aligned with inputs."""
    return isinstance(objective, Seq2SeqObjective)


def build_model(model_table: dict, vocab_size: int, sentence_task: str | None, seq2seq: bool, seed: int,
                special=None):
    """A freshly initialised model from `[model]` (a named size plus field overrides), seeded.

    The vocabulary size and the pad/EOS ids come from the tokenizer unless the table sets them.
    """
    table = dict(model_table)
    size = table.pop("size", "bert-tiny")
    static_predictions = table.pop("static_predictions", None)
    base = named_config(size)
    wired = {"vocab_size": vocab_size}
    if special is not None:
        wired["pad_id"] = special.pad
        if not isinstance(base, EncoderConfig):
            wired["eos_id"] = special.eos
    merged = {**dataclasses.asdict(base), **wired, **table}
    config = from_dict(type(base), merged, where="model")
    if config.vocab_size < vocab_size:
        raise ConfigError(f"{config.vocab_size} is smaller than the tokenizer's {vocab_size} tokens; "
                          f"remove model.vocab_size or raise it to at least {vocab_size}", "model.vocab_size")
    generator = torch.Generator().manual_seed(int(seed))
    if isinstance(config, EncoderConfig):
        if seq2seq:
            raise ConfigError(f"this objective trains an encoder-decoder; choose a T5 size such as 't5-tiny' "
                              f"(got '{size}')", "model.size")
        try:
            return EncoderForPretraining(config, sentence_task=sentence_task, generator=generator,
                                         static_predictions=static_predictions)
        except ConfigError as e:
            raise e.under("model") from None
    if static_predictions is not None:
        raise ConfigError("applies to the masked-LM head of an encoder (a bert-* or albert-* size); remove it",
                          "model.static_predictions")
    if sentence_task:
        raise ConfigError(f"NSP/SOP need an encoder (a bert-* or albert-* size), got '{size}'", "model.size")
    if not seq2seq and config.variant != "encoder_only":
        raise ConfigError(f"an MLM objective on '{size}' needs variant = \"encoder_only\" (labels align with the "
                          f"inputs); or pick a T5 objective such as span_corruption", "model.variant")
    if seq2seq and config.variant == "encoder_only":
        raise ConfigError("a T5 objective needs a decoder; use variant = \"encoder_decoder\" or \"decoder_only\"",
                          "model.variant")
    return EncoderDecoderModel(config, generator=generator)


def setup(config: PretrainConfig) -> Setup:
    """Open the data, check it against the tokenizer and model, build objective and model (no training)."""
    if config.data.shards is None:
        raise ConfigError("set data.shards to a folder made by 'maskbench prepare'", "data.shards")
    shards_dir = Path(config.data.shards)
    if not shards_dir.exists():
        raise DataError(f"shards folder not found: {shards_dir}; create it with 'maskbench prepare' "
                        f"or fix data.shards")
    shards = Shards.open(shards_dir)
    manifest = shards.manifest
    tokenizer_path = Path(config.data.tokenizer) if config.data.tokenizer else shards.tokenizer_path
    tokenizer = load_tokenizer(tokenizer_path)
    expected = manifest.get("tokenizer_hash")
    if expected and tokenizer_hash(tokenizer) != expected:
        raise DataError(f"tokenizer {tokenizer_path} does not match the shards in {shards_dir} (their manifest "
                        f"records another tokenizer hash); use the tokenizer the shards were prepared with")
    special = special_ids(tokenizer)
    vocab = tokenizer.get_vocab_size(with_added_tokens=True)
    objective, reference = build_objectives(config.objective, special, vocab, config.eval.reference_rate,
                                            config.eval.reference_replace)
    seq2seq = is_seq2seq(objective)
    sentence_task = getattr(objective, "sentence_task", None)
    def new_model():
        return build_model(config.model, vocab, sentence_task, seq2seq, config.seed, special)

    model = new_model()
    seq_len = config.data.seq_len or int(manifest.get("seq_len", 128))
    if seq2seq:
        lengths = getattr(objective, "lengths", None)
        raw_seq_len = lengths(seq_len)[0] if callable(lengths) else seq_len - 1
    else:
        raw_seq_len = seq_len
        max_positions = getattr(model.config, "max_positions", None)
        if max_positions is not None and seq_len > max_positions:
            raise ConfigError(f"{seq_len} exceeds the model's max_positions {max_positions}", "data.seq_len")
    terms = SEQ2SEQ_TERMS if seq2seq else ENCODER_TERMS + ((SENTENCE_TERM,) if sentence_task else ())
    signature = inspect.signature(model.forward).parameters
    model_keys = tuple(k for k in ("input_ids", "attention_mask", "token_type_ids", "labels", "sentence_label")
                       if k in signature)
    notes = [getattr(objective, "summary", lambda: str(objective))()]
    return Setup(config=config, shards_dir=shards_dir, tokenizer_path=tokenizer_path, tokenizer=tokenizer,
                 objective=objective, reference=reference, model=model, seq2seq=seq2seq, raw_seq_len=raw_seq_len,
                 terms=terms, model_keys=model_keys, new_model=new_model, notes=notes)


# --- run folder --------------------------------------------------------------------------------------------

def resolved_config(config: PretrainConfig) -> PretrainConfig:
    """The config as stored in config.toml: absolute data paths, the current format version."""
    data = dataclasses.replace(
        config.data,
        shards=Path(config.data.shards).resolve() if config.data.shards else None,
        tokenizer=Path(config.data.tokenizer).resolve() if config.data.tokenizer else None)
    return dataclasses.replace(config, data=data, format_version=FORMAT_VERSION)


def _first_difference(a: Any, b: Any, prefix: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            found = _first_difference(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else key)
            if found:
                return found
        return None
    return None if a == b else prefix


def check_resume_compatible(saved: PretrainConfig, new: PretrainConfig) -> dict[str, list]:
    """Refuse a resume that changes what the steps compute, except the recovery settings; returns those
    changes as {dotted key: [old, new]}."""
    a, b = to_dict(resolved_config(saved)), to_dict(resolved_config(new))
    for section in RESUMABLE_CHANGES:
        a.pop(section, None)
        b.pop(section, None)
    changes = {}
    for key in RECOVERY_CHANGES:
        section, name = key.split(".")
        old, value = a.get(section, {}).pop(name, None), b.get(section, {}).pop(name, None)
        if old != value:
            changes[key] = [old, value]
    key = _first_difference(a, b)
    if key:
        raise ConfigError("differs from the run's config.toml; resume with the same settings (only budget, eval, "
                          f"log, checkpoint, distributed settings and {', '.join(RECOVERY_CHANGES)} may change)", key)
    return changes


def run_started(out_dir: Path) -> bool:
    """Whether a run folder holds training (metrics, checkpoints or a model); a folder left by a run that
    failed while starting holds only its config.toml, and a rerun may start afresh there."""
    metrics = out_dir / "metrics.jsonl"
    return ((metrics.is_file() and metrics.stat().st_size > 0) or bool(ckpt.list_checkpoints(out_dir / "checkpoints"))
            or (out_dir / "model").exists() or (out_dir / "summary.json").exists())


def open_run_dir(out_dir: Path, config: PretrainConfig, resume: bool, world: World) -> RunLock | None:
    """Lock the run folder (rank 0, for the run's life), refuse to mix runs, write config.toml.

    The lock comes first, so two processes given the same folder cannot both pass the checks. Returns the
    lock (None on other ranks); `Trainer.close` releases it and the kernel does on a crash.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise MaskbenchError(f"--out {out_dir} is a file; choose a folder")
    if marked_kind(out_dir) not in (None, RUN_KIND):
        claim_out_dir(out_dir, RUN_KIND)  # another kind of maskbench output: refused with its name
    if not (out_dir / MARKER).exists() and not (out_dir / "config.toml").exists():
        claim_out_dir(out_dir, RUN_KIND)  # a folder maskbench did not write: refused unless empty
    lock = RunLock(out_dir).acquire() if world.is_main else None
    try:
        started = run_started(out_dir)
        if started and not resume:
            raise MaskbenchError(f"{out_dir} already holds a run; pass --resume to continue it or choose another --out")
        changes = {}
        if resume and started and (out_dir / "config.toml").is_file():
            changes = check_resume_compatible(load_pretrain_config(out_dir / "config.toml"), config)
        # Every rank has looked at the folder before rank 0 writes to it (else a later rank sees "a run").
        world.barrier()
        if not world.is_main:
            world.barrier()
            return None
        try:
            mark_dir(out_dir, RUN_KIND)
            from ..io import write_text

            write_text(out_dir / "config.toml", dumps_toml(resolved_config(config)))
            if changes:
                append_jsonl(out_dir / HISTORY, {"event": "resume", "changed": changes})
        except (OSError, MaskbenchError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise MaskbenchError(f"cannot write to {out_dir}: {reason}; choose a writable --out") from None
        world.barrier()
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    return lock


# --- the loop ----------------------------------------------------------------------------------------------

@dataclass
class Trainer:
    """One pretraining run. Every attribute is declared here and filled by `Trainer.build` (nothing appears
    later); `train_step()` is one optimiser step, `run()` the whole budget, `close()` the tear-down."""

    config: PretrainConfig
    out_dir: Path
    world: World
    setup: Setup
    loader: Any  # PretrainBatches over this rank's rows of the train split
    val_loader: Any  # PretrainBatches over the validation split, or None
    eval_disabled_reason: str  # why val_loader is None
    accumulation: int  # micro-batches per rank and step
    multiplier: int  # rows through the model per sequence (MLM with predict_rate > mask_rate)
    device: torch.device
    raw_model: torch.nn.Module  # the model itself (what is saved)
    model: torch.nn.Module  # what runs: wrapped for DDP/FSDP, compiled
    optimization: Optimization
    total_steps: int | None
    total_seconds: float | None
    state: TrainState
    first_bad_step: torch.Tensor  # first step with a non-finite loss or gradient norm (inf: none yet)
    checkpoints_dir: Path
    last_checkpoint_step: int = -1
    lock: RunLock | None = None  # the run folder's lock (rank 0), held until close()
    log: MetricsLog | None = None  # open while `run()` runs
    caller_threads: int = 0  # torch's thread count before the run (`threads` applies to this run only)

    @classmethod
    def build(cls, config: PretrainConfig, out_dir: str | Path, resume: bool = False) -> Trainer:
        """Set up a run (data, model, optimiser, run folder; restored from the newest checkpoint with
        `resume`). The caller owns the result: `run()` closes it, otherwise call `close()`."""
        caller_threads = torch.get_num_threads()
        if config.deterministic:  # before the device is first touched: cuBLAS reads its setting then
            make_deterministic()
        world = init_world(config.distributed, config.device)
        try:
            if config.threads:
                torch.set_num_threads(config.threads)
            trainer = cls._build(config, Path(out_dir), resume, world, caller_threads)
        except BaseException:
            close_world(world)
            torch.set_num_threads(caller_threads)
            raise
        if resume:
            try:
                trainer.restore()
            except BaseException:
                trainer.close()
                raise
        return trainer

    @classmethod
    def _build(cls, cfg: PretrainConfig, out_dir: Path, resume: bool, world: World, caller_threads: int) -> Trainer:
        s = setup(cfg)
        lock = open_run_dir(out_dir, cfg, resume, world)
        try:
            return cls._build_in(cfg, out_dir, world, caller_threads, s, lock)
        except BaseException:
            if lock is not None:
                lock.release()
            raise

    @classmethod
    def _build_in(cls, cfg: PretrainConfig, out_dir: Path, world: World, caller_threads: int, s: Setup,
                  lock: RunLock | None) -> Trainer:
        accumulation = cfg.batch.accumulation(world.world_size)
        pairs = getattr(s.objective, "sentence_task", None)
        add_special = not s.seq2seq
        loader = PretrainBatches(s.shards_dir, "train", batch_size=cfg.batch.size // world.world_size,
                                 seq_len=s.raw_seq_len, seed=cfg.seed, pairs=pairs, add_special=add_special,
                                 rank=world.rank, world_size=world.world_size, max_tokens=cfg.data.max_tokens,
                                 short_seq_prob=cfg.data.short_seq_prob)
        eval_size = cfg.eval.batch_size or cfg.batch.size
        if eval_size % world.world_size:
            raise ConfigError(f"{eval_size} sequences do not split over {world.world_size} processes",
                              "eval.batch_size")
        val_loader, eval_disabled_reason = None, ""
        try:
            val_loader = PretrainBatches(s.shards_dir, "validation", batch_size=eval_size, seq_len=s.raw_seq_len,
                                         seed=cfg.eval.seed, pairs=pairs, add_special=add_special,
                                         short_seq_prob=cfg.data.short_seq_prob)
        except DataError as e:
            eval_disabled_reason = str(e)
        device = world.device
        raw_model = s.model.to(device)
        sample = None
        if world.distributed and not world.fsdp:
            probe = s.objective(loader.get_global(0), generator=stream_generator(cfg.seed, TRAIN_STREAM, 0))
            probe = {k: v[:2] for k, v in probe.items() if k in s.model_keys}
            sample = to_device(probe, s.model_keys, device)
        model = wrap_model(raw_model, world, sample)
        budget = cfg.budget
        optimization = build_optimization(model, cfg.optim, cfg.schedule, budget.steps, budget.seconds, device)
        if cfg.compile:
            model = torch.compile(model, mode=None if cfg.compile_mode == "default" else cfg.compile_mode)
        state = TrainState(seed=cfg.seed, window=WindowStats(s.terms, device), device=device)
        first_bad_step = torch.full((), math.inf, dtype=torch.float64, device=device)
        torch.manual_seed(cfg.seed * 1_000_003 + world.rank)  # dropout: one stream per rank
        return cls(config=cfg, out_dir=out_dir, world=world, setup=s, loader=loader, val_loader=val_loader,
                   eval_disabled_reason=eval_disabled_reason, accumulation=accumulation,
                   multiplier=int(getattr(s.objective, "batch_multiplier", 1)), device=device, raw_model=raw_model,
                   model=model, optimization=optimization, total_steps=budget.steps, total_seconds=budget.seconds,
                   state=state, first_bad_step=first_bad_step, checkpoints_dir=out_dir / "checkpoints",
                   caller_threads=caller_threads, lock=lock)

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.optimization.optimizer

    @property
    def step(self) -> int:
        return self.state.step

    def close(self) -> None:
        """Close the log and the process group; give the caller back its torch thread count."""
        if self.log is not None:
            self.log.close()
            self.log = None
        close_world(self.world)
        torch.set_num_threads(self.caller_threads)
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def restore(self) -> None:
        """Continue from the newest valid checkpoint of the run folder (none: from step 0)."""
        skipped: list[str] = []
        warn = ckpt.warn_to_stderr if self.world.is_main else (lambda message: None)

        def note(message: str) -> None:
            skipped.append(message.removeprefix("skipping corrupted checkpoint "))
            warn(message)

        path = ckpt.latest_valid_checkpoint(self.checkpoints_dir, warn=note)
        if path is None:
            if skipped:  # never restart over a run whose every checkpoint is damaged: it would replace model/
                raise CheckpointError(f"cannot resume {self.out_dir}: every checkpoint is corrupt "
                                      f"({'; '.join(skipped)}); nothing was changed")
            if run_started(self.out_dir) and (self.out_dir / "model").exists():
                raise CheckpointError(f"cannot resume {self.out_dir}: the run finished and kept no checkpoint; its "
                                      f"model/ is left as it is (start a new run in another --out)")
            every = self.config.checkpoint.every
            why = (f"it stopped before its first checkpoint (step {every})" if every else
                   "it writes no checkpoints (checkpoint.every = 0)")
            self._message(f"--resume: no checkpoint in {self.out_dir}, {why}; starting over from step 0")
            if self.world.is_main:
                truncate_metrics(self.out_dir / "metrics.jsonl", 0)
            return
        loaded = ckpt.read_checkpoint(path)
        saved = loaded.train_state["trainer"]
        if saved.get("global_batch") != self.config.batch.size:
            raise CheckpointError(f"{path.name} was trained with batch.size {saved.get('global_batch')}; "
                                  f"resume with the same global batch")
        try:
            load_full_state_dicts(self.model, self.optimizer, loaded.model_state, loaded.optimizer_state, self.world)
        except (RuntimeError, KeyError, ValueError) as e:
            raise CheckpointError(f"{path} does not fit this model: {str(e).splitlines()[0]}") from None
        prefix = f"rank{self.world.rank}."
        local = {name[len(prefix):]: t for name, t in loaded.train_state["rng"].items() if name.startswith(prefix)}
        if not local and self.world.is_main:
            ckpt.warn_to_stderr(f"{path.name} has no RNG state for rank {self.world.rank} (it was written by "
                                f"{saved.get('world_size')} processes); dropout masks will differ from a run that "
                                f"never stopped")
        python_rng = loaded.train_state["python_rng"] if self.world.is_main else None
        self.state.load_state_dict({"trainer": saved, "rng": local, "python_rng": python_rng})
        self.last_checkpoint_step = self.state.step
        if self.world.is_main:
            truncate_metrics(self.out_dir / "metrics.jsonl", self.state.step)
            self._message(f"--resume: resumed from {path}, continuing from step {self.state.step}")

    # helpers ----------------------------------------------------------------------------------------------
    def _message(self, text: str) -> None:
        if self.log is not None:
            self.log.message(text)
        elif self.world.is_main:
            print(text, file=sys.stderr)

    def finished(self) -> bool:
        """Whether the budget (steps, or training seconds) is spent."""
        if self.total_steps is not None and self.state.step >= self.total_steps:
            return True
        return self.total_seconds is not None and self.state.elapsed >= self.total_seconds

    def _check_finite(self, force: bool = False) -> None:
        """Stop on a NaN/inf loss or gradient norm: every step in one CPU process; otherwise at each log line
        and before each checkpoint, agreed by all ranks (no per-step sync; no checkpoint after a bad step)."""
        if not force and (self.device.type != "cpu" or self.world.distributed):
            return
        bad = self.world.all_reduce_min(self.first_bad_step.clone())
        value = float(bad)
        if math.isfinite(value):
            last = ckpt.list_checkpoints(self.checkpoints_dir)
            keep = f"the last good checkpoint is {last[-1][1]}" if last else "no checkpoint was written"
            raise TrainingDiverged(f"the loss became NaN or infinite at step {int(value) + 1}; stopped, {keep} "
                                   f"(lower optim.lr, raise schedule warm-up or set optim.grad_clip, then --resume)")

    # one step ---------------------------------------------------------------------------------------------
    def train_step(self) -> None:
        """One optimiser step on global batch `state.step`: corrupt it, run this rank's micro-batches forward
        and backward (each loss normalised by the global number of predictions), clip, step."""
        cfg, world, s, state = self.config, self.world, self.setup, self.state
        raw = self.loader.get_global(state.step)
        batch = s.objective(raw, generator=state.generator(TRAIN_STREAM))
        counts = count_predictions(batch, s.terms)
        scales = [world.world_size / c if c else 0.0 for c in counts]
        rows = rank_rows(batch, world)
        micro = rows["input_ids"].shape[0] // self.accumulation
        self.optimization.set_lr(state.step, state.elapsed)
        stats = WindowStats(s.terms, self.device)
        for index in range(self.accumulation):
            part = {k: v[index * micro:(index + 1) * micro] for k, v in rows.items() if k in s.model_keys}
            if "labels" in part and hasattr(self.raw_model, "check_capacity"):
                self.raw_model.check_capacity(part["labels"])  # static shapes: checked here, on the CPU
            part = to_device(part, s.model_keys, self.device)
            with no_sync(self.model, world, skip=index < self.accumulation - 1):
                with autocast(self.device, cfg.precision):
                    out = self.model(**part)
                loss = None
                for i, term in enumerate(s.terms):
                    if not scales[i]:
                        continue
                    contribution = out[term.loss_key] * out[term.count_key] * scales[i]
                    loss = contribution if loss is None else loss + contribution
                    stats.add_term(i, contribution, out[term.correct_key], out[term.count_key], world.world_size)
                if loss is None:
                    loss = sum(p.sum() * 0.0 for p in self.raw_model.parameters())
                loss.backward()
        grad_norm = self.optimization.clip()
        stats.close_step(grad_norm)
        finite = torch.isfinite(stats.loss)
        if grad_norm is not None:
            finite = finite & torch.isfinite(stats.grad_norm)
        self.first_bad_step = torch.where(finite | torch.isfinite(self.first_bad_step), self.first_bad_step,
                                          torch.full_like(self.first_bad_step, state.step))
        self._check_finite()
        self.optimization.step()
        state.window.add(stats)
        state.tokens += raw["input_ids"].numel()
        state.step += 1

    # logging, evaluation, checkpoints ---------------------------------------------------------------------
    def _flush_window(self, window_seconds: float, window_tokens: int) -> None:
        window = self.state.window
        if window.steps == 0:
            return
        self._check_finite(force=True)
        sums = self.world.all_reduce_sum(window.values.clone()).cpu().tolist()
        record: dict[str, Any] = {"step": self.state.step, "kind": "train", **window.record(sums, self.world.world_size)}
        grad_norm = record.pop("grad_norm")
        record["lr"] = self.optimization.lr
        if self.config.optim.grad_clip > 0:
            record["grad_norm"] = grad_norm
        record["tokens"] = self.state.tokens
        record["tokens_per_s"] = window_tokens / window_seconds if window_seconds > 0 else 0.0
        record["elapsed_s"] = self.state.elapsed
        self.state.last_train = record
        if self.log is not None:
            self.log.write(record)
        window.reset()

    def evaluate(self) -> dict:
        """Validation scores at this step (deterministic: the same batches, corrupted the same way); logged."""
        if self.val_loader is None:
            return {}
        cfg = self.config
        batches = min(cfg.eval.batches, len(self.val_loader))
        metrics = evaluate(self.raw_model, self.val_loader, self.setup.objective, self.setup.terms,
                           self.setup.model_keys, batches, cfg.eval.seed, self.world, cfg.precision,
                           reference=self.setup.reference)
        self.state.last_eval = {"step": self.state.step, "kind": "eval", **metrics}
        self.state.last_eval_step = self.state.step
        if self.log is not None:
            self.log.write(self.state.last_eval)
            shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
            self.log.message(f"eval @ step {self.state.step}: {shown}")
        return metrics

    def save_checkpoint(self) -> None:
        """Write `checkpoints/step-N/` (model, optimiser, schedule, the TrainState with every rank's RNG)."""
        self._check_finite(force=True)
        model_state, optimizer_state = full_state_dicts(self.model, self.optimizer, self.world)
        train_state = self.state.state_dict()
        train_state["rng"] = self.world.gather_rng(train_state["rng"])
        if self.world.is_main:
            plain = self._plain_model(model_state)

            def write_model(folder: Path) -> None:
                save_model(plain, folder)

            train_state["trainer"].update({"world_size": self.world.world_size, "global_batch": self.config.batch.size,
                                           "loader": self.loader.state(self.state.step)})
            schedule = {**self.optimization.schedule.state_dict(), "step": self.state.step,
                        "elapsed": self.state.elapsed, "lr": self.optimization.lr}
            payload = ckpt.CheckpointPayload(
                step=self.state.step, write_model=write_model, optimizer_state=optimizer_state,
                scheduler_state=schedule, train_state=train_state,
                config_toml=dumps_toml(resolved_config(self.config)))
            ckpt.write_checkpoint(self.checkpoints_dir, payload, self.config.checkpoint.keep)
        self.world.barrier()
        self.last_checkpoint_step = self.state.step

    def _plain_model(self, model_state: dict | None) -> torch.nn.Module:
        """The model as one unsharded module (under FSDP: a CPU copy filled from the gathered state)."""
        if not self.world.fsdp:
            return self.raw_model
        # Building modules draws their default initialisation from the global generator, which drives this
        # rank's dropout: without the fork the run after a checkpoint would not be the run a resume repeats.
        with torch.random.fork_rng(devices=[]):
            plain = self.setup.new_model()
        plain.load_state_dict(model_state)
        return plain

    def _save_final_model(self) -> Path:
        target = self.out_dir / "model"
        model_state = full_model_state(self.model, self.world) if self.world.fsdp else None
        if self.world.is_main:
            try:
                plain = self._plain_model(model_state)
                with atomic_dir(target, kind=MODEL_KIND) as tmp:
                    save_model(plain, tmp, extra={"pretrain": {"step": self.state.step, "tokens": self.state.tokens}})
                    shutil.copyfile(self.setup.tokenizer_path if self.setup.tokenizer_path.is_file()
                                    else self.setup.tokenizer_path / "tokenizer.json", tmp / "tokenizer.json")
            except OSError as e:
                raise MaskbenchError(f"cannot write the final model to {target}: {e.strerror or e}; the checkpoints "
                                     f"are intact (free space, then --resume)") from e
        self.world.barrier()
        return target

    # the run ----------------------------------------------------------------------------------------------
    def run(self) -> dict:
        """Train until the budget is spent, evaluating and checkpointing on the way; returns the summary.
        Closes the trainer."""
        try:
            return self._run()
        finally:
            self.close()

    def _announce(self) -> None:
        s, cfg, world = self.setup, self.config, self.world
        n_params = sum(p.numel() for p in self.raw_model.parameters())
        rows = cfg.batch.size * self.multiplier
        budget = (f"{self.total_steps} steps" if self.total_seconds is None else
                  f"{cfg.budget.time} of training" + (f" (at most {self.total_steps} steps)" if self.total_steps else ""))
        lines = [f"pretrain: {type(self.raw_model).__name__} ({n_params / 1e6:.2f}M parameters) on {self.device}, "
                 f"{world.world_size} process(es), {cfg.precision}, budget {budget}"]
        lines += [f"objective {note}" for note in s.notes]
        if self.multiplier > 1:
            lines.append(f"batch multiplier {self.multiplier}: {cfg.batch.size} sequences per step become {rows} "
                         f"rows through the model (predict_rate > mask_rate)")
        lines.append(f"batch {cfg.batch.size} x {s.raw_seq_len} tokens, {self.accumulation} micro-batch(es) per "
                     f"process and step; optimiser {cfg.optim.name} lr {cfg.optim.lr:g}")
        if cfg.data.max_tokens is not None and self.total_steps:
            lines.append(f"data: the first {self.loader.num_tokens:,} training tokens, seen "
                         f"{self._repetitions(self.total_steps):.2f} times in {self.total_steps} steps")
        if self.val_loader is None:
            lines.append(f"no evaluation: {self.eval_disabled_reason}")
        for line in lines:
            self._message(line)

    def _repetitions(self, steps: int) -> float:
        """How often the training tokens are seen: steps·batch·seq / N (T5's Table 9 measure)."""
        return steps * self.config.batch.size * self.setup.raw_seq_len / self.loader.num_tokens

    def _objective_lengths(self, batches: int = 4) -> dict:
        """Tokens per example the model reads and predicts, over the first training batches corrupted as
        training corrupted them. T5's span corruption is faster than i.i.d. noise because its targets are
        shorter (Raffel et al. §3.3.4); this is that length, measured (deterministic, so equal on resume)."""
        rows = inputs = targets = 0
        for index in range(batches):
            raw = self.loader.get_global(index)
            batch = self.setup.objective(raw, generator=self.state.generator(TRAIN_STREAM, index))
            mask = batch.get("attention_mask")
            rows += batch["input_ids"].shape[0]
            inputs += int(mask.sum()) if mask is not None else batch["input_ids"].numel()
            targets += int((batch["labels"] != IGNORE_INDEX).sum())
        return {"inputs_per_example": inputs / rows, "targets_per_example": targets / rows}

    def _run(self) -> dict:
        cfg, world, state = self.config, self.world, self.state
        total = self.total_seconds if self.total_seconds is not None else self.total_steps
        initial = state.elapsed if self.total_seconds is not None else state.step
        self.log = MetricsLog(self.out_dir, enabled=world.is_main, progress=cfg.log.progress,
                              tensorboard=cfg.log.tensorboard, total=total, by_time=self.total_seconds is not None,
                              initial=initial)
        self._announce()
        start_step = state.step
        window_start = time.perf_counter()
        window_tokens = 0
        wall_start = time.perf_counter()
        train_seconds = 0.0
        stopped_by = "steps"
        while not self.finished():
            t0 = time.perf_counter()
            tokens_before = state.tokens
            self.train_step()
            if self.device.type == "cuda" and (state.step % cfg.log.every == 0):
                torch.cuda.synchronize(self.device)
            dt = time.perf_counter() - t0
            state.elapsed += dt
            if self.total_seconds is not None:  # one clock for all ranks: they must stop at the same step
                state.elapsed = world.broadcast_float(state.elapsed)
            train_seconds += dt
            window_tokens += state.tokens - tokens_before
            finished = self.finished()
            if state.step % cfg.log.every == 0 or finished:
                self._flush_window(time.perf_counter() - window_start, window_tokens)
                window_start, window_tokens = time.perf_counter(), 0
            if self.log is not None:
                postfix = {}
                if state.last_train:
                    postfix["loss"] = f"{state.last_train['loss']:.4f}"
                    postfix["tok/s"] = f"{state.last_train['tokens_per_s']:.0f}"
                self.log.advance(dt if self.total_seconds is not None else 1, postfix)
            if cfg.eval.every and state.step % cfg.eval.every == 0 and not finished:
                self.evaluate()
            if cfg.checkpoint.every and state.step % cfg.checkpoint.every == 0 and not finished:
                self.save_checkpoint()
        if self.total_seconds is not None and state.elapsed >= self.total_seconds and \
                (self.total_steps is None or state.step < self.total_steps):
            stopped_by = "time"
        self._flush_window(time.perf_counter() - window_start, window_tokens)
        if cfg.eval.at_end and state.last_eval_step != state.step:
            self.evaluate()
        if cfg.checkpoint.final and self.last_checkpoint_step != state.step:
            self.save_checkpoint()
        model_dir = self._save_final_model()
        wall = time.perf_counter() - wall_start
        steps_run = state.step - start_step
        summary = {
            "steps": state.step,
            "steps_this_run": steps_run,
            "tokens": state.tokens,
            "train_seconds": train_seconds,
            "wall_seconds": wall,
            "tokens_per_s": (steps_run * cfg.batch.size * self.setup.raw_seq_len / train_seconds)
            if train_seconds > 0 else 0.0,
            "seconds_per_step": train_seconds / steps_run if steps_run else None,
            **self._objective_lengths(),
            "stopped_by": stopped_by,
            "batch_multiplier": self.multiplier,
            "data_tokens": self.loader.num_tokens,
            "repetitions": self._repetitions(state.step),
            "world_size": world.world_size,
            "final": {k: v for k, v in state.last_train.items() if k not in ("kind",)},
            "eval": {k: v for k, v in state.last_eval.items() if k not in ("kind",)},
            "run_dir": str(self.out_dir),
            "model_dir": str(model_dir),
        }
        if world.is_main:
            write_json(self.out_dir / "summary.json", summary)
            eta = format_eta(wall)
            self._message(f"done: {state.step} steps, {summary['tokens_per_s']:.0f} tokens/s, wall {eta}; "
                          f"model in {model_dir}")
        return summary


def pretrain(config: PretrainConfig, out_dir: str | Path, resume: bool = False) -> dict:
    """Pretrain a model as `config` says, into the run folder `out_dir`; returns the summary.

    Run folder: `config.toml` (resolved), `metrics.jsonl`, `checkpoints/step-NNNNNNN/`, `model/` (final model +
    `tokenizer.json`), `summary.json`. With `resume=True` it continues from the newest valid checkpoint.
    Under torchrun each process calls this; rank 0 writes the files.
    """
    return Trainer.build(config, out_dir, resume).run()


def read_metrics(run_dir: str | Path, kind: str | None = "train") -> list[dict]:
    """The records of a run's metrics.jsonl (of one kind, or all with kind=None)."""
    records = read_jsonl(Path(run_dir) / "metrics.jsonl")
    return [r for r in records if kind is None or r.get("kind") == kind]
