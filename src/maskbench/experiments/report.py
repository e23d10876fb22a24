"""Reports: `report.md` and a self-contained `report.html` from an experiment folder.

Everything is computed from the folder (the index, the cells and the stage records), so a report can be
rebuilt at any time, also for an interrupted or partly failed experiment. Tables give the mean ± std over
seeds with the best in bold; plots are matplotlib PNGs (files beside report.md, base64 inline in the HTML,
which therefore opens offline with no external URL); each claim of the paper is checked against the
results with a paired test over seeds, and the verdict says how strong the evidence is at this scale.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import dumps_toml, from_dict
from ..io import read_json, read_jsonl, write_bytes, write_text
from .cells import StageStore
from .runner import load_index
from .spec import ClaimSpec, _format_value

FILES = "report_files"


@dataclass
class CellResult:
    id: str
    label: str
    labels: dict[str, str]
    assignment: dict[str, Any]
    series: list[str]
    status: str
    error: str | None
    config: dict
    scores: dict[tuple[str, str], dict[int, float]] = field(default_factory=dict)  # (task, method) -> seed -> score
    metric_names: dict[str, str] = field(default_factory=dict)  # task -> metric name
    pretrain: dict = field(default_factory=dict)
    pretrain_dir: Path | None = None
    probes: dict[str, list[float]] = field(default_factory=dict)
    heads: dict = field(default_factory=dict)
    heads_dir: Path | None = None
    attention: dict = field(default_factory=dict)
    attention_dir: Path | None = None
    stage_times: list[dict] = field(default_factory=list)


@dataclass
class Results:
    out: Path
    index: dict
    cells: list[CellResult]

    @property
    def tasks(self) -> list[str]:
        return _unique(t for c in self.cells for (t, _m) in c.scores)

    @property
    def methods(self) -> list[str]:
        return _unique(m for c in self.cells for (_t, m) in c.scores)


def _unique(items) -> list:
    out = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


def collect(out_dir: str | os.PathLike) -> Results:
    """Read an experiment folder into per-cell results (scores per seed, pretraining summaries, probes)."""
    out = Path(out_dir)
    index = load_index(out)
    store = StageStore(out)
    cells = []
    for cell_id in index["cells"]:
        path = out / "cells" / cell_id / "cell.json"
        if not path.is_file():
            continue
        rec = read_json(path)
        cell = CellResult(id=cell_id, label=rec.get("label", cell_id), labels=rec.get("labels", {}),
                          assignment=rec.get("assignment", {}), series=rec.get("series", []), status="done",
                          error=None, config=rec.get("config", {}))
        pending = False
        for entry in rec.get("stages", []):
            stage, key = entry["stage"], entry["key"]
            stage_rec = store.record(stage, key) or {}
            status = stage_rec.get("status", "pending")
            if status == "failed" or entry.get("status") == "failed":
                cell.status = "failed"
                cell.error = cell.error or f"{stage}: {stage_rec.get('error') or entry.get('error')}"
            elif status != "done":
                pending = True
            cell.stage_times.append({"stage": stage, "key": key, "params": entry.get("params", {}),
                                     "status": status if status != "pending" else entry.get("status", "pending"),
                                     "wall_s": stage_rec.get("wall_s")})
            if status != "done":
                continue
            result = stage_rec.get("result", {})
            folder = store.path(stage, key)
            if stage == "finetune" and "score" in result:
                task, method = result.get("task", "task"), result.get("method", "vanilla")
                cell.scores.setdefault((task, method), {})[int(result.get("seed", 0))] = float(result["score"])
                cell.metric_names[task] = result.get("metric", "score")
            elif stage == "pretrain":
                cell.pretrain, cell.pretrain_dir = result, folder
            elif stage == "probe":
                for task, layers in result.get("layers", {}).items():
                    cell.probes[task] = [float(x) for x in layers]
            elif stage == "heads":
                cell.heads, cell.heads_dir = result, folder
            elif stage == "attention":
                cell.attention, cell.attention_dir = result, folder
        if cell.status != "failed" and pending:
            cell.status = "incomplete"
        cells.append(cell)
    return Results(out=out, index=index, cells=cells)


# --------------------------------------------------------------------------------------------- statistics

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


def cell_scores(cell: CellResult, task: str | None = None, method: str | None = None) -> dict[tuple, float]:
    """(task, method, seed) -> score of one cell, optionally restricted to a task or method."""
    out = {}
    for (t, m), seeds in cell.scores.items():
        if (task is None or t == task) and (method is None or m == method):
            for seed, score in seeds.items():
                out[(t, m, seed)] = score
    return out


# --------------------------------------------------------------------------------------------- claims

@dataclass
class Verdict:
    claim: ClaimSpec
    verdict: str  # agrees | disagrees | inconclusive | no data
    detail: str
    better_mean: float | None = None
    worse_mean: float | None = None


def _matches(cell: CellResult, selector: dict[str, Any]) -> bool:
    for key, want in selector.items():
        have = cell.assignment.get(key, _get_dotted(cell.config, key))
        if isinstance(want, float) or isinstance(have, float):
            try:
                if not math.isclose(float(have), float(want), rel_tol=1e-9, abs_tol=1e-12):
                    return False
            except (TypeError, ValueError):
                return False
        elif have != want:
            return False
    return True


def _get_dotted(config: dict, key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _cells_for(results: Results, claim: ClaimSpec, selector: dict) -> list[CellResult]:
    return [c for c in results.cells if c.status != "failed" and _matches(c, selector)
            and (claim.series is None or claim.series in c.series)]


def _metric_values(cells: list[CellResult], claim: ClaimSpec, method: str | None) -> dict[tuple, float]:
    """Values keyed so both sides of a claim pair up: by (task, method, seed) when cells are compared
    (averaged over the cells a selector matches), by (cell, task, seed) when methods are compared."""
    groups: dict[tuple, list[float]] = defaultdict(list)
    for cell in cells:
        if claim.metric == "score":
            for (task, m, seed), score in cell_scores(cell, claim.task, method or claim.method).items():
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
            value = _get_dotted(cell.pretrain, claim.metric.split(".", 1)[1])
            if isinstance(value, (int, float)) and math.isfinite(value):
                groups[(cell.id,)].append(float(value))
    return {key: statistics.fmean(values) for key, values in groups.items()}


def evaluate_claim(results: Results, claim: ClaimSpec) -> Verdict:
    """Compare the two sides of a claim on the results: mean difference and a paired test over seeds."""
    from scipy import stats

    better_cells = _cells_for(results, claim, claim.better)
    worse_cells = _cells_for(results, claim, claim.worse)
    better = _metric_values(better_cells, claim, claim.better_method)
    worse = _metric_values(worse_cells, claim, claim.worse_method)
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
    else:
        a, b = list(better.values()), list(worse.values())
        how = f"{len(a)} vs {len(b)} cells"
    mean_a, mean_b = statistics.fmean(a), statistics.fmean(b)
    diff = sign * (mean_a - mean_b)
    p = math.nan
    if claim.metric == "score" and len(a) >= 2 and len(b) >= 2:
        diffs = [x - y for x, y in zip(a, b)] if paired else None
        if diffs is not None and max(diffs) - min(diffs) > 1e-12:
            p = float(stats.ttest_rel(a, b).pvalue)
        elif diffs is not None:  # the same difference on every seed: no noise at all
            p = 0.0 if abs(diffs[0]) > 1e-12 else 1.0
        elif diffs is None and (statistics.pvariance(a) > 0 or statistics.pvariance(b) > 0):
            p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    unit = 100.0 if claim.metric == "score" or claim.metric.startswith("probe.") else 1.0
    fmt = _fmt_params if claim.metric == "parameters" else _fmt_num
    shown = (f"{fmt(mean_a * unit)} vs {fmt(mean_b * unit)} "
             f"(difference {fmt((mean_a - mean_b) * unit, signed=True)}; {how}"
             + (f"; p = {p:.3g}" if not math.isnan(p) else "") + ")")
    if claim.metric == "score":
        significant = not math.isnan(p) and p < 0.05
    elif claim.metric == "parameters":
        significant = True  # exact arithmetic, no noise
    else:  # one run per cell: differences within the claim's tolerance count as noise
        significant = abs(mean_a - mean_b) > claim.tolerance
        shown += f"; one run per cell, differences within ±{_fmt_num(claim.tolerance * unit)} count as noise"
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


def _fmt_params(value: float, signed: bool = False) -> str:
    return f"{value / 1e6:{'+' if signed else ''}.3f}M"


def _fmt_num(value: float, signed: bool = False) -> str:
    if abs(value) >= 1e5:
        text = f"{value / 1e6:.2f}M"
        return ("+" + text) if signed and value > 0 else text
    return f"{value:+.2f}" if signed else f"{value:.2f}"


# --------------------------------------------------------------------------------------------- tables

@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    bold: set[tuple[int, int]] = field(default_factory=set)
    note: str = ""


def score_tables(results: Results) -> list[Table]:
    """One table per task: cells as rows, fine-tuning methods as columns, mean ± std over seeds."""
    tables = []
    axes = results.index.get("axes", [])
    for task in results.tasks:
        methods = [m for m in results.methods if any((task, m) in c.scores for c in results.cells)]
        shown_axes = [a for a in axes if any(a in c.labels for c in results.cells)]
        header = (shown_axes or ["cell"]) + methods
        rows, means = [], []
        shown_cells = [c for c in results.cells if any((task, m) in c.scores for m in methods) or c.status != "done"]
        for cell in shown_cells:
            row = _row_labels(cell, shown_axes)
            row_means = []
            for method in methods:
                seeds = cell.scores.get((task, method), {})
                values = [seeds[s] for s in sorted(seeds)]
                row.append(fmt_mean_std(values) if values else ("failed" if cell.status == "failed" else "–"))
                row_means.append(mean_std(values)[0] if values else math.nan)
            rows.append(row)
            means.append(row_means)
        bold = set()
        offset = len(header) - len(methods)
        if len(rows) > 1:
            for j in range(len(methods)):
                bold |= {(i, offset + j) for i in _best_indices([m[j] for m in means])}
        elif rows:
            bold |= {(0, offset + j) for j in _best_indices(means[0])}
        metric = next((c.metric_names[task] for c in results.cells if task in c.metric_names), "score")
        seeds = _unique(s for c in results.cells for (t, _m), ss in c.scores.items() if t == task for s in ss)
        tables.append(Table(title=f"{task} ({metric}, ×100, mean ± std over {len(seeds)} seeds)", header=header,
                            rows=rows, bold=bold,
                            note="Best of each column in bold." if len(rows) > 1 else "Best method in bold."))
    return tables


def _row_labels(cell: CellResult, axes: list[str]) -> list[str]:
    """The cell's place on each axis (or its label), the first entry marked when the cell failed."""
    row = [cell.labels.get(a, "") for a in axes] if axes else [cell.label]
    row[0] = _cell_name(cell, row[0])
    return row


