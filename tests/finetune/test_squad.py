"""SQuAD: official EM/F1 (against a port of evaluate-v2.0.py), windows, answer spans, and `finetune --task squad`."""

from __future__ import annotations

import collections
import json
import re
import string

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maskbench.cli import main
from maskbench.finetune.squad import _max_context, _windows, best_answers, encode, read_squad
from maskbench.finetune.squad_metrics import best_threshold, exact, f1, normalize_answer, squad_scores


# ---- the official evaluate-v2.0.py, verbatim in substance (the reference the port is checked against)
def ref_normalize_answer(s):
    def remove_articles(text):
        return re.sub(re.compile(r"\b(a|an|the)\b", re.UNICODE), " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def ref_get_tokens(s):
    if not s:
        return []
    return ref_normalize_answer(s).split()


def ref_compute_f1(a_gold, a_pred):
    gold_toks, pred_toks = ref_get_tokens(a_gold), ref_get_tokens(a_pred)
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    num_same = sum(common.values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        return int(gold_toks == pred_toks)
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(pred_toks)
    recall = 1.0 * num_same / len(gold_toks)
    return (2 * precision * recall) / (precision + recall)


def ref_find_best_thresh(preds, scores, na_probs, qid_to_has_ans):
    num_no_ans = sum(1 for k in qid_to_has_ans if not qid_to_has_ans[k])
    cur_score = best_score = num_no_ans
    best_thresh = 0.0
    for qid in sorted(na_probs, key=lambda k: na_probs[k]):
        if qid_to_has_ans[qid]:
            diff = scores[qid]
        else:
            diff = -1 if preds[qid] else 0
        cur_score += diff
        if cur_score > best_score:
            best_score, best_thresh = cur_score, na_probs[qid]
    return 100.0 * best_score / len(scores), best_thresh


WORDS = st.text(alphabet="abcthe ,.!'-AN", max_size=24)


@settings(max_examples=300, deadline=None)
@given(WORDS, WORDS)
def test_normalisation_and_f1_equal_the_official_script(gold, prediction):
    assert normalize_answer(gold) == ref_normalize_answer(gold)
    assert f1(gold, prediction) == pytest.approx(ref_compute_f1(gold, prediction))
    assert exact(gold, prediction) == int(ref_normalize_answer(gold) == ref_normalize_answer(prediction))


def test_known_cases():
    assert normalize_answer("The  Cat, sat!") == "cat sat"
    assert exact("the cat", "Cat.") == 1 and exact("a cat", "cats") == 0
    assert f1("the cat sat on the mat", "cat on mat") == pytest.approx(2 * 1 * 0.75 / 1.75)
    scores = squad_scores([["Denver Broncos", "Broncos"], []], ["broncos", ""])
    assert scores["exact_match"] == 1.0 and scores["f1"] == 1.0  # best gold; "" right for no answer
    assert squad_scores([[]], ["something"])["f1"] == 0.0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.floats(-5, 5), st.sampled_from([0.0, 0.5, 1.0]), st.booleans()),
                min_size=1, max_size=12))
def test_best_threshold_equals_the_official_search(rows):
    has = [r[0] for r in rows]
    null = [r[1] for r in rows]
    scores = [r[2] for r in rows]
    preds = ["x" if r[3] else "" for r in rows]
    ours = best_threshold(preds, scores, null, has)
    ids = [str(i) for i in range(len(rows))]
    ref = ref_find_best_thresh(dict(zip(ids, preds)), dict(zip(ids, scores)), dict(zip(ids, null)), dict(zip(ids, has)))
    assert ours[0] * 100 == pytest.approx(ref[0]) and ours[1] == ref[1]


# ---- windows and spans
@settings(max_examples=100, deadline=None)
@given(st.integers(1, 60), st.integers(1, 20), st.integers(1, 25))
def test_windows_cover_every_token_and_each_has_one_max_context(n, room, stride):
    spans = _windows(n, room, stride)
    covered = set()
    for start, length in spans:
        assert 1 <= length <= room
        covered |= set(range(start, start + length))
    assert covered == set(range(n))
    for position in range(n):
        assert sum(_max_context(spans, i, position) for i in range(len(spans))) == 1


def _vocab(tmp_path, words):
    from maskbench.data.tokenizer import load_tokenizer

    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(set(words)) + ["."]) + "\n")
    return path, load_tokenizer(path)


def _squad_file(path, rows, v2=False):
    """rows: (context, question, answer or None)."""
    paragraphs = []
    for i, (context, question, answer) in enumerate(rows):
        qa = {"id": f"q{i}", "question": question,
              "answers": [] if answer is None else [{"text": answer, "answer_start": context.index(answer)}]}
        if v2:
            qa["is_impossible"] = answer is None
        paragraphs.append({"context": context, "qas": [qa]})
    path.write_text(json.dumps({"version": "v2.0" if v2 else "1.1", "data": [{"title": "t", "paragraphs": paragraphs}]}))


WORDS_POOL = [f"w{i}" for i in range(40)]


def _context(rng, n=30):
    return " ".join(rng.choice(WORDS_POOL, size=n)) + " ."


