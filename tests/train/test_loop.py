"""The loop in-process: a tiny run end to end, NaN stop, time budget, objectives and models it wires."""

from __future__ import annotations

import json

import pytest
import torch

from maskbench.errors import ConfigError
from maskbench.train import TrainingDiverged, pretrain, read_metrics
from maskbench.train.loop import Trainer
from trainkit import tiny_config


def test_a_tiny_run_writes_the_run_folder(tiny_data, tmp_path):
    config = tiny_config(tiny_data, budget={"steps": 6}, checkpoint={"every": 3, "keep": 1},
                         eval={"every": 3, "batches": 2})
    summary = pretrain(config, tmp_path / "run")
    run = tmp_path / "run"
    assert (run / "config.toml").is_file()
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-0000006"]
    assert {p.name for p in (run / "model").iterdir()} >= {"model.safetensors", "config.json", "tokenizer.json"}
    train = read_metrics(run)
    assert [r["step"] for r in train] == [1, 2, 3, 4, 5, 6]
    evals = read_metrics(run, kind="eval")
    assert [r["step"] for r in evals] == [3, 6]
    for key in ("mlm_loss", "mlm_accuracy", "ref_mlm_loss", "ref_mlm_accuracy"):
        assert key in evals[-1]
    assert summary["steps"] == 6 and summary["stopped_by"] == "steps"
    assert summary["tokens"] == 6 * 8 * 32
    assert json.loads((run / "summary.json").read_text())["steps"] == 6
    from maskbench.models import load_model

    model = load_model(run)
    assert type(model).__name__ == "EncoderForPretraining"


def test_evaluation_is_deterministic(tiny_data, tmp_path):
    config = tiny_config(tiny_data, budget={"steps": 2}, eval={"batches": 2})
    trainer = Trainer.build(config, tmp_path / "run")
    try:
        first = trainer.evaluate()
        trainer.train_step()
        assert trainer.state.step == 1
        trainer.evaluate()
        again = trainer.evaluate()
    finally:
        trainer.close()
    assert first and again and first != again  # training moved the model; evaluating again did not
    assert trainer.state.last_eval == {"step": 1, "kind": "eval", **again}


def test_gradient_accumulation_matches_one_big_batch(tiny_data, tmp_path):
    model = {"dropout": 0.0, "attention_dropout": 0.0}
    whole = pretrain(tiny_config(tiny_data, model=model, budget={"steps": 3}, batch={"size": 8}), tmp_path / "a")
    split = pretrain(tiny_config(tiny_data, model=model, budget={"steps": 3}, batch={"size": 8, "micro_size": 2}),
                     tmp_path / "b")
    a, b = read_metrics(tmp_path / "a"), read_metrics(tmp_path / "b")
    for x, y in zip(a, b):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-5, abs=1e-6)
    assert whole["eval"]["mlm_loss"] == pytest.approx(split["eval"]["mlm_loss"], rel=1e-4)


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tiny_data, tmp_path, monkeypatch):
    config = tiny_config(tiny_data, budget={"steps": 10}, checkpoint={"every": 2, "keep": 5})
    original = Trainer.train_step

    def poisoned(self):
        if self.state.step == 4:  # the 5th step
            forward = self.model.forward

            def nan_forward(**batch):
                out = forward(**batch)
                out["mlm_loss"] = out["mlm_loss"] * float("nan")
                return out

            self.model.forward = nan_forward
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", poisoned)
    with pytest.raises(TrainingDiverged, match="at step 5.*step-0000004") as info:
        pretrain(config, tmp_path / "run")
    assert "\n" not in str(info.value)
    steps = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert steps == ["step-0000002", "step-0000004"]
    assert not (tmp_path / "run" / "model").exists()


def test_time_budget_stops_on_time_and_schedule_follows_the_clock(tiny_data, tmp_path):
    config = tiny_config(tiny_data, budget={"time": "1.5s", "steps": 100000},
                         schedule={"warmup_steps": 0, "warmup_fraction": 0.2, "decay": "linear"},
                         log={"every": 5, "progress": False, "tensorboard": False})
    summary = pretrain(config, tmp_path / "run")
    assert summary["stopped_by"] == "time"
    assert 1.5 <= summary["train_seconds"] < 4.0
    records = read_metrics(tmp_path / "run")
    assert records[-1]["elapsed_s"] >= 1.5
    lrs = [r["lr"] for r in records]
    peak = config.optim.lr
    assert max(lrs) <= peak + 1e-12
    assert lrs[-1] < 0.2 * peak  # linear decay to ~0 at the end of the time budget


def test_k_copies_grow_the_batch_and_say_so(tiny_data, tmp_path, capsys):
    config = tiny_config(tiny_data, objective={"name": "mlm", "mask_rate": 0.15, "predict_rate": 0.3},
                         budget={"steps": 2})
    summary = pretrain(config, tmp_path / "run")
    assert summary["batch_multiplier"] == 2
    assert "batch multiplier 2" in capsys.readouterr().err