def _best_indices(values: list[float], lower: bool = False) -> list[int]:
    """Every position holding the best value (ties all bold); none when all values are equal."""
    finite = [v for v in values if not math.isnan(v)]
    if len(finite) < 2 or max(finite) == min(finite):
        return []
    best = min(finite) if lower else max(finite)
    return [i for i, v in enumerate(values) if v == best]


def _cell_name(cell: CellResult, name: str | None = None) -> str:
    name = cell.label if name is None else name
    if cell.status == "failed":
        name += " ✗ failed"
    elif cell.status == "incomplete":
        name += " (incomplete)"
    return name


PRETRAIN_COLUMNS = (("parameters", "parameters", None), ("steps", "steps", None),
                    ("val_loss", "val loss", "low"), ("val_accuracy", "val acc", "high"),
                    ("val_loss_ref", "val loss @ref rate", "low"), ("val_accuracy_ref", "val acc @ref rate", "high"),
                    ("val_sentence_accuracy", "NSP/SOP acc", "high"), ("tokens_per_s", "tokens/s", None))


def pretrain_table(results: Results) -> Table | None:
    cells = [c for c in results.cells if c.pretrain]
    if not cells:
        return None
    present = [(k, title, d) for k, title, d in PRETRAIN_COLUMNS
               if any(isinstance(c.pretrain.get(k), (int, float)) for c in cells)]
    header = ["cell"] + [title for _k, title, _d in present]
    rows = []
    for cell in cells:
        row = [_cell_name(cell)]
        for key, _title, _d in present:
            value = cell.pretrain.get(key)
            row.append(_fmt_cell_value(key, value))
        rows.append(row)
    bold = set()
    for j, (key, _t, direction) in enumerate(present):
        if direction is None or len(rows) < 2:
            continue
        column = [float(c.pretrain[key]) if isinstance(c.pretrain.get(key), (int, float)) else math.nan
                  for c in cells]
        bold |= {(i, j + 1) for i in _best_indices(column, lower=direction == "low")}
    return Table(title="Pretraining", header=header, rows=rows, bold=bold,
                 note="Validation metrics at the end of pretraining; losses at different masking rates are only "
                      "comparable at the fixed reference rate. Not-pretrained baselines have no pretraining row.")


