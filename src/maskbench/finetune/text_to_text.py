"""Text-to-text fine-tuning as T5 does it: the task's text with a task prefix in, the label word out.

Formatting follows T5's GLUE preprocessors (`t5/data/preprocessors.py` `glue` and `stsb`, with the label
names of the TFDS GLUE configs that `t5/data/glue_utils.py` passes in):
- input: the benchmark name, then `"<feature>: <text>"` for every text feature, the features sorted by name
  (T5 passes no `feature_names` for GLUE, so it sorts them), joined by single spaces:
  `"rte sentence1: … sentence2: …"`, `"mnli hypothesis: … premise: …"`, `"cola sentence: …"`;
  MNLI's matched/mismatched splits and the diagnostic set (AX) use the benchmark name `mnli`;
- target: the label word (`entailment` / `not_entailment`, `acceptable` / `unacceptable`, …), `<unk>` for an
  unlabelled example; STS-B's score rounded to the nearest 0.2 (round half to even on the float32 score ×5,
  as `tf.round`) and written with one decimal (`"3.4"`), which makes STS-B a 26-class task.
Tasks that are not GLUE's (synthetic or custom GLUE-format tasks) get the same shape: the task's name as the
prefix, `sentence` or `sentence1`/`sentence2` as the features, the task's label names as words, and the
STS-B rule for regression.

Scoring: greedy decoding, with an exact match of the generated token ids (up to and including EOS) against
each label word's ids; anything else is invalid, counts as wrong (T5's `string_label_to_class_id` gives -1,
its `f1_score_with_invalid` flips it to the wrong class) and is counted. Regression outputs that match no
candidate are parsed as a number when they read as one and are -1 otherwise (`string_to_float`).
Rank classification (`scoring = "rank"`) instead picks the label word with the highest log-likelihood
(summed over its tokens, T5's `rank_classification` without length normalisation): never invalid.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

from ..data.glue import glue_key
from ..data.tokenizer import special_ids
from ..errors import DataError
from ..labels import IGNORE_INDEX
from . import metrics as metric_fns
from .tasks import batches_in_order, label_array

UNKNOWN_TARGET = "<unk>"
#: STS-B's targets after T5's rounding: "0.0", "0.2", …, "5.0".
STSB_STRINGS = tuple(f"{i / 5:.1f}" for i in range(26))


@dataclass(frozen=True)
class T5Format:
    """How T5 writes one task: benchmark name, feature names of text_a/text_b, TFDS label classes."""

    benchmark: str
    features: tuple[str, ...]
    label_classes: tuple[str, ...] | None  # None: regression (the STS-B rule)


_ENTAILMENT = ("entailment", "not_entailment")
_MNLI = ("entailment", "neutral", "contradiction")

#: maskbench's GLUE keys (`data.glue.GLUE_TASKS`) → T5's format; features in maskbench's text_a, text_b order.
T5_GLUE: dict[str, T5Format] = {
    "cola": T5Format("cola", ("sentence",), ("unacceptable", "acceptable")),
    "sst-2": T5Format("sst2", ("sentence",), ("negative", "positive")),
    "mrpc": T5Format("mrpc", ("sentence1", "sentence2"), ("not_equivalent", "equivalent")),
    "qqp": T5Format("qqp", ("question1", "question2"), ("not_duplicate", "duplicate")),
    "sts-b": T5Format("stsb", ("sentence1", "sentence2"), None),
    "mnli": T5Format("mnli", ("premise", "hypothesis"), _MNLI),
    "ax": T5Format("mnli", ("premise", "hypothesis"), _MNLI),
    "qnli": T5Format("qnli", ("question", "sentence"), _ENTAILMENT),
    "rte": T5Format("rte", ("sentence1", "sentence2"), _ENTAILMENT),
    "wnli": T5Format("wnli", ("sentence1", "sentence2"), ("not_entailment", "entailment")),
}


def task_format(task) -> T5Format:
    """T5's format for a GLUE task; the same shape, named after the task, for any other task."""
    key = glue_key(str(getattr(task, "name", "") or ""))
    if key in T5_GLUE:
        return T5_GLUE[key]
    pair = bool(getattr(task, "is_pair", False))
    name = re.sub(r"\s+", "_", str(getattr(task, "name", "task")).strip().lower()) or "task"
    features = ("sentence1", "sentence2") if pair else ("sentence",)
    names = getattr(task, "label_names", None)
    regression = getattr(task, "num_labels", 2) == 1
    return T5Format(name, features, None if regression else tuple(str(n) for n in names))


