"""What a fine-tuning run is: the task, the checkpoint, the methods compared, and every knob, as dataclasses.

A `FinetuneConfig` is built from TOML / `--set` overrides with `maskbench.config.from_dict`; its sections
`[child]`, `[l2sp]` and `[mixout]` hold the method-specific knobs so one config can describe a whole
comparison (`methods = ["vanilla", "child_d"]`) and the resolved file shows every value that was used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import check_choice, check_range
from ..data.mixing import STRATEGIES
from ..errors import ConfigError

METHODS = ("vanilla", "child_f", "child_d", "l2sp", "mixout")
HEADS = ("auto", "classification", "regression")
FISHER_SCOPES = ("layers", "network")
FISHER_MODES = ("train", "eval")
SCORINGS = ("generate", "rank")


@dataclass
class ChildTuningConfig:
    """Child-Tuning (Xu et al. 2021): F keeps each gradient entry with probability p_f (scaled 1/p_f) per
    step; D updates only the parameters whose Fisher information reaches the global (1 − p_d) percentile.

    The Fisher defaults are the official `calculate_fisher`: one pass over the shuffled training set in
    mini-batches of the training batch size (`fisher_batch_size = None`), dropout on (`fisher_mode =
    "train"`), each tensor's batch gradient clipped to norm `fisher_clip` (the official max_grad_norm, 1.0),
    squared and divided by the number of batches. `fisher_scope = "layers"` ranks only the Transformer
    layers (the official code masks names containing "layer"; embeddings, pooler and head are always
    updated); `"network"` ranks every pre-trained parameter. `fisher_per_seed = true` estimates it for each
    seed with that seed's new head, data order and dropout, as the official code does (it builds the
    model from the run's seed); `false` computes it once with `fisher_seed` and shares it.
    """

    p_f: float = 0.3
    p_d: float = 0.3
    fisher_batch_size: int | None = None
    fisher_examples: int | None = None
    fisher_clip: float | None = 1.0
    fisher_scope: str = "layers"
    fisher_mode: str = "train"
    fisher_seed: int = 0
    fisher_per_seed: bool = True

    def __post_init__(self):
        check_range("p_f", self.p_f, 0, 1, low_open=True)
        check_range("p_d", self.p_d, 0, 1, low_open=True)
        check_range("fisher_batch_size", self.fisher_batch_size, 1)
        check_range("fisher_examples", self.fisher_examples, 1)
        check_range("fisher_clip", self.fisher_clip, 0, low_open=True)
        check_choice("fisher_scope", self.fisher_scope, FISHER_SCOPES)
        check_choice("fisher_mode", self.fisher_mode, FISHER_MODES)


@dataclass
class L2SPConfig:
    """L2-SP (Li et al. 2018): alpha/2·‖w − w₀‖² towards the pre-trained weights, head_alpha/2·‖w‖² on the head.

    The penalty is the regulariser: `weight_decay` (decoupled AdamW decay on top of it) is 0 unless asked
    for, whatever the run's `weight_decay`."""

    alpha: float = 0.01
    head_alpha: float = 0.01
    weight_decay: float = 0.0

    def __post_init__(self):
        check_range("alpha", self.alpha, 0)
        check_range("head_alpha", self.head_alpha, 0)
        check_range("weight_decay", self.weight_decay, 0)


@dataclass
class MixoutConfig:
    """Mixout (Lee et al. 2020): each input unit of every linear layer is swapped for its starting value
    with probability p during training (rescaled so its expectation is the current weight); exact at eval.
    The default 0.9 is the paper's mixout(w_pre, 0.9) for BERT on small GLUE tasks. Dropout is off where
    mixout is on, as in the paper's recipe (`keep_dropout = true` keeps it); the gradient is the reference
    code's grad·M (`exact_gradient = true`: the forward's derivative M/(1−p))."""

    p: float = 0.9
    keep_dropout: bool = False
    exact_gradient: bool = False

    def __post_init__(self):
        check_range("p", self.p, 0, 1, high_open=True)


