"""Checkpoint folders that are either whole and verified, or ignored.

A checkpoint is `checkpoints/step-NNNNNNN/` holding the model (`model.safetensors` + `config.json`),
the optimiser state (`optimizer.safetensors` + `optimizer.json`), the schedule (`scheduler.json`), the
RNG states of every generator (`rng.safetensors` + `rng.json`), the loop state with the data-loader
position (`trainer.json`), the resolved `config.toml`, and `manifest.json` with the sha256 of each file.
It is written into a temporary folder that is renamed into place only when complete, so a crash never
leaves a folder that looks valid; a checkpoint damaged later fails its hashes and `--resume` skips it.
No pickle: tensors go to safetensors, everything else to JSON.
"""

from __future__ import annotations

import errno
import json
import random
import re
import shutil
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from ..errors import CheckpointError
from ..io import atomic_dir, read_json, save_safetensors, sha256_file, write_json

CHECKPOINT_FORMAT = 1
CHECKPOINT_KIND = "checkpoint"
_NAME = re.compile(r"^step-(\d{7,})$")
MANIFEST = "manifest.json"


def checkpoint_name(step: int) -> str:
    return f"step-{step:07d}"


# --- optimiser state: tensors to safetensors, the rest to JSON ------------------------------------------

def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return {"__tuple__": [_jsonable(v) for v in value]}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, float) and not np.isfinite(value):
        return {"__float__": repr(value)}
    return value


def _from_jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__tuple__"}:
            return tuple(_from_jsonable(v) for v in value["__tuple__"])
        if set(value) == {"__float__"}:
            return float(value["__float__"])
        return {k: _from_jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_jsonable(v) for v in value]
    return value


def split_optimizer_state(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """`optimizer.state_dict()` → (flat tensors for safetensors, JSON-ready rest)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict] = {}
    for param_key, entries in state_dict["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{param_key}.{name}"] = value.detach().to("cpu").contiguous()
            else:
                scalars.setdefault(str(param_key), {})[name] = _jsonable(value)
    meta = {
        "param_groups": _jsonable(state_dict["param_groups"]),
        "state_keys": [[str(k), type(k).__name__] for k in state_dict["state"]],
        "scalars": scalars,
    }
    return tensors, meta


def join_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[Any, dict] = {}
    for key, kind in meta["state_keys"]:
        param_key: Any = int(key) if kind == "int" else key
        entries = {name: _from_jsonable(v) for name, v in meta["scalars"].get(key, {}).items()}
        prefix = f"state.{key}."
        for name, tensor in tensors.items():
            if name.startswith(prefix):
                entries[name[len(prefix):]] = tensor
        state[param_key] = entries
    return {"state": state, "param_groups": _from_jsonable(meta["param_groups"])}


# --- RNG states ------------------------------------------------------------------------------------------

def local_rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """This process's torch generators (the global CPU one drives dropout; CUDA's too on GPU)."""
    state = {"torch_cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["torch_cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_local_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["torch_cpu"])
    if device.type == "cuda" and "torch_cuda" in state:
        torch.cuda.set_rng_state(state["torch_cuda"], device)


def python_rng_state() -> dict:
    """Python's and NumPy's global generators as JSON (maskbench draws from neither, but user code may)."""
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state()
    return {
        "python": {"version": version, "state": list(internal), "gauss": gauss},
        "numpy": {"kind": np_state[0], "keys": np_state[1].tolist(), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
    }


def restore_python_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state((npy["kind"], np.array(npy["keys"], dtype=np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached_gaussian"]))


# --- writing and finding ---------------------------------------------------------------------------------

@dataclass
class CheckpointPayload:
    """Everything one checkpoint holds, gathered on rank 0 before writing."""

    step: int
    write_model: Any  # callable(folder) that writes model.safetensors + config.json
    optimizer_state: dict
    scheduler_state: dict
    train_state: dict  # TrainState.state_dict(): "trainer" (JSON), "rng" ("rank{r}.torch_cpu", ...), "python_rng"
    config_toml: str


def write_checkpoint(checkpoints_dir: Path, payload: CheckpointPayload, keep: int) -> Path:
    """Write a complete checkpoint folder atomically, then drop all but the newest `keep`."""
    checkpoints_dir = Path(checkpoints_dir)
    target = checkpoints_dir / checkpoint_name(payload.step)
    try:
        checkpoints_dir.mkdir(parents=True, exist_ok=True)
        with atomic_dir(target, kind=CHECKPOINT_KIND) as tmp:
            payload.write_model(tmp)
            tensors, meta = split_optimizer_state(payload.optimizer_state)
            save_safetensors(tensors, tmp / "optimizer.safetensors")
            write_json(tmp / "optimizer.json", meta)
            write_json(tmp / "scheduler.json", payload.scheduler_state)
            state = payload.train_state
            save_safetensors({k: v.contiguous() for k, v in state["rng"].items()}, tmp / "rng.safetensors")
            write_json(tmp / "rng.json", state["python_rng"])
            write_json(tmp / "trainer.json", state["trainer"])
            (tmp / "config.toml").write_text(payload.config_toml, encoding="utf-8")
            files = {}
            for path in sorted(tmp.iterdir()):
                if path.is_file():
                    files[path.name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
            write_json(tmp / MANIFEST, {"format": CHECKPOINT_FORMAT, "step": payload.step, "files": files})
    except OSError as e:
        reason = "the disk is full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
        raise CheckpointError(f"cannot write checkpoint {target}: {reason}; earlier checkpoints are intact "
                              f"(free space or choose another --out, then --resume)") from e
    prune(checkpoints_dir, keep)
    return target


def list_checkpoints(checkpoints_dir: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every checkpoint-named folder, oldest first; temporary folders are not listed."""
    checkpoints_dir = Path(checkpoints_dir)
    if not checkpoints_dir.is_dir():
        return []
    found = []
    for path in checkpoints_dir.iterdir():
        match = _NAME.match(path.name)
        if match and path.is_dir():
            found.append((int(match.group(1)), path))
    return sorted(found)


