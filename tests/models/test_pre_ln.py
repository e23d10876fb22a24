"""The pre-LN encoder (`norm = "pre"`): the pre-LN formula, its final LayerNorm, sharing, checkpoints."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from maskbench.errors import ConfigError
from maskbench.models import EncoderConfig, EncoderForPretraining, EncoderModel, count_parameters, load_model, save_model


def config(**kw) -> EncoderConfig:
    base = dict(vocab_size=61, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32, max_positions=24,
                dropout=0.0, attention_dropout=0.0, norm="pre")
    return EncoderConfig(**(base | kw))


def by_hand(model: EncoderModel, ids: torch.Tensor) -> torch.Tensor:
    """x ← x + Attn(LN1(x)); x ← x + FFN(LN2(x)) per layer, then the final LN (fairseq normalize_before)."""
    x = model.embeddings(ids, None)
    h, heads = model.config.hidden_size, model.config.num_heads
    for i in range(model.config.num_layers):
        attention, ffn = model.layer_blocks(i)
        q, k, v = F.linear(attention.LayerNorm(x), attention.qkv.weight, attention.qkv.bias).split(h, dim=-1)
        split = lambda t: t.view(*t.shape[:2], heads, h // heads).transpose(1, 2)  # noqa: E731
        weights = torch.softmax(split(q) @ split(k).transpose(-1, -2) / (h // heads) ** 0.5, dim=-1)
        context = (weights @ split(v)).transpose(1, 2).reshape(x.shape)
        x = x + attention.output(context)
        x = x + ffn.output(F.gelu(ffn.intermediate(ffn.LayerNorm(x))))
    return model.LayerNorm(x)


@pytest.mark.parametrize("share", ["none", "all"])
def test_pre_ln_follows_the_pre_ln_formula(share):
    model = EncoderModel(config(share=share), generator=torch.Generator().manual_seed(0)).eval()
    with torch.no_grad():  # non-trivial norms, so a misplaced LayerNorm cannot hide
        for m in model.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    ids = torch.randint(5, 61, (3, 11), generator=torch.Generator().manual_seed(1))
    out = model(ids, output_hidden_states=True)
    torch.testing.assert_close(out.last_hidden_state, by_hand(model, ids), rtol=1e-5, atol=1e-5)
    assert torch.equal(out.hidden_states[-1], out.last_hidden_state)  # heads and probes read the normed output
    post = EncoderModel(config(share=share, norm="post"))
    post.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("LayerNorm")})
    assert not torch.allclose(post.eval()(ids).last_hidden_state, out.last_hidden_state, atol=1e-3)


def test_pre_ln_adds_only_the_final_layer_norm():
    post, pre = config(norm="post"), config()
    assert count_parameters(pre).total - count_parameters(post).total == 2 * 16
    shared = EncoderModel(config(share="all", embedding_size=8))
    assert len(shared.attention) == len(shared.ffn) == 1 and shared.LayerNorm is not None
    assert EncoderModel(post).LayerNorm is None


def test_pre_ln_trains_and_round_trips(tmp_path):
    model = EncoderForPretraining(config(), generator=torch.Generator().manual_seed(0))
    ids = torch.randint(5, 61, (4, 12), generator=torch.Generator().manual_seed(2))
    labels = torch.where(torch.rand(4, 12, generator=torch.Generator().manual_seed(3)) < 0.3, ids, -100)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    first = None
    for _ in range(20):
        loss = model(input_ids=ids, labels=labels)["loss"]
        first = first if first is not None else float(loss.detach())
        optimizer.zero_grad()
        loss.backward()
        assert model.encoder.LayerNorm.weight.grad is not None
        optimizer.step()
    assert float(loss.detach()) < first
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.config.norm == "pre"
    model.eval()
    loaded.eval()
    assert torch.equal(model(input_ids=ids, labels=labels)["loss"], loaded(input_ids=ids, labels=labels)["loss"])


def test_norm_must_be_pre_or_post():
    with pytest.raises(ConfigError, match="norm"):
        config(norm="sandwich")
