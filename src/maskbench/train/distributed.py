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
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, set_model_state_dict
from torch.distributed.tensor import DTensor, distribute_tensor

from ..errors import CheckpointError, ConfigError
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


def repeated_blocks(model: nn.Module) -> list[nn.Module]:
    """The elements of the outermost `nn.ModuleList`s (transformer blocks), not the lists inside a block.

    FSDP2 shards bottom-up: a module inside one already given to `fully_shard` cannot be sharded after it
    (T5's `block[i].layer[j]` failed so), and one unit per block is the intended granularity anyway.
    """
    blocks = []
    for child in model.children():
        if isinstance(child, nn.ModuleList):
            blocks.extend(child)
        else:
            blocks.extend(repeated_blocks(child))
    return blocks


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
        for block in repeated_blocks(model):
            # A table inside a block that the stack looks up outside the block's forward (T5's relative
            # position bias, owned by block 0) needs its own unit, or its shards meet unsharded inputs.
            for table in block.modules():
                if isinstance(table, nn.Embedding):
                    fully_shard(table)
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


def full_model_state(model: nn.Module, world: World) -> dict:
    """The unsharded model state (under FSDP a collective; only rank 0 gets it, the others an empty dict)."""
    if world.fsdp:
        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return unwrap(model).state_dict()


def full_state_dicts(model: nn.Module, optimizer: torch.optim.Optimizer, world: World) -> tuple[dict, dict]:
    """Unsharded model and optimiser state, in the format of `module.state_dict()` / `optimizer.state_dict()`.

    Under FSDP this is a collective (every rank must call it) and only rank 0 gets the state (the others get
    empty dicts). The optimiser state keeps `optimizer.state_dict()`'s integer parameter ids (not the FQNs
    torch.distributed.checkpoint would use), so a checkpoint written under FSDP is the same as a DDP or
    single-process one, and each loads the other.
    """
    if world.fsdp:
        model_state = full_model_state(model, world)
        local = optimizer.state_dict()  # the same parameter order (and so the same entries) on every rank
        state: dict = {}
        for key, entries in local["state"].items():
            full = state[key] = {}  # only rank 0's is kept
            for name, value in entries.items():
                if isinstance(value, DTensor):
                    value = value.full_tensor()  # an all-gather: every rank takes part, one tensor at a time
                if world.is_main:
                    full[name] = value.cpu() if isinstance(value, torch.Tensor) else value
        optimizer_state = {"state": state, "param_groups": local["param_groups"]} if world.is_main else {}
        return model_state, optimizer_state
    return unwrap(model).state_dict(), optimizer.state_dict()


def load_full_state_dicts(model: nn.Module, optimizer: torch.optim.Optimizer, model_state: dict,
                          optimizer_state: dict, world: World) -> None:
    """Load what `full_state_dicts` wrote (under FSDP: on every rank, each keeping its own shards)."""
    if world.fsdp:
        set_model_state_dict(model, model_state, options=StateDictOptions(full_state_dict=True))
        params = [p for group in optimizer.param_groups for p in group["params"]]
        state: dict = {}
        for key, entries in optimizer_state["state"].items():
            if not 0 <= int(key) < len(params):
                raise CheckpointError(f"the optimiser state names parameter {key}; the model has {len(params)}")
            param = params[int(key)]
            shards = {}
            for name, value in entries.items():
                if isinstance(param, DTensor) and isinstance(value, torch.Tensor) and value.dim() > 0:
                    if value.shape != param.shape:
                        raise CheckpointError(f"optimiser state {name} of parameter {key} has shape "
                                         f"{tuple(value.shape)}, the parameter {tuple(param.shape)}")
                    # Every rank read the whole checkpoint: each keeps its own slice, no communication.
                    value = distribute_tensor(value.to(param.device), param.device_mesh, param.placements,
                                              src_data_rank=None)
                shards[name] = value
            state[key] = shards
        optimizer.load_state_dict({"state": state, "param_groups": optimizer_state["param_groups"]})
        return
    unwrap(model).load_state_dict(model_state, strict=True)
    optimizer.load_state_dict(optimizer_state)
