"""`maskbench model list|params`, `export --to hf`, `import --from` end to end."""

from __future__ import annotations

import pytest
import torch

from maskbench.cli import main
from maskbench.models import EncoderConfig, EncoderForPretraining, load_model, save_model


def test_model_list_prints_every_size(capsys):
    assert main(["model", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("bert-tiny", "albert-xxlarge", "t5-base"):
        assert f"| {name} |" in out
    assert "109,482,240" in out  # bert-base with its 30,522-token vocabulary


def test_model_params_with_vocab_and_folder(capsys, tmp_path):
    save_model(EncoderForPretraining(EncoderConfig(vocab_size=50, hidden_size=16, num_layers=1, num_heads=2,
                                                   intermediate_size=16)), tmp_path / "m")
    assert main(["model", "params", "albert-base", str(tmp_path / "m"), "--vocab-size", "30000"]) == 0
    out = capsys.readouterr().out
    assert "11,683,584" in out and "| 1 | 16 | 16 | 2 | 30,000 |" in out


def test_model_params_unknown_name(capsys):
    assert main(["model", "params", "bert-hugee"]) == 2
    assert "did you mean" in capsys.readouterr().err


def test_export_then_import_round_trip(tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    run = tmp_path / "run"
    config = EncoderConfig(vocab_size=40, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=24)
    model = EncoderForPretraining(config, "nsp").eval()
    save_model(model, run / "model")
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(35)])}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tok.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tok.save(str(run / "model" / "tokenizer.json"))
    assert main(["export", "--checkpoint", str(run), "--to", "hf", "--out", str(tmp_path / "hf")]) == 0
    hf = transformers.BertForPreTraining.from_pretrained(tmp_path / "hf").eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert hf_tok("w3 w7")["input_ids"] == [vocab["w3"], vocab["w7"]] and hf_tok.mask_token == "[MASK]"
    ids = torch.randint(5, 40, (2, 7))
    ours = model.mlm_logits(model.encoder(ids).last_hidden_state)
    assert (ours - hf(input_ids=ids).prediction_logits).abs().max() <= 1e-5
    assert main(["import", "--from", str(tmp_path / "hf"), "--out", str(tmp_path / "back")]) == 0
    back = load_model(tmp_path / "back")
    assert (tmp_path / "back" / "tokenizer.json").is_file()
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), back.state_dict().values()))


def test_export_refusal_is_one_line(tmp_path, capsys):
    pytest.importorskip("transformers")
    config = EncoderConfig(vocab_size=40, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=24,
                           share="attention")
    save_model(EncoderForPretraining(config), tmp_path / "m")
    assert main(["export", "--checkpoint", str(tmp_path / "m"), "--to", "hf", "--out", str(tmp_path / "hf")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "share='attention' cannot be exported" in err


def test_import_of_a_non_hf_folder(tmp_path, capsys):
    assert main(["import", "--from", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "no config.json" in capsys.readouterr().err


def _small_model_folder(path):
    save_model(EncoderForPretraining(EncoderConfig(vocab_size=40, hidden_size=16, num_layers=1, num_heads=2,
                                                   intermediate_size=24)), path)
    return path


def _one_line_error(capsys) -> str:
    """The error line (progress bars of the work before it may precede it), and no traceback."""
    err = capsys.readouterr().err.strip()
    last = err.splitlines()[-1]
    assert last.startswith("maskbench: error:") and "Traceback" not in err
    return last


@pytest.mark.parametrize("command", ["export", "import"])
def test_out_holding_other_files_is_refused_and_kept(tmp_path, capsys, command):
    pytest.importorskip("transformers")
    model = _small_model_folder(tmp_path / "m")
    assert main(["export", "--checkpoint", str(model), "--out", str(tmp_path / "hf")]) == 0
    capsys.readouterr()
    other = tmp_path / "other"
    (other / "checkpoints").mkdir(parents=True)
    (other / "metrics.jsonl").write_text("precious\n")
    source = ["--checkpoint", str(model)] if command == "export" else ["--from", str(tmp_path / "hf")]
    for extra in ([], ["--overwrite"]):  # --overwrite never replaces a folder maskbench did not write
        assert main([command, *source, "--out", str(other), *extra]) == 2
        assert "maskbench did not write" in _one_line_error(capsys)
        assert (other / "metrics.jsonl").read_text() == "precious\n" and (other / "checkpoints").is_dir()


def test_export_out_equal_to_checkpoint_is_refused(tmp_path, capsys):
    pytest.importorskip("transformers")
    model = _small_model_folder(tmp_path / "m")
    before = sorted(p.name for p in model.iterdir())
    for out in (model, tmp_path):  # the source itself, or a folder holding it
        assert main(["export", "--checkpoint", str(model), "--out", str(out), "--overwrite"]) == 2
        assert "is or holds the input" in _one_line_error(capsys)
    assert sorted(p.name for p in model.iterdir()) == before


def test_overwrite_replaces_only_the_same_kind_of_output(tmp_path, capsys):
    pytest.importorskip("transformers")
    model = _small_model_folder(tmp_path / "m")
    out = tmp_path / "hf"
    assert main(["export", "--checkpoint", str(model), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["export", "--checkpoint", str(model), "--out", str(out)]) == 2
    assert "--overwrite" in _one_line_error(capsys)
    assert main(["export", "--checkpoint", str(model), "--out", str(out), "--overwrite"]) == 0
    assert main(["import", "--from", str(out), "--out", str(tmp_path / "back")]) == 0
    # an import may not replace an export, nor an export a model folder, even with --overwrite
    assert main(["import", "--from", str(out), "--out", str(out), "--overwrite"]) == 2
    capsys.readouterr()
    assert main(["export", "--checkpoint", str(model), "--out", str(tmp_path / "back"), "--overwrite"]) == 2
    assert "replaces only maskbench's Hugging Face export" in _one_line_error(capsys)


def test_a_full_disk_while_writing_a_model_is_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    pytest.importorskip("transformers")
    import safetensors.torch
    from safetensors import SafetensorError

    model = _small_model_folder(tmp_path / "m")
    assert main(["export", "--checkpoint", str(model), "--out", str(tmp_path / "hf")]) == 0
    capsys.readouterr()

    def full(tensors, filename, metadata=None):
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                              'message: "No space left on device" })')

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    out = tmp_path / "sub" / "back"
    assert main(["import", "--from", str(tmp_path / "hf"), "--out", str(out)]) == 2
    assert _one_line_error(capsys) == f"maskbench: error: cannot write {out}: the disk is full"
    assert list((tmp_path / "sub").iterdir()) == []  # the temporary folder is gone
