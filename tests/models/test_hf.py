"""Hugging Face interop: random tiny HF models imported, ours exported, logits compared (≤ 1e-5, float32)."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from maskbench.errors import CheckpointError  # noqa: E402
from maskbench.models import (EncoderConfig, EncoderDecoderConfig, EncoderDecoderModel,  # noqa: E402
                              EncoderForPretraining, EncoderForSequenceClassification, load_model, save_model)
from maskbench.models.hf import export_hf, import_to_folder  # noqa: E402

TOL = 1e-5


def _batch(vocab=97, b=3, length=11, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (b, length), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 4:] = 0
    types = torch.zeros_like(ids)
    types[:, 5:] = 1
    return ids, mask, types


def _bert_config(**kw):
    return dict(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
                max_position_embeddings=64, **kw)


def _close(a, b, mask=None):
    if mask is not None:
        a, b = a[mask.bool()], b[mask.bool()]
    assert (a - b).abs().max().item() <= TOL


@pytest.mark.parametrize("kind", ["bert", "albert"])
def test_import_masked_lm_matches_hf(tmp_path, kind):
    torch.manual_seed(0)
    if kind == "bert":
        hf = transformers.BertForPreTraining(transformers.BertConfig(**_bert_config()))
    else:
        hf = transformers.AlbertForPreTraining(transformers.AlbertConfig(embedding_size=16, hidden_act="gelu_new",
                                                                         **_bert_config()))
    hf.eval().save_pretrained(tmp_path / "hf")
    ids, mask, types = _batch()
    ref = hf(input_ids=ids, attention_mask=mask, token_type_ids=types)
    ours = load_model(tmp_path / "hf")
    assert isinstance(ours, EncoderForPretraining)
    assert ours.config.share == ("all" if kind == "albert" else "none")
    out = ours.encoder(ids, mask, types)
    _close(ours.mlm_logits(out.last_hidden_state), ref.prediction_logits, mask)
    _close(ours.sentence(out.pooled), ref[1 if kind == "bert" else 1])


@pytest.mark.parametrize("kind", ["bert", "albert"])
def test_export_loads_in_hf_and_matches(tmp_path, kind):
    if kind == "bert":
        config = EncoderConfig(vocab_size=97, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=48,
                               max_positions=64)
    else:
        config = EncoderConfig(vocab_size=97, hidden_size=32, num_layers=3, num_heads=4, intermediate_size=48,
                               max_positions=64, embedding_size=16, share="all", activation="gelu_new")
    model = EncoderForPretraining(config, "sop", generator=torch.Generator().manual_seed(1)).eval()
    save_model(model, tmp_path / "ours")
    export_hf(tmp_path / "ours", tmp_path / "hf")
    hf_pre = getattr(transformers, ("Bert" if kind == "bert" else "Albert") + "ForPreTraining").from_pretrained(
        tmp_path / "hf").eval()
    ids, mask, types = _batch()
    out = model.encoder(ids, mask, types)
    ref = hf_pre(input_ids=ids, attention_mask=mask, token_type_ids=types)
    _close(model.mlm_logits(out.last_hidden_state), ref.prediction_logits, mask)
    _close(model.sentence(out.pooled), ref[1])
    mlm = transformers.AutoModelForMaskedLM.from_pretrained(tmp_path / "hf").eval()
    _close(model.mlm_logits(out.last_hidden_state), mlm(input_ids=ids, attention_mask=mask, token_type_ids=types).logits, mask)


def test_albert_unshared_factorized_round_trips(tmp_path):
    config = EncoderConfig(vocab_size=97, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=48,
                           max_positions=64, embedding_size=8)
    model = EncoderForPretraining(config).eval()
    save_model(model, tmp_path / "ours")
    export_hf(tmp_path / "ours", tmp_path / "hf")
    back = load_model(tmp_path / "hf")
    ids, mask, types = _batch()
    a = model.encoder(ids, mask, types).last_hidden_state
    b = back.encoder(ids, mask, types).last_hidden_state
    _close(a, b, mask)


def test_pre_ln_export_as_bert_is_refused_in_one_line(tmp_path):
    config = EncoderConfig(vocab_size=97, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=48, norm="pre")
    save_model(EncoderForPretraining(config), tmp_path / "ours")
    with pytest.raises(CheckpointError, match="pre-LN.*roberta-prelayernorm") as info:
        export_hf(tmp_path / "ours", tmp_path / "hf", hf_type="bert")
    assert "\n" not in str(info.value) and not (tmp_path / "hf").exists()


@pytest.mark.parametrize("share", ["attention", "ffn"])
def test_partial_sharing_is_refused(tmp_path, share):
    config = EncoderConfig(vocab_size=97, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=48,
                           embedding_size=16, share=share)
    save_model(EncoderForPretraining(config), tmp_path / "ours")
    with pytest.raises(CheckpointError, match="cannot be exported"):
        export_hf(tmp_path / "ours", tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_classification_round_trip(tmp_path):
    torch.manual_seed(0)
    hf = transformers.BertForSequenceClassification(transformers.BertConfig(num_labels=3, **_bert_config())).eval()
    hf.save_pretrained(tmp_path / "hf")
    ours = load_model(tmp_path / "hf")
    assert isinstance(ours, EncoderForSequenceClassification) and ours.num_labels == 3
    ids, mask, types = _batch()
    _close(ours(ids, mask, types)["logits"], hf(input_ids=ids, attention_mask=mask, token_type_ids=types).logits)


@pytest.mark.parametrize("ff,tied", [("relu", True), ("gated-gelu", False)])
def test_t5_both_ways(tmp_path, ff, tied):
    torch.manual_seed(0)
    config = transformers.T5Config(vocab_size=97, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_decoder_layers=3,
                                   num_heads=4, feed_forward_proj=ff, tie_word_embeddings=tied, decoder_start_token_id=0)
    config.tie_word_embeddings = tied  # transformers 5 resets it to True; a v1.1 model is untied
    hf = transformers.T5ForConditionalGeneration(config).eval()
    hf.encoder.embed_tokens = hf.decoder.embed_tokens = hf.shared
    hf.save_pretrained(tmp_path / "hf")
    ids, mask, _ = _batch()
    labels = torch.randint(5, 97, (3, 6), generator=torch.Generator().manual_seed(2))
    labels[2, 4:] = -100
    ref = hf(input_ids=ids, attention_mask=mask, labels=labels)
    ours = load_model(tmp_path / "hf")
    assert isinstance(ours, EncoderDecoderModel) and ours.config.feed_forward == ff
    out = ours(ids, mask, labels)
    _close(out["logits"], ref.logits)
    assert abs(out["loss"].item() - ref.loss.item()) <= TOL
    save_model(ours, tmp_path / "ours")
    export_hf(tmp_path / "ours", tmp_path / "back")
    again = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path / "back").eval()
    _close(again(input_ids=ids, attention_mask=mask, labels=labels).logits, ref.logits)


def test_t5_greedy_generation_matches_hf(tmp_path):
    config = EncoderDecoderConfig(vocab_size=97, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4, dropout=0.0)
    model = EncoderDecoderModel(config, torch.Generator().manual_seed(3)).eval()
    save_model(model, tmp_path / "ours")
    export_hf(tmp_path / "ours", tmp_path / "hf")
    hf = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path / "hf").eval()
    ids, mask, _ = _batch()
    ours = model.generate(ids, mask, max_new_tokens=5)
    theirs = hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=5, do_sample=False, num_beams=1,
                         eos_token_id=None, min_new_tokens=5)
    assert torch.equal(ours, theirs[:, 1:])


def test_decoder_only_export_is_refused(tmp_path):
    config = EncoderDecoderConfig(vocab_size=97, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4,
                                  variant="decoder_only")
    save_model(EncoderDecoderModel(config), tmp_path / "ours")
    with pytest.raises(CheckpointError, match="cannot be exported"):
        export_hf(tmp_path / "ours", tmp_path / "hf")


def test_import_folder_copies_tokenizer_and_loads(tmp_path):
    torch.manual_seed(0)
    transformers.BertForMaskedLM(transformers.BertConfig(**_bert_config())).save_pretrained(tmp_path / "hf")
    (tmp_path / "hf" / "vocab.txt").write_text("\n".join(f"t{i}" for i in range(97)))
    import_to_folder(tmp_path / "hf", tmp_path / "run")
    assert (tmp_path / "run" / "vocab.txt").is_file()
    model = load_model(tmp_path / "run", head="classification", num_labels=2)
    assert isinstance(model, EncoderForSequenceClassification)


def test_native_folder_is_refused_by_transformers_naming_maskbench(tmp_path):
    config = EncoderConfig(vocab_size=97, hidden_size=32, num_layers=1, num_heads=4, intermediate_size=48,
                           max_positions=64)
    save_model(EncoderForPretraining(config), tmp_path / "ours")
    with pytest.raises(ValueError, match="maskbench"):
        transformers.AutoModelForMaskedLM.from_pretrained(tmp_path / "ours")
    assert isinstance(load_model(tmp_path / "ours"), EncoderForPretraining)  # still ours to load


def _vocab_tokenizer(folder):
    from maskbench.data.tokenizer import load_tokenizer, save_tokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(92)]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    save_tokenizer(load_tokenizer(folder / "vocab.txt"), folder / "tokenizer.json")
    (folder / "vocab.txt").unlink()


def test_exported_tokenizer_keeps_segment_ids_of_pairs(tmp_path):
    config = EncoderConfig(vocab_size=97, hidden_size=32, num_layers=1, num_heads=4, intermediate_size=48,
                           max_positions=64)
    save_model(EncoderForPretraining(config), tmp_path / "ours")
    _vocab_tokenizer(tmp_path / "ours")
    export_hf(tmp_path / "ours", tmp_path / "hf")
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert "token_type_ids" in tokenizer.model_input_names
    encoded = tokenizer("w1 w2", "w3 w4 w5")
    assert encoded["token_type_ids"] == [0, 0, 0, 0, 1, 1, 1, 1]
