"""The machine's measured matmul peak, the denominator of every MFU figure in the benchmarks."""

from __future__ import annotations

import time


def matmul_peak(dtype_name: str, n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of the best of `repeats` n x n matmuls in "fp32" or "bf16", after one warm-up."""
    import torch

    dtype = torch.bfloat16 if dtype_name == "bf16" else torch.float32
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best
