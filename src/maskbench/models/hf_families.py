"""RoBERTa, XLM-R, ELECTRA and DistilBERT in maskbench terms: which HF classes, which weight names, which config.

All are BERT's post-LN encoder under other names, so `hf.py` maps them with BERT's layer names and
the differences listed here (pure tables and config arithmetic, no torch):
- RoBERTa / XLM-R (Liu et al. 2019; the architecture Wettig et al. 2022 pretrain): position ids start
  after the padding id (HF's `create_position_ids_from_input_ids`: pad_id + 1 + index), so our table is
  HF's without its first pad_id + 1 rows, and `max_positions` is `max_position_embeddings - pad_id - 1`.
  Pad tokens themselves read HF's row `pad_id`; they are masked out of attention, so every other position
  gives the same logits (right padding, as maskbench batches are). One token type (`type_vocab_size` 1).
  The sequence-classification head (dense, tanh, out_proj on `<s>`) is our pooler + classifier.
- ELECTRA (Clark et al. 2020): no pooler; `embeddings_project` (E→H) exists only when E ≠ H, which is our
  factorized embedding; the generator is `ElectraForMaskedLM` (its head is our MLM head with E outputs),
  the discriminator `ElectraForPreTraining` (our `EncoderForTokenDetection`). ELECTRA's classification
  head uses GELU where ours uses tanh, so it has no equivalent here (the discriminator is what one
  fine-tunes from).
- RoBERTa-PreLayerNorm (HF's `RobertaPreLayerNorm*`, made for Wettig et al.'s released
  `efficient_mlm_*` models): RoBERTa with pre-LN blocks, i.e. our `norm = "pre"`. Its per-block norms sit
  at `attention.LayerNorm` (before self-attention) and `intermediate.LayerNorm` (before the feed-forward),
  and `roberta_prelayernorm.LayerNorm` follows the last layer (our encoder's own `LayerNorm`).
- DistilBERT (Sanh et al. 2019): BERT's post-LN layers under other names (`q_lin`, `sa_layer_norm`,
  `ffn.lin1`, `output_layer_norm`, ...) and other config keys (`dim`, `hidden_dim`, `activation`), no
  token-type embeddings (our `type_vocab_size = 0`), no pooler, every layer norm at eps 1e-12. Its
  masked-LM head applies `activation` like its layers do, as ours does. Its classification head
  (`pre_classifier` + ReLU) is not our pooler (tanh), so classifiers are neither read nor written.
The heads of RoBERTa's and ELECTRA's masked-LM models apply GELU whatever `hidden_act` says; ours applies
the encoder's activation, so other activations are refused there.
"""

from __future__ import annotations

from ..errors import CheckpointError

FAMILIES = ("roberta", "xlm-roberta", "electra", "roberta-prelayernorm", "distilbert")
ARCHITECTURES = {
    "roberta": ("RobertaForMaskedLM", "RobertaForSequenceClassification", "RobertaModel"),
    "xlm-roberta": ("XLMRobertaForMaskedLM", "XLMRobertaForSequenceClassification", "XLMRobertaModel"),
    "electra": ("ElectraForPreTraining", "ElectraForMaskedLM", "ElectraModel"),
    "roberta-prelayernorm": ("RobertaPreLayerNormForMaskedLM", "RobertaPreLayerNormForSequenceClassification",
                             "RobertaPreLayerNormModel"),
    "distilbert": ("DistilBertForMaskedLM", "DistilBertModel"),
}
CONFIG_CLASSES = {"roberta": "RobertaConfig", "xlm-roberta": "XLMRobertaConfig", "electra": "ElectraConfig",
                  "roberta-prelayernorm": "RobertaPreLayerNormConfig", "distilbert": "DistilBertConfig"}
PREFIX = {"roberta": "roberta", "xlm-roberta": "roberta", "electra": "electra",
          "roberta-prelayernorm": "roberta_prelayernorm", "distilbert": "distilbert"}
