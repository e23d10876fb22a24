"""Data-parallel training as a layer on the loop: DDP through torchrun (gloo on CPU, NCCL on GPU), or FSDP2.

The loop never branches on the world size beyond calling these helpers. Every rank reads the same global
batch and corrupts it with the same per-step generator, then keeps its own slice of rows, so the global
batch — and therefore the loss curve — does not depend on how many processes share it.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..errors import ConfigError
from ..runtime import resolve_device
from .config import DistributedConfig


@dataclass
class World:
    """Who this process is. `owns_group`: we created the process group and destroy it at the end."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False
    fsdp: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    # --- collectives (no-ops in a single process) -----------------------------------------------------

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def all_reduce_min(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
        return tensor

    def broadcast_float(self, value: float) -> float:
        """Rank 0's value on every rank (the time budget's clock must be one clock)."""
        if not self.distributed:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.broadcast(tensor, src=0)
        return float(tensor.item())

    def gather_rng(self, local: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Every rank's RNG states as `rank{r}.{name}` (collected on all ranks; rank 0 writes them)."""
        if not self.distributed:
            return {f"rank0.{k}": v.clone() for k, v in local.items()}
        out = {}
        for name in sorted(local):
            tensor = local[name].to(self.device)
            parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
            dist.all_gather(parts, tensor)
            for r, part in enumerate(parts):
                out[f"rank{r}.{name}"] = part.cpu()
        return out

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def init_world(config: DistributedConfig, device_name: str = "auto") -> World:
    """Join the process group torchrun describes (WORLD_SIZE/RANK/LOCAL_RANK), or run alone.

    A group that already exists (a caller that set one up itself) is used as it is.
    """
    env_world = int(os.environ.get("WORLD_SIZE", "1"))
    if dist.is_available() and dist.is_initialized():
        rank, world_size, owns = dist.get_rank(), dist.get_world_size(), False
    elif env_world > 1:
        device = resolve_device(device_name)
        backend = config.backend
        if backend == "auto":
            backend = "nccl" if device.type == "cuda" else "gloo"
        if backend == "nccl" and device.type != "cuda":
            raise ConfigError("the NCCL backend needs GPUs; use backend = \"gloo\" on CPU", "distributed.backend")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=config.timeout_minutes))
        rank, world_size, owns = dist.get_rank(), dist.get_world_size(), True
    else:
        rank, world_size, owns = 0, 1, False
    local_rank = int(os.environ.get("LOCAL_RANK", rank if world_size > 1 else 0))
    if device_name == "auto" and torch.cuda.is_available():
        device = torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
    else:
        device = resolve_device(device_name)
    if device.type == "cuda" and world_size > 1:
        torch.cuda.set_device(device)
    return World(rank=rank, world_size=world_size, local_rank=local_rank, device=device, owns_group=owns,
                 fsdp=config.fsdp and world_size > 1)


def close_world(world: World) -> None:
    if world.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def unused_parameters(model: nn.Module, sample: dict) -> list[str]:
    """Names of parameters that get no gradient from a loss on `sample` (e.g. BERT's pooler without NSP).

    DDP must be told about them; the probe runs under `fork_rng`, so it draws nothing from the generators
    the run depends on, and leaves no gradients behind.
    """
    with torch.random.fork_rng(devices=[sample["input_ids"].device] if sample["input_ids"].is_cuda else []):
        out = model(**sample)
        out["loss"].backward()
    unused = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    model.zero_grad(set_to_none=True)
    return unused


def wrap_model(model: nn.Module, world: World, sample: dict | None = None) -> nn.Module:
    """DDP (or FSDP2's `fully_shard` on every repeated block, then the root) when there are several ranks.

    `sample`: a micro-batch to find parameters the loss does not reach, which DDP must know about.
    """
    if not world.distributed:
        return model
    if world.fsdp:
        try:
            from torch.distributed.fsdp import fully_shard
        except ImportError:  # pragma: no cover - PyTorch < 2.6
            raise ConfigError("FSDP2 needs PyTorch >= 2.6; set distributed.fsdp = false", "distributed.fsdp")
        for module in list(model.modules()):
            if isinstance(module, nn.ModuleList):
                for block in module:
                    fully_shard(block)
        fully_shard(model)
        return model
    device_ids = [world.device.index] if world.device.type == "cuda" else None
    unused = unused_parameters(model, sample) if sample is not None else []
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=bool(unused))


def unwrap(model: nn.Module) -> nn.Module:
    """The user's module under DDP / torch.compile wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def no_sync(model: nn.Module, world: World, skip: bool):
    """Skip the gradient all-reduce on all but the last micro-batch of an accumulated step."""
    if not skip or not world.distributed:
        return contextlib.nullcontext()
    if isinstance(model, nn.parallel.DistributedDataParallel):
        return model.no_sync()
    if world.fsdp and hasattr(model, "set_requires_gradient_sync"):
        return _fsdp_no_sync(model)
    return contextlib.nullcontext()


@contextlib.contextmanager
def _fsdp_no_sync(model):
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def full_state_dicts(model: nn.Module, optimizer: torch.optim.Optimizer, world: World) -> tuple[dict, dict]:
    """Unsharded model and optimiser state (a collective under FSDP: every rank must call it)."""
    if world.fsdp:
        from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                             get_optimizer_state_dict)

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return (get_model_state_dict(model, options=options),
                get_optimizer_state_dict(model, optimizer, options=options))
    return unwrap(model).state_dict(), optimizer.state_dict()


def load_full_state_dicts(model: nn.Module, optimizer: torch.optim.Optimizer, model_state: dict,
                          optimizer_state: dict, world: World) -> None:
    if world.fsdp:
        from torch.distributed.checkpoint.state_dict import (StateDictOptions, set_model_state_dict,
                                                             set_optimizer_state_dict)

        options = StateDictOptions(full_state_dict=True)
        set_model_state_dict(model, model_state, options=options)
        set_optimizer_state_dict(model, optimizer, optimizer_state, options=options)
        return
    unwrap(model).load_state_dict(model_state, strict=True)
    optimizer.load_state_dict(optimizer_state)
