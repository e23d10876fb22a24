"""Atomic writes, output folders and run locks: an output either exists whole or not at all, and
maskbench never replaces a folder it did not write.

Every folder maskbench writes carries a marker file (`.maskbench.json`, with the kind of output);
`claim_out_dir` is the one guard each command calls before it writes an `--out` folder; `run_lock` is the
exclusive lock a command holds on a run folder for the life of the run (released by the kernel on a crash).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from . import __version__
from .errors import MaskbenchError

MARKER = ".maskbench.json"
LOCK = ".maskbench.lock"
_HOUSEKEEPING = {LOCK}


def _umask() -> int:
    """The process umask (read by setting it and putting it back: the only portable way)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _respect_umask(path: Path, is_dir: bool) -> None:
    """mkstemp/mkdtemp create 0600/0700; an output should get the mode any new file gets (0644 under umask 022)."""
    with contextlib.suppress(OSError):
        os.chmod(path, (0o777 if is_dir else 0o666) & ~_umask())


def os_error_message(error: OSError, path: str | os.PathLike | None = None, action: str | None = "write") -> str:
    """An OSError as one phrase a user can act on ("cannot write X: the disk is full", ...)."""
    where = path if path is not None else error.filename
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        reason = "the disk is full"
    else:
        reason = error.strerror or str(error)
    if where is None:
        return reason
    if action is None and error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
        action = "write"
    return f"cannot {action} {where}: {reason}" if action else f"{where}: {reason}"


