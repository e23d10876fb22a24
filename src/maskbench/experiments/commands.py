"""`maskbench experiment run|report|list` and `maskbench demo`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..config import canonical_json
from ..errors import MaskbenchError

#: The demo's default parallelism: two processes (on 2 cores about 1.4x one process with two threads for
#: bert-tiny), never more than the machine's cores.
DEMO_JOBS = min(2, os.cpu_count() or 1)


def register(subparsers) -> None:
    from ..arguments import add_examples, add_set_argument  # lazy: `maskbench --help` imports this module

    exp = subparsers.add_parser("experiment", help="run a study (a spec or preset) and write its report",
                                description="Run the comparisons of the four studies, or your own grid, with "
                                            "resumable cells and a report.")
    sub = exp.add_subparsers(dest="experiment_command", metavar="ACTION")
    run = sub.add_parser("run", help="run (or resume) an experiment and write report.md / report.html")
    run.add_argument("spec", metavar="SPEC.toml|PRESET", help="a spec file or a preset name (see `experiment list`)")
    run.add_argument("--scale", choices=("tiny", "small", "paper"), default="tiny",
                     help="tiny: minutes on a laptop; small: an hour or so; paper: the published sizes (GPU)")
    run.add_argument("--out", type=Path, default=None, help="experiment folder (default ./experiments/NAME-SCALE)")
    run.add_argument("--jobs", type=int, default=1, help="independent stages run in this many processes")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument("--dry-run", action="store_true",
                     help="run nothing: print the resolved recipe (every default filled in) and the cells")
    add_set_argument(run, "finetune.epochs=5")
    add_examples(run, "maskbench experiment run mask-rate --scale tiny --dry-run",
                 "maskbench experiment run mask-rate --scale tiny --out exp/mask-rate",
                 "maskbench experiment run my-grid.toml --out exp/mine")
    run.set_defaults(func=run_command)

    rep = sub.add_parser("report", help="(re)write report.md and report.html of an experiment folder")
    rep.add_argument("dir", type=Path)
    rep.set_defaults(func=report_command)

    lst = sub.add_parser("list", help="list the presets and their cells per scale")
    lst.set_defaults(func=list_command)
    exp.set_defaults(func=lambda args: (exp.print_help(), 2)[1])

    demo = subparsers.add_parser("demo", help="the 10-minute tour: one comparison from each study (pretraining "
                                               "and masking rate, Child-Tuning, NSP vs SOP, T5 noise), a report",
                                 description="Build the synthetic corpus and tokenizer, pretrain a tiny BERT at "
                                             "15% and 40% masking, fine-tune each (and a not-pretrained baseline) "
                                             "vanilla and with Child-Tuning-D over 3 seeds, compare MLM + NSP with "
                                             "MLM + SOP and a small T5's i.i.d. noise with span corruption, write an "
                                             "attention view and a head map, and a report. A second run reuses "
                                             "every finished stage.")
    demo.add_argument("--out", type=Path, default=Path("maskbench-demo"), help="output folder (default ./maskbench-demo)")
    demo.add_argument("--jobs", type=int, default=DEMO_JOBS,
                      help=f"independent stages run in this many processes, the cores split between them (default {DEMO_JOBS}: "
                           "tiny models use two processes better than two threads)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    add_set_argument(demo, "finetune.epochs=5")
    add_examples(demo, "maskbench demo", "maskbench demo --out demo-out --jobs 2 --quiet")
    demo.set_defaults(func=demo_command)


def _check_jobs(jobs: int) -> None:
    if jobs < 1:
        raise MaskbenchError(f"--jobs must be at least 1, got {jobs}")


def run_command(args: argparse.Namespace) -> int:
    from .report import terminal_table  # lazy: `maskbench --help` imports this module
    from .runner import run_experiment  # lazy: `maskbench --help` imports this module
    from .spec import load_spec  # lazy: `maskbench --help` imports this module

    _check_jobs(args.jobs)
    spec = load_spec(args.spec, overrides=args.overrides)
    out = args.out or Path("experiments") / f"{spec.experiment.name}-{args.scale}"
    if args.dry_run:
        print(dry_run_text(spec, args.scale, out), end="")
        return 0
    index = run_experiment(spec, out, scale=args.scale, jobs=args.jobs, progress=not args.quiet)
    _print_summary(index, out, terminal_table(out))
    return 1 if index.get("failed_cells") else 0


def dry_run_text(spec, scale: str, out: Path) -> str:
    """The recipe a run would use: the first cell's sections with every default filled in (TOML; unset
    keys omitted), then each cell's label and the keys its axes set."""
    import tomli_w  # lazy: `maskbench --help` imports this module

    from .stages import validate_config  # lazy: `maskbench --help` imports this module

    cells = spec.resolve(scale)
    resolved = [validate_config(cell.config) for cell in cells]
    lines = [f"# {spec.experiment.name} at scale '{scale}': {len(cells)} cells, into {out} (dry run: nothing ran)",
             f"# {spec.experiment.paper}" if spec.experiment.paper else "", "", "# the recipe of cell 1 (resolved)"]
    lines.append(tomli_w.dumps(_without_none(resolved[0])).rstrip())
    lines += ["", "# cells"]
    for i, (cell, sections) in enumerate(zip(cells, resolved), 1):
        assignment = ", ".join(f"{k} = {canonical_json(v)}" for k, v in cell.assignment.items()) or "the base"
        lines.append(f"{i}. {cell.label} [{cell.id}]: {assignment}")
    lines += ["", "# claims"] + [f"- {claim.text}" for claim in spec.claims]
    return "\n".join(line for line in lines if line is not None) + "\n"


def _without_none(value):
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_without_none(v) for v in value]
    return value


def report_command(args: argparse.Namespace) -> int:
    from .report import write_report  # lazy: `maskbench --help` imports this module

    paths = write_report(args.dir)
    print(f"wrote {paths['markdown']}\nwrote {paths['html']}")
    return 0


def list_command(args: argparse.Namespace) -> int:
    from .spec import list_presets, load_spec  # lazy: `maskbench --help` imports this module

    rows = [("preset", "tiny", "small", "paper", "description")]
    for name in list_presets():
        spec = load_spec(name)
        counts = [str(len(spec.resolve(scale))) for scale in ("tiny", "small", "paper")]
        rows.append((name, *counts, spec.experiment.description.split(". ")[0][:70]))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row[:4], widths)) + "  " + row[4])
    print("\ncells per scale; run one with `maskbench experiment run PRESET --scale tiny`")
    return 0


def demo_command(args: argparse.Namespace) -> int:
    from .demo import run_demo  # lazy: `maskbench --help` imports this module

    _check_jobs(args.jobs)
    index = run_demo(args.out, jobs=args.jobs, progress=not args.quiet, overrides=args.overrides)
    return 1 if index.get("failed_cells") else 0


def _print_summary(index: dict, out: Path, table: str) -> None:
    from .runner import print_failures  # lazy: the runner loads the report stack, and --help stays fast

    print()
    if table:
        print(table)
        print()
    failed = index.get("failed_cells") or []
    print(f"{len(index['cells'])} cells, {index.get('stages_run', 0)} stages run, "
          f"{index.get('stages_reused', 0)} reused, {len(failed)} failed cells; {index['wall_s']:.0f} s")
    print_failures(index)
    report = index.get("report", {})
    if report:
        print(f"report: {Path(report['html']).resolve()}")
    sys.stdout.flush()
