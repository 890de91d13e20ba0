"""Data-parallel evaluation under `accelerate launch` / `torchrun`: split work, merge on every rank.

The launcher (not harness) starts one process per device and sets RANK, WORLD_SIZE and
LOCAL_RANK; each process loads its own copy of the model. Work is split in whole units
(a generation batch, a chunk of log-likelihood requests) exactly as a single process
would form them, so every unit is computed with the same batch composition and padding
as in a one-process run, and the merged results are the same numbers. Rank 0 alone writes
the run folder, gates and reports; each rank writes the units it computed to the result
cache (SQLite in WAL mode takes concurrent writers on one machine; across machines give
each node its own HARNESS_HOME, see docs/scale-out.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class Dist:
    """This process's place in a launch: rank r of `world` processes (1 = no launcher)."""

    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def mine(self, n: int) -> list[int]:
        """Indices of the units of `n` that this rank computes (round robin: units come
        longest first, so each rank gets a similar share of the work)."""
        return list(range(self.rank, n, self.world))

    def map(self, fn: Callable[[T], R], units: Sequence[T]) -> list[R]:
        """`[fn(u) for u in units]`, each unit computed on one rank, the list on every rank."""
        if self.world == 1:
            return [fn(u) for u in units]
        done = {i: fn(units[i]) for i in self.mine(len(units))}
        merged: dict[int, R] = {}
        for part in self.all_gather(done):
            merged.update(part)
        return [merged[i] for i in range(len(units))]

    def union(self, indices: Sequence[int]) -> list[int]:
        """The sorted union of every rank's `indices`: what still needs computing, agreed.

        Ranks read the shared cache at slightly different moments (another rank may just
        have committed a unit), so each rank's own to-do list can differ; computing the union
        keeps every rank on the same units, and a unit computed twice gives the same numbers.
        """
        if self.world == 1:
            return list(indices)
        return sorted({i for part in self.all_gather(list(indices)) for i in part})

    def all_gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order, on every rank."""
        if self.world == 1:
            return [obj]
        import torch.distributed as td

        out: list[Any] = [None] * self.world
        td.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as td

            td.barrier()


_STATE: dict[str, Dist] = {}


def current() -> Dist:
    """The launch this process is part of; starts the process group on first use.

    gloo when the ranks run on CPUs, nccl on GPUs (one per rank, by LOCAL_RANK).
    """
    if "dist" in _STATE:
        return _STATE["dist"]
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        _STATE["dist"] = Dist()
        return _STATE["dist"]
    import torch
    import torch.distributed as td

    if not td.is_initialized():
        gpu = torch.cuda.is_available() and os.environ.get("ACCELERATE_USE_CPU", "").lower() not in ("1", "true")
        if gpu:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
        td.init_process_group(backend="nccl" if gpu else "gloo")
    _STATE["dist"] = Dist(rank=td.get_rank(), world=td.get_world_size())
    return _STATE["dist"]


def describe(dist: Dist) -> dict[str, Any]:
    """run.json `provenance.distributed`: how many processes computed the run."""
    return {"world_size": dist.world}
