"""GLUE's official metrics, computed by scikit-learn / SciPy so the numbers match everyone else's.

CoLA: Matthews correlation; STS-B: Pearson and Spearman; MRPC and QQP: F1 (positive class 1) and
accuracy; the rest accuracy. A task's `score` is the mean of its official metrics, as on the GLUE
leaderboard; it is what model selection (the best epoch) and the summary over seeds compare.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, Sequence

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import f1_score, matthews_corrcoef

from ..config import nearest
from ..errors import ConfigError


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.asarray(predictions) == np.asarray(labels)))


def f1(predictions: np.ndarray, labels: np.ndarray) -> float:
    return float(f1_score(labels, predictions, pos_label=1, average="binary", zero_division=0.0))


def matthews(predictions: np.ndarray, labels: np.ndarray) -> float:
    with warnings.catch_warnings():  # one class only: sklearn warns, and the answer (0) is still right
        warnings.simplefilter("ignore")
        return float(matthews_corrcoef(labels, predictions))


def _correlation(fn, predictions: np.ndarray, labels: np.ndarray) -> float:
    predictions = np.asarray(predictions, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    if len(labels) < 2 or np.ptp(predictions) == 0 or np.ptp(labels) == 0:
        return 0.0  # undefined for a constant side: report no correlation rather than NaN
    return float(fn(predictions, labels)[0])


def pearson(predictions: np.ndarray, labels: np.ndarray) -> float:
    return _correlation(pearsonr, predictions, labels)


def spearman(predictions: np.ndarray, labels: np.ndarray) -> float:
    return _correlation(spearmanr, predictions, labels)


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": accuracy,
    "f1": f1,
    "matthews": matthews,
    "pearson": pearson,
    "spearman": spearman,
}
_ALIASES = {"acc": "accuracy", "mcc": "matthews", "matthews_corrcoef": "matthews", "matthews_correlation": "matthews",
            "pearsonr": "pearson", "spearmanr": "spearman", "f1_score": "f1"}


def canonical(name: str) -> str:
    """The metric's name here (`mcc` → `matthews`); unknown names are a one-line error."""
    key = name.lower()
    key = _ALIASES.get(key, key)
    if key not in METRICS:
        hint = nearest(key, METRICS)
        raise ConfigError(f"unknown metric {name!r}" + (f"; did you mean '{hint}'?" if hint else
                                                         f"; known: {', '.join(METRICS)}"))
    return key


def compute(names: Sequence[str], predictions, labels) -> dict[str, float]:
    """Each named metric plus `score` (their mean)."""
    out = {canonical(n): METRICS[canonical(n)](predictions, labels) for n in names}
    values = [v for v in out.values() if not math.isnan(v)]
    out["score"] = float(np.mean(values)) if values else float("nan")
    return out
