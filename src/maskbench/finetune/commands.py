"""`maskbench finetune`: vanilla vs Child-Tuning vs regularised baselines on one task, over seeds."""

from __future__ import annotations

import argparse
import dataclasses

from ..config import load_config, to_dict


def _list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _seeds(text: str) -> list[int]:
    try:
        return [int(t) for t in _list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must be integers separated by commas, got {text!r}") from None


BY_SIZE = ("lr", "epochs", "warmup")  # FinetuneConfig keys left unset take the model size's defaults


def keys_table() -> str:
    """Every `--set` key of FinetuneConfig with its default, for `finetune --help`."""
    from .config import FinetuneConfig  # lazy: `maskbench --help` imports this module

    lines = ["keys for --set and --config (default; (by size) = chosen for the model's size, see docs/finetuning.md):"]

    def walk(obj, prefix: str) -> None:
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                walk(value, f"{prefix}{f.name}.")
            else:
                if value is None and not prefix and f.name in BY_SIZE:
                    lines.append(f"  {f.name} = (by size)")
                    continue
                shown = to_dict(value) if value is not None else ""
                lines.append(f"  {prefix}{f.name} = {shown!r}" if isinstance(shown, str) and shown else
                             f"  {prefix}{f.name} = {shown}")

    walk(FinetuneConfig(), "")
    return "\n".join(lines)


def register(subparsers) -> None:
    from ..arguments import add_examples, add_set_argument  # lazy: `maskbench --help` imports this module

    p = subparsers.add_parser(
        "finetune", help="fine-tune on a GLUE-format task: vanilla, child_f, child_d, l2sp, mixout over seeds",
        description="Fine-tune a checkpoint on one task with one or more methods and several seeds; writes "
                    "per-seed metrics, best dev scores and GLUE test predictions, then a summary with mean ± std "
                    "and a paired t-test of each method against vanilla.")
    p.add_argument("--task", help="GLUE task name (RTE, MNLI, ...) or a task folder / CSV / TSV / JSONL")
    p.add_argument("--data", help="folder holding the GLUE task folders (the download_glue_data.py layout)")
    p.add_argument("--checkpoint", help="pretraining run, model folder, Hugging Face folder, or random:SIZE")
    p.add_argument("--tokenizer", help="tokenizer.json or vocab.txt (default: the one beside the checkpoint)")
    p.add_argument("--method", action="append", default=[], metavar="M[,M...]",
                   help="vanilla, child_f, child_d, l2sp or mixout; comma-separated or repeated")
    p.add_argument("--seeds", type=_seeds, help="comma-separated seeds (default 0,1,2)")
    p.add_argument("--jobs", type=int, help="runs in parallel processes (default 1: one after another)")
    p.add_argument("--eval-task", action="append", default=[], metavar="TASK",
                   help="domain transfer: also score each fine-tuned model on this task's dev split (same labels, "
                        "e.g. --task RTE --eval-task QNLI); repeatable")
    p.add_argument("--transfer-task", metavar="TASK",
                   help="task transfer: train a new head on this task over each frozen fine-tuned encoder and "
                        "score it (transfer.epochs, transfer.lr)")
    p.add_argument("--config", help="a TOML file with FinetuneConfig keys (command-line flags win)")
    add_set_argument(p, "lr=1e-4")
    add_examples(p, "maskbench finetune --task synth-sentiment --data tasks/ --checkpoint runs/mlm40 "
                    "--method vanilla,child_d --seeds 0,1 --out ft/",
                 "maskbench finetune --task RTE --data glue/ --checkpoint roberta-base --method child_d "
                 "--set child.p_d=0.3 --out ft-rte/",
                 "maskbench finetune --task squad --data squad/ --checkpoint bert-base-uncased --set max_length=384 "
                 "--set epochs=2 --set lr=3e-5 --out ft-squad/",
                 extra=keys_table())
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=_finetune)


def _finetune(args) -> int:
    from .config import FinetuneConfig  # lazy: `maskbench --help` imports this module
    from .seeds import finetune  # lazy: `maskbench --help` imports this module
    from .summary import to_markdown  # lazy: `maskbench --help` imports this module

    flags = {"task": args.task, "data": args.data, "checkpoint": args.checkpoint, "tokenizer": args.tokenizer,
             "seeds": args.seeds, "jobs": args.jobs}
    methods = [m for item in args.method for m in _list(item)]
    if methods:
        flags["methods"] = methods
    if args.no_progress:
        flags["progress"] = False
    transfer = {"eval_tasks": args.eval_task or None, "task": args.transfer_task}
    if any(v is not None for v in transfer.values()):
        flags["transfer"] = {k: v for k, v in transfer.items() if v is not None}
    cfg = load_config(FinetuneConfig, args.config, args.overrides, flags=flags)
    summary = finetune(cfg, args.out)
    print(to_markdown(summary), end="")
    return 1 if summary.get("failed") else 0
