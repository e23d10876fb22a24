"""`PretrainConfig`: every knob of a pretraining run, as dataclasses that round-trip through TOML.

The `[model]` and `[objective]` tables are free tables: their keys belong to the models and objectives
stages, which validate them (with `did you mean`) when the run is set up. Everything the trainer itself
owns is typed here and checked in `__post_init__`, so a typo fails before any data is read.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..config import check_choice, check_range, config_data, from_dict
from ..errors import ConfigError

#: Bumped when a config key changes meaning; `config.toml` of every run records it.
FORMAT_VERSION = 1

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: str | int | float, key: str = "budget.time") -> float:
    """Seconds in "90s", "10m", "1.5h", "1h30m" or a bare number of seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        raw = str(text).strip().lower().replace(" ", "")
        if re.fullmatch(r"\d+(\.\d+)?", raw):
            seconds = float(raw)
        else:
            parts = _DURATION.findall(raw)
            if not parts or "".join(f"{n}{u}" for n, u in parts) != raw:
                raise ConfigError(f"expected a duration like \"90s\", \"10m\" or \"1h30m\", got {text!r}", key)
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"a duration must be positive, got {text!r}", key)
    return seconds


@dataclass
class DataConfig:
    """Where the token shards are, and how sequences are cut from them."""

    shards: Path | None = None
    tokenizer: Path | None = None  # None: `tokenizer.json` beside the shards (as `maskbench prepare` writes it)
    seq_len: int | None = None  # model input length; None: the shards' sequence length
    max_tokens: int | None = None  # train on the first N tokens of the train split only (T5's data-size study)
    short_seq_prob: float = 0.1  # NSP/SOP: share of documents with a shorter target length (BERT, ALBERT)

    def __post_init__(self):
        check_range("seq_len", self.seq_len, 8, None)
        check_range("max_tokens", self.max_tokens, 1, None)
        check_range("short_seq_prob", self.short_seq_prob, 0, 1)


@dataclass
class OptimConfig:
    """AdamW (fused where PyTorch offers it), LAMB, or Adafactor (T5's optimiser, `torch.optim.Adafactor`
    with its defaults, which are T5's: factored second moments, decay 1 − t^−0.8, update clipping at 1,
    relative step scaled by the parameter's RMS); weight decay skips norms and biases."""

    name: Literal["adamw", "lamb", "adafactor"] = "adamw"
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    weight_decay: float = 0.01
    exclude_norm_and_bias: bool = True  # no decay (and no LAMB trust ratio) for norms and biases
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    fused: bool | None = None  # None: fused AdamW when this PyTorch has it for the device
    lamb_bias_correction: bool = True  # ALBERT's TF LAMB had none; most PyTorch LAMBs have it

    def __post_init__(self):
        check_range("lr", self.lr, 0, None, low_open=True)
        for i, beta in enumerate(self.betas):
            check_range(f"betas[{i}]", beta, 0, 1, high_open=True)
        check_range("eps", self.eps, 0, None, low_open=True)
        check_range("weight_decay", self.weight_decay, 0, None)
        check_range("grad_clip", self.grad_clip, 0, None)


@dataclass
class ScheduleConfig:
    """Linear warm-up, then linear, cosine or constant, over the budget (steps, or wall time); or T5's
    `inverse_sqrt`: the peak for the first `warmup_steps` steps, then peak·sqrt(W / step) (with peak 0.01 and
    W = 10^4 this is T5's 1/sqrt(max(step, 10^4))), no linear warm-up."""

    warmup_steps: int = 0
    warmup_fraction: float = 0.0  # of the budget; the only warm-up unit a time budget accepts
    decay: Literal["linear", "cosine", "constant", "inverse_sqrt"] = "linear"
    min_lr_ratio: float = 0.0  # the learning rate at the end, as a share of the peak

    def __post_init__(self):
        check_range("warmup_steps", self.warmup_steps, 0, None)
        check_range("warmup_fraction", self.warmup_fraction, 0, 1, high_open=True)
        check_range("min_lr_ratio", self.min_lr_ratio, 0, 1)
        if self.warmup_steps and self.warmup_fraction:
            raise ConfigError("set warmup_steps or warmup_fraction, not both", "warmup_steps")


@dataclass
class BatchConfig:
    """`size` sequences per optimiser step over all ranks; `micro_size` per forward pass on one rank."""

    size: int = 32
    micro_size: int | None = None  # None: size / world_size (no accumulation)

    def __post_init__(self):
        check_range("size", self.size, 1, None)
        check_range("micro_size", self.micro_size, 1, None)

    def accumulation(self, world_size: int) -> int:
        """Micro-batches per rank and step; the global batch must split evenly."""
        if self.size % world_size:
            raise ConfigError(f"{self.size} sequences do not split over {world_size} processes", "batch.size")
        per_rank = self.size // world_size
        micro = self.micro_size or per_rank
        if per_rank % micro:
            raise ConfigError(f"{per_rank} sequences per process are not a multiple of micro_size {micro}",
                              "batch.micro_size")
        return per_rank // micro


@dataclass
class BudgetConfig:
    """Stop after `steps` optimiser steps or `time` of training (both: whichever comes first).

    With a time budget the schedule follows elapsed training time (cramming), so equal-compute comparisons
    of objectives are one setting; exact resume is guaranteed for step budgets only.
    """

    steps: int | None = None
    time: str | None = None

    def __post_init__(self):
        check_range("steps", self.steps, 1, None)
        if self.time is not None:
            parse_duration(self.time, "time")
        if self.steps is None and self.time is None:
            raise ConfigError("set steps (e.g. 1000) or time (e.g. \"10m\")", "steps")

    @property
    def seconds(self) -> float | None:
        return None if self.time is None else parse_duration(self.time)


