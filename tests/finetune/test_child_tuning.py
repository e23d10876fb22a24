"""Child-Tuning-F/-D: the keep rate and 1/p scaling, the exact top-p_d mask, frozen entries, p = 1 = vanilla."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from maskbench.finetune.child_tuning import (ChildTuningD, ChildTuningF, fisher_information,
                                             pretrained_parameters, top_fraction_masks)
from maskbench.models.encoder import EncoderConfig
from maskbench.models.heads import EncoderForSequenceClassification


def tiny_model(seed: int = 0) -> EncoderForSequenceClassification:
    config = EncoderConfig(vocab_size=60, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32,
                           max_positions=16)
    return EncoderForSequenceClassification(config, 2, torch.Generator().manual_seed(seed))


def batches(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        ids = torch.randint(5, 60, (4, 10), generator=g)
        yield {"input_ids": ids, "attention_mask": torch.ones_like(ids),
               "token_type_ids": torch.zeros_like(ids), "labels": torch.randint(0, 2, (4,), generator=g)}


def train(model, steps: int, hook=None, weight_decay: float = 0.01, seed: int = 0):
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=weight_decay, foreach=True)
    attached = hook(optimizer) if hook else None
    model.train()
    for batch in batches(steps, seed):
        model(**batch)["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if attached is not None:
        attached.remove()
    return model


def test_f_keeps_entries_with_probability_p_and_scales_by_inverse_p():
    p = 0.3
    param = nn.Parameter(torch.zeros(200_000))
    optimizer = torch.optim.SGD([param], lr=0.0)
    ChildTuningF(optimizer, p, 0)
    param.grad = torch.full_like(param, 2.0)
    optimizer.step()
    grad = param.grad
    kept = grad != 0
    rate = kept.float().mean().item()
    # binomial std of the rate is sqrt(p(1-p)/n) ~ 0.001: 5 sigma
    assert abs(rate - p) < 5 * math.sqrt(p * (1 - p) / grad.numel())
    assert torch.allclose(grad[kept], torch.tensor(2.0 / p))
    assert abs(grad.mean().item() - 2.0) < 0.05  # unbiased


def test_f_masks_embedding_rows_present_in_the_batch_at_the_same_rate():
    p = 0.25
    weight = nn.Parameter(torch.zeros(1000, 64))
    optimizer = torch.optim.SGD([weight], lr=0.0)
    ChildTuningF(optimizer, p, 1, row_sparse=[weight])
    grad = torch.zeros(1000, 64)
    rows = torch.arange(0, 1000, 2)
    grad[rows] = 1.0
    weight.grad = grad.clone()
    optimizer.step()
    assert torch.all(weight.grad[1::2] == 0)
    kept = weight.grad[rows] != 0
    assert abs(kept.float().mean().item() - p) < 5 * math.sqrt(p * (1 - p) / kept.numel())
    assert torch.allclose(weight.grad[rows][kept], torch.tensor(1 / p))


def test_f_masks_differ_between_steps():
    param = nn.Parameter(torch.zeros(1000))
    optimizer = torch.optim.SGD([param], lr=0.0)
    ChildTuningF(optimizer, 0.5, 0)
    masks = []
    for _ in range(2):
        param.grad = torch.ones(1000)
        optimizer.step()
        masks.append(param.grad != 0)
    assert not torch.equal(masks[0], masks[1])


def reference_percentile_masks(gradient_mask: dict, reserve_p: float) -> tuple[dict, float]:
    """Port of the thresholding in AliceMind's `ChildTuningDtrainer.calculate_fisher` (ChildTuningD.py)."""
    r = None
    for k, v in gradient_mask.items():
        v = v.view(-1).cpu().numpy()
        r = v if r is None else np.append(r, v)
    polar = np.percentile(r, (1 - reserve_p) * 100)
    return {k: gradient_mask[k] >= polar for k in gradient_mask}, polar


