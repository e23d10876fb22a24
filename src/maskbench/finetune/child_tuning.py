"""Child-Tuning (Xu et al. 2021, "Raise a Child in Large Language Model"): update only a child network.

Both variants are optimiser hooks (`Optimizer.register_step_pre_hook` / `..._post_hook`), so they work
with any torch optimiser and leave the training loop alone. They act on whole tensors with multi-tensor
(`torch._foreach_*`) ops, never per element.

- **Child-Tuning-F** (task-free): at every step each gradient entry is kept with probability p_f and
  scaled by 1/p_f, the rest zeroed, *before* the optimiser sees the gradient. This is what the official
  `ChildTuningAdamW` does (it masks `p.grad` inside `step()` ahead of Adam's moments and its decoupled
  weight decay), so with Adam a parameter whose gradient was dropped this step still moves by its
  momentum and its decay; the paper's analysis (SGD) and its code agree on "mask the gradient".
  Like the official code it covers every trainable tensor, task head included. Rows of embedding
  matrices whose gradient is entirely zero (tokens absent from the batch) draw no random numbers: the
  masked gradient there is zero whatever the mask, so skipping them changes no result's distribution and
  saves most of the cost on small models, whose embeddings dominate the parameter count.
- **Child-Tuning-D** (task-driven): a fixed mask, the top p_d share of the pre-trained parameters by
  Fisher information (one *global* ranking, exactly k = round(p_d·N) entries, ties broken by position),
  the task head always updated. The gradient is masked before the step (so Adam's moments stay zero
  outside the child, as in the official code) and, after the step, entries outside the child are
  restored from their pre-trained values, so weight decay, momentum or any other optimiser term cannot
  move them: they stay bit-identical to the checkpoint. Tensors with no entry in the child lose their
  gradient (`grad = None`), which makes every torch optimiser skip them entirely.

With p = 1 neither variant installs a hook, so training is bit-identical to vanilla.
"""

from __future__ import annotations

import time
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from ..config import check_range