@dataclass
class EvalConfig:
    """Deterministic validation: the same sequences and masks at every evaluation."""

    every: int = 0  # steps between evaluations; 0: only at the end
    batches: int = 8
    batch_size: int | None = None  # None: batch.size
    at_end: bool = True
    reference_rate: float | None = 0.15  # also score MLM at this fixed rate (token unit); None: off
    reference_replace: tuple[float, float, float] = (0.8, 0.1, 0.1)  # mask/random/keep at the reference
    seed: int = 1234

    def __post_init__(self):
        check_range("every", self.every, 0, None)
        check_range("batches", self.batches, 1, None)
        check_range("batch_size", self.batch_size, 1, None)
        check_range("reference_rate", self.reference_rate, 0, 1, low_open=True, high_open=True)
        if abs(sum(self.reference_replace) - 1.0) > 1e-6 or min(self.reference_replace) < 0:
            raise ConfigError(f"must be three shares summing to 1, got {list(self.reference_replace)}",
                              "reference_replace")


@dataclass
class LogConfig:
    every: int = 10  # steps per metrics.jsonl line (the mean over those steps)
    progress: bool = True  # tqdm bar on stderr
    tensorboard: bool = True  # events beside metrics.jsonl when `tensorboard` is installed

    def __post_init__(self):
        check_range("every", self.every, 1, None)


@dataclass
class CheckpointConfig:
    every: int = 1000  # steps between checkpoints; 0: none during training
    keep: int = 2  # newest checkpoints kept
    final: bool = True  # a checkpoint at the end too (makes a finished run resumable with a larger budget)

    def __post_init__(self):
        check_range("every", self.every, 0, None)
        check_range("keep", self.keep, 1, None)


@dataclass
class DistributedConfig:
    backend: Literal["auto", "gloo", "nccl"] = "auto"  # auto: NCCL on GPU, gloo on CPU
    fsdp: bool = False  # FSDP2 (fully_shard) instead of DDP, for models that do not fit one device
    timeout_minutes: float = 30.0

    def __post_init__(self):
        check_range("timeout_minutes", self.timeout_minutes, 0, None, low_open=True)


@dataclass
class PretrainConfig:
    """One pretraining run. `model` and `objective` are validated by their own stages at set-up."""

    data: DataConfig = field(default_factory=DataConfig)
    model: dict[str, Any] = field(default_factory=lambda: {"size": "bert-tiny"})
    objective: dict[str, Any] = field(default_factory=lambda: {"name": "mlm"})
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    budget: BudgetConfig = field(default_factory=lambda: BudgetConfig(steps=1000))
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    seed: int = 0
    device: str = "auto"
    precision: Literal["fp32", "bf16"] = "fp32"
    compile: bool = False
    compile_mode: str = "default"  # torch.compile's mode; "reduce-overhead" replays CUDA graphs (static shapes)
    deterministic: bool = False  # deterministic kernels (bit-exact resume on a GPU too; see docs/pretraining.md)
    threads: int | None = None  # torch intra-op threads; None: PyTorch's default
    format_version: int = FORMAT_VERSION

    def __post_init__(self):
        if self.format_version != FORMAT_VERSION:
            raise ConfigError(
                f"this config is format {self.format_version} but this maskbench reads format {FORMAT_VERSION}; "
                f"update the config (see docs/pretraining.md) or use the maskbench version that wrote it",
                "format_version")
        check_choice("device", self.device.split(":")[0], ["auto", "cpu", "cuda", "mps"])
        check_choice("compile_mode", self.compile_mode, COMPILE_MODES)
        check_range("threads", self.threads, 1, None)
        if not isinstance(self.objective.get("name"), str):
            raise ConfigError("needs a name, e.g. name = \"mlm\" (see `maskbench objectives`)", "objective.name")
        model_size = self.model.get("size")
        if model_size is not None and not isinstance(model_size, str):
            raise ConfigError(f"expected a named size such as \"bert-tiny\", got {model_size!r}", "model.size")
        if self.budget.seconds is not None and self.schedule.warmup_steps:
            raise ConfigError("a time budget needs schedule.warmup_fraction (the schedule follows wall time)",
                              "schedule.warmup_steps")


def load_pretrain_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                         base: dict | None = None) -> PretrainConfig:
    """TOML file + `--set` overrides → a checked `PretrainConfig`.

    Relative data paths written in the file are relative to the file; those given with `--set` to the
    current folder (where the user typed them)."""
    data = config_data(path, overrides, base, relative_to_file=_resolve_relative_paths)
    version = data.get("format_version", FORMAT_VERSION)
    if version != FORMAT_VERSION and isinstance(version, int):
        where = f" ({path})" if path else ""
        raise ConfigError(
            f"config{where} is format {version} but this maskbench reads format {FORMAT_VERSION}; "
            f"update it (see docs/pretraining.md) or use the maskbench version that wrote it", "format_version")
    return from_dict(PretrainConfig, data)


def _resolve_relative_paths(data: dict, root: Path) -> None:
    """Paths in a config file are relative to that file, never to the current folder: a `shards/` that
    happens to sit in the current folder must not replace the one the file names."""
    section = data.get("data")
    if not isinstance(section, dict):
        return
    for key in ("shards", "tokenizer"):
        value = section.get(key)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            section[key] = str(root / value)
