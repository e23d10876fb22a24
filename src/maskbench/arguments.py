"""Argument helpers the stages' `commands.py` share: `--set` overrides and per-command examples in `--help`.

They live apart from `cli` so that the CLI sits above the stages it dispatches to (no stage imports `cli`).
"""

from __future__ import annotations

import argparse


def add_set_argument(parser: argparse.ArgumentParser, example: str = "objective.mask_rate=0.4") -> None:
    """The shared `--set section.key=value` option (values are TOML literals), with a key of this command."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override a config value, e.g. --set {example} (repeatable)")


class _HelpFormatter(argparse.HelpFormatter):
    """Wraps descriptions as usual but keeps the epilog's lines (examples, key tables) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith(("examples:", "keys")):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def add_examples(parser: argparse.ArgumentParser, *commands: str, extra: str = "") -> None:
    """End the command's `--help` with its own example command lines (and `extra`, e.g. a key table)."""
    parser.epilog = "examples:\n" + "\n".join(f"  {c}" for c in commands) + (f"\n\n{extra}" if extra else "")
    parser.formatter_class = _HelpFormatter
