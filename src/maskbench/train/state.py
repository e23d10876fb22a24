"""The state of a training run as one object: counters, log accumulators and RNG streams.

`TrainState.state_dict()` is what a checkpoint saves and `load_state_dict()` what a resume restores, so
nothing about the loop's position lives anywhere else. The masking and data streams need no saved state:
they are pure functions of (seed, stream, step) (`TrainState.generator`). Dropout draws from torch's global
generator, whose state is part of the dict (`rng`), as are Python's and NumPy's (`python_rng`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .checkpoint import local_rng_state, python_rng_state, restore_local_rng_state, restore_python_rng_state
from .config import FORMAT_VERSION
from .evaluate import Term, stream_generator


class WindowStats:
    """Sums over the steps since the last log line, with names: the total loss, each term's (loss, correct,
    count) and the gradient norm. They share one float64 tensor so that one all-reduce moves them all; its
    layout `[loss, (term loss, correct, count) per term, grad_norm]` is the checkpoint's `window` list."""

    LOSS, CORRECT, COUNT = 0, 1, 2

    def __init__(self, terms: tuple[Term, ...], device: torch.device | str = "cpu"):
        self.terms = tuple(terms)
        self.values = torch.zeros(2 + 3 * len(self.terms), dtype=torch.float64, device=device)
        self.steps = 0

    @property
    def loss(self) -> torch.Tensor:
        return self.values[0]

    @property
    def per_term(self) -> torch.Tensor:
        """[terms, 3] view: columns LOSS, CORRECT, COUNT."""
        return self.values[1:-1].view(len(self.terms), 3)

    @property
    def grad_norm(self) -> torch.Tensor:
        return self.values[-1]

    def add_term(self, index: int, loss: torch.Tensor, correct: torch.Tensor, count: torch.Tensor,
                 ranks: int = 1) -> None:
        """One micro-batch's contribution of term `index` (detached, as float64; the loss divided by `ranks`)."""
        row = self.per_term[index]
        row[self.LOSS] += loss.detach().double() / ranks
        row[self.CORRECT] += correct.detach().double()
        row[self.COUNT] += count.detach().double()

    def close_step(self, grad_norm: torch.Tensor | None) -> None:
        """The step's total loss (sum over terms) and its gradient norm, once every micro-batch is in."""
        self.values[0] = self.per_term[:, self.LOSS].sum()
        if grad_norm is not None:
            self.values[-1] = grad_norm.detach().to(self.values.dtype)

    def add(self, step: WindowStats) -> None:
        self.values += step.values
        self.steps += 1

    def reset(self) -> None:
        self.values.zero_()
        self.steps = 0

    def record(self, sums: list[float], world_size: int) -> dict[str, float]:
        """Means per step of all-reduced `sums` (this layout): `loss`, `{term}_loss`, `{term}_accuracy`,
        `grad_norm` (averaged over ranks, since each rank adds the same global norm)."""
        steps = max(self.steps, 1)
        record = {"loss": sums[0] / steps}
        for i, term in enumerate(self.terms):
            loss_sum, correct, count = sums[1 + 3 * i:4 + 3 * i]
            record[f"{term.name}_loss"] = loss_sum / steps
            if count:
                record[f"{term.name}_accuracy"] = correct / count
        record["grad_norm"] = sums[-1] / steps / world_size
        return record

    def state_dict(self) -> dict:
        return {"window": self.values.cpu().tolist(), "window_steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        values = torch.tensor(state["window"], dtype=torch.float64, device=self.values.device)
        if values.shape != self.values.shape:
            raise ValueError(f"window of {values.numel()} values, expected {self.values.numel()}")
        self.values = values
        self.steps = int(state["window_steps"])


@dataclass
class TrainState:
    """Where a run stands: step, training seconds, tokens seen, the log window, the last records and the
    RNG streams. The one object checkpoints save and resumes restore."""

    seed: int
    window: WindowStats
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    step: int = 0
    elapsed: float = 0.0
    tokens: int = 0
    last_eval_step: int = -1
    last_eval: dict = field(default_factory=dict)
    last_train: dict = field(default_factory=dict)

    def generator(self, stream: int, index: int | None = None) -> torch.Generator:
        """The CPU generator of `stream` at this step (or at `index`): the same whatever came before."""
        return stream_generator(self.seed, stream, self.step if index is None else index)

    def state_dict(self) -> dict:
        """`trainer` (JSON counters), `rng` (this process's torch generators) and `python_rng` (JSON)."""
        trainer = {"format_version": FORMAT_VERSION, "step": self.step, "elapsed": self.elapsed,
                   "tokens": self.tokens, **self.window.state_dict(), "last_eval_step": self.last_eval_step,
                   "last_eval": self.last_eval, "last_train": self.last_train}
        return {"trainer": trainer, "rng": local_rng_state(self.device), "python_rng": python_rng_state()}

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` gave; `rng` or `python_rng` may be missing (then those stay as they are)."""
        trainer = state["trainer"]
        self.step = int(trainer["step"])
        self.elapsed = float(trainer["elapsed"])
        self.tokens = int(trainer["tokens"])
        self.window.load_state_dict(trainer)
        self.last_eval_step = int(trainer.get("last_eval_step", -1))
        self.last_eval = dict(trainer.get("last_eval", {}))
        self.last_train = dict(trainer.get("last_train", {}))
        if state.get("rng"):
            restore_local_rng_state(state["rng"], self.device)
        if state.get("python_rng"):
            restore_python_rng_state(state["python_rng"])
