"""RoBERTa, XLM-R, ELECTRA and DistilBERT both ways: tiny random HF models, logits equal to ≤ 1e-5 (float32)."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from maskbench.errors import CheckpointError  # noqa: E402
from maskbench.models import (EncoderConfig, EncoderForPretraining, EncoderForSequenceClassification,  # noqa: E402
                              EncoderModel, load_model, save_model)
from maskbench.models.discriminator import EncoderForTokenDetection  # noqa: E402
from maskbench.models.hf import export_hf, import_to_folder  # noqa: E402

TOL = 1e-5
PAD = 1  # RoBERTa's <pad>


def _batch(vocab=97, b=3, length=11, seed=0):
    """Right-padded ids (pad = 1 where the mask is 0), as maskbench batches are."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (b, length), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 4:] = 0
    ids[mask == 0] = PAD
    return ids, mask


def _close(a, b, mask=None):
    if mask is not None:
        a, b = a[mask.bool()], b[mask.bool()]
    assert a.shape == b.shape
    assert (a - b).abs().max().item() <= TOL


def _common(**kw):
    return dict(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
                max_position_embeddings=40, pad_token_id=PAD, **kw)


def _roberta(cls_name, **kw):
    torch.manual_seed(0)
    config_cls = transformers.XLMRobertaConfig if cls_name.startswith("XLM") else transformers.RobertaConfig
    return getattr(transformers, cls_name)(config_cls(type_vocab_size=1, **_common(**kw))).eval()


def _electra(cls_name, embedding_size=16):
    torch.manual_seed(0)
    return getattr(transformers, cls_name)(transformers.ElectraConfig(embedding_size=embedding_size,
                                                                      **_common())).eval()


@pytest.mark.parametrize("cls_name", ["RobertaForMaskedLM", "XLMRobertaForMaskedLM"])
def test_roberta_masked_lm_imports_with_equal_logits(tmp_path, cls_name):
    hf = _roberta(cls_name)
    hf.save_pretrained(tmp_path / "hf")
    ids, mask = _batch()
    ours = load_model(tmp_path / "hf")
    assert isinstance(ours, EncoderForPretraining)
    assert ours.config.max_positions == 40 - PAD - 1 and ours.config.type_vocab_size == 1
    hidden = ours.encoder(ids, mask).last_hidden_state
    _close(ours.mlm_logits(hidden), hf(input_ids=ids, attention_mask=mask).logits, mask)


def test_roberta_classifier_is_pooler_plus_classifier(tmp_path):
    hf = _roberta("RobertaForSequenceClassification", num_labels=3)
    hf.save_pretrained(tmp_path / "hf")
    ids, mask = _batch()
    ours = load_model(tmp_path / "hf")
    assert isinstance(ours, EncoderForSequenceClassification)
    _close(ours(ids, mask)["logits"], hf(input_ids=ids, attention_mask=mask).logits)
    save_model(ours, tmp_path / "ours")
    export_hf(tmp_path / "ours", tmp_path / "back", hf_type="roberta")
    again = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "back").eval()
    assert type(again).__name__ == "RobertaForSequenceClassification"
    _close(again(input_ids=ids, attention_mask=mask).logits, hf(input_ids=ids, attention_mask=mask).logits)


@pytest.mark.parametrize("hf_type", ["roberta", "xlm-roberta"])
def test_our_model_exports_as_roberta_with_equal_logits(tmp_path, hf_type):
    config = EncoderConfig(vocab_size=97, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=48,
                           max_positions=24, type_vocab_size=1, pad_id=PAD)
    model = EncoderForPretraining(config, generator=torch.Generator().manual_seed(1)).eval()
    save_model(model, tmp_path / "ours")
    export_hf(tmp_path / "ours", tmp_path / "hf", hf_type=hf_type)
    hf = transformers.AutoModelForMaskedLM.from_pretrained(tmp_path / "hf").eval()
    assert hf.config.model_type == hf_type and hf.config.max_position_embeddings == 24 + PAD + 1
    ids, mask = _batch()
    _close(model.mlm_logits(model.encoder(ids, mask).last_hidden_state), hf(input_ids=ids, attention_mask=mask).logits,
           mask)


