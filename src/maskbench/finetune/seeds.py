"""Many runs of one comparison: methods × seeds, one after another or in parallel processes, then the summary.

Layout of `out_dir`:
    METHOD/seed-N/metrics.jsonl, best.json, TASK.tsv (per run, each folder written atomically)
    summary.json, summary.md, config.toml (written last)
A folder already holding runs of the *same* comparison (same fingerprint: every setting except methods,
seeds, jobs and progress) is resumed: finished runs are kept and reused, and the summary covers every
method found there, so `--method child_d` after `--method vanilla` into one folder compares the two.
A folder holding a different comparison is refused rather than mixed.

The tokenized task, the encoder weights and the Fisher information are computed once per process and
shared by every run; Child-Tuning-D's Fisher is computed once per (checkpoint, task, Fisher settings),
which is faithful because it is a property of the pre-trained model and the task data, not of the
fine-tuning seed (see `loop.fisher_scores`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
from collections import OrderedDict
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import load_file

from ..config import config_hash, dumps_toml, from_dict, to_dict
from ..errors import MaskbenchError
from ..io import claim_out_dir, mark_dir, marked_kind, run_lock, save_safetensors, write_json, write_text
from ..pool import worker_pool
from ..runtime import tune_allocator
from .baselines import task_baselines
from .config import FinetuneConfig, defaults_note
from .loop import (FinetuneDiverged, Prepared, fisher_scores, is_text_to_text, model_width, prepare, resolve_for_model,
                   train_seed)
from .squad_task import is_squad, prepare_squad
from .summary import summarize, to_markdown
from .transfer import Targets, prepare_targets, run_transfer

_VOLATILE = ("methods", "seeds", "jobs", "progress")
FINETUNE_KIND = "fine-tuning run"
_PREPARED: "OrderedDict[str, Prepared]" = OrderedDict()
_CACHE_SIZE = 4


def fingerprint(cfg: FinetuneConfig) -> str:
    """A hash of every setting that changes a run's result (all but methods, seeds, jobs, progress)."""
    return config_hash({k: v for k, v in to_dict(cfg).items() if k not in _VOLATILE}, length=16)


def _data_key(cfg: FinetuneConfig) -> str:
    def stamp(path: str | None) -> float | None:
        try:
            return os.stat(path).st_mtime if path else None
        except OSError:
            return None

    fields = {k: getattr(cfg, k) for k in ("task", "data", "checkpoint", "tokenizer", "max_length",
                                           "max_train_examples", "head", "squad", "scoring", "mixture")}
    fields["stamps"] = [stamp(cfg.checkpoint), stamp(cfg.tokenizer), stamp(cfg.data), stamp(cfg.task)]
    return json.dumps(fields, sort_keys=True, default=str)


def prepared(cfg: FinetuneConfig) -> Prepared:
    """`prepare(cfg)`, cached in this process (repeated calls on the same task and checkpoint are cheap)."""
    key = _data_key(cfg)
    if key in _PREPARED:
        _PREPARED.move_to_end(key)
        prep = _PREPARED[key]
        return dataclasses.replace(prep, **resolve_for_model(cfg, prep.model_config))
    prep = prepare_squad(cfg) if is_squad(cfg.task) else prepare(cfg)
    prep = dataclasses.replace(prep, **resolve_for_model(cfg, prep.model_config))
    _PREPARED[key] = prep
    while len(_PREPARED) > _CACHE_SIZE:
        _PREPARED.popitem(last=False)
    return prep


def _defaults_note(cfg: FinetuneConfig, prep: Prepared) -> str:
    return defaults_note(cfg, model_width(prep.model_config), is_text_to_text(prep.model_config))


def _run_dir(out_dir: Path, method: str, seed: int) -> Path:
    return out_dir / method / f"seed-{seed}"


