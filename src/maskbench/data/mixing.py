"""Multi-task mixing rates as in T5 (Raffel et al. 2020, Section 3.5.2), and a seeded per-example sampler.

With e_m training examples in task m:
- examples-proportional mixing with artificial limit K: r_m = min(e_m, K) / Σ_n min(e_n, K)
  (the unsupervised task's e_m is its number of training sequences, which the limit keeps from swamping
  the rest);
- temperature-scaled mixing with temperature T: r_m ∝ min(e_m, K)^(1/T), normalised (T = 1 is
  examples-proportional, T → ∞ tends to equal mixing; T5 applies the limit K first, as here);
- equal mixing: r_m = 1 / M.
These are `seqio.utils.mixing_rate_num_examples(task, maximum=K, temperature=T)` (which T5's mixtures use)
followed by the normalisation `seqio.Mixture` applies when sampling.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ..config import check_choice
from ..errors import ConfigError

STRATEGIES = ("proportional", "temperature", "equal")


def mixing_rates(sizes: Mapping[str, float], strategy: str = "proportional", limit: float | None = None,
                 temperature: float = 1.0) -> dict[str, float]:
    """Normalised sampling rate of each task from its number of examples (see the module docstring)."""
    check_choice("strategy", strategy, STRATEGIES)
    if not sizes:
        raise ConfigError("a mixture needs at least one task", "tasks")
    for name, size in sizes.items():
        if not size or size < 0:
            raise ConfigError(f"task {name!r} has {size} examples; every task of a mixture needs some", "tasks")
    if limit is not None and limit <= 0:
        raise ConfigError(f"must be positive, got {limit}", "limit")
    if temperature <= 0:
        raise ConfigError(f"must be positive, got {temperature}", "temperature")
    if strategy == "equal":
        raw = {name: 1.0 for name in sizes}
    else:
        raw = {name: float(min(size, limit) if limit else size) for name, size in sizes.items()}
        if strategy == "temperature":
            raw = {name: value ** (1.0 / temperature) for name, value in raw.items()}
    total = sum(raw.values())
    return {name: value / total for name, value in raw.items()}


def sample_tasks(rates: Mapping[str, float], count: int, seed: int, step: int) -> np.ndarray:
    """Task index (in `rates`' order) of each of `count` examples of batch `step`: a pure function of
    (seed, step), so a resumed run draws the same mixture."""
    probabilities = np.asarray(list(rates.values()), dtype=np.float64)
    rng = np.random.default_rng([int(seed), int(step), 0x31C7])
    return rng.choice(len(probabilities), size=count, p=probabilities / probabilities.sum())
