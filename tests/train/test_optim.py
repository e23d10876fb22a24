"""Optimisers and schedules: weight-decay exclusion, LAMB against a per-tensor reference, schedule shapes."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from maskbench.train.config import OptimConfig, ScheduleConfig
from maskbench.train.optim import Lamb, Schedule, build_optimizer, param_groups


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(10, 4)
        self.linear = torch.nn.Linear(4, 4)
        self.LayerNorm = torch.nn.LayerNorm(4)
        self.norm_scale = torch.nn.Parameter(torch.ones(4, 4))


def test_matrices_decay_and_vectors_do_not():
    """nanoGPT's rule: `p.dim() >= 2` decays, whatever the name (a 2-D `norm_scale` decays too)."""
    model = Tiny()
    names = {id(p): n for n, p in model.named_parameters()}
    groups = param_groups(model, 0.01)
    decayed = {names[id(p)] for p in groups[0]["params"]}
    plain = {names[id(p)] for p in groups[1]["params"]}
    assert decayed == {"embed.weight", "linear.weight", "norm_scale"}
    assert plain == {"linear.bias", "LayerNorm.weight", "LayerNorm.bias"}
    assert groups[1]["weight_decay"] == 0.0
    everything = param_groups(model, 0.01, exclude_norm_and_bias=False)
    assert len(everything[0]["params"]) == 6 and not everything[1]["params"]


def bert_no_decay(name: str) -> bool:
    """Google BERT's run_classifier / optimization.py rule, as Hugging Face's examples port it."""
    return any(nd in name for nd in ["bias", "LayerNorm.weight", "LayerNorm.bias"])


@pytest.mark.parametrize("size", ["bert-tiny", "albert-base"])
def test_the_rule_picks_bert_s_set_on_maskbench_encoders(size):
    from maskbench.models import EncoderForPretraining, named_config
    from maskbench.models.heads import EncoderForSequenceClassification

    config = named_config(size, vocab_size=64)
    for model in (EncoderForPretraining(config, sentence_task="sop"), EncoderForSequenceClassification(config, 3)):
        for name, param in model.named_parameters():
            assert (param.dim() < 2) == bert_no_decay(name), name


def test_t5_norms_stay_undecayed_and_its_position_table_decays():
    """T5's norm weights are vectors; its relative-position bias is a table (an embedding), so it decays
    (the name rule would skip it for the word "bias")."""
    from maskbench.models import EncoderDecoderModel, named_config

    model = EncoderDecoderModel(named_config("t5-tiny", vocab_size=64))
    names = {id(p): n for n, p in model.named_parameters()}
    plain = {names[id(p)] for p in param_groups(model, 0.01)[1]["params"]}
    assert plain and all("layer_norm" in n for n in plain)
    assert any("relative_attention_bias" in names[id(p)] for p in param_groups(model, 0.01)[0]["params"])


def test_adamw_is_fused_when_available_on_cpu():
    optimizer = build_optimizer(Tiny(), OptimConfig(), torch.device("cpu"))
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.defaults.get("fused") or optimizer.defaults.get("foreach")
    assert optimizer.param_groups[0]["weight_decay"] == 0.01
    assert optimizer.param_groups[1]["weight_decay"] == 0.0


def reference_lamb_step(w, g, m, v, step, lr, betas, eps, wd, adapt, bias_correction=True):
    """LAMB for one tensor, written out plainly (You et al. 2020, Algorithm 2)."""
    m = betas[0] * m + (1 - betas[0]) * g
    v = betas[1] * v + (1 - betas[1]) * g * g
    m_hat = m / (1 - betas[0] ** step) if bias_correction else m
    v_hat = v / (1 - betas[1] ** step) if bias_correction else v
    update = m_hat / (v_hat.sqrt() + eps) + wd * w
    ratio = 1.0
    if adapt:
        wn, un = w.norm(), update.norm()
        ratio = float(wn / un) if wn > 0 and un > 0 else 1.0
    return w - lr * ratio * update, m, v


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), wd=st.sampled_from([0.0, 0.01, 0.1]), adapt=st.booleans(),
       bias_correction=st.booleans(), steps=st.integers(1, 4))
def test_lamb_matches_the_reference(seed, wd, adapt, bias_correction, steps):
    gen = torch.Generator().manual_seed(seed)
    weights = [torch.randn(5, 3, generator=gen, dtype=torch.float64), torch.randn(7, generator=gen, dtype=torch.float64)]
    params = [torch.nn.Parameter(w.clone()) for w in weights]
    optimizer = Lamb([{"params": params, "weight_decay": wd, "adapt": adapt}], lr=0.01, betas=(0.9, 0.99),
                     eps=1e-6, bias_correction=bias_correction)
    ref = [(w.clone(), torch.zeros_like(w), torch.zeros_like(w)) for w in weights]
    for step in range(1, steps + 1):
        grads = [torch.randn(w.shape, generator=gen, dtype=torch.float64) for w in weights]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        optimizer.step()
        ref = [reference_lamb_step(w, g, m, v, step, 0.01, (0.9, 0.99), 1e-6, wd, adapt, bias_correction)
               for (w, m, v), g in zip(ref, grads)]
    for p, (w, _, _) in zip(params, ref):
        torch.testing.assert_close(p.detach(), w, rtol=1e-10, atol=1e-12)


