"""Numbers over seeds: mean ± std and how the report prints values."""

from __future__ import annotations

import math
import statistics

from scipy import stats

def mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, std


def fmt_mean_std(values: list[float], scale: float = 100.0) -> str:
    """`81.2 ± 0.4` (scores in percent, as the papers print them); a single seed has no ±."""
    if not values:
        return "–"
    mean, std = mean_std(values)
    if len(values) == 1:
        return f"{mean * scale:.1f}"
    return f"{mean * scale:.1f} ± {std * scale:.1f}"


def near_chance(values: list[float], chance: float | None) -> bool:
    """True when the scores are within seed noise of chance (the majority-class baseline): a one-sided
    t-test over seeds of "better than chance" gives p >= 0.05; one seed: within one point of it."""
    if chance is None or not values or any(math.isnan(v) for v in values):
        return False
    if len(values) < 2 or statistics.pvariance(values) == 0:
        return statistics.fmean(values) - chance <= 0.01
    return float(stats.ttest_1samp(values, chance, alternative="greater").pvalue) >= 0.05


def fmt_params(value: float, signed: bool = False) -> str:
    return f"{value / 1e6:{'+' if signed else ''}.3f}M"


def fmt_num(value: float, signed: bool = False) -> str:
    if abs(value) >= 1e5:
        text = f"{value / 1e6:.2f}M"
        return ("+" + text) if signed and value > 0 else text
    return f"{value:+.2f}" if signed else f"{value:.2f}"
