"""Hugging Face folders read into maskbench's names (BERT, ALBERT, T5; RoBERTa, XLM-R, ELECTRA and DistilBERT through
the tables of `hf_families`), and the name tables that export shares.

Kept apart from `hf` (the export side and the commands) so that `loading.load_model` can read an HF
folder without importing the module that itself loads maskbench models: the arrows go
checkpoint <- hf_import <- loading <- hf.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch

from ..errors import CheckpointError
from ..io import read_json
from . import hf_families
from .checkpoint import CONFIG
from .encoder import EncoderConfig
from .encoder_decoder import EncoderDecoderConfig

TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")
_HF_ARCHITECTURES = {
    "bert": ("BertForPreTraining", "BertForMaskedLM", "BertForSequenceClassification", "BertModel"),
    "albert": ("AlbertForPreTraining", "AlbertForMaskedLM", "AlbertForSequenceClassification", "AlbertModel"),
    "t5": ("T5ForConditionalGeneration",),
}
_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_new", "relu": "relu", "silu": "silu", "gelu_pytorch_tanh": "gelu_new",
                "gelu_fast": "gelu_new", "swish": "silu"}


def _transformers():
    try:
        import transformers  # lazy: optional dependency (or slow), only this path needs it
    except ImportError:  # pragma: no cover - the `hf` extra
        raise CheckpointError("Hugging Face interop needs `transformers`: pip install 'maskbench[hf]'") from None
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()  # its shard bars would interleave with maskbench's output
    return transformers


# ----------------------------------------------------------------------------------------------- names
def _encoder_pairs(kind: str, num_layers: int, n_attention: int, n_ffn: int, factorized: bool):
    """(ours, HF) name pairs for the encoder body; qkv pairs list the three HF names."""
    base = "bert" if kind == "bert" else "albert"
    pairs = []
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        pairs.append((f"embeddings.{name}.weight", f"{base}.embeddings.{name}.weight"))
    for p in ("weight", "bias"):
        pairs.append((f"embeddings.LayerNorm.{p}", f"{base}.embeddings.LayerNorm.{p}"))
    if kind == "albert" and factorized:
        for p in ("weight", "bias"):
            pairs.append((f"embeddings.projection.{p}", f"albert.encoder.embedding_hidden_mapping_in.{p}"))
    for p in ("weight", "bias"):
        for i in range(n_attention):
            if kind == "bert":
                hf = f"bert.encoder.layer.{i}.attention"
                qkv = tuple(f"{hf}.self.{n}.{p}" for n in ("query", "key", "value"))
                pairs += [(f"attention.{i}.qkv.{p}", qkv), (f"attention.{i}.output.{p}", f"{hf}.output.dense.{p}"),
                          (f"attention.{i}.LayerNorm.{p}", f"{hf}.output.LayerNorm.{p}")]
            else:
                hf = f"albert.encoder.albert_layer_groups.{i}.albert_layers.0.attention"
                qkv = tuple(f"{hf}.{n}.{p}" for n in ("query", "key", "value"))
                pairs += [(f"attention.{i}.qkv.{p}", qkv), (f"attention.{i}.output.{p}", f"{hf}.dense.{p}"),
                          (f"attention.{i}.LayerNorm.{p}", f"{hf}.LayerNorm.{p}")]
        for i in range(n_ffn):
            if kind == "bert":
                hf = f"bert.encoder.layer.{i}"
                pairs += [(f"ffn.{i}.intermediate.{p}", f"{hf}.intermediate.dense.{p}"),
                          (f"ffn.{i}.output.{p}", f"{hf}.output.dense.{p}"),
                          (f"ffn.{i}.LayerNorm.{p}", f"{hf}.output.LayerNorm.{p}")]
            else:
                hf = f"albert.encoder.albert_layer_groups.{i}.albert_layers.0"
                pairs += [(f"ffn.{i}.intermediate.{p}", f"{hf}.ffn.{p}"), (f"ffn.{i}.output.{p}", f"{hf}.ffn_output.{p}"),
                          (f"ffn.{i}.LayerNorm.{p}", f"{hf}.full_layer_layer_norm.{p}")]
        pairs.append((f"pooler.{p}", "bert.pooler.dense." + p if kind == "bert" else f"albert.pooler.{p}"))
    return pairs


def _head_pairs(kind: str, head: str | None):
    pairs = []
    for p in ("weight", "bias"):
        if head == "pretraining":
            mlm = "cls.predictions.transform" if kind == "bert" else "predictions"
            pairs += [(f"mlm.dense.{p}", f"{mlm}.dense.{p}"), (f"mlm.LayerNorm.{p}", f"{mlm}.LayerNorm.{p}")]
        if head == "sentence":
            pairs.append((f"sentence.{p}", "cls.seq_relationship." + p if kind == "bert" else f"sop_classifier.classifier.{p}"))
        if head == "classification":
            pairs.append((f"classifier.{p}", f"classifier.{p}"))
        if head == "question_answering":
            pairs.append((f"qa_outputs.{p}", f"qa_outputs.{p}"))
    if head == "pretraining":
        pairs.append(("mlm.bias", "cls.predictions.bias" if kind == "bert" else "predictions.bias"))
    return pairs


def _tied(name: str) -> bool:
    """HF weights that are tied to another weight (filled by HF itself)."""
    return (name.endswith("predictions.decoder.weight") or name.endswith("predictions.decoder.bias")
            or name.endswith("embed_tokens.weight") or name == "lm_head.weight" or hf_families.tied(name))


# ----------------------------------------------------------------------------------------------- import
def _build_hf(directory: Path):
    transformers = _transformers()
    meta = read_json(directory / CONFIG)
    kind = meta.get("model_type")
    known = _HF_ARCHITECTURES.get(kind) or hf_families.ARCHITECTURES.get(kind)
    if not known:
        raise CheckpointError(f"{directory}: model_type '{kind}' is not supported; maskbench imports "
                              f"{hf_families.SUPPORTED}")
    names = [a for a in meta.get("architectures") or [] if a in known]
    if meta.get("architectures") and not names:
        raise CheckpointError(f"{directory}: {', '.join(meta['architectures'])} is not supported; maskbench "
                              f"reads {', '.join(known)}")
    arch = names[0] if names else known[-1]
    try:
        model = getattr(transformers, arch).from_pretrained(str(directory), dtype=torch.float32)
    except Exception as e:  # HF raises OSError/ValueError/RuntimeError for bad folders
        raise CheckpointError(f"{directory}: transformers cannot load it as {arch} ({str(e).splitlines()[0]})") from None
    return kind, arch, model


def import_hf_state(directory: str | os.PathLike):
    """(architecture, config dict, head, state dict) in maskbench terms for a Hugging Face folder."""
    directory = Path(directory)
    kind, arch, hf_model = _build_hf(directory)
    hf_state = hf_model.state_dict()
    c = hf_model.config
    if kind == "t5":
        return _import_t5(c, hf_state)
    if kind in hf_families.FAMILIES:
        return _import_family(kind, arch, c, hf_state, directory)

    if kind == "albert":
        if c.inner_group_num != 1:
            raise CheckpointError(f"{directory}: ALBERT with inner_group_num={c.inner_group_num} has no maskbench equivalent")
        if c.num_hidden_groups == 1:
            share = "all"
        elif c.num_hidden_groups == c.num_hidden_layers:
            share = "none"
        else:
            raise CheckpointError(f"{directory}: ALBERT with {c.num_hidden_groups} groups for {c.num_hidden_layers} "
                                  "layers has no maskbench equivalent (supported: 1 group or one per layer)")
        embedding_size, dropout = c.embedding_size, c.hidden_dropout_prob
    else:
        share, embedding_size, dropout = "none", None, c.hidden_dropout_prob
    if getattr(c, "position_embedding_type", "absolute") not in (None, "absolute"):
        raise CheckpointError(f"{directory}: position_embedding_type '{c.position_embedding_type}' is not supported; "
                              f"maskbench imports {hf_families.SUPPORTED}")
    if c.hidden_act not in _ACTIVATIONS:
        raise CheckpointError(f"{directory}: activation '{c.hidden_act}' is not supported")
    config = EncoderConfig(
        vocab_size=c.vocab_size, hidden_size=c.hidden_size, num_layers=c.num_hidden_layers,
        num_heads=c.num_attention_heads, intermediate_size=c.intermediate_size, embedding_size=embedding_size,
        share=share, max_positions=c.max_position_embeddings, type_vocab_size=c.type_vocab_size, dropout=dropout,
        attention_dropout=c.attention_probs_dropout_prob, activation=_ACTIVATIONS[c.hidden_act],
        layer_norm_eps=c.layer_norm_eps, pad_id=c.pad_token_id if c.pad_token_id is not None else 0,
        initializer_range=c.initializer_range)
    n_attention = 1 if share == "all" else config.num_layers
    pairs = _encoder_pairs(kind, config.num_layers, n_attention, n_attention, embedding_size is not None)
    if arch.endswith("ForPreTraining"):
        head_info = {"type": "pretraining", "sentence_task": "nsp" if kind == "bert" else "sop"}
        prefix = "encoder."
        pairs_head = _head_pairs(kind, "pretraining") + _head_pairs(kind, "sentence")
        architecture = "EncoderForPretraining"
    elif arch.endswith("ForMaskedLM"):
        head_info, prefix = {"type": "pretraining", "sentence_task": None}, "encoder."
        pairs_head = _head_pairs(kind, "pretraining")
        architecture = "EncoderForPretraining"
    elif arch.endswith("ForSequenceClassification"):
        head_info, prefix = {"type": "classification", "num_labels": c.num_labels}, "encoder."
        pairs_head = _head_pairs(kind, "classification")
        architecture = "EncoderForSequenceClassification"
    else:
        head_info, prefix, pairs_head, architecture = None, "", [], "EncoderModel"
    if arch == "BertModel" or arch == "AlbertModel":  # HF bare models have no "bert."/"albert." prefix
        hf_state = {f"{kind}.{k}": v for k, v in hf_state.items()}
    state = {}
    used = set()
    for ours, theirs in pairs:
        state[prefix + ours] = _take(hf_state, theirs, used, directory, ours)
    for ours, theirs in pairs_head:
        state[ours] = _take(hf_state, theirs, used, directory, ours)
    _check_used(hf_state, used, directory)
    _fill_missing_pooler(state, prefix, config)
    return architecture, dataclasses.asdict(config), head_info, state


def _import_family(kind: str, arch: str, c, hf_state, directory):
    """RoBERTa / XLM-R / ELECTRA: BERT's layer names under another prefix (see hf_families)."""
    config = EncoderConfig(**hf_families.encoder_kwargs(kind, c, arch, _ACTIVATIONS, directory))
    if arch.endswith("Model"):  # bare HF models have no "roberta."/"electra." prefix
        hf_state = {f"{hf_families.PREFIX[kind]}.{k}": v for k, v in hf_state.items()}
    n = config.num_layers
    pairs = hf_families.body_pairs(kind, _encoder_pairs("bert", n, n, n, False), arch,
                                   config.embedding_size is not None)
    architecture, head_info, head_pairs = hf_families.head(kind, arch, c.num_labels)
    prefix = "" if architecture == "EncoderModel" else "encoder."
    state, used = {}, set()
    for ours, theirs in pairs:
        state[prefix + ours] = _take(hf_state, theirs, used, directory, ours)
    for ours, theirs in head_pairs:
        state[ours] = _take(hf_state, theirs, used, directory, ours)
    _check_used(hf_state, used, directory)
    positions = prefix + "embeddings.position_embeddings.weight"
    state[positions] = state[positions][hf_families.position_offset(kind, config.pad_id):].contiguous()
    _fill_missing_pooler(state, prefix, config)
    return architecture, dataclasses.asdict(config), head_info, state


