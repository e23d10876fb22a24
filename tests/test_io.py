"""Atomic writes: an output exists whole or not at all."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from maskbench.errors import MaskbenchError
from maskbench.io import (LOCK, append_jsonl, atomic_dir, atomic_path, claim_out_dir, marked_kind, os_error_message,
                          read_json, read_jsonl, run_lock, save_safetensors, sha256_file, write_json, write_text)


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_replaces_whole(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "a").write_text("2")
            raise RuntimeError("crash")
    assert (target / "a").read_text() == "1"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_jsonl_tolerates_a_torn_last_line(tmp_path):
    path = tmp_path / "m.jsonl"
    append_jsonl(path, {"step": 1})
    append_jsonl(path, {"step": 2})
    with open(path, "a") as f:
        f.write('{"step": 3')
    assert read_jsonl(path) == [{"step": 1}, {"step": 2}]


def test_json_round_trip(tmp_path):
    write_json(tmp_path / "x.json", {"a": [1, 2]})
    assert read_json(tmp_path / "x.json") == {"a": [1, 2]}


# --- output folders: the marker, the one --out guard ------------------------------------------------------

def test_claim_out_dir_refuses_what_maskbench_did_not_write(tmp_path):
    out = tmp_path / "out"
    assert claim_out_dir(out, "heads result") is False  # new
    out.mkdir()
    (out / LOCK).write_text("")  # a stale lock alone still counts as empty
    assert claim_out_dir(out, "heads result") is False
    (out / "notes.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(MaskbenchError, match="maskbench did not write"):
            claim_out_dir(out, "heads result", overwrite=overwrite)
    (tmp_path / "file").write_text("x")
    with pytest.raises(MaskbenchError, match="is a file"):
        claim_out_dir(tmp_path / "file", "heads result")


def test_overwrite_accepts_only_a_marked_folder_of_the_same_kind(tmp_path):
    with atomic_dir(tmp_path / "out", kind="heads result") as tmp:
        (tmp / "heads.json").write_text("{}")
    assert marked_kind(tmp_path / "out") == "heads result"
    with pytest.raises(MaskbenchError, match="--overwrite"):
        claim_out_dir(tmp_path / "out", "heads result")
    assert claim_out_dir(tmp_path / "out", "heads result", overwrite=True) is True
    with pytest.raises(MaskbenchError, match="replaces only maskbench's probe result"):
        claim_out_dir(tmp_path / "out", "probe result", overwrite=True)


def test_out_may_not_be_or_hold_an_input(tmp_path):
    model = tmp_path / "run" / "model"
    model.mkdir(parents=True)
    for out in (model, tmp_path / "run", tmp_path):
        with pytest.raises(MaskbenchError, match="is or holds the input"):
            claim_out_dir(out, "model folder", overwrite=True, inputs=[model])
    assert claim_out_dir(model / "export", "model folder", inputs=[model]) is False  # inside it is harmless


def test_atomic_dir_never_replaces_a_folder_maskbench_did_not_write(tmp_path):
    target = tmp_path / "x"
    target.mkdir()
    (target / "keep").write_text("1")
    with pytest.raises(MaskbenchError, match="did not write"):
        with atomic_dir(target) as tmp:
            (tmp / "a").write_text("2")
    assert (target / "keep").read_text() == "1" and [p.name for p in tmp_path.iterdir()] == ["x"]


def test_outputs_respect_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_text(tmp_path / "a.txt", "x")
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "f").write_text("y")
        os.umask(0o077)
        write_text(tmp_path / "b.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "b.txt").stat().st_mode) == 0o600


def test_a_path_that_is_a_folder_is_one_line_not_a_traceback(tmp_path):
    with pytest.raises(MaskbenchError, match="is a folder; name a file"):
        write_text(tmp_path, "x")


# --- the run lock: two processes ------------------------------------------------------------------------

_HOLDER = """
import sys
from maskbench.io import run_lock
lock = run_lock(sys.argv[1]).acquire()
print("locked", flush=True)
sys.stdin.read()
"""


def test_run_lock_excludes_a_second_process_and_is_released_when_the_holder_dies(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path / "run")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(MaskbenchError, match=rf"in use by another maskbench process \(pid {holder.pid}\)"):
            run_lock(tmp_path / "run").acquire()
    finally:
        holder.kill()  # a crash: the kernel drops the lock with the process
        holder.wait()
    with run_lock(tmp_path / "run"):
        with pytest.raises(MaskbenchError, match="in use"):  # one holder at a time, in one process too
            run_lock(tmp_path / "run").acquire()
    run_lock(tmp_path / "run").acquire().release()


# --- safetensors: reproducible bytes, a full disk is an OSError the CLI can state --------------------------

def test_safetensors_bytes_do_not_depend_on_metadata_order(tmp_path):
    import torch

    tensors = {"b": torch.arange(6.0).reshape(2, 3), "a": torch.ones(4)}
    digests = set()
    for i in range(12):
        meta = {"format": "pt", "architecture": "X", "z": "1"}
        if i % 2:
            meta = dict(reversed(list(meta.items())))
        save_safetensors(tensors, tmp_path / f"{i}.safetensors", metadata=meta)
        digests.add(sha256_file(tmp_path / f"{i}.safetensors"))
    assert len(digests) == 1
    from safetensors import safe_open

    with safe_open(str(tmp_path / "0.safetensors"), "pt") as f:
        assert f.metadata() == {"architecture": "X", "format": "pt", "z": "1"}
        assert torch.equal(f.get_tensor("b"), tensors["b"])


def test_a_full_disk_in_the_safetensors_writer_is_an_enospc_oserror_and_leaves_no_temp(tmp_path, monkeypatch):
    import safetensors.torch
    import torch
    from safetensors import SafetensorError

    def full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                              'message: "No space left on device" })')

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    with pytest.raises(OSError) as info:
        save_safetensors({"a": torch.zeros(2)}, tmp_path / "w.safetensors")
    assert info.value.errno == errno.ENOSPC and "disk is full" in os_error_message(info.value)
    assert list(tmp_path.iterdir()) == []
