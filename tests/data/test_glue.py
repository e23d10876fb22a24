"""GLUE readers on the real files we have, and on hand-written files in the exact standard format of the
tasks held back (CoLA, MRPC, STS-B, QQP, MNLI), plus generic TSV/CSV/JSONL tasks and bad input."""

from __future__ import annotations

import json
import warnings

import pytest

from maskbench.data.glue import GLUE_TASKS, glue_key, load_generic, load_task
from maskbench.errors import DataError


def _tsv(path, lines, bom=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join("\t".join(row) for row in lines) + "\n"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


# ------------------------------------------------------------------------------------------- real files

@pytest.mark.parametrize("name,counts,labels", [
    ("SST-2", {"train": 67349, "dev": 872, "test": 1821}, ["0", "1"]),
    ("RTE", {"train": 2490, "dev": 277, "test": 3000}, ["entailment", "not_entailment"]),
    ("QNLI", {"dev": 5463, "test": 5463}, ["entailment", "not_entailment"]),
    ("WNLI", {"train": 635, "dev": 71, "test": 146}, ["0", "1"]),
    ("AX", {"test": 1104}, ["contradiction", "entailment", "neutral"]),
])
def test_real_glue_files(shared_data, name, counts, labels):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        task = load_task(name, shared_data / "glue")
    assert {k: len(v) for k, v in task.splits.items()} == counts
    assert task.label_names == labels and task.num_labels == len(labels)
    for split, examples in task.splits.items():
        assert (examples.labels is None) == split.startswith("test")
        if examples.labels is not None:
            assert set(examples.labels) <= set(range(len(labels)))
        assert (examples.text_b is None) == (name == "SST-2")


def test_unbalanced_quotes_do_not_swallow_lines(shared_data):
    """QNLI dev has sentences opening with an unmatched quote; CSV quoting would merge lines."""
    dev = load_task("qnli", shared_data / "glue").splits["dev"]
    assert len(dev) == 5463
    assert sum(s.count('"') % 2 for s in dev.text_b) >= 5  # unbalanced quotes kept as text
    assert all("\n" not in s and "\t" not in s for s in dev.text_b)
    assert dev.index[:3] == [0, 1, 2] and dev.index[-1] == 5462


def test_task_folder_and_name_variants(shared_data):
    assert load_task(shared_data / "glue" / "RTE").name == "RTE"
    assert load_task("sst2", shared_data / "glue").name == "SST-2"
    assert load_task("diagnostic", shared_data / "glue").name == "AX"
    assert glue_key("STS-B") == glue_key("stsb") == "sts-b"
    assert glue_key("MNLI") == "mnli" and glue_key("nope") is None


def test_real_sst2_labels(shared_data):
    dev = load_task("SST-2", shared_data / "glue").splits["dev"]
    assert dev.text_a[0] == "it 's a charming and often affecting journey . " and dev.labels[0] == 1


# ---------------------------------------------------------------------------------- standard-format fixtures

def test_cola_headerless_train_and_dev_test_with_header(tmp_path):
    folder = tmp_path / "glue" / "CoLA"
    rows = [["gj04", "1", "", "Our friends won't buy this analysis, let alone the next one we propose."],
            ["gj04", "0", "*", 'One more "pseudo generalization and I\'m giving up.'],
            ["gj04", "1", "", "The more we study verbs, the crazier they get."]]
    _tsv(folder / "train.tsv", rows)
    _tsv(folder / "dev.tsv", rows[:2])
    _tsv(folder / "test.tsv", [["index", "sentence"], ["0", "Bill whistled past the house."],
                               ["1", "The car honked its way down the road."]])
    task = load_task("CoLA", tmp_path / "glue")
    train = task.splits["train"]
    assert train.text_a[1] == 'One more "pseudo generalization and I\'m giving up.'
    assert train.labels == [1, 0, 1] and train.text_b is None and train.index == [0, 1, 2]
    assert task.splits["test"].text_a == ["Bill whistled past the house.", "The car honked its way down the road."]
    assert task.metrics == ["mcc"] and task.label_names == ["0", "1"]


def test_mrpc_with_byte_order_mark(tmp_path):
    folder = tmp_path / "MRPC"
    header = ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]
    row = ["1", "702876", "702977", 'Amrozi accused his brother , whom he called " the witness " , of distorting .',
           'Referring to him as only " the witness " , Amrozi accused his brother .']
    other = ["0", "2108705", "2108831", "Yucaipa owned Dominick 's .", "Yucaipa sold ."]
    _tsv(folder / "train.tsv", [header, row, other], bom=True)
    _tsv(folder / "dev.tsv", [header, row], bom=True)
    _tsv(folder / "test.tsv", [["index", "#1 ID", "#2 ID", "#1 String", "#2 String"],
                               ["0", "1089874", "1089925", "PCCW 's chief .", "Current Chief ."]])
    task = load_task(folder)
    assert task.splits["train"].labels == [1, 0] and task.splits["train"].text_b[1] == "Yucaipa sold ."
    assert task.splits["test"].index == [0] and task.metrics == ["f1", "accuracy"]


