"""A run killed with SIGKILL at a random step and resumed writes the same losses, bit for bit."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time

from maskbench.io import read_jsonl
from trainkit import PYTHON, subprocess_env, write_config, run_cli


def _train_losses(run):
    return [(r["step"], r["loss"], r["mlm_loss"], r["mlm_accuracy"], r["lr"], r["grad_norm"])
            for r in read_jsonl(run / "metrics.jsonl") if r["kind"] == "train"]


def test_sigkill_at_a_random_step_then_resume_is_bit_identical(tiny_data, tmp_path):
    steps, every = 24, 5
    config = write_config(tmp_path / "cfg.toml", tiny_data, budget={"steps": steps},
                          checkpoint={"every": every, "keep": 2}, batch={"size": 8, "micro_size": 4},
                          objective={"name": "mlm", "mask_rate": 0.3}, eval={"every": 10, "batches": 1})
    reference = run_cli(["pretrain", "--config", str(config), "--out", str(tmp_path / "whole")])
    assert reference.returncode == 0, reference.stderr

    kill_after = random.Random().randint(every + 1, steps - 4)  # at least one checkpoint exists by then
    run = tmp_path / "killed"
    process = subprocess.Popen([PYTHON, "-m", "maskbench", "pretrain", "--config", str(config), "--out", str(run)],
                               env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = run / "metrics.jsonl"
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline:
            if metrics.exists() and len(read_jsonl(metrics)) >= kill_after:
                break
            time.sleep(0.005)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL
    written = len([r for r in read_jsonl(metrics) if r["kind"] == "train"])
    assert written < steps, "the run finished before it could be killed"

    resumed = run_cli(["pretrain", "--out", str(run), "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stderr
    assert _train_losses(run) == _train_losses(tmp_path / "whole")
    evals = lambda r: [x for x in read_jsonl(r / "metrics.jsonl") if x["kind"] == "eval"]  # noqa: E731
    assert evals(run) == evals(tmp_path / "whole")


def test_resume_skips_a_corrupted_newest_checkpoint_and_still_matches(tiny_data, tmp_path):
    config = write_config(tmp_path / "cfg.toml", tiny_data, budget={"steps": 9}, checkpoint={"every": 3, "keep": 3})
    whole = run_cli(["pretrain", "--config", str(config), "--out", str(tmp_path / "whole")])
    assert whole.returncode == 0, whole.stderr
    short = run_cli(["pretrain", "--config", str(config), "--out", str(tmp_path / "run"), "--set", "budget.steps=7",
                     "--set", "checkpoint.final=false"])
    assert short.returncode == 0, short.stderr
    newest = tmp_path / "run" / "checkpoints" / "step-0000006" / "model.safetensors"
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0x01
    newest.write_bytes(bytes(data))
    resumed = run_cli(["pretrain", "--config", str(config), "--out", str(tmp_path / "run"), "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    assert "skipping corrupted checkpoint step-0000006" in resumed.stderr
    assert "step 3" in resumed.stderr
    assert _train_losses(tmp_path / "run") == _train_losses(tmp_path / "whole")
