"""What a score must beat: the majority class and a bag-of-words model on the same task and metrics.

A fine-tuned model at the majority baseline learnt nothing; one at the bag-of-words baseline learnt no
more than which words occur. Both are scored on every dev split with the task's official metrics, as the
fine-tuned models are. The bag of words is scikit-learn's: unigram and bigram counts of the (lower-cased)
text (a pair joined with its second sentence's words marked), logistic regression for classification,
ridge regression for regression tasks, fitted on at most `MAX_TRAIN` training examples (the first ones).
Text-to-text fine-tuning scores label words that stand for the same classes, so the same baselines apply;
a multi-task mixture's baselines are the task's own (its first part), not the mixture's.
"""

from __future__ import annotations

import numpy as np
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression, Ridge

from .metrics import compute

MAX_TRAIN = 20_000  # MNLI's 393k pairs would take minutes; the baseline's score has settled long before


def _texts(examples) -> list[str]:
    text_a = [str(t) for t in examples.text_a]
    if examples.text_b is None:
        return text_a
    # the second sentence's words get their own features, so the model can compare the two sides
    return [a + " " + " ".join("b_" + w for w in str(b).split()) for a, b in zip(text_a, examples.text_b)]


def _own_train(prep):
    """The task's own training rows: a multi-task mixture's first part is the task itself."""
    train = prep.splits["train"]
    parts = getattr(train, "parts", None)
    return next(iter(parts.values())) if parts else train


def task_baselines(prep) -> dict[str, dict[str, dict[str, float]]]:
    """{"majority": {dev split: metrics}, "bag_of_words": {...}} for a `Prepared` task (labels as encoded)."""
    labels = _own_train(prep).labels[:MAX_TRAIN]
    regression = prep.num_labels == 1
    vectorizer = CountVectorizer(ngram_range=(1, 2), min_df=1, token_pattern=r"(?u)\b\w+\b")
    # the prepared split holds the first examples (`max_train_examples` too): the same rows as the raw texts
    features = vectorizer.fit_transform(_texts(prep.task.splits["train"])[:len(labels)])
    if regression:
        model = Ridge(alpha=1.0).fit(features, labels)
        constant = float(np.mean(labels))
    else:
        model = LogisticRegression(max_iter=1000, C=1.0).fit(features, labels)
        values, counts = np.unique(labels, return_counts=True)
        constant = values[np.argmax(counts)]
    out: dict[str, dict[str, dict[str, float]]] = {"majority": {}, "bag_of_words": {}}
    for name in prep.dev_splits:
        labels = prep.splits[name].labels
        if labels is None:
            continue
        out["majority"][name] = compute(prep.metric_names, np.full(len(labels), constant), labels)
        predicted = model.predict(vectorizer.transform(_texts(prep.task.splits[name])))
        out["bag_of_words"][name] = compute(prep.metric_names, predicted, labels)
    for kind in out.values():
        scores = [m["score"] for m in kind.values()]
        kind["score"] = float(np.mean(scores)) if scores else float("nan")
    return out
