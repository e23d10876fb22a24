"""Named model sizes and parameter arithmetic computed from the real modules (built on the meta device).

The BERT and ALBERT sizes follow the ALBERT paper's Table 1 (vocabulary 30,000 there); the small BERTs
follow Turc et al. ("Well-read students learn better"); the T5 sizes follow Raffel et al. (vocabulary
32,128). Counts are never typed in: `count_parameters` builds the module with no storage and sums it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..config import nearest
from ..errors import ConfigError
from .encoder import EncoderConfig, EncoderModel
from .encoder_decoder import EncoderDecoderConfig, EncoderDecoderModel


def _bert(layers, hidden, heads, **kw):
    return EncoderConfig(vocab_size=30522, hidden_size=hidden, num_layers=layers, num_heads=heads,
                         intermediate_size=4 * hidden, **kw)


def _albert(layers, hidden, heads):
    return EncoderConfig(vocab_size=30000, hidden_size=hidden, num_layers=layers, num_heads=heads,
                         intermediate_size=4 * hidden, embedding_size=128, share="all", activation="gelu_new",
                         dropout=0.0, attention_dropout=0.0)


def _t5(d_model, d_ff, layers, heads, **kw):
    return EncoderDecoderConfig(vocab_size=32128, d_model=d_model, d_kv=d_model // heads, d_ff=d_ff,
                                num_layers=layers, num_heads=heads, **kw)


NAMED_SIZES: dict[str, EncoderConfig | EncoderDecoderConfig] = {
    "bert-tiny": _bert(2, 128, 2),
    "bert-mini": _bert(4, 256, 4),
    "bert-small": _bert(4, 512, 8),
    "bert-medium": _bert(8, 512, 8),
    "bert-base": _bert(12, 768, 12),
    "bert-large": _bert(24, 1024, 16),
    "albert-base": _albert(12, 768, 12),
    "albert-large": _albert(24, 1024, 16),
    "albert-xlarge": _albert(24, 2048, 16),
    "albert-xxlarge": _albert(12, 4096, 64),
    "t5-tiny": _t5(128, 512, 2, 4),
    "t5-small": _t5(512, 2048, 6, 8),
    "t5-base": _t5(768, 3072, 12, 12),
}


def named_config(name: str, vocab_size: int | None = None, **overrides) -> EncoderConfig | EncoderDecoderConfig:
    """A copy of a named size, optionally with another vocabulary size or other fields replaced."""
    if name not in NAMED_SIZES:
        hint = nearest(name, NAMED_SIZES)
        raise ConfigError(f"unknown model size '{name}'" + (f"; did you mean '{hint}'?" if hint else
                          f"; choose one of {', '.join(NAMED_SIZES)}"), "model.size")
    if vocab_size is not None:
        overrides["vocab_size"] = vocab_size
    return dataclasses.replace(NAMED_SIZES[name], **overrides)


@dataclass
class ParameterCount:
    """Parameters of the bare model (encoder + pooler, or the whole T5), split into embeddings and the rest."""

    total: int
    embedding: int
    pooler: int = 0

    @property
    def non_embedding(self) -> int:
        return self.total - self.embedding

    @property
    def without_pooler(self) -> int:
        """The ALBERT paper's BERT rows count this (its ALBERT rows include the pooler)."""
        return self.total - self.pooler


def _unique_numel(params) -> int:
    seen, total = set(), 0
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def count_parameters(config: EncoderConfig | EncoderDecoderConfig) -> ParameterCount:
    """Count the parameters of the module `config` builds, without allocating them.

    Encoders: `EncoderModel` (embeddings, layers, pooler; no pretraining heads), as in the ALBERT paper.
    Embedding parameters: word/position/type tables, their LayerNorm and the E→H projection; for T5 the
    shared table and an untied output matrix.
    """
    pooler = 0
    with torch.device("meta"):
        if isinstance(config, EncoderConfig):
            model = EncoderModel(config)
            embedding = _unique_numel(model.embeddings.parameters())
            pooler = _unique_numel(model.pooler.parameters())
        else:
            model = EncoderDecoderModel(config)
            embedding = _unique_numel(list(model.shared.parameters())
                                      + (list(model.lm_head.parameters()) if model.lm_head is not None else []))
    return ParameterCount(total=_unique_numel(model.parameters()), embedding=embedding, pooler=pooler)


def describe_size(name: str, config: EncoderConfig | EncoderDecoderConfig) -> dict:
    """One row of `maskbench model list`: shape and parameter counts."""
    count = count_parameters(config)
    if isinstance(config, EncoderConfig):
        layers, hidden, embed, heads = config.num_layers, config.hidden_size, config.embed_dim, config.num_heads
        kind = "encoder" + (f" (share={config.share})" if config.share != "none" else "")
    else:
        layers, hidden, embed, heads = (f"{config.num_layers}+{config.decoder_layers}", config.d_model,
                                        config.d_model, config.num_heads)
        kind = config.variant
    return {"name": name, "kind": kind, "layers": layers, "hidden": hidden, "embedding": embed, "heads": heads,
            "vocab": config.vocab_size, "parameters": count.total, "non_embedding": count.non_embedding,
            "without_pooler": count.without_pooler}
