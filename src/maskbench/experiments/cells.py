"""Resumable cells: stage folders keyed by the configuration they depend on, finished once, shared by all.

An experiment folder looks like this:

    OUT/experiment.json            the index: spec, scale, cells in order, machine, timings
    OUT/spec.toml                  the spec as run
    OUT/cells/<cell hash>/         one per resolved configuration: config.toml, cell.json (status, stages)
    OUT/stages/<stage>/<key>/      one per distinct stage input: the stage's files and, last, done.json

A stage's key is the hash of exactly what it depends on: its config sections, its parameters (task,
method, seed) and its parents' keys. So two cells that differ only in the fine-tuning method share one
pretraining folder, and all cells of a study share one prepared corpus. `done.json` is written atomically
after everything else; a folder without it is unfinished, whatever else it holds, and is run again
(stages that can resume, like pretraining, pick up their own checkpoints there).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..config import config_hash
from ..errors import MaskbenchError
from ..io import read_json, write_json
from .spec import Cell

INDEX = "experiment.json"  # the experiment folder's index: spec, cells, status

DONE = "done.json"
FAILED = "failed.json"


@dataclass
class StageContext:
    """What a stage function gets: its folder, the cell's config, its parameters and its parents' folders."""

    name: str
    key: str
    out: Path
    config: dict
    params: dict
    parents: dict[str, Path]
    parent_results: dict[str, dict]
    resume: bool = False


@dataclass(frozen=True)
class StageDef:
    """How to run one kind of stage and what its key depends on.

    `sections`: the config sections the stage reads (the key hashes only those). `parents`: the stages
    it needs first (one instance each per cell). `instances(config)` lists the parameter sets to run per
    cell (fine-tuning: one per task × method × seed); an empty list means the stage is off for that cell.
    `key_config(config)` may narrow what counts (a not-pretrained baseline ignores the objective).
    `resumable`: a partial folder is kept and `ctx.resume` is set, instead of being cleared.
    """

    name: str
    fn: Callable[[StageContext], dict]
    sections: tuple[str, ...] = ()
    parents: tuple[str, ...] = ()
    instances: Callable[[dict], list[dict]] | None = None
    key_config: Callable[[dict], dict] | None = None
    resumable: bool = False

    def params_for(self, config: dict) -> list[dict]:
        return self.instances(config) if self.instances is not None else [{}]

    def config_for_key(self, config: dict) -> dict:
        if self.key_config is not None:
            return self.key_config(config)
        return {s: config.get(s, {}) for s in self.sections}


@dataclass
class StageRun:
    """One stage instance: a node of the experiment's graph, shared by every cell that needs it."""

    stage: str
    key: str
    params: dict
    parents: dict[str, str]  # parent stage name -> key
    config: dict  # the full config of the first cell that asked for it (all such cells agree on key_config)
    cells: list[str] = field(default_factory=list)

    @property
    def id(self) -> tuple[str, str]:
        return (self.stage, self.key)


class StageStore:
    """The `stages/` folder: where each stage instance lives and whether it finished."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, stage: str, key: str) -> Path:
        return self.root / "stages" / stage / key

    def is_done(self, stage: str, key: str) -> bool:
        return (self.path(stage, key) / DONE).is_file()

    def record(self, stage: str, key: str) -> dict | None:
        """The done marker (result, timings) or the failure record, or None if never finished."""
        folder = self.path(stage, key)
        for name in (DONE, FAILED):
            if (folder / name).is_file():
                try:
                    return read_json(folder / name)
                except Exception:  # a torn marker counts as not finished
                    return None
        return None

    def result(self, stage: str, key: str) -> dict:
        rec = self.record(stage, key)
        return rec.get("result", {}) if rec and rec.get("status") == "done" else {}

    @contextlib.contextmanager
    def lock(self, stage: str, key: str):
        """An exclusive lock per stage instance, so two runners on one folder never do the same work."""
        lock_path = self.root / "stages" / stage / f".{key}.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def plan(cells: list[Cell], stages: dict[str, StageDef]) -> tuple[list[StageRun], dict[str, list[tuple[str, str]]]]:
    """The distinct stage instances of all cells, parents first, and each cell's list of instances."""
    order = _topological(stages)
    runs: dict[tuple[str, str], StageRun] = {}
    per_cell: dict[str, list[tuple[str, str]]] = {}
    for cell in cells:
        keys: dict[str, str] = {}
        mine: list[tuple[str, str]] = []
        for name in order:
            stage = stages[name]
            if any(p not in keys for p in stage.parents):
                continue  # a parent is off for this cell, so this stage is too
            params_list = stage.params_for(cell.config)
            parents = {p: keys[p] for p in stage.parents}
            for params in params_list:
                key = config_hash({"stage": name, "config": stage.config_for_key(cell.config),
                                   "params": params, "parents": parents})
                run = runs.get((name, key))
                if run is None:
                    run = runs[(name, key)] = StageRun(stage=name, key=key, params=params, parents=parents,
                                                       config=cell.config)
                if cell.id not in run.cells:
                    run.cells.append(cell.id)
                mine.append((name, key))
            if len(params_list) == 1:
                keys[name] = mine[-1][1]  # only single-instance stages can be parents
        per_cell[cell.id] = mine
    ordered = sorted(runs.values(), key=lambda r: order.index(r.stage))
    return ordered, per_cell


