"""The one optimiser builder and the one learning-rate schedule, used by pretraining and fine-tuning.

One weight-decay rule (nanoGPT's): a parameter with two or more dimensions (matrices, embeddings) decays;
vectors (biases, normalisation weights) do not. For BERT/ALBERT/T5 this is exactly the set BERT's
`["bias", "LayerNorm"]` name rule picks, without depending on names. For LAMB the same vectors also skip
the layer-wise trust ratio, as in ALBERT's optimiser. The schedule is a pure function of the step (step
budget) or of the elapsed share of the time budget, so it needs no state beyond what the loop saves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import torch

from .config import OptimConfig, ScheduleConfig


def decays(param: torch.Tensor) -> bool:
    """The weight-decay rule: matrices and embeddings decay, vectors (biases, norm weights) do not."""
    return param.dim() >= 2


def param_groups(model: torch.nn.Module, weight_decay: float, exclude_norm_and_bias: bool = True) -> list[dict]:
    """Two groups, decayed and not; tied parameters appear once (`parameters()` de-duplicates)."""
    decay, no_decay = [], []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        (decay if decays(param) or not exclude_norm_and_bias else no_decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay, "adapt": True},
        {"params": no_decay, "weight_decay": 0.0, "adapt": False},
    ]


class Lamb(torch.optim.Optimizer):
    """LAMB (You et al. 2020), vectorised over each group with `torch._foreach_*`.

    update = m̂ / (sqrt(v̂) + eps) + weight_decay · w, scaled per tensor by the trust ratio ‖w‖ / ‖update‖
    (1 when either norm is zero, and for groups with `adapt=False`). `bias_correction=False` reproduces
    the TensorFlow optimiser ALBERT was trained with.
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-6, weight_decay: float = 0.0, bias_correction: bool = True, adapt: bool = True):
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        bias_correction=bias_correction, adapt=adapt)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            states = [self.state[p] for p in params]
            for p, state in zip(params, states):
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            exp_avgs = [s["exp_avg"] for s in states]
            exp_avg_sqs = [s["exp_avg_sq"] for s in states]
            torch._foreach_add_([s["step"] for s in states], 1.0)
            step = float(states[0]["step"])
            beta1, beta2 = group["betas"]
            torch._foreach_lerp_(exp_avgs, grads, 1.0 - beta1)
            torch._foreach_mul_(exp_avg_sqs, beta2)
            torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1.0 - beta2)
            if group["bias_correction"]:
                correction1 = 1.0 - beta1**step
                correction2 = 1.0 - beta2**step
            else:
                correction1 = correction2 = 1.0
            denom = torch._foreach_sqrt(exp_avg_sqs)
            torch._foreach_div_(denom, math.sqrt(correction2))
            torch._foreach_add_(denom, group["eps"])
            updates = torch._foreach_div(exp_avgs, denom)
            if correction1 != 1.0:
                torch._foreach_div_(updates, correction1)
            if group["weight_decay"]:
                torch._foreach_add_(updates, params, alpha=group["weight_decay"])
            if group["adapt"]:
                weight_norms = torch.stack(torch._foreach_norm(params))
                update_norms = torch.stack(torch._foreach_norm(updates))
                ratios = torch.where((weight_norms > 0) & (update_norms > 0),
                                     weight_norms / update_norms.clamp_min(torch.finfo(update_norms.dtype).tiny),
                                     torch.ones_like(weight_norms))
                torch._foreach_mul_(updates, list(ratios.unbind()))
            torch._foreach_add_(params, updates, alpha=-group["lr"])
        return loss


def fused_adamw_available(device: torch.device) -> bool:
    """Whether `torch.optim.AdamW(fused=True)` accepts parameters on this device."""
    try:
        probe = torch.nn.Parameter(torch.zeros(2, device=device))
        torch.optim.AdamW([probe], fused=True)
        return True
    except (RuntimeError, TypeError, ValueError):
        return False


