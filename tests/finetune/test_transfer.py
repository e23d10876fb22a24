"""Child-Tuning's generalisation tests: domain transfer (same labels, other task) and task transfer (new head
on the frozen fine-tuned encoder), through the CLI on small synthetic tasks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from maskbench.cli import main
from maskbench.data.synth import write_tasks
from maskbench.data.tokenizer import train_tokenizer

QUICK = ["--set", "max_length=32", "--set", "max_steps=3", "--set", "eval_batch_size=256", "--no-progress",
         "--set", "batch_size=16", "--seeds", "0,1"]


@pytest.fixture(scope="module")
def tasks(tmp_path_factory) -> Path:
    """Two small synthetic tasks, and a dev-only copy of one under another name (same labels)."""
    root = tmp_path_factory.mktemp("tasks")
    write_tasks(root, seed=0, train=64, dev=32, test=16, tasks=("synth-agreement", "synth-sentiment"))
    mini = root / "mini-agreement"
    mini.mkdir()
    (mini / "dev.tsv").write_text((root / "synth-agreement" / "dev.tsv").read_text(encoding="utf-8"), encoding="utf-8")
    spec = json.loads((root / "synth-agreement" / "task.json").read_text())
    spec.update(name="mini-agreement", splits={"dev": "dev.tsv"}, sizes={"dev": 32})
    (mini / "task.json").write_text(json.dumps(spec))
    return root


@pytest.fixture(scope="module")
def tokenizer_path(tmp_path_factory, tasks) -> Path:
    from maskbench.data.glue import load_task

    path = tmp_path_factory.mktemp("tok") / "tok.json"
    texts = [t for name in ("synth-agreement", "synth-sentiment")
             for t in load_task(tasks / name).splits["train"].text_a]
    train_tokenizer([], "wordpiece", 300, path, texts=texts)
    return path


def _run(tmp_path, tasks, tokenizer_path, *extra) -> tuple[int, Path]:
    out = tmp_path / "out"
    code = main(["finetune", "--task", str(tasks / "synth-agreement"), "--checkpoint", "random:bert-tiny",
                 "--tokenizer", str(tokenizer_path), "--method", "vanilla,child_f", "--out", str(out), *QUICK, *extra])
    return code, out


@pytest.mark.slow
def test_domain_transfer_onto_the_task_itself_equals_its_own_dev_score(tmp_path, tasks, tokenizer_path):
    code, out = _run(tmp_path, tasks, tokenizer_path, "--eval-task", str(tasks / "synth-agreement"),
                     "--eval-task", str(tasks / "mini-agreement"))
    assert code == 0
    best = json.loads((out / "child_f" / "seed-1" / "best.json").read_text())
    itself = best["transfer"]["synth-agreement (domain transfer from synth-agreement)"]
    assert itself["dev"] == best["dev"] and itself["score"] == best["score"]
    other = best["transfer"]["mini-agreement (domain transfer from synth-agreement)"]
    assert other["dev"] == best["dev"]  # the same examples under another name
    summary = json.loads((out / "summary.json").read_text())
    entry = summary["transfer"]["mini-agreement (domain transfer from synth-agreement)"]
    assert len(entry["vanilla"]["values"]) == 2 and "child_f" in entry["vs_vanilla"]
    assert "## mini-agreement (domain transfer from synth-agreement)" in (out / "summary.md").read_text()


def test_domain_transfer_refuses_another_label_set(tmp_path, tasks, tokenizer_path, capsys):
    code, out = _run(tmp_path, tasks, tokenizer_path, "--eval-task", str(tasks / "synth-sentiment"))
    err = capsys.readouterr().err.strip()
    assert code == 2 and "same labels" in err and len(err.splitlines()) == 1 and not out.exists()


@pytest.mark.slow
def test_task_transfer_trains_a_new_head_on_the_frozen_encoder(tmp_path, tasks, tokenizer_path, monkeypatch):
    from maskbench.finetune import transfer

    seen = {}
    original = transfer.task_transfer

    def spy(model, target, cfg, seed, device):
        seen["encoder"] = {k: v.clone() for k, v in model.encoder.state_dict().items()}
        result = original(model, target, cfg, seed, device)
        seen["after"] = {k: v.clone() for k, v in model.encoder.state_dict().items()}
        return result

    monkeypatch.setattr(transfer, "task_transfer", spy)
    code, out = _run(tmp_path, tasks, tokenizer_path, "--transfer-task", str(tasks / "synth-sentiment"),
                     "--set", "transfer.epochs=1", "--set", "transfer.lr=1e-3")
    assert code == 0
    best = json.loads((out / "vanilla" / "seed-0" / "best.json").read_text())
    result = best["transfer"]["synth-sentiment (task transfer from synth-agreement)"]
    assert result["kind"] == "task" and result["lr"] == 1e-3 and result["steps"] == 3  # max_steps caps it
    assert 0.0 <= result["score"] <= 1.0 and "accuracy" in result["dev"]
    assert all(torch.equal(seen["encoder"][k], seen["after"][k]) for k in seen["encoder"])


def test_task_transfer_head_sees_only_the_frozen_encoder():
    """The probe's encoder is the fine-tuned one and gets no gradient; only the new head moves."""
    from maskbench.finetune.config import FinetuneConfig
    from maskbench.finetune.loop import Prepared
    from maskbench.finetune.tasks import EncodedSplit
    from maskbench.finetune.transfer import task_transfer
    from maskbench.models.encoder import EncoderConfig
    from maskbench.models.heads import EncoderForSequenceClassification
    import numpy as np

    config = EncoderConfig(vocab_size=40, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
                           max_positions=16)
    tuned = EncoderForSequenceClassification(config, 2, torch.Generator().manual_seed(1))
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 8, 40)
    ids = rng.integers(5, 40, int(lengths.sum())).astype(np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    split = EncodedSplit(ids=ids, type_ids=np.zeros_like(ids, dtype=np.int8), offsets=offsets, lengths=lengths,
                         labels=rng.integers(0, 2, 40), index=list(range(40)))
    target = Prepared(task_name="toy", task=None, splits={"train": split, "dev": split}, num_labels=2,
                      label_names=["a", "b"], metric_names=["accuracy"], model_config=config,
                      encoder_state=None, pad_id=0, lr=1e-2, checkpoint="")
    result = task_transfer(tuned, target, FinetuneConfig(batch_size=8, progress=False), seed=0, device=torch.device("cpu"))
    assert result["steps"] == 15 and result["best_epoch"] in (1, 2, 3)


def test_domain_transfer_maps_labels_by_name():
    """A target listing the same labels in another order gets the predictions' label names, not indices."""
    import dataclasses

    import numpy as np

    from maskbench.errors import ConfigError
    from maskbench.finetune.config import FinetuneConfig
    from maskbench.finetune.loop import CLASSIFICATION, Prepared
    from maskbench.finetune.tasks import EncodedSplit
    from maskbench.finetune.transfer import domain_transfer, label_order

    split = EncodedSplit(ids=np.arange(4, dtype=np.int32), type_ids=np.zeros(4, np.int8), offsets=np.arange(4),
                         lengths=np.ones(4, np.int64), labels=np.array([0, 0, 1, 2]), index=[0, 1, 2, 3])
    base = dict(task=None, splits={"dev": split}, num_labels=3, metric_names=["accuracy"], model_config=None,
                encoder_state=None, pad_id=0, lr=1.0, checkpoint="")
    fixed = dataclasses.replace(CLASSIFICATION, predict=lambda *a: np.array([2, 2, 1, 0]))  # names c, c, b, a
    source = Prepared(task_name="src", label_names=["a", "b", "c"], head=fixed, **base)
    target = Prepared(task_name="dst", label_names=["c", "b", "a"], head=fixed, **base)
    assert label_order(source, target).tolist() == [2, 1, 0]
    result = domain_transfer(None, source, target, FinetuneConfig(), "cpu")
    assert result["dev"]["accuracy"] == 1.0  # target labels 0, 0, 1, 2 are c, c, b, a
    other = Prepared(task_name="odd", label_names=["a", "b", "d"], head=fixed, **base)
    with pytest.raises(ConfigError, match="same labels"):
        label_order(source, other)
