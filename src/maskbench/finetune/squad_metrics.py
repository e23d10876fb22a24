"""SQuAD's official exact match and F1, ported from `evaluate-v2.0.py` (Rajpurkar et al. 2018).

Answers are compared after the official normalisation (lower case, punctuation and the articles a/an/the
removed, whitespace collapsed); F1 is over the bag of normalised tokens; each question takes its best
score over the gold answers. A question without a (non-empty) gold answer has the gold answer "", so an
empty prediction scores 1 there and 0 elsewhere, as in v2.0. For v1.1 files this equals the v1.1 script
except on gold answers that normalise to nothing, which v1.1 data does not have. Scores are fractions in
[0, 1] like every other maskbench metric (the official script prints them × 100).
"""

from __future__ import annotations

import collections
import re
import string

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace (the official order)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _tokens(text: str) -> list[str]:
    return normalize_answer(text).split() if text else []


def exact(gold: str, prediction: str) -> int:
    return int(normalize_answer(gold) == normalize_answer(prediction))


def f1(gold: str, prediction: str) -> float:
    gold_tokens, predicted = _tokens(gold), _tokens(prediction)
    if not gold_tokens or not predicted:
        return float(gold_tokens == predicted)
    same = sum((collections.Counter(gold_tokens) & collections.Counter(predicted)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def gold_answers(answers: list[str]) -> list[str]:
    """The answers that count: those that normalise to something, or [""] for an unanswerable question."""
    kept = [a for a in answers if normalize_answer(a)]
    return kept or [""]


def raw_scores(golds: list[list[str]], predictions: list[str]) -> tuple[list[float], list[float]]:
    """Per-question (exact, F1), each the best over that question's gold answers."""
    exacts, f1s = [], []
    for answers, prediction in zip(golds, predictions):
        answers = gold_answers(answers)
        exacts.append(float(max(exact(a, prediction) for a in answers)))
        f1s.append(max(f1(a, prediction) for a in answers))
    return exacts, f1s


def best_threshold(predictions: list[str], scores: list[float], null_scores: list[float],
                   has_answer: list[bool]) -> tuple[float, float]:
    """The official `find_best_thresh`: the no-answer threshold on `null_scores` that maximises the mean
    score when every question whose null score exceeds it is answered "" (returns (score, threshold))."""
    current = best = sum(1 for h in has_answer if not h)
    threshold = 0.0
    for i in sorted(range(len(null_scores)), key=lambda k: null_scores[k]):
        if has_answer[i]:
            current += scores[i]
        else:
            current += -1 if predictions[i] else 0
        if current > best:
            best, threshold = current, null_scores[i]
    return best / max(1, len(scores)), threshold


def squad_scores(golds: list[list[str]], predictions: list[str], null_scores: list[float] | None = None) -> dict:
    """`exact_match`, `f1` (and, with null-score differences for SQuAD 2.0, the best thresholds'
    `best_exact`, `best_f1`, `best_f1_threshold`); `score` is F1, the number papers select on."""
    exacts, f1s = raw_scores(golds, predictions)
    n = max(1, len(f1s))
    out = {"exact_match": sum(exacts) / n, "f1": sum(f1s) / n}
    if null_scores is not None:
        has_answer = [bool(gold_answers(a)[0]) for a in golds]
        out["best_exact"], _ = best_threshold(predictions, exacts, null_scores, has_answer)
        out["best_f1"], out["best_f1_threshold"] = best_threshold(predictions, f1s, null_scores, has_answer)
    out["score"] = out["f1"]
    return out
