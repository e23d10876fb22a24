"""Shared fixtures for the data stage: one small synthetic corpus, its tokenizer and shards per session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    from maskbench.data.synth import generate_corpus

    return generate_corpus(tmp_path_factory.mktemp("synth") / "corpus", tokens=60_000, seed=3).parent


@pytest.fixture(scope="session")
def synth_tokenizer(synth_dir, tmp_path_factory) -> Path:
    from maskbench.data.tokenizer import train_tokenizer

    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    train_tokenizer([synth_dir / "corpus.txt"], kind="wordpiece", vocab_size=1500, out_path=path)
    return path


@pytest.fixture(scope="session")
def synth_shards(synth_dir, synth_tokenizer, tmp_path_factory) -> Path:
    from maskbench.data.shards import prepare

    out = tmp_path_factory.mktemp("shards") / "shards"
    prepare([synth_dir / "corpus.txt"], synth_tokenizer, out, seq_len=64, val_fraction=0.1, seed=1)
    return out
