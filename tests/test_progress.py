"""Progress is whole lines when stderr is not a terminal; TensorBoard events, or one line saying they are skipped."""

from __future__ import annotations

import importlib.util
import io

from maskbench.progress import PlainProgress, progress_bar
from maskbench.train import logging as train_logging


def test_progress_is_plain_lines_off_a_terminal(capsys):
    bar = progress_bar(10, "fine-tune", "ex")
    assert isinstance(bar, PlainProgress)  # pytest's stderr is not a terminal
    for _ in range(10):
        bar.update(1)
        bar.set_postfix(loss="0.5")
    bar.close()
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.strip().splitlines()
    assert lines[0].startswith("fine-tune: 1/10 ex (10%)")
    assert lines[-1].startswith("fine-tune: 10/10 ex (100%)") and lines[-1].endswith("loss=0.5")


def test_plain_progress_prints_at_most_every_interval():
    out = io.StringIO()
    bar = PlainProgress(1000, "pretrain", "step", file=out, every=3600)
    for _ in range(1000):
        bar.update()
    bar.close()
    assert len(out.getvalue().splitlines()) == 2  # the first update and the end


def test_missing_tensorboard_is_said_once(tmp_path, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    monkeypatch.setattr(train_logging, "_SKIPPED_SAID", False)
    assert train_logging.event_writer(tmp_path / "a") is None
    assert train_logging.event_writer(tmp_path / "b") is None
    err = capsys.readouterr().err
    assert err.count("tensorboard is not installed") == 1
