"""Data-parallel training on several processes (``torchrun``): one run, one global batch, N ranks.

Launch: ``torchrun --nproc_per_node N -m dssl bench ...`` (or ``--nnodes``/``--rdzv-*`` for several
machines). Each rank reads ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and ``MASTER_ADDR/PORT`` from the
environment torchrun sets and joins the process group (NCCL on CUDA, gloo on the CPU).

What is split and what is global:

* ``optim.batch_size`` is the **global** batch; every rank draws ``batch_size / world_size`` images of it.
  The sampler walks the same seeded stream of draws on every rank and each rank keeps its slice of every
  global batch, and each view's randomness is seeded from its draw number, so the union of the ranks'
  batches is exactly the batch a single process would have drawn.
* Gradients are averaged over ranks after ``backward`` (one flattened all-reduce per dtype), so every rank
  applies the same update and the models stay identical, as with DDP. For losses that are means over
  the batch this is the gradient of the global-batch loss.
* Batch statistics that the objectives keep (DINO/UDI centres, Sinkhorn marginals, PaKA's batch kernels)
  are already reduced over ranks by their layers (:mod:`dssl.layers.centering`,
  :mod:`dssl.layers.sinkhorn`).
* Logged metrics are averaged over ranks at log intervals; only rank 0 logs to MLflow, writes
  checkpoints and evaluates.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistributedContext", "all_reduce_gradients", "context", "init_from_env", "mean_over_ranks"]


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in a data-parallel run.

    Attributes:
        rank: Global rank (0 logs, checkpoints and evaluates).
        world_size: Number of processes.
        local_rank: Rank on this machine (its GPU index on CUDA).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def local_batch_size(self, global_batch_size: int) -> int:
        """Images per rank; the global batch must split evenly.

        Raises:
            ConfigError: ``global_batch_size`` is not a multiple of the world size.
        """
        if global_batch_size % self.world_size:
            from dssl.errors import ConfigError

            raise ConfigError(
                f"optim.batch_size {global_batch_size} (the global batch) is not divisible by the "
                f"{self.world_size} processes of this run"
            )
        return global_batch_size // self.world_size


def context() -> DistributedContext:
    """The current process group's context (a single process when none is initialised)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistributedContext()
    return DistributedContext(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", dist.get_rank())),
    )


def init_from_env(device: torch.device) -> DistributedContext:
    """Join the process group torchrun describes in the environment (no-op for one process).

    Args:
        device: The run's device; NCCL for CUDA (each rank on ``cuda:LOCAL_RANK``), gloo otherwise.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1 or not dist.is_available():
        return context()
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
    return context()


def all_reduce_gradients(module: torch.nn.Module, world_size: int) -> None:
    """Average the gradients of ``module`` over ranks in place (one flattened all-reduce per dtype)."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for grad in grads:
        by_dtype.setdefault(grad.dtype, []).append(grad)
    for group in by_dtype.values():
        flat = torch.cat([g.reshape(-1) for g in group])
        dist.all_reduce(flat)
        flat.div_(world_size)
        offset = 0
        for grad in group:
            grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
            offset += grad.numel()


def mean_over_ranks(values: dict[str, torch.Tensor | float], device: torch.device) -> dict[str, float]:
    """Average scalar metrics over ranks (same keys on every rank)."""
    keys = sorted(values)
    stacked = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(stacked)
    stacked /= dist.get_world_size()
    return dict(zip(keys, stacked.tolist(), strict=True))


def any_rank(flag: bool, device: torch.device) -> bool:
    """Whether ``flag`` is true on at least one rank (every rank must call this at the same point)."""
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)
