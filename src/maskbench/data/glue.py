"""GLUE tasks from the standard `download_glue_data.py` layout, and any TSV/CSV/JSONL task with named columns.

Every GLUE file has its quirks, and each is handled here rather than by the caller:
- CoLA train/dev have no header (`source, label, original label, sentence`); its test has `index, sentence`;
- MRPC names its columns `Quality`, `#1 String`, `#2 String` (the header may start with a byte-order mark);
- STS-B is a regression task (`score`, floats 0-5) with genre/file/year columns in front;
- QQP has rows cut short (a newline inside a question): they are skipped and counted, never silently;
- MNLI has two dev and two test splits (matched/mismatched) and a dozen columns, labels in `gold_label`;
- QNLI `question, sentence`; RTE/WNLI `sentence1, sentence2`; SST-2 `sentence, label`; AX is unlabeled;
- quotes are data, not syntax: files are split on tabs with quoting disabled (csv.QUOTE_NONE semantics),
  so an unbalanced `"` in QNLI or SST-2 never swallows the following lines.

Labels come back as class indices into `label_names` (ints) or floats for regression; a label outside the
task's label set is an error that names the file, line and value.
"""

from __future__ import annotations

import csv
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from ..config import nearest
from ..errors import DataError

MNLI_LABELS = ["contradiction", "entailment", "neutral"]


@dataclass(frozen=True)
class SplitSpec:
    """How one file of a task is read: columns by header name, or by position for headerless files."""

    file: str
    text_a: str | int
    text_b: str | int | None = None
    label: str | int | None = None
    index: str | int | None = None
    header: bool = True
    min_columns: int | None = None


@dataclass(frozen=True)
class TaskSpec:
    name: str
    folder: str
    splits: dict
    label_names: list | None  # None: regression
    metrics: list
    aliases: tuple = ()


def _pair_spec(file, a, b, label=None, index="index"):
    return SplitSpec(file, a, b, label, index)


GLUE_TASKS: dict[str, TaskSpec] = {
    "cola": TaskSpec("CoLA", "CoLA", {
        "train": SplitSpec("train.tsv", 3, None, 1, None, header=False, min_columns=4),
        "dev": SplitSpec("dev.tsv", 3, None, 1, None, header=False, min_columns=4),
        "test": SplitSpec("test.tsv", "sentence", None, None, "index"),
    }, ["0", "1"], ["mcc"]),
    "sst-2": TaskSpec("SST-2", "SST-2", {
        "train": SplitSpec("train.tsv", "sentence", None, "label"),
        "dev": SplitSpec("dev.tsv", "sentence", None, "label"),
        "test": SplitSpec("test.tsv", "sentence", None, None, "index"),
    }, ["0", "1"], ["accuracy"], ("sst2", "sst")),
    "mrpc": TaskSpec("MRPC", "MRPC", {
        "train": SplitSpec("train.tsv", "#1 String", "#2 String", "Quality"),
        "dev": SplitSpec("dev.tsv", "#1 String", "#2 String", "Quality"),
        "test": SplitSpec("test.tsv", "#1 String", "#2 String", None, "index"),
    }, ["0", "1"], ["f1", "accuracy"]),
    "sts-b": TaskSpec("STS-B", "STS-B", {
        "train": _pair_spec("train.tsv", "sentence1", "sentence2", "score"),
        "dev": _pair_spec("dev.tsv", "sentence1", "sentence2", "score"),
        "test": _pair_spec("test.tsv", "sentence1", "sentence2"),
    }, None, ["pearson", "spearman"], ("stsb", "sts")),
    "qqp": TaskSpec("QQP", "QQP", {
        "train": SplitSpec("train.tsv", "question1", "question2", "is_duplicate", "id"),
        "dev": SplitSpec("dev.tsv", "question1", "question2", "is_duplicate", "id"),
        "test": SplitSpec("test.tsv", "question1", "question2", None, "id"),
    }, ["0", "1"], ["f1", "accuracy"]),
    "mnli": TaskSpec("MNLI", "MNLI", {
        "train": _pair_spec("train.tsv", "sentence1", "sentence2", "gold_label"),
        "dev": _pair_spec("dev_matched.tsv", "sentence1", "sentence2", "gold_label"),
        "dev_mismatched": _pair_spec("dev_mismatched.tsv", "sentence1", "sentence2", "gold_label"),
        "test": _pair_spec("test_matched.tsv", "sentence1", "sentence2"),
        "test_mismatched": _pair_spec("test_mismatched.tsv", "sentence1", "sentence2"),
    }, MNLI_LABELS, ["accuracy"], ("mnli-m", "mnli_matched")),
    "qnli": TaskSpec("QNLI", "QNLI", {
        "train": _pair_spec("train.tsv", "question", "sentence", "label"),
        "dev": _pair_spec("dev.tsv", "question", "sentence", "label"),
        "test": _pair_spec("test.tsv", "question", "sentence"),
    }, ["entailment", "not_entailment"], ["accuracy"]),
    "rte": TaskSpec("RTE", "RTE", {
        "train": _pair_spec("train.tsv", "sentence1", "sentence2", "label"),
        "dev": _pair_spec("dev.tsv", "sentence1", "sentence2", "label"),
        "test": _pair_spec("test.tsv", "sentence1", "sentence2"),
    }, ["entailment", "not_entailment"], ["accuracy"]),
    "wnli": TaskSpec("WNLI", "WNLI", {
        "train": _pair_spec("train.tsv", "sentence1", "sentence2", "label"),
        "dev": _pair_spec("dev.tsv", "sentence1", "sentence2", "label"),
        "test": _pair_spec("test.tsv", "sentence1", "sentence2"),
    }, ["0", "1"], ["accuracy"]),
    "ax": TaskSpec("AX", "diagnostic", {
        "test": _pair_spec("diagnostic.tsv", "sentence1", "sentence2"),
    }, MNLI_LABELS, ["mcc"], ("diagnostic", "glue-diagnostic")),
}

