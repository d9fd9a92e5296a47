"""Several processes on PyTorch's distributed engine (DDP, launched by torchrun).

A process is part of a group when torchrun's environment says so (WORLD_SIZE > 1); the group
is joined once, with gloo on CPUs and NCCL on GPUs. Every rank trains on its slice of each
global batch, evaluation is sharded and gathered so that every rank sees the same metrics, and
only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from ctrdistill.errors import CtrDistillError


@dataclass(frozen=True)
class Group:
    rank: int
    world: int
    local_rank: int
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_world() -> int:
    """The number of processes torchrun started (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def restarted() -> bool:
    """Whether torchrun restarted this group after a failure (it then resumes)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0


def group(device: torch.device) -> Group | None:
    """This process's group (joined on first use), or None when running alone."""
    if launched_world() <= 1:
        return None
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        rank, world = int(os.environ["RANK"]), launched_world()
        dist.init_process_group(backend, store=_attempt_store(rank, world), rank=rank,
                                world_size=world)
    elif dist.get_backend() != backend:
        raise CtrDistillError(f"the process group runs {dist.get_backend()}, but device "
                              f"{device} needs {backend}")
    return Group(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")),
                 backend)


def _attempt_store(rank: int, world: int) -> dist.Store:
    """The rendezvous store, with keys of this attempt only: a group torchrun restarted would
    otherwise read the dead attempt's peer addresses from the agent's store, and a rank that
    starts before rank 0 has rewritten them connects to nobody (seen in about half of the
    restarts here)."""
    agent_hosts_it = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world,
                          is_master=rank == 0 and not agent_hosts_it)
    return dist.PrefixStore(f"ctrdistill/attempt-{os.environ.get('TORCHELASTIC_RESTART_COUNT', 0)}",
                            store)


def shard_bounds(n: int, rank: int, world: int) -> tuple[int, int]:
    """[start, end) of rank's contiguous share of n rows (the first n % world get one more)."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


def all_gather(value: Any) -> list[Any]:
    """Every rank's `value` (any picklable object), in rank order."""
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def gather(value: Any) -> list[Any] | None:
    """Every rank's `value` in rank order on rank 0 (None on the others)."""
    gathered: list[Any] | None = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(value, gathered, dst=0)
    return gathered


def broadcast(value: Any) -> Any:
    """Rank 0's `value` on every rank (the others pass anything, e.g. their own)."""
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    dist.barrier()
