"""The report's tables (scores per task, pretraining, probes, wall time) and the terminal table the demo
prints. A table is data (`Table`); Markdown and HTML render it."""

from __future__ import annotations

import math
import os
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from ..spec import format_value
from .collect import CellResult, Results, collect, unique
from .stats import fmt_mean_std, mean_std, near_chance

CHANCE_MARK = "†"

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
        shown_cells = [c for c in results.cells if any((task, m) in c.scores for m in methods) or c.status != "done"]
        # only the axes of the series these cells come from (the demo's ALBERT and T5 cells have no scores)
        shown_axes = [a for a in axes if any(a in c.labels for c in shown_cells)]
        header = (shown_axes or ["cell"]) + methods
        rows, means = [], []
        chance = results.baselines.get(task, {}).get("majority")
        flagged = False
        for cell in shown_cells:
            row = _row_labels(cell, shown_axes)
            row_means = []
            for method in methods:
                seeds = cell.scores.get((task, method), {})
                values = [seeds[s] for s in sorted(seeds)]
                text = fmt_mean_std(values) if values else ("failed" if cell.status == "failed" else "–")
                if near_chance(values, chance):
                    text, flagged = text + " " + CHANCE_MARK, True
                row.append(text)
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
        note = "Best of each column in bold." if len(rows) > 1 else "Best method in bold."
        for kind, name in (("majority", "majority class"), ("bag_of_words", "bag of words")):
            value = results.baselines.get(task, {}).get(kind)
            if value is not None:
                rows.append([f"({name})"] + [""] * (offset - 1) + [f"{value * 100:.1f}"] * len(methods))
        if results.baselines.get(task):
            note += (" Baselines on the same dev split: the training split's majority class, and a bag of words "
                     "(unigram + bigram counts, logistic regression; scikit-learn).")
        if flagged:
            note += (f" {CHANCE_MARK} within seed noise of the majority class (one-sided t-test over seeds, "
                     "p ≥ 0.05): no evidence the model learnt the task.")
        metric = next((c.metric_names[task] for c in results.cells if task in c.metric_names), "score")
        seeds = unique(s for c in results.cells for (t, _m), ss in c.scores.items() if t == task for s in ss)
        tables.append(Table(title=f"{task} ({metric}, ×100, mean ± std over {len(seeds)} seeds)", header=header,
                            rows=rows, bold=bold, note=note))
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
                    ("val_sentence_accuracy", "NSP/SOP acc", "high"),
                    ("val_nsp_pairs_accuracy", "acc on NSP pairs", "high"),
                    ("val_sop_pairs_accuracy", "acc on SOP pairs", "high"), ("train_loss", "train loss", None),
                    ("loss_gap", "val − train loss", "low"), ("data_tokens", "data tokens", None),
                    ("repetitions", "repetitions", None), ("targets_per_example", "targets / example", None),
                    ("seconds_per_step", "s / step", None), ("tokens_per_s", "tokens/s", None))


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
    names = unique(n for c in cells for n in c.probes)
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
        params = " ".join(f"{k}={format_value(v)}" for k, v in entry.get("params", {}).items())
        wall = entry.get("wall_s")
        if isinstance(wall, (int, float)):
            totals[stage] += wall
        rows.append([stage, label, params, key, entry["status"], f"{wall:.1f}" if isinstance(wall, (int, float)) else "–"])
    for stage, total in totals.items():
        rows.append([f"**{stage} total**", "", "", "", "", f"{total:.1f}"])
    return Table(title="Wall time per stage (seconds; shared stages listed once)",
                 header=["stage", "first cell", "params", "key", "status", "wall s"], rows=rows)


def plain_table(table: Table) -> list[str]:
    """A table as aligned plain-text lines (best values starred), for the terminal."""
    widths = [max(len(h), *(len(r[j]) for r in table.rows)) if table.rows else len(h)
              for j, h in enumerate(table.header)]
    lines = [table.title, "  ".join(h.ljust(w) for h, w in zip(table.header, widths))]
    for i, row in enumerate(table.rows):
        lines.append("  ".join((f"{v}*" if (i, j) in table.bold else v).ljust(w + 1)
                               for j, (v, w) in enumerate(zip(row, widths))).rstrip())
    return lines


def terminal_table(out_dir: str | os.PathLike, task: str | None = None) -> str:
    """A short plain-text table of mean ± std per cell and method (what the demo prints at the end)."""
    results = collect(out_dir)
    lines = []
    for table in score_tables(results):
        if task is not None and not table.title.startswith(task):
            continue
        lines += plain_table(table)
        lines.append("(* best of its column" + (f"; {CHANCE_MARK} within seed noise of chance" if CHANCE_MARK in
                                                  " ".join(v for r in table.rows for v in r) else "") + ")")
        lines.append("")
    return "\n".join(lines).rstrip()