def input_text(fmt: T5Format, text_a: str, text_b: str | None = None) -> str:
    """`"<benchmark> <feature>: <text> …"`, features sorted by name, joined by single spaces (as T5)."""
    values = [text_a] if text_b is None else [text_a, text_b]
    if len(values) != len(fmt.features):
        raise DataError(f"task {fmt.benchmark} has {len(fmt.features)} text field(s), got {len(values)}")
    parts = [fmt.benchmark]
    for feature, value in sorted(zip(fmt.features, values)):
        parts += [f"{feature}:", value]
    return " ".join(parts)


def label_words(task, fmt: T5Format | None = None) -> list[str] | None:
    """The target word of each of the task's classes, by maskbench's class index (None for regression).

    maskbench's GLUE readers keep GLUE's own label strings (`"0"`/`"1"` for CoLA, SST-2, MRPC, QQP, WNLI;
    words for MNLI, QNLI, RTE): a digit is an index into T5's label classes, a word is itself.
    """
    fmt = fmt or task_format(task)
    if fmt.label_classes is None:
        return None
    names = [str(n) for n in (getattr(task, "label_names", None) or range(len(fmt.label_classes)))]
    words = []
    for name in names:
        if name.isdigit() and int(name) < len(fmt.label_classes) and not any(
                c.isdigit() for c in fmt.label_classes):
            words.append(fmt.label_classes[int(name)])
        elif name in fmt.label_classes:
            words.append(name)
        else:
            raise DataError(f"label {name!r} of task {fmt.benchmark} is not one of T5's classes "
                            f"{', '.join(fmt.label_classes)}")
    return words


def stsb_string(score: float) -> str:
    """T5's STS-B target: round(float32(score)·5)/5 with half to even (`tf.round`), one decimal."""
    scaled = np.float32(score) * np.float32(5)
    return f"{float(np.round(scaled) / np.float32(5)):.1f}"


def target_text(label, words: list[str] | None) -> str:
    """The target string of one label (a class index, a float, or None for an unlabelled example)."""
    if label is None or (isinstance(label, (int, np.integer)) and int(label) < 0):
        return UNKNOWN_TARGET
    if words is None:
        return stsb_string(float(label))
    return words[int(label)]


# --------------------------------------------------------------------------------------------- encoding

@dataclass
class TextToTextSplit:
    """One split as token ids: inputs (…, EOS) and targets (label word, EOS), flat arrays with offsets."""

    ids: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    target_ids: np.ndarray
    target_offsets: np.ndarray
    target_lengths: np.ndarray
    labels: np.ndarray | None
    index: list

    def __len__(self) -> int:
        return len(self.lengths)

    def inputs(self, rows: np.ndarray, pad_id: int) -> dict[str, torch.Tensor]:
        """input_ids and attention_mask of `rows`, padded to their longest input."""
        ids, mask = _pad(self.ids, self.offsets, self.lengths, np.asarray(rows), pad_id)
        return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}

    def batch(self, rows: np.ndarray, pad_id: int) -> dict[str, torch.Tensor]:
        """input_ids, attention_mask and labels (target ids, -100 after the target's EOS)."""
        rows = np.asarray(rows)
        out = self.inputs(rows, pad_id)
        targets, _ = _pad(self.target_ids, self.target_offsets, self.target_lengths, rows, IGNORE_INDEX)
        out["labels"] = torch.from_numpy(targets)
        return out

    def subset(self, rows) -> "TextToTextSplit":
        rows = np.asarray(rows, dtype=np.int64)
        ids, offsets, lengths = _gather(self.ids, self.offsets, self.lengths, rows)
        tids, toffsets, tlengths = _gather(self.target_ids, self.target_offsets, self.target_lengths, rows)
        return TextToTextSplit(ids, offsets, lengths, tids, toffsets, tlengths,
                               None if self.labels is None else self.labels[rows], [self.index[i] for i in rows])