class ChildTuningF:
    """The Bernoulli(p_f) gradient mask, rescaled by 1/p_f, drawn afresh at each optimiser step.

    Uniforms come from NumPy's PCG64 seeded with `seed` on the CPU (two to three times faster than
    torch's Mersenne Twister, and the draw is the cost of this method), from a seeded torch generator on
    other devices.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, p_f: float, seed: int,
                 row_sparse: Iterable[torch.Tensor] = ()):
        check_range("child.p_f", p_f, 0, 1, low_open=True)
        self.p = float(p_f)
        self.scale = 1.0 / self.p
        self.rng = np.random.default_rng(seed)
        self.generators: dict[torch.device, torch.Generator] = {}
        self.seed = seed
        self.row_sparse = {id(t) for t in row_sparse}
        self._buffer = np.empty(0, dtype=np.float32)
        self.handle = optimizer.register_step_pre_hook(self._pre_step) if self.p < 1.0 else None

    def remove(self) -> None:
        if self.handle is not None:
            self.handle.remove()

    def _uniforms(self, n: int, like: torch.Tensor) -> torch.Tensor:
        """n uniforms in [0, 1) as a tensor of `like`'s dtype and device (a reused buffer on the CPU)."""
        if like.device.type == "cpu" and like.dtype == torch.float32:
            if self._buffer.size < n:
                self._buffer = np.empty(n, dtype=np.float32)
            out = self._buffer[:n]
            self.rng.random(n, dtype=np.float32, out=out)
            return torch.from_numpy(out)
        if like.device not in self.generators:
            self.generators[like.device] = torch.Generator(like.device).manual_seed(self.seed)
        return torch.rand(n, generator=self.generators[like.device], dtype=like.dtype, device=like.device)

    def _mask_(self, values: torch.Tensor) -> torch.Tensor:
        """`values` (uniforms) become the scaled keep-mask in place: 1/p with probability p, else 0."""
        return values.lt_(self.p).mul_(self.scale)

    def _pre_step(self, optimizer, args, kwargs) -> None:
        dense: list[torch.Tensor] = []
        for group in optimizer.param_groups:
            for param in group["params"]:
                grad = param.grad
                if grad is None:
                    continue
                if id(param) in self.row_sparse and grad.dim() == 2:
                    self._mask_rows(grad)
                else:
                    dense.append(grad)
        if not dense:
            return
        flat = self._mask_(self._uniforms(sum(g.numel() for g in dense), dense[0]))
        masks, offset = [], 0
        for g in dense:
            masks.append(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()
        torch._foreach_mul_(dense, masks)

    def _mask_rows(self, grad: torch.Tensor) -> None:
        # a row is non-zero iff its max or its min is; two plain reductions are ~20× faster than ne().any()
        rows = ((grad.amax(dim=1) != 0) | (grad.amin(dim=1) != 0)).nonzero().squeeze(1)
        if rows.numel() == 0:
            return
        part = grad.index_select(0, rows)
        part.mul_(self._mask_(self._uniforms(part.numel(), part).view_as(part)))
        grad.index_copy_(0, rows, part)


class ChildTuningD:
    """A fixed child network: only entries where `masks[param]` is True are ever updated."""

    def __init__(self, optimizer: torch.optim.Optimizer, masks: dict[nn.Parameter, torch.Tensor]):
        self.partial: list[nn.Parameter] = []
        self.partial_masks: list[torch.Tensor] = []
        self.frozen_values: list[torch.Tensor] = []
        self.frozen: list[nn.Parameter] = []
        for param, mask in masks.items():
            if mask.shape != param.shape:
                raise ValueError(f"mask shape {list(mask.shape)} differs from parameter shape {list(param.shape)}")
            kept = int(mask.sum())
            if kept == mask.numel():
                continue
            if kept == 0:
                self.frozen.append(param)
            else:
                self.partial.append(param)
                keep = mask.to(device=param.device, dtype=param.dtype)
                self.partial_masks.append(keep)
                # the pre-trained value outside the child, -0.0 inside (x + -0.0 == x bit for bit)
                self.frozen_values.append(torch.where(mask.to(param.device), torch.tensor(-0.0, dtype=param.dtype),
                                                      param.detach()))
        self.handles = []
        if self.partial or self.frozen:
            self.handles.append(optimizer.register_step_pre_hook(self._pre_step))
            if self.partial:
                self.handles.append(optimizer.register_step_post_hook(self._post_step))

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()

    def _pre_step(self, optimizer, args, kwargs) -> None:
        for param in self.frozen:
            param.grad = None
        pairs = [(p.grad, m) for p, m in zip(self.partial, self.partial_masks) if p.grad is not None]
        if pairs:
            grads, masks = zip(*pairs)
            torch._foreach_mul_(list(grads), list(masks))

    @torch.no_grad()
    def _post_step(self, optimizer, args, kwargs) -> None:
        # w ← w·m + w₀·(1−m): w·1 + (−0.0) is w and w·0 + w₀ is w₀ exactly (finite w), and one fused
        # multiply-add per tensor is ~15× faster on the CPU than torch.where with a boolean mask
        for param, keep, value in zip(self.partial, self.partial_masks, self.frozen_values):
            torch.addcmul(value, param, keep, out=param)


def pretrained_parameters(model: nn.Module, scope: str = "network") -> dict[str, nn.Parameter]:
    """The parameters Child-Tuning-D ranks: the pre-trained encoder (`scope="layers"`: its Transformer
    layers only, as the official code's `'layer' in name`); the task head is never among them."""
    encoder = model.encoder
    out = {}
    for name, param in encoder.named_parameters():
        if not param.requires_grad:
            continue
        if scope == "layers" and not name.startswith(("attention.", "ffn.")):
            continue
        out[f"encoder.{name}"] = param
    return out


def fisher_information(model: nn.Module, batches: Iterable[dict], params: dict[str, nn.Parameter],
                       num_batches: int, clip: float | None = None,
                       progress: Callable | None = None) -> dict[str, torch.Tensor]:
    """Empirical Fisher: the mean over batches of the squared gradient of the batch's mean log-likelihood.

    With one example per batch this is the textbook per-example estimate. Each tensor's batch gradient is
    clipped to norm `clip` first when given (the official implementation clips with max_grad_norm = 1).
    The model runs in eval mode (no dropout), so the estimate is a function of the model and the data only.
    """
    was_training = model.training
    model.eval()
    names = list(params)
    tensors = [params[n] for n in names]
    fisher = [torch.zeros_like(p, dtype=torch.float32) for p in tensors]
    model.zero_grad(set_to_none=True)
    count = 0
    try:
        for batch in batches:
            loss = model(**batch)["loss"]
            loss.backward()
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in tensors]
            grads = [g.float() for g in grads]
            if clip is not None:
                norms = torch._foreach_norm(grads)
                factors = [torch.clamp(clip / (n + 1e-6), max=1.0) for n in norms]
                torch._foreach_mul_(grads, factors)
            torch._foreach_addcmul_(fisher, grads, grads)
            model.zero_grad(set_to_none=True)
            count += 1
            if progress is not None:
                progress(1)
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("no batches for the Fisher information")
    torch._foreach_div_(fisher, float(count))
    return dict(zip(names, fisher))


def top_fraction_masks(scores: dict[str, torch.Tensor], fraction: float) -> tuple[dict[str, torch.Tensor], dict]:
    """Boolean masks keeping exactly k = round(fraction·N) entries with the largest scores, ranked globally.

    Ties at the threshold are broken by position (earlier tensors, then earlier entries first), so the
    count is exact and the result deterministic. Returns the masks and {"kept", "total", "threshold"}.
    """
    check_range("child.p_d", fraction, 0, 1, low_open=True)
    names = list(scores)
    flat = torch.cat([scores[n].reshape(-1).float() for n in names])
    total = flat.numel()
    k = min(total, max(1, int(round(fraction * total))))
    if k == total:
        keep = torch.ones(total, dtype=torch.bool)
        threshold = float(flat.min()) if total else 0.0
    else:
        threshold_t = torch.kthvalue(flat, total - k + 1).values
        keep = flat > threshold_t
        need = k - int(keep.sum())
        if need > 0:
            ties = (flat == threshold_t).nonzero().squeeze(1)[:need]
            keep[ties] = True
        threshold = float(threshold_t)
    masks, offset = {}, 0
    for n in names:
        size = scores[n].numel()
        masks[n] = keep[offset:offset + size].view(scores[n].shape)
        offset += size
    return masks, {"kept": k, "total": total, "threshold": threshold}


def row_sparse_parameters(model: nn.Module) -> list[torch.Tensor]:
    """Embedding matrices: whole rows of their gradient are zero for tokens absent from the batch."""
    return [m.weight for m in model.modules() if isinstance(m, nn.Embedding)]


def timed(fn, *args, **kwargs):
    """(result, seconds) of a call; used to report the Fisher pass apart from training."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start

