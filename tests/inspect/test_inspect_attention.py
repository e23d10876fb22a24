"""Attention extraction from real maskbench models: shapes, probabilities, and an exact rebuild from q and k."""

from __future__ import annotations

import numpy as np
import pytest

from maskbench.errors import MaskbenchError
from maskbench.inspect import AttentionData, AttentionSet, attention


def _rebuild(s: AttentionSet) -> np.ndarray:
    scores = np.einsum("lhqd,lhkd->lhqk", s.queries, s.keys) * s.scale
    if s.bias is not None:
        scores = scores + s.bias[None]
    if s.allowed is not None:
        scores = np.where(s.allowed, scores, -np.inf)
    p = np.exp(scores - scores.max(-1, keepdims=True))
    return p / p.sum(-1, keepdims=True)


@pytest.fixture(scope="module")
def encoder(encoder_dir):
    from maskbench.models import load_model

    return load_model(encoder_dir)


def test_encoder_attention_with_a_pair(encoder, tokenizer):
    data = attention(encoder, tokenizer, "the cat sat", pair="a dog ran")
    s = data["encoder"]
    n = len(s.query_tokens)
    assert s.query_tokens[0] == "[CLS]" and s.query_tokens.count("[SEP]") == 2
    assert s.attention.shape == (2, 4, n, n) and s.queries.shape == (2, 4, n, 8)
    assert np.allclose(s.attention.sum(-1), 1, atol=1e-5)
    assert s.query_segments.tolist() == [0] * (s.query_tokens.index("[SEP]") + 1) + [1] * (n - s.query_tokens.index("[SEP]") - 1)
    assert s.scale == pytest.approx(8 ** -0.5)
    assert np.abs(_rebuild(s) - s.attention).max() < 1e-5


def test_albert_style_encoder_and_truncation(encoder_dir_b, tokenizer):
    from maskbench.models import load_model

    data = attention(load_model(encoder_dir_b), tokenizer, "the cat sat on the mat " * 20, pair="a dog " * 20,
                     max_length=24)
    s = data["encoder"]
    assert len(s.query_tokens) == 24 and "ALBERT" in data.subtitle
    assert np.abs(_rebuild(s) - s.attention).max() < 1e-5


def test_encoder_decoder_gives_three_exactly_rebuilt_attentions(t5_dir, tokenizer):
    from maskbench.models import load_model

    model = load_model(t5_dir)
    data = attention(model, tokenizer, "the cat sat on the mat .", pair="a dog ran")
    assert data.names == ["encoder", "decoder", "cross"]
    enc, dec, cross = data.sets
    assert cross.query_tokens == dec.query_tokens and cross.key_tokens == enc.key_tokens
    assert dec.query_tokens[0] == "[PAD]" and dec.allowed[0, 1:].sum() == 0
    for s in data.sets:
        assert np.abs(_rebuild(s) - s.attention).max() < 1e-5, s.name
    generated = attention(model, tokenizer, "the cat sat", qk=False)   # decoder reads the model's own output
    assert generated["decoder"].queries is None and len(generated["decoder"].query_tokens) >= 1


@pytest.mark.parametrize("variant", ["decoder_only", "encoder_only"])
def test_other_t5_variants(variant, tokenizer):
    import torch

    from maskbench.models import EncoderDecoderConfig, EncoderDecoderModel

    cfg = EncoderDecoderConfig(vocab_size=200, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=4, eos_id=3,
                               variant=variant)
    model = EncoderDecoderModel(cfg, torch.Generator().manual_seed(0)).eval()
    data = attention(model, tokenizer, "the cat sat", pair="a dog" if variant == "decoder_only" else None)
    (s,) = data.sets
    assert np.abs(_rebuild(s) - s.attention).max() < 1e-5
    if variant == "decoder_only":
        assert s.query_segments.max() == 1 and s.allowed[0, :3].all()   # prefix LM: inputs see each other


def test_bad_inputs_fail_in_one_line(encoder, tokenizer):
    with pytest.raises(MaskbenchError, match="non-empty text"):
        attention(encoder, tokenizer, "  ")
    with pytest.raises(MaskbenchError, match="cannot extract attention from a Linear"):
        import torch

        attention(torch.nn.Linear(2, 2), tokenizer, "hi")
    with pytest.raises(MaskbenchError, match="attention is 3x3 but there are 2 query"):
        AttentionSet("x", np.ones((1, 1, 3, 3)) / 3, ["a", "b"], ["a", "b", "c"])
    with pytest.raises(MaskbenchError, match="unique"):
        s = AttentionSet("x", np.ones((1, 1, 2, 2)) / 2, ["a", "b"], ["a", "b"])
        AttentionData([s, s])
