"""BERT and ALBERT as one configurable Transformer encoder, post-LN (BERT) or pre-LN.

ALBERT differs from BERT in two switches, so one model serves both studies:
- `embedding_size` E: tokens are embedded in E dimensions and projected to H (V·E + E·H parameters
  instead of V·H). `None` means no projection (BERT); an explicit E adds the projection even when
  E == H, as ALBERT does.
- `share`: cross-layer parameter sharing. "all" reuses one layer, "attention" / "ffn" share only that
  block. Shared blocks are stored once (one module, one tensor), so counts, optimizers and checkpoints
  see each parameter exactly once.

`norm`: "post" (BERT, ALBERT) normalises after each residual sum, LN(x + f(x)); "pre" normalises each
block's input, x + f(LN(x)), and adds one final LayerNorm after the last layer, as pre-LN Transformers
(fairseq's `--encoder-normalize-before`, used by Wettig et al.'s DinkyTrain; HF's RobertaPreLayerNorm) do.
The embedding LayerNorm stays in both. Each block keeps one `LayerNorm` under the same name either way
(only where it is applied differs); pre-LN adds the encoder's own `LayerNorm` after the last layer,
named as HF's RobertaPreLayerNorm names it.

The attention runs through `scaled_dot_product_attention` unless probabilities or queries/keys are
requested (inspection); then an explicit path computes the same thing and returns them.
Q, K and V come from one fused projection (`qkv`, [3H, H]): one matmul instead of three is faster on
CPU; `hf.py` splits it into Hugging Face's `query`/`key`/`value` names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..config import check_choice, check_range
from ..errors import ConfigError

ACTIVATIONS = ("gelu", "gelu_new", "relu", "silu")
SHARE_MODES = ("none", "all", "attention", "ffn")
NORMS = ("post", "pre")
QKV_LAYOUTS = ("tokens", "heads")


@dataclass
class EncoderConfig:
    """Shape and regularisation of a BERT/ALBERT encoder (defaults: BERT-base)."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    embedding_size: int | None = None
    share: str = "none"
    max_positions: int = 512
    type_vocab_size: int = 2
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation: str = "gelu"
    layer_norm_eps: float = 1e-12
    pad_id: int = 0
    initializer_range: float = 0.02
    norm: str = "post"
    qkv_layout: str = "tokens"  # speed only, the same numbers bit for bit (see `split_qkv`)
    autocast_residual: bool = False  # speed, changes rounding: see `layer_norm`

    def __post_init__(self):
        check_range("vocab_size", self.vocab_size, 1)
        check_range("hidden_size", self.hidden_size, 1)
        check_range("num_layers", self.num_layers, 1)
        check_range("num_heads", self.num_heads, 1)
        check_range("intermediate_size", self.intermediate_size, 1)
        check_range("embedding_size", self.embedding_size, 1)
        check_choice("share", self.share, SHARE_MODES)
        check_range("max_positions", self.max_positions, 1)
        check_range("type_vocab_size", self.type_vocab_size, 0)
        check_range("dropout", self.dropout, 0, 1, high_open=True)
        check_range("attention_dropout", self.attention_dropout, 0, 1, high_open=True)
        check_choice("activation", self.activation, ACTIVATIONS)
        check_range("layer_norm_eps", self.layer_norm_eps, 0, low_open=True)
        check_range("pad_id", self.pad_id, 0, self.vocab_size - 1)
        check_range("initializer_range", self.initializer_range, 0, low_open=True)
        check_choice("norm", self.norm, NORMS)
        check_choice("qkv_layout", self.qkv_layout, QKV_LAYOUTS)
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}",
                              "num_heads")

    @property
    def embed_dim(self) -> int:
        """E: the width of the token embedding (H when not factorized)."""
        return self.embedding_size or self.hidden_size

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


def activation_fn(name: str):
    if name == "gelu":
        return F.gelu
    if name == "gelu_new":
        return lambda x: F.gelu(x, approximate="tanh")
    if name == "relu":
        return F.relu
    return F.silu