def test_answer_positions_in_every_window_that_holds_the_answer(tmp_path):
    rng = np.random.default_rng(0)
    context = _context(rng, 50)
    words = context.split()
    answer = " ".join(words[30:33])
    _squad_file(tmp_path / "d.json", [(context, "w1 w2", answer)])
    _, tokenizer = _vocab(tmp_path, WORDS_POOL)
    examples = read_squad(tmp_path / "d.json")
    split = encode(tokenizer, examples, max_length=24, doc_stride=8, max_query_length=4, cls_id=2, sep_id=3, pad_id=0)
    assert len(split) > 3
    holding = 0
    for w in range(len(split)):
        s, e = split.starts[w], split.ends[w]
        if s == 0:
            continue
        holding += 1
        off = split.offsets[w]
        assert context[off[s, 0]:off[e, 1]] == answer
        assert split.ids[w, 0] == 2 and split.type_ids[w, s] == 1
    assert holding >= 1
    start = np.full((len(split), 24), -10.0)
    end = np.full((len(split), 24), -10.0)
    for w in range(len(split)):  # oracle logits: the gold span where a window holds it
        start[w, split.starts[w]] = 5.0
        end[w, split.ends[w]] = 5.0
    texts, _ = best_answers(split, start, end, n_best=5, max_answer_length=10, null_threshold=None)
    assert texts == [answer]
    texts, diffs = best_answers(split, start, end, n_best=5, max_answer_length=2, null_threshold=None)
    assert texts != [answer]  # three tokens are longer than max_answer_length


def _task(tmp_path, v2):
    rng = np.random.default_rng(1)
    rows = []
    for i in range(24):
        context = _context(rng, 20)
        words = context.split()
        k = int(rng.integers(0, 15))
        answer = None if (v2 and i % 3 == 0) else " ".join(words[k:k + 2])
        rows.append((context, " ".join(rng.choice(WORDS_POOL, size=3)), answer))
    (tmp_path / "squad").mkdir()
    name = "v2.0" if v2 else "v1.1"
    _squad_file(tmp_path / "squad" / f"train-{name}.json", rows[:16], v2)
    _squad_file(tmp_path / "squad" / f"dev-{name}.json", rows[16:], v2)
    vocab, _ = _vocab(tmp_path, WORDS_POOL)
    return vocab


@pytest.mark.parametrize("v2", [False, True], ids=["v1.1", "v2.0"])
def test_finetune_task_squad_end_to_end(tmp_path, v2, capsys):
    vocab = _task(tmp_path, v2)
    code = main(["finetune", "--task", "squad", "--data", str(tmp_path / "squad"), "--checkpoint", "random:bert-tiny",
                 "--tokenizer", str(vocab), "--seeds", "0", "--no-progress", "--out", str(tmp_path / "ft"),
                 "--set", "max_length=24", "--set", "squad.doc_stride=6", "--set", "squad.max_query_length=4",
                 "--set", "max_steps=3", "--set", "batch_size=8"])
    assert code == 0, capsys.readouterr().err
    best = json.loads((tmp_path / "ft" / "vanilla" / "seed-0" / "best.json").read_text())
    assert best["task"] == f"squad-{'v2.0' if v2 else 'v1.1'}"
    dev = best["dev"]
    assert 0.0 <= dev["exact_match"] <= dev["f1"] <= 1.0 and dev["score"] == dev["f1"]
    assert ("best_f1_threshold" in dev) == v2


def test_squad_without_files_is_one_line(tmp_path, capsys):
    vocab, _ = _vocab(tmp_path, WORDS_POOL)
    (tmp_path / "empty").mkdir()
    code = main(["finetune", "--task", "squad", "--data", str(tmp_path / "empty"), "--checkpoint", "random:bert-tiny",
                 "--tokenizer", str(vocab), "--out", str(tmp_path / "ft")])
    err = capsys.readouterr().err
    assert code == 2 and "holds no SQuAD files" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "ft").exists()


def test_squad_best_model_loads_with_auto_classes_and_gives_the_same_logits(tmp_path, monkeypatch):
    """The fine-tuned best model (captured as it is saved) and `AutoModelForQuestionAnswering` on its
    folder give the same start and end logits on every dev window (padding aside, which ours masks)."""
    import copy

    import torch

    transformers = pytest.importorskip("transformers")
    from maskbench.finetune import loop

    captured = {}
    real = loop.save_best_model

    def spy(model, folder, checkpoint, tokenizer_json):
        captured["model"] = copy.deepcopy(model).eval()
        return real(model, folder, checkpoint, tokenizer_json)

    monkeypatch.setattr(loop, "save_best_model", spy)
    vocab = _task(tmp_path, v2=False)
    assert main(["finetune", "--task", "squad", "--data", str(tmp_path / "squad"), "--checkpoint", "random:bert-tiny",
                 "--tokenizer", str(vocab), "--seeds", "0", "--no-progress", "--out", str(tmp_path / "ft"),
                 "--set", "max_length=24", "--set", "squad.doc_stride=6", "--set", "squad.max_query_length=4",
                 "--set", "max_steps=3", "--set", "batch_size=8"]) == 0
    seed = tmp_path / "ft" / "vanilla" / "seed-0"
    assert json.loads((seed / "best.json").read_text())["model_format"] == "hf"
    hf = transformers.AutoModelForQuestionAnswering.from_pretrained(seed / "model").eval()
    assert type(hf).__name__ == "BertForQuestionAnswering"
    tokenizer = transformers.AutoTokenizer.from_pretrained(seed / "model")
    split = encode(tokenizer.backend_tokenizer, read_squad(tmp_path / "squad" / "dev-v1.1.json"), max_length=24,
                   doc_stride=6, max_query_length=4, cls_id=2, sep_id=3, pad_id=0)
    batch = split.batch(np.arange(len(split)), pad_id=0)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        ours, theirs = captured["model"](**inputs), hf(**inputs)
    real_tokens = inputs["attention_mask"].bool()
    for name in ("start_logits", "end_logits"):
        assert ours[name].std() > 0
        torch.testing.assert_close(getattr(theirs, name)[real_tokens], ours[name][real_tokens], atol=1e-5, rtol=0)
