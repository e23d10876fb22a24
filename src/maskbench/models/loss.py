"""The cross-entropy every pretraining head uses, in float32 without a float32 copy of the logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..labels import IGNORE_INDEX


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """`F.cross_entropy(logits.float(), targets, ignore_index=-100)` without the cast: log-softmax reads the
    (bf16) logits and writes float32, and its backward writes the logits' dtype, so the [rows, V] logits are
    never copied to float32 (one read and one write of the largest tensor of the step saved, each way). The
    same values up to the kernels' summation order (bit for bit on the CPU, tested)."""
    return F.nll_loss(F.log_softmax(logits, dim=-1, dtype=torch.float32), targets, ignore_index=IGNORE_INDEX,
                      reduction=reduction)
