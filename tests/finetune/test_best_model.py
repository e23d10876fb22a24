"""Each run's best model is a Hugging Face folder: AutoModelForSequenceClassification reproduces the dev score;
fine-tuning, Child-Tuning and the attention view work on RoBERTa and ELECTRA checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from maskbench.cli import main  # noqa: E402
from maskbench.data.glue import load_task  # noqa: E402
from maskbench.data.synth import write_tasks  # noqa: E402
from maskbench.data.tokenizer import save_tokenizer, train_tokenizer  # noqa: E402
from maskbench.models.checkpoint import save_model  # noqa: E402
from maskbench.models.encoder import EncoderConfig  # noqa: E402
from maskbench.models.heads import EncoderForPretraining  # noqa: E402

QUICK = ["--set", "max_length=32", "--set", "max_steps=4", "--set", "batch_size=16", "--no-progress", "--seeds", "0"]


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    write_tasks(root / "tasks", seed=0, train=64, dev=32, test=16, tasks=("synth-agreement",))
    return root / "tasks" / "synth-agreement"


def _hf_dev_accuracy(model_dir: Path, task: Path) -> float:
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    dev = load_task(task).splits["dev"]
    pairs = [dev.text_a, dev.text_b] if dev.text_b is not None else [dev.text_a]
    encoded = tokenizer(*pairs, truncation=True, max_length=32, padding=True, return_tensors="pt")
    with torch.no_grad():
        predictions = model(**encoded).logits.argmax(-1).numpy()
    return float(np.mean(predictions == np.asarray(dev.labels)))


def test_best_model_loads_with_auto_classes_and_scores_the_same(tmp_path, task):
    tokenizer = train_tokenizer([], "wordpiece", 300, tmp_path / "tok.json",
                                texts=load_task(task).splits["train"].text_a)
    config = EncoderConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=16, num_layers=2, num_heads=2,
                           intermediate_size=32, max_positions=64)
    save_model(EncoderForPretraining(config, None, torch.Generator().manual_seed(0)), tmp_path / "ckpt")
    save_tokenizer(tokenizer, tmp_path / "ckpt" / "tokenizer.json")
    assert main(["finetune", "--task", str(task), "--checkpoint", str(tmp_path / "ckpt"), "--method", "child_d",
                 "--out", str(tmp_path / "ft"), *QUICK]) == 0
    seed = tmp_path / "ft" / "child_d" / "seed-0"
    best = json.loads((seed / "best.json").read_text())
    assert best["model_format"] == "hf"
    assert json.loads((seed / "model" / "config.json").read_text())["architectures"] == ["BertForSequenceClassification"]
    assert _hf_dev_accuracy(seed / "model", task) == pytest.approx(best["dev"]["accuracy"])


def _roberta_folder(folder: Path, texts: list[str]) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, special_tokens=["<s>", "<pad>", "</s>", "<unk>",
                                                                                       "<mask>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")))
    fast = transformers.RobertaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                             unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
                                             sep_token="</s>", cls_token="<s>")
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = transformers.RobertaConfig(vocab_size=tok.get_vocab_size(), hidden_size=16, num_hidden_layers=2,
                                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=66,
                                        type_vocab_size=1, pad_token_id=1)
    transformers.RobertaForMaskedLM(config).save_pretrained(folder)


def test_roberta_checkpoint_fine_tunes_with_child_tuning_into_a_roberta_classifier(tmp_path, task):
    _roberta_folder(tmp_path / "roberta", load_task(task).splits["train"].text_a)
    assert main(["finetune", "--task", str(task), "--checkpoint", str(tmp_path / "roberta"), "--method",
                 "child_f,child_d", "--out", str(tmp_path / "ft"), *QUICK]) == 0
    seed = tmp_path / "ft" / "child_d" / "seed-0"
    best = json.loads((seed / "best.json").read_text())
    model = transformers.AutoModelForSequenceClassification.from_pretrained(seed / "model")
    assert type(model).__name__ == "RobertaForSequenceClassification"
    assert _hf_dev_accuracy(seed / "model", task) == pytest.approx(best["dev"]["accuracy"])
    assert main(["attention", "--checkpoint", str(tmp_path / "roberta"), "--text", "the cat", "--pair", "a dog",
                 "--out", str(tmp_path / "attention.html")]) == 0
    assert (tmp_path / "attention.html").stat().st_size > 0


def test_electra_discriminator_fine_tunes(tmp_path, task):
    tokenizer = train_tokenizer([], "wordpiece", 300, tmp_path / "tok.json",
                                texts=load_task(task).splits["train"].text_a)
    torch.manual_seed(0)
    config = transformers.ElectraConfig(vocab_size=tokenizer.get_vocab_size(), embedding_size=8, hidden_size=16,
                                        num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                                        max_position_embeddings=64)
    transformers.ElectraForPreTraining(config).save_pretrained(tmp_path / "electra")
    save_tokenizer(tokenizer, tmp_path / "electra" / "tokenizer.json")
    assert main(["finetune", "--task", str(task), "--checkpoint", str(tmp_path / "electra"), "--method", "child_d",
                 "--out", str(tmp_path / "ft"), *QUICK]) == 0
    best = json.loads((tmp_path / "ft" / "child_d" / "seed-0" / "best.json").read_text())
    assert best["model_format"] == "hf"  # an ALBERT-style (factorized) classifier: ELECTRA's head differs
    assert _hf_dev_accuracy(tmp_path / "ft" / "child_d" / "seed-0" / "model", task) == pytest.approx(
        best["dev"]["accuracy"])
    assert main(["attention", "--checkpoint", str(tmp_path / "electra"), "--text", "the cat", "--pair", "a dog",
                 "--out", str(tmp_path / "attention.html")]) == 0
    assert (tmp_path / "attention.html").stat().st_size > 0


def test_fine_tuning_writes_tensorboard_events_and_plain_progress(tmp_path, task, capsys):
    pytest.importorskip("tensorboard")
    tokenizer = train_tokenizer([], "wordpiece", 300, tmp_path / "tok.json",
                                texts=load_task(task).splits["train"].text_a)
    args = ["finetune", "--task", str(task), "--checkpoint", "random:bert-tiny", "--tokenizer", str(tmp_path / "tok.json"),
            "--out", str(tmp_path / "ft"), *[a for a in QUICK if a != "--no-progress"]]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "vanilla seed 0 epoch 1:" in err
    events = list((tmp_path / "ft" / "vanilla" / "seed-0" / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    assert tokenizer.get_vocab_size() > 0
