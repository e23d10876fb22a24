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
