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