_ALIASES = {}
for _key, _spec in GLUE_TASKS.items():
    for _alias in (_key, _spec.name, _spec.folder, *_spec.aliases):
        _ALIASES[_alias.lower().replace("_", "-")] = _key
        _ALIASES[_alias.lower().replace("-", "").replace("_", "")] = _key


@dataclass
class Examples:
    """One split: parallel lists; `text_b` None for single-sentence tasks, `labels` None when unlabeled."""

    text_a: list[str]
    text_b: list[str] | None
    labels: list | None
    index: list
    skipped: int = 0

    def __len__(self) -> int:
        return len(self.text_a)


@dataclass
class Task:
    """A task's splits plus what a fine-tuner needs to know: label count (1 = regression), names, metrics."""

    name: str
    splits: dict[str, Examples]
    num_labels: int
    label_names: list[str] | None
    metrics: list[str]
    path: Path | None = None
    description: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def metric(self) -> list[str]:
        return self.metrics

    @property
    def is_regression(self) -> bool:
        return self.num_labels == 1

    @property
    def is_pair(self) -> bool:
        return any(s.text_b is not None for s in self.splits.values())


def glue_key(name: str) -> str | None:
    """The GLUE task a name or folder name refers to (`SST-2`, `sst2`, `MNLI`, `diagnostic`...), or None."""
    lowered = name.lower()
    return _ALIASES.get(lowered.replace("_", "-")) or _ALIASES.get(lowered.replace("-", "").replace("_", ""))


# ------------------------------------------------------------------------------------------------ reading

