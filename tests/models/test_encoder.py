"""Encoder invariants: sparse head = dense head, sharing shares, attention paths agree, padding is inert."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from maskbench.errors import ConfigError
from maskbench.models import EncoderConfig, EncoderForPretraining, EncoderForSequenceClassification, EncoderModel
from maskbench.models.encoder import SelfAttention


def tiny(**kw) -> EncoderConfig:
    base = dict(vocab_size=101, hidden_size=32, num_layers=3, num_heads=4, intermediate_size=48, max_positions=40,
                dropout=0.0, attention_dropout=0.0)
    base.update(kw)
    return EncoderConfig(**base)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


_MODELS = {f: EncoderForPretraining(tiny(embedding_size=16 if f else None), generator=gen(7)).eval()
           for f in (False, True)}


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), rate=st.floats(0.0, 1.0), factorized=st.booleans())
def test_sparse_mlm_equals_dense_on_labelled_rows(seed, rate, factorized):
    model = _MODELS[factorized]
    g = gen(seed + 1)
    ids = torch.randint(5, 101, (3, 9), generator=g)
    labels = torch.where(torch.rand(3, 9, generator=g) < rate, ids, torch.full_like(ids, -100))
    out = model(input_ids=ids, labels=labels)
    dense = model.mlm_logits(model.encoder(ids).last_hidden_state)
    keep = labels != -100
    if keep.any():
        ref = torch.nn.functional.cross_entropy(dense[keep], labels[keep])
        assert torch.allclose(out["mlm_loss"], ref, atol=1e-5)
        assert out["mlm_correct"].item() == (dense[keep].argmax(-1) == labels[keep]).sum().item()
    else:
        assert out["mlm_loss"].item() == 0.0
    assert out["mlm_count"].item() == int(keep.sum())
    out["loss"].backward()  # a graph exists even with nothing to predict
    model.zero_grad()


@pytest.mark.parametrize("share,n_attention,n_ffn", [("none", 3, 3), ("all", 1, 1), ("attention", 1, 3), ("ffn", 3, 1)])
def test_sharing_stores_each_block_once(share, n_attention, n_ffn):
    model = EncoderModel(tiny(share=share))
    assert len(model.attention) == n_attention and len(model.ffn) == n_ffn
    blocks = [model.layer_blocks(i) for i in range(3)]
    assert (blocks[0][0] is blocks[2][0]) == (n_attention == 1)
    assert (blocks[0][1] is blocks[2][1]) == (n_ffn == 1)
    unshared = sum(p.numel() for p in EncoderModel(tiny()).parameters())
    per_attention = sum(p.numel() for p in model.attention[0].parameters())
    per_ffn = sum(p.numel() for p in model.ffn[0].parameters())
    ours = sum(p.numel() for p in model.parameters())
    assert ours == unshared - (3 - n_attention) * per_attention - (3 - n_ffn) * per_ffn


def test_shared_layer_gets_gradient_from_every_use():
    model = EncoderModel(tiny(share="all", num_layers=4))
    model(torch.randint(5, 101, (2, 6))).last_hidden_state.sum().backward()
    assert model.attention[0].qkv.weight.grad is not None and model.ffn[0].intermediate.weight.grad.abs().sum() > 0


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), pad=st.integers(0, 6))
def test_attention_probabilities_sum_to_one_and_match_sdpa(seed, pad):
    model = EncoderModel(tiny(), gen(seed)).eval()
    ids = torch.randint(5, 101, (2, 8), generator=gen(seed + 1))
    mask = torch.ones_like(ids)
    mask[1, 8 - pad:] = 0
    fast = model(ids, mask)
    slow = model(ids, mask, output_attentions=True, output_qk=True, output_hidden_states=True)
    assert torch.allclose(fast.last_hidden_state, slow.last_hidden_state, atol=1e-5)
    assert len(slow.attentions) == 3 and slow.attentions[0].shape == (2, 4, 8, 8)
    for probs in slow.attentions:
        assert torch.allclose(probs.sum(-1), torch.ones(2, 4, 8), atol=1e-5)
        if pad:
            assert probs[1, :, :, 8 - pad:].abs().max() == 0
    assert slow.queries[0].shape == (2, 4, 8, 8) and slow.keys[2].shape == (2, 4, 8, 8)
    assert len(slow.hidden_states) == 4 and torch.equal(slow.hidden_states[-1], slow.last_hidden_state)
    q, k = slow.queries[0], slow.keys[0]
    recomputed = torch.softmax((q @ k.transpose(-1, -2)) / 8 ** 0.5 + (mask[:, None, None, :] - 1) * 1e9, -1)
    assert torch.allclose(recomputed, slow.attentions[0], atol=1e-5)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), length=st.integers(1, 12), extra=st.integers(1, 10))
def test_padding_does_not_change_unpadded_outputs(seed, length, extra):
    model = EncoderForSequenceClassification(tiny(embedding_size=16, share="attention"), 3, gen(seed)).eval()
    ids = torch.randint(5, 101, (1, length), generator=gen(seed + 1))
    padded = torch.cat([ids, torch.zeros(1, extra, dtype=torch.long)], 1)
    mask = torch.cat([torch.ones(1, length, dtype=torch.long), torch.zeros(1, extra, dtype=torch.long)], 1)
    a = model.encoder(ids).last_hidden_state
    b = model.encoder(padded, mask).last_hidden_state[:, :length]
    assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(model(ids)["logits"], model(padded, mask)["logits"], atol=1e-5)


def test_pretraining_with_sentence_head_and_counts():
    model = EncoderForPretraining(tiny(), "sop", gen())
    ids = torch.randint(5, 101, (4, 10), generator=gen(1))
    labels = torch.full_like(ids, -100)
    labels[:, 3] = ids[:, 3]
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), token_type_ids=torch.zeros_like(ids),
                labels=labels, sentence_label=torch.tensor([0, 1, 1, 0]), word_starts=torch.ones_like(ids).bool())
    assert out["mlm_count"].item() == 4 and out["sentence_count"].item() == 4
    assert torch.allclose(out["loss"], out["mlm_loss"] + out["sentence_loss"])
    out["loss"].backward()
    assert model.sentence.weight.grad is not None


def test_regression_head_uses_mse():
    model = EncoderForSequenceClassification(tiny(), 1, gen())
    out = model(torch.randint(5, 101, (3, 5)), labels=torch.tensor([0.5, 1.0, 4.0]))
    assert out["logits"].shape == (3, 1)
    assert torch.allclose(out["loss"], ((out["logits"].squeeze(-1) - torch.tensor([0.5, 1.0, 4.0])) ** 2).mean())


def test_bf16_autocast_runs_and_stays_close():
    model = EncoderForPretraining(tiny(), generator=gen()).eval()
    ids = torch.randint(5, 101, (2, 12), generator=gen(1))
    labels = torch.where(torch.rand(2, 12, generator=gen(2)) < 0.3, ids, torch.full_like(ids, -100))
    labels[0, 0] = ids[0, 0]
    ref = model(input_ids=ids, labels=labels)["loss"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(input_ids=ids, labels=labels)
    out["loss"].backward()
    assert out["loss"].dtype == torch.float32
    assert abs(out["loss"].item() - ref.item()) < 0.05


def test_initialisation_is_seeded_and_bert_like():
    a, b = EncoderModel(tiny(), gen(3)), EncoderModel(tiny(), gen(3))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    w = EncoderModel(tiny(hidden_size=64, intermediate_size=256), gen(4)).ffn[0].intermediate.weight
    assert abs(w.std().item() - 0.02) < 0.002 and a.attention[0].qkv.bias.abs().max() == 0
    assert a.embeddings.word_embeddings.weight[0].abs().max() == 0  # padding row


def test_weight_names_allow_decay_exclusion():
    names = [n for n, _ in EncoderForPretraining(tiny(embedding_size=16)).named_parameters()]
    no_decay = [n for n in names if "LayerNorm" in n or n.endswith("bias")]
    assert "encoder.embeddings.LayerNorm.weight" in no_decay and "mlm.bias" in no_decay
    assert "encoder.attention.0.qkv.weight" in names and "encoder.embeddings.projection.weight" in names


@pytest.mark.parametrize("kw,key", [(dict(hidden_size=30), "num_heads"), (dict(share="some"), "share"),
                                    (dict(dropout=1.0), "dropout"), (dict(activation="tanh"), "activation")])
def test_config_rejects_bad_values(kw, key):
    with pytest.raises(ConfigError) as e:
        tiny(**kw)
    assert e.value.key == key


def test_too_long_input_is_a_one_line_error():
    with pytest.raises(ConfigError, match="max_positions"):
        EncoderModel(tiny())(torch.zeros(1, 41, dtype=torch.long))


def test_fused_qkv_equals_separate_projections():
    attention = SelfAttention(tiny()).eval()
    x = torch.randn(2, 5, 32, generator=gen(5))
    _, _, q, k = attention(x, None, explicit=True)
    wq = attention.qkv.weight[:32]
    bq = attention.qkv.bias[:32]
    assert torch.allclose(q, (x @ wq.T + bq).view(2, 5, 4, 8).transpose(1, 2), atol=1e-6)
    assert k.shape == q.shape
