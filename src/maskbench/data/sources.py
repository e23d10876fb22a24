"""Readers that turn text on disk into a stream of documents, each a list of sentences.

Every reader streams: files are read in large binary chunks and decoded incrementally, so memory stays
flat whatever the corpus size, the byte count drives an honest MB/s progress bar, and an invalid byte is
reported with its file and offset instead of surfacing as a traceback from deep inside a tokenizer.

Inputs (any mix, in order):
- a text file (`.txt`, `.raw`, anything else that is UTF-8 text): documents are separated by blank lines,
  each non-blank line is a sentence (BERT's convention); any line ending works (LF, CRLF, CR);
- a JSONL file (`.jsonl`): one document per record, taken from `text_field`; its lines are its sentences;
- either of the above compressed with gzip (`.gz`);
- a folder: every text file under it (`.txt`, `.text`, `.raw`, `.tokens`, and those gzipped), sorted; JSONL
  files in a folder are left alone (they need a field name, and a folder often keeps labels beside text),
  so name them explicitly or by glob (`data/*.jsonl`);
- a glob (`data/**/*.txt`), matching any of the above;
- a Hugging Face `datasets` folder saved with `save_to_disk`, or `hf:NAME[:CONFIG][:SPLIT]` when a hub
  is reachable (needs the optional `datasets` package); each row's `text_field` is a document.
"""

from __future__ import annotations

import codecs
import glob as globlib
import gzip
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from tqdm.auto import tqdm

from ..errors import DataError

#: Files a folder input contributes (anything else in the folder is left alone).
TEXT_SUFFIXES = (".txt", ".text", ".raw", ".tokens")
JSONL_SUFFIXES = (".jsonl", ".ndjson")
CHUNK_BYTES = 1 << 22
SENTENCE_MODES = ("lines", "punctuation")

_LINE_ENDS = "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"'\u201d\u2019)\]]))\s+")
_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class Source:
    """One resolved input: a file on disk (`kind` text/jsonl) or a `datasets` dataset (`kind` hf)."""

    spec: str
    kind: str
    path: Path | None = None
    compressed: bool = False

    @property
    def size(self) -> int:
        return self.path.stat().st_size if self.path is not None else 0


def _is_hf_folder(path: Path) -> bool:
    return path.is_dir() and any((path / n).is_file() for n in ("dataset_dict.json", "state.json", "dataset_info.json"))


def _file_source(path: Path, spec: str) -> Source:
    name = path.name.lower()
    compressed = name.endswith(".gz")
    if compressed:
        name = name[:-3]
    kind = "jsonl" if name.endswith(JSONL_SUFFIXES) else "text"
    return Source(spec=spec, kind=kind, path=path, compressed=compressed)


def _folder_files(folder: Path) -> list[Path]:
    keep = []
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or any(part.startswith(".") for part in p.relative_to(folder).parts):
            continue
        name = p.name.lower()
        base = name[:-3] if name.endswith(".gz") else name
        if base.endswith(TEXT_SUFFIXES):
            keep.append(p)
    return keep


def resolve_inputs(inputs: Sequence[str | Path] | str | Path) -> list[Source]:
    """Expand files, folders, globs and `hf:` names into an ordered list of sources; fail on anything missing."""
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    if not inputs:
        raise DataError("no input given; pass at least one file, folder or glob")
    sources: list[Source] = []
    for item in inputs:
        spec = str(item)
        if spec.startswith("hf:"):
            sources.append(Source(spec=spec, kind="hf"))
            continue
        path = Path(spec).expanduser()
        if path.is_file():
            sources.append(_file_source(path, spec))
        elif _is_hf_folder(path):
            sources.append(Source(spec=spec, kind="hf", path=path))
        elif path.is_dir():
            files = _folder_files(path)
            if not files:
                raise DataError(f"input folder {spec} holds no text files ({', '.join(TEXT_SUFFIXES)}, .gz)")
            sources.extend(_file_source(p, str(p)) for p in files)
        elif _GLOB_CHARS & set(spec):
            matches = sorted(Path(m) for m in globlib.glob(spec, recursive=True))
            matches = [m for m in matches if m.is_file()]
            if not matches:
                raise DataError(f"input pattern {spec} matches no files")
            sources.extend(_file_source(p, str(p)) for p in matches)
        else:
            raise DataError(f"input not found: {spec}")
    return sources


