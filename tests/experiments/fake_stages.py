"""Small stand-in stages for testing the experiment machinery without training anything.

They write real files, log each call to `calls.log` at the experiment root (so tests can count what
ran, across worker processes too) and produce results shaped like the real stages' results.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from maskbench.experiments.cells import StageDef
from maskbench.io import append_jsonl, write_text


def _log(ctx, **extra) -> None:
    root = ctx.out.parents[2]
    with open(root / "calls.log", "a", encoding="utf-8") as f:
        f.write(json.dumps({"stage": ctx.name, "key": ctx.key, "params": ctx.params, "resume": ctx.resume,
                            **extra}) + "\n")


def prepare(ctx):
    _log(ctx)
    write_text(ctx.out / "corpus.txt", "a b c\n" * ctx.config.get("data", {}).get("lines", 3))
    return {"lines": ctx.config.get("data", {}).get("lines", 3)}


def pretrain(ctx):
    _log(ctx)
    cfg = ctx.config.get("pretrain", {})
    assert (ctx.parents["prepare"] / "corpus.txt").is_file()
    if cfg.get("fail"):
        raise ValueError("pretraining diverged (fake)\nsecond line")
    if cfg.get("interrupt") and not (ctx.out.parents[2] / "interrupted").exists():
        write_text(ctx.out / "partial-checkpoint", "1")
        write_text(ctx.out.parents[2] / "interrupted", "1")
        raise KeyboardInterrupt  # as if the user pressed Ctrl-C (or the machine went away) mid-stage
    rate = cfg.get("objective", {}).get("mask_rate", 0.15)
    steps = cfg.get("steps", 4)
    (ctx.out / "run").mkdir(exist_ok=True)
    for step in range(1, steps + 1):
        append_jsonl(ctx.out / "run" / "metrics.jsonl", {"step": step, "loss": 5.0 / step + rate})
    hidden = cfg.get("model", {}).get("hidden_size", 16)
    return {"parameters": 1000 * hidden, "val_loss": 1.0 + rate, "val_accuracy": 0.5 - rate / 10,
            "steps": steps, "metrics_file": "run/metrics.jsonl"}


def finetune_instances(config):
    ft = config.get("finetune", {})
    return [{"task": t, "method": m, "seed": s} for t in ft.get("tasks", ["synth"])
            for m in ft.get("methods", ["vanilla"]) for s in ft.get("seeds", [0])]


def finetune(ctx):
    _log(ctx)
    rate = ctx.config.get("pretrain", {}).get("objective", {}).get("mask_rate", 0.15)
    bonus = {"vanilla": 0.0, "child_d": 0.02}.get(ctx.params["method"], 0.01)
    seed = ctx.params["seed"]
    # seed noise shared by every cell (a paired design cancels it) plus a little that is not shared
    score = 0.6 + 0.2 * rate + bonus + 0.01 * math.sin(seed + 1) + 0.003 * math.cos(3 * seed + 10 * rate + 50 * bonus)
    transfer = {f"{name} (domain transfer from {ctx.params['task']})": score - 0.1 + 2 * bonus
                for name in ctx.config.get("finetune", {}).get("transfer", {}).get("eval_tasks", [])}
    return {"task": ctx.params["task"], "method": ctx.params["method"], "seed": seed, "metric": "accuracy",
            "score": score, "transfer_scores": transfer}


def probe(ctx):
    _log(ctx)
    rate = ctx.config.get("pretrain", {}).get("objective", {}).get("mask_rate", 0.15)
    return {"layers": {"word_class": [0.3, 0.5 + rate / 2, 0.6 + rate / 3]}}


STAGES = {
    "prepare": StageDef("prepare", prepare, sections=("data",)),
    "pretrain": StageDef("pretrain", pretrain, sections=("pretrain",), parents=("prepare",), resumable=True),
    "finetune": StageDef("finetune", finetune, parents=("pretrain",), instances=finetune_instances,
                         key_config=lambda c: {"finetune": {k: v for k, v in c.get("finetune", {}).items()
                                                            if k not in ("tasks", "methods", "seeds")}}),
    "probe": StageDef("probe", probe, sections=("probe",), parents=("pretrain",),
                      instances=lambda c: [{}] if c.get("probe", {}).get("enabled") else []),
}


def calls(root: Path) -> list[dict]:
    path = Path(root) / "calls.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