#: The `EncoderConfig.norm` each family has (the rest are post-LN).
NORM = {"roberta-prelayernorm": "pre"}
#: What `maskbench import` reads, for the message that refuses everything else.
SUPPORTED = ("bert (absolute positions), albert, roberta, xlm-roberta, electra (generator and discriminator), "
             "roberta-prelayernorm, distilbert (masked LM), t5")
#: DistilBERT's layer norms have a fixed eps (not in its config).
DISTILBERT_LAYER_NORM_EPS = 1e-12
#: BERT's names -> DistilBERT's, in this order (the attention output's names before the block output's).
DISTILBERT_NAMES = (("bert.encoder.layer.", "distilbert.transformer.layer."), ("bert.embeddings.", "distilbert.embeddings."),
                    (".attention.self.query.", ".attention.q_lin."), (".attention.self.key.", ".attention.k_lin."),
                    (".attention.self.value.", ".attention.v_lin."), (".attention.output.dense.", ".attention.out_lin."),
                    (".attention.output.LayerNorm.", ".sa_layer_norm."), (".intermediate.dense.", ".ffn.lin1."),
                    (".output.dense.", ".ffn.lin2."), (".output.LayerNorm.", ".output_layer_norm."))


def position_offset(kind: str, pad_id: int) -> int:
    """How many rows of HF's position table come before our position 0."""
    return pad_id + 1 if kind in ("roberta", "xlm-roberta", "roberta-prelayernorm") else 0


def encoder_kwargs(kind: str, c, arch: str, activations: dict, where) -> dict:
    """`EncoderConfig` keyword arguments for HF config `c`, refusing what maskbench cannot express."""
    if kind == "distilbert":
        if c.activation not in activations:
            raise CheckpointError(f"{where}: activation '{c.activation}' is not supported")
        return dict(vocab_size=c.vocab_size, hidden_size=c.dim, num_layers=c.n_layers, num_heads=c.n_heads,
                    intermediate_size=c.hidden_dim, embedding_size=None, share="none",
                    max_positions=c.max_position_embeddings, type_vocab_size=0, dropout=c.dropout,
                    attention_dropout=c.attention_dropout, activation=activations[c.activation],
                    layer_norm_eps=DISTILBERT_LAYER_NORM_EPS, pad_id=c.pad_token_id if c.pad_token_id is not None else 0,
                    initializer_range=c.initializer_range, norm="post")
    if getattr(c, "position_embedding_type", "absolute") not in (None, "absolute"):
        raise CheckpointError(f"{where}: position_embedding_type '{c.position_embedding_type}' is not supported; "
                              f"maskbench imports {SUPPORTED}")
    if c.hidden_act not in activations:
        raise CheckpointError(f"{where}: activation '{c.hidden_act}' is not supported")
    if arch.endswith("ForMaskedLM") and c.hidden_act != "gelu":
        raise CheckpointError(f"{where}: {arch} applies GELU in its head but '{c.hidden_act}' in its layers; "
                              "maskbench's head uses the layers' activation, so it has no equivalent")
    if arch == "ElectraForSequenceClassification":
        raise CheckpointError(f"{where}: ELECTRA's classification head (GELU) has no maskbench equivalent; "
                              "import the discriminator (ElectraForPreTraining) or ElectraModel")
    pad_id = c.pad_token_id if c.pad_token_id is not None else 0
    offset = position_offset(kind, pad_id)
    if c.max_position_embeddings <= offset:
        raise CheckpointError(f"{where}: max_position_embeddings {c.max_position_embeddings} leaves no position "
                              f"after the padding id {pad_id}")
    embedding_size = getattr(c, "embedding_size", c.hidden_size)
    return dict(vocab_size=c.vocab_size, hidden_size=c.hidden_size, num_layers=c.num_hidden_layers,
                num_heads=c.num_attention_heads, intermediate_size=c.intermediate_size,
                embedding_size=embedding_size if embedding_size != c.hidden_size else None, share="none",
                max_positions=c.max_position_embeddings - offset, type_vocab_size=c.type_vocab_size,
                dropout=c.hidden_dropout_prob, attention_dropout=c.attention_probs_dropout_prob,
                activation=activations[c.hidden_act], layer_norm_eps=c.layer_norm_eps, pad_id=pad_id,
                initializer_range=c.initializer_range, norm=NORM.get(kind, "post"))


