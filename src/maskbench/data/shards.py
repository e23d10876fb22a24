"""Packed, memory-mapped token shards: text in, flat arrays + a manifest out.

Layout of a prepared folder::

    manifest.json      format version, counts, dtype, tokenizer hash, sha256 of every array file
    prepare.toml       the resolved PrepareConfig
    tokenizer.json     the tokenizer the ids belong to (so a run folder never loses it)
    train/ validation/ one folder per split, each holding flat little-endian arrays:
        tokens.bin           uint16 (vocabulary <= 65,535) or uint32 token ids, documents back to back
        word_starts.bin      uint8 0/1: the token begins a word (whole-word masking)
        sentence_ids.bin     uint32: index of the token's sentence within the split
        doc_ids.bin          uint32: index of the token's document within the split
        doc_offsets.bin      int64 [documents + 1]: token offset where each document starts
        sentence_offsets.bin int64 [sentences + 1]: token offset where each sentence starts

No special tokens are stored: the loader adds `[CLS]`/`[SEP]` (or nothing, for T5 objectives), so one
preparation serves every objective and any sequence length. Documents go to the validation split with
probability `val_fraction` (seeded), so no document is split across the two.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import __version__
from ..config import check_choice, check_range, nearest, save_toml, to_dict
from ..errors import DataError
from ..io import atomic_dir, claim_out_dir, marked_kind, read_json, sha256_file, write_json
from .sources import (batched_documents, describe_inputs, iter_documents, progress as progress_bar, resolve_inputs,
                      total_bytes)
from .tokenizer import canonical_json, load_tokenizer, special_ids, token_dtype, tokenizer_hash

FORMAT = "maskbench-shards"
FORMAT_VERSION = 1
SPLITS = ("train", "validation")
ARRAYS = {
    "tokens": None,  # the manifest's dtype
    "word_starts": "uint8",
    "sentence_ids": "uint32",
    "doc_ids": "uint32",
    "doc_offsets": "int64",
    "sentence_offsets": "int64",
}

#: What `prepare` returns and `Shards.manifest` holds: the parsed manifest.json.
Manifest = dict


@dataclass
class PrepareConfig:
    """How text becomes shards.

    `sentences`: "lines" takes each non-blank line as a sentence (BERT's input convention, and the synthetic
    corpus's); "punctuation" re-splits each document's running text after `.`/`!`/`?`, better for
    hard-wrapped books. `batch_chars` is how much text goes to the tokenizer's parallel `encode_batch` at once.
    """

    seq_len: int = 128
    val_fraction: float = 0.05
    seed: int = 0
    sentences: str = "lines"
    text_field: str = "text"
    batch_chars: int = 2_000_000

    def __post_init__(self):
        check_range("seq_len", self.seq_len, 8, 1 << 20)
        check_range("val_fraction", self.val_fraction, 0.0, 0.5)
        check_choice("sentences", self.sentences, ("lines", "punctuation"))
        check_range("batch_chars", self.batch_chars, 1)


def _same_run(existing: dict, wanted: dict) -> bool:
    keys = ("format_version", "tokenizer_hash", "config", "inputs")
    return all(existing.get(k) == wanted.get(k) for k in keys)


SHARDS_KIND = "prepared shards"


def _check_out_dir(out_dir: Path, wanted: dict, overwrite: bool) -> dict | None:
    """The existing manifest if `out_dir` already holds this exact run; an error if it holds anything else
    (through the one output guard, `claim_out_dir`)."""
    manifest_path = out_dir / "manifest.json"
    if manifest_path.is_file() and not overwrite and marked_kind(out_dir) in (None, SHARDS_KIND):
        try:
            existing = read_json(manifest_path)
        except Exception:
            existing = {}
        if _same_run(existing, wanted):
            return existing
        if marked_kind(out_dir) == SHARDS_KIND:
            raise DataError(f"{out_dir} already holds a different preparation (other inputs, tokenizer or "
                            f"settings); choose another --out or pass --overwrite")
    claim_out_dir(out_dir, SHARDS_KIND, overwrite)
    return None


class _SplitWriter:
    """Appends token arrays of whole documents to one split's files."""

    def __init__(self, folder: Path, token_dtype: str):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.dtype = np.dtype(token_dtype)
        self.files = {name: open(folder / f"{name}.bin", "wb") for name in
                      ("tokens", "word_starts", "sentence_ids", "doc_ids")}
        self.tokens = 0
        self.docs = 0
        self.sentences = 0
        self.doc_offsets = [np.zeros(1, np.int64)]
        self.sentence_offsets = [np.zeros(1, np.int64)]

    def write(self, ids: np.ndarray, starts: np.ndarray, sent_local: np.ndarray, doc_local: np.ndarray,
              sent_lengths: np.ndarray, doc_lengths: np.ndarray) -> None:
        """`sent_local`/`doc_local`: per token, 0-based sentence/document index within this chunk."""
        if len(ids) == 0:
            return
        self.files["tokens"].write(ids.astype(self.dtype, copy=False).tobytes())
        self.files["word_starts"].write(starts.astype(np.uint8, copy=False).tobytes())
        self.files["sentence_ids"].write((sent_local + self.sentences).astype(np.uint32).tobytes())
        self.files["doc_ids"].write((doc_local + self.docs).astype(np.uint32).tobytes())
        self.doc_offsets.append(self.tokens + np.cumsum(doc_lengths, dtype=np.int64))
        self.sentence_offsets.append(self.tokens + np.cumsum(sent_lengths, dtype=np.int64))
        self.tokens += len(ids)
        self.docs += len(doc_lengths)
        self.sentences += len(sent_lengths)

    def close(self) -> None:
        for f in self.files.values():
            f.close()
        np.concatenate(self.doc_offsets).tofile(self.folder / "doc_offsets.bin")
        np.concatenate(self.sentence_offsets).tofile(self.folder / "sentence_offsets.bin")


def word_starts_from_word_ids(word_ids: np.ndarray, sentence_starts: np.ndarray) -> np.ndarray:
    """A token starts a word when its word id differs from the previous token's, or it opens a sentence.

    `word_ids` is float with NaN for tokens outside any word (NaN != NaN, so each such token stands alone).
    """
    starts = np.ones(len(word_ids), dtype=bool)
    if len(word_ids) > 1:
        starts[1:] = word_ids[1:] != word_ids[:-1]
    starts[sentence_starts] = True
    return starts


def encode_sentences(tokenizer, sentences: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token ids, word-start flags and per-sentence token counts for a batch of sentences.

    One parallel `encode_batch` call; the per-sentence lists are flattened by C-level iteration, so the
    Python cost is per sentence, never per token.
    """
    encodings = tokenizer.encode_batch(sentences, add_special_tokens=False)
    lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
    total = int(lengths.sum())
    ids = np.fromiter(itertools.chain.from_iterable(e.ids for e in encodings), dtype=np.int64, count=total)
    word_ids = np.array(list(itertools.chain.from_iterable(e.word_ids for e in encodings)), dtype=np.float64)
    if word_ids.shape != ids.shape:  # no word ids at all (an unusual tokenizer): every token is a word
        word_ids = np.arange(total, dtype=np.float64)
    firsts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if len(lengths) else np.zeros(0, np.int64)
    firsts = firsts[lengths > 0]
    return ids, word_starts_from_word_ids(word_ids, firsts), lengths


def _config_record(config: PrepareConfig) -> dict:
    record = to_dict(config)
    record.pop("batch_chars", None)  # changes speed, never the output
    return record


def prepare(inputs: Sequence[str | Path] | str | Path, tokenizer_path: str | Path, out_dir: str | Path,
            seq_len: int = 128, val_fraction: float = 0.05, seed: int = 0, *, config: PrepareConfig | None = None,
            overwrite: bool = False, progress: bool | None = None) -> Manifest:
    """Tokenize `inputs` (files, folders, globs, JSONL, .gz, datasets: see `sources`) into shards in `out_dir`.

    Streams the input in batches of about `batch_chars` characters; writes into a temporary folder that is
    renamed to `out_dir` only when complete, so an interrupted or failed run leaves nothing that looks valid.
    Re-running with the same inputs, tokenizer and settings is a no-op that returns the existing manifest.
    """
    if config is None:
        config = PrepareConfig(seq_len=seq_len, val_fraction=val_fraction, seed=seed)
    out_dir = Path(out_dir)
    sources = resolve_inputs(inputs)
    tokenizer = load_tokenizer(tokenizer_path)
    vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
    dtype = token_dtype(vocab_size)
    wanted = {
        "format_version": FORMAT_VERSION,
        "tokenizer_hash": tokenizer_hash(tokenizer),
        "config": _config_record(config),
        "inputs": describe_inputs(sources),
    }
    existing = _check_out_dir(out_dir, wanted, overwrite)
    if existing is not None:
        return existing

    rng = np.random.default_rng([config.seed, 0x5B11])
    disable = None if progress is None else not progress  # None: shown on a terminal only
    bar = progress_bar(total_bytes(sources), desc=f"prepare {out_dir.name}", disable=disable)
    with atomic_dir(out_dir, kind=SHARDS_KIND) as tmp:
        writers = {name: _SplitWriter(tmp / name, dtype) for name in SPLITS}
        documents = iter_documents(sources, text_field=config.text_field, sentences=config.sentences,
                                   on_bytes=bar.update)
        for batch in batched_documents(documents, config.batch_chars):
            sentences = [s for doc in batch for s in doc]
            ids, starts, sent_lengths = encode_sentences(tokenizer, sentences)
            sent_doc = np.repeat(np.arange(len(batch)), [len(doc) for doc in batch])
            keep_sent = sent_lengths > 0
            sent_lengths, sent_doc = sent_lengths[keep_sent], sent_doc[keep_sent]
            doc_lengths = np.bincount(sent_doc, weights=sent_lengths, minlength=len(batch)).astype(np.int64)
            in_val = rng.random(len(batch)) < config.val_fraction
            token_doc = np.repeat(sent_doc, sent_lengths)
            token_sent = np.repeat(np.arange(len(sent_lengths)), sent_lengths)
            for name, mask_docs in (("train", ~in_val), ("validation", in_val)):
                docs = np.flatnonzero(mask_docs & (doc_lengths > 0))
                if len(docs) == 0:
                    continue
                token_mask = np.isin(token_doc, docs)
                sent_mask = np.isin(sent_doc, docs)
                # renumber this chunk's sentences and documents densely within the split
                sent_rank = np.cumsum(sent_mask) - 1
                doc_rank = np.cumsum(np.isin(np.arange(len(batch)), docs)) - 1
                writers[name].write(ids[token_mask], starts[token_mask], sent_rank[token_sent[token_mask]],
                                    doc_rank[token_doc[token_mask]], sent_lengths[sent_mask], doc_lengths[docs])
        bar.close()
        for w in writers.values():
            w.close()
        counts = {name: w.tokens for name, w in writers.items()}
        if counts["train"] + counts["validation"] == 0:
            raise DataError(f"the inputs hold no text ({', '.join(s.spec for s in sources)}); nothing to prepare")
        _rebalance(tmp, writers, dtype, config.val_fraction)
        (tmp / "tokenizer.json").write_text(tokenizer.to_str(), encoding="utf-8")
        save_toml(config, tmp / "prepare.toml")
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "maskbench_version": __version__,
            "dtype": dtype,
            "vocab_size": vocab_size,
            "seq_len": config.seq_len,
            "tokenizer": "tokenizer.json",
            "tokenizer_hash": wanted["tokenizer_hash"],
            "tokenizer_json_sha256": _sha(canonical_json(tokenizer)),
            "config": wanted["config"],
            "inputs": wanted["inputs"],
            "splits": {name: _split_record(tmp, name, writers[name], dtype) for name in SPLITS},
        }
        write_json(tmp / "manifest.json", manifest)
    return manifest


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _split_record(root: Path, name: str, writer: _SplitWriter, dtype: str) -> dict:
    files = {}
    for array, array_dtype in ARRAYS.items():
        path = root / name / f"{array}.bin"
        files[array] = {"path": f"{name}/{array}.bin", "dtype": array_dtype or dtype,
                        "bytes": path.stat().st_size, "sha256": sha256_file(path)}
    return {"tokens": writer.tokens, "documents": writer.docs, "sentences": writer.sentences, "files": files}


def _rebalance(root: Path, writers: dict, dtype: str, val_fraction: float) -> None:
    """Make both splits non-empty when possible: with few documents the coin flips can leave one empty.

    Moves the last document of the fuller split to the empty one (only when the fuller split has at least
    two), by truncating and appending the flat files; offsets are rewritten.
    """
    train, val = writers["train"], writers["validation"]
    if val_fraction <= 0:
        if val.tokens:
            raise DataError("internal: validation split written with val_fraction = 0")
        return
    if val.docs == 0 and train.docs >= 2:
        source, target = train, val
    elif train.docs == 0 and val.docs >= 2:
        source, target = val, train
    else:
        return
    doc_offsets = np.fromfile(source.folder / "doc_offsets.bin", dtype=np.int64)
    sent_offsets = np.fromfile(source.folder / "sentence_offsets.bin", dtype=np.int64)
    cut = int(doc_offsets[-2])
    first_sentence = int(np.searchsorted(sent_offsets, cut))
    arrays = {}
    for array in ("tokens", "word_starts", "sentence_ids", "doc_ids"):
        array_dtype = np.dtype(ARRAYS[array] or dtype)
        path = source.folder / f"{array}.bin"
        data = np.fromfile(path, dtype=array_dtype)
        arrays[array] = data[cut:].copy()
        with open(path, "r+b") as f:
            f.truncate(cut * array_dtype.itemsize)
    moved_tokens = len(arrays["tokens"])
    moved_sentences = len(sent_offsets) - 1 - first_sentence
    for array, values in arrays.items():
        if array == "sentence_ids":
            values = (values - first_sentence + target.sentences).astype(np.uint32)
        elif array == "doc_ids":
            values = np.full(len(values), target.docs, dtype=np.uint32)
        with open(target.folder / f"{array}.bin", "ab") as f:
            f.write(values.tobytes())
    target_doc = np.fromfile(target.folder / "doc_offsets.bin", dtype=np.int64)
    target_sent = np.fromfile(target.folder / "sentence_offsets.bin", dtype=np.int64)
    np.append(target_doc, target.tokens + moved_tokens).tofile(target.folder / "doc_offsets.bin")
    np.concatenate([target_sent, target.tokens + (sent_offsets[first_sentence + 1:] - cut)]).tofile(
        target.folder / "sentence_offsets.bin")
    doc_offsets[:-1].tofile(source.folder / "doc_offsets.bin")
    sent_offsets[:first_sentence + 1].tofile(source.folder / "sentence_offsets.bin")
    target.tokens += moved_tokens
    target.docs += 1
    target.sentences += moved_sentences
    source.tokens -= moved_tokens
    source.docs -= 1
    source.sentences -= moved_sentences


@dataclass
class SplitArrays:
    """One split's arrays, memory-mapped read-only (nothing is loaded until indexed)."""

    tokens: np.ndarray
    word_starts: np.ndarray
    sentence_ids: np.ndarray
    doc_ids: np.ndarray
    doc_offsets: np.ndarray
    sentence_offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def num_documents(self) -> int:
        return len(self.doc_offsets) - 1

    @property
    def num_sentences(self) -> int:
        return len(self.sentence_offsets) - 1


class Shards:
    """A prepared shard folder: `Shards.open(dir)` checks the manifest and sizes (and hashes with verify=True)."""

    def __init__(self, root: Path, manifest: Manifest):
        self.root = root
        self.manifest = manifest
        self._splits: dict[str, SplitArrays] = {}

    @classmethod
    def open(cls, root: str | Path, verify: bool = False) -> "Shards":
        root = Path(root)
        path = root / "manifest.json"
        if not path.is_file():
            raise DataError(f"{root} holds no shards (no manifest.json); create them with 'maskbench prepare'")
        manifest = read_json(path)
        if manifest.get("format") != FORMAT:
            raise DataError(f"{path} is not a maskbench shard manifest")
        if manifest.get("format_version") != FORMAT_VERSION:
            raise DataError(f"{root} uses shard format {manifest.get('format_version')}, this maskbench reads "
                            f"{FORMAT_VERSION}; prepare the data again")
        for split, record in manifest["splits"].items():
            for array, info in record["files"].items():
                file = root / info["path"]
                if not file.is_file():
                    raise DataError(f"{root}: {info['path']} is missing; prepare the data again")
                if file.stat().st_size != info["bytes"]:
                    raise DataError(f"{root}: {info['path']} has {file.stat().st_size} bytes, the manifest says "
                                    f"{info['bytes']}; the shards are truncated or corrupted, prepare them again")
                if verify and sha256_file(file) != info["sha256"]:
                    raise DataError(f"{root}: {info['path']} does not match its sha256 in manifest.json; "
                                    f"the shards are corrupted, prepare them again")
        return cls(root, manifest)

    def verify(self) -> None:
        """Check every file's sha256 against the manifest (reads all the data once)."""
        Shards.open(self.root, verify=True)

    @property
    def dtype(self) -> str:
        return self.manifest["dtype"]

    @property
    def tokenizer_path(self) -> Path:
        return self.root / self.manifest.get("tokenizer", "tokenizer.json")

    def tokenizer(self):
        return load_tokenizer(self.tokenizer_path)

    def special_ids(self):
        return special_ids(self.tokenizer())

    def split(self, name: str) -> SplitArrays:
        if name not in self.manifest["splits"]:
            hint = nearest(name, self.manifest["splits"])
            raise DataError(f"no split {name!r} in {self.root}" + (f"; did you mean '{hint}'?" if hint else ""))
        if name not in self._splits:
            record = self.manifest["splits"][name]
            arrays = {}
            for array, info in record["files"].items():
                path = self.root / info["path"]
                dtype = np.dtype(info["dtype"])
                if info["bytes"] == 0:
                    arrays[array] = np.zeros(0, dtype=dtype)
                else:
                    arrays[array] = np.memmap(path, dtype=dtype, mode="r")
            arrays["word_starts"] = arrays["word_starts"].view(np.bool_)
            self._splits[name] = SplitArrays(**arrays)
        return self._splits[name]


__all__ = ["PrepareConfig", "prepare", "Shards", "SplitArrays", "Manifest", "FORMAT_VERSION",
           "encode_sentences", "word_starts_from_word_ids"]
