"""`maskbench demo`: the whole journey on the built-in synthetic language, in minutes, through the runner.

The demo is the `demo` preset (presets/demo.toml) run like any experiment, so it exercises the same
machinery a study does: one prepared corpus shared by all cells; two pretrainings (15% and 40% masking)
and a not-pretrained baseline, fine-tuned vanilla and with Child-Tuning-D over three seeds; MLM with NSP
and with SOP, each sentence head scored on both kinds of pairs (ALBERT); a small T5 with i.i.d. noise and
with span corruption, their target lengths and step times (T5); an attention view and a head map of the
40% model; and a report. A second run finds every stage done.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path

from .report import collect, evaluate_claims, plain_table, plain_words, pretrain_table, terminal_table
from .runner import print_failures, run_experiment
from .spec import load_spec

DEMO_PRESET = "demo"


def run_demo(out: str | os.PathLike = "maskbench-demo", jobs: int = 1, progress: bool = True,
             overrides: list[str] | None = None, stages=None, scale: str = "tiny") -> dict:
    """Run the demo experiment into `out`; prints a short table and the report's path. Returns the index."""
    started = time.time()
    spec = load_spec(DEMO_PRESET, overrides=overrides)
    out = Path(out)
    index = run_experiment(spec, out, scale=scale, jobs=jobs, stages=stages, progress=progress)
    results = collect(out)
    print()
    print(terminal_table(out) or "(no fine-tuning results)")
    print()
    for line in _pretraining_only_lines(results):
        print(line)
    for line in plain_words(evaluate_claims(results)):
        print(line)
    print()
    for cell in results.cells:
        if cell.attention_dir is not None and cell.attention.get("html"):
            print(f"attention view ({cell.label}): {(cell.attention_dir / cell.attention['html']).resolve()}")
        if cell.heads_dir is not None and cell.heads.get("png"):
            print(f"head map ({cell.label}): {(cell.heads_dir / cell.heads['png']).resolve()}")
    failed = index.get("failed_cells") or []
    if failed:
        print(f"{len(failed)} cell(s) failed:", file=sys.stderr)
        print_failures(index)
    reused = index.get("stages_reused", 0)
    print(f"{index.get('stages_run', 0)} stages run, {reused} reused from an earlier run, "
          f"{time.time() - started:.0f} s")
    print(f"report: {(out / 'report.html').resolve()}")
    return index


#: what the demo shows of the cells it only pretrains (ALBERT's NSP/SOP cross-evaluation, T5's noise)
_PRETRAIN_ONLY_COLUMNS = ("acc on NSP pairs", "acc on SOP pairs", "targets / example", "s / step", "tokens/s")


def _pretraining_only_lines(results) -> list[str]:
    """The cells with a pretraining and no fine-tuning (the ALBERT and T5 comparisons), in one short table."""
    cells = [c for c in results.cells if c.pretrain and not c.scores]
    table = pretrain_table(dataclasses.replace(results, cells=cells)) if cells else None
    if table is None:
        return []
    keep = [0] + [j for j, h in enumerate(table.header) if h in _PRETRAIN_ONLY_COLUMNS]
    table = dataclasses.replace(table, title="pretraining only (sentence objectives, T5 noise)",
                                header=[table.header[j] for j in keep],
                                rows=[[row[j] for j in keep] for row in table.rows], bold=set())
    return plain_table(table) + [""]
