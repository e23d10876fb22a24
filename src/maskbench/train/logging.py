"""Where training metrics go: `metrics.jsonl` (fsynced per line), TensorBoard when installed, a tqdm bar.

Only rank 0 logs. Records are flat dicts with `step` and `kind` ("train" or "eval"); values are Python
floats so a resumed run writes the very same numbers as an uninterrupted one.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import math
import sys
from pathlib import Path

from ..errors import MaskbenchError
from ..io import append_jsonl, read_jsonl, write_text
from ..progress import progress_bar


def _disk_error(path: Path, error: OSError) -> MaskbenchError:
    reason = "the disk is full" if error.errno == errno.ENOSPC else (error.strerror or str(error))
    return MaskbenchError(f"cannot write {path}: {reason}; checkpoints already written are intact "
                          f"(free space, then rerun with --resume)")


def truncate_metrics(path: Path, last_step: int) -> None:
    """Drop records after `last_step` (written before a crash, after the checkpoint we resume from)."""
    if not path.exists():
        return
    kept = [r for r in read_jsonl(path) if int(r.get("step", 0)) <= last_step]

    write_text(path, "".join(json.dumps(r) + "\n" for r in kept))


def format_eta(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


_SKIPPED_SAID = False


def event_writer(folder: Path):
    """A TensorBoard SummaryWriter for `folder`, or None with one line (once per process) saying why."""
    global _SKIPPED_SAID
    if importlib.util.find_spec("tensorboard") is None:
        if not _SKIPPED_SAID:
            print("maskbench: tensorboard is not installed; TensorBoard events are skipped "
                  "(metrics.jsonl has every number; pip install tensorboard)", file=sys.stderr)
            _SKIPPED_SAID = True
        return None
    from torch.utils.tensorboard import SummaryWriter  # lazy: optional dependency (or slow), only this path needs it

    return SummaryWriter(log_dir=str(folder))


class MetricsLog:
    """metrics.jsonl + optional TensorBoard + the progress bar, for rank 0 (other ranks get `enabled=False`)."""

    def __init__(self, run_dir: Path, enabled: bool, progress: bool, tensorboard: bool,
                 total: float, by_time: bool, initial: float = 0.0):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.enabled = enabled
        self.by_time = by_time
        self.writer = None
        self.bar = None
        if not enabled:
            return
        if tensorboard:
            self.writer = event_writer(Path(run_dir) / "tensorboard")
        if progress:
            unit = "s" if by_time else "step"
            self.bar = progress_bar(round(total, 1) if by_time else int(total), "pretrain", unit, initial=initial,
                                    leave=True,
                                    bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]")

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        try:
            append_jsonl(self.path, record)
        except OSError as e:
            raise _disk_error(self.path, e) from e
        if self.writer is not None:
            prefix = record.get("kind", "train")
            for key, value in record.items():
                if key not in ("step", "kind") and isinstance(value, (int, float)):
                    self.writer.add_scalar(f"{prefix}/{key}", value, record["step"])

    def advance(self, amount: float, postfix: dict | None = None) -> None:
        if self.bar is None:
            return
        if self.by_time:
            amount = round(min(amount, self.bar.total - self.bar.n), 1)
        self.bar.update(amount)
        if postfix:
            self.bar.set_postfix(postfix, refresh=False)

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None
