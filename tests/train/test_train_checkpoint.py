"""Checkpoint folders: exact state round trips, atomic writes, pruning, corrupted ones skipped by name."""

from __future__ import annotations

import errno
import json

import pytest
import torch

from maskbench.errors import CheckpointError
from maskbench.train import checkpoint as ckpt
from maskbench.train.optim import Lamb


def _model_and_optimizer(kind: str):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    if kind == "lamb":
        optimizer = Lamb(model.parameters(), lr=0.01)
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.01, betas=(0.9, 0.98), fused=kind == "fused")
    for _ in range(2):
        model(torch.randn(5, 4)).pow(2).sum().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return model, optimizer


@pytest.mark.parametrize("kind", ["fused", "foreach", "lamb"])
def test_optimizer_state_round_trips_exactly(kind):
    _, optimizer = _model_and_optimizer(kind)
    state = optimizer.state_dict()
    tensors, meta = ckpt.split_optimizer_state(state)
    again = ckpt.join_optimizer_state(tensors, json.loads(json.dumps(meta)))
    assert again["param_groups"] == state["param_groups"]
    assert set(again["state"]) == set(state["state"])
    for key, entries in state["state"].items():
        for name, value in entries.items():
            assert torch.equal(again["state"][key][name], value)


def _payload(step: int, model, optimizer) -> ckpt.CheckpointPayload:
    from safetensors.torch import save_file

    def write_model(folder):
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))

    return ckpt.CheckpointPayload(
        step=step, write_model=write_model, optimizer_state=optimizer.state_dict(),
        scheduler_state={"step": step},
        train_state={"trainer": {"step": step}, "rng": {"rank0.torch_cpu": torch.get_rng_state()},
                     "python_rng": ckpt.python_rng_state()},
        config_toml="seed = 0\n")


def test_write_read_and_keep_last_k(tmp_path):
    model, optimizer = _model_and_optimizer("foreach")
    for step in (5, 10, 15):
        ckpt.write_checkpoint(tmp_path, _payload(step, model, optimizer), keep=2)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [10, 15]
    latest = ckpt.latest_valid_checkpoint(tmp_path)
    assert latest.name == "step-0000015"
    loaded = ckpt.read_checkpoint(latest)
    assert loaded.step == 15
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.model_state[name], tensor)
    assert torch.equal(loaded.train_state["rng"]["rank0.torch_cpu"], torch.get_rng_state())


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "manifest"])
def test_a_corrupted_checkpoint_is_skipped_with_a_warning_naming_it(tmp_path, damage):
    model, optimizer = _model_and_optimizer("foreach")
    for step in (1, 2):
        ckpt.write_checkpoint(tmp_path, _payload(step, model, optimizer), keep=3)
    newest = tmp_path / "step-0000002"
    target = newest / "optimizer.safetensors"
    if damage == "flip":
        data = bytearray(target.read_bytes())
        data[-1] ^= 0xFF
        target.write_bytes(bytes(data))
    elif damage == "truncate":
        target.write_bytes(target.read_bytes()[:10])
    elif damage == "delete":
        target.unlink()
    else:
        (newest / "manifest.json").unlink()
    warnings = []
    assert ckpt.latest_valid_checkpoint(tmp_path, warn=warnings.append) == tmp_path / "step-0000001"
    assert len(warnings) == 1 and "step-0000002" in warnings[0]


def test_a_crash_while_writing_leaves_no_checkpoint_that_looks_valid(tmp_path):
    model, optimizer = _model_and_optimizer("foreach")
    ckpt.write_checkpoint(tmp_path, _payload(1, model, optimizer), keep=3)
    payload = _payload(2, model, optimizer)

    def crash(folder):
        (folder / "model.safetensors").write_bytes(b"partial")
        raise KeyboardInterrupt  # stands for the process dying mid-write

    payload.write_model = crash
    with pytest.raises(KeyboardInterrupt):
        ckpt.write_checkpoint(tmp_path, payload, keep=3)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [1]
    assert ckpt.latest_valid_checkpoint(tmp_path).name == "step-0000001"


def test_a_full_disk_is_one_clear_error_and_keeps_earlier_checkpoints(tmp_path):
    model, optimizer = _model_and_optimizer("foreach")
    ckpt.write_checkpoint(tmp_path, _payload(1, model, optimizer), keep=3)
    payload = _payload(2, model, optimizer)

    def full(folder):
        raise OSError(errno.ENOSPC, "No space left on device")

    payload.write_model = full
    with pytest.raises(CheckpointError, match="disk is full.*earlier checkpoints are intact") as info:
        ckpt.write_checkpoint(tmp_path, payload, keep=3)
    assert "\n" not in str(info.value)
    assert ckpt.latest_valid_checkpoint(tmp_path).name == "step-0000001"
    assert not list(tmp_path.glob(".step-*"))


def test_python_and_numpy_rng_states_round_trip():
    import random

    import numpy as np

    state = json.loads(json.dumps(ckpt.python_rng_state()))
    expected = (random.random(), np.random.random())
    ckpt.restore_python_rng_state(state)
    assert (random.random(), np.random.random()) == expected
