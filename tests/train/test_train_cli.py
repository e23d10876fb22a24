"""`maskbench pretrain` end to end, and every bad input the issue lists: one line, exit 2, nothing lost."""

from __future__ import annotations

import json

import pytest

from maskbench.cli import main
from trainkit import write_config


def run(capsys, *args):
    code = main(["pretrain", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("maskbench: error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_cli_end_to_end_then_resume_with_a_larger_budget(tiny_data, tmp_path, capsys):
    config = write_config(tmp_path / "cfg.toml", tiny_data, budget={"steps": 3})
    code, out, err = run(capsys, "--config", config, "--out", tmp_path / "run", "--set", "objective.mask_rate=0.4")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["steps"] == 3 and "mlm_loss" in summary["eval"]
    assert "corrupt 40%" in err
    code, out, err = run(capsys, "--out", tmp_path / "run", "--resume", "--set", "budget.steps=5")
    assert code == 0, err
    assert json.loads(out)["steps"] == 5
    assert "resumed from" in err and "step 3" in err


def test_missing_shards(tiny_data, tmp_path, capsys):
    config = write_config(tmp_path / "cfg.toml", tiny_data, data={"shards": str(tmp_path / "nowhere")})
    code, _, err = run(capsys, "--config", config, "--out", tmp_path / "run")
    assert code == 2
    assert "shards folder not found" in error_line(err) and "nowhere" in err
    assert not (tmp_path / "run").exists()


def test_a_shard_file_missing(tiny_data, tmp_path, capsys):
    import shutil

    shards = tmp_path / "shards"
    shutil.copytree(tiny_data["shards"], shards)
    (shards / "train" / "tokens.bin").unlink()
    config = write_config(tmp_path / "cfg.toml", tiny_data, data={"shards": str(shards)})
    code, _, err = run(capsys, "--config", config, "--out", tmp_path / "run")
    assert code == 2 and "tokens.bin is missing" in error_line(err)


def test_tokenizer_that_does_not_match_the_shards(tiny_data, tmp_path, capsys):
    from maskbench.data import train_tokenizer

    other = tmp_path / "other.json"
    train_tokenizer([tiny_data["corpus"]], kind="wordpiece", vocab_size=400, out_path=other)
    config = write_config(tmp_path / "cfg.toml", tiny_data, data={"tokenizer": str(other)})
    code, _, err = run(capsys, "--config", config, "--out", tmp_path / "run")
    assert code == 2 and "does not match the shards" in error_line(err)


def test_model_vocabulary_smaller_than_the_tokenizer(tiny_data, tmp_path, capsys):
    config = write_config(tmp_path / "cfg.toml", tiny_data)
    code, _, err = run(capsys, "--config", config, "--out", tmp_path / "run", "--set", "model.vocab_size=100")
    assert code == 2
    line = error_line(err)
    assert "model.vocab_size" in line and "smaller than the tokenizer" in line


def test_nan_loss_exits_2_with_the_step(tiny_data, tmp_path, capsys):
    config = write_config(tmp_path / "cfg.toml", tiny_data, optim={"lr": 1e30, "grad_clip": 0.0},
                          schedule={"warmup_steps": 0})
    code, _, err = run(capsys, "--config", config, "--out", tmp_path / "run")
    assert code == 2 and "NaN or infinite at step" in error_line(err)
    assert not (tmp_path / "run" / "model").exists()


def test_full_disk_exits_2_and_keeps_the_earlier_checkpoint(tiny_data, tmp_path, capsys, monkeypatch):
    import safetensors.torch
    from safetensors import SafetensorError

    import maskbench.train.checkpoint as ckpt

    config = write_config(tmp_path / "cfg.toml", tiny_data, budget={"steps": 4}, checkpoint={"every": 2, "keep": 3})
    real_save = safetensors.torch.save_file
    calls = {"n": 0}

    def save_file(tensors, path, *args, **kwargs):
        if ".step-0000004" in path:  # what the Rust writer raises when the disk is full
            raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                                  'message: "No space left on device" })')
        calls["n"] += 1
        return real_save(tensors, path, *args, **kwargs)

    monkeypatch.setattr(safetensors.torch, "save_file", save_file)
    code, _, err = run(capsys, "--config", config, "--out", tmp_path / "run")
    assert code == 2 and "disk is full" in error_line(err)
    checkpoints = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-0000002"]
    assert ckpt.verify_checkpoint(checkpoints / "step-0000002") is None


def test_unwritable_output_folder(tiny_data, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    config = write_config(tmp_path / "cfg.toml", tiny_data)
    code, _, err = run(capsys, "--config", config, "--out", blocker / "run")
    assert code == 2 and "cannot write to" in error_line(err)


def test_config_from_an_incompatible_version(tiny_data, tmp_path, capsys):
    config = write_config(tmp_path / "cfg.toml", tiny_data, format_version=7)
    code, _, err = run(capsys, "--config", config, "--out", tmp_path / "run")
    assert code == 2 and "format 7" in error_line(err)


def test_an_existing_run_is_not_overwritten_and_resume_needs_the_same_config(tiny_data, tmp_path, capsys):
    config = write_config(tmp_path / "cfg.toml", tiny_data, budget={"steps": 2})
    assert run(capsys, "--config", config, "--out", tmp_path / "run")[0] == 0
    before = (tmp_path / "run" / "metrics.jsonl").read_text()
    code, _, err = run(capsys, "--config", config, "--out", tmp_path / "run")
    assert code == 2 and "already holds a run" in error_line(err)
    code, _, err = run(capsys, "--config", config, "--out", tmp_path / "run", "--resume",
                       "--set", "objective.mask_rate=0.5")
    assert code == 2 and "objective.mask_rate" in error_line(err)
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == before


@pytest.mark.parametrize("override, key", [("objective.mask_rat=0.4", "objective.mask_rat"),
                                           ("objective.name=mlmm", "objective.name"),
                                           ("model.hiden_size=64", "model.hiden_size"),
                                           ("model.size=bert-tiniest", "model.size")])
def test_typos_in_free_tables_get_did_you_mean(tiny_data, tmp_path, capsys, override, key):
    config = write_config(tmp_path / "cfg.toml", tiny_data)
    code, _, err = run(capsys, "--config", config, "--out", tmp_path / "run", "--set", override)
    assert code == 2
    line = error_line(err)
    assert key in line and "did you mean" in line


# --- run folders: a lock per run, resume that never destroys, a failed start that blocks nothing -----------

_HOLDER = """
import sys
from maskbench.io import run_lock
lock = run_lock(sys.argv[1]).acquire()
print("locked", flush=True)
sys.stdin.read()
"""


def test_a_second_process_cannot_write_a_locked_run_folder(tiny_data, tmp_path, capsys):
    import subprocess
    import sys

    from trainkit import subprocess_env

    config = write_config(tmp_path / "cfg.toml", tiny_data, budget={"steps": 2})
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path / "run")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, env=subprocess_env(), text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        for extra in ([], ["--resume"]):
            code, _, err = run(capsys, "--config", config, "--out", tmp_path / "run", *extra)
            assert code == 2 and f"in use by another maskbench process (pid {holder.pid})" in error_line(err)
        assert not (tmp_path / "run" / "config.toml").exists()
    finally:
        holder.kill()  # the holder crashes: its lock goes with it
        holder.wait()
    assert run(capsys, "--config", config, "--out", tmp_path / "run")[0] == 0


def test_resume_with_every_checkpoint_corrupt_stops_and_keeps_the_model(tiny_data, tmp_path, capsys):
    config = write_config(tmp_path / "cfg.toml", tiny_data, budget={"steps": 4}, checkpoint={"every": 2, "keep": 3})
    assert run(capsys, "--config", config, "--out", tmp_path / "run")[0] == 0
    checkpoints = sorted((tmp_path / "run" / "checkpoints").iterdir())
    assert [p.name for p in checkpoints] == ["step-0000002", "step-0000004"]
    for folder in checkpoints:
        (folder / "trainer.json").write_text("{}")
    model = {p.name: p.read_bytes() for p in (tmp_path / "run" / "model").iterdir()}
    code, _, err = run(capsys, "--out", tmp_path / "run", "--resume", "--set", "budget.steps=6")
    line = error_line(err)
    assert code == 2 and "every checkpoint is corrupt" in line and "step-0000002" in line and "step-0000004" in line
    assert {p.name: p.read_bytes() for p in (tmp_path / "run" / "model").iterdir()} == model
    assert sorted((tmp_path / "run" / "checkpoints").iterdir()) == checkpoints


def test_resume_of_a_finished_run_without_checkpoints_keeps_its_model(tiny_data, tmp_path, capsys):
    config = write_config(tmp_path / "cfg.toml", tiny_data, budget={"steps": 2},
                          checkpoint={"every": 0, "final": False})
    assert run(capsys, "--config", config, "--out", tmp_path / "run")[0] == 0
    weights = (tmp_path / "run" / "model" / "model.safetensors").read_bytes()
    code, _, err = run(capsys, "--out", tmp_path / "run", "--resume", "--set", "budget.steps=4")
    assert code == 2 and "finished and kept no checkpoint" in error_line(err)
    assert (tmp_path / "run" / "model" / "model.safetensors").read_bytes() == weights


def test_resume_says_where_it_continues_or_why_it_starts_over(tiny_data, tmp_path, capsys):
    config = write_config(tmp_path / "cfg.toml", tiny_data, budget={"steps": 2},
                          checkpoint={"every": 5, "final": False})
    assert run(capsys, "--config", config, "--out", tmp_path / "run")[0] == 0
    for name in ("model", "summary.json"):  # as if killed after two steps, before the first checkpoint
        path = tmp_path / "run" / name
        __import__("shutil").rmtree(path) if path.is_dir() else path.unlink()
    code, _, err = run(capsys, "--out", tmp_path / "run", "--resume")
    assert code == 0, err
    assert "no checkpoint" in err and "before its first checkpoint (step 5)" in err and "from step 0" in err


def test_resume_may_lower_the_rate_raise_warm_up_and_clip_and_records_it(tiny_data, tmp_path, capsys):
    config = write_config(tmp_path / "cfg.toml", tiny_data, budget={"steps": 2}, checkpoint={"every": 2})
    assert run(capsys, "--config", config, "--out", tmp_path / "run")[0] == 0
    code, _, err = run(capsys, "--out", tmp_path / "run", "--resume", "--set", "budget.steps=4",
                       "--set", "optim.lr=1e-5", "--set", "optim.grad_clip=0.5", "--set", "schedule.warmup_steps=3")
    assert code == 0, err
    assert "continuing from step 2" in err
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    changed = history[-1]["changed"]
    assert changed["optim.lr"][1] == 1e-5 and changed["optim.grad_clip"][1] == 0.5
    assert changed["schedule.warmup_steps"][1] == 3
    train = [r for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines())
             if r.get("kind") == "train" and r["step"] > 2]
    assert train and all(r["lr"] <= 1e-5 for r in train)


def test_a_run_that_failed_at_start_blocks_neither_a_rerun_nor_resume(tiny_data, tmp_path, capsys, monkeypatch):
    import maskbench.train.loop as loop
    from maskbench.errors import DataError

    config = write_config(tmp_path / "cfg.toml", tiny_data, budget={"steps": 2})
    real = loop.PretrainBatches

    def broken(*args, **kwargs):
        raise DataError("the shards vanished (simulated)")

    monkeypatch.setattr(loop, "PretrainBatches", broken)
    for folder in ("run", "run2"):
        code, _, err = run(capsys, "--config", config, "--out", tmp_path / folder)
        assert code == 2 and (tmp_path / folder / "config.toml").is_file()
    monkeypatch.setattr(loop, "PretrainBatches", real)
    code, _, err = run(capsys, "--out", tmp_path / "run", "--resume", "--config", config)
    assert code == 0, err
    code, _, err = run(capsys, "--config", config, "--out", tmp_path / "run2")  # the same folder again, no --resume
    assert code == 0, err


def test_pretrain_refuses_a_folder_holding_other_files(tiny_data, tmp_path, capsys):
    config = write_config(tmp_path / "cfg.toml", tiny_data, budget={"steps": 2})
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    code, _, err = run(capsys, "--config", config, "--out", tmp_path / "mine")
    assert code == 2 and "maskbench did not write" in error_line(err)
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["thesis.tex"]


def test_cuda_on_a_cpu_only_pytorch_is_one_line(tiny_data, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    config = write_config(tmp_path / "cfg.toml", tiny_data, budget={"steps": 2})
    code, _, err = run(capsys, "--config", config, "--out", tmp_path / "run", "--set", 'device="cuda"')
    assert code == 2 and "sees no CUDA GPU" in error_line(err)
