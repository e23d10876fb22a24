"""Run an experiment: resolve the cells, plan the distinct stages, run what is not finished, report.

Stages run in-process, parents first. With `jobs > 1`, independent stage instances (the pretrainings of
different cells, the seeds of a fine-tuning) run in separate worker processes, each given its share of
the cores, and a stage starts as soon as its own parents are done. A failed stage is recorded with its
error; the stages that need it are marked failed with the cause, and everything else goes on.
"""

from __future__ import annotations

import concurrent.futures as futures
import importlib
import os
import platform
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..config import dumps_toml
from ..errors import MaskbenchError
from ..io import claim_out_dir, mark_dir, read_json, run_lock, write_json, write_text
from ..pool import worker_pool
from .cells import INDEX, StageDef, StageRun, StageStore, cell_record, execute, plan
from .report import write_report
from .spec import Cell, ExperimentSpec, load_spec
from .stages import STAGES, validate_config

EXPERIMENT_KIND = "experiment"


def claim_experiment_dir(out: Path, name: str, scale: str) -> None:
    """An experiment folder may be re-entered by the same experiment at the same scale (that resumes it);
    any other non-empty folder is refused, so its spec, index and report are never replaced."""
    if (out / INDEX).is_file():
        old = read_json(out / INDEX)
        if not isinstance(old, dict) or (old.get("name"), old.get("scale")) != (name, scale):
            found = f"experiment '{old.get('name')}' at scale {old.get('scale')}" if isinstance(old, dict) else INDEX
            raise MaskbenchError(f"--out {out} holds {found}, not '{name}' at scale {scale}; choose another --out")
        return
    claim_out_dir(out, EXPERIMENT_KIND)


def machine_info() -> dict:
    """The machine a result was measured on: CPU model, cores, torch and Python versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info: dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
                            "platform": platform.platform()}
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:  # pragma: no cover
        pass
    return info


def resolve_stages(stages: dict[str, StageDef] | str | None) -> dict[str, StageDef]:
    """The stage registry: a dict, a `module:attribute` reference, or None for maskbench's real stages."""
    if stages is None:
        return STAGES
    if isinstance(stages, str):
        module, _, attr = stages.partition(":")
        return getattr(importlib.import_module(module), attr or "STAGES")
    return stages


def run_experiment(spec: ExperimentSpec | str | Path | dict, out_dir: str | os.PathLike, scale: str = "tiny",
                   jobs: int = 1, stages: dict[str, StageDef] | str | None = None, progress: bool = True,
                   report: bool = True, validate: bool = True) -> dict:
    """Run (or resume) every cell of `spec` at `scale` under `out_dir`; returns the experiment index.

    Finished stages are skipped, unfinished ones re-run (pretraining resumes from its checkpoints),
    failed cells are recorded with their error. `stages` overrides the registry of stage functions
    (tests inject small ones; a `module:attr` string lets worker processes import them).
    """
    if not isinstance(spec, ExperimentSpec):
        spec = load_spec(spec)
    registry = resolve_stages(stages)
    validator = None
    if validate and stages is None:
        validator = validate_config
    cells = spec.resolve(scale, validate=validator)
    out = Path(out_dir)
    claim_experiment_dir(out, spec.experiment.name, scale)
    with run_lock(out):
        claim_experiment_dir(out, spec.experiment.name, scale)  # again, now that no other process can write
        mark_dir(out, EXPERIMENT_KIND)
        return _run_cells(spec, cells, out, scale, jobs, stages, registry, progress, report)