def _pad(flat: np.ndarray, offsets: np.ndarray, lengths: np.ndarray, rows: np.ndarray, fill: int):
    width = max(1, int(lengths[rows].max()))
    positions = np.arange(width)
    valid = positions[None, :] < lengths[rows][:, None]
    gather = np.minimum(offsets[rows][:, None] + positions[None, :], max(len(flat) - 1, 0))
    values = np.where(valid, flat[gather] if len(flat) else 0, fill)
    return values.astype(np.int64), valid.astype(np.int64)


def _gather(flat, offsets, lengths, rows):
    lengths = lengths[rows]
    new_offsets = np.zeros(len(rows), dtype=np.int64)
    np.cumsum(lengths[:-1], out=new_offsets[1:])
    gather = np.arange(int(lengths.sum())) + np.repeat(offsets[rows] - new_offsets, lengths)
    return flat[gather], new_offsets, lengths


def _flatten(sequences: list[list[int]]):
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    offsets = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=offsets[1:])
    flat = np.fromiter((i for s in sequences for i in s), dtype=np.int64, count=int(lengths.sum()))
    return flat, offsets, lengths


def plain_tokenizer(tokenizer):
    """A copy of `tokenizer` that adds no special tokens and does not truncate (EOS is appended here)."""
    tok = Tokenizer.from_str(tokenizer.to_str())
    tok.no_padding()
    tok.no_truncation()
    return tok


def encode_texts(tokenizer, texts: list[str], eos_id: int, max_length: int | None = None) -> list[list[int]]:
    """Token ids of each text followed by EOS; longer inputs keep their first max_length − 1 tokens."""
    encodings = tokenizer.encode_batch(list(texts), add_special_tokens=False)
    limit = None if max_length is None else max_length - 1
    return [list(e.ids[:limit]) + [eos_id] for e in encodings]


def encode_split(tokenizer, examples, fmt: T5Format, words: list[str] | None, eos_id: int, max_length: int,
                 where: str, require_labels: bool) -> TextToTextSplit:
    """Format and tokenize one `Examples` split (labels as class indices or floats, as encoder fine-tuning)."""
    n = len(examples.text_a)
    if n == 0:
        raise DataError(f"{where} has no examples")
    b = examples.text_b if examples.text_b is not None else [None] * n
    texts = [input_text(fmt, str(a), None if y is None else str(y)) for a, y in zip(examples.text_a, b)]
    labels = None
    if examples.labels is not None and any(v is not None and v != "" for v in examples.labels):
        num_labels = 1 if words is None else len(words)
        labels = label_array(list(examples.labels), num_labels, list(range(num_labels)) if words else None, where)
    elif require_labels:
        raise DataError(f"{where} has no labels; training and dev splits need them")
    targets = [target_text(None if labels is None else labels[i], words) for i in range(n)]
    ids, offsets, lengths = _flatten(encode_texts(tokenizer, texts, eos_id, max_length))
    tids, toffsets, tlengths = _flatten(encode_texts(tokenizer, targets, eos_id))
    index = list(examples.index) if examples.index is not None else list(range(n))
    return TextToTextSplit(ids, offsets, lengths, tids, toffsets, tlengths, labels, index)


# --------------------------------------------------------------------------------------------- scoring

@dataclass
class Candidates:
    """Every possible target as token ids (with EOS) and the class index or value it stands for."""

    sequences: list[tuple[int, ...]]
    values: list  # class indices (classification) or floats (regression)
    regression: bool

    @property
    def max_length(self) -> int:
        return max(len(s) for s in self.sequences)


def candidates(tokenizer, words: list[str] | None, eos_id: int) -> Candidates:
    """The label words (or STS-B's 26 strings) tokenized like targets; two classes may not share ids."""
    texts = list(STSB_STRINGS) if words is None else list(words)
    sequences = [tuple(s) for s in encode_texts(tokenizer, texts, eos_id)]
    if len(set(sequences)) != len(sequences):
        raise DataError(f"two label words tokenize to the same ids ({', '.join(texts)}); the tokenizer cannot "
                        "tell the classes apart")
    values = [float(t) for t in texts] if words is None else list(range(len(words)))
    return Candidates(sequences, values, words is None)


