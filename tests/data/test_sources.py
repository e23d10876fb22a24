"""Readers: line endings, blank lines, quotes, gzip, JSONL, folders, globs, datasets, and bad input."""

from __future__ import annotations

import gzip
import json

import pytest

from maskbench.data import sources
from maskbench.data.sources import iter_documents, resolve_inputs, split_sentences
from maskbench.errors import DataError

TEXT = 'First "quoted sentence.\nSecond line of doc one.\n\n  \nDoc two only line.\n\n\nDoc three, a.\nb.\n'
EXPECTED = [['First "quoted sentence.', "Second line of doc one."], ["Doc two only line."], ["Doc three, a.", "b."]]


def _write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"])
def test_text_documents_any_line_ending(tmp_path, ending):
    path = _write(tmp_path / "a.txt", TEXT.replace("\n", ending))
    assert list(iter_documents([path])) == EXPECTED


def test_crlf_split_across_read_chunks_is_one_line_break(tmp_path, monkeypatch):
    """A CR at the end of one chunk and its LF at the start of the next must not add a blank line."""
    text = "alpha beta\r\ngamma delta\r\n" * 50
    path = _write(tmp_path / "a.txt", text)
    for chunk in range(3, 20):
        monkeypatch.setattr(sources, "CHUNK_BYTES", chunk)
        docs = list(iter_documents([path]))
        assert len(docs) == 1 and len(docs[0]) == 100, chunk


def test_multibyte_characters_split_across_chunks(tmp_path, monkeypatch):
    path = _write(tmp_path / "a.txt", "été à l’école — ☃\n" * 20)
    monkeypatch.setattr(sources, "CHUNK_BYTES", 5)
    assert list(iter_documents([path])) == [["été à l’école — ☃"] * 20]


def test_bom_is_dropped(tmp_path):
    path = _write(tmp_path / "a.txt", b"\xef\xbb\xbfhello world\n")
    assert list(iter_documents([path])) == [["hello world"]]


def test_gzip_text(tmp_path):
    path = tmp_path / "a.txt.gz"
    with gzip.open(path, "wb") as f:
        f.write(TEXT.replace("\n", "\r\n").encode("utf-8"))
    assert list(iter_documents([path])) == EXPECTED


def test_jsonl_field_and_gz(tmp_path):
    records = [{"text": "one.\ntwo.", "id": 1}, {"text": "three.\n\nfour.", "id": 2}, {"text": None}]
    body = "\n".join(json.dumps(r) for r in records) + "\n\n"
    plain = _write(tmp_path / "a.jsonl", body)
    zipped = tmp_path / "b.jsonl.gz"
    with gzip.open(zipped, "wt", encoding="utf-8") as f:
        f.write(body)
    expected = [["one.", "two."], ["three."], ["four."]]
    assert list(iter_documents([plain])) == expected
    assert list(iter_documents([zipped])) == expected


def test_jsonl_missing_field_names_the_choices(tmp_path):
    path = _write(tmp_path / "a.jsonl", '{"body": "x"}\n')
    with pytest.raises(DataError, match=r"no field 'text' \(found: body\)"):
        list(iter_documents([path]))
    assert list(iter_documents([path], text_field="body")) == [["x"]]


def test_jsonl_invalid_line(tmp_path):
    path = _write(tmp_path / "a.jsonl", '{"text": "ok"}\n{oops\n')
    with pytest.raises(DataError, match="line 2 is not valid JSON"):
        list(iter_documents([path]))


def test_folder_and_glob_are_sorted_and_skip_other_files(tmp_path):
    _write(tmp_path / "b.txt", "bee\n")
    _write(tmp_path / "a.txt", "ay\n")
    _write(tmp_path / "sub" / "c.raw", "sea\n")
    _write(tmp_path / "labels.jsonl", '{"x": 1}\n')
    _write(tmp_path / "README.md", "not corpus\n")
    _write(tmp_path / ".hidden.txt", "hidden\n")
    assert [d[0] for d in iter_documents([tmp_path])] == ["ay", "bee", "sea"]
    assert [d[0] for d in iter_documents([str(tmp_path / "*.txt")])] == ["ay", "bee"]


def test_sentence_splitting_on_punctuation(tmp_path):
    assert split_sentences('He said "go." Then left! Why? ok') == ['He said "go."', "Then left!", "Why?", "ok"]
    path = _write(tmp_path / "a.txt", "A wrapped\nsentence. And another\none.\n")
    assert list(iter_documents([path], sentences="punctuation")) == [["A wrapped sentence.", "And another one."]]


def test_datasets_folder(tmp_path):
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "ds"
    datasets.Dataset.from_dict({"text": ["a b.\nc d.", "", "e f."], "n": [1, 2, 3]}).save_to_disk(str(folder))
    assert list(iter_documents([folder])) == [["a b.", "c d."], ["e f."]]
    with pytest.raises(DataError, match="no column 'body'"):
        list(iter_documents([folder], text_field="body"))


@pytest.mark.parametrize("make,message", [
    (lambda p: p / "missing.txt", "input not found"),
    (lambda p: _write(p / "bin.txt", b"\x00\x01\x02binary"), "binary"),
    (lambda p: _write(p / "bad.txt", b"good line\n\xff\xfe bad\n"), r"not valid UTF-8 \(bad byte at offset 10\)"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "holds no text files"),
    (lambda p: p / "*.nothing", "matches no files"),
])
def test_bad_inputs_are_one_line_errors(tmp_path, make, message):
    with pytest.raises(DataError, match=message) as info:
        list(iter_documents([make(tmp_path)]))
    assert "\n" not in str(info.value)


def test_no_inputs():
    with pytest.raises(DataError, match="no input given"):
        resolve_inputs([])


def test_hub_name_without_network_is_a_clear_error(monkeypatch):
    datasets = pytest.importorskip("datasets")
    calls = []

    def unreachable(name, config=None, split=None, streaming=False):
        calls.append((name, config, split, streaming))
        raise ConnectionError("Couldn't reach the Hugging Face Hub\nmore detail")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(DataError, match="cannot load dataset 'user/corpus' .*ConnectionError: Couldn't reach"):
        list(iter_documents(["hf:user/corpus:cfg:validation"]))
    assert calls == [("user/corpus", "cfg", "validation", True)]


def test_real_gutenberg_crlf_file(shared_data):
    path = shared_data / "corpus" / "gutenberg" / "pg1656.txt"
    raw = path.read_bytes()
    assert b"\r\n" in raw
    docs = list(iter_documents([path]))
    lines = [s for d in docs for s in d]
    assert not any("\r" in s for s in lines)
    expected = [ln.strip() for ln in raw.decode("utf-8-sig").splitlines() if ln.strip()]
    assert lines == expected