@dataclass
class SquadConfig:
    """Extractive QA (`task = "squad"`), with the defaults of BERT's run_squad.py: windows start
    `doc_stride` tokens apart, questions keep `max_query_length` tokens, answers are at most
    `max_answer_length` tokens, the `n_best` start and end logits make the candidates, and (SQuAD 2.0) the
    answer is empty when null score − best span > `null_score_diff_threshold`. BERT uses max_length 384."""

    doc_stride: int = 128
    max_query_length: int = 64
    max_answer_length: int = 30
    n_best: int = 20
    null_score_diff_threshold: float = 0.0

    def __post_init__(self):
        check_range("doc_stride", self.doc_stride, 1)
        check_range("max_query_length", self.max_query_length, 1)
        check_range("max_answer_length", self.max_answer_length, 1)
        check_range("n_best", self.n_best, 1)


@dataclass
class MixtureConfig:
    """T5's multi-task training (Raffel et al. Section 3.5.2): the task mixed with `tasks` and, with
    `unsupervised`, the pretraining objective on `shards`, all text-to-text (encoder-decoders only).

    `strategy`: "proportional" (examples-proportional, limit `limit` = T5's K), "temperature" (rates
    ∝ min(e, K)^(1/T)) or "equal". `rows`: rows per epoch (None: the task's training examples divided by
    its mixing rate, so an epoch holds each of its examples once in expectation). `seed` fixes which
    example each row of the epoch is, for every fine-tuning seed alike.
    """

    tasks: list[str] = field(default_factory=list)
    unsupervised: bool = False
    shards: str | None = None
    objective: dict = field(default_factory=lambda: {"name": "span_corruption"})
    seq_len: int = 64
    strategy: str = "proportional"
    limit: int | None = None
    temperature: float = 1.0
    rows: int | None = None
    seed: int = 0

    def __post_init__(self):
        check_choice("strategy", self.strategy, STRATEGIES)
        check_range("limit", self.limit, 1)
        check_range("temperature", self.temperature, 0, low_open=True)
        check_range("rows", self.rows, 1)
        check_range("seq_len", self.seq_len, 4)
        if not isinstance(self.objective, dict) or not isinstance(self.objective.get("name", "span_corruption"), str):
            raise ConfigError("must be a table such as { name = \"span_corruption\" }", "objective")

    @property
    def enabled(self) -> bool:
        return bool(self.tasks) or self.unsupervised


@dataclass
class TransferConfig:
    """Child-Tuning's generalisation tests on every fine-tuned model (see `maskbench.finetune.transfer`):
    `eval_tasks`, domain transfer (the model scored on other tasks with the same labels); `task`, task
    transfer (a new head trained on this task over the frozen fine-tuned encoder, for `epochs` at `lr`,
    default the run's learning rate, on at most `max_train_examples` examples)."""

    eval_tasks: list[str] = field(default_factory=list)
    task: str | None = None
    epochs: float = 3.0
    lr: float | None = None
    max_train_examples: int | None = None

    def __post_init__(self):
        if isinstance(self.eval_tasks, str):
            self.eval_tasks = [self.eval_tasks]
        check_range("epochs", self.epochs, 0, low_open=True)
        check_range("lr", self.lr, 0, low_open=True)
        check_range("max_train_examples", self.max_train_examples, 1)


