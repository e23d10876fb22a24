"""A tiny synthetic corpus, tokenizer and shards, built once per session with the data stage's functions."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> dict:
    from maskbench.data import generate_corpus, prepare, train_tokenizer

    root = tmp_path_factory.mktemp("train-data")
    corpus = generate_corpus(root / "corpus", tokens=60_000, seed=0)
    tokenizer = root / "tokenizer.json"
    train_tokenizer([corpus], kind="wordpiece", vocab_size=600, out_path=tokenizer)
    shards = root / "shards"
    prepare([corpus], tokenizer, shards, seq_len=32, val_fraction=0.05, seed=0, progress=False)
    return {"root": root, "corpus": corpus, "tokenizer": tokenizer, "shards": shards}
