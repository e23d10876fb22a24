"""T5's text-to-text formatting, checked against T5's own GLUE preprocessors ported to plain Python."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maskbench.data.glue import load_task
from maskbench.finetune import text_to_text as t2t

# The TFDS GLUE configs T5 reads (tensorflow_datasets glue.py): label classes and text features per task.
TFDS_LABELS = {
    "rte": ["entailment", "not_entailment"], "qnli": ["entailment", "not_entailment"],
    "sst2": ["negative", "positive"], "wnli": ["not_entailment", "entailment"],
    "mnli": ["entailment", "neutral", "contradiction"], "cola": ["unacceptable", "acceptable"],
    "mrpc": ["not_equivalent", "equivalent"], "qqp": ["not_duplicate", "duplicate"],
}


def t5_glue(x: dict, benchmark_name: str, label_names: list[str], feature_names=None) -> dict:
    """Port of t5.data.preprocessors.glue (the non-MultiRC path) without TensorFlow."""
    feature_keys = feature_names or sorted(set(x.keys()).difference(["label", "idx"]))
    strs_to_join = []
    for key in feature_keys:
        strs_to_join.append("{}:".format(key))
        strs_to_join.append(x[key])
    strs_to_join.insert(0, benchmark_name)
    label_name = "<unk>" if x["label"] == -1 else label_names[x["label"]]
    return {"idx": x["idx"], "inputs": " ".join(strs_to_join), "targets": label_name}


def t5_stsb(x: dict) -> dict:
    """Port of t5.data.preprocessors.stsb: tf.as_string(tf.round(label * 5) / 5, precision=1) on float32."""
    label = np.float32(x["label"])
    product = np.float32(label * np.float32(5))
    rounded = np.float32(round(float(product)))  # Python's round is half to even, as tf.round
    return {"inputs": f"stsb sentence1: {x['sentence1']} sentence2: {x['sentence2']}",
            "targets": "%.1f" % float(rounded / np.float32(5)), "idx": x["idx"]}


def _tsv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def _tfds_examples(folder: Path, benchmark: str, split: str) -> list[dict]:
    """What TFDS hands T5 for each row: its feature names, the label as an index into its classes."""
    out = []
    for row in _tsv(folder / f"{split}.tsv"):
        if benchmark == "sst2":
            x = {"sentence": row["sentence"], "label": int(row["label"])}
        elif benchmark == "wnli":
            x = {"sentence1": row["sentence1"], "sentence2": row["sentence2"], "label": int(row["label"])}
        elif benchmark == "rte":
            x = {"sentence1": row["sentence1"], "sentence2": row["sentence2"],
                 "label": TFDS_LABELS["rte"].index(row["label"])}
        elif benchmark == "qnli":
            x = {"question": row["question"], "sentence": row["sentence"],
                 "label": TFDS_LABELS["qnli"].index(row["label"])}
        x["idx"] = len(out)
        out.append(x)
    return out


@pytest.mark.parametrize("folder,benchmark", [("RTE", "rte"), ("QNLI", "qnli"), ("SST-2", "sst2"), ("WNLI", "wnli")])
def test_inputs_and_label_words_match_t5_glue(shared_data, folder, benchmark):
    task = load_task(folder, shared_data / "glue", splits=["dev"])
    fmt = t2t.task_format(task)
    words = t2t.label_words(task, fmt)
    dev = task.splits["dev"]
    reference = [t5_glue(x, benchmark, TFDS_LABELS[benchmark]) for x in
                 _tfds_examples(shared_data / "glue" / folder, benchmark, "dev")]
    assert len(reference) == len(dev)
    b = dev.text_b or [None] * len(dev)
    ours = [(t2t.input_text(fmt, a, y), t2t.target_text(label, words))
            for a, y, label in zip(dev.text_a, b, dev.labels)]
    assert ours == [(r["inputs"], r["targets"]) for r in reference]


def test_mnli_sorts_hypothesis_before_premise_as_t5():
    fmt = t2t.T5_GLUE["mnli"]
    x = {"premise": "A man sleeps.", "hypothesis": "Nobody sleeps.", "label": 2, "idx": 0}
    assert t2t.input_text(fmt, "A man sleeps.", "Nobody sleeps.") == t5_glue(x, "mnli", TFDS_LABELS["mnli"])["inputs"]
    assert t2t.input_text(fmt, "A man sleeps.", "Nobody sleeps.").startswith("mnli hypothesis: Nobody sleeps.")


def test_mnli_label_words_follow_names_not_positions():
    class Task:  # maskbench sorts MNLI's labels alphabetically; T5's classes are in TFDS order
        name, num_labels, label_names, is_pair = "MNLI", 3, ["contradiction", "entailment", "neutral"], True

    assert t2t.label_words(Task()) == ["contradiction", "entailment", "neutral"]


@pytest.mark.parametrize("key,benchmark", [("cola", "cola"), ("mrpc", "mrpc"), ("qqp", "qqp")])
def test_digit_labels_index_t5_classes(key, benchmark):
    class Task:
        name, num_labels, label_names, is_pair = key, 2, ["0", "1"], key != "cola"

    assert t2t.label_words(Task()) == TFDS_LABELS[benchmark]


def test_unlabelled_example_targets_unk():
    assert t2t.target_text(None, ["a", "b"]) == "<unk>"
    assert t5_glue({"sentence": "x", "label": -1, "idx": 0}, "sst2", ["negative", "positive"])["targets"] == "<unk>"


@pytest.mark.parametrize("score,expected", [(1.8, "1.8"), (0.3, "0.4"), (0.5, "0.4"), (0.7, "0.8"), (4.9, "4.8"),
                                            (3.75, "3.8"), (0.0, "0.0"), (5.0, "5.0"), (2.1, "2.0")])
def test_stsb_rounding_known_values(score, expected):
    assert t2t.stsb_string(score) == expected
    assert t5_stsb({"sentence1": "a", "sentence2": "b", "label": score, "idx": 0})["targets"] == expected


@settings(max_examples=300, deadline=None)
@given(st.floats(0.0, 5.0, allow_nan=False, width=32))
def test_stsb_string_equals_t5_stsb(score):
    expected = t5_stsb({"sentence1": "a", "sentence2": "b", "label": score, "idx": 0})
    assert t2t.stsb_string(score) == expected["targets"]
    assert expected["targets"] in t2t.STSB_STRINGS
    fmt = t2t.T5_GLUE["sts-b"]
    assert t2t.input_text(fmt, "a", "b") == expected["inputs"]


def test_generic_task_uses_its_name_and_sentence_fields():
    class Task:
        name, num_labels, label_names, is_pair = "synth-sentiment", 2, ["negative", "positive"], False

    fmt = t2t.task_format(Task())
    assert t2t.input_text(fmt, "good film") == "synth-sentiment sentence: good film"
    assert t2t.label_words(Task(), fmt) == ["negative", "positive"]


def test_f1_counts_invalid_as_wrong_class():
    labels = np.array([1, 0, 1])
    predictions = np.array([-1, -1, 1])
    assert t2t.metric_inputs("f1", predictions, labels).tolist() == [0, 1, 1]
    assert t2t.metric_inputs("accuracy", predictions, labels).tolist() == [-1, -1, 1]


def test_match_outputs_counts_invalid():
    cands = t2t.Candidates([(7, 3), (8, 9, 3)], [0, 1], regression=False)
    outputs = np.array([[7, 3, 0], [8, 9, 3], [8, 3, 0], [7, 7, 7]])
    predictions, invalid = t2t.match_outputs(outputs, cands, eos_id=3)
    assert predictions.tolist() == [0, 1, -1, -1]
    assert invalid == 2
