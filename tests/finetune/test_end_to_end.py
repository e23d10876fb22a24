"""The command end to end on tiny models: real RTE, a synthetic task, a saved checkpoint, and every bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from maskbench.cli import main
from maskbench.data.synth import write_tasks
from maskbench.data.tokenizer import save_tokenizer, train_tokenizer
from maskbench.finetune import finetune
from maskbench.finetune.config import FinetuneConfig, size_defaults
from maskbench.models.checkpoint import save_model
from maskbench.models.encoder import EncoderConfig
from maskbench.models.heads import EncoderForPretraining

QUICK = ["--set", "max_length=32", "--set", "max_steps=3", "--set", "eval_batch_size=256", "--no-progress"]


@pytest.fixture(scope="module")
def synth_task(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    write_tasks(root / "tasks", seed=0, train=64, dev=32, test=16, tasks=("synth-agreement",))
    return root / "tasks" / "synth-agreement"


@pytest.fixture(scope="module")
def tokenizer_path(tmp_path_factory, synth_task) -> Path:
    from maskbench.data.glue import load_task

    path = tmp_path_factory.mktemp("tok") / "tok.json"
    train_tokenizer([], "wordpiece", 300, path, texts=load_task(synth_task).splits["train"].text_a)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tokenizer_path) -> Path:
    """A tiny 'pretrained' model folder with its tokenizer, as `pretrain` leaves in RUN/model/."""
    from maskbench.data.tokenizer import load_tokenizer

    tok = load_tokenizer(tokenizer_path)
    config = EncoderConfig(vocab_size=tok.get_vocab_size(), hidden_size=16, num_layers=2, num_heads=2,
                           intermediate_size=32, max_positions=64)
    folder = tmp_path_factory.mktemp("ckpt") / "model"
    save_model(EncoderForPretraining(config, "nsp", torch.Generator().manual_seed(0)), folder)
    save_tokenizer(tok, folder / "tokenizer.json")
    return folder


def test_cli_on_real_wnli_with_a_random_tiny_model(tmp_path, shared_data, tokenizer_path, capsys):
    out = tmp_path / "wnli"
    code = main(["finetune", "--task", "WNLI", "--data", str(shared_data / "glue"), "--checkpoint", "random:bert-tiny",
                 "--tokenizer", str(tokenizer_path), "--method", "vanilla", "--method", "child_f", "--seeds", "0",
                 "--set", "max_train_examples=64", "--set", "batch_size=16", "--out", str(out), *QUICK])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["methods"]) == {"vanilla", "child_f"}
    assert summary["task"] == "WNLI" and summary["metrics"] == ["accuracy"]
    lines = (out / "vanilla" / "seed-0" / "WNLI.tsv").read_text().splitlines()
    assert lines[0] == "index\tprediction" and len(lines) == 147
    assert {line.split("\t")[1] for line in lines[1:]} <= {"0", "1"}
    assert [int(line.split("\t")[0]) for line in lines[1:4]] == [0, 1, 2]
    records = [json.loads(x) for x in (out / "child_f" / "seed-0" / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 3 and "accuracy" in records[-1]["dev"]
    best = json.loads((out / "child_f" / "seed-0" / "best.json").read_text())
    assert best["lr"] == pytest.approx(size_defaults(128).lr) == pytest.approx(1e-3)  # bert-tiny's default (H = 128)
    assert "| child_f | 1 |" in capsys.readouterr().out
    assert (out / "config.toml").is_file()


def test_python_api_on_a_synthetic_task_from_a_checkpoint(tmp_path, synth_task, checkpoint):
    cfg = FinetuneConfig(task=str(synth_task), checkpoint=str(checkpoint), methods=["vanilla", "child_d"],
                         seeds=[0, 1], epochs=2, batch_size=16, max_length=32, progress=False)
    summary = finetune(cfg, tmp_path / "out")
    assert summary["metrics"] == ["matthews", "accuracy"]
    fisher = summary["methods"]["child_d"]["fisher"]
    assert fisher["examples"] == 64 and fisher["scope"] == "layers" and fisher["mode"] == "train"
    assert abs(fisher["kept"] - 0.3 * fisher["total"]) <= 0.01 * fisher["total"]
    best = json.loads((tmp_path / "out" / "child_d" / "seed-1" / "best.json").read_text())
    assert best["steps"] == 8 and best["best_epoch"] in (1, 2)
    assert (tmp_path / "out" / "child_d" / "seed-1" / "synth-agreement.tsv").is_file()
    # a second call into the same folder with another method reuses the finished runs
    summary = finetune(cfg, tmp_path / "out", methods=["l2sp"])
    assert set(summary["methods"]) == {"vanilla", "child_d", "l2sp"}
    assert "l2sp" in summary["vs_vanilla"]


def test_child_tuning_with_p_one_equals_vanilla_through_the_whole_run(tmp_path, synth_task, checkpoint):
    cfg = FinetuneConfig(task=str(synth_task), checkpoint=str(checkpoint), methods=["vanilla", "child_f", "child_d"],
                         seeds=[0], max_steps=3, batch_size=16, max_length=32, progress=False)
    cfg.child.p_f = cfg.child.p_d = 1.0
    finetune(cfg, tmp_path)
    files = {m: (tmp_path / m / "seed-0" / "synth-agreement.tsv").read_bytes() for m in cfg.methods}
    metrics = {m: [{k: v for k, v in json.loads(line).items() if k != "seconds"}
                   for line in (tmp_path / m / "seed-0" / "metrics.jsonl").read_text().splitlines()]
               for m in cfg.methods}
    assert files["child_f"] == files["vanilla"] == files["child_d"]
    assert metrics["child_f"] == metrics["vanilla"] == metrics["child_d"]


def test_l2sp_adds_no_weight_decay_unless_asked(tmp_path, synth_task, checkpoint):
    """L2-SP with a zero penalty is vanilla fine-tuning without weight decay, whatever `weight_decay` says."""
    base = dict(task=str(synth_task), checkpoint=str(checkpoint), seeds=[0], max_steps=3, batch_size=16,
                max_length=32, progress=False, lr=1e-2)
    l2sp = FinetuneConfig(**base, methods=["l2sp"], weight_decay=0.5)
    l2sp.l2sp.alpha = l2sp.l2sp.head_alpha = 0.0
    finetune(l2sp, tmp_path / "l2sp")
    finetune(FinetuneConfig(**base, methods=["vanilla"], weight_decay=0.0), tmp_path / "plain")
    finetune(FinetuneConfig(**base, methods=["vanilla"], weight_decay=0.5), tmp_path / "decayed")
    read = lambda folder, m: (tmp_path / folder / m / "seed-0" / "synth-agreement.tsv").read_bytes()  # noqa: E731
    logs = lambda folder, m: [json.loads(x)["train_loss"] for x in  # noqa: E731
                              (tmp_path / folder / m / "seed-0" / "metrics.jsonl").read_text().splitlines()]
    assert read("l2sp", "l2sp") == read("plain", "vanilla") and logs("l2sp", "l2sp") == logs("plain", "vanilla")
    asked = FinetuneConfig(**base, methods=["l2sp"], weight_decay=0.0)
    asked.l2sp.alpha = asked.l2sp.head_alpha = 0.0
    asked.l2sp.weight_decay = 0.5
    finetune(asked, tmp_path / "asked")
    assert read("asked", "l2sp") == read("decayed", "vanilla")


def test_parallel_jobs_give_the_same_result_as_sequential(tmp_path, synth_task, checkpoint):
    base = dict(task=str(synth_task), checkpoint=str(checkpoint), methods=["mixout"], seeds=[3, 4], max_steps=2,
                batch_size=16, max_length=32, progress=False)
    one = finetune(FinetuneConfig(**base), tmp_path / "one")
    two = finetune(FinetuneConfig(**base, jobs=2), tmp_path / "two")
    assert one["methods"]["mixout"]["score"] == two["methods"]["mixout"]["score"]


def _fails(capsys, args, out: Path, match: str) -> None:
    assert main(args + ["--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("maskbench: error:") and match in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_bad_inputs_exit_2_and_write_nothing(tmp_path, capsys, synth_task, checkpoint, tokenizer_path):
    base = ["finetune", "--checkpoint", str(checkpoint), "--task", str(synth_task)]
    # p_f / p_d outside (0, 1]
    _fails(capsys, base + ["--method", "child_f", "--set", "child.p_f=0"], tmp_path / "a", "child.p_f")
    _fails(capsys, base + ["--method", "child_d", "--set", "child.p_d=1.5"], tmp_path / "b", "child.p_d")
    # a task folder missing a split
    broken = tmp_path / "no-dev"
    shutil.copytree(synth_task, broken)
    (broken / "dev.tsv").unlink()
    spec = json.loads((broken / "task.json").read_text())
    spec["splits"].pop("dev")
    (broken / "task.json").write_text(json.dumps(spec))
    _fails(capsys, ["finetune", "--checkpoint", str(checkpoint), "--task", str(broken)], tmp_path / "c", "dev")
    # labels outside the label set
    bad_labels = tmp_path / "bad-labels"
    shutil.copytree(synth_task, bad_labels)
    text = (bad_labels / "train.tsv").read_text().splitlines()
    text[3] = text[3].rsplit("\t", 1)[0] + "\t7"
    (bad_labels / "train.tsv").write_text("\n".join(text) + "\n")
    _fails(capsys, ["finetune", "--checkpoint", str(checkpoint), "--task", str(bad_labels)], tmp_path / "d", "7")
    # a regression task with a classification head
    regression = tmp_path / "regression"
    shutil.copytree(synth_task, regression)
    spec = json.loads((regression / "task.json").read_text())
    spec.update(regression=True, label_names=None, metrics=["pearson"])
    (regression / "task.json").write_text(json.dumps(spec))
    _fails(capsys, ["finetune", "--checkpoint", str(checkpoint), "--task", str(regression), "--set",
                    "head=classification"], tmp_path / "e", "regression")
    # a checkpoint whose vocabulary differs from the tokenizer
    other = tmp_path / "tok-small.json"
    train_tokenizer([], "wordpiece", 150, other, texts=["a few words for a small vocabulary"] * 10)
    _fails(capsys, base + ["--tokenizer", str(other)], tmp_path / "f", "vocabulary")


def test_mnli_evaluates_both_dev_splits_and_writes_matched_mismatched_and_ax(tmp_path, checkpoint):
    glue = tmp_path / "glue"
    (glue / "MNLI").mkdir(parents=True)
    (glue / "diagnostic").mkdir()
    labels = ["entailment", "neutral", "contradiction"]
    words = ["the cat sat", "a dog ran", "some birds sing", "the sun is hot", "rain falls down", "kids play"]

    def write(path, n, labelled, header=("index", "genre", "sentence1", "sentence2")):
        rows = ["\t".join(header + (("gold_label",) if labelled else ()))]
        for i in range(n):
            cells = [str(i), "fiction", words[i % 6], words[(i * 5 + 1) % 6]]
            rows.append("\t".join(cells + ([labels[i % 3]] if labelled else [])))
        path.write_text("\n".join(rows) + "\n")

    write(glue / "MNLI" / "train.tsv", 24, True)
    for name in ("dev_matched", "dev_mismatched"):
        write(glue / "MNLI" / f"{name}.tsv", 9, True)
    for name in ("test_matched", "test_mismatched"):
        write(glue / "MNLI" / f"{name}.tsv", 5, False)
    (glue / "diagnostic" / "diagnostic.tsv").write_text(
        "index\tsentence1\tsentence2\n0\tthe cat sat\ta dog ran\n1\tkids play\train falls down\n")
    cfg = FinetuneConfig(task="MNLI", data=str(glue), checkpoint=str(checkpoint), methods=["vanilla"], seeds=[0],
                         max_steps=2, batch_size=8, max_length=32, progress=False)
    summary = finetune(cfg, tmp_path / "out")
    assert summary["dev_splits"] == ["dev", "dev_mismatched"]
    seed_dir = tmp_path / "out" / "vanilla" / "seed-0"
    best = json.loads((seed_dir / "best.json").read_text())
    assert set(best["predictions"].values()) == {"MNLI-m.tsv", "MNLI-mm.tsv", "AX.tsv"}
    assert "accuracy" in best["dev_mismatched"]
    ax = (seed_dir / "AX.tsv").read_text().splitlines()
    assert ax[0] == "index\tprediction" and len(ax) == 3 and ax[1].split("\t")[1] in labels


def test_unset_hyperparameters_take_the_size_defaults_and_say_so(tmp_path, synth_task, checkpoint, capsys):
    """H = 16 falls in the bert-tiny band: lr 1e-3, 5 epochs, 10% warm-up, with the source printed and kept."""
    from maskbench.finetune.config import SIZE_DEFAULTS, size_defaults

    assert FinetuneConfig().device == "auto"
    assert [size_defaults(h).lr for h in (128, 256, 512, 768, 1024)] == [1e-3, 3e-4, 1e-4, 2e-5, 2e-5]
    assert all(d.source for _, d in SIZE_DEFAULTS)
    cfg = FinetuneConfig(task=str(synth_task), checkpoint=str(checkpoint), seeds=[0], batch_size=32,
                         max_length=32, progress=False)
    summary = finetune(cfg, tmp_path / "out")
    assert (summary["lr"], summary["epochs"], summary["warmup"]) == (1e-3, 5.0, 0.1)
    best = json.loads((tmp_path / "out" / "vanilla" / "seed-0" / "best.json").read_text())
    assert best["steps"] == 10  # 5 epochs of 2 batches
    note = capsys.readouterr().err
    assert "defaults for hidden size 16: lr = 0.001, epochs = 5, warmup = 0.1 (source: maskbench's runs" in note
    written = (tmp_path / "out" / "config.toml").read_text()
    assert written.startswith("# defaults for hidden size 16") and "lr = 0.001" in written
    given = FinetuneConfig(task=str(synth_task), checkpoint=str(checkpoint), seeds=[0], batch_size=32,
                           max_length=32, progress=False, lr=5e-4, epochs=1, warmup=0.0)
    assert finetune(given, tmp_path / "given")["lr"] == 5e-4
    assert "defaults for hidden size" not in capsys.readouterr().err


def test_a_diverging_seed_fails_on_one_line_and_never_gets_a_score(tmp_path, synth_task, checkpoint, capsys):
    out = tmp_path / "ft"
    code = main(["finetune", "--task", str(synth_task), "--checkpoint", str(checkpoint), "--method", "vanilla",
                 "--seeds", "0", "--set", "lr=1e30", "--out", str(out), *QUICK])
    captured = capsys.readouterr()
    assert code == 1
    lines = [line for line in captured.err.splitlines() if "failed" in line]
    assert len(lines) == 1 and lines[0].startswith("maskbench: vanilla seed 0 failed: the training loss became")
    summary = json.loads((out / "summary.json").read_text())
    assert "vanilla" not in summary["methods"] and "loss became" in summary["failed"]["vanilla"]["0"]
    assert "| vanilla | 0 | failed |" in captured.out and "vanilla seed 0 FAILED, no score" in captured.out
    assert not (out / "vanilla" / "seed-0").exists()


def test_finetune_refuses_a_folder_holding_other_files(tmp_path, synth_task, checkpoint, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.md").write_text("mine")
    code = main(["finetune", "--task", str(synth_task), "--checkpoint", str(checkpoint), "--method", "vanilla",
                 "--seeds", "0", "--out", str(out), *QUICK])
    assert code == 2 and "maskbench did not write" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.md"]


def test_a_running_finetune_locks_its_folder(tmp_path, synth_task, checkpoint, capsys):
    """A second process adding seeds to a folder that a fine-tuning holds is refused in one line; the lock
    goes with its holder."""
    from maskbench.io import run_lock

    out = tmp_path / "ft"
    args = ["finetune", "--task", str(synth_task), "--checkpoint", str(checkpoint), "--method", "vanilla",
            "--out", str(out), *QUICK]
    assert main([*args, "--seeds", "0"]) == 0
    capsys.readouterr()
    with run_lock(out):
        assert main([*args, "--seeds", "0,1"]) == 2
        err = capsys.readouterr().err
        assert "in use by another maskbench process" in err and err.count("\n") == 1
        assert not (out / "vanilla" / "seed-1").exists()
    assert main([*args, "--seeds", "0,1"]) == 0 and (out / "vanilla" / "seed-1" / "best.json").is_file()


def test_the_documented_size_defaults_are_the_codes():
    """docs/finetuning.md's table of default hyper-parameters per size says what SIZE_DEFAULTS holds."""
    import re

    from maskbench.finetune.config import SIZE_DEFAULTS

    doc = (Path(__file__).resolve().parents[2] / "docs" / "finetuning.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| ([≤>]) (\d+) \| [^|]+ \| ([\d.e-]+) \| (\d+) \| (\d+)% \|", doc, re.M)
    assert len(rows) == len(SIZE_DEFAULTS)
    for (sign, width, lr, epochs, warmup), (limit, defaults) in zip(rows, SIZE_DEFAULTS):
        assert (float(width) == limit) if sign == "≤" else (limit == float("inf") and int(width) == 512)
        assert (float(lr), float(epochs), float(warmup) / 100) == (defaults.lr, defaults.epochs, defaults.warmup)