def layer_norm(module: nn.LayerNorm, x: torch.Tensor, autocast_residual: bool) -> torch.Tensor:
    """`module(x)`, or with `autocast_residual` under autocast: the LayerNorm in the autocast dtype (bf16 in,
    bf16 out, statistics in float32 inside the kernel), so the residual stream stays bf16 between layers.

    Autocast runs LayerNorm in float32, so by default every layer casts its activations bf16 -> float32 into
    the LayerNorm and the residual add, and float32 -> bf16 into the next matmul: about a tenth of a bf16
    GPU step is such casts. The switch removes them and halves the LayerNorm's and the residual adds' memory
    traffic. It changes the numbers: residual sums are rounded to bf16, and the LayerNorm's gain and bias
    (cast to bf16 for the kernel, which wants one dtype on the GPU) get bf16-rounded gradients. Without
    autocast (float32 training, inspection) it changes nothing."""
    device = x.device.type
    if not (autocast_residual and torch.is_autocast_enabled(device)):
        return module(x)
    dtype = torch.get_autocast_dtype(device)
    with torch.autocast(device, enabled=False):
        return F.layer_norm(x.to(dtype), module.normalized_shape, module.weight.to(dtype), module.bias.to(dtype),
                            module.eps)


def split_qkv(qkv: torch.Tensor, parts: int, heads: int, layout: str) -> tuple[torch.Tensor, ...]:
    """The fused projection's output [B, L, parts * H] as `parts` tensors [B, heads, L, d] (views).

    Both layouts give the same views, so the forward and every number are the same bit for bit; they differ
    in the backward, which stacks dQ, dK, dV along the unbound dimension. "tokens" (cramming's
    `b s three h d`) unbinds [B, L, 3, heads, d] along the 3, so the stack lands in the projection's own
    layout. "heads" (the layout before the switch) unbinds [3, B, heads, L, d]: the stack writes heads-first
    and the result is copied once more back to [B, L, 3H] (one copy per layer more; in the H200 profile of
    bert-base that copy and the stack's `cat` were 4.6% and 5.7% of the eager bf16 step)."""
    b, length, width = qkv.shape
    qkv = qkv.view(b, length, parts, heads, width // (parts * heads))
    if layout == "heads":
        return qkv.permute(2, 0, 3, 1, 4).unbind(0)
    return tuple(t.transpose(1, 2) for t in qkv.unbind(2))


class EncoderOutput(NamedTuple):
    """What `EncoderModel.forward` returns; the optional fields are None unless requested.

    `queries`/`keys` are per-head projections [B, heads, L, d] *before* the 1/sqrt(d) scaling. With pre-LN
    the last of `hidden_states` is taken after the final LayerNorm, so it equals `last_hidden_state`.
    """

    last_hidden_state: torch.Tensor
    pooled: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
    queries: tuple[torch.Tensor, ...] | None = None
    keys: tuple[torch.Tensor, ...] | None = None


class Embeddings(nn.Module):
    """Word + position + token-type embeddings (width E), LayerNorm, dropout, optional E→H projection."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        e = config.embed_dim
        self.word_embeddings = nn.Embedding(config.vocab_size, e, padding_idx=config.pad_id)
        self.position_embeddings = nn.Embedding(config.max_positions, e)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, e) if config.type_vocab_size else None
        self.LayerNorm = nn.LayerNorm(e, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)
        self.autocast_residual = config.autocast_residual
        self.projection = nn.Linear(e, config.hidden_size) if config.embedding_size is not None else None

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
        length = input_ids.shape[1]
        x = self.word_embeddings(input_ids) + self.position_embeddings.weight[:length]
        if self.token_type_embeddings is not None:
            if token_type_ids is None or self.token_type_embeddings.num_embeddings == 1:
                # one segment type (RoBERTa): a pair's segment ids (0/1 from a BERT-style encoder) do not apply
                x = x + self.token_type_embeddings.weight[0]
            else:
                x = x + self.token_type_embeddings(token_type_ids)
        x = self.dropout(layer_norm(self.LayerNorm, x, self.autocast_residual))
        if self.projection is not None:
            x = self.projection(x)
        return x


class SelfAttention(nn.Module):
    """Multi-head self-attention with a fused QKV projection, output projection, residual and LayerNorm
    (after the residual sum, or on the block's input with `norm = "pre"`)."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        h = config.hidden_size
        self.pre_norm = config.norm == "pre"
        self.num_heads = config.num_heads
        self.head_dim = config.head_dim
        self.qkv_layout = config.qkv_layout
        self.autocast_residual = config.autocast_residual
        self.qkv = nn.Linear(h, 3 * h)
        self.output = nn.Linear(h, h)
        self.LayerNorm = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.attention_dropout = config.attention_dropout
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, explicit: bool = False,
                rows: torch.Tensor | None = None, static_rows: bool = False):
        """`mask`: bool [B, 1, 1, L] (True = attend) or None. Returns (output, probs, q, k).

        With `rows` (sorted flat indices into [B * L]) only those positions are computed: keys and values
        still come from every position, but queries, the output projection, residual and LayerNorm run on
        the N given rows, and the output is [N, H] (see `EncoderModel.forward`'s `final_rows`).
        With `static_rows` the rows may come in any order and the attention runs at every position (one
        FlashAttention call, no shape that depends on the data); only the output projection, residual and
        LayerNorm are limited to the rows."""
        if rows is not None and not static_rows:
            return self._forward_rows(x, mask, rows), None, None, None
        b, length, h = x.shape
        q, k, v = split_qkv(self.qkv(self._norm(x) if self.pre_norm else x), 3, self.num_heads, self.qkv_layout)
        drop = self.attention_dropout if self.training else 0.0
        probs = None
        if explicit:
            scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(self.head_dim))
            if mask is not None:
                scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
            probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
            context = torch.matmul(F.dropout(probs, drop, self.training), v)
        else:
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        context = context.transpose(1, 2).reshape(b, length, h)
        if rows is not None:
            x, context = x.reshape(b * length, h)[rows], context.reshape(b * length, h)[rows]
        return self._residual(x, context), probs, q, k

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        return layer_norm(self.LayerNorm, x, self.autocast_residual)

    def _residual(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        out = x + self.dropout(self.output(context))
        return out if self.pre_norm else self._norm(out)

    def _forward_rows(self, x: torch.Tensor, mask: torch.Tensor | None, rows: torch.Tensor) -> torch.Tensor:
        """The layer at some positions only. Each sequence's queries are packed into a [B, width] block
        (width = the most rows any sequence has; the spare slots are zero queries whose output is dropped),
        so one SDPA call serves uneven counts."""
        b, length, h = x.shape
        heads, d = self.num_heads, self.head_dim
        weight, bias = self.qkv.weight, self.qkv.bias
        normed = self._norm(x) if self.pre_norm else x
        k, v = split_qkv(F.linear(normed, weight[h:], bias[h:]), 2, heads, self.qkv_layout)
        x_rows = x.reshape(b * length, h).index_select(0, rows)
        q_rows = F.linear(normed.reshape(b * length, h).index_select(0, rows), weight[:h], bias[:h])
        sequence = torch.div(rows, length, rounding_mode="floor")
        counts = torch.bincount(sequence, minlength=b)
        width = int(counts.max()) if rows.numel() else 1
        slot = sequence * width + torch.arange(rows.shape[0], device=rows.device) - (counts.cumsum(0) - counts)[sequence]
        q = q_rows.new_zeros(b * width, h).index_copy(0, slot, q_rows)
        q = q.view(b, width, heads, d).transpose(1, 2)
        drop = self.attention_dropout if self.training else 0.0
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        context = context.transpose(1, 2).reshape(b * width, h).index_select(0, slot)
        return self._residual(x_rows, context)


class FeedForward(nn.Module):
    """Position-wise H→I→H feed-forward with residual and LayerNorm (post- or pre-LN as the attention)."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.pre_norm = config.norm == "pre"
        self.intermediate = nn.Linear(config.hidden_size, config.intermediate_size)
        self.output = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)
        self.act = activation_fn(config.activation)
        self.autocast_residual = config.autocast_residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_norm:
            return x + self.dropout(self.output(self.act(self.intermediate(self._norm(x)))))
        return self._norm(x + self.dropout(self.output(self.act(self.intermediate(x)))))

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        return layer_norm(self.LayerNorm, x, self.autocast_residual)


def init_weights(module: nn.Module, std: float, generator: torch.Generator | None = None) -> None:
    """BERT's initialisation: N(0, std) weights, zero biases, unit LayerNorms, zero padding row."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, std, generator=generator)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, std, generator=generator)
            if m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def padding_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """[B, L] 1/0 mask → bool [B, 1, 1, L], or None when nothing is padded (the fastest SDPA path).

    Only an eager CPU tensor is looked at: on an accelerator the look would stop the host until the device
    catches up, and under `torch.compile` it would break the graph. Callers there drop an all-ones mask
    before the batch leaves the CPU (`maskbench.train.evaluate.to_device`)."""
    if attention_mask is None:
        return None
    keep = attention_mask.bool()
    if keep.device.type == "cpu" and not torch.compiler.is_compiling() and bool(keep.all()):
        return None
    return keep[:, None, None, :]


class EncoderModel(nn.Module):
    """The encoder: embeddings, L post- or pre-LN layers (with optional cross-layer sharing), the final
    LayerNorm of pre-LN, and the [CLS] pooler."""

    def __init__(self, config: EncoderConfig, generator: torch.Generator | None = None):
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        n_attention = 1 if config.share in ("all", "attention") else config.num_layers
        n_ffn = 1 if config.share in ("all", "ffn") else config.num_layers
        self.attention = nn.ModuleList(SelfAttention(config) for _ in range(n_attention))
        self.ffn = nn.ModuleList(FeedForward(config) for _ in range(n_ffn))
        pre = config.norm == "pre"
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if pre else None
        self.pooler = nn.Linear(config.hidden_size, config.hidden_size)
        init_weights(self, config.initializer_range, generator)

    def layer_blocks(self, index: int) -> tuple[SelfAttention, FeedForward]:
        """The (attention, feed-forward) pair layer `index` runs; shared blocks repeat."""
        return self.attention[index % len(self.attention)], self.ffn[index % len(self.ffn)]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, output_hidden_states: bool = False,
                output_attentions: bool = False, output_qk: bool = False,
                final_rows: torch.Tensor | None = None, static_rows: bool = False) -> EncoderOutput:
        """`final_rows` (sorted flat indices into [B * L]): the positions whose final hidden state the caller
        needs, e.g. the labelled ones of masked LM. The last layer then computes queries, attention output
        and feed-forward at those rows only (keys and values still from every position: the result is the
        same), and `last_hidden_state` is [N, H] for those rows, `pooled` None. At 15% masking this skips
        most of the last layer. `static_rows`: `final_rows` has a length fixed in advance and any order; the
        last layer's attention then runs at every position and the rest at the rows (shapes stay static
        for the compiler, see `SelfAttention.forward`)."""
        if input_ids.shape[1] > self.config.max_positions:
            raise ConfigError(f"sequence length {input_ids.shape[1]} exceeds max_positions "
                              f"{self.config.max_positions}; shorten the input or build a larger model",
                              "max_positions")
        explicit = output_attentions or output_qk
        if final_rows is not None and (explicit or output_hidden_states):
            raise ValueError("final_rows computes the last layer at some positions only; it cannot be combined "
                             "with attentions, queries/keys or hidden states of every position")
        mask = padding_mask(attention_mask)
        x = self.embeddings(input_ids, token_type_ids)
        hidden = [x] if output_hidden_states else None
        attentions, queries, keys = [], [], []
        last = self.config.num_layers - 1
        for i in range(self.config.num_layers):
            attention, ffn = self.layer_blocks(i)
            x, probs, q, k = attention(x, mask, explicit, rows=final_rows if i == last else None,
                                       static_rows=static_rows)
            x = ffn(x)
            if i == last and self.LayerNorm is not None:
                x = layer_norm(self.LayerNorm, x, self.config.autocast_residual)
            if output_attentions:
                attentions.append(probs)
            if output_qk:
                queries.append(q)
                keys.append(k)
            if hidden is not None:
                hidden.append(x)
        pooled = torch.tanh(self.pooler(x[:, 0])) if final_rows is None else None
        return EncoderOutput(
            last_hidden_state=x,
            pooled=pooled,
            hidden_states=tuple(hidden) if hidden is not None else None,
            attentions=tuple(attentions) if output_attentions else None,
            queries=tuple(queries) if output_qk else None,
            keys=tuple(keys) if output_qk else None,
        )
