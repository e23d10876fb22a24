"""Attention extraction: run a model on a text (or a pair) and keep every layer's attention as numpy arrays.

An `AttentionData` holds one `AttentionSet` per kind of attention the model has (the encoder's
self-attention; for an encoder–decoder model also the decoder's causal self-attention and the
cross-attention from decoder to encoder). Each set carries its probabilities [layers, heads, Lq, Lk],
optionally the queries [layers, heads, Lq, d] and keys [layers, heads, Lk, d] behind them (for the
neuron view), the token strings on both sides, and which sentence (A = 0, B = 1) each token belongs to.
Arrays rather than tensors: the views, the head classifier and notebooks all want plain numbers.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..config import check_range
from ..data.encoding import encode_pairs
from ..data.tokenizer import special_ids
from ..errors import MaskbenchError
from .html import VIEWS, render_html



@dataclass
class AttentionSet:
    """One kind of attention (e.g. "encoder", "decoder", "cross") over one input.

    `scale` is the factor applied to q·k before the softmax (1/sqrt(d) for BERT, 1 for T5) and `bias`
    [heads, Lq, Lk] any additive term (T5's relative position bias, the same in every layer), so the neuron
    view can rebuild the probabilities exactly; `allowed` [Lq, Lk] says which keys each query may see
    (`causal=True` is the lower triangle; None = all); `note` is shown beside the rebuild.
    """

    name: str
    attention: np.ndarray
    query_tokens: list[str]
    key_tokens: list[str]
    query_segments: np.ndarray | None = None
    key_segments: np.ndarray | None = None
    queries: np.ndarray | None = None
    keys: np.ndarray | None = None
    scale: float = 1.0
    causal: bool = False
    allowed: np.ndarray | None = None
    bias: np.ndarray | None = None
    note: str = ""
    label: str = ""

    def __post_init__(self):
        self.attention = np.asarray(self.attention, dtype=np.float32)
        self.query_tokens = [str(t) for t in self.query_tokens]
        self.key_tokens = [str(t) for t in self.key_tokens]
        if self.attention.ndim != 4:
            raise MaskbenchError(f"{self.name}: attention must be [layers, heads, queries, keys], "
                                 f"got shape {list(self.attention.shape)}")
        _, _, lq, lk = self.attention.shape
        if (lq, lk) != (len(self.query_tokens), len(self.key_tokens)):
            raise MaskbenchError(f"{self.name}: attention is {lq}x{lk} but there are {len(self.query_tokens)} "
                                 f"query and {len(self.key_tokens)} key tokens")
        self.query_segments = _segments(self.query_segments, lq, self.name)
        self.key_segments = _segments(self.key_segments, lk, self.name)
        if (self.queries is None) != (self.keys is None):
            raise MaskbenchError(f"{self.name}: give both queries and keys, or neither")
        if self.queries is not None:
            self.queries = np.asarray(self.queries, dtype=np.float32)
            self.keys = np.asarray(self.keys, dtype=np.float32)
            layers, heads = self.attention.shape[:2]
            d = self.queries.shape[-1] if self.queries.ndim == 4 else -1
            if self.queries.shape != (layers, heads, lq, d) or self.keys.shape != (layers, heads, lk, d):
                raise MaskbenchError(f"{self.name}: queries {list(self.queries.shape)} and keys "
                                     f"{list(self.keys.shape)} do not match attention {list(self.attention.shape)}")
        if self.allowed is None and self.causal:
            self.allowed = np.tril(np.ones((lq, lk), dtype=bool))
        if self.allowed is not None:
            self.allowed = np.asarray(self.allowed, dtype=bool)
            if self.allowed.shape != (lq, lk):
                raise MaskbenchError(f"{self.name}: allowed must be [{lq}, {lk}], got {list(self.allowed.shape)}")
        if self.bias is not None:
            self.bias = np.asarray(self.bias, dtype=np.float32)
            if self.bias.shape != (self.attention.shape[1], lq, lk):
                raise MaskbenchError(f"{self.name}: bias must be [heads, {lq}, {lk}], got {list(self.bias.shape)}")
        self.label = self.label or self.name

    @property
    def num_layers(self) -> int:
        return self.attention.shape[0]

    @property
    def num_heads(self) -> int:
        return self.attention.shape[1]

    @property
    def head_dim(self) -> int | None:
        return None if self.queries is None else self.queries.shape[-1]


def _segments(segments, length: int, name: str) -> np.ndarray:
    if segments is None:
        return np.zeros(length, dtype=np.int8)
    out = np.asarray(segments).astype(np.int8)
    if out.shape != (length,) or not np.isin(out, (0, 1)).all():
        raise MaskbenchError(f"{name}: segments must be {length} values of 0 (sentence A) or 1 (sentence B)")
    return out


@dataclass
class AttentionData:
    """Every attention of one model on one input; `render_html` turns it into the interactive views."""

    sets: list[AttentionSet]
    title: str = "Attention"
    subtitle: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.sets:
            raise MaskbenchError("AttentionData needs at least one attention set")
        names = [s.name for s in self.sets]
        if len(set(names)) != len(names):
            raise MaskbenchError(f"attention set names must be unique, got {names}")

    def __getitem__(self, name: str) -> AttentionSet:
        for s in self.sets:
            if s.name == name:
                return s
        raise KeyError(f"no attention set {name!r}; have {[s.name for s in self.sets]}")

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.sets]

    @property
    def has_qk(self) -> bool:
        return all(s.queries is not None for s in self.sets)

    def to_html(self, views: Sequence[str] | str = "all", compress: bool = True) -> str:
        return render_html(self, views, compress=compress)

    def _repr_html_(self) -> str:
        """The views inside an iframe: the page's scripts and ids cannot clash with the notebook's."""
        views = VIEWS if self.has_qk else ("head", "model")
        page = self.to_html(views)
        return (f'<iframe srcdoc="{html.escape(page, quote=True)}" title="{html.escape(self.title, quote=True)}" '
                'style="width:100%;height:760px;border:1px solid #ddd" loading="lazy"></iframe>')


# ---------------------------------------------------------------- running models

def encoder_of(model):
    """The `EncoderModel` inside a maskbench model (itself, or `.encoder` of a model with a head)."""
    from ..models.encoder import EncoderModel

    if isinstance(model, EncoderModel):
        return model
    inner = getattr(model, "encoder", None)
    if isinstance(inner, EncoderModel):
        return inner
    return None


def encode_texts(tokenizer, texts: Sequence, pairs: Sequence[str] | None = None, max_length: int = 128,
                 pretokenized: bool = False, style: str = "bert") -> dict[str, np.ndarray]:
    """BERT-style inputs `[CLS] a [SEP] (b [SEP])` (T5 style: `a </s> (b </s>)`), padded, as numpy arrays:
    `input_ids`, `attention_mask`, `token_type_ids` [N, L] and `word_ids` [N, L] (index of the word each
    token comes from, -1 for special and padding positions; with `pretokenized`, words are the given list
    items). The layout and truncation are `maskbench.data.encoding.encode_pairs`'."""
    encoded = encode_pairs(tokenizer, texts, pairs, max_length, pretokenized=pretokenized, style=style)
    return encoded.padded(special_ids(tokenizer).pad)


def model_device(model):
    """Where the model's weights live (inputs are moved there; results come back to the CPU)."""
    import torch

    param = next(iter(model.parameters()), None)
    return param.device if param is not None else torch.device("cpu")


def _tokens(tokenizer, ids) -> list[str]:
    return [tokenizer.id_to_token(int(i)) or f"[{int(i)}]" for i in ids]


def _stack(tensors) -> np.ndarray:
    import torch

    return torch.stack([t[0] for t in tensors]).float().cpu().numpy()


def attention(model, tokenizer, text: str, pair: str | None = None, *, max_length: int | None = None,
              qk: bool = True, decoder_text: str | None = None, max_new_tokens: int = 32) -> AttentionData:
    """Run `model` on `text` (and `pair`) and collect every layer's attention.

    Encoders (BERT, ALBERT, or any model with an `.encoder`) see `[CLS] text [SEP] pair [SEP]`. For an
    encoder–decoder model the encoder reads `text` and the decoder reads `decoder_text` (or `pair`), or,
    when neither is given, the model's own greedy output — so the cross-attention shows what it looked at
    while writing. `qk` keeps queries and keys for the neuron view.
    """
    import torch

    check_range("max_length", max_length, 1)
    if not isinstance(text, str) or not text.strip():
        raise MaskbenchError("attention needs a non-empty text")
    encoder = encoder_of(model)
    if encoder is not None:
        limit = min(max_length or encoder.config.max_positions, encoder.config.max_positions)
        batch = encode_texts(tokenizer, [text], [pair] if pair is not None else None, max_length=limit)
        device = model_device(encoder)
        ids = torch.from_numpy(batch["input_ids"]).to(device)
        tt = torch.from_numpy(batch["token_type_ids"]).to(device)
        with torch.inference_mode():
            out = encoder(ids, token_type_ids=tt, output_attentions=True, output_qk=qk)
        tokens = _tokens(tokenizer, batch["input_ids"][0])
        segments = batch["token_type_ids"][0]
        cfg = encoder.config
        kind = "ALBERT-style" if cfg.embedding_size is not None or cfg.share != "none" else "BERT-style"
        s = AttentionSet(
            name="encoder", label="encoder self-attention", attention=_stack(out.attentions),
            query_tokens=tokens, key_tokens=tokens, query_segments=segments, key_segments=segments,
            queries=_stack(out.queries) if qk else None, keys=_stack(out.keys) if qk else None,
            scale=1.0 / float(np.sqrt(cfg.head_dim)))
        subtitle = (f"{kind} encoder: {cfg.num_layers} layers x {cfg.num_heads} heads, hidden {cfg.hidden_size}; "
                    f"{len(tokens)} tokens")
        return AttentionData([s], title=_title(text, pair), subtitle=subtitle)
    if _is_t5(model):
        return _t5_attention(model, tokenizer, text, pair, decoder_text, max_length or 512, qk, max_new_tokens)
    raise MaskbenchError(f"cannot extract attention from a {type(model).__name__}: expected a maskbench encoder "
                         "or encoder-decoder model (load it with maskbench.models.load_model)")


def _title(text: str, pair: str | None) -> str:
    short = text if len(text) <= 80 else text[:77] + "..."
    if pair is None:
        return short
    other = pair if len(pair) <= 60 else pair[:57] + "..."
    return f"{short} || {other}"


# ---------------------------------------------------------------- T5-style models

def _is_t5(model) -> bool:
    from ..models.encoder_decoder import EncoderDecoderModel

    return isinstance(model, EncoderDecoderModel)


class _QKRecorder:
    """Forward hooks on every attention's `q` and `k` projections of a T5 stack, in call order.

    The T5 model returns probabilities but not queries and keys; the projections' outputs are exactly
    them (no scaling in T5), so hooks give the neuron view its vectors without touching the model code.
    """

    def __init__(self, stack, heads: int, d_kv: int, cross: bool):
        self.heads, self.d_kv = heads, d_kv
        self.queries: list = []
        self.keys: list = []
        self.handles = []
        index = 1 if cross else 0
        for block in stack.block:
            attn = block.layer[index].EncDecAttention if cross else block.layer[0].SelfAttention
            self.handles.append(attn.q.register_forward_hook(self._hook(self.queries)))
            self.handles.append(attn.k.register_forward_hook(self._hook(self.keys)))

    def _hook(self, store):
        def hook(_module, _inputs, output):
            b, length, _ = output.shape
            store.append(output.detach().view(b, length, self.heads, self.d_kv).transpose(1, 2))
        return hook

    def close(self):
        for h in self.handles:
            h.remove()

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return _stack(self.queries), _stack(self.keys)


def _t5_ids(tokenizer, text: str, limit: int) -> list[int]:
    from ..data.tokenizer import special_ids

    ids = tokenizer.encode(text, add_special_tokens=False).ids[: max(limit - 1, 1)]
    return [*ids, special_ids(tokenizer).eos]


def _t5_bias(stack, lq: int, lk: int) -> np.ndarray:
    import torch

    attn = stack.block[0].layer[0].SelfAttention
    with torch.inference_mode():
        device = attn.relative_attention_bias.weight.device
        bias = attn.position_bias(torch.arange(lq, device=device)[None], torch.arange(lk, device=device)[None])
    return bias[0].float().cpu().numpy()


def _t5_attention(model, tokenizer, text, pair, decoder_text, limit, qk, max_new_tokens) -> AttentionData:
    import torch

    cfg = model.config
    variant = cfg.variant
    target_text = decoder_text if decoder_text is not None else pair
    if variant == "encoder_only" and target_text is not None:
        raise MaskbenchError("an encoder_only T5 model reads a single text; drop --pair")
    device = model_device(model)
    enc_ids = _t5_ids(tokenizer, text, limit)
    tokens = _tokens(tokenizer, enc_ids)
    ids = torch.tensor([enc_ids], device=device)
    note = "T5 does not scale q\u00b7k; block 0's relative position bias is shared by every layer"
    title = _title(text, target_text)
    sets: list[AttentionSet] = []
    if variant == "encoder_only":
        rec = _QKRecorder(model.encoder, cfg.num_heads, cfg.d_kv, cross=False) if qk else None
        try:
            with torch.inference_mode():
                _, attn = model.encode(ids, None, output_attentions=True)
        finally:
            if rec:
                rec.close()
        q, k = rec.arrays() if rec else (None, None)
        sets.append(AttentionSet("encoder", _stack(attn), tokens, tokens, queries=q, keys=k, scale=1.0,
                                 bias=_t5_bias(model.encoder, len(tokens), len(tokens)), note=note,
                                 label="encoder self-attention"))
        return AttentionData(sets, title=title, subtitle=_t5_subtitle(cfg, len(tokens)))
    if target_text is not None:
        target = _t5_ids(tokenizer, target_text, limit)
    else:
        with torch.inference_mode():
            generated = model.generate(ids, max_new_tokens=max_new_tokens)[0].tolist()
        eos = cfg.eos_id if cfg.eos_id is not None else None
        target = generated[: generated.index(eos) + 1] if eos is not None and eos in generated else generated
        target = target or [cfg.pad_id]
    labels = torch.tensor([target], device=device)
    decoder_inputs = [cfg.pad_id, *target[:-1]]
    dec_tokens = _tokens(tokenizer, decoder_inputs)
    recorders = []
    if qk:
        if variant == "encoder_decoder":
            recorders = [_QKRecorder(model.encoder, cfg.num_heads, cfg.d_kv, False),
                         _QKRecorder(model.decoder, cfg.num_heads, cfg.d_kv, False),
                         _QKRecorder(model.decoder, cfg.num_heads, cfg.d_kv, True)]
        else:
            recorders = [_QKRecorder(model.decoder, cfg.num_heads, cfg.d_kv, False)]
    try:
        with torch.inference_mode():
            out = model(ids, torch.ones_like(ids), labels=labels, output_attentions=True)
    finally:
        for r in recorders:
            r.close()
    qks = [r.arrays() for r in recorders] or [(None, None)] * 3
    if variant == "encoder_decoder":
        enc_q, enc_k = qks[0]
        dec_q, dec_k = qks[1] if qk else (None, None)
        cross_q, cross_k = qks[2] if qk else (None, None)
        n_enc, n_dec = len(tokens), len(dec_tokens)
        sets.append(AttentionSet("encoder", _stack(out["encoder_attentions"]), tokens, tokens, queries=enc_q,
                                 keys=enc_k, bias=_t5_bias(model.encoder, n_enc, n_enc), note=note,
                                 label="encoder self-attention"))
        sets.append(AttentionSet("decoder", _stack(out["decoder_attentions"]), dec_tokens, dec_tokens,
                                 queries=dec_q, keys=dec_k, causal=True, bias=_t5_bias(model.decoder, n_dec, n_dec),
                                 note=note, label="decoder self-attention"))
        sets.append(AttentionSet("cross", _stack(out["cross_attentions"]), dec_tokens, tokens, queries=cross_q,
                                 keys=cross_k, label="cross-attention (decoder \u2192 encoder)",
                                 note="T5 does not scale q\u00b7k; cross-attention has no position bias"))
        return AttentionData(sets, title=title, subtitle=_t5_subtitle(cfg, n_enc, n_dec))
    # decoder_only: one causal (or prefix-LM) stack over [inputs ; decoder inputs]
    seq_tokens = tokens + dec_tokens
    n_in, n = len(tokens), len(seq_tokens)
    allowed = np.tril(np.ones((n, n), dtype=bool))
    if cfg.prefix_lm:
        allowed[:n_in, :n_in] = True
    segments = np.r_[np.zeros(n_in, np.int8), np.ones(n - n_in, np.int8)]
    q, k = qks[0]
    sets.append(AttentionSet("decoder", _stack(out["decoder_attentions"]), seq_tokens, seq_tokens,
                             query_segments=segments, key_segments=segments, queries=q, keys=k, allowed=allowed,
                             bias=_t5_bias(model.decoder, n, n), note=note,
                             label="decoder self-attention (inputs = A, targets = B)"))
    return AttentionData(sets, title=title, subtitle=_t5_subtitle(cfg, n))


def _t5_subtitle(cfg, *lengths) -> str:
    return (f"T5-style {cfg.variant.replace('_', '-')}: {cfg.num_layers} layers x {cfg.num_heads} heads, "
            f"d_model {cfg.d_model}; {' / '.join(map(str, lengths))} tokens")