def _open_binary(source: Source):
    try:
        return gzip.open(source.path, "rb") if source.compressed else open(source.path, "rb")
    except OSError as e:
        raise DataError(f"cannot read {source.spec}: {e.strerror or e}") from None


def iter_lines(source: Source, on_bytes: Callable[[int], None] | None = None) -> Iterator[str]:
    """Decoded lines of one text file without their line endings (LF, CRLF, CR all end a line).

    Reads 4 MB binary chunks and decodes them incrementally; a CR at the end of a chunk is held back so a
    CRLF split across two chunks never produces a phantom blank line (which would cut a document in two).
    """
    decoder = codecs.getincrementaldecoder("utf-8-sig")("strict")
    offset = 0
    carry = ""
    with _open_binary(source) as f:
        first = True
        while True:
            try:
                chunk = f.read(CHUNK_BYTES)
            except (OSError, EOFError, gzip.BadGzipFile) as e:
                raise DataError(f"cannot read {source.spec}: {e}") from None
            final = not chunk
            if first:
                first = False
                if b"\x00" in chunk[:8192]:
                    raise DataError(f"{source.spec} looks like a binary file (it contains NUL bytes); pass UTF-8 text")
            try:
                text = decoder.decode(chunk, final=final)
            except UnicodeDecodeError as e:
                raise DataError(
                    f"{source.spec} is not valid UTF-8 (bad byte at offset {offset + e.start}); re-encode it as UTF-8"
                ) from None
            offset += len(chunk)
            if on_bytes is not None and chunk:
                on_bytes(len(chunk))
            text = carry + text
            if not text:
                if final:
                    return
                continue
            lines = text.splitlines(True)
            last = lines[-1]
            if not final and (last[-1] not in _LINE_ENDS or last[-1] == "\r"):
                carry = lines.pop()
            else:
                carry = ""
            for line in lines:
                yield line.rstrip(_LINE_ENDS)
            if final:
                return


def split_sentences(text: str) -> list[str]:
    """Split running text after `.`, `!` or `?` (plus closing quotes/brackets) followed by whitespace."""
    return [s for s in (p.strip() for p in _SENTENCE_END.split(text)) if s]


def _document(lines: list[str], sentences: str) -> list[str]:
    if sentences == "punctuation":
        return split_sentences(" ".join(lines))
    return lines


def _blank_line_documents(lines: Iterable[str], sentences: str) -> Iterator[list[str]]:
    """Group non-empty lines into documents at blank lines."""
    current: list[str] = []
    for line in lines:
        stripped = line.strip()
        if stripped:
            current.append(stripped)
        elif current:
            yield _document(current, sentences)
            current = []
    if current:
        yield _document(current, sentences)


def _text_documents(source: Source, sentences: str, on_bytes) -> Iterator[list[str]]:
    return _blank_line_documents(iter_lines(source, on_bytes), sentences)


def _record_documents(text: str, sentences: str) -> Iterator[list[str]]:
    """A record's text may itself hold several blank-line-separated documents (a whole article)."""
    return _blank_line_documents(text.splitlines(), sentences)