def probe_table(results: Results) -> Table | None:
    """Best-layer probe accuracy (×100) per cell, with the layer and the majority baseline's accuracy."""
    cells = [c for c in results.cells if c.probes]
    if not cells:
        return None
    names = _unique(n for c in cells for n in c.probes)
    rows, values = [], []
    for cell in cells:
        row, vals = [_cell_name(cell)], []
        for name in names:
            accs = cell.probes.get(name)
            if accs:
                best = max(range(len(accs)), key=lambda i: accs[i])
                row.append(f"{100 * accs[best]:.1f} (layer {best})")
                vals.append(accs[best])
            else:
                row.append("–")
                vals.append(math.nan)
        rows.append(row)
        values.append(vals)
    bold = set()
    for j in range(len(names)):
        bold |= {(i, j + 1) for i in _best_indices([v[j] for v in values])}
    return Table(title="Layer-wise probes (best layer, accuracy ×100; layer 0 = embeddings)",
                 header=["cell"] + names, rows=rows, bold=bold,
                 note="One probe run per cell and layer; see the per-layer curves below.")


def _fmt_cell_value(key: str, value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "–"
    if key == "parameters":
        return f"{value / 1e6:.2f}M" if value >= 1e5 else f"{int(value):,}"
    if key in ("steps",):
        return f"{int(value):,}"
    if key == "tokens_per_s":
        return f"{value:,.0f}"
    if "accuracy" in key:
        return f"{100 * value:.1f}"
    return f"{value:.3f}"


def timing_table(results: Results) -> Table:
    seen = {}
    for cell in results.cells:
        for entry in cell.stage_times:
            ident = (entry["stage"], entry["key"])
            if ident not in seen:
                seen[ident] = (entry, cell.label)
    rows = []
    totals: dict[str, float] = defaultdict(float)
    for (stage, key), (entry, label) in seen.items():
        params = " ".join(f"{k}={_format_value(v)}" for k, v in entry.get("params", {}).items())
        wall = entry.get("wall_s")
        if isinstance(wall, (int, float)):
            totals[stage] += wall
        rows.append([stage, label, params, key, entry["status"], f"{wall:.1f}" if isinstance(wall, (int, float)) else "–"])
    for stage, total in totals.items():
        rows.append([f"**{stage} total**", "", "", "", "", f"{total:.1f}"])
    return Table(title="Wall time per stage (seconds; shared stages listed once)",
                 header=["stage", "first cell", "params", "key", "status", "wall s"], rows=rows)


# --------------------------------------------------------------------------------------------- plots

def _figure():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    return plt, fig, ax


def _png(plt, fig) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def plots(results: Results) -> list[tuple[str, str, bytes]]:
    """(file name, caption, PNG bytes) for each plot the results support."""
    out = []
    for key in _numeric_axis_keys(results):
        png = _plot_score_vs(results, key)
        if png:
            out.append((f"score-vs-{key.replace('.', '-')}.png", f"Downstream score vs {key}", png))
    png = _plot_loss_curves(results)
    if png:
        out.append(("loss-curves.png", "Pretraining loss curves", png))
    png = _plot_params_vs_score(results)
    if png:
        out.append(("parameters-vs-score.png", "Parameters vs downstream score", png))
    for task in _unique(t for c in results.cells for t in c.probes):
        png = _plot_probe(results, task)
        if png:
            out.append((f"probe-{task}.png", f"Per-layer probe accuracy: {task}", png))
    return out


def _numeric_axis_keys(results: Results) -> list[str]:
    keys = _unique(k for c in results.cells for k in c.assignment)
    numeric = []
    for key in keys:
        values = [c.assignment[key] for c in results.cells if key in c.assignment]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) and len(set(values)) >= 3:
            numeric.append(key)
    return numeric


