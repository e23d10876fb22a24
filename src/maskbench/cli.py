"""`maskbench …`: a thin layer that parses arguments, calls the Python API and prints.

Each stage of the data's journey owns its subcommands in `<stage>/commands.py` (a `register(subparsers)`
function), so this file stays small and each stage's CLI sits beside the code it calls. Command modules
import torch and friends inside their handlers, which keeps `maskbench --help` fast.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

from . import __version__
from .errors import MaskbenchError
from .io import os_error_message
from .runtime import tune_allocator

# Errors of the machine the user can fix (space, permissions, a path of the wrong kind): one line, exit 2.
ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EISDIR,
                                errno.ENOTDIR, errno.ENAMETOOLONG, errno.EMFILE, errno.ENOMEM})

COMMAND_MODULES = (
    "maskbench.data.commands",
    "maskbench.objectives.commands",
    "maskbench.models.commands",
    "maskbench.train.commands",
    "maskbench.finetune.commands",
    "maskbench.inspect.commands",
    "maskbench.experiments.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="maskbench",
        description="Pretrain, fine-tune and look inside BERT-family models under any corruption policy.",
    )
    parser.add_argument("--version", action="version", version=f"maskbench {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name and name.startswith(e.name):  # stage not built yet
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    tune_allocator()
    debug = "--debug" in argv or os.environ.get("MASKBENCH_DEBUG") == "1"
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 0 if not argv else 2
        result = args.func(args)
        return int(result or 0)
    except MaskbenchError as e:
        if debug:
            raise
        print(f"maskbench: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if debug or e.errno not in ENVIRONMENT_ERRNOS:
            raise
        print(f"maskbench: error: {os_error_message(e, action=None)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("maskbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
