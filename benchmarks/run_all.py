"""Run every benchmark script in turn (each prints a markdown table); `make bench` calls this.

Run it on an idle machine: every script alternates maskbench and Hugging Face in one process, but
absolute numbers still move with the load. Results are recorded by hand in BENCHMARKS.md.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPTS = ["bench_prepare.py", "bench_objectives.py", "bench_models.py", "bench_pretrain.py",
           "bench_finetune.py", "bench_inspect.py", "bench_demo.py"]


def main() -> int:
    here = Path(__file__).resolve().parent
    failed = []
    for name in SCRIPTS:
        print(f"\n## {name}\n", flush=True)
        if subprocess.run([sys.executable, str(here / name)]).returncode != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