def match_outputs(outputs: np.ndarray, cands: Candidates, eos_id: int, decode=None) -> tuple[np.ndarray, int]:
    """Generated ids [N, T] → predictions (class index / value; -1 when invalid) and the invalid count."""
    lookup = {seq: value for seq, value in zip(cands.sequences, cands.values)}
    predictions = np.full(len(outputs), -1.0 if cands.regression else -1,
                          dtype=np.float64 if cands.regression else np.int64)
    invalid = 0
    for row, out in enumerate(outputs.tolist()):
        seq = tuple(out[:out.index(eos_id) + 1]) if eos_id in out else tuple(out)
        if seq in lookup:
            predictions[row] = lookup[seq]
            continue
        if cands.regression and decode is not None:
            text = decode([t for t in seq if t != eos_id]).replace(" ", "")
            try:
                value = float(text)
                if np.isfinite(value):
                    predictions[row] = value
                    continue
            except ValueError:
                pass
        invalid += 1
    return predictions, invalid


@torch.inference_mode()
def generate_outputs(model, split: TextToTextSplit, pad_id: int, eos_id: int, max_new_tokens: int,
                     batch_size: int, device) -> np.ndarray:
    """Greedy outputs [N, max_new_tokens] (pad after EOS) for every example, in the split's order."""
    was_training = model.training
    model.eval()
    out = np.full((len(split), max_new_tokens), pad_id, dtype=np.int64)
    for rows in batches_in_order(split, batch_size):
        batch = {k: v.to(device) for k, v in split.inputs(rows, pad_id).items()}
        generated = model.generate(batch["input_ids"], batch["attention_mask"], max_new_tokens=max_new_tokens,
                                   eos_id=eos_id).cpu().numpy()
        out[rows, :generated.shape[1]] = generated
    model.train(was_training)
    return out


