"""FSDP2 (`distributed.fsdp = true`) on two CPU processes (torchrun, gloo).

It follows the loss curve of one process with the same global batch, writes a final model and checkpoints
in the single-process format (full, unsharded state written by rank 0), resumes its own checkpoints bit for
bit, and its checkpoints and single-process ones resume under the other.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
import torch
from safetensors.torch import load_file

from maskbench.io import read_json, read_jsonl
from maskbench.models import load_model
from maskbench.train import load_pretrain_config, pretrain
from trainkit import PYTHON, subprocess_env, write_config

try:
    from torch.distributed.fsdp import fully_shard  # noqa: F401
except ImportError:  # the project allows torch >= 2.4; FSDP2's public API arrived in 2.6
    pytestmark = pytest.mark.skip(reason="FSDP2 (torch.distributed.fsdp.fully_shard) needs PyTorch >= 2.6")

#: The class name FSDP2 gives the root module: proof that the run was sharded, not DDP.
SHARDED = "FSDPEncoderForPretraining"
TIMING = ("tokens_per_s", "elapsed_s")


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    command = [PYTHON, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "maskbench", "pretrain", *args]
    return subprocess.run(command, env=subprocess_env(), capture_output=True, text=True, timeout=120)


def _records(run, kind):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in read_jsonl(run / "metrics.jsonl")
            if r["kind"] == kind]


def _assert_close_curves(one, other, steps):
    """Same global batch, different reduction order: equal to float rounding (as DDP vs one process)."""
    one = [r for r in _records(one, "train") if r["step"] in steps]
    other = [r for r in _records(other, "train") if r["step"] in steps]
    assert [r["step"] for r in one] == [r["step"] for r in other] == list(steps)
    for a, b in zip(one, other):
        for key in ("loss", "mlm_loss", "grad_norm", "lr"):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), (a["step"], key)
        assert a["mlm_accuracy"] == b["mlm_accuracy"]
        assert a["tokens"] == b["tokens"]


def _tensors(path):
    return load_file(str(path))


def _drop_newest_checkpoint(run):
    """What a crash after step 3's checkpoint leaves for --resume (the later metrics are truncated by it)."""
    shutil.rmtree(run / "checkpoints" / "step-0000006")
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-0000003"]


@pytest.fixture(scope="module")
def runs(tiny_data, tmp_path_factory):
    """One config (no dropout, so one and two processes compute the same function), run alone and sharded.

    A single process ignores `distributed.fsdp`, so the same file serves both.
    """
    root = tmp_path_factory.mktemp("fsdp")
    config = write_config(root / "cfg.toml", tiny_data, model={"dropout": 0.0, "attention_dropout": 0.0},
                          budget={"steps": 6}, batch={"size": 8, "micro_size": 2},
                          checkpoint={"every": 3, "keep": 2, "final": True}, eval={"batches": 2},
                          distributed={"fsdp": True})
    pretrain(load_pretrain_config(config), root / "one")
    sharded = _torchrun("--config", str(config), "--out", str(root / "fsdp"))
    assert sharded.returncode == 0, sharded.stderr[-3000:]
    return {"config": config, "one": root / "one", "fsdp": root / "fsdp", "stderr": sharded.stderr}


def test_fsdp_on_two_processes_matches_one_process(runs):
    one, fsdp = runs["one"], runs["fsdp"]
    assert "2 process(es)" in runs["stderr"] and SHARDED in runs["stderr"]
    # 2 micro-batches per rank and step: the no-sync path of gradient accumulation runs too.
    _assert_close_curves(one, fsdp, range(1, 7))
    eval_one, eval_fsdp = _records(one, "eval")[-1], _records(fsdp, "eval")[-1]
    for key in ("mlm_loss", "ref_mlm_loss"):
        assert eval_one[key] == pytest.approx(eval_fsdp[key], rel=1e-5)

    # The final model: a plain (unsharded) model folder that maskbench's loader reads.
    assert (fsdp / "model" / "model.safetensors").is_file() and (fsdp / "model" / "tokenizer.json").is_file()
    assert read_json(fsdp / "model" / "config.json")["pretrain"] == {"step": 6, "tokens": 6 * 8 * 32}
    model_one, model_fsdp = load_model(one), load_model(fsdp)
    assert type(model_fsdp).__name__ == "EncoderForPretraining"
    state_one, state_fsdp = model_one.state_dict(), model_fsdp.state_dict()
    assert {k: v.shape for k, v in state_one.items()} == {k: v.shape for k, v in state_fsdp.items()}
    torch.testing.assert_close(state_fsdp, state_one)

    # Checkpoints hold the same full state, in the same format (integer parameter ids in the optimiser
    # state, as `optimizer.state_dict()` writes them), as a single-process (or DDP) run's.
    for step in ("step-0000003", "step-0000006"):
        a, b = one / "checkpoints" / step, fsdp / "checkpoints" / step
        for name in ("model.safetensors", "optimizer.safetensors"):
            torch.testing.assert_close(_tensors(b / name), _tensors(a / name), msg=lambda m: f"{step}/{name}: {m}")
        meta_one, meta_fsdp = read_json(a / "optimizer.json"), read_json(b / "optimizer.json")
        assert meta_fsdp["state_keys"] == meta_one["state_keys"]
        assert [g["params"] for g in meta_fsdp["param_groups"]] == [g["params"] for g in meta_one["param_groups"]]
        assert read_json(b / "trainer.json")["world_size"] == 2


