"""End to end through the CLI with the real stages: a miniature demo-like experiment, run twice."""

from __future__ import annotations

import json
import re

import pytest

from maskbench.cli import main

MINI_SPEC = """
[experiment]
name = "mini"
description = "A miniature of the demo: real stages, tiny sizes."

[base.data]
source = "synth"
synth_tokens = 10000
tasks = ["synth-sentiment"]
task_train = 32
task_dev = 16
samples = 8

[base.tokenizer]
vocab_size = 400

[base.prepare]
seq_len = 32

[base.pretrain]
model = { size = "bert-tiny", num_layers = 1, intermediate_size = 128 }
objective = { name = "mlm", mask_rate = 0.15 }
budget = { steps = 6 }
batch = { size = 8 }
eval = { every = 3, batches = 1 }
log = { every = 2 }
checkpoint = { every = 3, keep = 1 }

[base.finetune]
tasks = ["synth-sentiment"]
methods = ["vanilla", "child_d"]
seeds = [0]
epochs = 1
batch_size = 16
max_length = 32

[base.heads]
samples = 8

[[axes]]
name = "pretraining"
kind = "zip"
labels = ["not pretrained", "MLM 40%"]
[axes.values]
"pretrain.enabled" = [false, true]
"pretrain.objective.mask_rate" = [0.15, 0.4]
"attention.enabled" = [false, true]
"heads.enabled" = [false, true]

[[claims]]
text = "pretraining helps"
better = { "pretrain.enabled" = true }
worse = { "pretrain.enabled" = false }
"""