def reference_calculate_fisher(model, batches: list, max_grad_norm: float, reserve_p: float):
    """Port of AliceMind's `calculate_fisher`: train mode, per-parameter clipping, Σ grad² / N over
    names containing 'layer', then the global percentile. Returns (Fisher by name, masks by name)."""
    gradient_mask = {}
    model.train()
    for name, params in model.named_parameters():
        if "layer" in name:
            gradient_mask[params] = params.new_zeros(params.size())
    N = len(batches)
    for inputs in batches:
        loss = model(**inputs)["loss"]
        loss.backward()
        for name, params in model.named_parameters():
            if "layer" in name:
                torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
                gradient_mask[params] += (params.grad ** 2) / N
        model.zero_grad()
    names = {p: n for n, p in model.named_parameters()}
    fisher = {names[p]: v.clone() for p, v in gradient_mask.items()}
    masks, _ = reference_percentile_masks(gradient_mask, reserve_p)
    return fisher, {names[p]: m for p, m in masks.items()}


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(1, 40), min_size=1, max_size=5), fraction=st.floats(0.01, 1.0),
       seed=st.integers(0, 10_000), ties=st.booleans())
def test_d_mask_is_the_reference_global_percentile(sizes, fraction, seed, ties):
    g = torch.Generator().manual_seed(seed)
    scores = {f"t{i}": (torch.randint(0, 4, (n,), generator=g).float() if ties else torch.rand(n, generator=g))
              for i, n in enumerate(sizes)}
    masks, stats = top_fraction_masks(scores, fraction)
    expected, polar = reference_percentile_masks(dict(scores), fraction)
    for name in scores:
        assert torch.equal(masks[name], expected[name]), name
    flat_scores = torch.cat([scores[k] for k in scores])
    flat_masks = torch.cat([masks[k] for k in scores])
    assert int(flat_masks.sum()) == stats["kept"] and stats["threshold"] == pytest.approx(float(polar))
    if not flat_masks.all():  # every kept score >= every dropped score: one global ranking
        assert flat_scores[flat_masks].min() > flat_scores[~flat_masks].max()
    # about the top fraction: at least ceil((N - 1)·p) entries reach the interpolated percentile
    assert int(flat_masks.sum()) >= math.floor((flat_scores.numel() - 1) * fraction)


@pytest.mark.parametrize("num_labels", [2, 1])
def test_fisher_and_mask_match_the_official_calculate_fisher_on_the_same_bert(num_labels):
    """Our model and its Hugging Face BERT export, same weights and batches: the official function on the
    HF model (names containing 'layer', per-tensor clipping of query/key/value) equals ours on the
    'layers' scope (fused qkv clipped per part), and so does the mask."""
    transformers = pytest.importorskip("transformers")
    from maskbench.finetune.child_tuning import clip_parts
    from maskbench.models.hf import _export_encoder
    from maskbench.models.hf_import import _encoder_pairs

    config = EncoderConfig(vocab_size=60, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32,
                           max_positions=16, dropout=0.0, attention_dropout=0.0)
    model = EncoderForSequenceClassification(config, num_labels, torch.Generator().manual_seed(3))
    hf_model, hf_state, _ = _export_encoder(model, transformers)
    hf_model.load_state_dict(hf_state)
    data = list(batches(4, seed=5))
    if num_labels == 1:
        for b in data:
            b["labels"] = b["labels"].float() * 2.5
    ref_fisher, ref_masks = reference_calculate_fisher(hf_model, data, 3e-5, 0.3)
    params = pretrained_parameters(model, "layers")
    ours = fisher_information(model, iter(data), params, len(data), clip=3e-5)
    masks, _ = top_fraction_masks(ours, 0.3)
    pairs = _encoder_pairs("bert", 2, 2, 2, False)
    compared = 0
    for mine, theirs in pairs:
        name = f"encoder.{mine}"
        theirs = theirs if isinstance(theirs, tuple) else (theirs,)
        if not all("layer" in t for t in theirs):
            assert name not in params  # embeddings and pooler are never ranked
            continue
        assert len(theirs) == clip_parts(name)
        expected = torch.cat([ref_fisher[t] for t in theirs])
        assert torch.allclose(ours[name], expected, rtol=1e-3, atol=1e-20), name
        compared += 1
    assert compared == len(params) and set(ref_fisher) == {t for _, th in pairs for t in
                                                            (th if isinstance(th, tuple) else (th,)) if "layer" in t}
    # the same rule on the same scores gives the same mask (the scores differ by float rounding only)
    hf_named = {f"encoder.{m}": th for m, th in pairs}
    by_hf = {}
    for name, score in ours.items():
        theirs = hf_named[name]
        parts = score.chunk(len(theirs), 0) if isinstance(theirs, tuple) else (score,)
        for t, part in zip(theirs if isinstance(theirs, tuple) else (theirs,), parts):
            by_hf[t] = part
    ref_on_ours, _ = reference_percentile_masks(by_hf, 0.3)
    for name, mask in masks.items():
        theirs = hf_named[name]
        theirs = theirs if isinstance(theirs, tuple) else (theirs,)
        assert torch.equal(mask, torch.cat([ref_on_ours[t] for t in theirs])), name