def _run_cells(spec: ExperimentSpec, cells: list[Cell], out: Path, scale: str, jobs: int, stages, registry,
               progress: bool, report: bool) -> dict:
    store = StageStore(out)
    runs, per_cell = plan(cells, registry)
    started = time.time()
    index = _index(spec, scale, cells, jobs, started, status="running")
    write_json(out / INDEX, index)
    write_text(out / "spec.toml", dumps_toml(spec.to_dict()))
    for cell in cells:
        _write_cell(out, cell, per_cell[cell.id], {})

    labels = {c.id: c.label for c in cells}
    records: dict[tuple[str, str], dict] = {}
    say = print_line if progress else (lambda text: None)
    bar = tqdm(total=len(runs), desc=f"experiment {spec.experiment.name}", unit="stage", disable=not progress,
               dynamic_ncols=True, position=0)

    def finished(run: StageRun, rec: dict) -> None:
        records[run.id] = rec
        what = _describe(run, labels)
        if rec.get("skipped"):
            bar.set_postfix_str(f"reused {run.stage}", refresh=False)
        elif rec["status"] == "done":
            say(f"done  {what} in {rec.get('wall_s', 0):.1f}s")
        else:
            say(f"FAILED {what}: {rec.get('error')}")
        bar.update(1)

    def blocked(run: StageRun) -> dict | None:
        for parent, key in run.parents.items():
            rec = records.get((parent, key))
            if rec is not None and rec["status"] != "done":
                return {"stage": run.stage, "key": run.key, "params": run.params, "status": "failed",
                        "error": f"not run: {parent} failed ({rec.get('error')})", "wall_s": 0.0}
        return None

    restore_sigterm = _sigterm_as_interrupt()
    quiet_before = os.environ.get("MASKBENCH_PROGRESS")
    if not progress:  # the stages' own bars (pretraining, fine-tuning) follow the experiment's setting
        os.environ["MASKBENCH_PROGRESS"] = "0"
    try:
        if jobs <= 1:
            for run in runs:
                rec = blocked(run)
                if rec is None:
                    stage = registry[run.stage]
                    if not store.is_done(run.stage, run.key):
                        say(f"start {_describe(run, labels)}")
                    rec = execute(run, stage.fn, stage.resumable, stage.config_for_key(run.config), out)
                finished(run, rec)
        else:
            _run_parallel(runs, registry, out, jobs, stages, finished, blocked, labels, say)
    finally:
        restore_sigterm()
        if quiet_before is None:
            os.environ.pop("MASKBENCH_PROGRESS", None)
        else:
            os.environ["MASKBENCH_PROGRESS"] = quiet_before
        bar.close()
        for cell in cells:
            _write_cell(out, cell, per_cell[cell.id], records)
        index = _index(spec, scale, cells, jobs, started, status="finished" if len(records) == len(runs)
                       else "interrupted", records=records, per_cell=per_cell)
        write_json(out / INDEX, index)
    if report:
        paths = write_report(out)
        index["report"] = {k: str(v) for k, v in paths.items()}
    return index


