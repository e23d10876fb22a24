"""Extractive question answering on SQuAD v1.1 / v2.0 JSON files, as BERT's `run_squad.py` does it.

- Reading: `{"data": [{"paragraphs": [{"context", "qas": [{"id", "question", "answers", "is_impossible"}]}]}]}`;
  `--data DIR` holds `train-v1.1.json` + `dev-v1.1.json` (or the v2.0 pair, or `train.json` + `dev.json`).
- Features: `[CLS] question [SEP] window [SEP]`, the question cut to `max_query_length` tokens; a context
  longer than the rest of `max_length` is cut into windows that start `doc_stride` tokens apart (BERT's
  meaning of doc_stride: the step, not HF's overlap). A training answer outside a window, or no answer
  (v2.0), points at [CLS] (position 0).
- Predictions: for every window, the `n_best` highest start and end logits make candidate spans that lie
  in the context, end after they start, are at most `max_answer_length` tokens long and start in the
  window where that token has the most context (BERT's `_check_is_max_context`); the best span over all
  windows is the answer, cut from the original context by the tokenizer's character offsets. SQuAD 2.0:
  the null score is the smallest [CLS] start + end over the windows, and the answer is "" when
  null − best span > `null_score_diff_threshold`.
Spans are token spans of the model's tokenizer, so answers keep the context's own spelling.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError

#: File names searched in `--data DIR`, first pair found wins.
FILE_PAIRS = (("train-v2.0.json", "dev-v2.0.json"), ("train-v1.1.json", "dev-v1.1.json"), ("train.json", "dev.json"))


@dataclass
class QAExample:
    id: str
    question: str
    context: str
    answers: list[str]
    answer_start: int | None  # character offset of the first answer (training), None when unanswerable


@dataclass
class SquadSplit:
    """Windows of one split: ids [N, L] (pad-filled), lengths, type ids, training targets, and what
    post-processing needs (each window's example, context-token character offsets, max-context flags)."""

    ids: np.ndarray
    type_ids: np.ndarray
    lengths: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    example_of: np.ndarray
    offsets: list[np.ndarray]  # per window: [L, 2] character offsets, -1 outside the context
    max_context: list[np.ndarray]  # per window: [L] bool
    examples: list[QAExample]

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def labels(self) -> list[list[str]]:
        return [e.answers for e in self.examples]

    def batch(self, rows: np.ndarray, pad_id: int) -> dict[str, torch.Tensor]:
        rows = np.asarray(rows)
        width = int(self.lengths[rows].max())
        valid = np.arange(width)[None, :] < self.lengths[rows][:, None]
        return {"input_ids": torch.from_numpy(np.where(valid, self.ids[rows, :width], pad_id).astype(np.int64)),
                "attention_mask": torch.from_numpy(valid.astype(np.int64)),
                "token_type_ids": torch.from_numpy(self.type_ids[rows, :width].astype(np.int64)),
                "start_positions": torch.from_numpy(self.starts[rows].astype(np.int64)),
                "end_positions": torch.from_numpy(self.ends[rows].astype(np.int64))}

    def subset(self, rows) -> "SquadSplit":
        rows = np.asarray(rows)
        return SquadSplit(self.ids[rows], self.type_ids[rows], self.lengths[rows], self.starts[rows], self.ends[rows],
                          self.example_of[rows], [self.offsets[i] for i in rows],
                          [self.max_context[i] for i in rows], self.examples)


def find_files(folder: str | Path) -> tuple[Path, Path]:
    folder = Path(folder)
    for train, dev in FILE_PAIRS:
        if (folder / train).is_file() and (folder / dev).is_file():
            return folder / train, folder / dev
    names = ", ".join(f"{t} + {d}" for t, d in FILE_PAIRS)
    raise DataError(f"{folder} holds no SQuAD files; expected one of: {names}")


def read_squad(path: str | Path) -> list[QAExample]:
    """Every question of a SQuAD JSON file; the first answer's offset is checked against the context."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))["data"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path} is not a SQuAD JSON file ({type(e).__name__}: {str(e)[:80]})") from None
    examples = []
    for article in data:
        for paragraph in article.get("paragraphs", []):
            context = paragraph["context"]
            for qa in paragraph["qas"]:
                answers = qa.get("answers") or []
                impossible = bool(qa.get("is_impossible", False)) or not answers
                start = None
                if not impossible:
                    first = answers[0]
                    start = int(first["answer_start"])
                    if context[start:start + len(first["text"])] != first["text"]:
                        raise DataError(f"{path}: question {qa['id']}: answer {first['text']!r} is not at "
                                        f"character {start} of its context")
                examples.append(QAExample(str(qa["id"]), qa["question"], context,
                                          [a["text"] for a in answers] if not impossible else [], start))
    if not examples:
        raise DataError(f"{path} holds no questions")
    return examples


def _windows(n_tokens: int, room: int, stride: int) -> list[tuple[int, int]]:
    """(start, length) of each window over `n_tokens` context tokens (BERT's doc_spans)."""
    spans, start = [], 0
    while True:
        length = min(n_tokens - start, room)
        spans.append((start, length))
        if start + length >= n_tokens:
            return spans
        start += min(length, stride)


def _max_context(spans: list[tuple[int, int]], index: int, position: int) -> bool:
    """BERT's `_check_is_max_context`: is window `index` the one where `position` has the most context?"""
    best, best_index = None, None
    for i, (start, length) in enumerate(spans):
        end = start + length - 1
        if start <= position <= end:
            score = min(position - start, end - position) + 0.01 * length
            if best is None or score > best:
                best, best_index = score, i
    return best_index == index


def encode(tokenizer, examples: list[QAExample], max_length: int, doc_stride: int, max_query_length: int,
           cls_id: int, sep_id: int, pad_id: int) -> SquadSplit:
    """Windows of every example (see the module docstring); `tokenizer` is a `tokenizers.Tokenizer`."""
    questions = tokenizer.encode_batch([e.question for e in examples], add_special_tokens=False)
    contexts = tokenizer.encode_batch([e.context for e in examples], add_special_tokens=False)
    ids, types, lengths, starts, ends, owner, offsets, flags = [], [], [], [], [], [], [], []
    for index, (example, question, context) in enumerate(zip(examples, questions, contexts)):
        query = question.ids[:max_query_length]
        char_spans = np.asarray(context.offsets, dtype=np.int64).reshape(-1, 2)
        room = max_length - len(query) - 3
        if room < 1:
            raise DataError(f"max_length {max_length} leaves no room for the context after a question of "
                            f"{len(query)} tokens; raise max_length or lower max_query_length")
        answer = None
        if example.answer_start is not None:
            first, last = example.answer_start, example.answer_start + len(example.answers[0])
            inside = np.nonzero((char_spans[:, 1] > first) & (char_spans[:, 0] < last))[0]
            answer = (int(inside[0]), int(inside[-1])) if len(inside) else None
        spans = _windows(len(context.ids), room, doc_stride)
        for w, (start, length) in enumerate(spans):
            head = [cls_id] + query + [sep_id]
            row = head + context.ids[start:start + length] + [sep_id]
            window_offsets = np.full((max_length, 2), -1, dtype=np.int64)
            window_offsets[len(head):len(head) + length] = char_spans[start:start + length]
            flag = np.zeros(max_length, dtype=bool)
            flag[len(head):len(head) + length] = [_max_context(spans, w, start + i) for i in range(length)]
            target = (0, 0)
            if answer is not None and start <= answer[0] and answer[1] < start + length:
                target = (answer[0] - start + len(head), answer[1] - start + len(head))
            ids.append(row + [pad_id] * (max_length - len(row)))
            types.append([0] * len(head) + [1] * (len(row) - len(head)) + [0] * (max_length - len(row)))
            lengths.append(len(row))
            starts.append(target[0])
            ends.append(target[1])
            owner.append(index)
            offsets.append(window_offsets)
            flags.append(flag)
    return SquadSplit(np.asarray(ids, dtype=np.int64), np.asarray(types, dtype=np.int8), np.asarray(lengths),
                      np.asarray(starts), np.asarray(ends), np.asarray(owner), offsets, flags, examples)


def best_answers(split: SquadSplit, start_logits: np.ndarray, end_logits: np.ndarray, n_best: int,
                 max_answer_length: int, null_threshold: float | None) -> tuple[list[str], list[float]]:
    """Each example's answer text and null-score difference (null − best span; -inf without windows)."""
    candidates: dict[int, list[tuple[float, str]]] = {}
    null: dict[int, float] = {}
    for window in range(len(split)):
        example = int(split.example_of[window])
        length = int(split.lengths[window])
        start, end = start_logits[window][:length], end_logits[window][:length]
        null[example] = min(null.get(example, np.inf), float(start[0] + end[0]))
        offsets, flags = split.offsets[window], split.max_context[window]
        context = split.examples[example].context
        for s in np.argsort(-start, kind="stable")[:n_best]:
            for e in np.argsort(-end, kind="stable")[:n_best]:
                if offsets[s, 0] < 0 or offsets[e, 0] < 0 or not flags[s] or e < s or e - s + 1 > max_answer_length:
                    continue
                candidates.setdefault(example, []).append(
                    (float(start[s] + end[e]), context[offsets[s, 0]:offsets[e, 1]]))
    texts, diffs = [], []
    for example in range(len(split.examples)):
        ranked = sorted(candidates.get(example, []), key=lambda c: -c[0])
        best = next(((score, text) for score, text in ranked if text), None)
        if best is None:
            texts.append("")
            diffs.append(float("inf"))
            continue
        diff = null.get(example, -np.inf) - best[0]
        diffs.append(diff)
        texts.append("" if null_threshold is not None and diff > null_threshold else best[1])
    return texts, diffs
