"""The three subcommands end to end through `maskbench.cli.main`."""

from __future__ import annotations

import json
import shutil

import pytest

from maskbench.cli import main

from inspect_helpers import SENTENCES


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "text.txt"
    # blank lines separate documents, so --pairs has consecutive sentences to pair
    path.write_text("\n\n".join("\n".join(SENTENCES[i:i + 4]) for i in range(0, 32, 4)) + "\n")
    return path


def test_attention_command_writes_a_page(tmp_path, encoder_dir, capsys):
    out = tmp_path / "a.html"
    assert main(["attention", "--checkpoint", str(encoder_dir), "--text", "the cat </script> sat",
                 "--pair", "a dog", "--out", str(out)]) == 0
    page = out.read_text()
    assert "mb-data" in page and "</script> sat" not in page
    assert "wrote" in capsys.readouterr().err


def test_attention_command_for_an_encoder_decoder_head_view_only(tmp_path, t5_dir):
    out = tmp_path / "t5.html"
    assert main(["attention", "--checkpoint", str(t5_dir), "--text", "the cat sat", "--view", "head",
                 "--out", str(out)]) == 0
    payload = out.read_text()
    assert '"views":["head"]' in payload and '"queries":null' in payload


def test_attention_command_errors_exit_2(tmp_path, encoder_dir, capsys):
    assert main(["attention", "--checkpoint", str(encoder_dir), "--text", "x", "--view", "nueron"]) == 2
    assert "did you mean 'neuron'" in capsys.readouterr().err
    bare = tmp_path / "bare"
    shutil.copytree(encoder_dir, bare)
    (bare / "tokenizer.json").unlink()
    assert main(["attention", "--checkpoint", str(bare), "--text", "x"]) == 2
    assert "pass --tokenizer" in capsys.readouterr().err


def test_heads_command(tmp_path, encoder_dir, corpus, capsys):
    out = tmp_path / "heads"
    assert main(["heads", "--checkpoint", str(encoder_dir), "--input", str(corpus), "--samples", "20", "--pairs",
                 "--out", str(out), "--set", "broad=0.95"]) == 0
    info = json.loads((out / "heads.json").read_text())
    assert info["samples"] == 20 and info["thresholds"]["broad"] == 0.95
    assert info["queries_per_pattern"]["other_sentence"] > 0
    assert (out / "heads.png").stat().st_size > 1000
    printed = capsys.readouterr()
    assert "| pattern | heads |" in printed.out
    assert "\r" not in printed.err and "heads: 20/20 text (100%)" in printed.err  # stderr is no terminal: lines
    assert main(["heads", "--checkpoint", str(encoder_dir), "--input", str(corpus), "--out", str(out),
                 "--set", "nxt=0.3"]) == 2


def test_probe_command_compares_two_models(tmp_path, encoder_dir, encoder_dir_b, corpus, capsys):
    out = tmp_path / "probe"
    assert main(["probe", "--checkpoint", str(encoder_dir), "--compare", str(encoder_dir_b), "--task",
                 "token_identity", "--input", str(corpus), "--samples", "32", "--out", str(out),
                 "--set", "epochs=3"]) == 0
    info = json.loads((out / "probe.json").read_text())
    assert [len(r["accuracy"]["masked"]) for r in info["runs"]] == [3, 3]
    assert info["runs"][0]["name"] != info["runs"][1]["name"]
    assert (out / "probe.png").stat().st_size > 1000
    printed = capsys.readouterr()
    assert "| layer |" in printed.out and "held out: sentences" in printed.out
    assert "\r" not in printed.err and "(100%)" in printed.err  # stderr is no terminal: whole lines, as heads
    assert main(["probe", "--checkpoint", str(encoder_dir), "--task", "token_identity", "--out",
                 str(tmp_path / "other")]) == 2
    assert "needs --input" in capsys.readouterr().err


@pytest.mark.slow
def test_probe_command_replacement_task_on_two_checkpoints(tmp_path, encoder_dir, encoder_dir_b, corpus, capsys):
    out = tmp_path / "replacement"
    assert main(["probe", "--checkpoint", str(encoder_dir), "--compare", str(encoder_dir_b), "--task",
                 "replacement", "--input", str(corpus), "--samples", "32", "--out", str(out),
                 "--set", "epochs=3", "--set", "mask_rate=0.4"]) == 0
    info = json.loads((out / "probe.json").read_text())
    assert info["task"] == "replacement"
    assert [set(r["accuracy"]) for r in info["runs"]] == [{"mask", "random", "keep", "unselected"}] * 2
    assert (out / "probe.png").stat().st_size > 1000
    assert "held out: sentences" in capsys.readouterr().out
    assert main(["probe", "--checkpoint", str(encoder_dir), "--task", "replacement", "--out", str(out)]) == 2
    assert "needs --input" in capsys.readouterr().err