def test_fisher_runs_in_train_mode_with_seeded_dropout():
    model = tiny_model()
    params = pretrained_parameters(model, "layers")
    data = list(batches(2))
    a = fisher_information(model, iter(data), params, 2, clip=1.0, seed=1)
    b = fisher_information(model, iter(data), params, 2, clip=1.0, seed=1)
    c = fisher_information(model, iter(data), params, 2, clip=1.0, seed=2)
    no_dropout = fisher_information(model, iter(data), params, 2, clip=1.0, train_mode=False)
    name = "encoder.ffn.0.output.weight"
    assert torch.equal(a[name], b[name])
    assert not torch.equal(a[name], c[name]) and not torch.equal(a[name], no_dropout[name])
    state = torch.get_rng_state()
    fisher_information(model, iter(data), params, 2, clip=1.0, seed=3)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's random stream is untouched


def test_fisher_is_mean_squared_clipped_gradient_of_the_loss():
    model = tiny_model()
    params = pretrained_parameters(model)
    data = list(batches(3))
    fisher = fisher_information(model, iter(data), params, 3, clip=None, train_mode=False)
    name = "encoder.pooler.weight"
    expected = torch.zeros_like(params[name])
    model.eval()
    for batch in data:
        model.zero_grad()
        model(**batch)["loss"].backward()
        expected += params[name].grad ** 2 / 3
    assert torch.allclose(fisher[name], expected, rtol=1e-5, atol=1e-12)
    assert not any(n.startswith("classifier") for n in fisher)


def test_fisher_scope_layers_is_the_default_and_leaves_out_embeddings_and_pooler():
    from maskbench.finetune.config import ChildTuningConfig

    assert ChildTuningConfig().fisher_scope == "layers" and ChildTuningConfig().fisher_per_seed
    names = pretrained_parameters(tiny_model(), "layers")
    every = pretrained_parameters(tiny_model(), "network")
    assert names and all(n.startswith(("encoder.attention.", "encoder.ffn.")) for n in names)
    assert set(every) - set(names) == {n for n in every if n.startswith(("encoder.embeddings.", "encoder.pooler."))}


def _d_hook(model, fraction):
    params = pretrained_parameters(model)
    scores = {n: torch.rand(p.shape, generator=torch.Generator().manual_seed(7)) for n, p in params.items()}
    masks, _ = top_fraction_masks(scores, fraction)
    return {params[n]: m for n, m in masks.items()}


def test_d_parameters_outside_the_mask_are_bit_identical_after_training():
    model = tiny_model()
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    masks = _d_hook(model, 0.3)
    train(model, 5, hook=lambda opt: ChildTuningD(opt, masks), weight_decay=0.1)
    named = dict(model.named_parameters())
    moved_inside = 0
    for name, param in named.items():
        mask = masks.get(param)
        if mask is None:  # the task head is always updated
            assert name.startswith("classifier")
            continue
        outside = ~mask
        assert torch.equal(param.detach()[outside], start[name][outside]), name
        moved_inside += int((param.detach()[mask] != start[name][mask]).sum())
    assert moved_inside > 0
    assert not torch.equal(named["classifier.weight"], start["classifier.weight"])


@pytest.mark.parametrize("variant", ["f", "d"])
def test_p_equal_one_is_exactly_vanilla(variant):
    vanilla = train(tiny_model(), 4)
    child = tiny_model()
    if variant == "f":
        hook = lambda opt: ChildTuningF(opt, 1.0, 0)  # noqa: E731
    else:
        masks = _d_hook(child, 1.0)
        hook = lambda opt: ChildTuningD(opt, masks)  # noqa: E731
    train(child, 4, hook=hook)
    for (name, a), b in zip(vanilla.state_dict().items(), child.state_dict().values()):
        assert torch.equal(a, b), name


def test_f_with_p_below_one_changes_training():
    vanilla = train(tiny_model(), 3)
    child = train(tiny_model(), 3, hook=lambda opt: ChildTuningF(opt, 0.3, 0))
    assert not torch.equal(vanilla.encoder.pooler.weight, child.encoder.pooler.weight)