@dataclass
class FinetuneConfig:
    """A fine-tuning comparison: one task, one checkpoint, several methods × seeds.

    `checkpoint`: a pretraining run folder, a model folder, a Hugging Face folder, or `random:NAME` (a named
    size, randomly initialised: the "not pretrained" baseline, which needs `tokenizer`).
    `lr`, `epochs`, `warmup` left unset (None) take the defaults of the model's size (`SIZE_DEFAULTS`,
    chosen by hidden size: the papers' values for base and large, our own runs' for tiny/mini/small);
    the resolved values and their source are printed and written to config.toml.
    `epochs` may be fractional; `max_steps` caps the total optimiser steps (quick runs, tests).
    """

    task: str = ""
    data: str | None = None
    checkpoint: str = ""
    tokenizer: str | None = None
    methods: list[str] = field(default_factory=lambda: ["vanilla"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    jobs: int = 1
    head: str = "auto"

    epochs: float | None = None
    max_steps: int | None = None
    batch_size: int = 32
    length_bucketing: bool = False  # batches of similar lengths (less padding; off: random batches as the papers)
    eval_batch_size: int = 128
    max_length: int = 128
    lr: float | None = None
    warmup: float | None = None
    weight_decay: float = 0.01
    adam_eps: float = 1e-6
    betas: tuple[float, float] = (0.9, 0.999)
    max_grad_norm: float | None = 1.0
    reinit_layers: int = 0
    early_stopping: int | None = None
    max_train_examples: int | None = None
    device: str = "auto"  # as pretraining: a GPU when there is one
    progress: bool = True
    tensorboard: bool = True  # events in each run's tensorboard/ folder (train loss, dev metrics per epoch)
    optimizer: str = "adamw"  # or "adafactor" (T5 fine-tuned with Adafactor at a constant 1e-3)
    lr_schedule: str = "linear"  # after `warmup`: "linear" decay to 0, "constant", "cosine" or "inverse_sqrt"
    scoring: str = "generate"  # text-to-text: greedy decoding + exact match, or "rank" (rank classification)
    save_model: bool = True  # each seed's best model in METHOD/seed-N/model/ (a Hugging Face folder when possible)

    child: ChildTuningConfig = field(default_factory=ChildTuningConfig)
    l2sp: L2SPConfig = field(default_factory=L2SPConfig)
    mixout: MixoutConfig = field(default_factory=MixoutConfig)
    squad: SquadConfig = field(default_factory=SquadConfig)
    mixture: MixtureConfig = field(default_factory=MixtureConfig)
    transfer: TransferConfig = field(default_factory=TransferConfig)

    def __post_init__(self):
        if isinstance(self.methods, str):
            self.methods = [self.methods]
        if not self.methods:
            raise ConfigError("give at least one method", "methods")
        for i, method in enumerate(self.methods):
            check_choice(f"methods[{i}]", method, METHODS)
        if len(set(self.methods)) != len(self.methods):
            raise ConfigError(f"a method is listed twice: {self.methods}", "methods")
        if not self.seeds:
            raise ConfigError("give at least one seed", "seeds")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"a seed is listed twice: {self.seeds}", "seeds")
        for i, seed in enumerate(self.seeds):
            check_range(f"seeds[{i}]", seed, 0)
        check_range("jobs", self.jobs, 1)
        check_choice("head", self.head, HEADS)
        check_range("epochs", self.epochs, 0, low_open=True)
        check_range("max_steps", self.max_steps, 1)
        check_range("batch_size", self.batch_size, 1)
        check_range("eval_batch_size", self.eval_batch_size, 1)
        check_range("max_length", self.max_length, 4)
        check_range("lr", self.lr, 0, low_open=True)
        check_range("warmup", self.warmup, 0, 1, high_open=True)
        check_range("weight_decay", self.weight_decay, 0)
        check_range("adam_eps", self.adam_eps, 0, low_open=True)
        for i, beta in enumerate(self.betas):
            check_range(f"betas[{i}]", beta, 0, 1, high_open=True)
        check_range("max_grad_norm", self.max_grad_norm, 0, low_open=True)
        check_range("reinit_layers", self.reinit_layers, 0)
        check_range("early_stopping", self.early_stopping, 1)
        check_range("max_train_examples", self.max_train_examples, 1)
        check_choice("device", self.device.split(":")[0], ("cpu", "cuda", "auto"))
        check_choice("scoring", self.scoring, SCORINGS)
        check_choice("optimizer", self.optimizer, ("adamw", "adafactor"))
        check_choice("lr_schedule", self.lr_schedule, ("linear", "constant", "cosine", "inverse_sqrt"))


@dataclass(frozen=True)
class SizeDefaults:
    """Fine-tuning hyper-parameters for one band of model widths, and where they come from."""

    lr: float
    epochs: float
    warmup: float
    source: str


_OWN_RUNS = ("maskbench's runs (docs/finetuning.md): pretrained 1,000 steps on the synthetic corpus, fine-tuned "
             "on 1,000 synth-sentiment examples, 5 epochs, batch 32, lr grid")
#: (largest hidden size, defaults); the first row whose width is >= the model's applies.
SIZE_DEFAULTS: tuple[tuple[float, SizeDefaults], ...] = (
    (128, SizeDefaults(1e-3, 5.0, 0.1, f"{_OWN_RUNS} 1e-4/3e-4/1e-3 on bert-tiny: 54.8/62.1/65.3")),
    (256, SizeDefaults(3e-4, 5.0, 0.1, f"{_OWN_RUNS} 3e-5/1e-4/3e-4/1e-3 on bert-mini: 53.1/58.0/61.2/51.7")),
    (512, SizeDefaults(1e-4, 5.0, 0.1, f"{_OWN_RUNS} 3e-5/1e-4/3e-4/1e-3 on bert-small: 53.4/67.7/68.1/50.0 "
                                       "(1e-4: as good within noise, further from the collapse at 1e-3)")),
    (float("inf"), SizeDefaults(2e-5, 3.0, 0.1, "Devlin et al. 2019 (BERT), GLUE: batch 32, 3 epochs, lr from "
                                                "{5e-5, 4e-5, 3e-5, 2e-5}; warm-up 10% as google-research/bert "
                                                "run_classifier.py")),
)


def size_defaults(hidden_size: int) -> SizeDefaults:
    """The defaults for a model of this hidden size (`SIZE_DEFAULTS`)."""
    return next(d for width, d in SIZE_DEFAULTS if hidden_size <= width)


def default_lr(hidden_size: int) -> float:
    """The default learning rate for this hidden size (`SIZE_DEFAULTS`)."""
    return size_defaults(hidden_size).lr


def default_text_to_text_lr() -> float:
    """3e-4 for text-to-text fine-tuning with AdamW: the range Hugging Face's T5 guide recommends (1e-4 to
    3e-4); T5 itself fine-tuned with Adafactor at a constant 1e-3."""
    return 3e-4


_TEXT_TO_TEXT_SOURCE = "Hugging Face's T5 guide (AdamW, 1e-4 to 3e-4); T5 itself: Adafactor at a constant 1e-3"


def resolve_hyperparameters(cfg: FinetuneConfig, hidden_size: int, text_to_text: bool = False) -> dict[str, float]:
    """lr, epochs and warmup: the config's where set, else the size's defaults (text-to-text: its lr)."""
    defaults = size_defaults(hidden_size)
    out = {key: getattr(cfg, key) if getattr(cfg, key) is not None else getattr(defaults, key)
           for key in ("lr", "epochs", "warmup")}
    if text_to_text and cfg.lr is None:
        out["lr"] = default_text_to_text_lr()
    return out


def defaults_note(cfg: FinetuneConfig, hidden_size: int, text_to_text: bool = False) -> str:
    """One line naming the size defaults used (empty when lr, epochs and warmup were all given)."""
    unset = [key for key in ("lr", "epochs", "warmup") if getattr(cfg, key) is None]
    if not unset:
        return ""
    values = resolve_hyperparameters(cfg, hidden_size, text_to_text)
    shown = ", ".join(f"{key} = {values[key]:g}" for key in unset)
    source = size_defaults(hidden_size).source
    if text_to_text and "lr" in unset:
        source = f"lr: {_TEXT_TO_TEXT_SOURCE}; epochs, warmup: {source}"
    return f"defaults for hidden size {hidden_size}: {shown} (source: {source})"
