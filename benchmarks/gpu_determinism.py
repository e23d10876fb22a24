"""Is a pretraining run on this machine's device exact? Two identical runs, and a run killed with SIGKILL
and resumed, compared metric by metric, with and without `deterministic = true`.

Each run is `maskbench pretrain` in its own process (bf16 on a GPU, float32 on the CPU; dropout on; a
checkpoint every `--every` steps). Printed: for each setting, whether the two whole runs wrote the same
train records bit for bit (else the first step and values that differ), and whether the killed-and-resumed
run repeats the whole one. Timing fields (tokens/s, elapsed) are left out of the comparison.

    python benchmarks/gpu_determinism.py                    # bert-small shape on the GPU
    python benchmarks/gpu_determinism.py --tiny --steps 12  # any machine
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tomli_w

TIMING = ("tokens_per_s", "elapsed_s")


def build_data(root: Path) -> Path:
    from maskbench.data import generate_corpus, prepare, train_tokenizer

    corpus = generate_corpus(root / "corpus", tokens=150_000, seed=0)
    train_tokenizer([corpus], kind="wordpiece", vocab_size=4000, out_path=root / "tok.json")
    prepare([corpus], root / "tok.json", root / "shards", seq_len=128, val_fraction=0.02, seed=0, progress=False)
    return root / "shards"


def records(run: Path) -> list[dict]:
    from maskbench.io import read_jsonl

    path = run / "metrics.jsonl"
    rows = read_jsonl(path) if path.exists() else []
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows if r.get("kind") == "train"]


def first_difference(a: list[dict], b: list[dict]) -> str | None:
    for x, y in zip(a, b):
        if x != y:
            keys = [k for k in x if x.get(k) != y.get(k)]
            return f"step {x['step']}: " + ", ".join(f"{k} {x.get(k)!r} vs {y.get(k)!r}" for k in keys)
    return None if len(a) == len(b) else f"{len(a)} vs {len(b)} records"


def command(config: Path, out: Path, resume: bool = False) -> list[str]:
    return [sys.executable, "-m", "maskbench", "pretrain", "--config", str(config), "--out", str(out)] + (
        ["--resume"] if resume else [])


def run_whole(config: Path, out: Path, timeout: float) -> None:
    result = subprocess.run(command(config, out), capture_output=True, text=True, timeout=timeout)
    if result.returncode:
        raise SystemExit(f"run {out.name} failed:\n{result.stderr[-3000:]}")


def run_killed(config: Path, out: Path, kill_at: int, timeout: float) -> int:
    """Start the run, SIGKILL it once `kill_at` train records exist, resume it; return the records at the kill."""
    process = subprocess.Popen(command(config, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    seen = 0
    try:
        while time.monotonic() < deadline and process.poll() is None:
            seen = len(records(out))
            if seen >= kill_at:
                break
            time.sleep(0.01)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    if process.returncode != -signal.SIGKILL:
        raise SystemExit(f"run {out.name} ended before the kill: {process.stderr.read().decode()[-3000:]}")
    result = subprocess.run(command(config, out, resume=True), capture_output=True, text=True, timeout=timeout)
    if result.returncode:
        raise SystemExit(f"resume of {out.name} failed:\n{result.stderr[-3000:]}")
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny model (any machine)")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--every", type=int, default=10, help="checkpoint interval")
    parser.add_argument("--settings", nargs="+", default=["deterministic", "default"],
                        choices=["deterministic", "default"])
    parser.add_argument("--timeout", type=float, default=240, help="seconds per run")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args()
    import torch

    cuda = torch.cuda.is_available()
    model = ({"size": "bert-tiny", "hidden_size": 32, "num_heads": 2, "intermediate_size": 64, "num_layers": 2}
             if args.tiny else {"size": "bert-small"})
    summary = {"device": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__,
               "cuda": torch.version.cuda, "steps": args.steps}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shards = build_data(tmp / "data")
        for setting in args.settings:
            config = tmp / f"{setting}.toml"
            config.write_text(tomli_w.dumps({
                "seed": 1, "data": {"shards": str(shards), "seq_len": 64 if args.tiny else 128},
                "model": model, "objective": {"name": "mlm"}, "batch": {"size": 8 if args.tiny else 64},
                "budget": {"steps": args.steps}, "precision": "bf16" if cuda else "fp32",
                "deterministic": setting == "deterministic",
                "optim": {"lr": 1e-3, "grad_clip": 1.0}, "schedule": {"warmup_steps": 2},
                "eval": {"every": 0, "at_end": False}, "log": {"every": 1, "progress": False, "tensorboard": False},
                "checkpoint": {"every": args.every, "keep": 2, "final": False}}))
            run_whole(config, tmp / f"{setting}-a", args.timeout)
            run_whole(config, tmp / f"{setting}-b", args.timeout)
            a, b = records(tmp / f"{setting}-a"), records(tmp / f"{setting}-b")
            kill_at = args.every + args.every // 2 + 1
            seen = run_killed(config, tmp / f"{setting}-killed", kill_at, args.timeout)
            c = records(tmp / f"{setting}-killed")
            rerun, resumed = first_difference(a, b), first_difference(a, c)
            summary[setting] = {"records": len(a), "two_runs_equal": rerun is None, "two_runs_difference": rerun,
                                "killed_after_records": seen, "resume_equal": resumed is None,
                                "resume_difference": resumed, "last_loss": a[-1]["loss"] if a else None}
            print(f"{setting}: two runs {'identical' if rerun is None else 'differ at ' + rerun}; "
                  f"SIGKILL after {seen} records + resume: "
                  f"{'identical' if resumed is None else 'differs at ' + resumed} ({len(a)} records)", flush=True)
    print(json.dumps(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