def _plot_score_vs(results: Results, key: str) -> bytes | None:
    """One line per (series, other axes' values, task, method): a cell shared by several series appears
    in each of them, so every series' line is complete."""
    series_axes = {s.get("name"): s.get("axes", []) for s in results.index.get("spec", {}).get("series", [])}
    lines = defaultdict(list)
    for name, axes in series_axes.items():
        if not any(key in axis.get("values", {}) for axis in axes):
            continue
        others = [a.get("name") for a in axes if key not in a.get("values", {})]
        for cell in results.cells:
            if name not in cell.series or key not in cell.assignment:
                continue
            for (task, method), seeds in cell.scores.items():
                mean, std = mean_std(list(seeds.values()))
                label = " · ".join([name] + [cell.labels.get(o, "") for o in others] + [task, method])
                lines[label].append((float(cell.assignment[key]), mean, std))
    lines = {k: sorted(v) for k, v in lines.items() if len(v) >= 2}
    if not lines:
        return None
    plt, fig, ax = _figure()
    for name, points in lines.items():
        xs, ys, es = zip(*points)
        ax.errorbar(xs, [100 * y for y in ys], yerr=[100 * e for e in es], marker="o", capsize=3, label=name)
    ax.set_xlabel(key)
    ax.set_ylabel("score ×100 (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(plt, fig)


def loss_curve(folder: Path, result: dict) -> dict[str, list[tuple[float, float]]]:
    """Training and validation loss against step from a pretraining run's metrics.jsonl."""
    path = folder / result.get("metrics_file", "run/metrics.jsonl")
    if not path.is_file():
        return {}
    curves: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for record in read_jsonl(path):
        step = record.get("step")
        if not isinstance(step, (int, float)):
            continue
        split = record.get("split") or record.get("kind") or ""
        for key, value in record.items():
            if "loss" in key and isinstance(value, (int, float)) and math.isfinite(value):
                name = f"{split} {key}".strip() if split and not key.startswith(split) else key
                curves[name].append((float(step), float(value)))
    return dict(curves)


def _plot_loss_curves(results: Results) -> bytes | None:
    curves = []
    for cell in results.cells:
        if cell.pretrain and cell.pretrain_dir is not None:
            for name, points in loss_curve(cell.pretrain_dir, cell.pretrain).items():
                if len(points) >= 2 and name in ("loss", "train loss", "train_loss", "val_loss", "validation loss",
                                                 "eval loss", "val loss", "eval_loss"):
                    curves.append((f"{cell.label}: {name}", points))
    if not curves:
        return None
    plt, fig, ax = _figure()
    for name, points in curves:
        xs, ys = zip(*points)
        ax.plot(xs, ys, label=name, marker="." if len(xs) < 20 else None)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(plt, fig)


def _plot_params_vs_score(results: Results) -> bytes | None:
    points = []
    for cell in results.cells:
        params = cell.pretrain.get("parameters")
        scores = list(cell_scores(cell).values())
        if isinstance(params, (int, float)) and scores:
            points.append((float(params), statistics.fmean(scores), cell.label))
    if len({p for p, _s, _l in points}) < 2:
        return None
    plt, fig, ax = _figure()
    for params, score, label in points:
        ax.scatter([params / 1e6], [100 * score])
        ax.annotate(label, (params / 1e6, 100 * score), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("parameters (millions)")
    ax.set_ylabel("mean downstream score ×100")
    ax.grid(alpha=0.3)
    return _png(plt, fig)


def _plot_probe(results: Results, task: str) -> bytes | None:
    lines = [(c.label, c.probes[task]) for c in results.cells if task in c.probes and c.probes[task]]
    if not lines:
        return None
    plt, fig, ax = _figure()
    for label, accs in lines:
        ax.plot(range(len(accs)), [100 * a for a in accs], marker="o", label=label)
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_ylabel("probe accuracy ×100")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(plt, fig)


# --------------------------------------------------------------------------------------------- writers

def write_report(out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write report.md (with PNGs in report_files/) and a self-contained report.html; return their paths."""
    results = collect(out_dir)
    out = results.out
    spec = results.index.get("spec", {})
    scale = results.index.get("scale")
    claims = [c for c in (from_dict(ClaimSpec, c) for c in spec.get("claims", []))
              if c.scales is None or scale in c.scales]
    verdicts = [evaluate_claim(results, c) for c in claims]
    tables = score_tables(results)
    for extra in (probe_table(results), pretrain_table(results)):
        if extra is not None:
            tables.append(extra)
    timing = timing_table(results)
    figures = plots(results)
    images = _inspection_images(results)
    for name, _caption, data in figures + images:
        write_bytes(out / FILES / name, data)
    md = _markdown(results, verdicts, tables, timing, figures, images)
    page = _html(results, verdicts, tables, timing, figures, images)
    write_text(out / "report.md", md)
    write_text(out / "report.html", page)
    return {"markdown": out / "report.md", "html": out / "report.html"}


def _inspection_images(results: Results) -> list[tuple[str, str, bytes]]:
    images = []
    for cell in results.cells:
        if cell.heads_dir is not None and cell.heads.get("png"):
            path = cell.heads_dir / cell.heads["png"]
            if path.is_file():
                images.append((f"heads-{cell.id}.png", f"Head map: {cell.label}", path.read_bytes()))
    return images


def _attention_links(results: Results) -> list[tuple[str, str]]:
    links = []
    for cell in results.cells:
        if cell.attention_dir is not None and cell.attention.get("html"):
            path = cell.attention_dir / cell.attention["html"]
            if path.is_file():
                links.append((cell.label, os.path.relpath(path, results.out)))
    return links


def _summary_lines(results: Results) -> list[str]:
    index = results.index
    failed = [c for c in results.cells if c.status == "failed"]
    if index.get("finished"):
        when = f"wall time of the last run {index.get('wall_s', 0):.0f} s"
    else:
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(index.get("started", 0)))
        when = f"started {started}, still running or stopped without a record; finished stages are shown"
    lines = [f"scale **{index.get('scale')}**, {len(results.cells)} cells, status {index.get('status')}, {when}"]
    if "stages_run" in index:
        lines.append(f"{index['stages_run']} stages run, {index.get('stages_reused', 0)} reused from earlier runs, "
                     f"{index.get('stages_failed', 0)} failed")
    if failed:
        lines.append(f"{len(failed)} failed cell(s): " + "; ".join(f"{c.label}: {c.error}" for c in failed))
    return lines


def _machine_lines(index: dict) -> list[str]:
    m = index.get("machine", {})
    return [f"CPU: {m.get('cpu', '?')} ({m.get('cores', '?')} cores)",
            f"torch {m.get('torch', '?')}, Python {m.get('python', '?')}, {m.get('platform', '?')}"
            + (f", GPU {m['gpu']}" if m.get("gpu") else "")]


def _md_table(table: Table) -> str:
    lines = [f"### {table.title}", "", "| " + " | ".join(table.header) + " |",
             "|" + "|".join("---" for _ in table.header) + "|"]
    for i, row in enumerate(table.rows):
        cells = [f"**{v}**" if (i, j) in table.bold and v else v.replace("|", "\\|") for j, v in enumerate(row)]
        lines.append("| " + " | ".join(cells) + " |")
    if table.note:
        lines += ["", table.note]
    return "\n".join(lines)


def _markdown(results, verdicts, tables, timing, figures, images) -> str:
    index = results.index
    info = index.get("spec", {}).get("experiment", {})
    parts = [f"# {info.get('name', 'experiment')}: report", ""]
    if info.get("description"):
        parts += [info["description"], ""]
    parts += [f"- {line}" for line in _summary_lines(results)] + [""]
    if info.get("paper") or info.get("findings") or verdicts:
        parts += ["## What the paper found, and what this run shows", ""]
        if info.get("paper"):
            parts += [f"Paper: {info['paper']}", ""]
        if info.get("findings"):
            parts += [info["findings"].strip(), ""]
        for v in verdicts:
            parts.append(f"- **{v.verdict}** — {v.claim.text}: {v.detail}")
        if verdicts:
            parts += ["", _verdict_note(index)]
        parts.append("")
    parts += ["## Results", ""]
    for table in tables:
        parts += [_md_table(table), ""]
    if figures:
        parts += ["## Plots", ""]
        for name, caption, _data in figures:
            parts += [f"![{caption}]({FILES}/{name})", ""]
    links = _attention_links(results)
    if images or links:
        parts += ["## Inside the models", ""]
        for name, caption, _data in images:
            parts += [f"![{caption}]({FILES}/{name})", ""]
        for label, rel in links:
            parts.append(f"- attention view ({label}): [{rel}]({rel})")
        parts.append("")
    parts += ["## Machine", ""] + [f"- {line}" for line in _machine_lines(index)] + [""]
    parts += [_md_table(timing), ""]
    parts += ["## Resolved configurations", ""]
    for cell in results.cells:
        parts += [f"<details><summary>{cell.label} ({cell.id})</summary>", "", "```toml",
                  dumps_toml(cell.config).strip(), "```", "", "</details>", ""]
    return "\n".join(parts) + "\n"


def _verdict_note(index: dict) -> str:
    return (f"Verdicts are computed from this run (scale {index.get('scale')}): *agrees* / *disagrees* need a "
            "paired t-test over seeds at p < 0.05 (single deterministic values such as parameter counts are "
            "compared directly); *inconclusive* means the difference is within seed noise. Tiny models "
            "trained for minutes often do not reproduce effects found at the paper's scale.")


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:14px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f3f3f3}td.best{font-weight:bold;background:#eef7ee}tr.failed td{color:#a00;background:#fff2f2}
.verdict{padding:2px 6px;border-radius:4px;font-weight:bold}.agrees{background:#dff0d8}.disagrees{background:#f2dede}
.inconclusive{background:#fcf8e3}.nodata{background:#eee}pre{background:#f7f7f7;padding:8px;overflow:auto;font-size:12px}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}figure{margin:1em 0}figcaption{font-size:13px;color:#555}
"""


def _html_table(table: Table) -> str:
    e = html.escape
    out = [f"<h3>{e(table.title)}</h3>", "<table>", "<tr>" + "".join(f"<th>{e(h)}</th>" for h in table.header) + "</tr>"]
    for i, row in enumerate(table.rows):
        failed = "failed" in row[0] and "✗" in row[0]
        cells = []
        for j, value in enumerate(row):
            text = e(value.replace("**", ""))
            if (i, j) in table.bold:
                cells.append(f'<td class="best"><b>{text}</b></td>')
            else:
                cells.append(f"<td>{text}</td>")
        out.append(f'<tr{" class=failed" if failed else ""}>' + "".join(cells) + "</tr>")
    out.append("</table>")
    if table.note:
        out.append(f"<p><small>{e(table.note)}</small></p>")
    return "\n".join(out)


def _html(results, verdicts, tables, timing, figures, images) -> str:
    e = html.escape
    index = results.index
    info = index.get("spec", {}).get("experiment", {})
    title = f"{info.get('name', 'experiment')}: report"
    body = [f"<h1>{e(title)}</h1>"]
    if info.get("description"):
        body.append(f"<p>{e(info['description'])}</p>")
    body.append("<ul>" + "".join(f"<li>{_inline_md(line)}</li>" for line in _summary_lines(results)) + "</ul>")
    if info.get("paper") or info.get("findings") or verdicts:
        body.append("<h2>What the paper found, and what this run shows</h2>")
        if info.get("paper"):
            body.append(f"<p>Paper: {e(info['paper'])}</p>")
        if info.get("findings"):
            body.append(f"<p>{e(info['findings'].strip())}</p>")
        if verdicts:
            body.append("<ul>")
            for v in verdicts:
                cls = v.verdict.replace(" ", "")
                body.append(f'<li><span class="verdict {cls}">{e(v.verdict)}</span> {e(v.claim.text)}: {e(v.detail)}</li>')
            body.append("</ul>")
            body.append(f"<p><small>{_inline_md(_verdict_note(index))}</small></p>")
    body.append("<h2>Results</h2>")
    body += [_html_table(t) for t in tables]
    if figures:
        body.append("<h2>Plots</h2>")
        body += [_html_figure(caption, data) for _name, caption, data in figures]
    links = _attention_links(results)
    if images or links:
        body.append("<h2>Inside the models</h2>")
        body += [_html_figure(caption, data) for _name, caption, data in images]
        if links:
            body.append("<p>Attention views (separate self-contained pages in this folder): "
                        + ", ".join(f"<code>{e(rel)}</code> ({e(label)})" for label, rel in links) + "</p>")
    body.append("<h2>Machine</h2><ul>" + "".join(f"<li>{e(line)}</li>" for line in _machine_lines(index)) + "</ul>")
    body.append(_html_table(timing))
    body.append("<h2>Resolved configurations</h2>")
    for cell in results.cells:
        body.append(f"<details><summary>{e(cell.label)} ({e(cell.id)})</summary><pre>{e(dumps_toml(cell.config))}</pre></details>")
    body.append(f"<p><small>Generated by maskbench on {time.strftime('%Y-%m-%d %H:%M:%S %Z')}.</small></p>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{e(title)}</title><style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _inline_md(text: str) -> str:
    """Escape, then turn **bold** and *italic* of our own summary lines into tags."""
    import re

    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    return re.sub(r"\*(.+?)\*", r"<i>\1</i>", text)


def _html_figure(caption: str, data: bytes) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{encoded}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def terminal_table(out_dir: str | os.PathLike, task: str | None = None) -> str:
    """A short plain-text table of mean ± std per cell and method (what the demo prints at the end)."""
    results = collect(out_dir)
    lines = []
    for table in score_tables(results):
        if task is not None and not table.title.startswith(task):
            continue
        widths = [max(len(h), *(len(r[j]) for r in table.rows)) if table.rows else len(h)
                  for j, h in enumerate(table.header)]
        lines.append(table.title)
        lines.append("  ".join(h.ljust(w) for h, w in zip(table.header, widths)))
        for i, row in enumerate(table.rows):
            lines.append("  ".join((f"{v}*" if (i, j) in table.bold else v).ljust(w + 1)
                                   for j, (v, w) in enumerate(zip(row, widths))).rstrip())
        lines.append("(* best of its column)")
        lines.append("")
    return "\n".join(lines).rstrip()