@pytest.mark.slow
def test_experiment_runs_end_to_end_and_reuses_stages(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MASKBENCH_PROGRESS", "0")
    spec = tmp_path / "mini.toml"
    spec.write_text(MINI_SPEC)
    out = tmp_path / "out"
    assert main(["experiment", "run", str(spec), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "synth-sentiment" in printed and "report:" in printed
    index = json.loads((out / "experiment.json").read_text())
    assert index["stages_failed"] == 0 and index["stages_run"] == 1 + 2 + 2 * 2 + 2
    html = (out / "report.html").read_text()
    assert "not pretrained" in html and "MLM 40%" in html and "data:image/png;base64," in html
    assert not re.search(r"""(src|href)\s*=\s*["']?https?://""", html)
    md = (out / "report.md").read_text()
    assert "pretraining helps" in md and "## Machine" in md
    assert list(out.glob("stages/attention/*/attention.html")) and list(out.glob("stages/heads/*/heads.png"))

    assert main(["experiment", "run", str(spec), "--out", str(out), "--quiet"]) == 0
    again = json.loads((out / "experiment.json").read_text())
    assert again["stages_run"] == 0 and again["stages_reused"] == index["stages_run"]
    assert main(["experiment", "report", str(out)]) == 0


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["experiment", "run", "mask-rates", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'mask-rate'" in err and err.count("\n") == 1
    bad = tmp_path / "bad.toml"
    bad.write_text(MINI_SPEC.replace('"pretrain.objective.mask_rate"', '"pretrain.objective.mask_rat"'))
    assert main(["experiment", "run", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "mask_rat" in capsys.readouterr().err
    assert main(["experiment", "report", str(tmp_path / "nothing")]) == 2
    assert "not an experiment folder" in capsys.readouterr().err


def test_experiment_list_shows_every_preset(capsys):
    assert main(["experiment", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("mask-rate", "t5-objectives", "albert", "child-tuning", "demo"):
        assert name in out


def test_dry_run_prints_the_resolved_recipe_and_runs_nothing(tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["experiment", "run", "child-tuning", "--scale", "paper", "--dry-run", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert not out.exists()
    assert "12 cells" in text and 'fisher_scope = "layers"' in text and "fisher_per_seed = true" in text
    assert "[finetune.l2sp]" in text and "weight_decay = 0.0" in text  # defaults are filled in


def test_child_tuning_paper_scale_is_the_papers_recipe():
    """CoLA, RTE, MRPC, STS-B with the authors' p per task, the lr grid, 10 seeds, run.sh's settings; no
    scale fine-tunes on WNLI (every method sits at chance there)."""
    from maskbench.experiments.spec import load_spec
    from maskbench.experiments.stages import validate_config

    spec = load_spec("child-tuning")
    cells = [validate_config(c.config) for c in spec.resolve("paper")]
    runs = {(tuple(c["finetune"]["tasks"]), c["finetune"]["lr"]): c["finetune"] for c in cells}
    assert sorted({t for t, _ in runs}) == [("CoLA",), ("MRPC",), ("RTE",), ("STS-B",)]
    assert sorted({lr for _, lr in runs}) == [1e-5, 2e-5, 4e-5] and len(runs) == 12
    p = {t[0]: (ft["child"]["p_f"], ft["child"]["p_d"]) for (t, _), ft in runs.items()}
    assert p == {"CoLA": (0.2, 0.2), "RTE": (0.3, 0.3), "MRPC": (0.4, 0.1), "STS-B": (0.2, 0.2)}
    for ft in runs.values():
        assert ft["seeds"] == list(range(10)) and ft["batch_size"] == 16 and ft["epochs"] == 3
        assert ft["warmup"] == 0.1 and ft["weight_decay"] == 0.01 and ft["max_length"] == 128
        assert set(ft["methods"]) == {"vanilla", "child_f", "child_d", "l2sp", "mixout"}
    assert {c["pretrain"]["model_path"] for c in cells} == {"bert-large-cased"}
    for scale in ("tiny", "small"):
        tasks = {t for c in spec.resolve(scale) for t in c.config["finetune"]["tasks"]}
        assert tasks and "WNLI" not in tasks and "RTE" not in tasks, scale


def test_albert_paper_scale_is_albert_s_recipe():
    """LAMB as ALBERT's optimization.py, n-gram masking, SOP with short sequences, and the Table 5 claims."""
    from maskbench.experiments.spec import load_spec
    from maskbench.experiments.stages import validate_config

    spec = load_spec("albert")
    cells = [validate_config(c.config)["pretrain"] for c in spec.resolve("paper")]
    for pre in cells:
        assert pre["optim"] == {"name": "lamb", "lr": 0.00176, "betas": [0.9, 0.999], "eps": 1e-6,
                                "weight_decay": 0.01, "exclude_norm_and_bias": True, "grad_clip": 1.0,
                                "lamb_bias_correction": False}
        assert pre["schedule"]["warmup_steps"] == 3125 and pre["schedule"]["decay"] == "linear"
        assert pre["objective"]["unit"] == "ngram" and pre["objective"]["max_ngram"] == 3
        assert pre["data"]["short_seq_prob"] == 0.1 and pre["budget"]["steps"] == 125000
    assert {p["objective"]["name"] for p in cells} == {"mlm", "nsp", "sop"}
    metrics = {c.metric for c in spec.claims}
    assert {"pretrain.val_sop_pairs_accuracy", "pretrain.val_nsp_pairs_accuracy"} <= metrics


def _damaged_model_folder(folder, damage: str):
    from maskbench.models.checkpoint import save_model
    from maskbench.models.encoder import EncoderConfig, EncoderModel

    save_model(EncoderModel(EncoderConfig(vocab_size=200, hidden_size=16, num_layers=1, num_heads=2,
                                          intermediate_size=32, max_positions=32)), folder)
    meta = json.loads((folder / "config.json").read_text())
    if damage == "no config":
        del meta["config"]
    elif damage == "config not a table":
        meta["config"] = [1, 2]
    elif damage == "bad value":
        meta["config"]["hidden_size"] = "wide"
    (folder / "config.json").write_text("{torn" if damage == "not json" else json.dumps(meta))
    return folder


@pytest.mark.parametrize("damage,message", [("no config", "lacks 'config'"),
                                            ("config not a table", "'config' is not a table"),
                                            ("not json", "cannot read"), ("bad value", "hidden_size")])
def test_a_damaged_model_folder_is_one_line_before_anything_runs(tmp_path, capsys, damage, message):
    model = _damaged_model_folder(tmp_path / "model", damage)
    spec = tmp_path / "mini.toml"
    spec.write_text(MINI_SPEC)
    out = tmp_path / "out"
    assert main(["experiment", "run", str(spec), "--out", str(out), "--quiet",
                 "--set", f"pretrain.model_path={model}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("maskbench: error: pretrain.model_path: ") and message in err and err.count("\n") == 1
    assert not out.exists()


@pytest.mark.parametrize("damage,message", [("no config", "lacks 'config'"), ("not json", "cannot read")])
def test_a_damaged_stage_model_folder_fails_its_stage_in_one_line(tmp_path, damage, message):
    """The pretrain stage counts parameters from its run's model/config.json: damage there is a
    CheckpointError naming the file (one line in the failure list), never a KeyError."""
    from maskbench.errors import CheckpointError
    from maskbench.experiments.stages import _parameter_counts

    model = _damaged_model_folder(tmp_path / "run" / "model", damage)
    with pytest.raises(CheckpointError, match=message) as caught:
        _parameter_counts(model)
    assert str(model / "config.json") in str(caught.value) and "\n" not in str(caught.value)
