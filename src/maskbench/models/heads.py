"""Heads on the encoder: sparse MLM, NSP/SOP, sequence classification/regression; and the task models.

The MLM head is *sparse*: only rows whose label is not -100 are gathered before the transform and the
tied V-wide decoder, so at 15% masking ~85% of the largest matmul (and its gradient) is never computed.
The same holds one layer down: the encoder's last layer runs its queries, attention output and
feed-forward at the labelled rows only (keys and values still come from every position). The logits on
the labelled rows are identical to those of the usual dense computation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import check_choice, check_range
from ..errors import ConfigError
from ..labels import IGNORE_INDEX
from .encoder import EncoderConfig, EncoderModel, activation_fn, init_weights, layer_norm
from .loss import cross_entropy

SENTENCE_TASKS = (None, "nsp", "sop")


class MLMHead(nn.Module):
    """Transform (H→E, activation, LayerNorm) then the decoder tied to the word embeddings (E→V) + bias."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.embed_dim)
        self.LayerNorm = nn.LayerNorm(config.embed_dim, eps=config.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.act = activation_fn(config.activation)
        self.autocast_residual = config.autocast_residual

    def forward(self, hidden: torch.Tensor, word_embeddings: torch.Tensor) -> torch.Tensor:
        """Logits for the given rows of hidden states (any leading shape)."""
        x = layer_norm(self.LayerNorm, self.act(self.dense(hidden)), self.autocast_residual)
        return F.linear(x, word_embeddings, self.bias)


def prediction_capacity(rate: float, batch: int, length: int) -> int:
    """Rows the static-shape MLM path predicts per batch: ceil(rate · tokens), at least 1 (cramming's rule,
    rounded up so that an exact-rate objective never has more labelled rows than this)."""
    return max(1, min(batch * length, math.ceil(rate * batch * length - 1e-9)))


def _static_loss_and_counts(logits: torch.Tensor, targets: torch.Tensor):
    """`_loss_and_counts` over a fixed number of rows, some of them IGNORE_INDEX fillers: the same mean
    (sum over real rows / their count) without a shape or a branch that depends on the data."""
    valid = targets != IGNORE_INDEX
    count = valid.sum()
    total = cross_entropy(logits, targets, reduction="sum")
    loss = total / count.clamp(min=1)
    correct = ((logits.detach().argmax(-1) == targets) & valid).sum()
    return loss, correct, count


def _loss_and_counts(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean cross-entropy (0 with a live graph when there is nothing to predict), #correct, #predicted."""
    count = torch.tensor(targets.numel(), dtype=torch.long, device=targets.device)
    if targets.numel() == 0:
        return logits.float().sum() * 0.0, count.clone(), count
    loss = cross_entropy(logits, targets)
    correct = (logits.detach().argmax(-1) == targets).sum()
    return loss, correct, count


class EncoderForPretraining(nn.Module):
    """Encoder + sparse MLM head (+ NSP or SOP head on the pooled [CLS]); `forward(**batch)` gives the loss."""

    def __init__(self, config: EncoderConfig, sentence_task: str | None = None,
                 generator: torch.Generator | None = None, static_predictions: float | None = None):
        super().__init__()
        check_choice("sentence_task", sentence_task, SENTENCE_TASKS)
        check_range("static_predictions", static_predictions, 0, 1, low_open=True)
        self.config = config
        self.sentence_task = sentence_task
        self.static_predictions = static_predictions
        self.encoder = EncoderModel(config, generator)
        self.mlm = MLMHead(config)
        self.sentence = nn.Linear(config.hidden_size, 2) if sentence_task else None
        self.sentence_dropout = nn.Dropout(config.dropout)
        init_weights(self.mlm, config.initializer_range, generator)
        if self.sentence is not None:
            init_weights(self.sentence, config.initializer_range, generator)

    def mlm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Dense logits for every position (evaluation and tests; training uses the sparse path)."""
        return self.mlm(hidden, self.encoder.embeddings.word_embeddings.weight)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                sentence_label: torch.Tensor | None = None, **unused) -> dict:
        """Batch keys in, `loss` + MLM (and sentence) loss/correct/count out. Unknown keys are ignored.

        With labels, the encoder's last layer runs only at the labelled positions (and [CLS] when a sentence
        head needs the pooled output): nothing else of the last layer reaches the loss."""
        result = {}
        loss = None
        pooled = None
        if labels is not None and self.static_predictions:
            loss, pooled = self._static_mlm(input_ids, attention_mask, token_type_ids, labels, result)
        elif labels is not None:
            batch, length = labels.shape
            predicted = labels.reshape(-1) != IGNORE_INDEX
            needed = predicted.clone()
            if self.sentence is not None:
                needed.view(batch, length)[:, 0] = True
            rows = needed.nonzero().squeeze(1)
            out = self.encoder(input_ids, attention_mask, token_type_ids, final_rows=rows)
            picked = predicted.index_select(0, rows)
            logits = self.mlm(out.last_hidden_state[picked], self.encoder.embeddings.word_embeddings.weight)
            mlm_loss, correct, count = _loss_and_counts(logits, labels.reshape(-1).index_select(0, rows)[picked])
            result.update(mlm_loss=mlm_loss, mlm_correct=correct, mlm_count=count)
            loss = mlm_loss
            if self.sentence is not None:
                pooled = torch.tanh(self.encoder.pooler(out.last_hidden_state[rows % length == 0]))
        else:
            pooled = self.encoder(input_ids, attention_mask, token_type_ids).pooled
        if self.sentence is not None:
            sentence_logits = self.sentence(self.sentence_dropout(pooled))
            result["sentence_logits"] = sentence_logits
            if sentence_label is not None:
                s_loss, s_correct, s_count = _loss_and_counts(sentence_logits, sentence_label.reshape(-1))
                result.update(sentence_loss=s_loss, sentence_correct=s_correct, sentence_count=s_count)
                loss = s_loss if loss is None else loss + s_loss
        if loss is not None:
            result["loss"] = loss
        return result

    def check_capacity(self, labels: torch.Tensor) -> None:
        """Refuse a batch with more labelled positions than the static path predicts (look at CPU labels:
        on a device the count would wait for it). Nothing to check without `static_predictions`."""
        if not self.static_predictions:
            return
        batch, length = labels.shape
        capacity = prediction_capacity(self.static_predictions, batch, length)
        found = int((labels != IGNORE_INDEX).sum())
        if found > capacity:
            raise ConfigError(f"{found} labelled positions exceed the static capacity of {capacity} "
                              f"({self.static_predictions} of {batch}x{length} tokens); raise it or use an "
                              f"exact-rate objective", "model.static_predictions")

    def _static_mlm(self, input_ids, attention_mask, token_type_ids, labels, result):
        """The MLM loss over `prediction_capacity` rows (cramming's sparse prediction): the labelled positions
        first, in order, then unlabelled ones as IGNORE_INDEX fillers, so every shape is known before the
        data is seen (no `nonzero`, no host sync, one compiled graph). Loss and counts equal the dynamic path;
        a batch with more labelled rows than the capacity is refused (on the CPU; elsewhere the caller checks,
        as the trainer does before the batch leaves the CPU)."""
        batch, length = labels.shape
        flat = labels.reshape(-1)
        capacity = prediction_capacity(self.static_predictions, batch, length)
        predicted = flat != IGNORE_INDEX
        if flat.device.type == "cpu" and not torch.compiler.is_compiling():
            self.check_capacity(labels)
        order = torch.sort(predicted.to(torch.uint8), descending=True, stable=True).indices
        rows = order[:capacity]
        if self.sentence is not None:
            cls_rows = torch.arange(batch, device=flat.device) * length
            rows = torch.cat([rows, cls_rows])
        out = self.encoder(input_ids, attention_mask, token_type_ids, final_rows=rows, static_rows=True)
        hidden = out.last_hidden_state
        logits = self.mlm(hidden[:capacity], self.encoder.embeddings.word_embeddings.weight)
        mlm_loss, correct, count = _static_loss_and_counts(logits, flat[rows[:capacity]])
        result.update(mlm_loss=mlm_loss, mlm_correct=correct, mlm_count=count)
        pooled = torch.tanh(self.encoder.pooler(hidden[capacity:])) if self.sentence is not None else None
        return mlm_loss, pooled


class EncoderForSequenceClassification(nn.Module):
    """Encoder + dropout + linear classifier on the pooled [CLS]; num_labels = 1 is regression (MSE)."""

    def __init__(self, config: EncoderConfig, num_labels: int, generator: torch.Generator | None = None):
        super().__init__()
        check_range("num_labels", num_labels, 1)
        self.config = config
        self.num_labels = num_labels
        self.encoder = EncoderModel(config, generator)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.hidden_size, num_labels)
        init_weights(self.classifier, config.initializer_range, generator)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                **unused) -> dict:
        out = self.encoder(input_ids, attention_mask, token_type_ids)
        logits = self.classifier(self.dropout(out.pooled))
        result = {"logits": logits}
        if labels is not None:
            if self.num_labels == 1:
                result["loss"] = F.mse_loss(logits.float().squeeze(-1), labels.float())
            else:
                result["loss"] = F.cross_entropy(logits.float(), labels.long())
        return result