def _take(hf_state, theirs, used, directory, ours):
    names = theirs if isinstance(theirs, tuple) else (theirs,)
    for name in names:
        if name not in hf_state:
            if name.endswith("pooler.weight") or name.endswith("pooler.bias") or ".pooler.dense." in name:
                return None  # filled below by _fill_missing_pooler
            raise CheckpointError(f"{directory}: Hugging Face weight '{name}' (for '{ours}') is missing")
        used.add(name)
    tensors = [hf_state[n].detach().to(torch.float32).contiguous() for n in names]
    return torch.cat(tensors, 0) if len(tensors) > 1 else tensors[0]


def _fill_missing_pooler(state, prefix, config) -> None:
    """HF masked-LM models carry no pooler; ours always has one: initialise it as BERT would (seed 0)."""
    if state.get(prefix + "pooler.weight") is None:
        generator = torch.Generator().manual_seed(0)
        h = config.hidden_size
        state[prefix + "pooler.weight"] = torch.randn(h, h, generator=generator) * config.initializer_range
        state[prefix + "pooler.bias"] = torch.zeros(h)


def _check_used(hf_state, used, directory):
    for name in hf_state:
        if name not in used and not _tied(name):
            raise CheckpointError(f"{directory}: Hugging Face weight '{name}' has no place in the maskbench model")


