"""PMI-masking: the n-gram vocabulary finds the collocations; matched n-grams are masked as one unit."""

from __future__ import annotations

import json
import random

import pytest
import torch

from maskbench.cli import main
from maskbench.errors import ConfigError
from maskbench.objectives import build_objective_for_tokenizer
from maskbench.objectives.pmi import PmiVocabulary, _compositions, load_pmi_vocabulary, window_hash

COLLOCATIONS = ["new york city", "san francisco", "ice cream", "prime minister of canada"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Shards of random words with four collocations planted in half of the sentences."""
    from maskbench.data.shards import prepare
    from maskbench.data.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("pmi")
    rng = random.Random(0)
    words = [f"w{i}" for i in range(300)]
    lines = []
    for _ in range(3000):
        sentence = [rng.choice(words) for _ in range(rng.randint(5, 15))]
        if rng.random() < 0.5:
            sentence.insert(rng.randint(0, len(sentence)), rng.choice(COLLOCATIONS))
        lines.append(" ".join(sentence) + ".")
    text = root / "corpus.txt"
    text.write_text("\n\n".join("\n".join(lines[i:i + 10]) for i in range(0, len(lines), 10)))
    train_tokenizer([text], kind="wordpiece", vocab_size=600, out_path=root / "tokenizer.json")
    prepare([text], root / "tokenizer.json", root / "shards", seq_len=64, progress=False)
    return root


@pytest.fixture(scope="module")
def vocabulary(corpus):
    out = corpus / "pmi.json"
    assert main(["pmi", "build", "--shards", str(corpus / "shards"), "--out", str(out), "--max-ngrams", "30"]) == 0
    return out


def test_compositions_cover_every_split():
    assert _compositions(2) == [(1, 1)]
    assert len(_compositions(5)) == 15


def test_hash_depends_on_tokens_and_order_only():
    tokens = torch.tensor([7, 8, 9, 7, 8, 9, 8, 7])
    keys = window_hash(tokens, torch.tensor([0, 3, 6, 1]), torch.tensor([3, 6, 8, 3]))
    assert keys[0] == keys[1] and keys[2] != window_hash(torch.tensor([7, 8]), torch.tensor([0]), torch.tensor([2]))[0]
    assert keys[3] != keys[2]


def test_the_planted_collocations_rank_highest(corpus, vocabulary):
    from maskbench.data.tokenizer import load_tokenizer

    tok = load_tokenizer(corpus / "tokenizer.json")
    data = json.loads(vocabulary.read_text())
    found = {tok.decode([t for word in entry["words"] for t in word]) for entry in data["ngrams"][:12]}
    for phrase in COLLOCATIONS:
        assert phrase in found
    assert data["ngrams"][0]["pmi"] >= data["ngrams"][-1]["pmi"]
    assert not any(entry["words"][0][0] == 0 for entry in data["ngrams"])


def test_matched_ngrams_are_masked_as_one_unit(corpus, vocabulary):
    from maskbench.data.loader import PretrainBatches
    from maskbench.data.tokenizer import load_tokenizer

    tok = load_tokenizer(corpus / "tokenizer.json")
    obj = build_objective_for_tokenizer("mlm", tok, unit="pmi", pmi_path=str(vocabulary), mask_rate=0.3)
    batches = PretrainBatches(corpus / "shards", batch_size=32, seq_len=64, seed=0)
    batch = batches.get(0)
    maskable = ~torch.isin(batch["input_ids"], torch.tensor(obj.special_ids)) & batch["attention_mask"].bool()
    words = batch["word_starts"].bool() & maskable
    starts = obj._pmi.unit_starts(batch["input_ids"], words, maskable)
    assert int(starts.sum()) < int(words.sum())  # some words were merged into n-gram units
    phrase = tok.encode("new york city", add_special_tokens=False).ids
    ids = batch["input_ids"]
    merged_seen = 0
    for b in range(ids.shape[0]):
        row = ids[b].tolist()
        for i in range(len(row) - len(phrase) + 1):
            if row[i:i + len(phrase)] == phrase and bool(words[b, i]):
                assert bool(starts[b, i]) and not bool(starts[b, i + 1:i + len(phrase)].any())
                merged_seen += 1
    assert merged_seen > 0
    out = obj(batch, generator=torch.Generator().manual_seed(0))
    selected = out["labels"] != -100
    unit = starts.long().cumsum(dim=1)
    for b in range(ids.shape[0]):
        chosen = set(unit[b][selected[b]].tolist())
        assert all(bool(selected[b][(unit[b] == u) & maskable[b]].all()) for u in chosen)


def test_overlapping_matches_prefer_the_longer_ngram():
    vocab = PmiVocabulary.from_ngrams([[[10], [11]], [[11], [12]], [[10], [11], [12]], [[20], [21]]])
    ids = torch.tensor([[2, 10, 11, 12, 20, 21, 20, 21, 3]])
    maskable = torch.tensor([[False] + [True] * 7 + [False]])
    starts = vocab.unit_starts(ids, maskable.clone(), maskable)
    assert starts[0].tolist() == [False, True, False, False, True, False, True, False, False]


def test_pmi_errors(tmp_path, corpus, capsys):
    with pytest.raises(ConfigError, match="pmi_path"):
        build_objective_for_tokenizer("mlm", _ids(), 600, unit="pmi")
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(Exception, match="not a maskbench PMI vocabulary"):
        load_pmi_vocabulary(bad)
    assert main(["pmi", "build", "--shards", str(tmp_path / "missing"), "--out", str(tmp_path / "x.json")]) == 2
    assert main(["pmi", "build", "--shards", str(corpus / "shards"), "--out", str(tmp_path / "x.json"),
                 "--max-n", "1"]) == 2
    assert "max_n" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def _ids():
    from maskbench.data.tokenizer import SpecialIds

    return SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4, sentinels=list(range(5, 105)))
