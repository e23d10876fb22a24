"""Text-to-text fine-tuning end to end: a tiny encoder-decoder learns a synthetic task, scores, files, export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from maskbench.data.synth import write_tasks
from maskbench.data.tokenizer import save_tokenizer, train_tokenizer
from maskbench.finetune import finetune
from maskbench.finetune.config import FinetuneConfig, MixtureConfig
from maskbench.models.checkpoint import save_model
from maskbench.models.encoder_decoder import EncoderDecoderConfig, EncoderDecoderModel


@pytest.fixture(scope="module")
def sentiment(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    write_tasks(root / "tasks", seed=0, train=600, dev=120, test=24, tasks=("synth-sentiment",))
    return root / "tasks" / "synth-sentiment"


def _write_keyword_task(folder: Path, seed: int = 0) -> Path:
    """A toy GLUE-format task: label `yes` when the word `red` occurs in the sentence (chance: 50%)."""
    rng = np.random.default_rng(seed)
    words = ["blue", "green", "cat", "dog", "runs", "sleeps", "the", "a", "big", "small", "old", "new"]
    folder.mkdir(parents=True)
    for split, size in (("train", 400), ("dev", 100), ("test", 20)):
        rows = []
        for i in range(size):
            sentence = list(rng.choice(words, size=rng.integers(4, 9)))
            label = "yes" if i % 2 == 0 else "no"
            if label == "yes":
                sentence[rng.integers(len(sentence))] = "red"
            rows.append((" ".join(sentence), label))
        header = "index\tsentence" if split == "test" else "sentence\tlabel"
        lines = [f"{i}\t{s}" if split == "test" else f"{s}\t{y}" for i, (s, y) in enumerate(rows)]
        (folder / f"{split}.tsv").write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def keyword(tmp_path_factory) -> Path:
    return _write_keyword_task(tmp_path_factory.mktemp("toy") / "keyword")


@pytest.fixture(scope="module")
def t5_checkpoint(tmp_path_factory, sentiment) -> Path:
    """A tiny, untrained encoder-decoder folder with its tokenizer (the label words are in its training text)."""
    from maskbench.data.glue import load_task
    from maskbench.data.tokenizer import load_tokenizer, special_ids

    path = tmp_path_factory.mktemp("tok") / "tok.json"
    texts = load_task(sentiment).splits["train"].text_a + ["negative positive sentence keyword yes no red"] * 5
    train_tokenizer([], "wordpiece", 400, path, texts=texts)
    tok = load_tokenizer(path)
    special = special_ids(tok)
    config = EncoderDecoderConfig(vocab_size=tok.get_vocab_size(), d_model=32, d_kv=8, d_ff=64, num_layers=2,
                                  num_heads=4, dropout=0.0, pad_id=special.pad, eos_id=special.eos)
    folder = tmp_path_factory.mktemp("ckpt") / "model"
    save_model(EncoderDecoderModel(config, torch.Generator().manual_seed(0)), folder)
    save_tokenizer(tok, folder / "tokenizer.json")
    return folder


@pytest.mark.slow
def test_tiny_encoder_decoder_learns_a_synthetic_task_text_to_text(tmp_path, keyword, t5_checkpoint):
    cfg = FinetuneConfig(task=str(keyword), checkpoint=str(t5_checkpoint), seeds=[0], epochs=4, batch_size=16,
                         max_length=24, lr=3e-3, warmup=0.05, progress=False)
    summary = finetune(cfg, tmp_path / "out")
    best = json.loads((tmp_path / "out" / "vanilla" / "seed-0" / "best.json").read_text())
    assert best["dev"]["accuracy"] >= 0.8, best["dev"]  # chance is 0.5 (balanced classes)
    assert best["text_to_text"]["prefix"] == "keyword"
    assert best["text_to_text"]["targets"] == ["no", "yes"]
    assert "invalid" in best["dev"]
    lines = (tmp_path / "out" / "vanilla" / "seed-0" / "keyword.tsv").read_text().splitlines()
    assert lines[0] == "index\tprediction" and len(lines) == 21
    assert {line.split("\t")[1] for line in lines[1:]} <= {"no", "yes"}
    assert summary["methods"]["vanilla"]["score"]["mean"] == pytest.approx(best["score"])

    # the run's saved model is a Hugging Face T5 folder; maskbench reads it back (imported on the fly)
    transformers = pytest.importorskip("transformers")
    from maskbench.finetune.seeds import prepared
    from maskbench.models import load_model

    hf_dir = tmp_path / "out" / "vanilla" / "seed-0" / "model"
    assert best["model_format"] == "hf"
    model = load_model(hf_dir).eval()
    prep = prepared(cfg)
    dev = prep.splits["dev"]
    assert prep.text_to_text.evaluate(model, dev, prep.metric_names, 64, torch.device("cpu"))["score"] == \
        pytest.approx(best["score"])

    # rank classification scores the same model without invalid outputs
    rank_predictions, invalid = prep.text_to_text.predictions(model, dev, 64, torch.device("cpu"), scoring="rank")
    assert invalid == 0 and np.mean(rank_predictions == dev.labels) >= 0.8

    # transformers' generate writes the same label words
    hf_model = transformers.T5ForConditionalGeneration.from_pretrained(str(hf_dir)).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(hf_dir))
    rows = np.arange(16)
    batch = dev.inputs(rows, prep.pad_id)
    ours = model.generate(batch["input_ids"], batch["attention_mask"], max_new_tokens=prep.text_to_text.max_new_tokens)
    with torch.no_grad():
        theirs = hf_model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                   max_new_tokens=prep.text_to_text.max_new_tokens, do_sample=False, num_beams=1)
    theirs = theirs[:, 1:]  # drop the decoder start token
    words = [hf_tok.decode(t, skip_special_tokens=True).replace(" ", "") for t in theirs]
    ours_words = [prep.text_to_text.words[int(i)] if i >= 0 else None
                  for i in prep.text_to_text.predictions(model, dev.subset(rows), 16, torch.device("cpu"))[0]]
    assert [w.replace("_", "") if w else w for w in ours_words] == [w.replace("_", "") for w in words]
    assert torch.equal(ours[:, :theirs.shape[1]], theirs[:, :ours.shape[1]])


def test_child_tuning_l2sp_and_mixout_run_on_an_encoder_decoder(tmp_path, sentiment, t5_checkpoint):
    cfg = FinetuneConfig(task=str(sentiment), checkpoint=str(t5_checkpoint), seeds=[0],
                         methods=["vanilla", "child_f", "child_d", "l2sp", "mixout"], max_steps=2, batch_size=8,
                         max_length=32, eval_batch_size=256, max_train_examples=32, progress=False)
    summary = finetune(cfg, tmp_path / "out")
    assert set(summary["methods"]) == {"vanilla", "child_f", "child_d", "l2sp", "mixout"}
    fisher = summary["methods"]["child_d"]["fisher"]
    model = EncoderDecoderModel(EncoderDecoderConfig(**json.loads((t5_checkpoint / "config.json").read_text())["config"]))
    blocks = sum(p.numel() for name, p in model.named_parameters() if ".block." in name)  # the default "layers" scope
    assert blocks < sum(p.numel() for p in model.parameters())
    assert fisher["total"] == blocks and abs(fisher["kept"] - 0.3 * blocks) <= 0.01 * blocks


def test_rank_scoring_never_reports_invalid(tmp_path, sentiment, t5_checkpoint):
    cfg = FinetuneConfig(task=str(sentiment), checkpoint=str(t5_checkpoint), seeds=[0], max_steps=1, batch_size=8,
                         max_length=32, max_train_examples=16, scoring="rank", progress=False)
    finetune(cfg, tmp_path / "out")
    best = json.loads((tmp_path / "out" / "vanilla" / "seed-0" / "best.json").read_text())
    assert best["dev"]["invalid"] == 0 and best["text_to_text"]["scoring"] == "rank"


def test_text_to_text_summaries_carry_the_tasks_majority_and_bag_of_words_baselines(tmp_path, keyword, t5_checkpoint):
    """The label words stand for the task's classes: a report can tell a text-to-text score at chance."""
    from maskbench.data.glue import load_task

    cfg = FinetuneConfig(task=str(keyword), checkpoint=str(t5_checkpoint), seeds=[0], max_steps=1, batch_size=8,
                         max_length=24, scoring="rank", progress=False)
    summary = finetune(cfg, tmp_path / "out")
    _, counts = np.unique(np.asarray(load_task(keyword).splits["dev"].labels, dtype=str), return_counts=True)
    assert len(counts) == 2 and summary["baselines"]["majority"]["score"] == pytest.approx(counts.max() / counts.sum())
    assert summary["baselines"]["bag_of_words"]["score"] >= 0.95  # the word `red` decides the label


