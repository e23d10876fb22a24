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
- **Child-Tuning-D** (task-driven): a fixed mask over the parameters of the Transformer layers (the
  official code ranks the names containing `layer`; embeddings, pooler and task head are always updated),
  keeping those whose Fisher information reaches the (1 − p_d) percentile of all of them (one *global*
  `numpy.percentile`, entries equal to it kept, exactly as the official `calculate_fisher`). The gradient
  is masked before the step (so Adam's moments stay zero outside the child, as in the official code)
  and, after the step, entries outside the child are restored from their pre-trained values, so weight
  decay, momentum or any other optimiser term cannot move them: they stay bit-identical to the
  checkpoint (the paper's rule w ← w − η·∇L⊙M; the official AdamW still applies its decoupled decay
  there, a shrink by (1 − lr·wd) per step). Tensors with no entry in the child lose their gradient
  (`grad = None`), which makes every torch optimiser skip them entirely.

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


#: the encoder's per-layer containers: a parameter inside one is "in a layer" (the official `'layer' in name`)
LAYER_CONTAINERS = ("attention", "ffn")


def in_fisher_scope(name: str, scope: str, containers: tuple[str, ...] = LAYER_CONTAINERS) -> bool:
    """Whether the backbone parameter `name` (relative to the backbone) is ranked by Child-Tuning-D.

    `"layers"` (the official code): only parameters of the Transformer layers, i.e. whose path starts
    with one of `containers`; `"network"`: every pre-trained parameter (embeddings and pooler too).
    """
    return scope == "network" or name.split(".", 1)[0] in containers


def clip_parts(name: str) -> int:
    """How many tensors of the reference model `name` fuses: 3 for the fused query/key/value projection
    (Hugging Face BERT keeps query, key and value apart, and the official code clips each on its own)."""
    return 3 if name.endswith(("qkv.weight", "qkv.bias")) else 1


def pretrained_parameters(model: nn.Module, scope: str = "network") -> dict[str, nn.Parameter]:
    """The pre-trained encoder's trainable parameters within `scope` (see `in_fisher_scope`), named as in
    `model.named_parameters()`; the task head is never among them.

    A text-to-text encoder-decoder has no new head: every parameter is pre-trained, and `"layers"` keeps
    the Transformer blocks of both stacks (`….block.N.…`), leaving the shared embedding and final norms out.
    """
    if not hasattr(model, "classifier"):
        return {name: param for name, param in model.named_parameters()
                if param.requires_grad and (scope == "network" or ".block." in name)}
    return {f"encoder.{name}": param for name, param in model.encoder.named_parameters()
            if param.requires_grad and in_fisher_scope(name, scope)}


def fisher_information(model: nn.Module, batches: Iterable[dict], params: dict[str, nn.Parameter],
                       num_batches: int, clip: float | None = None, progress: Callable | None = None,
                       train_mode: bool = True, seed: int = 0) -> dict[str, torch.Tensor]:
    """Empirical Fisher as the official `calculate_fisher`: Σ over mini-batches of (clipped batch gradient)² / N.

    Each batch's loss is its mean log-likelihood; each tensor's gradient is clipped to norm `clip`
    on its own (the official code calls `clip_grad_norm_(param, max_grad_norm)` per parameter; a fused
    tensor is clipped per part, see `clip_parts`) before it is squared; N is the number of batches. `train_mode=True` runs with dropout on, as the official
    code does (`model.train()`); its dropout draws come from `seed` in a forked RNG, so the estimate is
    reproducible and the caller's random state is untouched.
    """
    was_training = model.training
    model.train(train_mode)
    names = list(params)
    tensors = [params[n] for n in names]
    fisher = [torch.zeros_like(p, dtype=torch.float32) for p in tensors]
    chunks = [clip_parts(n) for n in names]
    model.zero_grad(set_to_none=True)
    count = 0
    device = tensors[0].device if tensors else torch.device("cpu")
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else [], device_type=device.type):
            torch.manual_seed(seed)
            for batch in batches:
                loss = model(**batch)["loss"]
                loss.backward()
                grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in tensors]
                grads = [g.float() for g in grads]
                if clip is not None:
                    parts = [g.view(k, -1) for g, k in zip(grads, chunks)]
                    factors = [torch.clamp(clip / (part.norm(dim=1, keepdim=True) + 1e-6), max=1.0) for part in parts]
                    torch._foreach_mul_(parts, factors)
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
    """Boolean masks keeping the entries whose score reaches the global (1 − fraction) percentile.

    The official rule: `polar = numpy.percentile(all scores, (1 − p)·100)` (linear interpolation) and
    `mask = score >= polar`, so about fraction·N entries are kept, every entry tied with the threshold
    included. Returns the masks and {"kept", "total", "threshold"}.
    """
    check_range("child.p_d", fraction, 0, 1, low_open=True)
    names = list(scores)
    flat = torch.cat([scores[n].detach().reshape(-1).float().cpu() for n in names])
    total = flat.numel()
    threshold = float(np.percentile(flat.numpy(), (1.0 - fraction) * 100)) if total else 0.0
    keep = flat >= threshold
    masks, offset = {}, 0
    for n in names:
        size = scores[n].numel()
        masks[n] = keep[offset:offset + size].view(scores[n].shape)
        offset += size
    return masks, {"kept": int(keep.sum()), "total": total, "threshold": threshold}


def row_sparse_parameters(model: nn.Module) -> list[torch.Tensor]:
    """Embedding matrices: whole rows of their gradient are zero for tokens absent from the batch."""
    return [m.weight for m in model.modules() if isinstance(m, nn.Embedding)]


def timed(fn, *args, **kwargs):
    """(result, seconds) of a call; used to report the Fisher pass apart from training."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start

