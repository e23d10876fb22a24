"""The machine's measured matmul peak, the denominator of every MFU figure in the benchmarks."""

from __future__ import annotations

import time


def matmul_peak(dtype_name: str, n: int | None = None, repeats: int = 5, device: str = "cpu") -> float:
    """FLOP/s of the best of `repeats` n x n matmuls in "fp32" or "bf16", after one warm-up.

    On a GPU, n defaults to 8192 (smaller products do not fill the card) and each product is timed
    between synchronisations, on random data (zeros run faster than real data)."""
    import torch

    dtype = torch.bfloat16 if dtype_name == "bf16" else torch.float32
    cuda = device.startswith("cuda")
    n = n or (8192 if cuda else 2048)
    a, b = torch.randn(n, n, device=device).to(dtype), torch.randn(n, n, device=device).to(dtype)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    a @ b
    sync()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best