@torch.inference_mode()
def candidate_log_likelihoods(model, split: TextToTextSplit, cands: Candidates, pad_id: int, batch_size: int,
                              device) -> np.ndarray:
    """[N, C] summed log-likelihood of each candidate target given each input (teacher forcing)."""
    was_training = model.training
    model.eval()
    width = cands.max_length
    targets = torch.full((len(cands.sequences), width), IGNORE_INDEX, dtype=torch.long)
    for c, seq in enumerate(cands.sequences):
        targets[c, :len(seq)] = torch.tensor(seq)
    scores = np.empty((len(split), len(cands.sequences)), dtype=np.float64)
    per_batch = max(1, batch_size // len(cands.sequences))
    for rows in batches_in_order(split, per_batch):
        batch = split.inputs(rows, pad_id)
        b, c = len(rows), len(cands.sequences)
        input_ids = batch["input_ids"].repeat_interleave(c, 0).to(device)
        mask = batch["attention_mask"].repeat_interleave(c, 0).to(device)
        labels = targets.repeat(b, 1).to(device)
        logits = model(input_ids=input_ids, attention_mask=mask, labels=labels)["logits"].float()
        logp = F.log_softmax(logits, dim=-1)
        keep = labels != IGNORE_INDEX
        picked = logp.gather(-1, labels.clamp(min=0)[..., None]).squeeze(-1) * keep
        scores[rows] = picked.sum(-1).view(b, c).double().cpu().numpy()
    model.train(was_training)
    return scores


def rank_predictions(scores: np.ndarray, cands: Candidates) -> np.ndarray:
    """The candidate with the highest log-likelihood (first on ties), as class index or value."""
    best = scores.argmax(axis=1)
    return np.asarray(cands.values, dtype=np.float64 if cands.regression else np.int64)[best]


def metric_inputs(metric: str, predictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Predictions as a metric sees them: for F1, an invalid class (-1) becomes the wrong class, as T5's
    `f1_score_with_invalid`; accuracy and Matthews correlation take -1 as a class of its own (as T5)."""
    if metric == "f1":
        predictions = predictions.copy()
        invalid = (predictions != 0) & (predictions != 1)
        predictions[invalid] = 1 - labels[invalid]
    return predictions


# --------------------------------------------------------------------------------------------- a task

@dataclass
class TextToText:
    """What fine-tuning needs to train and score one task text-to-text (built once per task and tokenizer)."""

    format: T5Format
    words: list[str] | None
    candidates: Candidates
    eos_id: int
    pad_id: int
    scoring: str  # "generate" (greedy decoding, exact match) or "rank" (rank classification)
    decode: object = None  # ids → text, for regression outputs that match no candidate
    last_test_invalid: dict = field(default_factory=dict)  # id(split) → invalid outputs of its last prediction

    @property
    def max_new_tokens(self) -> int:
        return self.candidates.max_length + (2 if self.candidates.regression else 0)

    def predictions(self, model, split: TextToTextSplit, batch_size: int, device, scoring: str | None = None):
        """(class indices / values, number of invalid outputs) for every example of `split`."""
        if (scoring or self.scoring) == "rank":
            scores = candidate_log_likelihoods(model, split, self.candidates, self.pad_id, batch_size, device)
            return rank_predictions(scores, self.candidates), 0
        outputs = generate_outputs(model, split, self.pad_id, self.eos_id, self.max_new_tokens, batch_size, device)
        return match_outputs(outputs, self.candidates, self.eos_id, self.decode)

    def test_predictions(self, model, split: TextToTextSplit, batch_size: int, device):
        """Predictions for a submission file, which needs a valid label on every line: invalid generated
        outputs fall back to rank classification for those examples. Returns (predictions, invalid count)."""
        predictions, invalid = self.predictions(model, split, batch_size, device)
        if invalid:
            bad = np.flatnonzero(predictions == -1)
            ranked, _ = self.predictions(model, split.subset(bad), batch_size, device, scoring="rank")
            predictions[bad] = ranked
        self.last_test_invalid[id(split)] = int(invalid)
        return predictions, invalid

    def invalid_counts(self, splits: dict) -> dict[str, int]:
        """Invalid generated outputs of the last test prediction of each named split."""
        return {name: self.last_test_invalid.get(id(split), 0) for name, split in splits.items()}

    def score(self, predictions: np.ndarray, labels: np.ndarray, metric_names: list[str]) -> dict:
        """The task's official metrics and `score` (their mean) on predictions where -1 marks an invalid
        output, plus how many outputs were invalid."""
        out = {m: metric_fns.METRICS[m](metric_inputs(m, predictions, labels), labels) for m in metric_names}
        out["score"] = float(np.mean(list(out.values())))
        out["invalid"] = int(np.sum(predictions == -1))
        return out

    def evaluate(self, model, split: TextToTextSplit, metric_names: list[str], batch_size: int, device) -> dict:
        """`score` of this model's predictions on `split`."""
        return self.score(self.predictions(model, split, batch_size, device)[0], split.labels, metric_names)


def build(task, tokenizer, scoring: str = "generate") -> TextToText:
    """T5's format, label words and candidate targets of `task` for `tokenizer`."""
    special = special_ids(tokenizer)
    fmt = task_format(task)
    words = label_words(task, fmt)
    plain = plain_tokenizer(tokenizer)
    return TextToText(format=fmt, words=words, candidates=candidates(plain, words, special.eos), eos_id=special.eos,
                      pad_id=special.pad, scoring=scoring, decode=plain.decode)


def encode_task(tt: TextToText, tokenizer, task, max_length: int, where: str) -> dict[str, TextToTextSplit]:
    """Every split of `task` formatted and tokenized (train and dev splits must be labelled)."""
    plain = plain_tokenizer(tokenizer)
    splits = {}
    for name, examples in task.splits.items():
        if examples is None:
            continue
        labelled = name == "train" or name.startswith("dev")
        splits[name] = encode_split(plain, examples, tt.format, tt.words, tt.eos_id, max_length, f"{where} {name}",
                                    require_labels=labelled)
    return splits
