"""`maskbench pretrain --config CONFIG.toml [--set k=v ...] [--out RUN_DIR] [--resume]`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ..errors import MaskbenchError


def register(subparsers) -> None:
    from ..arguments import add_examples, add_set_argument  # lazy: `maskbench --help` imports this module

    parser = subparsers.add_parser(
        "pretrain", help="pretrain a model with any objective (DDP with torchrun)",
        description="Pretrain a BERT/ALBERT encoder or a T5-style model from prepared shards. Run under "
                    "`torchrun --nproc_per_node N -m maskbench pretrain ...` for data parallelism.")
    parser.add_argument("--config", type=Path, default=None,
                        help="TOML config (see configs/); with --resume it defaults to RUN_DIR/config.toml")
    add_set_argument(parser, "budget.steps=300")
    add_examples(parser, "maskbench pretrain --config configs/bert-tiny-40.toml --set data.shards=shards/ --out runs/mlm40",
                 "maskbench pretrain --config configs/bert-tiny-15.toml --set objective.mask_rate=0.15 "
                 "--set budget.time=10m --out runs/mlm15",
                 "maskbench pretrain --out runs/mlm40 --resume",
                 "torchrun --nproc_per_node 8 -m maskbench pretrain --config configs/mask40-paper.toml --out runs/paper")
    parser.add_argument("--out", type=Path, default=None, help="run folder (default: runs/<config name>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its newest valid checkpoint")
    parser.set_defaults(func=run_pretrain)


def run_pretrain(args) -> int:
    from .config import load_pretrain_config  # lazy: `maskbench --help` imports this module
    from .loop import pretrain  # lazy: `maskbench --help` imports this module

    config_path = args.config
    if config_path is None:
        if args.resume and args.out is not None and (args.out / "config.toml").is_file():
            config_path = args.out / "config.toml"
        else:
            raise MaskbenchError("pretrain needs --config CONFIG.toml (or --resume --out RUN_DIR of an existing run)")
    out = args.out or Path("runs") / config_path.stem
    config = load_pretrain_config(config_path, args.overrides)
    summary = pretrain(config, out, resume=args.resume)

    if int(os.environ.get("RANK", "0")) == 0:
        brief = {k: summary[k] for k in ("steps", "tokens", "tokens_per_s", "train_seconds", "stopped_by")}
        brief["eval"] = summary.get("eval", {})
        print(json.dumps(brief, indent=2), file=sys.stdout)
    return 0
