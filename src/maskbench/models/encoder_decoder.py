"""T5-style Transformer for the T5 objectives/architectures study, with Hugging Face's weight names.

T5 (Raffel et al.): pre-LN with RMS LayerNorm (scale only), no biases, no 1/sqrt(d) attention scaling,
relative-position bias buckets computed by the first layer of each stack and shared by the others,
ReLU or gated-GELU feed-forward (T5 v1.1), output embedding tied to the input embedding (with the
d_model**-0.5 rescaling) or untied. Module names equal `transformers`' T5 names
(`encoder.block.0.layer.0.SelfAttention.q.weight`, ...), so the import/export is a rename-free copy.

Variants (the study compares architectures):
- "encoder_decoder": the T5 model; `labels` are decoder targets, shifted right internally (start = pad).
- "decoder_only": one causal stack (`decoder`, without cross-attention) over [inputs ; shifted targets]
  packed per row; with `prefix_lm=True` the inputs attend to each other bidirectionally (prefix LM).
- "encoder_only": one bidirectional stack with an LM head; `labels` align with `input_ids` (-100 = none).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import check_choice, check_range
from ..errors import MaskbenchError
from ..labels import IGNORE_INDEX
from .loss import cross_entropy

VARIANTS = ("encoder_decoder", "decoder_only", "encoder_only")
FEED_FORWARDS = ("relu", "gated-gelu")


@dataclass
class EncoderDecoderConfig:
    """Shape of a T5-style model (defaults: t5-small)."""

    vocab_size: int = 32128
    d_model: int = 512
    d_kv: int = 64
    d_ff: int = 2048
    num_layers: int = 6
    num_decoder_layers: int | None = None
    num_heads: int = 8
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    dropout: float = 0.1
    layer_norm_eps: float = 1e-6
    feed_forward: str = "relu"
    tie_word_embeddings: bool = True
    variant: str = "encoder_decoder"
    prefix_lm: bool = True
    pad_id: int = 0
    eos_id: int | None = None
    initializer_factor: float = 1.0
    fused_norm: bool = False  # speed: RMSNorm through F.rms_norm (float32 either way; see RMSNorm)

    def __post_init__(self):
        for key in ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads",
                    "relative_attention_num_buckets", "relative_attention_max_distance"):
            check_range(key, getattr(self, key), 1)
        check_range("num_decoder_layers", self.num_decoder_layers, 1)
        check_range("dropout", self.dropout, 0, 1, high_open=True)
        check_range("layer_norm_eps", self.layer_norm_eps, 0, low_open=True)
        check_choice("feed_forward", self.feed_forward, FEED_FORWARDS)
        check_choice("variant", self.variant, VARIANTS)
        check_range("pad_id", self.pad_id, 0, self.vocab_size - 1)
        check_range("eos_id", self.eos_id, 0, self.vocab_size - 1)
        check_range("initializer_factor", self.initializer_factor, 0, low_open=True)

    @property
    def decoder_layers(self) -> int:
        return self.num_decoder_layers or self.num_layers


class RMSNorm(nn.Module):
    """T5's LayerNorm: scale only, no mean subtraction, computed in float32.

    `fused`: one `F.rms_norm` call (PyTorch's own kernel where it has one) instead of the six elementwise
    and reduction kernels written out below; the same function, rounded in another order (float32)."""

    def __init__(self, size: int, eps: float, fused: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps
        self.fused = fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused:
            return F.rms_norm(x.float(), self.weight.shape, self.weight, self.eps).to(x.dtype)
        variance = x.float().pow(2).mean(-1, keepdim=True)
        return (self.weight * (x.float() * torch.rsqrt(variance + self.eps))).to(x.dtype)


def relative_position_bucket(relative_position: torch.Tensor, bidirectional: bool, num_buckets: int,
                             max_distance: int) -> torch.Tensor:
    """T5's bucketing: exact buckets for small offsets, logarithmic ones up to max_distance."""
    buckets = torch.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets = buckets + (relative_position > 0).long() * num_buckets
        relative_position = relative_position.abs()
    else:
        relative_position = -torch.clamp(relative_position, max=0)
    max_exact = num_buckets // 2
    is_small = relative_position < max_exact
    large = max_exact + (
        torch.log(relative_position.float().clamp(min=1) / max_exact) / math.log(max_distance / max_exact)
        * (num_buckets - max_exact)
    ).long()
    large = large.clamp(max=num_buckets - 1)
    return buckets + torch.where(is_small, relative_position, large)


class Attention(nn.Module):
    """Multi-head attention without biases or scaling; optional relative-position bias table."""

    def __init__(self, config: EncoderDecoderConfig, has_relative_bias: bool, bidirectional: bool):
        super().__init__()
        inner = config.num_heads * config.d_kv
        self.num_heads, self.d_kv = config.num_heads, config.d_kv
        self.q = nn.Linear(config.d_model, inner, bias=False)
        self.k = nn.Linear(config.d_model, inner, bias=False)
        self.v = nn.Linear(config.d_model, inner, bias=False)
        self.o = nn.Linear(inner, config.d_model, bias=False)
        self.bidirectional = bidirectional
        self.num_buckets = config.relative_attention_num_buckets
        self.max_distance = config.relative_attention_max_distance
        self.dropout = config.dropout
        self.relative_attention_bias = nn.Embedding(self.num_buckets, config.num_heads) if has_relative_bias else None

    def position_bias(self, query_positions: torch.Tensor, key_positions: torch.Tensor) -> torch.Tensor:
        """[B or 1, heads, Lq, Lk] bias from positions [B or 1, Lq] and [B or 1, Lk]."""
        relative = key_positions[:, None, :] - query_positions[:, :, None]
        buckets = relative_position_bucket(relative, self.bidirectional, self.num_buckets, self.max_distance)
        return self.relative_attention_bias(buckets).permute(0, 3, 1, 2)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], x.shape[1], self.num_heads, self.d_kv).transpose(1, 2)

    def forward(self, x: torch.Tensor, bias: torch.Tensor, memory: torch.Tensor | None = None,
                output_attentions: bool = False):
        """`bias`: additive float [B|1, heads|1, Lq, Lk] (position bias + mask). Returns (out, probs)."""
        source = x if memory is None else memory
        q, k, v = self._split(self.q(x)), self._split(self.k(source)), self._split(self.v(source))
        drop = self.dropout if self.training else 0.0
        probs = None
        if output_attentions:
            scores = torch.matmul(q, k.transpose(-1, -2)).float() + bias
            probs = torch.softmax(scores, dim=-1).to(q.dtype)
            context = torch.matmul(F.dropout(probs, drop, self.training), v)
        else:
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), dropout_p=drop, scale=1.0)
        context = context.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1)
        return self.o(context), probs