def test_imported_roberta_exports_back_as_roberta_by_default(tmp_path):
    hf = _roberta("RobertaForMaskedLM")
    hf.save_pretrained(tmp_path / "hf")
    import_to_folder(tmp_path / "hf", tmp_path / "ours")
    export_hf(tmp_path / "ours", tmp_path / "back")
    again = transformers.AutoModelForMaskedLM.from_pretrained(tmp_path / "back").eval()
    assert type(again).__name__ == "RobertaForMaskedLM"
    for name, tensor in hf.state_dict().items():
        if "position_embeddings" in name:  # rows before position 0 are not ours to keep (pad row is zero)
            tensor = tensor[PAD + 1:]
            name_again = again.state_dict()[name][PAD + 1:]
        else:
            name_again = again.state_dict()[name]
        assert torch.equal(tensor, name_again), name


@pytest.mark.parametrize("embedding_size", [16, 32])
def test_electra_generator_both_ways(tmp_path, embedding_size):
    hf = _electra("ElectraForMaskedLM", embedding_size)
    hf.save_pretrained(tmp_path / "hf")
    ids, mask = _batch()
    ref = hf(input_ids=ids, attention_mask=mask).logits
    ours = load_model(tmp_path / "hf")
    assert isinstance(ours, EncoderForPretraining)
    assert ours.config.embedding_size == (None if embedding_size == 32 else embedding_size)
    _close(ours.mlm_logits(ours.encoder(ids, mask).last_hidden_state), ref, mask)
    save_model(ours, tmp_path / "ours")
    export_hf(tmp_path / "ours", tmp_path / "back", hf_type="electra")
    again = transformers.ElectraForMaskedLM.from_pretrained(tmp_path / "back").eval()
    _close(again(input_ids=ids, attention_mask=mask).logits, ref, mask)


def test_electra_discriminator_both_ways(tmp_path):
    hf = _electra("ElectraForPreTraining")
    hf.save_pretrained(tmp_path / "hf")
    ids, mask = _batch()
    ref = hf(input_ids=ids, attention_mask=mask).logits
    ours = load_model(tmp_path / "hf")
    assert isinstance(ours, EncoderForTokenDetection)
    out = ours(ids, mask, labels=(ids % 2))
    _close(out["logits"], ref, mask)
    assert torch.isfinite(out["loss"])
    save_model(ours, tmp_path / "ours")
    export_hf(tmp_path / "ours", tmp_path / "back")  # auto: a discriminator is ELECTRA
    again = transformers.AutoModelForPreTraining.from_pretrained(tmp_path / "back").eval()
    assert type(again).__name__ == "ElectraForPreTraining"
    _close(again(input_ids=ids, attention_mask=mask).logits, ref, mask)
    classifier = load_model(tmp_path / "ours", head="classification", num_labels=2)  # what fine-tuning builds
    assert isinstance(classifier, EncoderForSequenceClassification)
    _close(classifier.encoder(ids, mask).last_hidden_state, ours.encoder(ids, mask).last_hidden_state)


def test_bare_electra_and_roberta_models(tmp_path):
    for name, hf in (("e", _electra("ElectraModel")), ("r", _roberta("RobertaModel"))):
        hf.save_pretrained(tmp_path / name)
        ids, mask = _batch()
        ours = load_model(tmp_path / name)
        assert isinstance(ours, EncoderModel)
        _close(ours(ids, mask).last_hidden_state, hf(input_ids=ids, attention_mask=mask).last_hidden_state, mask)


@pytest.mark.parametrize("make", [
    lambda: transformers.DebertaV2ForMaskedLM(transformers.DebertaV2Config(**_common())),
    lambda: transformers.BertForMaskedLM(transformers.BertConfig(position_embedding_type="relative_key",
                                                                 **_common())),
], ids=["deberta-v2", "bert-relative_key"])
def test_unsupported_families_are_refused_naming_what_is_supported(tmp_path, make):
    make().save_pretrained(tmp_path / "hf")
    with pytest.raises(CheckpointError, match="maskbench imports bert .*roberta.*electra"):
        load_model(tmp_path / "hf")