def _jsonl_documents(source: Source, text_field: str, sentences: str, on_bytes) -> Iterator[list[str]]:
    for number, line in enumerate(iter_lines(source, on_bytes), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{source.spec}: line {number} is not valid JSON ({e.msg})") from None
        if not isinstance(record, dict) or text_field not in record:
            keys = ", ".join(sorted(record)) if isinstance(record, dict) else type(record).__name__
            raise DataError(f"{source.spec}: line {number} has no field '{text_field}' (found: {keys}); "
                            f"choose the field with --text-field")
        value = record[text_field]
        if value is None:
            continue
        if not isinstance(value, str):
            raise DataError(f"{source.spec}: line {number} field '{text_field}' is not a string")
        yield from _record_documents(value, sentences)


def _hf_dataset(source: Source):
    try:
        import datasets  # lazy: optional dependency (or slow), only this path needs it
    except ImportError:
        raise DataError(f"{source.spec} needs the optional 'datasets' package: pip install 'maskbench[hf]'") from None
    if source.path is not None:
        loaded = datasets.load_from_disk(str(source.path))
        if isinstance(loaded, datasets.DatasetDict):
            split = "train" if "train" in loaded else sorted(loaded)[0]
            loaded = loaded[split]
        return loaded
    parts = source.spec[3:].split(":")
    name = parts[0]
    config = parts[1] if len(parts) > 1 and parts[1] else None
    split = parts[2] if len(parts) > 2 and parts[2] else "train"
    try:
        return datasets.load_dataset(name, config, split=split, streaming=True)
    except Exception as e:  # the hub raises many types (connection, missing name, missing config)
        raise DataError(f"cannot load dataset {name!r} from the Hugging Face hub ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else 'no detail'}); save it with save_to_disk "
                        f"and pass the folder instead") from None


def _hf_documents(source: Source, text_field: str, sentences: str, on_bytes) -> Iterator[list[str]]:
    dataset = _hf_dataset(source)
    names = list(getattr(dataset, "column_names", None) or [])
    if names and text_field not in names:
        raise DataError(f"{source.spec} has no column '{text_field}' (columns: {', '.join(names)}); "
                        f"choose one with --text-field")
    for row in dataset:
        value = row.get(text_field)
        if isinstance(value, str):
            if on_bytes is not None:
                on_bytes(len(value))
            yield from _record_documents(value, sentences)


def iter_documents(sources: Sequence[Source] | Sequence[str | Path] | str | Path, text_field: str = "text",
                   sentences: str = "lines", on_bytes: Callable[[int], None] | None = None,
                   ) -> Iterator[list[str]]:
    """Stream every document of every input as a list of sentences (non-empty, stripped)."""
    if sentences not in SENTENCE_MODES:
        raise DataError(f"unknown sentence mode {sentences!r}; use one of {', '.join(SENTENCE_MODES)}")
    if not sources or not all(isinstance(s, Source) for s in sources):
        sources = resolve_inputs(sources)
    for source in sources:
        if source.kind == "text":
            yield from _text_documents(source, sentences, on_bytes)
        elif source.kind == "jsonl":
            yield from _jsonl_documents(source, text_field, sentences, on_bytes)
        else:
            yield from _hf_documents(source, text_field, sentences, on_bytes)


def iter_sentences(sources, text_field: str = "text", sentences: str = "lines") -> Iterator[str]:
    for document in iter_documents(sources, text_field=text_field, sentences=sentences):
        yield from document


def total_bytes(sources: Sequence[Source]) -> int | None:
    """Bytes of all inputs (the progress bar's total); None when a dataset or gzip makes it unknown."""
    if any(s.kind == "hf" or s.compressed for s in sources):
        return None
    return sum(s.size for s in sources)


def describe_inputs(sources: Sequence[Source]) -> list[dict]:
    """What the manifest records about each input, enough to tell a re-run from a different run."""
    out = []
    for s in sources:
        entry = {"path": str(s.path.resolve()) if s.path is not None else s.spec, "kind": s.kind}
        if s.path is not None and s.path.is_file():
            entry["bytes"] = s.size
        out.append(entry)
    return out


def progress(total: int | None, desc: str, disable: bool | None = None):
    """A tqdm bar in bytes (shows MB/s) on stderr."""
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1000, dynamic_ncols=True,
                disable=disable, leave=False)


def batched_documents(documents: Iterable[list[str]], max_chars: int) -> Iterator[list[list[str]]]:
    """Group documents into batches of about `max_chars` characters (the tokenizer's unit of parallel work)."""
    batch: list[list[str]] = []
    size = 0
    for doc in documents:
        batch.append(doc)
        size += sum(map(len, doc))
        if size >= max_chars:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch
