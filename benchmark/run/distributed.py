"""Scale-out: one evaluation spread over the processes torchrun (or a SLURM job) starts.

Videos are dealt round-robin with no padding and no duplicates (DistributedSampler pads the last
batch with repeats, which PySlowFast and torchvision's references then count); rank 0 gathers the
per-video results and computes the metrics once.
"""

from __future__ import annotations

import logging
import os
import pickle
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _slurm_env() -> None:
    """Under a multi-task SLURM job (hydra-submitit-launcher) export torchrun's variables."""
    if "WORLD_SIZE" in os.environ or int(os.environ.get("SLURM_NTASKS", "1")) <= 1:
        return
    from submitit.helpers import TorchDistributedEnvironment  # the [slurm] extra

    TorchDistributedEnvironment().export()


def rank_from_env() -> int:
    """This process's rank as torchrun or SLURM number it, before any process group exists."""
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")))


def init(device_type: str) -> Ranks:
    """Join the process group when started by torchrun/SLURM; a single process otherwise."""
    _slurm_env()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    ranks = Ranks(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        backend = "nccl" if device_type.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(ranks.local_rank)
        dist.init_process_group(backend, timeout=timedelta(hours=2))
        log.info("rank %d of %d (%s)", ranks.rank, world, backend)
    return ranks


def shard(items: list, ranks: Ranks) -> list:
    """This rank's share: every world-th item, so each item is on exactly one rank."""
    return items[ranks.rank::ranks.world]


def broadcast(obj, ranks: Ranks):
    """Rank 0's ``obj`` on every rank."""
    if ranks.world == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def from_main(work, ranks: Ranks):
    """``work()`` on rank 0 only, its result on every rank. What it raises is raised on every
    rank: a refusal there (a live run in the run dir, a bad table, weights that cannot be
    found) stops the job with rank 0's one line on each rank, where the others would otherwise
    wait in their next collective (NCCL: until the process group's timeout) or die with gloo's
    "connection closed by peer" traceback."""
    if ranks.world == 1:
        return work()
    result, error, sent = None, None, None
    if ranks.is_main:
        try:
            result = work()
        except Exception as err:  # noqa: BLE001 - every rank raises it below
            error = sent = err
            try:
                pickle.dumps(err)
            except Exception:  # noqa: BLE001 - an exception that cannot travel: its words do
                sent = RuntimeError(f"{type(err).__name__}: {err}")
    result, shared = broadcast((result, sent), ranks)
    if error is not None:
        raise error  # rank 0: the original, with its traceback
    if shared is not None:
        raise shared
    return result


def gather(obj, ranks: Ranks) -> list | None:
    """Every rank's ``obj`` on rank 0 (in rank order); None on the others."""
    if ranks.world == 1:
        return [obj]
    out = [None] * ranks.world if ranks.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


def all_gather(obj, ranks: Ranks) -> list:
    """Every rank's ``obj`` on every rank (in rank order)."""
    if ranks.world == 1:
        return [obj]
    out = [None] * ranks.world
    dist.all_gather_object(out, obj)
    return out


def close(ranks: Ranks) -> None:
    if ranks.world > 1 and dist.is_initialized():
        dist.destroy_process_group()
