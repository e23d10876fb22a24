"""Progress for people and for logs: a tqdm bar on a terminal, periodic plain lines everywhere else.

A carriage-return bar written to a file or a CI log becomes one enormous line (or thousands of them);
when stderr is not a terminal, `progress_bar` returns `PlainProgress`, which prints a complete line at
the first update, then at most every `MASKBENCH_PROGRESS_SECONDS` (default 30) seconds, and at the end.
Both offer tqdm's `update`, `set_postfix`, `write`, `close`, `n` and `total`.
"""

from __future__ import annotations

import os
import sys
import time

from tqdm import tqdm


def _interval() -> float:
    try:
        return float(os.environ.get("MASKBENCH_PROGRESS_SECONDS", "30"))
    except ValueError:
        return 30.0


class PlainProgress:
    """tqdm's interface, printing whole lines: `desc: n/total unit (p%), elapsed, postfix`."""

    def __init__(self, total, desc: str = "", unit: str = "it", initial=0, file=None, every: float | None = None):
        self.total, self.n, self.desc, self.unit = total, initial, desc, unit
        self.file = file or sys.stderr
        self.every = _interval() if every is None else every
        self.started = time.monotonic()
        self.last: float | None = None
        self.postfix = ""

    def _line(self) -> str:
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        seconds = int(time.monotonic() - self.started)
        tail = f", {self.postfix}" if self.postfix else ""
        return f"{self.desc}: {self.n:g}/{self.total:g} {self.unit}{share}, {seconds // 60:02d}:{seconds % 60:02d} elapsed{tail}"

    def update(self, amount=1) -> None:
        self.n += amount
        now = time.monotonic()
        if self.last is None or now - self.last >= self.every:
            self.last = now
            print(self._line(), file=self.file, flush=True)

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def write(self, text: str, file=None) -> None:
        print(text, file=file or self.file, flush=True)

    def close(self) -> None:
        if self.last is not None:
            print(self._line(), file=self.file, flush=True)
            self.last = None


def progress_bar(total, desc: str, unit: str, initial=0, leave: bool = False, **tqdm_options):
    """A tqdm bar when stderr is a terminal, else `PlainProgress` (periodic whole lines)."""
    if not sys.stderr.isatty():
        return PlainProgress(total, desc, unit, initial)

    return tqdm(total=total, desc=desc, unit=unit, initial=initial, file=sys.stderr, leave=leave,
                dynamic_ncols=True, **tqdm_options)
