"""`--checkpoint org/name` reads Hugging Face Hub ids through huggingface_hub's cache; offline, one clear line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

transformers = pytest.importorskip("transformers")

from maskbench.models.hub import looks_like_hub_id  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def _cli(args, cache: Path, cwd: Path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "PYTHONPATH": str(REPO / "src")}
    return subprocess.run([sys.executable, "-m", "maskbench", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_hub_ids_and_local_paths_are_told_apart(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    assert looks_like_hub_id("bert-base-uncased") and looks_like_hub_id("google/electra-small-discriminator")
    assert not looks_like_hub_id("runs/mlm40")  # a mistyped local run, not a Hub id
    assert not looks_like_hub_id("/abs/path") and not looks_like_hub_id("tok.json")


def test_offline_without_a_cached_copy_is_one_line(tmp_path):
    done = _cli(["export", "--checkpoint", "someone/tiny-bert", "--out", str(tmp_path / "out")], tmp_path / "cache",
                tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "HF_HUB_OFFLINE" in done.stderr
    assert not (tmp_path / "out").exists()


def test_a_cached_hub_model_loads_offline(tmp_path):
    import torch

    snapshot = tmp_path / "cache" / "models--someone--tiny-bert" / "snapshots" / "0123abcd"
    torch.manual_seed(0)
    transformers.BertForMaskedLM(transformers.BertConfig(vocab_size=97, hidden_size=32, num_hidden_layers=1,
                                                         num_attention_heads=4, intermediate_size=48,
                                                         max_position_embeddings=64)).save_pretrained(snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0123abcd")
    done = _cli(["import", "--from", "someone/tiny-bert", "--out", str(tmp_path / "imported")], tmp_path / "cache",
                tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "imported" / "model.safetensors").is_file()