class SelfAttentionLayer(nn.Module):
    def __init__(self, config, has_relative_bias, bidirectional):
        super().__init__()
        self.SelfAttention = Attention(config, has_relative_bias, bidirectional)
        self.layer_norm = RMSNorm(config.d_model, config.layer_norm_eps, config.fused_norm)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x, bias, output_attentions=False):
        out, probs = self.SelfAttention(self.layer_norm(x), bias, output_attentions=output_attentions)
        return x + self.dropout(out), probs


class CrossAttentionLayer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.EncDecAttention = Attention(config, False, True)
        self.layer_norm = RMSNorm(config.d_model, config.layer_norm_eps, config.fused_norm)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x, memory, bias, output_attentions=False):
        out, probs = self.EncDecAttention(self.layer_norm(x), bias, memory, output_attentions)
        return x + self.dropout(out), probs


class DenseFeedForward(nn.Module):
    """ReLU (wi, wo) or gated-GELU (wi_0, wi_1, wo) feed-forward, T5 v1.0 / v1.1."""

    def __init__(self, config: EncoderDecoderConfig):
        super().__init__()
        self.gated = config.feed_forward == "gated-gelu"
        if self.gated:
            self.wi_0 = nn.Linear(config.d_model, config.d_ff, bias=False)
            self.wi_1 = nn.Linear(config.d_model, config.d_ff, bias=False)
        else:
            self.wi = nn.Linear(config.d_model, config.d_ff, bias=False)
        self.wo = nn.Linear(config.d_ff, config.d_model, bias=False)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        if self.gated:
            h = F.gelu(self.wi_0(x), approximate="tanh") * self.wi_1(x)
        else:
            h = F.relu(self.wi(x))
        return self.wo(self.dropout(h))


