"""Reading an experiment folder into per-cell results: scores per (task, method, seed), pretraining
summaries and curves, probes, inspection outputs, stage times. Everything a report shows comes from here."""

from __future__ import annotations

import math
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...io import read_json, read_jsonl
from ..cells import StageStore, load_index

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
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)  # task -> majority / bag_of_words score

    @property
    def tasks(self) -> list[str]:
        return unique(t for c in self.cells for (t, _m) in c.scores)

    @property
    def methods(self) -> list[str]:
        return unique(m for c in self.cells for (_t, m) in c.scores)


def unique(items) -> list:
    """`items` without repeats, in first-seen order."""
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
    baselines: dict[str, dict[str, float]] = {}
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
                for kind, scores in (result.get("baselines") or {}).items():
                    if isinstance(scores, dict) and isinstance(scores.get("score"), (int, float)):
                        baselines.setdefault(task, {}).setdefault(kind, float(scores["score"]))
                for name, score in (result.get("transfer_scores") or {}).items():  # Child-Tuning's transfer tests
                    cell.scores.setdefault((name, method), {})[int(result.get("seed", 0))] = float(score)
                    cell.metric_names[name] = "score"
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
    return Results(out=out, index=index, cells=cells, baselines=baselines)


def cell_scores(cell: CellResult, task: str | None = None, method: str | None = None) -> dict[tuple, float]:
    """(task, method, seed) -> score of one cell, optionally restricted to a task or method."""
    out = {}
    for (t, m), seeds in cell.scores.items():
        if (task is None or t == task) and (method is None or m == method):
            for seed, score in seeds.items():
                out[(t, m, seed)] = score
    return out


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
