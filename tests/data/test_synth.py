"""The synthetic language: determinism, agreement and order invariants, labels, task folders."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from maskbench.data import synth
from maskbench.data.glue import load_task
from maskbench.errors import DataError, MaskbenchError


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
    with pytest.raises(MaskbenchError, match="not empty .*maskbench did not write"):
        synth.generate_corpus(tmp_path, tokens=1000)
    out = tmp_path / "c"
    synth.generate_corpus(out, tokens=1000, seed=1)
    assert synth.generate_corpus(out, tokens=1000, seed=1) == out / "corpus.txt"  # same run: no-op
    with pytest.raises(DataError, match="different synthetic corpus.*seed=1"):
        synth.generate_corpus(out, tokens=1000, seed=2)
    synth.generate_corpus(out, tokens=1000, seed=2, overwrite=True)
    assert json.loads((out / "meta.json").read_text())["seed"] == 2


@pytest.mark.parametrize("profile", ["standard", "compact", "demo"])
def test_heldout_tasks_test_on_words_their_training_split_never_shows(tmp_path, profile):
    folders = synth.write_tasks(tmp_path / "t", seed=1, train=300, dev=100, test=100, profile=profile,
                                tasks=synth.HELDOUT_TASKS)
    lex = synth.lexicon(0, profile)
    split = synth.heldout_split(0, profile)
    adjectives = [{str(w)[:-1] for lexeme in side for w in lex.words[lex.adj_base + 4 * lexeme:
                                                                      lex.adj_base + 4 * lexeme + 1]}
                  for side in split["adjectives"]]
    nouns = [{str(lex.words[lex.noun_base + 2 * lexeme]) for lexeme in side} for side in split["nouns"]]
    forms, counts = np.unique(lex.words.astype(str), return_counts=True)
    homographs = set(forms[counts > 1])  # e.g. the noun "pes" and the verb form "pes": not one word
    for name, folder in folders.items():
        task = load_task(folder)
        train = {w.strip(".,") for s in task.splits["train"].text_a for w in s.split()} - homographs
        heldout = {w.strip(".,") for split_name in ("dev", "test") for s in task.splits[split_name].text_a
                   for w in s.split()}
        assert not train & {n for n in nouns[1]} and heldout & nouns[1] and not heldout & nouns[0]
        stems = lambda words: {w[:-1] for w in words if w.endswith(("o", "a"))}  # noqa: E731 - adjective stems
        assert not stems(train) & adjectives[1] and stems(heldout) & adjectives[1]
        assert 130 <= sum(task.splits["train"].labels) <= 170


def test_standard_profile_is_the_original_language(tmp_path):
    """Adding the compact profile and the intensifier slots drew nothing new for the standard language."""
    path = synth.generate_corpus(tmp_path / "c", tokens=3000, seed=0)
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first == "a dazit that many pulepipers pikov danugols those gatifmentisha fegiginitys potally over the nemorelitys."
    assert not {"truly", "very", "too", "awfully", "rather", "quite"} & set(path.read_text(encoding="utf-8").split())


@pytest.mark.parametrize("profile", ["compact", "demo"])
def test_intensifiers_mark_polarity_in_the_corpus_only(tmp_path, profile):
    """An intensifier always matches the polarity of the word after it (an adjective; in the demo profile an
    adverb too, whose surface polarity `never` may have flipped); task sentences never carry one."""
    path = synth.generate_corpus(tmp_path / "c", tokens=20_000, seed=0, profile=profile)
    lex = synth.lexicon(0, profile)
    polarity = {str(lex.words[lex.adj_base + 4 * a + k]): int(lex.adj_polarity[a])
                for a in range(lex.n_adjs) for k in range(4)}
    adverbs = {str(lex.words[lex.adv_base + a]): int(lex.adj_polarity[a]) for a in range(lex.n_adjs)}
    words = path.read_text(encoding="utf-8").replace(".", " ").replace(",", " ").split()
    pairs = [(w, n) for w, n in zip(words, words[1:]) if w in sum(synth._INTENSIFIERS, [])]
    assert len(pairs) > 100
    for w, n in pairs:
        assert w in synth._INTENSIFIERS[{**polarity, **adverbs}[n] if synth.PROFILES[profile].adverb_intensifiers
                                        else polarity[n]]
    before_adverbs = sum(n in adverbs for _w, n in pairs)
    assert (before_adverbs > 50) == synth.PROFILES[profile].adverb_intensifiers
    assert json.loads((tmp_path / "c" / "meta.json").read_text())["profile"] == profile
    tasks = synth.write_tasks(tmp_path / "t", train=100, dev=20, test=20, profile=profile)
    for folder in tasks.values():
        text = (folder / "train.tsv").read_text(encoding="utf-8").split()
        assert not {"truly", "very", "too", "awfully", "rather", "quite"} & set(text)


@pytest.mark.parametrize("profile", ["standard", "demo"])
def test_sentences_keep_their_documents_mood_as_the_profile_says(profile):
    sample = synth.sample_documents(np.random.default_rng(0), 4000, profile=profile)
    kept = float(np.mean(sample.sentiment == sample.mood[sample.doc]))
    assert kept == pytest.approx(synth.PROFILES[profile].mood_coherence, abs=0.01)


def test_unknown_profile_is_one_line(tmp_path):
    with pytest.raises(DataError, match="profile"):
        synth.generate_corpus(tmp_path / "x", tokens=100, profile="tiny")