class FeedForwardLayer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.DenseReluDense = DenseFeedForward(config)
        self.layer_norm = RMSNorm(config.d_model, config.layer_norm_eps, config.fused_norm)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return x + self.dropout(self.DenseReluDense(self.layer_norm(x)))


class Block(nn.Module):
    def __init__(self, config, has_relative_bias, bidirectional, cross):
        super().__init__()
        layers = [SelfAttentionLayer(config, has_relative_bias, bidirectional)]
        if cross:
            layers.append(CrossAttentionLayer(config))
        layers.append(FeedForwardLayer(config))
        self.layer = nn.ModuleList(layers)
        self.cross = cross

    def forward(self, x, self_bias, memory=None, cross_bias=None, output_attentions=False):
        x, self_probs = self.layer[0](x, self_bias, output_attentions)
        cross_probs = None
        if self.cross:
            x, cross_probs = self.layer[1](x, memory, cross_bias, output_attentions)
        return self.layer[-1](x), self_probs, cross_probs


class Stack(nn.Module):
    """A stack of blocks; block 0 owns the relative-position table that every block uses."""

    def __init__(self, config, num_layers, bidirectional, cross):
        super().__init__()
        self.block = nn.ModuleList(Block(config, i == 0, bidirectional, cross) for i in range(num_layers))
        self.final_layer_norm = RMSNorm(config.d_model, config.layer_norm_eps, config.fused_norm)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x, self_bias_mask, positions, memory=None, cross_bias=None, output_attentions=False):
        """`self_bias_mask`: additive mask [B|1, 1, L, L]; the position bias is added here."""
        bias = self.block[0].layer[0].SelfAttention.position_bias(positions, positions) + self_bias_mask
        x = self.dropout(x)
        self_attn, cross_attn = [], []
        for block in self.block:
            x, sp, cp = block(x, bias, memory, cross_bias, output_attentions)
            self_attn.append(sp)
            cross_attn.append(cp)
        return self.dropout(self.final_layer_norm(x)), self_attn, cross_attn


def _additive(allowed: torch.Tensor) -> torch.Tensor:
    """bool mask (True = attend) → float additive mask (0 / large negative)."""
    return torch.zeros(allowed.shape, dtype=torch.float32, device=allowed.device).masked_fill(
        ~allowed, torch.finfo(torch.float32).min)


def shift_right(labels: torch.Tensor, start_id: int) -> torch.Tensor:
    """Decoder inputs: start token, then the targets without their last token (-100 → start/pad id)."""
    shifted = labels.new_full(labels.shape, start_id)
    shifted[:, 1:] = labels[:, :-1]
    return shifted.masked_fill(shifted == IGNORE_INDEX, start_id)


