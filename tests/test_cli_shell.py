"""The CLI shell: help, errors as one line with exit 2, the allocator tuning."""

from __future__ import annotations

import subprocess
import sys

import pytest

from maskbench.cli import main
from maskbench.runtime import tune_allocator


def test_help_lists_subcommands(capsys):
    try:
        main(["--help"])
    except SystemExit as e:
        assert e.code == 0
    out = capsys.readouterr().out
    for command in ("corpus", "tokenizer", "prepare", "objectives", "model", "pretrain", "finetune",
                    "attention", "heads", "probe", "experiment", "demo"):
        assert command in out, command


def test_module_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "maskbench", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and "maskbench" in result.stdout


def test_user_error_is_one_line_and_exit_2():
    result = subprocess.run([sys.executable, "-m", "maskbench", "pretrain", "--config", "/nonexistent.toml"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "Traceback" not in result.stderr


def test_allocator_tuning_is_idempotent():
    assert tune_allocator() == tune_allocator()


@pytest.mark.parametrize("argv, key", [
    (["pretrain", "--config", "configs/bert-tiny-15.toml", "--set", "objective.mask_rate=nan"], "objective.mask_rate"),
    (["pretrain", "--config", "configs/bert-tiny-15.toml", "--set", "optim.lr=nan"], "optim.lr"),
    (["prepare", "--input", "x.txt", "--tokenizer", "t.json", "--val-fraction", "nan"], "val_fraction"),
    (["finetune", "--task", "WNLI", "--checkpoint", "random:bert-tiny", "--set", "child.p_f=nan"], "child.p_f"),
    (["finetune", "--task", "WNLI", "--checkpoint", "random:bert-tiny", "--set", "child.p_d=inf"], "child.p_d"),
    (["finetune", "--task", "WNLI", "--checkpoint", "random:bert-tiny", "--set", "mixout.p=nan"], "mixout.p"),
])
def test_non_finite_numbers_are_refused_at_config_time(argv, key, tmp_path, repo_root, capsys, monkeypatch):
    monkeypatch.chdir(repo_root)
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == err.splitlines()[0] and f"{key}: must be a finite number" in err
    assert not (tmp_path / "out").exists()


def test_a_non_finite_axis_value_in_an_experiment_spec_is_refused(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text('[experiment]\nname = "x"\n[[axes]]\nvalues = { "pretrain.objective.mask_rate" = [0.15, nan] }\n')
    assert main(["experiment", "run", str(spec), "--out", str(tmp_path / "out")]) == 2
    assert "must be a finite number" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["../../../x", "/tmp/abs", "a/b", "..", ""])
def test_experiment_names_are_one_folder_name(tmp_path, capsys, name, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "s.toml"
    spec.write_text(f'[experiment]\nname = "{name}"\n')
    assert main(["experiment", "run", str(spec)]) == 2
    assert "experiment.name: must be one folder name" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [spec]
