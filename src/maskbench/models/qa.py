"""Extractive question answering on the encoder: a start and an end logit per token (BERT's SQuAD head).

`qa_outputs` (H→2) has Hugging Face's name and shape (`BertForQuestionAnswering`); the loss is the mean
of the start and end cross-entropies, as in BERT's `run_squad.py`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .encoder import EncoderConfig, EncoderModel, init_weights


class EncoderForQuestionAnswering(nn.Module):
    """Encoder + linear span head; `forward` gives `start_logits`, `end_logits` [B, L] (+ `loss`)."""

    def __init__(self, config: EncoderConfig, generator: torch.Generator | None = None):
        super().__init__()
        self.config = config
        self.encoder = EncoderModel(config, generator)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        init_weights(self.qa_outputs, config.initializer_range, generator)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, start_positions: torch.Tensor | None = None,
                end_positions: torch.Tensor | None = None, **unused) -> dict:
        hidden = self.encoder(input_ids, attention_mask, token_type_ids).last_hidden_state
        start_logits, end_logits = self.qa_outputs(hidden).float().unbind(-1)
        if attention_mask is not None:  # padding is never an answer
            start_logits = start_logits.masked_fill(attention_mask == 0, torch.finfo(torch.float32).min)
            end_logits = end_logits.masked_fill(attention_mask == 0, torch.finfo(torch.float32).min)
        result = {"start_logits": start_logits, "end_logits": end_logits}
        if start_positions is not None and end_positions is not None:
            result["loss"] = (F.cross_entropy(start_logits, start_positions) +
                              F.cross_entropy(end_logits, end_positions)) / 2
        return result
