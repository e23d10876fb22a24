"""One way to run work in parallel: a pool of spawned worker processes (torch and fork do not mix), the
machine's cores split evenly between them, every worker set up alike (its thread share, the allocator)."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

from .runtime import tune_allocator


def threads_per_worker(jobs: int) -> int:
    """Each of `jobs` workers gets an even share of the cores (at least one)."""
    return max(1, (os.cpu_count() or 1) // max(1, jobs))


def _start_worker(threads: int) -> None:
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch  # in the worker, after OMP_NUM_THREADS is set

    torch.set_num_threads(threads)
    tune_allocator()


def worker_pool(jobs: int) -> ProcessPoolExecutor:
    """`jobs` spawned workers, each with `threads_per_worker(jobs)` torch threads and the tuned allocator."""
    return ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_worker, initargs=(threads_per_worker(jobs),))
