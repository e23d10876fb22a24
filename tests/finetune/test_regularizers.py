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


def reference_mixout(weight: torch.Tensor, target: torch.Tensor, p: float, noise_row: torch.Tensor):
    """Port of the `mixout` package's `Mixout.forward`/`backward` (mixout/mixout.py) for a training step,
    with the Bernoulli(1 − p) draw `noise_row` given instead of drawn: returns (output, backward)."""
    noise = weight.new_empty(weight.shape)
    if len(noise.size()) == 1:
        noise = noise_row.clone()
    else:
        noise[0] = noise_row
        noise = noise[0].repeat(weight.size()[0], *([1] * (len(weight.size()) - 1)))
    output = ((1 - noise) * target + noise * weight - p * target) / (1 - p)
    return output, lambda grad_output: grad_output * noise


@pytest.mark.parametrize("exact_gradient", [False, True])
def test_mixout_matches_the_reference_mixlinear_values_and_gradient(exact_gradient):
    """The mask drops whole input units (one draw per column, shared by every output row), the values
    equal the reference formula for that draw, and the gradient is the reference's grad·M (or M/(1−p))."""
    p = 0.6
    g = torch.Generator().manual_seed(1)
    start = torch.randn(7, 40, generator=g)
    weight = (start + torch.randn(7, 40, generator=g)).requires_grad_(True)
    mix = Mixout(start, p, torch.Generator().manual_seed(2), exact_gradient=exact_gradient).train()
    out = mix(weight)
    kept_value = (weight.detach() - p * start) / (1 - p)
    column_kept = torch.isclose(out.detach(), kept_value).all(dim=0)
    column_dropped = torch.isclose(out.detach(), start).all(dim=0)
    assert bool((column_kept ^ column_dropped).all())  # every column is wholly kept or wholly swapped
    assert 0 < int(column_kept.sum()) < 40
    expected, backward = reference_mixout(weight.detach(), start, p, column_kept.float())
    assert torch.allclose(out.detach(), expected, atol=1e-6)
    upstream = torch.randn(7, 40, generator=g)
    (grad,) = torch.autograd.grad(out, weight, upstream)
    reference_grad = backward(upstream)
    assert torch.allclose(grad, reference_grad / (1 - p) if exact_gradient else reference_grad, atol=1e-6)


def test_mixout_turns_dropout_off_unless_kept():
    config = EncoderConfig(vocab_size=50, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32,
                           max_positions=16, dropout=0.1, attention_dropout=0.1)
    model = EncoderForSequenceClassification(config, 2, torch.Generator().manual_seed(0))
    apply_mixout(model, 0.9, torch.Generator().manual_seed(0))
    drops = [m.p for m in model.modules() if isinstance(m, nn.Dropout)]
    attention = [m.attention_dropout for m in model.modules() if hasattr(m, "attention_dropout")]
    assert drops and set(drops) == {0.0} and attention and set(attention) == {0.0}
    kept = EncoderForSequenceClassification(config, 2, torch.Generator().manual_seed(0))
    apply_mixout(kept, 0.9, torch.Generator().manual_seed(0), keep_dropout=True)
    assert {m.p for m in kept.modules() if isinstance(m, nn.Dropout)} == {0.1}


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
