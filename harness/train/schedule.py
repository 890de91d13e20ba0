"""Deterministic data order and the learning-rate schedule.

Data order is a pure function of (seed, epoch, sequence lengths): epoch e shuffles with a
torch generator seeded `epoch_seed(seed, e)`, so a resumed run rebuilds the exact batch
list of the epoch it stopped in and skips the optimizer steps already taken, and
training.json can state the order by its seeds.
"""

from __future__ import annotations

import math
from typing import Callable

GROUP_WINDOW = 32  # batches per window when grouping by length


def epoch_seed(seed: int, epoch: int) -> int:
    """The generator seed of one epoch's shuffle (recorded in training.json)."""
    return (seed * 1_000_003 + epoch) % (2**63)


def epoch_batches(lengths: list[int], batch_size: int, seed: int, epoch: int,
                  group_by_length: bool = False) -> list[list[int]]:
    """Sample indices of every micro-batch of one epoch, in training order.

    Args:
        lengths: Token count of each training sample.
        batch_size: Samples per micro-batch (the last one may be smaller).
        seed: The training seed.
        epoch: 0-based epoch.
        group_by_length: Inside windows of GROUP_WINDOW batches of the shuffled order,
            sort by length before cutting batches (less padding), then shuffle the batch
            order, so long and short batches still alternate at random.
    """
    import torch

    gen = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    order = torch.randperm(len(lengths), generator=gen).tolist()
    if not group_by_length:
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    window = batch_size * GROUP_WINDOW
    batches: list[list[int]] = []
    for w in range(0, len(order), window):
        chunk = sorted(order[w:w + window], key=lambda i: -lengths[i])  # stable: ties keep shuffled order
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    perm = torch.randperm(len(batches), generator=gen).tolist()
    return [batches[i] for i in perm]


def steps_per_epoch(n_samples: int, batch_size: int, grad_accum: int) -> int:
    """Optimizer steps in one epoch (a last, short accumulation group still steps)."""
    return math.ceil(math.ceil(n_samples / batch_size) / grad_accum)


def lr_lambda(kind: str, total_steps: int, warmup: int) -> Callable[[int], float]:
    """Multiplier of the base LR at optimizer step s (0-based), for torch's LambdaLR.

    Warmup rises linearly to 1 over `warmup` steps starting above 0 (no step is spent at
    LR 0); then `linear` falls towards 0 (the last step still has a small positive LR),
    `cosine` follows half a cosine, `constant` stays at 1.
    """

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if kind == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total_steps - warmup)
        if kind == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return f
