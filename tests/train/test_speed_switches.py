"""The trainer's GPU-speed switches on the CPU: static predicted-row counts train like the dynamic path,
`deterministic = true` turns deterministic kernels on, unpadded batches reach the model without a mask,
`compile_mode` reaches the compiler, and the model's speed switches are config keys."""

from __future__ import annotations

import os

import pytest
import torch

from maskbench.errors import ConfigError
from maskbench.train import pretrain, read_metrics
from maskbench.train.evaluate import to_device
from maskbench.train.loop import Trainer
from trainkit import TINY_MODEL, tiny_config

NO_DROPOUT = {"dropout": 0.0, "attention_dropout": 0.0}


def test_static_predictions_train_like_the_dynamic_path(tiny_data, tmp_path):
    losses = {}
    for name, extra in (("dynamic", {}), ("static", {"static_predictions": 0.15})):
        config = tiny_config(tiny_data, model={**NO_DROPOUT, **extra}, objective={"name": "mlm", "mask_rate": 0.15},
                             budget={"steps": 4}, eval={"at_end": False})
        pretrain(config, tmp_path / name)
        losses[name] = [(r["loss"], r["mlm_accuracy"]) for r in read_metrics(tmp_path / name)]
    assert len(losses["static"]) == 4
    for (a, acc_a), (b, acc_b) in zip(losses["dynamic"], losses["static"]):
        assert b == pytest.approx(a, rel=1e-5)
        assert acc_b == acc_a


def test_a_static_capacity_below_the_masking_rate_is_refused(tiny_data, tmp_path):
    config = tiny_config(tiny_data, model={"static_predictions": 0.05}, objective={"name": "mlm", "mask_rate": 0.3},
                         budget={"steps": 1})
    with pytest.raises(ConfigError, match="model.static_predictions"):
        pretrain(config, tmp_path / "run")


def test_static_predictions_need_an_encoder(tiny_data, tmp_path):
    config = tiny_config(tiny_data, model={"size": "t5-tiny", "static_predictions": 0.15},
                         objective={"name": "span_corruption"}, budget={"steps": 1})
    with pytest.raises(ConfigError, match="model.static_predictions"):
        pretrain(config, tmp_path / "run")


def test_deterministic_knob_turns_deterministic_kernels_on(tiny_data, tmp_path, monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic
    try:
        pretrain(tiny_config(tiny_data, deterministic=True, budget={"steps": 2}), tmp_path / "run")
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.deterministic = before[1]
    assert len(read_metrics(tmp_path / "run")) == 2


def test_an_unpadded_batch_reaches_the_model_without_a_mask():
    full = {"input_ids": torch.ones(2, 4, dtype=torch.long), "attention_mask": torch.ones(2, 4, dtype=torch.long)}
    padded = {**full, "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])}
    keys = ("input_ids", "attention_mask")
    assert set(to_device(full, keys, torch.device("cpu"))) == {"input_ids"}
    assert torch.equal(to_device(padded, keys, torch.device("cpu"))["attention_mask"], padded["attention_mask"])


def test_compile_mode_reaches_torch_compile_and_is_checked(tiny_data, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "compile", lambda model, **kwargs: calls.append(kwargs) or model)
    for mode, expected in (("default", None), ("reduce-overhead", "reduce-overhead")):
        config = tiny_config(tiny_data, compile=True, compile_mode=mode, budget={"steps": 1})
        Trainer.build(config, tmp_path / mode).close()
        assert calls[-1] == {"mode": expected}
    with pytest.raises(ConfigError, match="compile_mode"):
        tiny_config(tiny_data, compile=True, compile_mode="fastest")


def test_model_speed_switches_train_from_the_config(tiny_data, tmp_path):
    """`model.qkv_layout` gives the same run bit for bit; `model.autocast_residual` changes nothing in float32."""
    runs = {}
    for name, extra in (("default", {}), ("heads", {"qkv_layout": "heads"}), ("residual", {"autocast_residual": True})):
        pretrain(tiny_config(tiny_data, model={**TINY_MODEL, **extra}, budget={"steps": 3}, eval={"at_end": False}),
                 tmp_path / name)
        runs[name] = [r["loss"] for r in read_metrics(tmp_path / name)]
    assert len(runs["default"]) == 3
    assert runs["heads"] == runs["default"] == runs["residual"]
