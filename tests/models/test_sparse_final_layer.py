"""The last layer computed at the labelled rows only gives the dense computation's loss and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from maskbench.models.encoder import EncoderConfig
from maskbench.models.heads import EncoderForPretraining

IGNORE = -100


def batch(rows: int = 4, length: int = 24, vocab: int = 97, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (rows, length), generator=g)
    attention = torch.ones_like(ids)
    attention[1, length // 2:] = 0  # one padded sequence
    attention[3, length - 3:] = 0
    labels = torch.where(torch.rand(rows, length, generator=g) < 0.2, ids, IGNORE)
    labels[attention == 0] = IGNORE
    labels[0] = IGNORE  # a sequence with nothing to predict
    labels[2, 5] = ids[2, 5]
    return {"input_ids": ids, "attention_mask": attention, "token_type_ids": (torch.arange(length) >= 10).long()
            .expand(rows, -1).contiguous(), "labels": labels, "sentence_label": torch.tensor([0, 1, 1, 0])}


def dense_reference(model: EncoderForPretraining, data: dict) -> torch.Tensor:
    """Loss of the plain computation: every position through every layer, then the labelled rows."""
    out = model.encoder(data["input_ids"], data["attention_mask"], data["token_type_ids"])
    flat = data["labels"].reshape(-1)
    index = (flat != IGNORE).nonzero().squeeze(1)
    hidden = out.last_hidden_state.reshape(-1, out.last_hidden_state.shape[-1]).index_select(0, index)
    logits = model.mlm(hidden, model.encoder.embeddings.word_embeddings.weight)
    loss = F.cross_entropy(logits, flat.index_select(0, index))
    if model.sentence is not None:
        loss = loss + F.cross_entropy(model.sentence(out.pooled), data["sentence_label"])
    return loss


@pytest.mark.parametrize("norm", ["post", "pre"])
@pytest.mark.parametrize("sentence", [None, "sop"])
@pytest.mark.parametrize("share,embedding", [("none", None), ("all", 16), ("attention", None)])
def test_sparse_last_layer_matches_the_dense_computation(sentence, share, embedding, norm):
    config = EncoderConfig(vocab_size=97, hidden_size=32, num_layers=3, num_heads=4, intermediate_size=64,
                           embedding_size=embedding, share=share, max_positions=32, dropout=0.0,
                           attention_dropout=0.0, norm=norm)
    model = EncoderForPretraining(config, sentence_task=sentence, generator=torch.Generator().manual_seed(0))
    data = batch()
    out = model(**data)
    out["loss"].backward()
    sparse_grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    reference = dense_reference(model, data)
    reference.backward()
    torch.testing.assert_close(out["loss"], reference, rtol=1e-6, atol=1e-6)
    for name, p in model.named_parameters():
        if p.grad is None:
            assert name not in sparse_grads or not sparse_grads[name].any(), name
            continue
        torch.testing.assert_close(sparse_grads[name], p.grad, rtol=1e-5, atol=1e-6, msg=name)
    predicted = data["labels"] != IGNORE
    assert int(out["mlm_count"]) == int(predicted.sum())


def test_rows_output_shape_and_refusals():
    config = EncoderConfig(vocab_size=50, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32,
                           max_positions=16)
    model = EncoderForPretraining(config).encoder.eval()
    ids = torch.randint(5, 50, (2, 8))
    rows = torch.tensor([1, 3, 9])
    out = model(ids, final_rows=rows)
    assert out.last_hidden_state.shape == (3, 16) and out.pooled is None
    full = model(ids).last_hidden_state.reshape(-1, 16)
    torch.testing.assert_close(out.last_hidden_state, full[rows], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="final_rows"):
        model(ids, final_rows=rows, output_attentions=True)
    empty = model(ids, final_rows=torch.empty(0, dtype=torch.long))
    assert empty.last_hidden_state.shape == (0, 16)
