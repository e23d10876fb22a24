"""Time the data pipeline: `prepare` on the 23 MB Gutenberg folder (target <= 30 s on 2 cores), plus the
synthetic corpus generator and WordPiece training.

Each measurement runs in a fresh subprocess (glibc malloc settings are process-wide), the compared sides
alternate within every repeat, and the table shows medians:
- prepare, allocator tuned (the CLI default) vs `MASKBENCH_MALLOC_TUNING=0`;
- prepare with the tokenizer's Rust thread pool limited to one thread (`RAYON_NUM_THREADS=1`), to show
  what batch-parallel `encode_batch` buys.

    .venv/bin/python benchmarks/bench_prepare.py [--repeats 3] [--input DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_INPUT = REPO.parent / "shared" / "data" / "corpus" / "gutenberg"


def _child(args) -> None:
    from maskbench.runtime import tune_allocator

    tune_allocator()
    if args.child == "prepare":
        from maskbench.data.shards import prepare

        start, cpu = time.perf_counter(), time.process_time()
        prepare([args.input], args.tokenizer, args.out, seq_len=128, progress=False)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    elif args.child == "synth":
        from maskbench.data.synth import generate_corpus

        start, cpu = time.perf_counter(), time.process_time()
        generate_corpus(args.out, tokens=2_000_000, seed=0)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    else:
        from maskbench.data.tokenizer import train_tokenizer

        start, cpu = time.perf_counter(), time.process_time()
        train_tokenizer([args.input], kind="wordpiece", vocab_size=8000, out_path=args.tokenizer)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(json.dumps({"seconds": seconds, "cpu": cpu}))


def _run(kind: str, env_extra: dict, **paths) -> tuple[float, float]:
    """(wall seconds, CPU seconds of all the child's threads) for one step in a fresh process."""
    env = dict(os.environ, **env_extra)
    cmd = [sys.executable, __file__, "--child", kind] + [x for k, v in paths.items() for x in (f"--{k}", str(v))]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    record = json.loads(out.strip().splitlines()[-1])
    return record["seconds"], record["cpu"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--input", default=str(DEFAULT_INPUT))
    parser.add_argument("--child", choices=["prepare", "synth", "tokenizer"])
    parser.add_argument("--tokenizer")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.child:
        _child(args)
        return

    size_mb = sum(p.stat().st_size for p in Path(args.input).rglob("*") if p.is_file()) / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tok = tmp / "tok.json"
        train_s = _run("tokenizer", {}, input=args.input, tokenizer=tok)
        sides = {
            "prepare, allocator tuned (default)": {"MASKBENCH_MALLOC_TUNING": "1"},
            "prepare, allocator untuned": {"MASKBENCH_MALLOC_TUNING": "0"},
            "prepare, tokenizer on 1 thread": {"MASKBENCH_MALLOC_TUNING": "1", "RAYON_NUM_THREADS": "1"},
        }
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
        synth: list[tuple[float, float]] = []
        for r in range(args.repeats):
            for i, (name, env) in enumerate(sides.items()):
                times[name].append(_run("prepare", env, input=args.input, tokenizer=tok, out=tmp / f"s{r}{i}"))
            synth.append(_run("synth", {}, out=tmp / f"synth{r}"))
        from maskbench.data.shards import Shards

        tokens = sum(s["tokens"] for s in Shards.open(tmp / "s00").manifest["splits"].values())

    def med(values, i):
        return statistics.median(v[i] for v in values)

    base = med(times["prepare, allocator tuned (default)"], 0)
    try:
        load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        load = "n/a"
    print(f"Input: {args.input} ({size_mb:.1f} MB, {tokens:,} tokens), WordPiece 8,000; "
          f"{os.cpu_count()} CPUs, load average at the end {load}; median of {args.repeats}\n")
    print("| step | median wall s | median CPU s (all threads) | MB/s (wall) | wall ratio to default |")
    print("|---|---|---|---|---|")
    for name, values in times.items():
        wall = med(values, 0)
        print(f"| {name} | {wall:.2f} | {med(values, 1):.2f} | {size_mb / wall:.2f} | {wall / base:.2f} |")
    print(f"| tokenizer train (WordPiece 8k, once) | {train_s[0]:.2f} | {train_s[1]:.2f} | "
          f"{size_mb / train_s[0]:.2f} | |")
    print(f"| synthetic corpus, 2M words | {med(synth, 0):.2f} | {med(synth, 1):.2f} | | |")


if __name__ == "__main__":
    main()
