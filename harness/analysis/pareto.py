"""The Pareto front of a sweep: the points no other point beats on both task gain and forgetting.

A point *dominates* another when its gain is at least as high and its forgetting at least as
low, and one of the two strictly so. The front is every point that nothing dominates, so two
points with equal gain and equal forgetting are both on it (neither beats the other), while of
two points with equal gain the one that forgot less is on it alone.

Points with no gain are left out (a point whose evaluation failed). When no point has a
forgetting number (a sweep without benchmarks) the front is the points of highest gain.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

Point = tuple[Optional[float], Optional[float]]  # (gain, forgetting) in points; None: not measured


def _known(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether `a` = (gain, forgetting) beats `b`: no worse on both, better on one."""
    return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])


def pareto_front(points: Sequence[Point]) -> list[bool]:
    """For each (gain, forgetting) point: whether it is on the front (higher gain, lower forgetting).

    Args:
        points: (gain, forgetting) per point, in points; either may be None or NaN.

    Returns:
        One flag per input point, in input order.
    """
    if not any(_known(f) for _, f in points):
        gains = [g for g, _ in points if _known(g)]
        best = max(gains, default=None)
        return [_known(g) and g == best for g, _ in points]
    usable = [(g, f) if _known(g) and _known(f) else None for g, f in points]
    # Quadratic, which is fine: a grid a CPU can train has tens of points, not thousands.
    return [p is not None and not any(q is not None and dominates(q, p) for q in usable) for p in usable]
