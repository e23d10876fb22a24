"""Wall time of `maskbench demo`: a cold run (everything computed) and a warm run (every stage reused).

    .venv/bin/python benchmarks/bench_demo.py [--out DIR] [--repeats N]

Each run is a fresh `maskbench demo` subprocess (the CLI, as a user runs it, allocator tuning on);
cold runs start from an empty folder. Prints a markdown table with the median of the repeats.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_demo(out: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the demo process): on a shared machine the CPU time is the steadier one."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "maskbench", "demo", "--out", str(out), "--quiet"], check=True,
                   stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--repeats", type=int, default=1, help="cold runs (each followed by a warm run)")
    args = parser.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="maskbench-bench-demo-"))
    cold, warm = [], []
    load_start = os.getloadavg()[0]
    for i in range(args.repeats):
        out = root / f"demo-{i}"
        shutil.rmtree(out, ignore_errors=True)
        cold.append(run_demo(out))
        warm.append(run_demo(out))
    load = os.getloadavg()[0]
    print(f"| run | median wall s (of {args.repeats}) | median CPU s | wall s of each |")
    print("|---|---:|---:|---|")
    for name, runs in (("cold (empty folder)", cold), ("warm (every stage reused)", warm)):
        print(f"| {name} | {statistics.median(w for w, _ in runs):.1f} | {statistics.median(c for _, c in runs):.1f} "
              f"| {', '.join(f'{w:.1f}' for w, _ in runs)} |")
    print(f"\n{os.cpu_count()} CPUs; 1-minute load average {load_start:.1f} at the start, {load:.1f} at the end")
    if args.out is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
