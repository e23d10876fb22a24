"""Model folders: bit-exact round trips, head swaps, run folders, and one-line errors for bad files."""

from __future__ import annotations

import json

import pytest
import torch

from maskbench.errors import CheckpointError
from maskbench.models import (EncoderConfig, EncoderDecoderConfig, EncoderDecoderModel, EncoderForPretraining,
                              EncoderForSequenceClassification, EncoderModel, load_model, save_model)


def cfg(**kw):
    return EncoderConfig(vocab_size=53, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=24,
                         max_positions=16, **kw)


def same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("make", [
    lambda: EncoderForPretraining(cfg(embedding_size=8, share="ffn"), "nsp"),
    lambda: EncoderForSequenceClassification(cfg(), 3),
    lambda: EncoderModel(cfg(share="all")),
    lambda: EncoderForPretraining(cfg(norm="pre", share="all", embedding_size=8), "sop"),
    lambda: EncoderDecoderModel(EncoderDecoderConfig(vocab_size=53, d_model=16, d_kv=4, d_ff=24, num_layers=1,
                                                     num_heads=4, variant="decoder_only")),
])
def test_round_trip_is_bit_exact(tmp_path, make):
    model = make()
    save_model(model, tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    assert set(meta) >= {"architecture", "config", "head"} and meta["architecture"] == type(model).__name__
    back = load_model(tmp_path / "m")
    assert type(back) is type(model) and back.config == model.config and same(model, back)
    assert not back.training


def test_classifier_from_pretraining_folder_keeps_encoder_and_seeds_head(tmp_path):
    pre = EncoderForPretraining(cfg(), "sop")
    save_model(pre, tmp_path / "m")
    a = load_model(tmp_path / "m", head="classification", num_labels=4, seed=1)
    b = load_model(tmp_path / "m", head="classification", num_labels=4, seed=1)
    c = load_model(tmp_path / "m", head="classification", num_labels=4, seed=2)
    assert isinstance(a, EncoderForSequenceClassification) and a.classifier.out_features == 4
    assert same(a.encoder, pre.encoder) and same(a, b)
    assert not torch.equal(a.classifier.weight, c.classifier.weight)
    enc = load_model(tmp_path / "m", head="encoder")
    assert isinstance(enc, EncoderModel) and same(enc, pre.encoder)


def test_run_folder_uses_model_then_newest_checkpoint(tmp_path):
    run = tmp_path / "run"
    old, new = EncoderForPretraining(cfg()), EncoderForPretraining(cfg())
    save_model(old, run / "checkpoints" / "step-9999999")
    save_model(new, run / "checkpoints" / "step-10000000")
    assert same(load_model(run), new)
    final = EncoderForPretraining(cfg())
    save_model(final, run / "model")
    assert same(load_model(run), final)


def test_missing_folder_and_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="holds no model"):
        load_model(tmp_path / "empty")
    save_model(EncoderModel(cfg()), tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_model(tmp_path / "m")


def test_wrong_shape_names_the_weight(tmp_path):
    save_model(EncoderModel(cfg()), tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    meta["config"]["intermediate_size"] = 32
    (tmp_path / "m" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"ffn\.0\.intermediate\.weight' has shape \[24, 16\]") as e:
        load_model(tmp_path / "m")
    assert "\n" not in str(e.value)


def test_unexpected_weight_is_reported(tmp_path):
    save_model(EncoderModel(cfg(share="none")), tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    meta["config"]["share"] = "all"
    (tmp_path / "m" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="unexpected weight 'attention.1"):
        load_model(tmp_path / "m")


def test_corrupt_weights(tmp_path):
    save_model(EncoderModel(cfg()), tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupted"):
        load_model(tmp_path / "m")
    weights.write_bytes(b"\x00\x01garbage")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_model(tmp_path / "m", verify=False)
    (tmp_path / "m" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_model(tmp_path / "m")


def test_unknown_architecture_and_bad_head(tmp_path):
    save_model(EncoderModel(cfg()), tmp_path / "m")
    with pytest.raises(CheckpointError, match="unknown head"):
        load_model(tmp_path / "m", head="tagging")
    with pytest.raises(CheckpointError, match="num_labels"):
        load_model(tmp_path / "m", head="classification")
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    meta["architecture"] = "GPT"
    (tmp_path / "m" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="unknown architecture 'GPT'"):
        load_model(tmp_path / "m")


def test_save_keeps_other_files_and_writes_no_pickle(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "optimizer.safetensors").write_bytes(b"x")
    save_model(EncoderModel(cfg()), tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors",
                                                                  "optimizer.safetensors"]


def test_a_config_json_that_does_not_match_the_weights_fails_before_allocating(tmp_path):
    import json

    from maskbench.cli import main
    from maskbench.errors import CheckpointError
    from maskbench.models import EncoderConfig, EncoderForPretraining, load_model, save_model

    folder = tmp_path / "m"
    save_model(EncoderForPretraining(EncoderConfig(vocab_size=40, hidden_size=16, num_layers=1, num_heads=2,
                                                   intermediate_size=24)), folder)
    meta = json.loads((folder / "config.json").read_text())
    meta["config"]["hidden_size"] = 1e7  # 80 GB of weights, if anything believed it
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="does not describe model.safetensors.*shape"):
        load_model(folder)
    del meta["config"]
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="lacks 'config'"):
        load_model(folder)
    assert main(["model", "params", str(folder)]) == 2