def prune(checkpoints_dir: Path, keep: int) -> None:
    """Keep the newest `keep` checkpoints and drop crash leftovers (temporary folders)."""
    found = list_checkpoints(checkpoints_dir)
    for _, path in found[:-keep] if keep > 0 else found:
        shutil.rmtree(path, ignore_errors=True)
    for path in Path(checkpoints_dir).glob(".step-*"):  # atomic_dir's .tmp-/.old- leftovers
        shutil.rmtree(path, ignore_errors=True)


def verify_checkpoint(path: Path) -> str | None:
    """None when every file matches the manifest, else why not (one phrase)."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        return "no manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return "unreadable manifest.json"
    if manifest.get("format") != CHECKPOINT_FORMAT:
        return f"checkpoint format {manifest.get('format')!r}, expected {CHECKPOINT_FORMAT}"
    for name in ("model.safetensors", "optimizer.safetensors", "trainer.json", "rng.safetensors"):
        if name not in files:
            return f"{name} missing from the manifest"
    for name, entry in files.items():
        file = path / name
        if not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size != entry.get("bytes"):
            return f"{name} has the wrong size"
        if sha256_file(file) != entry.get("sha256"):
            return f"{name} fails its sha256"
    return None


def latest_valid_checkpoint(checkpoints_dir: Path, warn=None) -> Path | None:
    """The newest checkpoint whose files all match their hashes; skipped ones are reported by name."""
    warn = warn or (lambda message: warnings.warn(message, stacklevel=2))
    for step, path in reversed(list_checkpoints(checkpoints_dir)):
        problem = verify_checkpoint(path)
        if problem is None:
            return path
        warn(f"skipping corrupted checkpoint {path.name} ({problem})")
    return None


@dataclass
class LoadedCheckpoint:
    path: Path
    step: int
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict
    scheduler_state: dict
    train_state: dict  # as written: "trainer", "rng" (every rank's, "rank{r}." prefixed), "python_rng"


def read_checkpoint(path: Path) -> LoadedCheckpoint:
    path = Path(path)
    try:
        manifest = read_json(path / MANIFEST)
        model_state = load_file(str(path / "model.safetensors"))
        optimizer_state = join_optimizer_state(load_file(str(path / "optimizer.safetensors")),
                                               read_json(path / "optimizer.json"))
        return LoadedCheckpoint(
            path=path, step=int(manifest["step"]), model_state=model_state, optimizer_state=optimizer_state,
            scheduler_state=read_json(path / "scheduler.json"),
            train_state={"trainer": read_json(path / "trainer.json"), "rng": load_file(str(path / "rng.safetensors")),
                         "python_rng": read_json(path / "rng.json")})
    except (OSError, KeyError, ValueError) as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e}") from e


def warn_to_stderr(message: str) -> None:
    print(f"maskbench: warning: {message}", file=sys.stderr)
