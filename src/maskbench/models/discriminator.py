"""ELECTRA's discriminator (replaced-token detection) on the encoder, so ELECTRA checkpoints round-trip.

Clark et al. (2020) pretrain the encoder that is later fine-tuned as a discriminator: for every token, is
it the original or one a small generator put there? The head is Hugging Face's `ElectraForPreTraining`
one (dense H→H, the encoder's activation, dense H→1); the loss is binary cross-entropy over the
positions the attention mask keeps, as in the reference implementation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .encoder import EncoderConfig, EncoderModel, activation_fn, init_weights


class TokenDetectionHead(nn.Module):
    """dense (H→H), activation, prediction (H→1): one logit per token, > 0 meaning "replaced"."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.prediction = nn.Linear(config.hidden_size, 1)
        self.act = activation_fn(config.activation)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.prediction(self.act(self.dense(hidden))).squeeze(-1)


class EncoderForTokenDetection(nn.Module):
    """Encoder + replaced-token-detection head: `forward` gives per-token `logits` (and `loss` with labels)."""

    def __init__(self, config: EncoderConfig, generator: torch.Generator | None = None):
        super().__init__()
        self.config = config
        self.encoder = EncoderModel(config, generator)
        self.detector = TokenDetectionHead(config)
        init_weights(self.detector, config.initializer_range, generator)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                **unused) -> dict:
        """`labels`: 1 where the token was replaced, 0 where it is original (float or int, [B, L])."""
        logits = self.detector(self.encoder(input_ids, attention_mask, token_type_ids).last_hidden_state)
        result = {"logits": logits}
        if labels is not None:
            keep = attention_mask.bool() if attention_mask is not None else torch.ones_like(labels, dtype=torch.bool)
            result["loss"] = F.binary_cross_entropy_with_logits(logits.float()[keep], labels.float()[keep])
        return result
