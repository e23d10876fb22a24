"""Static-shape MLM (a fixed number of predicted rows, cramming's rule) equals the dynamic path, and the
encoder's training forward/backward compiles as one graph (`fullgraph=True`): no graph breaks."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from maskbench.errors import ConfigError
from maskbench.models.encoder import EncoderConfig
from maskbench.models.encoder_decoder import EncoderDecoderConfig, EncoderDecoderModel
from maskbench.models.heads import EncoderForPretraining, prediction_capacity

IGNORE = -100
TINY = dict(vocab_size=97, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, max_positions=32,
            dropout=0.0, attention_dropout=0.0)


def batch(rows: int, length: int, rate: float, seed: int, padded: bool = True) -> dict:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 97, (rows, length), generator=g)
    attention = torch.ones_like(ids)
    if padded:
        attention[-1, length // 2:] = 0
    labels = torch.where(torch.rand(rows, length, generator=g) < rate, ids, IGNORE)
    labels[attention == 0] = IGNORE
    return {"input_ids": ids, "attention_mask": attention, "labels": labels,
            "sentence_label": torch.randint(0, 2, (rows,), generator=g)}


def pair(sentence=None, share="none", norm="post"):
    config = EncoderConfig(**TINY, share=share, norm=norm)
    dynamic = EncoderForPretraining(config, sentence_task=sentence, generator=torch.Generator().manual_seed(0))
    static = EncoderForPretraining(config, sentence_task=sentence, generator=torch.Generator().manual_seed(0),
                                   static_predictions=0.5)
    return dynamic, static


@pytest.mark.parametrize("sentence", [None, "nsp"])
@pytest.mark.parametrize("share,norm", [("none", "post"), ("all", "post"), ("none", "pre")])
def test_static_predictions_give_the_dynamic_loss_counts_and_gradients(sentence, share, norm):
    dynamic, static = pair(sentence, share, norm)
    data = batch(4, 24, 0.3, seed=1)
    results = []
    for model in (dynamic, static):
        out = model(**data)
        out["loss"].backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((out, grads))
    (a, ga), (b, gb) = results
    for key in ("loss", "mlm_loss", "mlm_correct", "mlm_count") + (("sentence_loss",) if sentence else ()):
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6)
    for name, grad in ga.items():
        torch.testing.assert_close(gb.get(name, torch.zeros_like(grad)), grad, rtol=1e-4, atol=1e-6, msg=name)


@settings(max_examples=20, deadline=None)
@given(rows=st.integers(1, 4), length=st.integers(2, 20), rate=st.floats(0.0, 0.5), seed=st.integers(0, 999))
def test_static_loss_equals_dynamic_for_any_count_up_to_the_capacity(rows, length, rate, seed):
    dynamic, static = pair()
    data = batch(rows, length, rate, seed, padded=False)
    found = int((data["labels"] != IGNORE).sum())
    if found > prediction_capacity(0.5, rows, length):
        return
    a, b = dynamic(**data), static(**data)
    torch.testing.assert_close(b["mlm_loss"], a["mlm_loss"], rtol=1e-5, atol=1e-6)
    assert int(b["mlm_count"]) == found == int(a["mlm_count"])
    assert torch.isfinite(b["loss"])


def test_capacity_is_cramming_count_rounded_up():
    assert prediction_capacity(0.15, 32, 128) == math.ceil(0.15 * 32 * 128) == 615
    assert prediction_capacity(0.5, 2, 3) == 3
    assert prediction_capacity(1e-6, 1, 4) == 1


def test_more_labelled_rows_than_the_capacity_is_refused():
    _, static = pair()
    data = batch(2, 10, 0.9, seed=0, padded=False)
    with pytest.raises(ConfigError, match="model.static_predictions"):
        static(**data)


def test_static_predictions_out_of_range_is_refused():
    with pytest.raises(ConfigError, match="static_predictions"):
        EncoderForPretraining(EncoderConfig(**TINY), static_predictions=1.5)


def _compiled_train_step(model, data):
    """The trainer's use of the compiler: the model's forward as one graph; AOTAutograd derives the backward
    graph from it."""
    torch._dynamo.reset()
    out = torch.compile(model, fullgraph=True, backend="aot_eager")(**data)
    out["loss"].backward()
    return out["loss"].detach(), out["mlm_count"]


@pytest.mark.slow
def test_encoder_training_step_compiles_without_graph_breaks():
    _, static = pair("sop")
    data = batch(2, 16, 0.3, seed=3)
    loss, count = _compiled_train_step(static, data)
    reference = EncoderForPretraining(static.config, sentence_task="sop", static_predictions=0.5)
    reference.load_state_dict(static.state_dict())
    assert torch.allclose(loss, reference(**data)["loss"], rtol=1e-5, atol=1e-6)
    assert int(count) == int((data["labels"] != IGNORE).sum())


@pytest.mark.slow
def test_dynamic_path_breaks_the_graph_the_static_path_does_not():
    dynamic, static = pair()
    data = batch(2, 16, 0.3, seed=3)
    torch._dynamo.reset()
    assert torch._dynamo.explain(dynamic)(**data).graph_break_count > 0
    torch._dynamo.reset()
    assert torch._dynamo.explain(static)(**data).graph_break_count == 0


@pytest.mark.slow
def test_t5_training_step_compiles_without_graph_breaks():
    config = EncoderDecoderConfig(vocab_size=97, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                                  dropout=0.0, eos_id=1)
    model = EncoderDecoderModel(config, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    data = {"input_ids": torch.randint(2, 97, (2, 12), generator=g), "attention_mask": torch.ones(2, 12, dtype=torch.long),
            "labels": torch.randint(2, 97, (2, 5), generator=g)}

    torch._dynamo.reset()
    out = torch.compile(model, fullgraph=True, backend="aot_eager")(**data)
    out["loss"].backward()
    loss = out["loss"].detach()
    assert torch.allclose(loss, model(**data)["loss"], rtol=1e-5, atol=1e-6)
