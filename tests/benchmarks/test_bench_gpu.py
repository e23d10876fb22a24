"""The GPU benchmark runs end to end at tiny shapes on any machine (what CI can check of it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_gpu_prints_the_table_at_tiny_shapes(tmp_path):
    pytest.importorskip("transformers")
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1")
    rows = tmp_path / "rows.jsonl"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_gpu.py"), "--tiny", "--modes", "eager", "--cases",
         "bert-base", "t5-base", "finetune", "--windows", "2", "--steps", "1", "--warmup", "1", "--json", str(rows),
         "--variants", "autocast_residual"],
        capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    table = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + 5  # header + one row per maskbench side (the variant applies to the encoders)
    records = [json.loads(line) for line in rows.read_text().splitlines()]
    assert [(r["case"], r["side"]) for r in records] == [
        ("bert-base", "maskbench"), ("bert-base", "maskbench[autocast_residual=on]"), ("t5-base", "maskbench"),
        ("finetune", "maskbench"), ("finetune", "maskbench[autocast_residual=on]")]
    assert [r["switches"].get("autocast_residual") for r in records] == [False, True, None, False, True]
    for r in records:
        for side in ("maskbench", "hf"):
            assert r[side]["tokens_per_s"] > 0 and len(r[side]["window_ms"]) == 2
        assert r["ratio"] == r["maskbench"]["tokens_per_s"] / r["hf"]["tokens_per_s"]
        assert 0 < r["mfu_maskbench"] < 1