@pytest.mark.parametrize("objective, optim", [
    ({"name": "sop", "unit": "whole_word"}, {"name": "lamb", "lr": 0.005}),
    ({"name": "nsp", "mask_rate": 0.4}, {"name": "adamw"}),
])
def test_sentence_objectives_train_the_sentence_head(tiny_data, tmp_path, objective, optim):
    config = tiny_config(tiny_data, objective=objective, optim=optim, budget={"steps": 3},
                         model={"embedding_size": 16, "share": "all"})
    summary = pretrain(config, tmp_path / "run")
    assert "sentence_accuracy" in summary["eval"] and "sentence_loss" in summary["final"]
    assert summary["final"]["loss"] == pytest.approx(summary["final"]["mlm_loss"] + summary["final"]["sentence_loss"])


def test_span_corruption_trains_an_encoder_decoder(tiny_data, tmp_path):
    config = tiny_config(tiny_data, objective={"name": "span_corruption"}, budget={"steps": 3},
                         model={"size": "t5-tiny", "d_model": 32, "d_kv": 8, "d_ff": 64, "num_heads": 4,
                                "num_layers": 1})
    summary = pretrain(config, tmp_path / "run")
    assert "target_accuracy" in summary["eval"]
    assert "ref_mlm_loss" not in summary["eval"]
    assert summary["final"]["target_loss"] > 0


def test_bf16_autocast_keeps_float32_master_weights(tiny_data, tmp_path):
    config = tiny_config(tiny_data, precision="bf16", budget={"steps": 2})
    trainer = Trainer.build(config, tmp_path / "run")
    summary = trainer.run()
    assert all(p.dtype == torch.float32 for p in trainer.raw_model.parameters())
    assert summary["final"]["loss"] > 0


def test_mismatched_objective_and_model_is_a_config_error(tiny_data, tmp_path):
    config = tiny_config(tiny_data, objective={"name": "span_corruption"})
    with pytest.raises(ConfigError, match="model.size.*t5"):
        pretrain(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_max_tokens_truncates_the_corpus_and_records_repetitions(tiny_data, tmp_path, capsys):
    config = tiny_config(tiny_data, data={"max_tokens": 600}, budget={"steps": 4})
    summary = pretrain(config, tmp_path / "run")
    assert summary["data_tokens"] == 600
    assert summary["repetitions"] == pytest.approx(4 * 8 * 32 / 600)
    assert "the first 600 training tokens" in capsys.readouterr().err


def test_adafactor_with_inverse_sqrt_pretrains_a_t5(tiny_data, tmp_path):
    config = tiny_config(tiny_data, objective={"name": "span_corruption"}, budget={"steps": 4},
                         model={"size": "t5-tiny", "d_model": 32, "d_kv": 8, "d_ff": 64, "num_heads": 4,
                                "num_layers": 1},
                         optim={"name": "adafactor", "lr": 0.01, "weight_decay": 0.0, "grad_clip": 0.0},
                         schedule={"warmup_steps": 2, "decay": "inverse_sqrt"})
    summary = pretrain(config, tmp_path / "run")
    lrs = [r["lr"] for r in read_metrics(tmp_path / "run")]
    assert lrs == pytest.approx([0.01, 0.01, 0.01 * (2 / 3) ** 0.5, 0.01 * (2 / 4) ** 0.5])
    assert summary["final"]["target_loss"] > 0


T5_TINY = {"size": "t5-tiny", "d_model": 32, "d_kv": 8, "d_ff": 64, "num_heads": 4, "num_layers": 1,
           "num_decoder_layers": 1}


def test_the_summary_measures_what_the_model_reads_and_predicts(tiny_data, tmp_path):
    """MLM at 15% predicts 15% of a window's tokens; at the same 15% noise, T5's span corruption writes
    shorter targets than i.i.d. corruption replaced span by span (one sentinel per noise run)."""
    mlm = pretrain(tiny_config(tiny_data, budget={"steps": 1}, eval={"every": 0, "at_end": False}), tmp_path / "mlm")
    assert mlm["seconds_per_step"] > 0
    assert mlm["inputs_per_example"] <= 32
    assert mlm["targets_per_example"] == pytest.approx(0.15 * mlm["inputs_per_example"], rel=0.25)
    lengths = {}
    for name, objective in [("iid", {"name": "replace_spans", "noise_density": 0.15, "sampling": "bernoulli"}),
                            ("spans", {"name": "span_corruption", "noise_density": 0.15, "mean_span_length": 3.0})]:
        summary = pretrain(tiny_config(tiny_data, objective=objective, model=T5_TINY, budget={"steps": 1},
                                       eval={"every": 0, "at_end": False}), tmp_path / name)
        lengths[name] = summary["targets_per_example"]
        again = Trainer.build(tiny_config(tiny_data, objective=objective, model=T5_TINY), tmp_path / f"{name}-again")
        try:  # deterministic: the same batches, corrupted the same way, whenever it is measured
            assert again._objective_lengths()["targets_per_example"] == lengths[name]
        finally:
            again.close()
    assert lengths["spans"] < lengths["iid"]
