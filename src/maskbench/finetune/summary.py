"""The summary over seeds: mean ± std per method, and each method against vanilla with a paired t-test.

Fine-tuning results on small GLUE tasks swing by points between seeds (Dodge et al. 2020), so a
method is compared with vanilla *seed by seed*: the same seed gives both runs the same data order and
head initialisation, and the paired t-test over seeds (`scipy.stats.ttest_rel`) asks whether the mean
difference is distinguishable from zero. It needs at least two common seeds; with fewer, the p-value is
null. When every seed gives the same difference (to 1e-12), the test is undefined (zero spread: t would
be infinite) and the p-value is null too, deliberately not 0: with a handful of seeds an identical
difference comes from quantised scores on a small dev set or from models stuck at a constant prediction,
not from the absence of seed noise, so it must not count as significant. The experiment reports use the
same test, so such a claim's verdict is "inconclusive".
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.stats import ttest_rel


def _stats(values: list[float]) -> dict[str, Any]:
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0,
            "values": [float(v) for v in arr]}


EQUAL_DIFFERENCES = 1e-12  # differences closer than this (relative to their size) count as identical


def paired_test(values: list[float], baseline: list[float]) -> dict[str, Any]:
    """Mean difference, its std over seeds, t statistic and two-sided p-value of a paired t-test (`t` and
    `p` None with fewer than two pairs or identical differences: see the module docstring)."""
    a = np.asarray(values, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    diff = a - b
    out: dict[str, Any] = {"n": int(len(diff)), "diff_mean": float(diff.mean()) if len(diff) else None,
                           "diff_std": float(diff.std(ddof=1)) if len(diff) > 1 else None, "t": None, "p": None}
    if len(diff) >= 2 and np.ptp(diff) > EQUAL_DIFFERENCES * max(1.0, float(np.abs(diff).max())):
        result = ttest_rel(a, b)
        out["t"] = float(result.statistic)
        out["p"] = float(result.pvalue)
    return out


def _metric_values(run: dict, split: str, metric: str) -> float:
    return float(run[split][metric])


def summarize(runs: dict[str, list[dict]], metric_names: list[str], dev_splits: list[str],
              context: dict | None = None) -> dict:
    """`runs`: method → the `best.json` of each seed. Returns the content of `summary.json`."""
    methods: dict[str, Any] = {}
    for method, results in runs.items():
        results = sorted(results, key=lambda r: r["seed"])
        entry: dict[str, Any] = {"seeds": [r["seed"] for r in results], "score": _stats([r["score"] for r in results])}
        for split in dev_splits:
            entry[split] = {m: _stats([_metric_values(r, split, m) for r in results]) for m in metric_names}
        seconds = [r.get("train_seconds") for r in results if r.get("train_seconds") is not None]
        if seconds:
            entry["train_seconds"] = _stats(seconds)
        steps = [r.get("step_seconds_median") for r in results if r.get("step_seconds_median") is not None]
        if steps:
            entry["step_seconds_median"] = float(np.median(steps))
        fisher = [r["fisher"] for r in results if "fisher" in r]
        if fisher:
            # per-seed Fisher (the default) is one pass per seed, each with its own head_seed; shared, one pass
            passes: dict = {}
            for f in fisher:
                passes.setdefault(f.get("head_seed"), f.get("seconds"))
            entry["fisher"] = {**fisher[0], "passes": len(passes),
                               "seconds_total": round(sum(float(v or 0.0) for v in passes.values()), 3)}
        methods[method] = entry
    versus: dict[str, Any] = {}
    if "vanilla" in runs:
        base = {r["seed"]: r for r in runs["vanilla"]}
        for method, results in runs.items():
            if method == "vanilla":
                continue
            pairs = sorted(((r, base[r["seed"]]) for r in results if r["seed"] in base), key=lambda p: p[0]["seed"])
            comparison = {"seeds": [p[0]["seed"] for p in pairs],
                          "score": paired_test([p[0]["score"] for p in pairs], [p[1]["score"] for p in pairs])}
            for split in dev_splits:
                comparison[split] = {m: paired_test([_metric_values(p[0], split, m) for p in pairs],
                                                    [_metric_values(p[1], split, m) for p in pairs])
                                     for m in metric_names}
            versus[method] = comparison
    return {**(context or {}), "metrics": list(metric_names), "dev_splits": list(dev_splits), "methods": methods,
            "vs_vanilla": versus, **_transfer_summary(runs)}


def _transfer_summary(runs: dict[str, list[dict]]) -> dict:
    """{"transfer": {test name: {method: score stats, "vs_vanilla": {method: paired test}}}} when the runs
    carry transfer results (`maskbench.finetune.transfer`); empty otherwise."""
    names = sorted({name for results in runs.values() for r in results for name in r.get("transfer", {})})
    out: dict[str, Any] = {}
    for name in names:
        scores = {m: {r["seed"]: r["transfer"][name]["score"] for r in results if name in r.get("transfer", {})}
                  for m, results in runs.items()}
        entry: dict[str, Any] = {m: _stats([v[s] for s in sorted(v)]) for m, v in scores.items() if v}
        base = scores.get("vanilla", {})
        entry["vs_vanilla"] = {m: paired_test([v[s] for s in sorted(set(v) & set(base))],
                                              [base[s] for s in sorted(set(v) & set(base))])
                               for m, v in scores.items() if m != "vanilla" and base}
        out[name] = entry
    return {"transfer": out} if out else {}


def _pm(stats: dict, scale: float = 100.0) -> str:
    return f"{stats['mean'] * scale:.2f} ± {stats['std'] * scale:.2f}"


def _p(value) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3g}"


def _pct(value) -> str:
    return "–" if value is None or value != value else f"{value * 100:.2f}"


def to_markdown(summary: dict) -> str:
    """A table a person reads: scores ×100, mean ± std over seeds, Δ vs vanilla and the paired-test p."""
    metrics = summary["metrics"]
    splits = summary["dev_splits"]
    title = f"# Fine-tuning {summary.get('task', '')} from {summary.get('checkpoint', '')}".rstrip()
    header = ["method", "seeds", "score"]
    for split in splits:
        header += [f"{split} {m}" for m in metrics]
    header += ["Δ score vs vanilla", "p (paired t)"]
    lines = [title, "", "Scores ×100, mean ± std over seeds (sample std); Δ and p from a paired t-test across "
             "the seeds both methods ran.", "", "| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] * len(header)) + "|"]
    for method, entry in summary["methods"].items():
        row = [method, str(len(entry["seeds"])), _pm(entry["score"])]
        for split in splits:
            row += [_pm(entry[split][m]) for m in metrics]
        versus = summary["vs_vanilla"].get(method)
        if versus and versus["score"]["diff_mean"] is not None:
            row += [f"{versus['score']['diff_mean'] * 100:+.2f}", _p(versus["score"]["p"])]
        else:
            row += ["–", "–"]
        lines.append("| " + " | ".join(row) + " |")
    for method, seeds in (summary.get("failed") or {}).items():
        if method not in summary["methods"]:
            lines.append("| " + " | ".join([method, "0", "failed"] + ["–"] * (len(header) - 3)) + " |")
    for kind, name in (("majority", "majority class"), ("bag_of_words", "bag of words")):
        base = (summary.get("baselines") or {}).get(kind)
        if base:
            row = [name, "–", _pct(base["score"])]
            for split in splits:
                row += [_pct(base.get(split, {}).get(m)) for m in metrics]
            lines.append("| " + " | ".join(row + ["–", "–"]) + " |")
    if summary.get("baselines"):
        lines += ["", "Baselines on the same dev splits: the training split's majority class, and a bag of words "
                      "(unigram and bigram counts, logistic regression; scikit-learn)."]
    for method, seeds in (summary.get("failed") or {}).items():
        for seed, reason in seeds.items():
            lines += ["", f"{method} seed {seed} FAILED, no score: {reason}"]
    for name, entry in summary.get("transfer", {}).items():
        lines += ["", f"## {name}", "", "| method | seeds | score | Δ score vs vanilla | p (paired t) |",
                  "|---|---|---|---|---|"]
        for method in summary["methods"]:
            if method not in entry:
                continue
            versus = entry["vs_vanilla"].get(method)
            delta = ["–", "–"] if not versus or versus["diff_mean"] is None else \
                [f"{versus['diff_mean'] * 100:+.2f}", _p(versus["p"])]
            lines.append(f"| {method} | {len(entry[method]['values'])} | {_pm(entry[method])} | " + " | ".join(delta) + " |")
    fisher = [(m, e["fisher"]) for m, e in summary["methods"].items() if "fisher" in e]
    for method, info in fisher:
        passes = info.get("passes", 1)
        when = ("computed once" if passes == 1 else
                f"for seed {info.get('head_seed')}; computed once per seed: {passes} passes, "
                f"{info.get('seconds_total')} s in all")
        lines += ["", f"{method}: Fisher information over {info.get('examples')} training examples in "
                      f"{info.get('batches')} batches took {info.get('seconds')} s ({when}; reported apart "
                      f"from training); kept {info.get('kept')} of {info.get('total')} pre-trained parameters."]
    return "\n".join(lines) + "\n"