def _topological(stages: dict[str, StageDef]) -> list[str]:
    done: list[str] = []
    pending = dict(stages)
    while pending:
        ready = [n for n, s in pending.items() if all(p in done for p in s.parents)]
        if not ready:
            missing = {n: [p for p in s.parents if p not in stages] for n, s in pending.items()}
            raise ValueError(f"stage graph has a cycle or unknown parents: {missing}")
        for name in ready:
            done.append(name)
            del pending[name]
    return done


def execute(run: StageRun, fn: Callable[[StageContext], dict], resumable: bool, key_config: dict,
            store_root: str | os.PathLike) -> dict:
    """Run one stage instance unless it is finished; returns its record (status done or failed).

    The done marker is written last and atomically: a crash anywhere before leaves no marker, and
    the next run does the stage again (resuming where the stage supports it). Takes plain values, not
    the StageDef, so a worker process can be handed it.
    """
    store = StageStore(store_root)
    with store.lock(run.stage, run.key):
        rec = store.record(run.stage, run.key)
        if rec is not None and rec.get("status") == "done":
            return {**rec, "skipped": True}
        folder = store.path(run.stage, run.key)
        (folder / FAILED).unlink(missing_ok=True)
        partial = folder.exists() and any(folder.iterdir())
        if partial and not resumable:
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        parents = {p: store.path(p, k) for p, k in run.parents.items()}
        ctx = StageContext(name=run.stage, key=run.key, out=folder, config=run.config, params=dict(run.params),
                           parents=parents, parent_results={p: store.result(p, k) for p, k in run.parents.items()},
                           resume=partial and resumable)
        started = time.time()
        base = {"stage": run.stage, "key": run.key, "params": run.params, "parents": run.parents,
                "config": key_config, "started": started}
        try:
            result = fn(ctx) or {}
        except Exception as e:  # recorded, and the experiment goes on with the other cells
            rec = {**base, "status": "failed", "error": _one_line(e), "traceback": traceback.format_exc(),
                   "wall_s": time.time() - started}
            write_json(folder / FAILED, rec)
            return rec
        rec = {**base, "status": "done", "result": result, "wall_s": time.time() - started,
               "resumed": ctx.resume}
        write_json(folder / DONE, rec)
        return rec


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    message = text[0] if text else ""
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def cell_record(cell: Cell, instances: list[tuple[str, str]], records: dict[tuple[str, str], dict]) -> dict:
    """A cell's status from its stage instances: done, failed (first error) or incomplete."""
    stages = []
    error = None
    status = "done"
    for name, key in instances:
        rec = records.get((name, key)) or {}
        state = rec.get("status", "pending")
        entry: dict[str, Any] = {"stage": name, "key": key, "params": rec.get("params", {}), "status": state,
                                 "wall_s": rec.get("wall_s")}
        if state == "failed":
            entry["error"] = rec.get("error")
            if error is None:
                error = f"{name}: {rec.get('error')}"
            status = "failed"
        elif state != "done" and status == "done":
            status = "incomplete"
        stages.append(entry)
    return {"id": cell.id, "label": cell.label, "labels": cell.labels, "assignment": cell.assignment,
            "series": cell.series, "status": status, "error": error, "stages": stages, "config": cell.config}


def load_index(out_dir: str | os.PathLike) -> dict:
    """The experiment index (`experiment.json`) of an experiment folder."""
    path = Path(out_dir) / INDEX
    if not path.is_file():
        raise MaskbenchError(f"{out_dir} is not an experiment folder (no {INDEX}); run `maskbench experiment run` first")
    return read_json(path)
