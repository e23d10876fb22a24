"""Helpers for the trainer's tests: tiny configs, subprocess runs of the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable

#: A model small enough that a step takes milliseconds, with dropout on (resume must restore its RNG).
TINY_MODEL = {"size": "bert-tiny", "hidden_size": 32, "num_heads": 2, "intermediate_size": 64, "num_layers": 2}


def tiny_overrides(dataset: dict, **extra) -> dict:
    """A base config dict for a tiny, fast run (one thread: the tests share two busy cores)."""
    base = {
        "seed": 3,
        "threads": 1,
        "data": {"shards": str(dataset["shards"]), "seq_len": 32},
        "model": dict(TINY_MODEL),
        "objective": {"name": "mlm"},
        "batch": {"size": 8},
        "budget": {"steps": 6},
        "eval": {"batches": 2},
        "log": {"every": 1, "progress": False, "tensorboard": False},
        "checkpoint": {"every": 0, "keep": 2},
        "schedule": {"warmup_steps": 2},
    }
    for section, values in extra.items():
        if section == "model" and "size" in values:
            base[section] = values
        elif isinstance(values, dict) and isinstance(base.get(section), dict):
            base[section] = {**base[section], **values}
        else:
            base[section] = values
    return base


def tiny_config(dataset: dict, **extra):
    from maskbench.config import from_dict
    from maskbench.train import PretrainConfig

    return from_dict(PretrainConfig, tiny_overrides(dataset, **extra))


def write_config(path: Path, dataset: dict, **extra) -> Path:
    import tomli_w

    path.write_text(tomli_w.dumps(tiny_overrides(dataset, **extra)), encoding="utf-8")
    return path


def subprocess_env() -> dict:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_cli(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "maskbench", *args], env=subprocess_env(), capture_output=True,
                          text=True, timeout=kwargs.pop("timeout", 120), **kwargs)
