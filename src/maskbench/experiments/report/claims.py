"""A paper's claims checked against the results: both sides of a comparison, a paired test over seeds,
a verdict (agrees / disagrees / inconclusive / no data) and the sentence that explains it."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from scipy import stats

from ...config import from_dict
from ...finetune.summary import paired_test
from ..spec import ClaimSpec, get_dotted
from .collect import CellResult, Results, cell_scores
from .stats import fmt_num, fmt_params, near_chance

@dataclass
class Verdict:
    claim: ClaimSpec
    verdict: str  # agrees | disagrees | inconclusive | no data
    detail: str
    better_mean: float | None = None
    worse_mean: float | None = None


def _matches(cell: CellResult, selector: dict[str, Any]) -> bool:
    for key, want in selector.items():
        have = cell.assignment.get(key, get_dotted(cell.config, key))
        if isinstance(want, float) or isinstance(have, float):
            try:
                if not math.isclose(float(have), float(want), rel_tol=1e-9, abs_tol=1e-12):
                    return False
            except (TypeError, ValueError):
                return False
        elif have != want:
            return False
    return True


def _cells_for(results: Results, claim: ClaimSpec, selector: dict) -> list[CellResult]:
    return [c for c in results.cells if c.status != "failed" and _matches(c, selector)
            and (claim.series is None or claim.series in c.series)]


def like_with_like(results: Results, claim: ClaimSpec) -> tuple[str | None, str | None]:
    """The (task, method) a score claim compares on: what it names, else one task (the first) and one
    method (vanilla, else the first), so its verdict reads off one column of one table; `pool` pools all."""
    if claim.pool or claim.metric != "score":
        return claim.task, claim.method
    task = claim.task if claim.task is not None else (results.tasks[0] if len(results.tasks) > 1 else None)
    method = claim.method
    if method is None and claim.better_method is None and len(results.methods) > 1:
        method = "vanilla" if "vanilla" in results.methods else results.methods[0]
    return task, method


def _metric_values(cells: list[CellResult], claim: ClaimSpec, method: str | None,
                   where: tuple[str | None, str | None] = (None, None)) -> dict[tuple, float]:
    """Values keyed so both sides of a claim pair up: by (task, method, seed) when cells are compared
    (averaged over the cells a selector matches), by (cell, task, seed) when methods are compared."""
    groups: dict[tuple, list[float]] = defaultdict(list)
    task_of, method_of = where
    for cell in cells:
        if claim.metric == "score":
            for (task, m, seed), score in cell_scores(cell, task_of or claim.task,
                                                      method or method_of or claim.method).items():
                key = (cell.id, task, seed) if claim.better_method else (task, m, seed)
                groups[key].append(score)
        elif claim.metric == "parameters":
            if isinstance(cell.pretrain.get("parameters"), (int, float)):
                groups[(cell.id,)].append(float(cell.pretrain["parameters"]))
        elif claim.metric.startswith("probe."):
            accuracies = cell.probes.get(claim.metric.split(".", 1)[1])
            if accuracies:
                groups[(cell.id,)].append(max(accuracies))  # the best layer
        elif claim.metric.startswith("pretrain."):
            value = get_dotted(cell.pretrain, claim.metric.split(".", 1)[1])
            if isinstance(value, (int, float)) and math.isfinite(value):
                groups[(cell.id,)].append(float(value))
    return {key: statistics.fmean(values) for key, values in groups.items()}


def evaluate_claim(results: Results, claim: ClaimSpec) -> Verdict:
    """Compare the two sides of a claim on the results: mean difference and a paired test over seeds."""
    better_cells = _cells_for(results, claim, claim.better)
    worse_cells = _cells_for(results, claim, claim.worse)
    where = like_with_like(results, claim)
    better = _metric_values(better_cells, claim, claim.better_method, where)
    worse = _metric_values(worse_cells, claim, claim.worse_method, where)
    if not better or not worse:
        side = "the better side" if not better else "the worse side"
        return Verdict(claim, "no data", f"no finished results for {side} of the comparison")
    sign = -1.0 if claim.lower_is_better else 1.0
    paired = sorted(set(better) & set(worse))
    if paired and claim.metric == "score":
        a = [better[k] for k in paired]
        b = [worse[k] for k in paired]
        same = "cell, task and seed" if claim.better_method else "task, method and seed"
        how = f"paired over {len(paired)} runs with the same {same}"
        scope = [f"task {where[0]}" if where[0] else "", f"{where[1]} fine-tuning" if where[1] else ""]
        if claim.pool and len(results.tasks) + len(results.methods) > 2:
            scope = ["pooled over tasks and methods"]
        if any(scope):
            how = "; ".join(s for s in scope if s) + "; " + how
    else:
        a, b = list(better.values()), list(worse.values())
        how = f"{len(a)} vs {len(b)} cells"
    mean_a, mean_b = statistics.fmean(a), statistics.fmean(b)
    diff = sign * (mean_a - mean_b)
    p = math.nan
    if claim.metric == "score" and len(a) >= 2 and len(b) >= 2:
        if paired:
            test = paired_test(a, b)
            if test["p"] is not None:
                p = test["p"]
            else:  # the same difference on every seed: the test is undefined (see finetune.summary)
                how += "; every pair differs by the same amount, so the paired t-test is undefined"
        elif statistics.pvariance(a) > 0 or statistics.pvariance(b) > 0:
            p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    unit = 100.0 if claim.metric == "score" or claim.metric.startswith("probe.") else 1.0
    fmt = fmt_params if claim.metric == "parameters" else fmt_num
    shown = (f"{fmt(mean_a * unit)} vs {fmt(mean_b * unit)} "
             f"(difference {fmt((mean_a - mean_b) * unit, signed=True)}; {how}"
             + (f"; p = {p:.3g}" if not math.isnan(p) else "") + ")")
    if claim.metric == "score":
        significant = not math.isnan(p) and p < 0.05
    elif claim.metric == "parameters":
        significant = True  # exact arithmetic, no noise
    else:  # one run per cell: differences within the claim's tolerance count as noise
        significant = abs(mean_a - mean_b) > claim.tolerance
        shown += f"; one run per cell, differences within ±{fmt_num(claim.tolerance * unit)} count as noise"
    chance = _chance(results, claim, where[0], paired if paired and claim.metric == "score" else [])
    if chance is not None and near_chance(a, chance) and near_chance(b, chance):
        shown += (f" — both sides within seed noise of chance (majority class {fmt_num(chance * unit)}): "
                  "this scale cannot tell them apart")
        return Verdict(claim, "inconclusive (both at chance)", shown, mean_a, mean_b)
    if claim.kind == "similar":
        close = abs(mean_a - mean_b) <= claim.tolerance
        if close or (not math.isnan(p) and p >= 0.05):
            verdict = "agrees"
        else:
            verdict = "disagrees" if significant else "inconclusive"
    elif diff > 0:
        verdict = "agrees" if significant else "inconclusive"
        if verdict == "inconclusive":
            shown += " — same direction as the claim, but within seed noise at this scale"
    elif diff < 0:
        verdict = "disagrees" if significant else "inconclusive"
        if verdict == "inconclusive":
            shown += " — opposite direction to the claim, within seed noise at this scale"
    else:
        verdict = "inconclusive"
        shown += " — no difference"
    return Verdict(claim, verdict, shown, mean_a, mean_b)


def evaluate_claims(results: Results) -> list[Verdict]:
    """The verdict of every claim of the experiment's spec that applies at its scale, in the spec's order."""
    spec = results.index.get("spec", {})
    scale = results.index.get("scale")
    claims = [c for c in (from_dict(ClaimSpec, c) for c in spec.get("claims", []))
              if c.scales is None or scale in c.scales]
    return [evaluate_claim(results, c) for c in claims]


def _chance(results: Results, claim: ClaimSpec, task: str | None, keys: list[tuple]) -> float | None:
    """The majority-class score of the task(s) a score claim compares on (None when unknown)."""
    if claim.metric != "score":
        return None
    tasks = [task] if task else unique_tasks(keys, claim) or results.tasks
    values = [results.baselines.get(t, {}).get("majority") for t in tasks]
    if not values or any(v is None for v in values):
        return None
    return statistics.fmean(values)


def unique_tasks(keys: list[tuple], claim: ClaimSpec) -> list[str]:
    """The tasks in paired keys: (task, method, seed) or, comparing methods, (cell, task, seed)."""
    position = 1 if claim.better_method else 0
    return sorted({k[position] for k in keys})