def test_stsb_regression_scores(tmp_path):
    folder = tmp_path / "STS-B"
    header = ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2"]
    _tsv(folder / "train.tsv", [header + ["score"],
                                ["0", "main-captions", "MSRvid", "2012test", "0001", "none", "none",
                                 "A plane is taking off.", "An air plane is taking off.", "5.000"],
                                ["1", "main-captions", "MSRvid", "2012test", "0004", "none", "none",
                                 "A man is playing a large flute.", "A man is playing a flute.", "3.800"]])
    _tsv(folder / "dev.tsv", [header + ["score"], ["0", "main-captions", "MSRvid", "2012test", "0000", "none",
                                                   "none", "A man with a hard hat is dancing.", "A man dances.", "5.000"]])
    _tsv(folder / "test.tsv", [header, ["0", "main-captions", "MSRvid", "2012test", "0024", "none", "none",
                                        "A girl is styling her hair.", "A girl is brushing her hair."]])
    task = load_task(folder)
    assert task.num_labels == 1 and task.label_names is None and task.is_regression
    assert task.splits["train"].labels == [5.0, 3.8] and task.metrics == ["pearson", "spearman"]
    assert task.splits["test"].labels is None


def test_qqp_malformed_rows_are_counted_not_hidden(tmp_path):
    folder = tmp_path / "QQP"
    header = ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"]
    _tsv(folder / "train.tsv", [header, ["133273", "213221", "213222", "How is the life of a math student?",
                                         "Which level of prepration is enough?", "0"],
                                ["402555", "536040", "536041", "How do I control my horny emotions?"],
                                ["360472", "364011", "490273", "What causes stool color to change?",
                                 "What can cause stool to come out as little balls?", "1"]])
    _tsv(folder / "dev.tsv", [header, ["1", "2", "3", "q one?", "q two?", "1"]])
    _tsv(folder / "test.tsv", [["id", "question1", "question2"], ["0", "Why did he go?", "Where did he go?"]])
    with pytest.warns(UserWarning, match=r"skipped 1 malformed row\(s\) .*first at line 3"):
        task = load_task(folder)
    train = task.splits["train"]
    assert train.labels == [0, 1] and train.index == [133273, 360472] and train.skipped == 1
    assert task.metrics == ["f1", "accuracy"]


MNLI_TRAIN = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
              "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", "label1", "gold_label"]
MNLI_DEV = MNLI_TRAIN[:-1] + ["label2", "label3", "label4", "label5", "gold_label"]
MNLI_TEST = MNLI_TRAIN[:10]


def _mnli_row(i, s1, s2, labels):
    return [str(i), "31193", f"{i}n", "government", "( ( Conceptually cream ) ... )", "( ... )",
            "(ROOT (S ...))", "(ROOT (S ...))", s1, s2] + labels


def test_mnli_matched_mismatched_and_ax(tmp_path):
    root = tmp_path / "glue"
    _tsv(root / "MNLI" / "train.tsv", [MNLI_TRAIN,
                                        _mnli_row(0, "Conceptually cream skimming has two basic dimensions.",
                                                  "Product and geography are what make cream skimming work. ",
                                                  ["neutral", "neutral"]),
                                        _mnli_row(1, 'you know "during the season', "You lose the things.",
                                                  ["entailment", "entailment"])])
    for split in ("dev_matched", "dev_mismatched"):
        _tsv(root / "MNLI" / f"{split}.tsv", [MNLI_DEV, _mnli_row(0, "The new rights are nice enough",
                                                                  "Everyone really likes the newest benefits ",
                                                                  ["neutral", "entailment", "neutral", "neutral",
                                                                   "neutral", "neutral"]),
                                              _mnli_row(1, "This site includes a list.", "The site has a list.",
                                                        ["contradiction"] * 6)])
    for split in ("test_matched", "test_mismatched"):
        _tsv(root / "MNLI" / f"{split}.tsv", [MNLI_TEST, _mnli_row(0, "Hierbas, ans seco.", "Hierbas.", [])])
    _tsv(root / "diagnostic" / "diagnostic.tsv", [["index", "sentence1", "sentence2"],
                                                  ["0", "The cat sat on the mat.", "The cat did not sit on the mat."]])
    task = load_task("MNLI", root)
    assert sorted(task.splits) == ["ax", "dev", "dev_mismatched", "test", "test_mismatched", "train"]
    assert task.label_names == ["contradiction", "entailment", "neutral"]
    assert task.splits["train"].labels == [2, 1] and task.splits["dev_mismatched"].labels == [2, 0]
    assert task.splits["train"].text_a[1] == 'you know "during the season'
    assert task.splits["test_mismatched"].labels is None and len(task.splits["ax"]) == 1


