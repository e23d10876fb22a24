"""Two CPU processes (torchrun, gloo) follow the loss curve of one process with the same global batch."""

from __future__ import annotations

import subprocess

import pytest

from maskbench.io import read_jsonl
from maskbench.train import load_pretrain_config, pretrain
from trainkit import PYTHON, subprocess_env, write_config


def _records(run, kind):
    return [r for r in read_jsonl(run / "metrics.jsonl") if r["kind"] == kind]


def test_two_processes_match_one_with_the_same_global_batch(tiny_data, tmp_path):
    config = write_config(tmp_path / "cfg.toml", tiny_data, model={"dropout": 0.0, "attention_dropout": 0.0},
                          budget={"steps": 5}, batch={"size": 8, "micro_size": 2},
                          checkpoint={"every": 0, "final": True}, eval={"batches": 2})
    pretrain(load_pretrain_config(config), tmp_path / "one")
    command = [PYTHON, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "maskbench", "pretrain", "--config", str(config), "--out", str(tmp_path / "two")]
    double = subprocess.run(command, env=subprocess_env(), capture_output=True, text=True, timeout=180)
    assert double.returncode == 0, double.stderr[-3000:]
    assert "2 process(es)" in double.stderr
    one, two = _records(tmp_path / "one", "train"), _records(tmp_path / "two", "train")
    assert [r["step"] for r in one] == [r["step"] for r in two] == [1, 2, 3, 4, 5]
    for a, b in zip(one, two):
        for key in ("loss", "mlm_loss", "grad_norm"):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), (a["step"], key)
        assert a["mlm_accuracy"] == b["mlm_accuracy"]
        assert a["tokens"] == b["tokens"]
    eval_one, eval_two = _records(tmp_path / "one", "eval")[-1], _records(tmp_path / "two", "eval")[-1]
    for key in ("mlm_loss", "ref_mlm_loss"):
        assert eval_one[key] == pytest.approx(eval_two[key], rel=1e-5)
    assert (tmp_path / "two" / "model" / "model.safetensors").is_file()
    assert not (tmp_path / "two" / "checkpoints" / "step-0000005" / "manifest.json").read_text() == ""
