"""The CLI shell: help, errors as one line with exit 2, the allocator tuning."""

from __future__ import annotations

import subprocess
import sys

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