def test_lamb_trust_ratio_makes_the_step_scale_free():
    """With adaptation the relative change of a tensor does not depend on its gradient's scale."""
    changes = []
    for scale in (1e-3, 1.0, 1e3):
        p = torch.nn.Parameter(torch.full((4,), 2.0))
        p.grad = torch.tensor([1.0, -2.0, 3.0, 0.5]) * scale
        Lamb([p], lr=0.1, weight_decay=0.0).step()
        changes.append((p.detach() - 2.0).norm().item())
    assert changes[0] == pytest.approx(changes[1], rel=1e-4) == pytest.approx(changes[2], rel=1e-4)
    assert changes[1] == pytest.approx(0.1 * 4.0, rel=1e-4)  # lr x ||w||


def test_lamb_state_round_trips_through_state_dict():
    p = torch.nn.Parameter(torch.randn(3, 3))
    opt = Lamb([p], lr=0.1)
    p.grad = torch.randn(3, 3)
    opt.step()
    other = Lamb([torch.nn.Parameter(p.detach().clone())], lr=0.1)
    other.load_state_dict(opt.state_dict())
    assert float(other.state[other.param_groups[0]["params"][0]]["step"]) == 1.0


def test_linear_warmup_then_linear_decay_in_steps():
    schedule = Schedule(ScheduleConfig(warmup_steps=4, decay="linear"), peak_lr=1.0, total_steps=12,
                        total_seconds=None)
    lrs = [schedule.lr(s) for s in range(12)]
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lrs[4] == pytest.approx(1.0)
    assert lrs[-1] == pytest.approx(1 / 8)
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:]))


def test_cosine_reaches_the_floor_and_constant_stays():
    cosine = Schedule(ScheduleConfig(warmup_fraction=0.1, decay="cosine", min_lr_ratio=0.1), 2.0, 100, None)
    assert cosine.warmup_steps == 10
    assert cosine.lr(10) == pytest.approx(2.0)
    assert cosine.lr(55) == pytest.approx(2.0 * (0.1 + 0.9 * 0.5))
    assert cosine.lr(100) == pytest.approx(0.2)
    constant = Schedule(ScheduleConfig(decay="constant"), 3.0, 50, None)
    assert {constant.lr(s) for s in range(50)} == {3.0}


def test_time_schedule_follows_elapsed_time():
    schedule = Schedule(ScheduleConfig(warmup_fraction=0.2, decay="linear"), 1.0, None, total_seconds=100.0)
    assert schedule.by_time
    assert schedule.lr(step=999, elapsed=10.0) == pytest.approx(0.5)
    assert schedule.lr(step=0, elapsed=20.0) == pytest.approx(1.0)
    assert schedule.lr(step=0, elapsed=60.0) == pytest.approx(0.5)
    assert schedule.lr(step=0, elapsed=150.0) == pytest.approx(0.0)


@settings(max_examples=50, deadline=None)
@given(total=st.integers(1, 500), warmup=st.integers(0, 100), decay=st.sampled_from(["linear", "cosine"]),
       floor=st.floats(0, 1))
def test_schedule_stays_between_floor_and_peak(total, warmup, decay, floor):
    schedule = Schedule(ScheduleConfig(warmup_steps=warmup, decay=decay, min_lr_ratio=floor), 1.0, total, None)
    for step in range(total):
        factor = schedule.factor(step)
        assert 0 < factor <= 1.0 + 1e-12
        if step >= schedule.warmup_steps:
            assert factor >= floor - 1e-12
    assert math.isfinite(schedule.factor(total))


def t5_rsqrt_no_ramp_down(step: int, warmup_steps: int = 10_000) -> float:
    """Mesh TensorFlow's `learning_rate_schedules.rsqrt_no_ramp_down`, T5's pretraining schedule."""
    return 1.0 / math.sqrt(max(step, warmup_steps))


@pytest.mark.parametrize("step", [0, 1, 9_999, 10_000, 10_001, 40_000, 262_143, 524_287])
def test_inverse_sqrt_with_t5_settings_is_t5s_schedule(step):
    schedule = Schedule(ScheduleConfig(warmup_steps=10_000, decay="inverse_sqrt"), peak_lr=0.01,
                        total_steps=524_288, total_seconds=None)
    assert schedule.lr(step) == pytest.approx(t5_rsqrt_no_ramp_down(step + 1))


def test_inverse_sqrt_is_flat_then_decays_by_the_square_root():
    schedule = Schedule(ScheduleConfig(warmup_steps=100, decay="inverse_sqrt"), 1.0, 10_000, None)
    assert {schedule.lr(s) for s in range(100)} == {1.0}
    assert schedule.lr(399) == pytest.approx(0.5)
    assert schedule.lr(9_999) == pytest.approx(0.1)


def test_adafactor_is_pytorchs_with_t5s_settings():
    model = Tiny()
    optimizer = build_optimizer(model, OptimConfig(name="adafactor", lr=0.01, weight_decay=0.0), torch.device("cpu"))
    assert type(optimizer) is torch.optim.Adafactor
    for group in optimizer.param_groups:
        assert group["beta2_decay"] == -0.8 and group["d"] == 1.0 and group["eps"] == (None, 1e-3)
        assert group["weight_decay"] == 0.0
    # factored second moments for matrices: a row and a column statistic, no full matrix
    x = torch.randn(3, 4)
    (model.linear(model.LayerNorm(x)).pow(2).sum() + model.embed.weight.sum() + model.norm_scale.sum()).backward()
    before = model.linear.weight.detach().clone()
    optimizer.step()
    state = optimizer.state[model.linear.weight]
    assert state["row_var"].numel() == 4 and state["col_var"].numel() == 4
    assert not torch.equal(before, model.linear.weight)
