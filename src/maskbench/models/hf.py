"""Import from and export to Hugging Face `transformers` folders (BERT, ALBERT, T5; RoBERTa, XLM-R,
ELECTRA and DistilBERT through the tables of `hf_families`).

Both directions go through a real `transformers` model built from the folder's config, so HF's own
conventions (tied weights, old `gamma`/`beta` names, sharded or `.bin` weights loaded with
`weights_only`) are handled by HF itself, and every HF weight is accounted for: an export that leaves an
HF weight unset, or an import that finds a weight it cannot place, is an error, never a silent drop.

Mapping: our encoder stores Q/K/V fused (`attention.i.qkv`, [3H, H]); HF has `query`/`key`/`value`.
Non-factorized, unshared encoders are BERT; the rest are ALBERT (`num_hidden_groups` = 1 for
share="all", = L for share="none"; ALBERT always has the E→H projection, so a non-factorized shared
encoder exports with an identity projection). ALBERT cannot express sharing only the attention or only
the feed-forward blocks: such models are refused. The T5 module names already equal HF's.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from ..data.tokenizer import SPECIAL_ALIASES
from ..errors import CheckpointError
from ..io import atomic_dir, claim_out_dir, read_json, write_json
from . import hf_families
from .checkpoint import CONFIG, MODEL_KIND, resolve_model_dir, save_model
from .discriminator import EncoderForTokenDetection
from .encoder import EncoderModel
from .heads import EncoderForPretraining, EncoderForSequenceClassification
from .hf_import import TOKENIZER_FILES, _encoder_pairs, _head_pairs, _tied, _transformers
from .loading import load_model
from .qa import EncoderForQuestionAnswering

EXPORT_KIND = "Hugging Face export"

def import_hf(hf_dir: str | os.PathLike, head: str | None = None, num_labels: int | None = None, seed: int = 0):
    """A maskbench model from a Hugging Face folder (a missing pooler is initialised from `seed`)."""
    return load_model(hf_dir, head=head, num_labels=num_labels, seed=seed)


def import_to_folder(hf_dir: str | os.PathLike, out_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    """`maskbench import`: a Hugging Face folder → a maskbench model folder (+ its tokenizer files).
    A non-empty `out_dir` is refused unless `overwrite` and it is a model folder maskbench wrote."""
    hf_dir = Path(hf_dir) if Path(hf_dir).exists() else resolve_model_dir(hf_dir)  # a folder, or a Hub id
    claim_out_dir(out_dir, MODEL_KIND, overwrite, inputs=[hf_dir])
    if not (hf_dir / CONFIG).is_file():
        raise CheckpointError(f"{hf_dir} has no config.json; point --from at a Hugging Face model folder")
    model = import_hf(hf_dir)
    with atomic_dir(out_dir, kind=MODEL_KIND) as tmp:
        save_model(model, tmp, extra={"imported_from": str(hf_dir.resolve()),
                                      "hf_model_type": read_json(hf_dir / CONFIG).get("model_type")})
        for name in TOKENIZER_FILES:
            if (hf_dir / name).is_file():
                shutil.copyfile(hf_dir / name, tmp / name)
    return Path(out_dir)


# ----------------------------------------------------------------------------------------------- export
def _export_encoder(model, transformers, requested: str | None = None):
    config = model.config
    if config.norm == "pre":
        raise CheckpointError("pre-LN encoders (model.norm = \"pre\") cannot be exported as BERT or ALBERT, which "
                              "are post-LN; export them with --hf-type roberta-prelayernorm")
    if config.share in ("attention", "ffn"):
        raise CheckpointError(f"share='{config.share}' cannot be exported: Hugging Face ALBERT shares whole layers "
                              "only (share='all' or 'none')")
    kind = "bert" if config.share == "none" and config.embedding_size is None else "albert"
    if requested is not None and requested != kind:
        raise CheckpointError(f"this model exports as {kind}, not {requested} "
                              f"({'factorized or shared' if kind == 'albert' else 'neither factorized nor shared'})")

    if not isinstance(model, (EncoderForPretraining, EncoderForSequenceClassification, EncoderModel,
                              EncoderForQuestionAnswering)):
        raise CheckpointError(f"a {type(model).__name__} exports as electra only (--hf-type electra)")
    common = dict(vocab_size=config.vocab_size, hidden_size=config.hidden_size, num_hidden_layers=config.num_layers,
                  num_attention_heads=config.num_heads, intermediate_size=config.intermediate_size,
                  hidden_act=config.activation, hidden_dropout_prob=config.dropout,
                  attention_probs_dropout_prob=config.attention_dropout, max_position_embeddings=config.max_positions,
                  type_vocab_size=config.type_vocab_size, layer_norm_eps=config.layer_norm_eps,
                  pad_token_id=config.pad_id, initializer_range=config.initializer_range)
    if kind == "albert":
        if config.type_vocab_size == 0:
            raise CheckpointError("Hugging Face ALBERT needs token-type embeddings (type_vocab_size ≥ 1)")
        groups = 1 if config.share == "all" else config.num_layers
        hf_config = transformers.AlbertConfig(embedding_size=config.embed_dim, num_hidden_groups=groups,
                                              inner_group_num=1, classifier_dropout_prob=config.dropout, **common)
    else:
        hf_config = transformers.BertConfig(**common)
    if isinstance(model, EncoderForPretraining):
        arch = ("Bert" if kind == "bert" else "Albert") + ("ForPreTraining" if model.sentence_task else "ForMaskedLM")
    elif isinstance(model, EncoderForSequenceClassification):
        arch = ("Bert" if kind == "bert" else "Albert") + "ForSequenceClassification"
        hf_config.num_labels = model.num_labels
        if model.num_labels == 1:
            hf_config.problem_type = "regression"
    elif isinstance(model, EncoderForQuestionAnswering):
        arch = ("Bert" if kind == "bert" else "Albert") + "ForQuestionAnswering"
    else:
        arch = "BertModel" if kind == "bert" else "AlbertModel"
    hf_config.architectures = [arch]
    hf_model = getattr(transformers, arch)(hf_config)
    ours = model.state_dict()
    prefix = "" if arch.endswith("Model") and arch in ("BertModel", "AlbertModel") else "encoder."
    n_attention = len((model if prefix == "" else model.encoder).attention)
    pairs = _encoder_pairs(kind, config.num_layers, n_attention, n_attention, config.embedding_size is not None)
    head = "pretraining" if arch.endswith("MaskedLM") or arch.endswith("PreTraining") else \
        "classification" if arch.endswith("Classification") else \
        "question_answering" if arch.endswith("QuestionAnswering") else None
    head_pairs = _head_pairs(kind, head) + (_head_pairs(kind, "sentence") if arch.endswith("PreTraining") else [])
    hf_state = {}
    for mine, theirs in pairs:
        tensor = ours[prefix + mine]
        if isinstance(theirs, tuple):
            for name, part in zip(theirs, tensor.chunk(3, 0)):
                hf_state[name] = part
        else:
            hf_state[theirs] = tensor
    for mine, theirs in head_pairs:
        hf_state[theirs] = ours[mine]
    if kind == "albert" and config.embedding_size is None:  # shared, non-factorized: identity projection
        hf_state["albert.encoder.embedding_hidden_mapping_in.weight"] = torch.eye(config.hidden_size)
        hf_state["albert.encoder.embedding_hidden_mapping_in.bias"] = torch.zeros(config.hidden_size)
    if arch in ("BertModel", "AlbertModel"):
        hf_state = {k.split(".", 1)[1]: v for k, v in hf_state.items()}
    expected = hf_model.state_dict()
    if arch.endswith("ForMaskedLM") or arch.endswith("ForQuestionAnswering"):  # no pooler in these HF models
        hf_state = {k: v for k, v in hf_state.items() if "pooler" not in k}
    return hf_model, hf_state, expected


def _export_t5(model, transformers):
    c = model.config
    if c.variant != "encoder_decoder":
        raise CheckpointError(f"variant '{c.variant}' cannot be exported: T5ForConditionalGeneration is an encoder-decoder")
    hf_config = transformers.T5Config(
        vocab_size=c.vocab_size, d_model=c.d_model, d_kv=c.d_kv, d_ff=c.d_ff, num_layers=c.num_layers,
        num_decoder_layers=c.decoder_layers, num_heads=c.num_heads,
        relative_attention_num_buckets=c.relative_attention_num_buckets,
        relative_attention_max_distance=c.relative_attention_max_distance, dropout_rate=c.dropout,
        layer_norm_epsilon=c.layer_norm_eps, feed_forward_proj=c.feed_forward,
        tie_word_embeddings=c.tie_word_embeddings, pad_token_id=c.pad_id, decoder_start_token_id=c.pad_id,
        eos_token_id=c.eos_id if c.eos_id is not None else 1, initializer_factor=c.initializer_factor,
        architectures=["T5ForConditionalGeneration"])
    hf_config.tie_word_embeddings = c.tie_word_embeddings  # transformers 5 forces True in __post_init__
    hf_model = transformers.T5ForConditionalGeneration(hf_config)
    state = dict(model.state_dict())
    for stack in ("encoder", "decoder"):  # not tied by transformers 5 when the output layer is untied
        state[f"{stack}.embed_tokens.weight"] = state["shared.weight"]
    return hf_model, state, hf_model.state_dict()


#: `maskbench export --hf-type`: "auto" keeps the family a model was imported from (else bert or albert).
EXPORT_TYPES = ("auto", "bert", "albert") + hf_families.FAMILIES


def _export_family(model, kind: str, transformers):
    """A RoBERTa / XLM-R / ELECTRA model holding our weights (names as in `_import_family`)."""
    wanted = hf_families.NORM.get(kind, "post")
    if model.config.norm == "post" and wanted == "pre":
        raise CheckpointError(f"a post-LN encoder cannot be exported as {kind}, a pre-LN architecture; "
                              "export it as bert, albert or roberta")
    if model.config.norm != wanted:
        raise CheckpointError(f"pre-LN encoders (model.norm = \"pre\") cannot be exported as {kind}, a post-LN "
                              "architecture")

    model_kind = ("token_detection" if isinstance(model, EncoderForTokenDetection) else
                  "pretraining" if isinstance(model, EncoderForPretraining) else
                  "classification" if isinstance(model, EncoderForSequenceClassification) else "encoder")
    arch = hf_families.export_architecture(kind, model_kind, getattr(model, "sentence_task", None))
    config = model.config
    kwargs = hf_families.export_config_kwargs(kind, config, arch.endswith("ForMaskedLM"))
    hf_config = getattr(transformers, hf_families.CONFIG_CLASSES[kind])(**kwargs)
    if model_kind == "classification":
        hf_config.num_labels = model.num_labels
        if model.num_labels == 1:
            hf_config.problem_type = "regression"
    hf_config.architectures = [arch]
    hf_model = getattr(transformers, arch)(hf_config)
    ours = model.state_dict()
    prefix = "" if model_kind == "encoder" else "encoder."
    n = config.num_layers
    pairs = hf_families.body_pairs(kind, _encoder_pairs("bert", n, n, n, False), arch,
                                   config.embedding_size is not None)
    _, _, head_pairs = hf_families.head(kind, arch, getattr(model, "num_labels", 2))
    hf_state = {}
    for mine, theirs in [(prefix + m, t) for m, t in pairs] + head_pairs:
        if isinstance(theirs, tuple):
            for name, part in zip(theirs, ours[mine].chunk(3, 0)):
                hf_state[name] = part
        else:
            hf_state[theirs] = ours[mine]
    positions = f"{hf_families.PREFIX[kind]}.embeddings.position_embeddings.weight"
    offset = hf_families.position_offset(kind, config.pad_id)
    table = hf_state[positions]
    hf_state[positions] = torch.cat([table.new_zeros(offset, table.shape[1]), table])  # rows before position 0
    expected = hf_model.state_dict()
    if arch.endswith("Model"):
        hf_state = {k.split(".", 1)[1]: v for k, v in hf_state.items()}
    hf_state = {k: v for k, v in hf_state.items() if k in expected or ".pooler." not in f".{k}"}  # no pooler in HF
    return hf_model, hf_state, expected


def _export_type(requested: str, model, meta: dict) -> str:
    """The HF family to write: the requested one, or for "auto" the one the model came from."""
    if requested not in EXPORT_TYPES:
        raise CheckpointError(f"unknown Hugging Face type '{requested}'; choose one of {', '.join(EXPORT_TYPES)}")
    if requested != "auto":
        return requested
    if type(model).__name__ == "EncoderForTokenDetection":
        return "electra"
    if getattr(model.config, "norm", "post") == "pre":  # the one HF encoder family with pre-LN blocks
        return "roberta-prelayernorm"
    origin = meta.get("hf_model_type") or meta.get("model_type")
    if origin == "electra" and type(model).__name__ == "EncoderForSequenceClassification":
        return "auto"  # ELECTRA's classification head is not ours; BERT/ALBERT's is
    return origin if origin in hf_families.FAMILIES else "auto"


def export_hf(model_dir: str | os.PathLike, out_dir: str | os.PathLike, hf_type: str = "auto",
              overwrite: bool = False) -> Path:
    """Write a Hugging Face folder (config.json, model.safetensors, tokenizer files) for a maskbench model.

    `hf_type`: the transformers family (bert, albert, roberta, xlm-roberta, electra, roberta-prelayernorm);
    "auto" keeps the one a model was imported from, else RobertaPreLayerNorm for pre-LN encoders, BERT for
    plain encoders and ALBERT for factorized or shared ones.
    A non-empty `out_dir` is refused unless `overwrite` and it is an export maskbench wrote."""
    claim_out_dir(out_dir, EXPORT_KIND, overwrite, inputs=[model_dir])
    _transformers()
    source = resolve_model_dir(model_dir)
    model = load_model(source)
    candidates = [source / "tokenizer.json", source.parent / "tokenizer.json",
                  source.parent.parent / "model" / "tokenizer.json"]
    found = next((p for p in candidates if p.is_file()), None)
    return export_model(model, out_dir, hf_type, found.read_text(encoding="utf-8") if found else None,
                        origin=read_json(source / CONFIG))


def export_model(model, out_dir: str | os.PathLike, hf_type: str = "auto", tokenizer_json: str | None = None,
                 origin: dict | None = None) -> Path:
    """`export_hf` for a model in memory (fine-tuning saves its best model this way); `origin` is the
    config.json of the folder it came from (for hf_type "auto"), `tokenizer_json` its tokenizer."""
    transformers = _transformers()
    kind = _export_type(hf_type, model, origin or {})
    if type(model).__name__ == "EncoderDecoderModel":
        if kind not in ("auto",):
            raise CheckpointError(f"an encoder-decoder model exports as t5, not {kind}")
        hf_model, hf_state, expected = _export_t5(model, transformers)
    elif kind in hf_families.FAMILIES:
        hf_model, hf_state, expected = _export_family(model, kind, transformers)
    else:
        hf_model, hf_state, expected = _export_encoder(model, transformers, None if kind == "auto" else kind)
    for name, tensor in expected.items():
        if name not in hf_state and not _tied(name):
            raise CheckpointError(f"export: Hugging Face weight '{name}' would be left uninitialised")
        if name in hf_state and tuple(hf_state[name].shape) != tuple(tensor.shape):
            raise CheckpointError(f"export: '{name}' has shape {list(hf_state[name].shape)}, HF expects {list(tensor.shape)}")
    for name in hf_state:
        if name not in expected:
            raise CheckpointError(f"export: weight '{name}' has no place in {type(hf_model).__name__}")
    hf_model.load_state_dict({k: v.detach().cpu() for k, v in hf_state.items()}, strict=False)
    hf_model.tie_weights()
    with atomic_dir(out_dir, kind=EXPORT_KIND) as tmp:
        hf_model.save_pretrained(str(tmp))
        if tokenizer_json is not None:
            _export_tokenizer(tokenizer_json, tmp, model)
    return Path(out_dir)


def _export_tokenizer(tokenizer_json: str, out: Path, model) -> None:
    """Write tokenizer.json and a tokenizer_config.json that AutoTokenizer reads."""
    (out / "tokenizer.json").write_text(tokenizer_json, encoding="utf-8")
    vocab = json.loads(tokenizer_json)
    present = {t.get("content") for t in vocab.get("added_tokens", [])}
    config = {"tokenizer_class": "PreTrainedTokenizerFast",
              "model_max_length": getattr(model.config, "max_positions", 512)}
    for role, names in SPECIAL_ALIASES.items():  # [CLS] for BERT, <s> for RoBERTa ...
        name = next((n for n in names if n in present), None)
        if name is not None:
            config[f"{role}_token"] = name
    if config.get("cls_token") == "<s>" and "sep_token" in config:  # RoBERTa's <s> … </s> are also bos/eos
        config.update(bos_token="<s>", eos_token=config["sep_token"])
    if type(model).__name__ == "EncoderDecoderModel":
        if "sep_token" in config:
            config["eos_token"] = config["sep_token"]
    elif getattr(model.config, "type_vocab_size", 0) > 1:
        # PreTrainedTokenizerFast returns only input_ids and attention_mask unless told otherwise, and a
        # sentence pair would then lose its segment ids.
        config["model_input_names"] = ["input_ids", "token_type_ids", "attention_mask"]
    write_json(out / "tokenizer_config.json", config)
