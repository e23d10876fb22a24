"""L2-SP's gradient, Mixout's expectation and eval identity, re-initialised top layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from maskbench.errors import ConfigError
from maskbench.finetune.child_tuning import pretrained_parameters
from maskbench.finetune.regularizers import L2SP, Mixout, apply_mixout, reinit_top_layers, remove_mixout
from maskbench.models.encoder import EncoderConfig
from maskbench.models.heads import EncoderForSequenceClassification


def tiny_model(share: str = "none") -> EncoderForSequenceClassification:
    config = EncoderConfig(vocab_size=50, hidden_size=16, num_layers=3, num_heads=2, intermediate_size=32,
                           max_positions=16, share=share)
    return EncoderForSequenceClassification(config, 3, torch.Generator().manual_seed(0))


def test_l2sp_gradient_is_alpha_times_distance_to_start_plus_head_decay():
    model = tiny_model()
    head = {f"classifier.{n}": p for n, p in model.classifier.named_parameters()}
    reg = L2SP(pretrained_parameters(model), head, alpha=0.3, head_alpha=0.05)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    model.zero_grad(set_to_none=True)
    reg.apply()
    for name, p in model.named_parameters():
        expected = 0.05 * p.detach() if name.startswith("classifier") else 0.3 * (p.detach() - start[name])
        assert torch.allclose(p.grad, expected, atol=1e-7), name


def test_l2sp_gradient_matches_autograd_of_the_penalty():
    model = tiny_model()
    params = pretrained_parameters(model)
    reg = L2SP(params, {}, alpha=0.7, head_alpha=0.0)
    with torch.no_grad():
        params["encoder.pooler.weight"].add_(1.0)
    penalty = 0.7 / 2 * sum(((p - s) ** 2).sum() for p, s in zip(reg.params, reg.start))
    grads = torch.autograd.grad(penalty, reg.params)
    model.zero_grad(set_to_none=True)
    reg.apply()
    for p, g in zip(reg.params, grads):
        assert torch.allclose(p.grad, g, atol=1e-6)
    assert abs(reg.penalty() - float(penalty.detach())) < 1e-4


def test_mixout_expectation_is_the_current_weight():
    start = torch.randn(64, 64)
    weight = start + torch.randn(64, 64)
    mix = Mixout(start, 0.7, torch.Generator().manual_seed(0)).train()
    mean = torch.stack([mix(weight) for _ in range(3000)]).mean(0)
    # each entry averages 3000 draws of a two-point variable with spread |w - w0| / (1 - p)
    assert torch.allclose(mean, weight, atol=0.25)
    assert abs(float((mean - weight).mean())) < 0.01


def test_mixout_values_are_the_two_rescaled_points():
    start = torch.zeros(1000)
    weight = torch.ones(1000)
    out = Mixout(start, 0.9, torch.Generator().manual_seed(0)).train()(weight)
    values = torch.unique(out)
    assert len(values) == 2 and values[0] == 0.0 and values[1] == pytest.approx(10.0)
    assert abs(float((out != 0).float().mean()) - 0.1) < 0.04


def test_mixout_is_exact_at_eval_and_removal_restores_plain_parameters():
    model = tiny_model()
    names = [n for n, _ in model.named_parameters()]
    batch = {"input_ids": torch.randint(5, 50, (2, 7)), "attention_mask": torch.ones(2, 7, dtype=torch.long)}
    model.eval()
    before = model(**batch)["logits"]
    count = apply_mixout(model, 0.9, torch.Generator().manual_seed(0))
    assert count == len([m for m in model.modules() if isinstance(m, nn.Linear)])
    assert torch.equal(model(**batch)["logits"], before)
    model.train()
    assert not torch.equal(model.encoder.pooler.weight, model.encoder.pooler.parametrizations.weight.original)
    remove_mixout(model)
    assert sorted(n for n, _ in model.named_parameters()) == sorted(names)


def test_reinit_top_layers_changes_only_the_top_layers():
    model = tiny_model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    reinit_top_layers(model, 1, torch.Generator().manual_seed(5))
    for name, p in model.named_parameters():
        changed = not torch.equal(p, before[name])
        top = name.startswith(("encoder.attention.2.", "encoder.ffn.2."))
        if "weight" in name and "LayerNorm" not in name:
            assert changed == top, name


def test_reinit_refuses_shared_layers():
    with pytest.raises(ConfigError, match="sharing"):
        reinit_top_layers(tiny_model("all"), 1, torch.Generator())
