"""The GPU speed switches against the default path, on the CPU: `qkv_layout` changes no number (bit for bit),
`autocast_residual` changes only rounding under autocast (and nothing without it), the float32 cross-entropy
without a cast equals the cast one, T5's `fused_norm` equals the written-out RMSNorm; every switch compiles as
one graph and lets gradients reach every parameter."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from maskbench.errors import ConfigError
from maskbench.models.encoder import EncoderConfig, EncoderModel
from maskbench.models.encoder_decoder import EncoderDecoderConfig, EncoderDecoderModel, RMSNorm
from maskbench.models.heads import EncoderForPretraining
from maskbench.models.loss import cross_entropy
from maskbench.train.loop import build_model

IGNORE = -100
TINY = dict(vocab_size=97, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, max_positions=32,
            dropout=0.0, attention_dropout=0.0)
TINY_T5 = dict(vocab_size=97, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, dropout=0.0, eos_id=1)


def mlm_batch(rows=4, length=24, seed=1, padded=True):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 97, (rows, length), generator=g)
    attention = torch.ones_like(ids)
    if padded:
        attention[-1, length // 2:] = 0
    labels = torch.where(torch.rand(rows, length, generator=g) < 0.3, ids, IGNORE)
    labels[attention == 0] = IGNORE
    return {"input_ids": ids, "attention_mask": attention, "labels": labels,
            "sentence_label": torch.randint(0, 2, (rows,), generator=g)}


def model(static=0.5, sentence=None, **switches):
    return EncoderForPretraining(EncoderConfig(**TINY, **switches), sentence_task=sentence,
                                 generator=torch.Generator().manual_seed(0), static_predictions=static)


def loss_and_grads(m, data, bf16=False):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = m(**data)
    out["loss"].backward()
    return out["loss"].detach(), {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("static", [0.5, None])  # static rows, and the dynamic sparse last layer
@pytest.mark.parametrize("norm,sentence", [("post", None), ("pre", "nsp")])
def test_qkv_layouts_give_the_same_loss_and_gradients_bit_for_bit(static, norm, sentence):
    data = mlm_batch()
    loss_t, grads_t = loss_and_grads(model(static, sentence, norm=norm, qkv_layout="tokens"), data)
    loss_h, grads_h = loss_and_grads(model(static, sentence, norm=norm, qkv_layout="heads"), data)
    assert torch.equal(loss_t, loss_h)
    assert grads_t.keys() == grads_h.keys()
    for name in grads_t:
        assert torch.equal(grads_t[name], grads_h[name]), name


def _backward_ops(layout: str) -> dict[str, int]:
    encoder = EncoderModel(EncoderConfig(**TINY, qkv_layout=layout), torch.Generator().manual_seed(0))
    total = encoder(mlm_batch()["input_ids"]).last_hidden_state.sum()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        total.backward()
    return {e.key: e.count for e in prof.key_averages()}


def test_tokens_layout_backward_makes_one_copy_fewer_per_layer():
    """The "heads" layout's stacked dQ/dK/dV must be copied back to [B, L, 3H] (one clone per layer, the
    `elementwise_kernel` of the H200 profile); the "tokens" layout stacks straight into it."""
    tokens, heads = _backward_ops("tokens"), _backward_ops("heads")
    assert heads.get("aten::clone", 0) - tokens.get("aten::clone", 0) == TINY["num_layers"]
    assert tokens.get("aten::stack") == heads.get("aten::stack") == TINY["num_layers"]


def test_qkv_layouts_give_the_same_attentions_and_queries():
    data = mlm_batch()
    outs = []
    for layout in ("tokens", "heads"):
        encoder = EncoderModel(EncoderConfig(**TINY, qkv_layout=layout), torch.Generator().manual_seed(0))
        outs.append(encoder(data["input_ids"], data["attention_mask"], output_attentions=True, output_qk=True))
    for field in ("last_hidden_state", "attentions", "queries", "keys"):
        a, b = getattr(outs[0], field), getattr(outs[1], field)
        for x, y in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
            assert torch.equal(x, y), field


def test_autocast_residual_changes_nothing_without_autocast():
    data = mlm_batch()
    loss_a, grads_a = loss_and_grads(model(), data)
    loss_b, grads_b = loss_and_grads(model(autocast_residual=True), data)
    assert torch.equal(loss_a, loss_b)
    for name in grads_a:
        assert torch.equal(grads_a[name], grads_b[name]), name


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_autocast_residual_keeps_the_stream_in_bf16_within_bf16_rounding_of_the_default(norm):
    data = mlm_batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain = EncoderModel(EncoderConfig(**TINY, norm=norm), torch.Generator().manual_seed(0))(data["input_ids"])
        low = EncoderModel(EncoderConfig(**TINY, norm=norm, autocast_residual=True),
                           torch.Generator().manual_seed(0))(data["input_ids"])
    assert plain.last_hidden_state.dtype == torch.float32
    assert low.last_hidden_state.dtype == torch.bfloat16
    # bf16 keeps 8 significant bits: a unit-variance stream differs by a few hundredths at most
    torch.testing.assert_close(low.last_hidden_state.float(), plain.last_hidden_state, rtol=0, atol=0.1)

    loss_a, grads_a = loss_and_grads(model(norm=norm), data, bf16=True)
    loss_b, grads_b = loss_and_grads(model(norm=norm, autocast_residual=True), data, bf16=True)
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-2, atol=0)
    used = {n for n, _ in model(norm=norm).named_parameters() if "pooler" not in n}  # no sentence head here
    assert grads_b.keys() == grads_a.keys() == used
    for name, grad in grads_a.items():
        assert grads_b[name].dtype == torch.float32 and torch.isfinite(grads_b[name]).all(), name
        cosine = F.cosine_similarity(grads_b[name].flatten(), grad.flatten(), dim=0)
        assert cosine > 0.98, (name, float(cosine))


def test_cross_entropy_without_the_cast_equals_the_cast_one():
    g = torch.Generator().manual_seed(0)
    logits = (3 * torch.randn(64, 500, generator=g)).bfloat16().requires_grad_()
    targets = torch.randint(0, 500, (64,), generator=g)
    targets[::7] = IGNORE
    grads = []
    for fn in (lambda: cross_entropy(logits, targets, reduction="sum"),
               lambda: F.cross_entropy(logits.float(), targets, ignore_index=IGNORE, reduction="sum")):
        logits.grad = None
        loss = fn()
        loss.backward()
        grads.append((loss.detach(), logits.grad.clone()))
    assert grads[0][0].dtype == torch.float32
    assert torch.equal(grads[0][0], grads[1][0])
    assert torch.equal(grads[0][1], grads[1][1])


def test_fused_rms_norm_equals_t5s_rms_norm():
    x = torch.randn(3, 5, 32, generator=torch.Generator().manual_seed(0)).requires_grad_()
    outs = []
    for fused in (False, True):
        norm = RMSNorm(32, 1e-6, fused=fused)
        with torch.no_grad():
            norm.weight.copy_(torch.linspace(0.5, 1.5, 32))
        x.grad = None
        y = norm(x)
        y.pow(2).sum().backward()
        outs.append((y.detach(), x.grad.clone(), norm.weight.grad.clone()))
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_fused_norm_t5_gives_the_same_loss():
    g = torch.Generator().manual_seed(0)
    data = {"input_ids": torch.randint(2, 97, (2, 12), generator=g), "labels": torch.randint(2, 97, (2, 5), generator=g)}
    losses = [EncoderDecoderModel(EncoderDecoderConfig(**TINY_T5, fused_norm=fused),
                                  generator=torch.Generator().manual_seed(0))(**data)["loss"] for fused in (False, True)]
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)


def test_switches_are_model_table_keys_and_bad_values_name_the_key():
    m = build_model({"size": "bert-tiny", "qkv_layout": "heads", "autocast_residual": True}, 97, None, False, 0)
    assert (m.config.qkv_layout, m.config.autocast_residual) == ("heads", True)
    with pytest.raises(ConfigError, match="qkv_layout"):
        build_model({"size": "bert-tiny", "qkv_layout": "sideways"}, 97, None, False, 0)
    with pytest.raises(ConfigError, match="autocast_residual"):
        build_model({"size": "bert-tiny", "autocast_residual": "yes"}, 97, None, False, 0)
    t5 = build_model({"size": "t5-tiny", "fused_norm": True}, 97, None, True, 0)
    assert t5.config.fused_norm and all(n.fused for n in t5.modules() if isinstance(n, RMSNorm))


@pytest.mark.slow
def test_all_switches_compile_as_one_graph_under_autocast():
    """The trainer's compiled bf16 step with every switch on: one graph (fullgraph), the eager loss."""
    data = mlm_batch(2, 16, seed=3)
    m = model(sentence="sop", qkv_layout="tokens", autocast_residual=True)
    torch._dynamo.reset()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = torch.compile(m, fullgraph=True, backend="aot_eager")(**data)
        eager = m(**data)["loss"]
    out["loss"].backward()
    assert all(p.grad is not None for p in m.parameters())
    torch.testing.assert_close(out["loss"].detach(), eager.detach(), rtol=1e-3, atol=1e-3)

    t5 = EncoderDecoderModel(EncoderDecoderConfig(**TINY_T5, fused_norm=True), generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    batch = {"input_ids": torch.randint(2, 97, (2, 12), generator=g), "labels": torch.randint(2, 97, (2, 5), generator=g)}
    torch._dynamo.reset()
    loss = torch.compile(t5, fullgraph=True, backend="aot_eager")(**batch)["loss"]
    loss.backward()
    torch.testing.assert_close(loss.detach(), t5(**batch)["loss"].detach(), rtol=1e-5, atol=1e-6)
