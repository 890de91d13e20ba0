"""The one number formatter: gate reasons, the terminal, summary.md and report.html.

They all print the same `DeltaRow`s; formatting them with the same functions is what keeps a
reader from seeing 1.23 in one place and 1.2 in another. The rules:

- points (100 x a 0..1 score): two decimals, `+` on deltas and bounds: `71.25`, `-1.40`;
- p-values: three decimals from 0.001 up (`0.042`), below that two significant digits
  (`0.00042`, `1.2e-07` once Python's `g` format switches to an exponent);
- minimum detectable effects: as points, `more than 100` beyond 100 (no change of a 0..1
  score that large exists, so the exact number means nothing);
- design effects (clustered tasks): two decimals, after the test and the cluster count;
- "n/a" for a missing or NaN value.

This module sits below analysis and outputs (it imports nothing of harness), so the gate's
reasons and the renderings share it without an upward import.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

MDE_CAP = 100.0  # beyond 100 points no change of a 0..1 score is detectable


def pts(x: float | None, signed: bool = False) -> str:
    """Points with two decimals ("n/a" for None or NaN); `signed` adds the + sign."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:+.2f}" if signed else f"{x:.2f}"


def pval(p: float | None) -> str:
    """A p-value: three decimals, or two significant digits below 0.001."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "n/a"
    return f"{p:.2g}" if p < 0.001 else f"{p:.3f}"


def mde(x: float | None) -> str:
    """A minimum detectable effect in points ("more than 100" beyond the scale)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return pts(x) if x <= MDE_CAP else f"more than {MDE_CAP:.0f}"


def test_label(row: Any) -> str:
    """A DeltaRow's test; with clusters also their count and the design effect:
    `cluster-sign-flip, 29 clusters, DE 1.71`."""
    if getattr(row, "clusters", None) is None:
        return str(row.test)
    de = row.design_effect
    return f"{row.test}, {row.clusters} clusters, DE " + ("n/a" if de is None or not math.isfinite(de) else f"{de:.2f}")


def seconds(x: float | None) -> str:
    """A duration: ms below one second, s with two decimals below a minute, else m and s."""
    if x is None or not math.isfinite(x):
        return "n/a"
    if x < 1:
        return f"{x * 1000:.0f} ms"
    if x < 60:
        return f"{x:.2f} s"
    minutes, secs = divmod(x, 60)
    if minutes < 60:
        return f"{minutes:.0f} m {secs:.0f} s"
    return f"{minutes // 60:.0f} h {minutes % 60:.0f} m"


def size(n: int) -> str:
    """Bytes as B/kB/MB (powers of 1000, as file managers show them)."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"  # unreachable


@dataclass(frozen=True)
class Tone:
    """How a delta reads: its direction and whether the bounds exclude zero.

    Attributes:
        arrow: "▲" (delta > 0), "▼" (delta < 0) or "" (no change): the raw direction.
        good: True when the change is an improvement (respects higher_is_better), False
            when it is a regression, None when there is no change.
        sure: True when the one-sided bounds of the delta exclude zero.
        css: Class name for colouring: better/worse (sure) or better-weak/worse-weak, or flat.
        words: Plain-language reading for screen readers and tooltips.
    """

    arrow: str
    good: bool | None
    sure: bool
    css: str
    words: str


def tone(row: Any) -> Tone:
    """The `Tone` of a `harness.analysis.comparison.DeltaRow`."""
    delta = row.delta
    if delta is None or not math.isfinite(delta) or delta == 0:
        return Tone("", None, False, "flat", "no change")
    good = (delta > 0) == bool(row.higher_is_better)
    # The bounds are of the delta (not the gain): a sure change has both on the same side of 0.
    sure = (row.ci_low > 0) if delta > 0 else (row.ci_high < 0)
    arrow = "▲" if delta > 0 else "▼"
    css = ("better" if good else "worse") + ("" if sure else "-weak")
    words = ("improvement" if good else "regression") + ("" if sure else " (bounds include 0)")
    return Tone(arrow, good, sure, css, words)


@dataclass(frozen=True)
class Cells:
    """The formatted cells of one DeltaRow, as both summary.md and report.html print them."""

    n: str
    base: str
    score: str
    delta: str
    ci_low: str
    ci_high: str
    p_value: str
    p_holm: str
    mde: str
    test: str

    @property
    def bounds(self) -> str:
        return f"{self.ci_low} … {self.ci_high}"


def cells(row: Any) -> Cells:
    """Formats a `harness.analysis.comparison.DeltaRow` (points; p-values as probabilities)."""
    return Cells(n=str(row.n), base=pts(row.base), score=pts(row.score), delta=pts(row.delta, True),
                 ci_low=pts(row.ci_low, True), ci_high=pts(row.ci_high, True), p_value=pval(row.p_value),
                 p_holm=pval(row.p_holm), mde=mde(row.mde), test=test_label(row))