def test_exports_that_cannot_be_expressed_are_refused(tmp_path):
    config = EncoderConfig(vocab_size=97, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=48,
                           max_positions=24)
    save_model(EncoderForPretraining(config, "nsp"), tmp_path / "nsp")
    with pytest.raises(CheckpointError, match="no NSP head"):
        export_hf(tmp_path / "nsp", tmp_path / "out", hf_type="roberta")
    save_model(EncoderForSequenceClassification(config, 2), tmp_path / "cls")
    with pytest.raises(CheckpointError, match="classification head"):
        export_hf(tmp_path / "cls", tmp_path / "out", hf_type="electra")
    with pytest.raises(CheckpointError, match="exports as bert, not albert"):
        export_hf(tmp_path / "cls", tmp_path / "out", hf_type="albert")
    assert not (tmp_path / "out").exists()


def test_pre_ln_is_not_exported_as_a_post_ln_family(tmp_path):
    config = EncoderConfig(vocab_size=97, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=48,
                           max_positions=24, type_vocab_size=1, pad_id=PAD, norm="pre")
    save_model(EncoderForPretraining(config), tmp_path / "pre")
    with pytest.raises(CheckpointError, match="pre-LN"):
        export_hf(tmp_path / "pre", tmp_path / "out", hf_type="roberta")


def _prelayernorm(cls_name, **kw):
    torch.manual_seed(0)
    hf = getattr(transformers, cls_name)(transformers.RobertaPreLayerNormConfig(type_vocab_size=1, **_common(**kw)))
    with torch.no_grad():  # non-trivial norms, so a norm mapped to the wrong place cannot hide
        for name, p in hf.named_parameters():
            if "LayerNorm" in name or "layer_norm" in name:
                p.uniform_(0.5, 1.5) if name.endswith("weight") else p.uniform_(-0.3, 0.3)
    return hf.eval()


def test_roberta_prelayernorm_imports_as_pre_ln_with_equal_logits(tmp_path):
    """HF's RobertaPreLayerNorm (Wettig et al.'s released models) is our norm = "pre" encoder."""
    hf = _prelayernorm("RobertaPreLayerNormForMaskedLM")
    hf.save_pretrained(tmp_path / "hf")
    ids, mask = _batch()
    ours = load_model(tmp_path / "hf")
    assert ours.config.norm == "pre" and ours.encoder.LayerNorm is not None
    hidden = ours.encoder(ids, mask).last_hidden_state
    _close(ours.mlm_logits(hidden), hf(input_ids=ids, attention_mask=mask).logits, mask)


def test_pre_ln_model_exports_as_roberta_prelayernorm_with_equal_logits(tmp_path):
    config = EncoderConfig(vocab_size=97, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=48,
                           max_positions=24, type_vocab_size=1, pad_id=PAD, norm="pre")
    model = EncoderForPretraining(config, generator=torch.Generator().manual_seed(1)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name and not name.startswith("mlm"):
                p.uniform_(0.5, 1.5) if name.endswith("weight") else p.uniform_(-0.3, 0.3)
    save_model(model, tmp_path / "ours")
    export_hf(tmp_path / "ours", tmp_path / "hf")  # auto: the pre-LN family
    hf = transformers.AutoModelForMaskedLM.from_pretrained(tmp_path / "hf").eval()
    assert type(hf).__name__ == "RobertaPreLayerNormForMaskedLM"
    ids, mask = _batch()
    _close(model.mlm_logits(model.encoder(ids, mask).last_hidden_state), hf(input_ids=ids, attention_mask=mask).logits,
           mask)
    back = load_model(tmp_path / "hf")
    assert back.config.norm == "pre"
    _close(back.mlm_logits(back.encoder(ids, mask).last_hidden_state),
           model.mlm_logits(model.encoder(ids, mask).last_hidden_state), mask)


def test_roberta_prelayernorm_classifier_both_ways(tmp_path):
    hf = _prelayernorm("RobertaPreLayerNormForSequenceClassification", num_labels=3)
    hf.save_pretrained(tmp_path / "hf")
    ids, mask = _batch()
    ours = load_model(tmp_path / "hf")
    _close(ours(ids, mask)["logits"], hf(input_ids=ids, attention_mask=mask).logits)
    save_model(ours, tmp_path / "ours")
    export_hf(tmp_path / "ours", tmp_path / "back")
    again = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "back").eval()
    assert type(again).__name__ == "RobertaPreLayerNormForSequenceClassification"
    _close(again(input_ids=ids, attention_mask=mask).logits, hf(input_ids=ids, attention_mask=mask).logits)


