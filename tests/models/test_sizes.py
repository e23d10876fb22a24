"""Parameter arithmetic from the real modules, checked against the ALBERT paper and against transformers."""

from __future__ import annotations

import pytest
import torch

from maskbench.errors import ConfigError
from maskbench.models import EncoderModel, count_parameters, named_config
from maskbench.models.sizes import NAMED_SIZES

# ALBERT (Lan et al., 2020) Table 1, vocabulary 30,000, in millions as printed. The paper's BERT rows
# leave out the [CLS] pooler, its ALBERT rows include it.
BERT_ROWS = {"bert-base": 108, "bert-large": 334}
ALBERT_ROWS = {"albert-base": 12, "albert-large": 18}
# Two entries cannot come from the architecture the paper describes (the ALBERT model cards and
# transformers give 58.7M and 222.6M): (printed, ours).
NOT_REPRODUCIBLE = {"albert-xlarge": (60, 59), "albert-xxlarge": (235, 223)}


@pytest.mark.parametrize("name,millions", BERT_ROWS.items())
def test_albert_table1_bert_rows(name, millions):
    assert round(count_parameters(named_config(name, vocab_size=30000)).without_pooler / 1e6) == millions


@pytest.mark.parametrize("name,millions", ALBERT_ROWS.items())
def test_albert_table1_albert_rows(name, millions):
    assert round(count_parameters(named_config(name, vocab_size=30000)).total / 1e6) == millions


@pytest.mark.parametrize("name,pair", NOT_REPRODUCIBLE.items())
def test_table1_entries_that_no_count_reproduces(name, pair):
    count = count_parameters(named_config(name, vocab_size=30000))
    assert round(count.total / 1e6) == pair[1] and round(count.without_pooler / 1e6) < pair[0]


@pytest.mark.parametrize("name", ["bert-base", "bert-large", "albert-base", "albert-xlarge", "albert-xxlarge",
                                  "t5-small", "t5-base"])
def test_counts_equal_transformers(name):
    transformers = pytest.importorskip("transformers")
    config = named_config(name)
    with torch.device("meta"):
        if name.startswith("bert"):
            hf = transformers.BertModel(transformers.BertConfig(
                vocab_size=config.vocab_size, hidden_size=config.hidden_size, num_hidden_layers=config.num_layers,
                num_attention_heads=config.num_heads, intermediate_size=config.intermediate_size))
        elif name.startswith("albert"):
            hf = transformers.AlbertModel(transformers.AlbertConfig(
                vocab_size=config.vocab_size, embedding_size=config.embedding_size, hidden_size=config.hidden_size,
                num_hidden_layers=config.num_layers, num_attention_heads=config.num_heads,
                intermediate_size=config.intermediate_size))
        else:
            hf = transformers.T5ForConditionalGeneration(transformers.T5Config(
                vocab_size=config.vocab_size, d_model=config.d_model, d_kv=config.d_kv, d_ff=config.d_ff,
                num_layers=config.num_layers, num_heads=config.num_heads))
    assert count_parameters(config).total == sum(p.numel() for p in hf.parameters())


def test_t5_sizes():
    assert round(count_parameters(named_config("t5-small")).total / 1e6) == 61  # "≈ 60M" in the T5 paper
    assert round(count_parameters(named_config("t5-base")).total / 1e6) == 223  # "≈ 220M"
    assert count_parameters(named_config("t5-tiny")).total < 6e6


def test_small_berts_and_embedding_split():
    for name, (layers, hidden) in {"bert-tiny": (2, 128), "bert-mini": (4, 256), "bert-small": (4, 512),
                                   "bert-medium": (8, 512)}.items():
        config = NAMED_SIZES[name]
        assert (config.num_layers, config.hidden_size, config.num_heads) == (layers, hidden, hidden // 64)
    count = count_parameters(named_config("albert-base", vocab_size=30000))
    assert count.embedding == 30000 * 128 + 512 * 128 + 2 * 128 + 2 * 128 + 128 * 768 + 768
    assert count.non_embedding == count.total - count.embedding


def test_count_matches_a_materialised_model():
    config = named_config("bert-tiny", vocab_size=1000, share="ffn", embedding_size=64)
    assert count_parameters(config).total == sum(p.numel() for p in EncoderModel(config).parameters())


def test_unknown_size_suggests():
    with pytest.raises(ConfigError, match="did you mean 'albert-base'"):
        named_config("albert-bse")