def _import_t5(c, hf_state):
    ff = getattr(c, "feed_forward_proj", "relu")
    # transformers 5 separates "scale the decoder output by d_model**-0.5" (T5 v1.0) from weight tying;
    # maskbench ties exactly when it scales, so an untied-but-scaled model has no equivalent.
    scale = bool(getattr(c, "scale_decoder_outputs", c.tie_word_embeddings))
    tied = "lm_head.weight" not in hf_state or torch.equal(hf_state["lm_head.weight"], hf_state["shared.weight"])
    for stack in ("encoder", "decoder"):
        name = f"{stack}.embed_tokens.weight"
        if name in hf_state and not torch.equal(hf_state[name], hf_state["shared.weight"]):
            raise CheckpointError(f"T5 with a separate {name} (not the shared embedding) has no maskbench equivalent")
    if scale and not tied:
        raise CheckpointError("T5 with an untied output layer and rescaled decoder outputs has no maskbench equivalent")
    if ff not in ("relu", "gated-gelu"):
        raise CheckpointError(f"T5 feed_forward_proj '{ff}' is not supported (relu, gated-gelu)")
    config = EncoderDecoderConfig(
        vocab_size=c.vocab_size, d_model=c.d_model, d_kv=c.d_kv, d_ff=c.d_ff, num_layers=c.num_layers,
        num_decoder_layers=c.num_decoder_layers if c.num_decoder_layers != c.num_layers else None,
        num_heads=c.num_heads, relative_attention_num_buckets=c.relative_attention_num_buckets,
        relative_attention_max_distance=c.relative_attention_max_distance, dropout=c.dropout_rate,
        layer_norm_eps=c.layer_norm_epsilon, feed_forward=ff, tie_word_embeddings=scale,
        pad_id=c.pad_token_id or 0, eos_id=c.eos_token_id, initializer_factor=c.initializer_factor)
    state = {k: v.detach().to(torch.float32).contiguous() for k, v in hf_state.items()
             if not k.endswith("embed_tokens.weight") and not (k == "lm_head.weight" and config.tie_word_embeddings)}
    return "EncoderDecoderModel", dataclasses.asdict(config), None, state