def test_probe_command_word_class_and_labels(tmp_path, encoder_dir, capsys):
    out = tmp_path / "wc"
    assert main(["probe", "--checkpoint", str(encoder_dir), "--task", "word_class", "--samples", "40",
                 "--out", str(out), "--set", "epochs=2"]) == 0
    run = json.loads((out / "probe.json").read_text())["runs"][0]
    assert run["task"] == "word_class" and run["classes"]["words"] >= 5
    assert run["meta"]["holdout"] == "words"
    assert "held out: words" in capsys.readouterr().out  # the default, said in the output
    labels = tmp_path / "l.jsonl"
    labels.write_text("\n".join(json.dumps({"words": s.split(), "labels": [len(w) > 3 for w in s.split()]})
                                for s in SENTENCES[:16]))
    assert main(["probe", "--checkpoint", str(encoder_dir), "--labels", str(labels), "--out", str(out),
                 "--overwrite", "--set", "epochs=2"]) == 0
    assert json.loads((out / "probe.json").read_text())["task"] == "labels"


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    line = err.splitlines()[-1]
    assert line.startswith("maskbench: error:")
    return line


@pytest.fixture(scope="module")
def other_tokenizer(tmp_path_factory):
    """A tokenizer that is not the models' (a smaller vocabulary)."""
    from maskbench.data.tokenizer import train_tokenizer

    path = tmp_path_factory.mktemp("tok_small") / "tokenizer.json"
    train_tokenizer(None, kind="wordpiece", vocab_size=150, out_path=path, texts=SENTENCES, min_frequency=1)
    return path


@pytest.mark.parametrize("command", ["attention", "heads", "probe"])
def test_a_tokenizer_that_is_not_the_models_is_refused(tmp_path, encoder_dir, other_tokenizer, corpus, capsys,
                                                       command):
    args = {"attention": ["--text", "the cat sat", "--out", str(tmp_path / "a.html")],
            "heads": ["--input", str(corpus), "--samples", "4", "--out", str(tmp_path / "h")],
            "probe": ["--task", "word_class", "--samples", "8", "--out", str(tmp_path / "p")]}[command]
    assert main([command, "--checkpoint", str(encoder_dir), "--tokenizer", str(other_tokenizer), *args]) == 2
    assert "has a vocabulary of 200 tokens but the tokenizer has 15" in _error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_bad_sizes_are_one_line(tmp_path, encoder_dir, corpus, capsys):
    assert main(["heads", "--checkpoint", str(encoder_dir), "--input", str(corpus), "--batch-size", "0",
                 "--out", str(tmp_path / "h")]) == 2
    assert "batch_size: must be in [1, inf], got 0" in _error_line(capsys)
    assert main(["attention", "--checkpoint", str(encoder_dir), "--text", "the cat", "--max-length", "0",
                 "--out", str(tmp_path / "a.html")]) == 2
    assert "max_length: must be in [1, inf], got 0" in _error_line(capsys)


def test_attention_out_naming_a_folder_is_one_line(tmp_path, encoder_dir, capsys):
    assert main(["attention", "--checkpoint", str(encoder_dir), "--text", "the cat", "--out", str(tmp_path)]) == 2
    assert "is a folder; name a file" in _error_line(capsys)


def test_heads_out_is_guarded_and_read_only_is_one_line(tmp_path, encoder_dir, corpus, capsys, monkeypatch):
    import errno
    import tempfile

    out = tmp_path / "h"
    out.mkdir()
    (out / "results.json").write_text("other results")
    args = ["heads", "--checkpoint", str(encoder_dir), "--input", str(corpus), "--samples", "4"]
    assert main([*args, "--out", str(out)]) == 2
    assert "not empty" in _error_line(capsys) and (out / "results.json").read_text() == "other results"

    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    assert main([*args, "--out", str(tmp_path / "h2")]) == 2
    assert _error_line(capsys).endswith("h2: Read-only file system")


def test_a_bad_compare_model_stops_before_any_probing(tmp_path, encoder_dir, corpus, capsys, monkeypatch):
    """`probe --compare` naming a run that does not exist is one line before the first model is probed."""
    from maskbench.inspect import probes

    probed = []
    monkeypatch.setattr(probes, "probe", lambda *args, **kwargs: probed.append(args) or pytest.fail("probed"))
    assert main(["probe", "--checkpoint", str(encoder_dir), "--compare", str(tmp_path / "runs" / "mlm15"),
                 "--task", "token_identity", "--input", str(corpus), "--out", str(tmp_path / "probe")]) == 2
    assert "model path not found" in _error_line(capsys) and not probed
    assert not (tmp_path / "probe").exists()