def body_pairs(kind: str, bert_pairs: list, arch: str, factorized: bool) -> list:
    """BERT's (ours, HF) body names renamed for `kind`, plus ELECTRA's E→H projection when factorized."""
    prefix = PREFIX[kind]

    def rename(name: str) -> str:
        if kind == "distilbert":
            for bert, distil in DISTILBERT_NAMES:
                name = name.replace(bert, distil)
            return name
        if name.startswith("bert.pooler.") and arch.endswith("ForSequenceClassification"):
            return "classifier.dense." + name.rsplit(".", 1)[1]  # RoBERTa's head: dense + tanh on <s>
        if NORM.get(kind) == "pre":  # the norm before each block, not after its residual sum
            name = name.replace(".attention.output.LayerNorm.", ".attention.LayerNorm.")
            name = name.replace(".output.LayerNorm.", ".intermediate.LayerNorm.")
        return prefix + name[len("bert"):] if name.startswith("bert.") else name

    if kind == "distilbert":  # no token types, no pooler
        bert_pairs = [(ours, theirs) for ours, theirs in bert_pairs
                      if not ours.startswith(("pooler.", "embeddings.token_type_embeddings."))]
    pairs = [(ours, tuple(rename(n) for n in theirs) if isinstance(theirs, tuple) else rename(theirs))
             for ours, theirs in bert_pairs]
    if NORM.get(kind) == "pre":
        pairs += [(f"LayerNorm.{p}", f"{prefix}.LayerNorm.{p}") for p in ("weight", "bias")]
    if factorized:
        pairs += [(f"embeddings.projection.{p}", f"{prefix}.embeddings_project.{p}") for p in ("weight", "bias")]
    return pairs


def head(kind: str, arch: str, num_labels: int) -> tuple[str, dict | None, list]:
    """(maskbench architecture, head info, (ours, HF) head pairs) for HF class `arch`."""
    pairs = []
    if arch == "ElectraForPreTraining":
        for p in ("weight", "bias"):
            pairs += [(f"detector.dense.{p}", f"discriminator_predictions.dense.{p}"),
                      (f"detector.prediction.{p}", f"discriminator_predictions.dense_prediction.{p}")]
        return "EncoderForTokenDetection", {"type": "token_detection"}, pairs
    if arch == "DistilBertForMaskedLM":
        for p in ("weight", "bias"):
            pairs += [(f"mlm.dense.{p}", f"vocab_transform.{p}"), (f"mlm.LayerNorm.{p}", f"vocab_layer_norm.{p}")]
        pairs.append(("mlm.bias", "vocab_projector.bias"))
        return "EncoderForPretraining", {"type": "pretraining", "sentence_task": None}, pairs
    if arch.endswith("ForMaskedLM"):
        mlm = "generator_predictions" if kind == "electra" else "lm_head"
        norm = "LayerNorm" if kind == "electra" else "layer_norm"
        for p in ("weight", "bias"):
            pairs += [(f"mlm.dense.{p}", f"{mlm}.dense.{p}"), (f"mlm.LayerNorm.{p}", f"{mlm}.{norm}.{p}")]
        pairs.append(("mlm.bias", "generator_lm_head.bias" if kind == "electra" else "lm_head.bias"))
        return "EncoderForPretraining", {"type": "pretraining", "sentence_task": None}, pairs
    if arch.endswith("ForSequenceClassification"):
        pairs = [(f"classifier.{p}", f"classifier.out_proj.{p}") for p in ("weight", "bias")]
        return "EncoderForSequenceClassification", {"type": "classification", "num_labels": num_labels}, pairs
    return "EncoderModel", None, pairs


def tied(name: str) -> bool:
    """HF weights of these families that HF ties to another weight itself."""
    return name in ("lm_head.decoder.weight", "lm_head.decoder.bias", "generator_lm_head.weight", "vocab_projector.weight")


