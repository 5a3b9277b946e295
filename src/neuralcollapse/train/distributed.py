"""Data-parallel training on torch.distributed, as launched by ``torchrun``.

``torchrun --nproc_per_node N -m neuralcollapse train ...`` starts N processes with the
environment variables ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; :func:`init_distributed`
reads them, joins the process group (NCCL on CUDA, gloo on CPU) and picks this process's
device. Without those variables everything runs as one process and no group is created.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist

from neuralcollapse.errors import ConfigError, UsageError

__all__ = [
    "DistContext",
    "average_gradients",
    "broadcast_buffers",
    "broadcast_object",
    "check_device_options",
    "check_same_frame",
    "init_distributed",
    "resolve_device",
    "shutdown_distributed",
]


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the group: rank, world size and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes logs, checkpoints and the progress bar."""
        return self.rank == 0

    @property
    def shard(self) -> tuple[int, int]:
        return self.rank, self.world_size


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"environment variable {name}={value!r} is not an integer") from None


def _device_for(requested: str, local_rank: int, distributed: bool) -> torch.device:
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise ConfigError(
            f"train.device={requested!r} is not a device; use auto, cpu or cuda"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device={requested!r} but CUDA is not available")
        if distributed:  # one process per GPU: the local rank picks it
            device = torch.device("cuda", local_rank)
    return device


def resolve_device(requested: str) -> torch.device:
    """The device of ``train.device`` for a single process (``auto``: CUDA if present)."""
    return _device_for(requested, 0, distributed=False)


def broadcast_object(value: object, context: DistContext) -> object:
    """Rank 0's ``value`` on every rank (e.g. a run directory named after the time)."""
    if not context.enabled:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def average_gradients(world_size: int) -> Callable[[list[torch.Tensor]], None]:
    """A function that replaces each given gradient by its mean over the ``world_size``
    processes of the group (an all-reduce per tensor)."""

    def average(grads: list[torch.Tensor]) -> None:
        for grad in grads:
            dist.all_reduce(grad)
            grad.div_(world_size)

    return average


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Give every process rank 0's buffers of ``module`` (BatchNorm running statistics),
    as DDP does before each forward pass, for loops that run without the DDP wrapper."""
    for buffer in module.buffers():
        dist.broadcast(buffer, src=0)


def init_distributed(requested_device: str, timeout_s: float) -> DistContext:
    """Join the torchrun process group if there is one, and choose this process's device.

    Args:
        requested_device: ``train.device`` (``auto``, ``cpu``, ``cuda``, ``cuda:1``).
        timeout_s: collective timeout; a rank that dies or hangs makes the others fail
            after at most this long instead of waiting forever.
    """
    world = _env_int("WORLD_SIZE", 1)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    device = _device_for(requested_device, local_rank, world > 1)
    if world == 1:
        return DistContext(device=device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo",
            timeout=datetime.timedelta(seconds=timeout_s),
        )
    return DistContext(rank, world, local_rank, device)


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def check_same_frame(frame: torch.Tensor, context: DistContext) -> None:
    """Every rank must hold the same fixed frame (it is drawn from the config's seed).

    Compares float64 checksums across ranks; a mismatch (e.g. ranks started with different
    seeds or configs) is an error naming the ranks.
    """
    if not context.enabled:
        return
    w = frame.detach().to(context.device, torch.float64)
    weights = torch.arange(1, w.numel() + 1, device=w.device, dtype=torch.float64)
    mine = torch.stack([w.sum(), (w.flatten() * weights).sum()])
    everyone = [torch.zeros_like(mine) for _ in range(context.world_size)]
    dist.all_gather(everyone, mine)
    reference = everyone[0]
    differ = [r for r, value in enumerate(everyone) if not torch.equal(value, reference)]
    if differ:
        raise UsageError(
            f"the fixed frame on rank(s) {differ} differs from rank 0's: every rank must use "
            "the same config and head.frame_seed / train.seed"
        )


def check_device_options(config, context: DistContext) -> None:
    """Options that need CUDA (``train.amp``, ``train.sync_bn`` under torchrun), checked
    against the device this process actually got."""
    amp = config.train.amp
    if amp != "off" and context.device.type != "cuda":
        raise ConfigError(
            f"train.amp={amp!r} needs a CUDA device, but training runs on "
            f"{context.device.type}; set train.amp=off"
        )
    if config.train.sync_bn and context.enabled and context.device.type != "cuda":
        raise ConfigError(
            "train.sync_bn=true needs CUDA devices (SyncBatchNorm has no CPU kernel); set "
            "train.sync_bn=false for gloo/CPU runs"
        )
