"""Process-level settings: the malloc tuning that doubles small-model CPU speed, threads, seeds, devices."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import random
import sys

from .errors import ConfigError

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# mallopt takes an int: the largest value keeps every buffer below 2 GiB in the reusable heap.
_MMAP_THRESHOLD = 2**31 - 1
_TRIM_THRESHOLD = 2**31 - 1

_tuned: bool | None = None


def tune_allocator(enable: bool | None = None) -> bool:
    """Keep big tensor buffers in the heap instead of returning them to the OS every step.

    With glibc's defaults, every activation buffer above the (dynamic) mmap threshold is mmapped and
    unmapped each step, and freed heap is trimmed back; page faults then dominate small models. Raising
    both thresholds with mallopt at start-up has the effect of setting MALLOC_MMAP_THRESHOLD_ and
    MALLOC_TRIM_THRESHOLD_ in the environment, without re-executing the process. Disable it with
    MASKBENCH_MALLOC_TUNING=0. Returns whether tuning is active.
    """
    global _tuned
    if enable is None:
        enable = os.environ.get("MASKBENCH_MALLOC_TUNING", "1") not in ("0", "false", "no")
    if not enable or not sys.platform.startswith("linux"):
        _tuned = False
        return False
    if _tuned:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) == 1
        ok = libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1 and ok
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        ok = False
    _tuned = ok
    return ok


def allocator_tuned() -> bool:
    return bool(_tuned) or ("MALLOC_MMAP_THRESHOLD_" in os.environ and "MALLOC_TRIM_THRESHOLD_" in os.environ)


def progress_enabled() -> bool:
    """False when progress bars are switched off for this process (`MASKBENCH_PROGRESS=0`, which
    `experiment run --quiet` and `demo --quiet` set for the stages they run)."""
    return os.environ.get("MASKBENCH_PROGRESS", "1") != "0"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch's global generators (explicit generators are still preferred)."""
    import numpy as np  # lazy: `maskbench --help` imports this module
    import torch  # lazy: `maskbench --help` imports this module

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def resolve_device(name: str = "auto") -> "torch.device":
    import torch  # lazy: `maskbench --help` imports this module

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use \"auto\", \"cpu\" or \"cuda\"", "device") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{name!r} is not available: this PyTorch sees no CUDA GPU (torch "
                              f"{torch.__version__}); use device = \"auto\" or \"cpu\"", "device")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"{name!r} is not available: {torch.cuda.device_count()} CUDA GPU(s) visible", "device")
    return device


#: The cuBLAS workspace setting under which cuBLAS picks the same reduction order on every call.
CUBLAS_DETERMINISTIC = ":4096:8"


def make_deterministic() -> None:
    """Deterministic kernels for this process (`deterministic = true`): the same inputs give the same bits,
    also on a GPU, so a resumed run repeats the uninterrupted one there too.

    cuBLAS reads CUBLAS_WORKSPACE_CONFIG when PyTorch creates its handle, so call this before any CUDA work
    (the trainer does, before it picks its device). Kernels without a deterministic version then raise
    instead of silently differing; cuDNN autotuning is switched off."""
    import torch  # lazy: runtime is imported by the CLI before it needs torch (`--help` speed)

    if os.environ.get("CUBLAS_WORKSPACE_CONFIG") not in (CUBLAS_DETERMINISTIC, ":16:8"):
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_DETERMINISTIC
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