def export_architecture(kind: str, model_kind: str, sentence_task: str | None) -> str:
    """The HF class a maskbench model becomes in family `kind` (or a one-line refusal)."""
    names = {"roberta": "Roberta", "xlm-roberta": "XLMRoberta", "electra": "Electra",
             "roberta-prelayernorm": "RobertaPreLayerNorm", "distilbert": "DistilBert"}[kind]
    if model_kind == "token_detection":
        if kind != "electra":
            raise CheckpointError(f"a replaced-token-detection model exports to electra only, not {kind}")
        return "ElectraForPreTraining"
    if model_kind == "pretraining":
        if sentence_task:
            raise CheckpointError(f"{kind} has no {sentence_task.upper()} head; export the model as bert or albert")
        return f"{names}ForMaskedLM"
    if model_kind == "classification":
        if kind == "distilbert":
            raise CheckpointError("DistilBERT's classification head (pre_classifier, ReLU) differs from maskbench's "
                                  "(pooler, tanh); export a classifier as bert, albert or roberta")
        if kind == "electra":
            raise CheckpointError("ELECTRA's classification head (GELU) differs from maskbench's (tanh); "
                                  "export a classifier as bert, albert or roberta")
        return f"{names}ForSequenceClassification"
    return f"{names}Model"


def export_config_kwargs(kind: str, config, head_activation_needed: bool) -> dict:
    """Keyword arguments of RobertaConfig / XLMRobertaConfig / ElectraConfig for our `EncoderConfig`."""
    if config.share != "none":
        raise CheckpointError(f"share='{config.share}' cannot be exported as {kind}, which shares no layers")
    if kind == "distilbert":
        return _distilbert_config_kwargs(config)
    if head_activation_needed and config.activation != "gelu":
        raise CheckpointError(f"{kind}'s masked-LM head applies GELU; this model uses '{config.activation}'")
    if config.type_vocab_size < 1:
        raise CheckpointError(f"Hugging Face {kind} needs token-type embeddings (type_vocab_size ≥ 1)")
    if kind == "electra":
        if config.embedding_size == config.hidden_size:
            raise CheckpointError("ELECTRA projects embeddings only when E ≠ H; this model has E = H with a "
                                  "projection: export it as albert")
        extra = {"embedding_size": config.embed_dim}
    else:
        if config.embedding_size is not None:
            raise CheckpointError(f"{kind} has no factorized embeddings (E→H projection); export it as albert")
        extra = {}
    return dict(vocab_size=config.vocab_size, hidden_size=config.hidden_size, num_hidden_layers=config.num_layers,
                num_attention_heads=config.num_heads, intermediate_size=config.intermediate_size,
                hidden_act=config.activation, hidden_dropout_prob=config.dropout,
                attention_probs_dropout_prob=config.attention_dropout,
                max_position_embeddings=config.max_positions + position_offset(kind, config.pad_id),
                type_vocab_size=config.type_vocab_size, layer_norm_eps=config.layer_norm_eps,
                pad_token_id=config.pad_id, initializer_range=config.initializer_range, **extra)


def _distilbert_config_kwargs(config) -> dict:
    """DistilBertConfig keyword arguments: only a model without token types, at eps 1e-12, fits."""
    if config.type_vocab_size:
        raise CheckpointError(f"DistilBERT has no token-type embeddings; this model has type_vocab_size = "
                              f"{config.type_vocab_size} (export it as bert, or use type_vocab_size = 0)")
    if config.embedding_size is not None:
        raise CheckpointError("distilbert has no factorized embeddings (E→H projection); export it as albert")
    if config.layer_norm_eps != DISTILBERT_LAYER_NORM_EPS:
        raise CheckpointError(f"DistilBERT's layer norms use eps {DISTILBERT_LAYER_NORM_EPS:g}; this model uses "
                              f"{config.layer_norm_eps:g}")
    return dict(vocab_size=config.vocab_size, dim=config.hidden_size, n_layers=config.num_layers,
                n_heads=config.num_heads, hidden_dim=config.intermediate_size, activation=config.activation,
                dropout=config.dropout, attention_dropout=config.attention_dropout,
                max_position_embeddings=config.max_positions, pad_token_id=config.pad_id,
                initializer_range=config.initializer_range, sinusoidal_pos_embds=False)
