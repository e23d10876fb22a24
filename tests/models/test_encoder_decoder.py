"""T5-style model: variants, causality, padding, generation, attentions."""

from __future__ import annotations

import pytest
import torch

from maskbench.errors import MaskbenchError
from maskbench.models import EncoderDecoderConfig, EncoderDecoderModel
from maskbench.models.encoder_decoder import relative_position_bucket, shift_right


def tiny(**kw):
    base = dict(vocab_size=61, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4, dropout=0.0)
    base.update(kw)
    return EncoderDecoderModel(EncoderDecoderConfig(**base), torch.Generator().manual_seed(0)).eval()


def test_shift_right_starts_with_pad_and_replaces_ignored():
    labels = torch.tensor([[7, 8, 9, -100]])
    assert shift_right(labels, 0).tolist() == [[0, 7, 8, 9]]
    assert shift_right(torch.tensor([[7, -100, -100]]), 0).tolist() == [[0, 7, 0]]


def test_buckets_match_t5_reference_values():
    rel = torch.arange(-200, 201)
    b = relative_position_bucket(rel, True, 32, 128)
    assert b[200].item() == 0 and b[201].item() == 17 and b[199].item() == 1
    assert b.max().item() == 31 and b.min().item() == 0
    causal = relative_position_bucket(rel, False, 32, 128)
    assert causal[200:].eq(0).all() and causal.max().item() == 31


@pytest.mark.parametrize("variant", ["encoder_decoder", "decoder_only"])
def test_decoder_is_causal(variant):
    model = tiny(variant=variant)
    ids = torch.randint(2, 61, (1, 5))
    labels = torch.randint(2, 61, (1, 6))
    a = model(ids, labels=labels)["logits"]
    changed = labels.clone()
    changed[0, 4] = (changed[0, 4] + 1) % 61
    b = model(ids, labels=changed)["logits"]
    assert torch.allclose(a[:, :5], b[:, :5], atol=1e-5)  # position j sees targets < j only
    assert not torch.allclose(a[:, 5], b[:, 5])


@pytest.mark.parametrize("variant", ["encoder_decoder", "decoder_only"])
def test_input_padding_does_not_change_outputs(variant):
    model = tiny(variant=variant)
    ids = torch.randint(2, 61, (1, 5))
    labels = torch.randint(2, 61, (1, 4))
    padded = torch.cat([ids, torch.zeros(1, 3, dtype=torch.long)], 1)
    mask = torch.cat([torch.ones(1, 5), torch.zeros(1, 3)], 1).long()
    a = model(ids, labels=labels)
    b = model(padded, mask, labels=labels)
    assert torch.allclose(a["logits"], b["logits"], atol=1e-5)
    assert a["count"].item() == 4


def test_encoder_only_needs_aligned_labels():
    model = tiny(variant="encoder_only")
    ids = torch.randint(2, 61, (2, 6))
    labels = torch.full_like(ids, -100)
    labels[:, 2] = ids[:, 2]
    out = model(ids, labels=labels)
    assert out["count"].item() == 2 and out["logits"].shape == (2, 6, 61)
    with pytest.raises(MaskbenchError, match="aligned"):
        model(ids, labels=labels[:, :3])
    with pytest.raises(MaskbenchError, match="generate"):
        model.generate(ids)


def test_attentions_for_each_kind():
    model = tiny()
    ids = torch.randint(2, 61, (2, 5))
    out = model(ids, labels=torch.randint(2, 61, (2, 3)), output_attentions=True)
    assert out["encoder_attentions"][0].shape == (2, 4, 5, 5)
    assert out["decoder_attentions"][1].shape == (2, 4, 3, 3)
    assert out["cross_attentions"][0].shape == (2, 4, 3, 5)
    for probs in out["encoder_attentions"] + out["decoder_attentions"] + out["cross_attentions"]:
        assert torch.allclose(probs.sum(-1), torch.ones(probs.shape[:-1]), atol=1e-5)
    assert out["decoder_attentions"][0][0, :, 0, 1:].abs().max() == 0
    plain = model(ids, labels=torch.randint(2, 61, (2, 3)))
    assert "encoder_attentions" not in plain


def test_generation_stops_at_eos_and_pads():
    model = tiny(eos_id=5)
    ids = torch.randint(2, 61, (3, 4))
    out = model.generate(ids, max_new_tokens=6)
    assert out.shape[0] == 3 and out.shape[1] <= 6
    for row in out.tolist():
        if 5 in row:
            assert all(t == 0 for t in row[row.index(5) + 1:])


def test_decoder_only_generation_matches_teacher_forcing():
    model = tiny(variant="decoder_only")
    ids = torch.randint(2, 61, (2, 4))
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    out = model.generate(ids, mask, max_new_tokens=3)
    logits = model(ids, mask, labels=out)["logits"]
    assert torch.equal(logits.argmax(-1), out)


def test_bf16_autocast_backward():
    model = tiny(feed_forward="gated-gelu", tie_word_embeddings=False).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randint(2, 61, (2, 6)), labels=torch.randint(2, 61, (2, 4)))
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and model.shared.weight.grad is not None