# ------------------------------------------------------------------------------------------------- generic

def test_generic_csv_with_quoting_and_jsonl(tmp_path):
    (tmp_path / "train.csv").write_text('text,label\n"hello, world",pos\n"say ""hi""",neg\nplain,pos\n',
                                        encoding="utf-8")
    (tmp_path / "dev.jsonl").write_text('{"text": "good", "label": "pos"}\n{"text": "bad", "label": "neg"}\n',
                                        encoding="utf-8")
    task = load_generic({"train": tmp_path / "train.csv", "dev": tmp_path / "dev.jsonl"}, text_a="text")
    assert task.label_names == ["neg", "pos"]
    assert task.splits["train"].text_a == ["hello, world", 'say "hi"', "plain"]
    assert task.splits["train"].labels == [1, 0, 1] and task.splits["dev"].labels == [1, 0]


def test_task_json_folder(tmp_path):
    _tsv(tmp_path / "train.tsv", [["q", "a", "y"], ["x?", "y.", "1.5"], ["z?", "w.", "0.5"]])
    _tsv(tmp_path / "dev.tsv", [["q", "a", "y"], ["x?", "y.", "2"]])
    (tmp_path / "task.json").write_text(json.dumps({"name": "mine", "text_a": "q", "text_b": "a", "label": "y",
                                                    "regression": True, "splits": {"train": "train.tsv",
                                                                                   "dev": "dev.tsv"}}))
    task = load_task(tmp_path)
    assert task.name == "mine" and task.num_labels == 1 and task.splits["train"].labels == [1.5, 0.5]
    (tmp_path / "task.json").write_text(json.dumps({"text_a": "q", "lable": "y"}))
    with pytest.raises(DataError, match="unknown key 'lable'; did you mean 'label'"):
        load_task(tmp_path)


# --------------------------------------------------------------------------------------------- bad input

def test_missing_column_names_the_columns(tmp_path):
    _tsv(tmp_path / "RTE" / "train.tsv", [["index", "sentence1", "label"], ["0", "a", "entailment"]])
    with pytest.raises(DataError, match=r"missing column 'sentence2' \(columns: index, sentence1, label\)"):
        load_task(tmp_path / "RTE")


def test_label_outside_the_label_set(tmp_path):
    _tsv(tmp_path / "RTE" / "dev.tsv", [["index", "sentence1", "sentence2", "label"], ["0", "a", "b", "maybe"]])
    with pytest.raises(DataError, match=r"dev.tsv: line 2: label 'maybe' is not one of entailment, not_entailment"):
        load_task(tmp_path / "RTE")


def test_invalid_utf8_and_binary_tsv(tmp_path):
    _tsv(tmp_path / "SST-2" / "train.tsv", [["sentence", "label"]])
    with open(tmp_path / "SST-2" / "train.tsv", "ab") as f:
        f.write(b"caf\xe9\t1\n")
    with pytest.raises(DataError, match="line 2 is not valid UTF-8"):
        load_task(tmp_path / "SST-2")
    (tmp_path / "SST-2" / "train.tsv").write_bytes(b"\x00\x01\x02")
    with pytest.raises(DataError, match="binary"):
        load_task(tmp_path / "SST-2")


def test_unknown_task_name_suggests(tmp_path):
    with pytest.raises(DataError, match="did you mean 'MRPC'"):
        load_task("MRCP", tmp_path)
    with pytest.raises(DataError, match="no CoLA files found"):
        load_task("cola", tmp_path)


def test_every_glue_task_has_metrics_and_a_test_split():
    for spec in GLUE_TASKS.values():
        assert spec.metrics and "test" in spec.splits
