"""A sentence head scored on held-out NSP pairs and SOP pairs (ALBERT's intrinsic table)."""

from __future__ import annotations

import numpy as np
import torch

from maskbench.data.loader import PretrainBatches
from maskbench.data.shards import Shards
from maskbench.models.encoder import EncoderConfig
from maskbench.models.heads import EncoderForPretraining
from maskbench.train.sentence_pairs import sentence_pair_accuracy


def _model(vocab: int, sentence: str | None) -> EncoderForPretraining:
    config = EncoderConfig(vocab_size=vocab, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
                           max_positions=32)
    return EncoderForPretraining(config, sentence, torch.Generator().manual_seed(0))


def test_a_head_that_always_says_in_order_scores_the_share_of_in_order_pairs(tiny_data):
    shards = Shards.open(tiny_data["shards"])
    model = _model(shards.manifest["vocab_size"], "nsp")
    with torch.no_grad():  # logits (1, 0) whatever the input: always "in order" (label 0)
        model.sentence.weight.zero_()
        model.sentence.bias.copy_(torch.tensor([1.0, 0.0]))
    scores = sentence_pair_accuracy(model, shards, seq_len=32, batch_size=4, batches=3, seed=7, split="train")
    for task in ("nsp", "sop"):
        loader = PretrainBatches(shards, "train", batch_size=4, seq_len=32, seed=7, pairs=task)
        labels = np.concatenate([loader.get(i)["sentence_label"].numpy() for i in range(min(3, len(loader)))])
        assert scores[task] == float(np.mean(labels == 0)), task
    assert model.training  # the caller's mode is restored


def test_no_sentence_head_no_scores(tiny_data):
    shards = Shards.open(tiny_data["shards"])
    assert sentence_pair_accuracy(_model(shards.manifest["vocab_size"], None), shards, seq_len=32) == {}