def test_fsdp_resumes_its_checkpoint_bit_for_bit(tiny_data, tmp_path):
    """Dropout on, so each rank's RNG state must come back too; gloo's reductions are deterministic, so the
    resumed steps repeat the uninterrupted run's exactly."""
    config = write_config(tmp_path / "cfg.toml", tiny_data, budget={"steps": 6}, batch={"size": 8, "micro_size": 2},
                          checkpoint={"every": 3, "keep": 2}, eval={"every": 2, "batches": 2},
                          distributed={"fsdp": True})
    whole = _torchrun("--config", str(config), "--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr[-3000:]
    run = tmp_path / "resumed"
    shutil.copytree(tmp_path / "whole", run)
    _drop_newest_checkpoint(run)
    resumed = _torchrun("--out", str(run), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "continuing from step 3" in resumed.stderr and SHARDED in resumed.stderr

    assert _records(run, "train") == _records(tmp_path / "whole", "train")
    assert [r["step"] for r in _records(run, "train")] == [1, 2, 3, 4, 5, 6]
    assert _records(run, "eval") == _records(tmp_path / "whole", "eval")
    for name in ("model.safetensors", "optimizer.safetensors", "rng.safetensors"):
        a = _tensors(tmp_path / "whole" / "checkpoints" / "step-0000006" / name)
        b = _tensors(run / "checkpoints" / "step-0000006" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    a, b = load_model(tmp_path / "whole").state_dict(), load_model(run).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoints_move_between_fsdp_and_one_process(runs, tmp_path):
    """An FSDP checkpoint resumes in one process, and a single-process one under FSDP; both continue the
    single-process curve (to float rounding: the reductions differ) and end with its model and optimiser."""
    one = runs["one"]
    reference = one / "checkpoints" / "step-0000006"

    from_fsdp = tmp_path / "from-fsdp"
    shutil.copytree(runs["fsdp"], from_fsdp)
    _drop_newest_checkpoint(from_fsdp)
    pretrain(load_pretrain_config(from_fsdp / "config.toml"), from_fsdp, resume=True)

    from_one = tmp_path / "from-one"
    shutil.copytree(one, from_one)
    _drop_newest_checkpoint(from_one)
    sharded = _torchrun("--out", str(from_one), "--resume")
    assert sharded.returncode == 0, sharded.stderr[-3000:]
    assert "continuing from step 3" in sharded.stderr and SHARDED in sharded.stderr

    for run, world_size in ((from_fsdp, 1), (from_one, 2)):
        _assert_close_curves(one, run, range(4, 7))
        written = run / "checkpoints" / "step-0000006"
        assert read_json(written / "trainer.json")["world_size"] == world_size
        for name in ("model.safetensors", "optimizer.safetensors"):
            torch.testing.assert_close(_tensors(written / name), _tensors(reference / name),
                                       msg=lambda m: f"{run.name}/{name}: {m}")
        torch.testing.assert_close(load_model(run).state_dict(), load_model(one).state_dict())


def test_fsdp_trains_the_encoder_decoder_like_one_process(tiny_data, tmp_path):
    """T5 (span corruption): blocks hold nested ModuleLists, and block 0's position-bias table is looked up
    outside that block's forward; sharded, it follows the single-process curve too."""
    config = write_config(tmp_path / "cfg.toml", tiny_data, model={"size": "t5-tiny", "dropout": 0.0},
                          objective={"name": "span_corruption"}, budget={"steps": 4},
                          batch={"size": 8, "micro_size": 2}, checkpoint={"every": 0, "final": False},
                          eval={"batches": 2}, distributed={"fsdp": True})
    pretrain(load_pretrain_config(config), tmp_path / "one")
    sharded = _torchrun("--config", str(config), "--out", str(tmp_path / "fsdp"))
    assert sharded.returncode == 0, sharded.stderr[-3000:]
    assert "FSDPEncoderDecoderModel" in sharded.stderr
    one, fsdp = _records(tmp_path / "one", "train"), _records(tmp_path / "fsdp", "train")
    assert [r["step"] for r in one] == [r["step"] for r in fsdp] == [1, 2, 3, 4]
    for a, b in zip(one, fsdp):
        for key in ("loss", "grad_norm"):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), (a["step"], key)
    assert _records(tmp_path / "one", "eval")[-1]["loss"] == \
        pytest.approx(_records(tmp_path / "fsdp", "eval")[-1]["loss"], rel=1e-5)
    torch.testing.assert_close(load_model(tmp_path / "fsdp").state_dict(),
                               load_model(tmp_path / "one").state_dict())