def _existing(out_dir: Path, fp: str) -> dict[str, dict[int, dict]]:
    """Finished runs in `out_dir`; a run of another comparison is an error."""
    found: dict[str, dict[int, dict]] = {}
    if not out_dir.is_dir():
        return found
    for best in sorted(out_dir.glob("*/seed-*/best.json")):
        try:
            result = json.loads(best.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if result.get("fingerprint") != fp:
            raise MaskbenchError(f"{out_dir} already holds a different fine-tuning run ({best.parent} has other "
                                 "settings); choose another --out folder")
        found.setdefault(result["method"], {})[int(result["seed"])] = result
    if (out_dir / "summary.json").is_file() and not found:
        raise MaskbenchError(f"{out_dir} holds a summary but no runs of this comparison; choose another --out folder")
    return found


def run_one(prep: Prepared, cfg: FinetuneConfig, method: str, seed: int, run_dir: Path, fisher, fp: str,
            extra=None) -> dict:
    """One (method, seed): its `best.json`, or, when training diverged, {"method", "seed", "failed": reason}
    (stated on one line; nothing is written for it, so a rerun tries it again)."""
    try:
        return train_seed(prep, cfg, method, seed, run_dir, fisher=fisher, fingerprint=fp, extra=extra)
    except FinetuneDiverged as e:
        print(f"maskbench: {method} seed {seed} failed: {e}", file=sys.stderr, flush=True)
        return {"method": method, "seed": seed, "failed": str(e)}


def _worker(cfg_dict: dict, method: str, seed: int, run_dir: str, fp: str, fisher_path: str | None) -> dict:
    """One run in a worker of `worker_pool` (its share of the cores), the shared Fisher read from disk."""
    cfg = from_dict(FinetuneConfig, cfg_dict)
    prep = prepared(cfg)
    fisher = _load_fisher(fisher_path) if fisher_path else None
    return run_one(prep, cfg, method, seed, Path(run_dir), fisher, fp,
                   extra=_transfer_tests(cfg, prep, prepare_targets(cfg, prep, prepared), seed))


def _transfer_tests(cfg: FinetuneConfig, prep: Prepared, targets: Targets, seed: int):
    """The transfer tests as `train_seed`'s `extra` (None when the config asks for none)."""
    if not targets:
        return None
    return lambda model: run_transfer(model, prep, targets, cfg, seed)


def _save_fisher(path: Path, fisher: tuple[dict, dict]) -> None:
    scores, info = fisher
    save_safetensors({k: v.contiguous() for k, v in scores.items()}, path, metadata={"info": json.dumps(info)})


def _load_fisher(path: str) -> tuple[dict, dict]:
    with safe_open(path, framework="pt") as f:
        info = json.loads(f.metadata()["info"])
    return load_file(path), info


def finetune(config: FinetuneConfig | dict, out_dir: str | os.PathLike, methods: list[str] | None = None) -> dict:
    """Fine-tune every (method, seed) of `config` into `out_dir` and return the summary over seeds.

    `methods` overrides `config.methods` (handy when calling this many times). Every input is checked
    before anything is written; each run's folder appears whole or not at all; the summary comes last.
    """
    tune_allocator()
    cfg = from_dict(FinetuneConfig, config) if isinstance(config, dict) else config
    if methods is not None:
        cfg = dataclasses.replace(cfg, methods=list(methods))
    out_dir = Path(out_dir)
    prep = prepared(cfg)
    targets = prepare_targets(cfg, prep, prepared)
    fp = fingerprint(cfg)
    holds_runs = (out_dir / "summary.json").is_file() or any(out_dir.glob("*/seed-*/best.json"))
    if marked_kind(out_dir) != FINETUNE_KIND and not holds_runs:
        claim_out_dir(out_dir, FINETUNE_KIND)  # never write into a folder holding something else
    with run_lock(out_dir):
        mark_dir(out_dir, FINETUNE_KIND)
        return _finetune_in(cfg, out_dir, prep, fp, targets)


def _finetune_in(cfg: FinetuneConfig, out_dir: Path, prep: Prepared, fp: str, targets: Targets) -> dict:
    done = _existing(out_dir, fp)
    note = _defaults_note(cfg, prep)
    if note:  # after every input check: a bad input stays one line
        print(note, file=sys.stderr)
    todo = [(m, s) for m in cfg.methods for s in cfg.seeds if s not in done.get(m, {})]

    fisher = None
    if any(m == "child_d" for m, _ in todo) and cfg.child.p_d < 1.0 and not cfg.child.fisher_per_seed:
        fisher = fisher_scores(prep, cfg)

    results: list[dict] = []
    if cfg.jobs <= 1 or len(todo) <= 1:
        for method, seed in todo:
            results.append(run_one(prep, cfg, method, seed, _run_dir(out_dir, method, seed),
                                   fisher if method == "child_d" else None, fp,
                                   extra=_transfer_tests(cfg, prep, targets, seed)))
    else:
        results = _run_parallel(cfg, todo, out_dir, fp, fisher)
    failed: dict[str, dict[str, str]] = {}
    for result in results:
        if "failed" in result:
            failed.setdefault(result["method"], {})[str(result["seed"])] = result["failed"]
        else:
            done.setdefault(result["method"], {})[int(result["seed"])] = result

    runs = {m: list(seeds.values()) for m, seeds in done.items()}
    order = [m for m in ("vanilla", "child_f", "child_d", "l2sp", "mixout") if m in runs]
    runs = {m: runs[m] for m in order}
    context = {"task": prep.task_name, "checkpoint": cfg.checkpoint, "fingerprint": fp, "lr": prep.lr,
               "epochs": prep.epochs, "warmup": prep.warmup,
               "defaults": _defaults_note(cfg, prep) or None,
               "runs": {m: {str(s): str(_run_dir(out_dir, m, s).relative_to(out_dir)) for s in sorted(done[m])}
                        for m in order},
               "failed": failed}
    context["baselines"] = None if is_squad(cfg.task) else task_baselines(prep)
    summary = summarize(runs, prep.metric_names, prep.dev_splits, context)
    note = _defaults_note(cfg, prep)
    resolved = dataclasses.replace(cfg, lr=prep.lr, epochs=prep.epochs, warmup=prep.warmup)
    write_text(out_dir / "config.toml", (f"# {note}\n" if note else "") + dumps_toml(resolved))
    write_json(out_dir / "summary.json", summary)
    write_text(out_dir / "summary.md", to_markdown(summary))
    return summary


def _run_parallel(cfg: FinetuneConfig, todo: list[tuple[str, int]], out_dir: Path, fp: str,
                  fisher: tuple[dict, dict] | None) -> list[dict]:
    """Runs in `cfg.jobs` spawned processes, the machine's cores split evenly between them."""
    jobs = min(cfg.jobs, len(todo))
    cfg_dict = to_dict(dataclasses.replace(cfg, progress=False))
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fisher-", dir=out_dir) as scratch:
        fisher_path = None
        if fisher is not None:
            fisher_path = str(Path(scratch) / "fisher.safetensors")
            _save_fisher(Path(fisher_path), fisher)
        with worker_pool(jobs) as pool:
            futures = [pool.submit(_worker, cfg_dict, m, s, str(_run_dir(out_dir, m, s)), fp,
                                   fisher_path if m == "child_d" else None) for m, s in todo]
            return [f.result() for f in futures]