def _sigterm_as_interrupt():
    """Treat SIGTERM (a job scheduler, `kill`) like Ctrl-C, so the index records the interruption; returns
    the function that puts the previous handler back."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    return lambda: signal.signal(signal.SIGTERM, previous)


def _run_parallel(runs, registry, out, jobs, stages_ref, finished, blocked, labels, say) -> None:
    """Dependency-driven scheduling over a pool of spawned workers (torch and fork do not mix)."""
    if isinstance(stages_ref, dict):
        stages_ref = _reference_of(stages_ref)
    remaining = list(runs)
    running: dict[futures.Future, StageRun] = {}
    done_ids: set[tuple[str, str]] = set()
    with worker_pool(jobs) as pool:
        try:
            while remaining or running:
                ready = [r for r in remaining if all((p, k) in done_ids for p, k in r.parents.items())]
                for run in ready:
                    remaining.remove(run)
                    rec = blocked(run)
                    if rec is not None:
                        finished(run, rec)
                        done_ids.add(run.id)
                        continue
                    stage = registry[run.stage]
                    say(f"start {_describe(run, labels)}")
                    future = pool.submit(_worker, stages_ref, run, stage.config_for_key(run.config), str(out))
                    running[future] = run
                if not running:
                    if remaining:  # pragma: no cover - parents missing from the plan
                        raise RuntimeError("experiment plan has stages whose parents never run")
                    break
                done, _ = futures.wait(list(running), return_when=futures.FIRST_COMPLETED)
                for future in done:
                    run = running.pop(future)
                    try:
                        rec = future.result()
                    except Exception as e:  # a worker that died (out of memory, killed)
                        rec = {"stage": run.stage, "key": run.key, "params": run.params, "status": "failed",
                               "error": f"worker process failed: {type(e).__name__}: {e}", "wall_s": 0.0}
                    finished(run, rec)
                    done_ids.add(run.id)
        except BaseException:
            for future in running:
                future.cancel()
            raise


def print_line(text: str) -> None:
    """A log line that does not break the progress bars (tqdm.write goes to stderr above them)."""
    tqdm.write(text, file=sys.stderr)


def _reference_of(registry: dict[str, StageDef]) -> str:
    """`module:attr` of a registry dict, so spawned workers can import it."""
    for name, module in list(sys.modules.items()):
        for attr, value in list(vars(module).items()) if module else []:
            if value is registry:
                return f"{name}:{attr}"
    raise ValueError("with jobs > 1 the stage registry must be a module-level dict (or a 'module:attr' string)")


def _worker(stages_ref: str | None, run: StageRun, key_config: dict, out: str) -> dict:
    """One stage in a worker of `worker_pool` (threads and allocator already set)."""
    stage = resolve_stages(stages_ref)[run.stage]
    return execute(run, stage.fn, stage.resumable, key_config, out)


def _describe(run: StageRun, labels: dict[str, str]) -> str:
    where = labels.get(run.cells[0], "") if run.cells else ""
    more = f" +{len(run.cells) - 1} cells" if len(run.cells) > 1 else ""
    params = " ".join(f"{k}={v}" for k, v in run.params.items())
    return f"{run.stage} [{where}{more}]{(' ' + params) if params else ''} ({run.key})"


def _write_cell(out: Path, cell: Cell, instances, records) -> None:
    folder = out / "cells" / cell.id
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "config.toml").exists():
        write_text(folder / "config.toml", dumps_toml(cell.config))
    stored = StageStore(out)
    merged = dict(records)
    for name, key in instances:  # stages finished by an earlier run
        if (name, key) not in merged:
            rec = stored.record(name, key)
            if rec is not None:
                merged[(name, key)] = rec
    write_json(folder / "cell.json", cell_record(cell, instances, merged))


def _index(spec: ExperimentSpec, scale: str, cells: list[Cell], jobs: int, started: float, status: str,
           records: dict | None = None, per_cell: dict | None = None) -> dict:
    index = {"name": spec.experiment.name, "study": spec.experiment.study, "scale": scale, "jobs": jobs,
             "status": status, "started": started, "finished": time.time() if status != "running" else None,
             "wall_s": time.time() - started, "machine": machine_info(), "spec": spec.to_dict(),
             "cells": [c.id for c in cells], "axes": spec.axis_names()}
    if records is not None:
        index["stages_run"] = sum(1 for r in records.values() if r.get("status") == "done" and not r.get("skipped"))
        index["stages_reused"] = sum(1 for r in records.values() if r.get("skipped"))
        index["stages_failed"] = sum(1 for r in records.values() if r.get("status") == "failed")
        index["failed_cells"] = [cid for cid, inst in (per_cell or {}).items()
                                 if any(records.get(i, {}).get("status") == "failed" for i in inst)]
        labels = {c.id: c.label for c in cells}
        index["failures"] = {}
        for cid in index["failed_cells"]:
            first = next(records[i] for i in per_cell[cid] if records.get(i, {}).get("status") == "failed")
            reason = str(first.get("error") or "failed").splitlines()[0]
            index["failures"][cid] = f"{labels.get(cid, cid)}: {first.get('stage')} {reason}"
    return index


def print_failures(index: dict) -> None:
    """One line per failed cell with its reason (the first failed stage's error)."""
    for line in (index.get("failures") or {}).values():
        print(f"  failed: {line}", file=sys.stderr)
