"""The synthetic language: determinism, agreement and order invariants, labels, task folders."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from maskbench.data import synth
from maskbench.data.glue import load_task
from maskbench.errors import DataError


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_same_seed_gives_byte_identical_files(tmp_path):
    a = synth.generate_corpus(tmp_path / "a", tokens=20_000, seed=4)
    b = synth.generate_corpus(tmp_path / "b", tokens=20_000, seed=4)
    c = synth.generate_corpus(tmp_path / "c", tokens=20_000, seed=5)
    assert _digest(a.parent) == _digest(b.parent)
    assert _digest(a.parent)["corpus.txt"] != _digest(c.parent)["corpus.txt"]


def test_corpus_layout_and_labels(synth_dir):
    text = (synth_dir / "corpus.txt").read_text(encoding="utf-8")
    docs = text.rstrip("\n").split("\n\n")
    labels = [json.loads(line) for line in (synth_dir / "labels.jsonl").read_text(encoding="utf-8").splitlines()]
    meta = json.loads((synth_dir / "meta.json").read_text(encoding="utf-8"))
    assert len(docs) == len(labels) == meta["documents"]
    assert 60_000 <= meta["words"] < 61_000
    for doc, label in zip(docs[:200], labels):
        sentences = doc.split("\n")
        assert 3 <= len(sentences) <= 8
        assert len(label["sentiment"]) == len(label["classes"]) == len(sentences)
        for sentence, classes in zip(sentences, label["classes"]):
            words = sentence.replace(",", " ,").replace(".", " .").split()
            assert len(words) == len(classes.split())
            assert sentence.endswith(".")
        assert sentences[0].split()[0] in ("once,", "today,", "a", "some")  # introduction
        assert not any(s.split()[0] in ("finally,", "eventually,") for s in sentences[:-1])


def test_vocabulary_is_zipfian_and_a_few_thousand_words(synth_dir):
    words = (synth_dir / "corpus.txt").read_text(encoding="utf-8").replace(",", " ").replace(".", " ").split()
    _, counts = np.unique(words, return_counts=True)
    counts = np.sort(counts)[::-1]
    assert 1500 < len(counts) < 8000
    ranks = np.arange(1, len(counts) + 1)
    slope = np.polyfit(np.log(ranks[10:500]), np.log(counts[10:500]), 1)[0]
    assert -1.6 < slope < -0.6


def test_agreement_holds_in_generated_text():
    """Verbs agree with their subject across relative clauses; adjectives with their noun; pronouns with
    the protagonist."""
    rng = np.random.default_rng(0)
    sample = synth.sample_documents(rng, 400)
    lex = synth.build_lexicon(0)
    S, n, g, p = synth.SLOT, sample.number, sample.gender, sample.present
    assert (n[:, S["verb"]] == np.where(p[:, S["pronoun"]], n[:, S["pronoun"]], n[:, S["subj_noun"]])).all()
    rel = p[:, S["rel_verb"]]
    assert (n[rel, S["rel_verb"]] == n[rel, S["rel_noun"]]).all()
    assert (n[rel, S["rel_noun"]] != n[rel, S["subj_noun"]]).mean() > 0.4  # attractors are common
    for adj, noun in (("subj_adj", "subj_noun"), ("obj_adj", "obj_noun"), ("pp_adj", "pp_noun")):
        rows = p[:, S[adj]]
        assert (g[rows, S[adj]] == lex.noun_gender[sample.lexemes[rows, S[noun]]]).all()
    pron = p[:, S["pronoun"]]
    assert (sample.position[pron] > 0).all()
    assert (g[pron, S["pronoun"]] == lex.noun_gender[sample.protagonist[sample.doc[pron]]]).all()
    assert (sample.depth == 2).any() and (sample.depth == 1).any()


def test_every_sentence_carries_its_sentiment():
    rng = np.random.default_rng(1)
    sample = synth.sample_documents(rng, 300)
    lex = synth.build_lexicon(0)
    S = synth.SLOT
    polar = np.zeros(len(sample.doc), dtype=bool)
    for slot in ("subj_adj", "obj_adj", "pp_adj"):
        on = sample.present[:, S[slot]]
        polar |= on & (lex.adj_polarity[sample.lexemes[:, S[slot]]] == sample.sentiment)
    adverb = sample.present[:, S["adv"]]
    surface = lex.adj_polarity[sample.lexemes[:, S["adv"]]]
    expected = np.where(sample.negated, 1 - sample.sentiment, sample.sentiment)
    polar |= adverb & (surface == expected)
    assert polar.all()
    assert (surface[sample.negated] == 1 - sample.sentiment[sample.negated]).all()


def test_word_class_sentences():
    out = synth.word_class_sentences(50, seed=2)
    assert len(out) == 50
    for words, classes in out:
        assert len(words) == len(classes) and set(classes) <= set(synth.CLASS_NAMES)
        assert classes[-1] == "punctuation" and words[-1] == "."
    assert out == synth.word_class_sentences(50, seed=2)


def test_tasks_are_glue_format_and_balanced(tmp_path):
    folders = synth.write_tasks(tmp_path / "tasks", seed=0, train=200, dev=60, test=40)
    assert sorted(folders) == sorted(synth.TASKS)
    for name, folder in folders.items():
        task = load_task(folder)
        assert task.num_labels == 2 and len(task.label_names) == 2
        assert [len(task.splits[s]) for s in ("train", "dev", "test")] == [200, 60, 40]
        assert task.splits["test"].labels is None and task.splits["test"].index[:3] == [0, 1, 2]
        assert (task.splits["train"].text_b is not None) == (name == "synth-order")
        assert 80 <= sum(task.splits["train"].labels) <= 120
        header = (folder / "test.tsv").read_text(encoding="utf-8").splitlines()[0].split("\t")
        assert header[0] == "index" and "label" not in header
    agreement = load_task(folders["synth-agreement"])
    assert agreement.metrics[0] == "mcc"
    again = synth.write_tasks(tmp_path / "again", seed=0, train=200, dev=60, test=40)
    assert _digest(folders["synth-order"]) == _digest(again["synth-order"])


def test_agreement_violations_change_exactly_one_word(tmp_path):
    rng = np.random.default_rng(5)
    sample = synth.sample_documents(rng, 100)
    clean = synth.render(sample)
    labels = synth._violate_agreement(np.random.default_rng(6), sample, 0)
    broken = synth.render(sample)
    for before, after, label in zip(clean, broken, labels):
        changed = sum(a != b for a, b in zip(before.split(), after.split()))
        assert changed == (0 if label == 1 else 1)


def test_order_task_pairs(tmp_path):
    texts, labels = synth._order_examples(np.random.default_rng(0), 400, 0)
    assert sum(labels) == 200
    assert all(a != b for a, b in texts)


def test_output_folder_holding_something_else(tmp_path):
    (tmp_path / "x.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(DataError, match="holds no synthetic corpus"):
        synth.generate_corpus(tmp_path, tokens=1000)
    out = tmp_path / "c"
    synth.generate_corpus(out, tokens=1000, seed=1)
    assert synth.generate_corpus(out, tokens=1000, seed=1) == out / "corpus.txt"  # same run: no-op
    with pytest.raises(DataError, match="different synthetic corpus.*seed=1"):
        synth.generate_corpus(out, tokens=1000, seed=2)
    synth.generate_corpus(out, tokens=1000, seed=2, overwrite=True)
    assert json.loads((out / "meta.json").read_text())["seed"] == 2
