"""The regularised baselines Child-Tuning is compared with: L2-SP, Mixout, re-initialised top layers.

- **L2-SP** (Li et al. 2018): the penalty alpha/2·‖w − w₀‖² towards the pre-trained weights plus
  head_alpha/2·‖w‖² on the new head; it replaces weight decay (the fine-tuning loop adds no decoupled
  decay for L2-SP unless `l2sp.weight_decay` asks for it). Its gradient, alpha·(w − w₀) and head_alpha·w, is added to the
  gradients after `backward()` with multi-tensor ops: the same update as adding the penalty to the loss,
  without building a graph over every parameter. It goes through the optimiser (and clipping) like the
  task gradient, as a loss term would.
- **Mixout** (Lee et al. 2020; reference: the `mixout` package's `MixLinear`): during training every
  linear layer's weight becomes (M⊙w + (1−M)⊙w₀ − p·w₀)/(1−p), where M holds one Bernoulli(1−p) draw
  per *input unit*, shared by every output row (the reference draws `noise[0]` and repeats it over the
  rows), so a whole input column of the layer is swapped for its starting value at once; its expectation
  is w and at evaluation the weight is w exactly. The reference's backward passes grad·M (without the
  1/(1−p) of the forward), and so does this one unless `exact_gradient=True`. As in the paper's recipe
  (the reference's Hugging Face example replaces every `nn.Dropout` by `Dropout(0)`), dropout is turned
  off in a model that gets mixout, attention dropout included. Implemented as a
  `torch.nn.utils.parametrize` parametrization, so the model code is untouched; `remove_mixout` restores
  plain parameters (and their names) afterwards. w₀ is the pre-trained weight for the encoder and the
  initial weight for the new head, as in the paper.
- **Re-initialised top layers** (Zhang et al. 2021, "Revisiting few-sample BERT fine-tuning"): the top k
  Transformer layers get BERT's initialisation again before fine-tuning.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..errors import ConfigError
from ..models.encoder import init_weights


class L2SP:
    """Adds the L2-SP gradient to the model's gradients; call `apply()` after each `backward()`."""

    def __init__(self, pretrained: dict[str, nn.Parameter], head: dict[str, nn.Parameter], alpha: float,
                 head_alpha: float):
        self.params = list(pretrained.values())
        self.start = [p.detach().clone() for p in self.params]
        self.head = list(head.values())
        self.alpha = float(alpha)
        self.head_alpha = float(head_alpha)

    @torch.no_grad()
    def penalty(self) -> float:
        """alpha/2·‖w − w₀‖² + head_alpha/2·‖w_head‖² (for logging; training uses the gradient only)."""
        diffs = torch._foreach_sub(self.params, self.start)
        total = sum(float(d.pow(2).sum()) for d in diffs) * self.alpha / 2
        return total + sum(float(p.pow(2).sum()) for p in self.head) * self.head_alpha / 2

    @torch.no_grad()
    def apply(self) -> None:
        for group, alpha, targets in ((self.params, self.alpha, self.start), (self.head, self.head_alpha, None)):
            if not alpha or not group:
                continue
            for p in group:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
            grads = [p.grad for p in group]
            pull = torch._foreach_sub(group, targets) if targets is not None else group
            torch._foreach_add_(grads, pull, alpha=alpha)


class Mixout(nn.Module):
    """The parametrization w ↦ (M⊙w + (1−M)⊙w₀ − p·w₀)/(1−p), M ~ Bernoulli(1−p) per input column; identity in eval mode."""

    def __init__(self, start: torch.Tensor, p: float, generator: torch.Generator, exact_gradient: bool = False):
        super().__init__()
        self.register_buffer("start", start.detach().clone(), persistent=False)
        self.p = float(p)
        self.generator = generator
        self.exact_gradient = exact_gradient

    def keep_mask(self, weight: torch.Tensor) -> torch.Tensor:
        """M: one draw per input unit (the last dimension) for a matrix, per entry for a vector."""
        shape = weight.shape[-1:] if weight.dim() >= 2 else weight.shape
        draws = torch.rand(shape, generator=self.generator, dtype=weight.dtype, device=weight.device)
        return (draws >= self.p).to(weight.dtype).expand_as(weight)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return weight
        keep = self.keep_mask(weight)
        kept = keep * weight
        fixed = ((1.0 - keep) * self.start - self.p * self.start) / (1.0 - self.p)
        if self.exact_gradient:
            return kept / (1.0 - self.p) + fixed
        # value kept/(1−p) + fixed as the forward above, gradient M as the reference's backward
        return kept + (kept * (self.p / (1.0 - self.p))).detach() + fixed


def apply_mixout(model: nn.Module, p: float, generator: torch.Generator, keep_dropout: bool = False,
                 exact_gradient: bool = False) -> int:
    """Parametrize the weight of every `nn.Linear` in `model` with Mixout and, unless `keep_dropout`,
    switch the model's dropout off (hidden and attention); returns how many layers got mixout."""
    count = 0
    for module in list(model.modules()):
        if isinstance(module, nn.Linear) and not parametrize.is_parametrized(module, "weight"):
            parametrize.register_parametrization(module, "weight",
                                                 Mixout(module.weight, p, generator, exact_gradient))
            count += 1
        if not keep_dropout:
            if isinstance(module, nn.Dropout):
                module.p = 0.0
            if isinstance(getattr(module, "attention_dropout", None), float):
                module.attention_dropout = 0.0
    return count


def remove_mixout(model: nn.Module) -> None:
    """Back to plain parameters holding the trained weights (names as before `apply_mixout`)."""
    for module in list(model.modules()):
        if isinstance(module, nn.Linear) and parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)


def reinit_top_layers(model: nn.Module, k: int, generator: torch.Generator) -> None:
    """Give the top `k` Transformer layers BERT's initialisation again (unshared encoders only)."""
    if k <= 0:
        return
    encoder = model.encoder
    config = encoder.config
    if config.share != "none":
        raise ConfigError(f"reinit_layers needs an encoder without cross-layer sharing (this one shares "
                          f"'{config.share}'); set reinit_layers = 0", "reinit_layers")
    if k > config.num_layers:
        raise ConfigError(f"the encoder has {config.num_layers} layers; cannot re-initialise {k}", "reinit_layers")
    for index in range(config.num_layers - k, config.num_layers):
        attention, ffn = encoder.layer_blocks(index)
        init_weights(attention, config.initializer_range, generator)
        init_weights(ffn, config.initializer_range, generator)
