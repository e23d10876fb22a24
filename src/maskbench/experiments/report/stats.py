"""Numbers over seeds: mean ± std and how the report prints values."""

from __future__ import annotations

import math
import statistics

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


def fmt_params(value: float, signed: bool = False) -> str:
    return f"{value / 1e6:{'+' if signed else ''}.3f}M"


def fmt_num(value: float, signed: bool = False) -> str:
    if abs(value) >= 1e5:
        text = f"{value / 1e6:.2f}M"
        return ("+" + text) if signed and value > 0 else text
    return f"{value:+.2f}" if signed else f"{value:.2f}"