def _read_rows(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, tab-separated fields) of every non-empty line; quotes are ordinary characters."""
    rows = []
    try:
        with open(path, "rb") as f:
            head = f.read(8192)
            if b"\x00" in head:
                raise DataError(f"{path} looks like a binary file (it contains NUL bytes), not a TSV")
            f.seek(0)
            for number, raw in enumerate(f, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise DataError(f"{path}: line {number} is not valid UTF-8 (byte {e.start}); "
                                    f"re-encode the file as UTF-8") from None
                if number == 1:
                    line = line.lstrip("\ufeff")
                line = line.rstrip("\n").rstrip("\r")
                if line.strip():
                    rows.append((number, line.split("\t")))
    except FileNotFoundError:
        raise DataError(f"file not found: {path}") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a folder, expected a TSV file") from None
    return rows


def _column(header: list[str], name: str | int | None, path: Path) -> int | None:
    if name is None or isinstance(name, int):
        return name
    if name in header:
        return header.index(name)
    stripped = [h.strip() for h in header]
    if name in stripped:
        return stripped.index(name)

    hint = nearest(name, stripped)
    tail = f"; did you mean '{hint}'?" if hint else ""
    raise DataError(f"{path}: missing column '{name}' (columns: {', '.join(stripped)}){tail}")


def _warn_skipped(path: Path, skipped: list[int], need: int) -> None:
    if skipped:
        warnings.warn(f"{path}: skipped {len(skipped)} malformed row(s) with fewer than {need} tab-separated "
                      f"columns (first at line {skipped[0]})", stacklevel=3)


def _label_value(raw: str, label_names: list | None, path: Path, line: int):
    value = raw.strip()
    if label_names is None:
        try:
            return float(value)
        except ValueError:
            raise DataError(f"{path}: line {line}: regression label {value!r} is not a number") from None
    if value in label_names:
        return label_names.index(value)
    # integer labels index the names, unless the names are themselves integers (then they must match)
    if value.isdigit() and int(value) < len(label_names) and not any(str(n).isdigit() for n in label_names):
        return int(value)
    raise DataError(f"{path}: line {line}: label {value!r} is not one of {', '.join(label_names)}")


def read_split(path: Path, spec: SplitSpec, label_names: list | None) -> Examples:
    """Read one TSV file by `spec`; rows with too few columns are skipped with a counted warning."""
    rows = _read_rows(path)
    if spec.header:
        if not rows:
            raise DataError(f"{path} is empty; expected a header line")
        header = rows[0][1]
        rows = rows[1:]
    else:
        header = []
    a = _column(header, spec.text_a, path)
    b = _column(header, spec.text_b, path)
    lab = _column(header, spec.label, path)
    idx = _column(header, spec.index, path)
    need = max(c for c in (a, b, lab, idx) if c is not None) + 1
    if spec.min_columns:
        need = max(need, spec.min_columns)
    text_a, text_b, labels, index, skipped = [], [], [], [], []
    for number, fields in rows:
        if len(fields) < need:
            skipped.append(number)
            continue
        text_a.append(fields[a])
        if b is not None:
            text_b.append(fields[b])
        if lab is not None:
            labels.append(_label_value(fields[lab], label_names, path, number))
        index.append(_index_value(fields[idx]) if idx is not None else len(index))
    _warn_skipped(path, skipped, need)
    if not text_a:
        raise DataError(f"{path} holds no examples")
    return Examples(text_a=text_a, text_b=text_b if b is not None else None,
                    labels=labels if lab is not None else None, index=index, skipped=len(skipped))


def _index_value(raw: str):
    raw = raw.strip()
    return int(raw) if raw.isdigit() else raw


def _glue_folder(key: str, name_or_dir: str | Path, data_dir: str | Path | None) -> Path:
    spec = GLUE_TASKS[key]
    candidates = []
    given = Path(name_or_dir)
    if given.is_dir():
        candidates.append(given)
    if data_dir is not None:
        root = Path(data_dir)
        candidates += [root / spec.folder, root / spec.name, root]
        if key == "ax":
            candidates.append(root / "AX")
    for folder in candidates:
        if folder.is_dir() and any((folder / s.file).is_file() for s in spec.splits.values()):
            return folder
    where = f" under {data_dir}" if data_dir is not None else " (give the GLUE data folder with --data)"
    raise DataError(f"no {spec.name} files found{where}; expected {spec.folder}/"
                    f"{next(iter(spec.splits.values())).file} in the download_glue_data.py layout")


def load_glue(key: str, folder: Path, splits: list[str] | None = None) -> Task:
    """Read every split file of GLUE task `key` present in `folder` (missing optional splits are skipped)."""
    spec = GLUE_TASKS[key]
    out: dict[str, Examples] = {}
    for split, split_spec in spec.splits.items():
        if splits is not None and split not in splits:
            continue
        path = folder / split_spec.file
        if not path.is_file():
            continue
        out[split] = read_split(path, split_spec, spec.label_names)
    if not out:
        raise DataError(f"{folder} holds none of the {spec.name} files "
                        f"({', '.join(s.file for s in spec.splits.values())})")
    if key == "mnli" and (splits is None or "ax" in splits):
        for candidate in (folder.parent / "diagnostic" / "diagnostic.tsv", folder / "diagnostic.tsv"):
            if candidate.is_file():
                out["ax"] = read_split(candidate, GLUE_TASKS["ax"].splits["test"], MNLI_LABELS)
                break
    num_labels = 1 if spec.label_names is None else len(spec.label_names)
    return Task(name=spec.name, splits=out, num_labels=num_labels, label_names=spec.label_names,
                metrics=list(spec.metrics), path=folder)


# ------------------------------------------------------------------------------------------ generic tasks

def _read_table(path: Path, fmt: str, header: bool) -> tuple[list[str], list[tuple[int, list]]]:
    """Header and rows of a TSV (quoting off), CSV (standard quoting) or JSONL file."""
    if fmt == "tsv":
        rows = _read_rows(path)
        if header:
            if not rows:
                raise DataError(f"{path} is empty; expected a header line")
            return [h.strip() for h in rows[0][1]], rows[1:]
        return [], rows
    if fmt == "csv":
        try:
            with open(path, encoding="utf-8-sig", newline="") as f:
                reader = csv.reader(f)
                rows = [(reader.line_num, r) for r in reader if any(c.strip() for c in r)]
        except FileNotFoundError:
            raise DataError(f"file not found: {path}") from None
        except UnicodeDecodeError:
            raise DataError(f"{path} is not valid UTF-8; re-encode it") from None
        except csv.Error as e:
            raise DataError(f"{path}: malformed CSV ({e})") from None
        if header:
            if not rows:
                raise DataError(f"{path} is empty; expected a header line")
            return [h.strip() for h in rows[0][1]], rows[1:]
        return [], rows
    records = []
    names: list[str] = []
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}: line {number} is not valid JSON ({e.msg})") from None
                if not isinstance(record, dict):
                    raise DataError(f"{path}: line {number} is not a JSON object")
                for k in record:
                    if k not in names:
                        names.append(k)
                records.append((number, record))
    except FileNotFoundError:
        raise DataError(f"file not found: {path}") from None
    except UnicodeDecodeError:
        raise DataError(f"{path} is not valid UTF-8; re-encode it") from None
    return names, [(n, [r.get(k) for k in names]) for n, r in records]


def _format_of(path: Path, fmt: str | None) -> str:
    if fmt:
        if fmt not in ("tsv", "csv", "jsonl"):
            raise DataError(f"unknown task file format {fmt!r}; use tsv, csv or jsonl")
        return fmt
    suffix = path.suffix.lower()
    return {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}.get(suffix, "tsv")


def load_generic(files: dict[str, str | Path], text_a: str, text_b: str | None = None, label: str = "label",
                 label_names: list | None = None, regression: bool = False, index: str | None = "index",
                 fmt: str | None = None, header: bool = True, metrics: list[str] | None = None,
                 name: str | None = None) -> Task:
    """A task from TSV/CSV/JSONL files with named columns, one file per split ({"train": path, ...}).

    A split file without the label column is unlabeled (a test split); `index` is used when present.
    Without `label_names` the labels found in the train split (sorted, numerically when they are numbers)
    become the label set; other splits must stay inside it.
    """
    splits: dict[str, Examples] = {}
    raw: dict[str, tuple[Path, list, list]] = {}
    for split, file in files.items():
        path = Path(file)
        if not path.is_file():
            raise DataError(f"task file not found: {path}")
        names, rows = _read_table(path, _format_of(path, fmt), header)
        raw[split] = (path, names, rows)
    if not regression and label_names is None:
        seen = set()
        for split in (["train"] if "train" in raw else list(raw)):
            path, names, rows = raw[split]
            if label in names:
                col = names.index(label)
                seen.update(str(r[col]).strip() for _, r in rows if col < len(r) and r[col] is not None)
        if not seen:
            raise DataError(f"no '{label}' column with values in {', '.join(str(p) for p, _, _ in raw.values())}; "
                            f"name the label column")
        numeric = all(_is_number(v) for v in seen)
        label_names = sorted(seen, key=(lambda v: float(v)) if numeric else None)
    label_names = None if regression else [str(n) for n in label_names]
    for split, (path, names, rows) in raw.items():
        a = _column(names, text_a, path)
        b = _column(names, text_b, path)
        lab = names.index(label) if label in names else None
        if lab is None and split in ("train", "dev", "validation"):
            _column(names, label, path)  # raises: training and dev data need labels
        idx = names.index(index) if index and index in names else None
        need = max(c for c in (a, b, lab, idx) if c is not None) + 1
        ta, tb, labels, ids, skipped = [], [], [], [], []
        for number, fields in rows:
            if len(fields) < need or fields[a] is None:
                skipped.append(number)
                continue
            ta.append(str(fields[a]))
            if b is not None:
                tb.append("" if fields[b] is None else str(fields[b]))
            if lab is not None:
                labels.append(_label_value(str(fields[lab]), label_names, path, number))
            value = fields[idx] if idx is not None else len(ids)
            ids.append(_index_value(value) if isinstance(value, str) else value)
        _warn_skipped(path, skipped, need)
        if not ta:
            raise DataError(f"{path} holds no examples")
        splits[split] = Examples(ta, tb if b is not None else None, labels if lab is not None else None, ids,
                                 skipped=len(skipped))
    num_labels = 1 if regression else len(label_names)
    if metrics is None:
        metrics = ["pearson", "spearman"] if regression else ["accuracy"]
    first = Path(next(iter(files.values())))
    return Task(name=name or first.parent.name, splits=splits, num_labels=num_labels, label_names=label_names,
                metrics=list(metrics), path=first.parent)


def _is_number(value: str) -> bool:
    try:
        float(value)
        return True
    except ValueError:
        return False


def load_task_json(folder: Path) -> Task:
    """A task folder described by `task.json` (what `maskbench corpus synth-tasks` writes)."""
    try:
        spec = json.loads((folder / "task.json").read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{folder / 'task.json'} is not valid JSON ({e.msg})") from None
    known = {"name", "description", "format", "header", "text_a", "text_b", "label", "label_names", "metrics",
             "metric", "index", "splits", "sizes", "regression"}
    for key in spec:
        if key not in known:
            hint = nearest(key, known)
            tail = f"; did you mean '{hint}'?" if hint else ""
            raise DataError(f"{folder / 'task.json'}: unknown key '{key}'{tail}")
    if "text_a" not in spec:
        raise DataError(f"{folder / 'task.json'} must name its text column in 'text_a'")
    fmt = spec.get("format")
    split_files = spec.get("splits") or {s: f"{s}.{fmt or 'tsv'}" for s in ("train", "dev", "test")}
    files = {s: folder / f for s, f in split_files.items() if (folder / f).is_file()}
    missing = [f for s, f in split_files.items() if not (folder / f).is_file()]
    if missing and "train" not in files:
        raise DataError(f"{folder}: task.json lists {', '.join(missing)} but the file is missing")
    metrics = spec.get("metrics", spec.get("metric"))
    if isinstance(metrics, str):
        metrics = [metrics]
    task = load_generic(files, text_a=spec["text_a"], text_b=spec.get("text_b"), label=spec.get("label", "label"),
                        label_names=spec.get("label_names"), regression=bool(spec.get("regression", False)),
                        index=spec.get("index", "index"), fmt=fmt, header=spec.get("header", True),
                        metrics=metrics, name=spec.get("name", folder.name))
    task.description = spec.get("description", "")
    return task


def load_task(name_or_dir: str | Path, data_dir: str | Path | None = None,
              splits: list[str] | None = None) -> Task:
    """A GLUE task by name (`CoLA`, `sst2`, `MNLI`, `AX`...) under `data_dir` (the glue_data folder), a GLUE
    task folder (recognised by its name), a folder with a `task.json`, or a folder of train/dev/test files
    with a header that names `sentence` (or `sentence1`/`sentence2`) and `label` columns.
    """
    given = Path(name_or_dir)
    if given.is_dir() and (given / "task.json").is_file():
        return load_task_json(given)
    key = glue_key(given.name if given.is_dir() else str(name_or_dir))
    if key is not None:
        return load_glue(key, _glue_folder(key, name_or_dir, data_dir), splits)
    if data_dir is not None and (Path(data_dir) / str(name_or_dir)).is_dir() and not given.is_dir():
        return load_task(Path(data_dir) / str(name_or_dir), None, splits)
    if given.is_dir():
        return _load_plain_folder(given)
    known = ", ".join(spec.name for spec in GLUE_TASKS.values())

    hint = nearest(str(name_or_dir), [s.name for s in GLUE_TASKS.values()])
    tail = f"; did you mean '{hint}'?" if hint else ""
    raise DataError(f"unknown task {str(name_or_dir)!r}: not a folder and not a GLUE task ({known}){tail}")


def _load_plain_folder(folder: Path) -> Task:
    files = {}
    for split in ("train", "dev", "test"):
        for ext in ("tsv", "csv", "jsonl"):
            if (folder / f"{split}.{ext}").is_file():
                files[split] = folder / f"{split}.{ext}"
                break
    if "train" not in files:
        raise DataError(f"{folder} has no task.json and no train.tsv/.csv/.jsonl; describe the task in task.json")
    names, _ = _read_table(files["train"], _format_of(files["train"], None), True)
    if "sentence1" in names and "sentence2" in names:
        text_a, text_b = "sentence1", "sentence2"
    elif "sentence" in names:
        text_a, text_b = "sentence", None
    else:
        raise DataError(f"{files['train']}: cannot tell the text columns (columns: {', '.join(names)}); "
                        f"write a task.json naming text_a/text_b/label")
    return load_generic(files, text_a=text_a, text_b=text_b, name=folder.name)