@pytest.fixture(scope="module")
def shards(tmp_path_factory, sentiment, t5_checkpoint) -> Path:
    """Pretraining shards in the checkpoint's vocabulary, for the unsupervised part of a mixture."""
    from maskbench.data.glue import load_task
    from maskbench.data.shards import prepare

    root = tmp_path_factory.mktemp("corpus")
    sentences = load_task(sentiment).splits["train"].text_a
    (root / "corpus.txt").write_text("\n\n".join("\n".join(sentences[i:i + 5]) for i in range(0, 600, 5)) + "\n")
    prepare([root / "corpus.txt"], t5_checkpoint / "tokenizer.json", root / "shards", seq_len=32, val_fraction=0.1,
            seed=0)
    return root / "shards"


@pytest.mark.parametrize("strategy,limit,temperature", [("proportional", 200, 1.0), ("temperature", None, 2.0),
                                                        ("equal", None, 1.0)])
def test_mixture_rates_rows_and_batches(tmp_path, keyword, sentiment, shards, t5_checkpoint, strategy, limit,
                                        temperature):
    from maskbench.data.mixing import mixing_rates
    from maskbench.finetune.seeds import prepared

    cfg = FinetuneConfig(task=str(keyword), checkpoint=str(t5_checkpoint), seeds=[0], max_steps=2, batch_size=32,
                         max_length=32, eval_batch_size=256, progress=False,
                         mixture=MixtureConfig(tasks=[str(sentiment)], unsupervised=True, shards=str(shards), seq_len=32,
                                               strategy=strategy, limit=limit, temperature=temperature))
    prep = prepared(cfg)
    mix = prep.splits["train"]
    sizes = {name: len(part) for name, part in mix.parts.items()}
    assert list(sizes)[:2] == ["keyword", "synth-sentiment"] and sizes["keyword"] == 400
    assert mix.rates == pytest.approx(mixing_rates(sizes, strategy, limit, temperature))
    assert len(mix) == round(400 / mix.rates["keyword"])
    shares = np.bincount(mix.part_of, minlength=3) / len(mix)
    assert shares == pytest.approx(list(mix.rates.values()), abs=0.06)
    rows = np.arange(len(mix))[:48]
    batch = mix.batch(rows, prep.pad_id)
    again = mix.batch(rows, prep.pad_id)
    assert all(torch.equal(batch[k], again[k]) for k in batch)
    assert batch["input_ids"].shape[0] == 48 and (batch["labels"] != -100).any(1).all()
    summary = finetune(cfg, tmp_path / "out")
    best = json.loads((tmp_path / "out" / "vanilla" / "seed-0" / "best.json").read_text())
    assert best["mixture"]["rates"] == pytest.approx(mix.rates)
    # the baselines are the task's own (its 400 training rows), not the mixture's
    assert summary["baselines"]["majority"]["score"] == pytest.approx(0.5)
    assert summary["baselines"]["bag_of_words"]["score"] >= 0.95


def test_mixture_needs_an_encoder_decoder(tmp_path, keyword, sentiment, t5_checkpoint):
    from maskbench.errors import ConfigError

    cfg = FinetuneConfig(task=str(keyword), checkpoint="random:bert-tiny", tokenizer=str(t5_checkpoint / "tokenizer.json"),
                         seeds=[0], mixture=MixtureConfig(tasks=[str(sentiment)]))
    with pytest.raises(ConfigError, match="multi-task mixing trains text-to-text"):
        finetune(cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists()