def _tmp_sibling(path: Path, is_dir: bool) -> Path:
    if path.is_dir() and not is_dir:
        raise MaskbenchError(f"{path} is a folder; name a file to write")
    if path.exists() and not path.is_dir() and is_dir:
        raise MaskbenchError(f"{path} is a file; name a folder to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    _respect_umask(tmp, is_dir)
    return tmp


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary file path beside `path`; on success it is renamed onto `path`."""
    path = Path(path)
    try:
        tmp = _tmp_sibling(path, is_dir=False)
    except OSError as e:
        raise MaskbenchError(os_error_message(e, path)) from e
    try:
        yield tmp
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(e, OSError) and e.errno is not None:  # name the output, not its temporary file
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = True, kind: str = "output") -> Iterator[Path]:
    """Yield a temporary folder beside `path` (already holding the maskbench marker of `kind`); on success
    it replaces `path` in one rename. A non-empty `path` that maskbench did not write is never replaced."""
    path = Path(path)
    try:
        tmp = _tmp_sibling(path, is_dir=True)
        mark_dir(tmp, kind)
    except OSError as e:
        raise MaskbenchError(os_error_message(e, path)) from e
    try:
        yield tmp
        if path.exists():
            if not overwrite:
                raise MaskbenchError(f"{path} already exists")
            if not is_empty_dir(path) and marked_kind(path) is None:
                raise MaskbenchError(f"{path} holds files maskbench did not write; it is left alone (choose "
                                     f"another output folder)")
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError) and e.errno is not None:
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise


# --- output folders: the marker, the one --out guard, the run lock ----------------------------------------

def mark_dir(folder: str | os.PathLike, kind: str) -> None:
    """Record that maskbench wrote `folder` (and what it holds), so `--overwrite` may replace it later."""
    folder = Path(folder)
    if marked_kind(folder) == kind:
        return
    write_json(folder / MARKER, {"written_by": "maskbench", "kind": kind, "version": __version__})


def marked_kind(folder: str | os.PathLike) -> str | None:
    """The kind of output in a folder maskbench wrote, or None (no marker, or an unreadable one)."""
    try:
        with open(Path(folder) / MARKER, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data.get("kind") if isinstance(data, dict) and data.get("written_by") == "maskbench" else None


def is_empty_dir(folder: str | os.PathLike) -> bool:
    """True for a folder with nothing in it but a stale lock file."""
    folder = Path(folder)
    return folder.is_dir() and all(p.name in _HOUSEKEEPING for p in folder.iterdir())


def _holds(folder: Path, path: Path) -> bool:
    """True when replacing `folder` would take `path` with it."""
    return folder == path or folder in path.parents


def claim_out_dir(out: str | os.PathLike, kind: str, overwrite: bool = False,
                  inputs: Iterable[str | os.PathLike | None] = (), flag: str = "--out") -> bool:
    """The guard every command calls before writing the output folder `out`.

    Refuses a path that is a file, that is or holds one of the command's `inputs`, or a non-empty folder;
    with `overwrite`, a non-empty folder is accepted only when maskbench wrote it as the same `kind` of
    output. Returns True when `out` holds an earlier output that will be replaced.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise MaskbenchError(f"{flag} {out} is a file; name a folder")
    resolved = out.resolve()
    for source in inputs:
        if source is not None and _holds(resolved, Path(source).resolve()):
            raise MaskbenchError(f"{flag} {out} is or holds the input {source}; writing there would destroy it "
                                 f"(choose another {flag})")
    if not out.is_dir() or is_empty_dir(out):
        return False
    found = marked_kind(out)
    if not overwrite:
        hint = f" or pass --overwrite to replace it" if found == kind else ""
        what = f"maskbench's {found}" if found else "files maskbench did not write"
        raise MaskbenchError(f"{flag} {out} is not empty (it holds {what}); choose another {flag}{hint}")
    if found != kind:
        what = f"maskbench's {found}" if found else "files maskbench did not write"
        raise MaskbenchError(f"{flag} {out} holds {what}; --overwrite replaces only maskbench's {kind} "
                             f"(choose another {flag})")
    return True


class RunLock:
    """An exclusive `flock` on `folder/.maskbench.lock`, held until `release()` or the process ends."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.path = self.folder / LOCK
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise MaskbenchError(f"cannot write to {self.folder}: {e.strerror or e}; "
                                 f"choose a writable --out") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = ""
            with contextlib.suppress(OSError, ValueError):
                holder = f" (pid {int(os.pread(fd, 32, 0).decode().strip())})"
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise MaskbenchError(f"{self.folder} is in use by another maskbench process{holder}; wait for it "
                                     f"to finish or choose another --out") from None
            raise MaskbenchError(os_error_message(e, self.path)) from e
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire() if self._fd is None else self

    def __exit__(self, *exc) -> None:
        self.release()


def run_lock(folder: str | os.PathLike) -> RunLock:
    """`with run_lock(out):` — the run folder is this process's alone until the block ends (or it dies)."""
    return RunLock(folder)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def save_safetensors(tensors: dict, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """Write a safetensors file atomically, with its header in one fixed order.

    The safetensors writer emits `__metadata__` from a hash map, so two saves of the same tensors can differ
    in their bytes (and their sha256). The header is rewritten in place with sorted metadata: same length,
    same tensors, reproducible bytes.
    """
    from safetensors import SafetensorError  # lazy: `maskbench --help` imports this module
    from safetensors.torch import save_file  # lazy: `maskbench --help` imports this module

    path = Path(path)
    with atomic_path(path) as tmp:
        try:
            save_file(tensors, str(tmp), metadata=metadata)
        except SafetensorError as e:  # the Rust writer reports I/O errors as its own type
            text = str(e)
            code = errno.ENOSPC if ("StorageFull" in text or "No space" in text) else errno.EIO
            raise OSError(code, os.strerror(code), str(path)) from e
        if metadata:
            _sort_safetensors_header(tmp)


def _sort_safetensors_header(path: Path) -> None:
    with open(path, "r+b") as f:
        size = int.from_bytes(f.read(8), "little")
        raw = f.read(size)
        header = json.loads(raw)
        meta = header.pop("__metadata__", None)
        ordered = {"__metadata__": dict(sorted(meta.items()))} if meta is not None else {}
        ordered.update(header)
        text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        if len(text) > size:  # cannot happen for a reordering; keep the writer's bytes then
            return
        f.seek(8)
        f.write(text + b" " * (size - len(text)))


def write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> None:
    write_text(path, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError as e:
        raise MaskbenchError(f"file not found: {path}") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise MaskbenchError(f"{path} is not valid JSON: {e}") from e


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one JSON line and flush it to disk (metrics survive a SIGKILL)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a JSONL file, ignoring a final line cut short by a crash."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return out