class EncoderDecoderModel(nn.Module):
    """T5-style model in one of three variants; `forward(input_ids, attention_mask, labels)` gives the loss."""

    def __init__(self, config: EncoderDecoderConfig, generator: torch.Generator | None = None):
        super().__init__()
        self.config = config
        self.shared = nn.Embedding(config.vocab_size, config.d_model)
        if config.variant in ("encoder_decoder", "encoder_only"):
            self.encoder = Stack(config, config.num_layers, True, cross=False)
        if config.variant == "encoder_decoder":
            self.decoder = Stack(config, config.decoder_layers, False, cross=True)
        if config.variant == "decoder_only":
            self.decoder = Stack(config, config.decoder_layers, config.prefix_lm, cross=False)
        self.lm_head = None if config.tie_word_embeddings else nn.Linear(config.d_model, config.vocab_size, bias=False)
        self._init(generator)

    def _init(self, generator):
        """T5's initialisation (as in Mesh TensorFlow / transformers), scaled by `initializer_factor`."""
        c, f = self.config, self.config.initializer_factor
        nn.init.normal_(self.shared.weight, 0.0, f * 1.0, generator=generator)
        if self.lm_head is not None:
            nn.init.normal_(self.lm_head.weight, 0.0, f * 1.0, generator=generator)
        for m in self.modules():
            if isinstance(m, Attention):
                nn.init.normal_(m.q.weight, 0.0, f * (c.d_model * c.d_kv) ** -0.5, generator=generator)
                nn.init.normal_(m.k.weight, 0.0, f * c.d_model ** -0.5, generator=generator)
                nn.init.normal_(m.v.weight, 0.0, f * c.d_model ** -0.5, generator=generator)
                nn.init.normal_(m.o.weight, 0.0, f * (c.num_heads * c.d_kv) ** -0.5, generator=generator)
                if m.relative_attention_bias is not None:
                    nn.init.normal_(m.relative_attention_bias.weight, 0.0, f * c.d_model ** -0.5, generator=generator)
            elif isinstance(m, DenseFeedForward):
                for w in ([m.wi_0, m.wi_1] if m.gated else [m.wi]):
                    nn.init.normal_(w.weight, 0.0, f * c.d_model ** -0.5, generator=generator)
                nn.init.normal_(m.wo.weight, 0.0, f * c.d_ff ** -0.5, generator=generator)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.lm_head is None:
            return F.linear(hidden * self.config.d_model ** -0.5, self.shared.weight)
        return self.lm_head(hidden)

    def encode(self, input_ids, attention_mask=None, output_attentions=False):
        """Encoder states [B, L, d] (+ per-layer self-attention probabilities when asked)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        mask = _additive(attention_mask.bool()[:, None, None, :])
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)[None]
        hidden, self_attn, _ = self.encoder(self.shared(input_ids), mask, positions,
                                            output_attentions=output_attentions)
        return hidden, self_attn

    def decode(self, decoder_input_ids, memory, attention_mask, output_attentions=False):
        length = decoder_input_ids.shape[1]
        positions = torch.arange(length, device=decoder_input_ids.device)[None]
        causal = torch.ones(length, length, dtype=torch.bool, device=decoder_input_ids.device).tril()
        cross = _additive(attention_mask.bool()[:, None, None, :])
        return self.decoder(self.shared(decoder_input_ids), _additive(causal)[None, None], positions, memory,
                            cross, output_attentions)

    def _pack(self, input_ids, attention_mask, decoder_input_ids):
        """decoder_only: [inputs ; decoder inputs] per row, the attention rule, and where the targets sit."""
        b, lx = input_ids.shape
        ly = decoder_input_ids.shape[1]
        lengths = attention_mask.long().sum(1)
        seq = input_ids.new_full((b, lx + ly), self.config.pad_id)
        seq[:, :lx] = input_ids.masked_fill(~attention_mask.bool(), self.config.pad_id)
        target_positions = lengths[:, None] + torch.arange(ly, device=input_ids.device)[None]
        seq.scatter_(1, target_positions, decoder_input_ids)
        index = torch.arange(lx + ly, device=input_ids.device)
        valid = index[None] < (lengths + ly)[:, None]
        allowed = index[None, None, :] <= index[None, :, None]
        if self.config.prefix_lm:
            prefix = index[None] < lengths[:, None]
            allowed = allowed | (prefix[:, None, :] & prefix[:, :, None])
        allowed = allowed & valid[:, None, :]
        return seq, _additive(allowed[:, None]), target_positions

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, decoder_input_ids: torch.Tensor | None = None,
                output_attentions: bool = False, **unused) -> dict:
        """Loss over positions with labels != -100, logits, #correct and #predicted (`correct`, `count`).

        With `output_attentions`, the dict also holds `encoder_attentions`, `decoder_attentions` and
        `cross_attentions` (tuples of [B, heads, Lq, Lk] probabilities; None where the variant has none).
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        variant = self.config.variant
        result: dict = {}
        if variant == "encoder_only":
            hidden, enc_attn = self.encode(input_ids, attention_mask, output_attentions)
            result.update(encoder_attentions=tuple(enc_attn) if output_attentions else None)
            if labels is not None and labels.shape != input_ids.shape:
                raise MaskbenchError(f"encoder_only needs labels aligned with input_ids ({list(input_ids.shape)}), "
                                     f"got {list(labels.shape)}; use an MLM-style objective or another variant")
        else:
            if decoder_input_ids is None:
                if labels is None:
                    raise MaskbenchError("the decoder needs labels or decoder_input_ids")
                decoder_input_ids = shift_right(labels, self.config.pad_id)
            if variant == "encoder_decoder":
                memory, enc_attn = self.encode(input_ids, attention_mask, output_attentions)
                hidden, dec_attn, cross_attn = self.decode(decoder_input_ids, memory, attention_mask, output_attentions)
                if output_attentions:
                    result.update(encoder_attentions=tuple(enc_attn), decoder_attentions=tuple(dec_attn),
                                  cross_attentions=tuple(cross_attn))
            else:
                seq, mask, target_positions = self._pack(input_ids, attention_mask, decoder_input_ids)
                positions = torch.arange(seq.shape[1], device=seq.device)[None]
                full, dec_attn, _ = self.decoder(self.shared(seq), mask, positions,
                                                 output_attentions=output_attentions)
                hidden = full.gather(1, target_positions[:, :, None].expand(-1, -1, full.shape[-1]))
                if output_attentions:
                    result.update(decoder_attentions=tuple(dec_attn))
        logits = self.logits(hidden)
        result["logits"] = logits
        if labels is not None:
            flat_logits = logits.reshape(-1, logits.shape[-1])
            flat_labels = labels.reshape(-1)
            keep = flat_labels != IGNORE_INDEX
            count = keep.sum()
            # sum / max(count, 1): the mean over labelled rows, 0 when there are none, with no host sync
            total = cross_entropy(flat_logits, flat_labels, reduction="sum")
            result["loss"] = total / count.clamp(min=1)
            result["correct"] = ((flat_logits.detach().argmax(-1) == flat_labels) & keep).sum()
            result["count"] = count
        return result

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 max_new_tokens: int = 32, eos_id: int | None = None) -> torch.Tensor:
        """Greedy decoding: [B, ≤ max_new_tokens] token ids; rows that emitted `eos_id` continue with pad."""
        if self.config.variant == "encoder_only":
            raise MaskbenchError("an encoder_only model has no decoder to generate with; use encoder_decoder or decoder_only")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        eos_id = self.config.eos_id if eos_id is None else eos_id
        pad = self.config.pad_id
        b = input_ids.shape[0]
        memory = self.encode(input_ids, attention_mask)[0] if self.config.variant == "encoder_decoder" else None
        decoder_input = input_ids.new_full((b, 1), pad)
        finished = torch.zeros(b, dtype=torch.bool, device=input_ids.device)
        out = []
        for _ in range(max_new_tokens):
            if memory is not None:
                hidden = self.decode(decoder_input, memory, attention_mask)[0][:, -1]
            else:
                seq, mask, target_positions = self._pack(input_ids, attention_mask, decoder_input)
                positions = torch.arange(seq.shape[1], device=seq.device)[None]
                full = self.decoder(self.shared(seq), mask, positions)[0]
                last = target_positions[:, -1]
                hidden = full[torch.arange(b, device=seq.device), last]
            token = self.logits(hidden).argmax(-1)
            token = token.masked_fill(finished, pad)
            out.append(token)
            if eos_id is not None:
                finished = finished | (token == eos_id)
            decoder_input = torch.cat([decoder_input, token[:, None]], dim=1)
            if eos_id is not None and bool(finished.all()):
                break
        return torch.stack(out, dim=1) if out else input_ids.new_zeros((b, 0))
