"""The data stage through `maskbench ...`: the whole pipeline end to end, and every bad input -> exit 2."""

from __future__ import annotations

import json

import pytest

from maskbench.cli import main
from maskbench.data.loader import PretrainBatches
from maskbench.data.shards import Shards


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("maskbench: error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_pipeline_on_the_synthetic_corpus(tmp_path, capsys):
    assert main(["corpus", "synth", "--out", str(tmp_path / "syn"), "--tokens", "30000", "--seed", "2"]) == 0
    assert main(["corpus", "synth-tasks", "--out", str(tmp_path / "tasks"), "--train", "40", "--dev", "10",
                 "--test", "10"]) == 0
    assert main(["tokenizer", "train", "--input", str(tmp_path / "syn"), "--kind", "unigram", "--vocab-size", "800",
                 "--out", str(tmp_path / "tok.json")]) == 0
    assert main(["prepare", "--input", str(tmp_path / "syn"), "--tokenizer", str(tmp_path / "tok.json"),
                 "--seq-len", "64", "--out", str(tmp_path / "shards"), "--val-fraction", "0.1",
                 "--set", "seed=3"]) == 0
    assert main(["shards", str(tmp_path / "shards"), "--verify"]) == 0
    out = capsys.readouterr().out
    assert "all sha256 hashes match" in out and "uint16" in out
    manifest = Shards.open(tmp_path / "shards").manifest
    assert manifest["config"]["seed"] == 3 and manifest["seq_len"] == 64
    assert (tmp_path / "shards" / "prepare.toml").read_text().count("seed = 3") == 1
    batch = PretrainBatches(tmp_path / "shards", "train", batch_size=4, seq_len=64, seed=0, pairs="sop").get(0)
    assert batch["input_ids"].shape == (4, 64)
    assert sorted(p.name for p in (tmp_path / "tasks").iterdir()) == [
        ".maskbench.json", "meta.json", "synth-agreement", "synth-agreement-heldout", "synth-order",
        "synth-sentiment", "synth-sentiment-heldout"]


def test_prepare_two_gutenberg_books(shared_data, tmp_path, capsys):
    books = [str(shared_data / "corpus" / "gutenberg" / name) for name in ("pg1656.txt", "pg1974.txt")]
    assert main(["tokenizer", "train", "--input", *books, "--vocab-size", "2000", "--out",
                 str(tmp_path / "tok.json")]) == 0
    assert main(["prepare", "--input", *books, "--tokenizer", str(tmp_path / "tok.json"), "--out",
                 str(tmp_path / "shards"), "--sentences", "punctuation"]) == 0
    manifest = json.loads((tmp_path / "shards" / "manifest.json").read_text())
    assert manifest["splits"]["train"]["tokens"] > 30_000
    assert [i["path"].endswith(("pg1656.txt", "pg1974.txt")) for i in manifest["inputs"]] == [True, True]


@pytest.fixture
def tok(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("some plain text for a tokenizer.\nanother line here.\n" * 30, encoding="utf-8")
    assert main(["tokenizer", "train", "--input", str(corpus), "--vocab-size", "200", "--min-frequency", "1",
                 "--out", str(tmp_path / "tok.json")]) == 0
    return tmp_path / "tok.json"


@pytest.mark.parametrize("content,message", [
    (None, "input not found"),
    (b"", "hold no text"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
    (b"ok\n\xff\xfe\n", "not valid UTF-8"),
])
def test_prepare_bad_inputs_exit_2_without_output(tmp_path, capsys, tok, content, message):
    path = tmp_path / "input.txt"
    if content is not None:
        path.write_bytes(content)
    assert main(["prepare", "--input", str(path), "--tokenizer", str(tok), "--out", str(tmp_path / "out")]) == 2
    assert message in _error_line(capsys)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args,message", [
    (["--kind", "sentencepiece", "--vocab-size", "500"], "unknown tokenizer kind 'sentencepiece'"),
    (["--kind", "bpe", "--vocab-size", "50"], "too small for the 105 special tokens"),
])
def test_tokenizer_bad_arguments(tmp_path, capsys, args, message):
    corpus = tmp_path / "c.txt"
    corpus.write_text("text\n", encoding="utf-8")
    out = tmp_path / "tok.json"
    assert main(["tokenizer", "train", "--input", str(corpus), "--out", str(out), *args]) == 2
    assert message in _error_line(capsys)
    assert not out.exists()


def test_output_folder_with_a_different_run(tmp_path, capsys, tok):
    corpus = tmp_path / "c.txt"
    args = ["prepare", "--input", str(corpus), "--tokenizer", str(tok), "--out", str(tmp_path / "out")]
    assert main(args) == 0
    assert main(args) == 0  # the same run again: nothing to do
    assert main(args + ["--seq-len", "32"]) == 2
    assert "already holds a different preparation" in _error_line(capsys)
    assert main(["corpus", "synth", "--out", str(tmp_path / "out"), "--tokens", "100"]) == 2
    assert "holds maskbench's prepared shards" in _error_line(capsys)


def test_config_errors_name_the_key(tmp_path, capsys, tok):
    args = ["prepare", "--input", str(tmp_path / "c.txt"), "--tokenizer", str(tok), "--out", str(tmp_path / "o")]
    assert main(args + ["--set", "val_fracton=0.1"]) == 2
    assert "did you mean 'val_fraction'" in _error_line(capsys)
    assert main(args + ["--val-fraction", "0.9"]) == 2
    assert "val_fraction: must be in [0, 0.5]" in _error_line(capsys)


def test_shards_command_on_a_non_shard_folder(tmp_path, capsys):
    assert main(["shards", str(tmp_path)]) == 2
    assert "no manifest.json" in _error_line(capsys)