def test_post_ln_model_is_not_exported_as_prelayernorm(tmp_path):
    config = EncoderConfig(vocab_size=97, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=48,
                           max_positions=24, type_vocab_size=1, pad_id=PAD)
    save_model(EncoderForPretraining(config), tmp_path / "post")
    with pytest.raises(CheckpointError, match="post-LN encoder cannot be exported as roberta-prelayernorm"):
        export_hf(tmp_path / "post", tmp_path / "out", hf_type="roberta-prelayernorm")
    assert not (tmp_path / "out").exists()


def _distilbert(cls_name, activation="gelu"):
    torch.manual_seed(0)
    config = transformers.DistilBertConfig(vocab_size=97, dim=32, n_layers=2, n_heads=4, hidden_dim=48,
                                           max_position_embeddings=40, pad_token_id=PAD, activation=activation)
    return getattr(transformers, cls_name)(config).eval()


@pytest.mark.parametrize("activation", ["gelu", "relu"])
def test_distilbert_masked_lm_both_ways(tmp_path, activation):
    hf = _distilbert("DistilBertForMaskedLM", activation)
    hf.save_pretrained(tmp_path / "hf")
    ids, mask = _batch()
    expected = hf(input_ids=ids, attention_mask=mask).logits
    ours = load_model(tmp_path / "hf")
    assert isinstance(ours, EncoderForPretraining) and ours.config.type_vocab_size == 0
    assert ours.config.layer_norm_eps == 1e-12 and ours.config.activation == activation
    _close(ours.mlm_logits(ours.encoder(ids, mask).last_hidden_state), expected, mask)
    import_to_folder(tmp_path / "hf", tmp_path / "ours")
    export_hf(tmp_path / "ours", tmp_path / "back")  # "auto" keeps the family it came from
    again = transformers.AutoModelForMaskedLM.from_pretrained(tmp_path / "back").eval()
    assert type(again).__name__ == "DistilBertForMaskedLM"
    _close(again(input_ids=ids, attention_mask=mask).logits, expected, mask)


def test_our_model_exports_as_distilbert_and_a_bare_distilbert_imports(tmp_path):
    config = EncoderConfig(vocab_size=97, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=48,
                           max_positions=24, type_vocab_size=0, layer_norm_eps=1e-12, pad_id=PAD)
    model = EncoderForPretraining(config, generator=torch.Generator().manual_seed(1)).eval()
    save_model(model, tmp_path / "ours")
    export_hf(tmp_path / "ours", tmp_path / "hf", hf_type="distilbert")
    hf = transformers.AutoModelForMaskedLM.from_pretrained(tmp_path / "hf").eval()
    ids, mask = _batch()
    _close(model.mlm_logits(model.encoder(ids, mask).last_hidden_state), hf(input_ids=ids, attention_mask=mask).logits,
           mask)
    bare = _distilbert("DistilBertModel")
    bare.save_pretrained(tmp_path / "bare")
    ours = load_model(tmp_path / "bare")
    assert isinstance(ours, EncoderModel)
    _close(ours(ids, mask).last_hidden_state, bare(input_ids=ids, attention_mask=mask).last_hidden_state, mask)


def test_what_distilbert_cannot_express_is_refused(tmp_path):
    config = EncoderConfig(vocab_size=97, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=48,
                           max_positions=24)
    save_model(EncoderForPretraining(config), tmp_path / "types")
    with pytest.raises(CheckpointError, match="no token-type embeddings"):
        export_hf(tmp_path / "types", tmp_path / "out", hf_type="distilbert")
    no_types = EncoderConfig(**{**config.__dict__, "type_vocab_size": 0, "layer_norm_eps": 1e-12})
    save_model(EncoderForSequenceClassification(no_types, 2), tmp_path / "cls")
    with pytest.raises(CheckpointError, match="classification head"):
        export_hf(tmp_path / "cls", tmp_path / "out", hf_type="distilbert")
    assert not (tmp_path / "out").exists()
    _distilbert("DistilBertForSequenceClassification").save_pretrained(tmp_path / "hf-cls")
    with pytest.raises(CheckpointError, match="DistilBertForSequenceClassification is not supported"):
        load_model(tmp_path / "hf-cls")