def build_optimizer(model: torch.nn.Module, config: OptimConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW, LAMB or Adafactor over `model`'s trainable parameters in the two weight-decay groups of
    `param_groups`."""
    groups = param_groups(model, config.weight_decay, config.exclude_norm_and_bias)
    if config.name == "lamb":
        return Lamb(groups, lr=config.lr, betas=config.betas, eps=config.eps,
                    bias_correction=config.lamb_bias_correction)
    for group in groups:
        group.pop("adapt")
    if config.name == "adafactor":
        # PyTorch's defaults are T5's (Mesh TensorFlow's AdafactorOptimizer): beta2 = 1 - t^-0.8, update
        # clipping d = 1, eps2 = 1e-3 for the parameter-scaled step; its step is min(lr, 1/sqrt(t))
        return torch.optim.Adafactor(groups, lr=config.lr, foreach=True)
    fused = fused_adamw_available(device) if config.fused is None else config.fused
    options = {"fused": True} if fused else {"foreach": True}
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, eps=config.eps, **options)


class Schedule:
    """Peak learning rate × a factor of the step (step budget) or of elapsed/total time (time budget).

    Step budget of T steps, W warm-up steps: factor(s) = (s + 1) / W while s < W, then decays with
    q = (s − W) / (T − W) from 1 towards `min_lr_ratio` (linear: reached at s = T, as in BERT).
    Time budget: the same shape in p = elapsed / budget, with warm-up `warmup_fraction`.
    """

    def __init__(self, config: ScheduleConfig, peak_lr: float, total_steps: int | None,
                 total_seconds: float | None):
        if total_steps is None and total_seconds is None:
            raise ValueError("a schedule needs a step or time budget")
        self.config = config
        self.peak_lr = peak_lr
        self.total_steps = total_steps
        self.total_seconds = total_seconds
        if total_seconds is None:
            warmup = config.warmup_steps or round(config.warmup_fraction * total_steps)
            self.warmup_steps = min(warmup, total_steps)
        else:
            self.warmup_steps = 0

    @property
    def by_time(self) -> bool:
        return self.total_seconds is not None

    def factor(self, step: int, elapsed: float = 0.0) -> float:
        cfg = self.config
        if cfg.decay == "inverse_sqrt":  # T5: constant for the first W steps, then sqrt(W / step)
            if self.by_time:
                progress = min(max(elapsed / self.total_seconds, 0.0), 1.0)
                return math.sqrt(cfg.warmup_fraction / max(progress, cfg.warmup_fraction)) \
                    if cfg.warmup_fraction else 1.0
            width = max(self.warmup_steps, 1)
            return math.sqrt(width / max(step + 1, width))
        if self.by_time:
            progress = min(max(elapsed / self.total_seconds, 0.0), 1.0)
            if progress < cfg.warmup_fraction:
                return progress / cfg.warmup_fraction
            decay_progress = (progress - cfg.warmup_fraction) / (1.0 - cfg.warmup_fraction)
        else:
            if step < self.warmup_steps:
                return (step + 1) / self.warmup_steps
            span = max(self.total_steps - self.warmup_steps, 1)
            decay_progress = min((step - self.warmup_steps) / span, 1.0)
            remaining = max(self.total_steps - step, 0) / span  # one rounding: BERT's (T - s) / (T - W)
        low = cfg.min_lr_ratio
        if cfg.decay == "constant":
            return 1.0
        if cfg.decay == "linear":
            return low + (1.0 - low) * (1.0 - decay_progress if self.by_time else remaining)
        return low + (1.0 - low) * 0.5 * (1.0 + math.cos(math.pi * decay_progress))

    def lr(self, step: int, elapsed: float = 0.0) -> float:
        return self.peak_lr * self.factor(step, elapsed)

    def apply(self, optimizer: torch.optim.Optimizer, step: int, elapsed: float = 0.0) -> float:
        lr = self.lr(step, elapsed)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr

    def state_dict(self) -> dict:
        return {"peak_lr": self.peak_lr, "total_steps": self.total_steps, "total_seconds": self.total_seconds,
                "warmup_steps": self.warmup_steps, "decay": self.config.decay,
                "min_lr_ratio": self.config.min_lr_ratio, "warmup_fraction": self.config.warmup_fraction}


@dataclass
class Optimization:
    """What turns gradients into an update, for every loop: the optimiser, the schedule, clipping.

    A step is `set_lr(step)` → backward passes → `clip()` → `step()`; loops put their own work (L2-SP's
    gradient term, a finiteness check) between those calls.
    """

    optimizer: torch.optim.Optimizer
    schedule: Schedule
    parameters: list[torch.nn.Parameter]
    grad_clip: float = 0.0  # max global gradient norm; 0 disables clipping

    def set_lr(self, step: int, elapsed: float = 0.0) -> float:
        return self.schedule.apply(self.optimizer, step, elapsed)

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def clip(self) -> torch.Tensor | None:
        """Clip the global gradient norm to `grad_clip`; the norm before clipping (a full tensor under FSDP)."""
        if not self.grad_clip:
            return None
        norm = torch.nn.utils.clip_grad_norm_(self.parameters, self.grad_clip)
        return norm.full_tensor() if hasattr(norm, "full_tensor") else norm

    def step(self) -> None:
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def build_optimization(model: torch.nn.Module, optim: OptimConfig, schedule: ScheduleConfig,
                       total_steps: int | None, total_seconds: float | None = None,
                       device: torch.device | str = "cpu") -> Optimization:
    """The optimiser of `build_optimizer` and the `Schedule` over the budget (a time budget wins over steps)."""
    optimizer = build_optimizer(model, optim, torch.device(device))
    steps = total_steps if total_seconds is None else None
    return Optimization(optimizer=optimizer, schedule=Schedule(schedule, optim.lr, steps, total_seconds),
                        parameters=[p for p in model.parameters() if p.requires_grad], grad_clip=optim.grad_clip)
