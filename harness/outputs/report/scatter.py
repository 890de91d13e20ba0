"""The sweep chart: task gain against forgetting, one dot per point, the Pareto front joined.

An inline SVG string like those of `harness.outputs.report.svg`, with the same rules: every
text passes through its escaping, numbers are formatted here, nothing is fetched or scripted.
Forgetting runs along x and gain up y, so the good corner is the upper left, where the front
(dashed, through its dots in order of forgetting) bounds the cloud.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from markupsafe import Markup

from harness import fmt
from harness.outputs.report.svg import GOOD, Frame, _esc, _n, _svg, _tick_label, nice_ticks

DOMINATED = "#8c959f"


@dataclass(frozen=True)
class Dot:
    """One point of the chart: its number in the table, name, gain and forgetting (points)."""

    number: int
    name: str
    gain: float
    forgetting: float
    on_front: bool


def _span(values: Sequence[float]) -> tuple[float, float]:
    """An axis range holding every value and 0, with a margin so no dot sits on the frame."""
    lo, hi = min([0.0, *values]), max([0.0, *values])
    pad = (hi - lo) * 0.08 or 1.0
    return lo - pad, hi + pad


def tradeoff_chart(dots: Sequence[Dot], title: str, *, width: int = 640, height: int = 380) -> Markup:
    """Scatter of gain (y) against forgetting (x); front dots filled and joined, the rest hollow.

    Args:
        dots: The measured points (gain and forgetting both known and finite).
        title: Accessible name of the chart.
    """
    dots = [d for d in dots if math.isfinite(d.gain) and math.isfinite(d.forgetting)]
    if not dots:
        return Markup("")
    left, right, top, bottom = 56, 150, 14, 44
    x_lo, x_hi = _span([d.forgetting for d in dots])
    y_lo, y_hi = _span([d.gain for d in dots])
    x_ticks = [t for t in nice_ticks(x_lo, x_hi, 6) if x_lo <= t <= x_hi]
    y_ticks = [t for t in nice_ticks(y_lo, y_hi, 5) if y_lo <= t <= y_hi]
    frame = Frame(left, top, width - left - right, height - top - bottom, x_lo, x_hi, y_lo, y_hi)
    pw, ph, sx, sy = frame.pw, frame.ph, frame.sx, frame.sy

    body = []
    for t in x_ticks:
        body.append(f'<line x1="{_n(sx(t))}" x2="{_n(sx(t))}" y1="{top}" y2="{top + ph}" '
                    f'stroke="{"#57606a" if t == 0 else "#d0d7de"}" stroke-width="{1 if t == 0 else 0.5}"/>')
        body.append(f'<text x="{_n(sx(t))}" y="{top + ph + 14}" text-anchor="middle" fill="#57606a">'
                    f"{_esc(_tick_label(t))}</text>")
    for t in y_ticks:
        body.append(f'<line x1="{left}" x2="{left + pw}" y1="{_n(sy(t))}" y2="{_n(sy(t))}" '
                    f'stroke="{"#57606a" if t == 0 else "#d0d7de"}" stroke-width="{1 if t == 0 else 0.5}"/>')
        body.append(f'<text x="{left - 6}" y="{_n(sy(t) + 4)}" text-anchor="end" fill="#57606a">'
                    f"{_esc(_tick_label(t))}</text>")
    body.append(f'<text x="{left + pw / 2}" y="{height - 6}" text-anchor="middle" fill="#57606a">'
                "forgetting: benchmark drop (points) → worse</text>")
    body.append(f'<text x="14" y="{_n(top + ph / 2)}" text-anchor="middle" fill="#57606a" '
                f'transform="rotate(-90 14 {_n(top + ph / 2)})">task gain (points) → better</text>')
    front = sorted((d for d in dots if d.on_front), key=lambda d: (d.forgetting, d.gain))
    if len(front) > 1:
        path = " ".join(f"{_n(sx(d.forgetting))},{_n(sy(d.gain))}" for d in front)
        body.append(f'<polyline class="pareto-front" points="{path}" fill="none" stroke="{GOOD}" '
                    'stroke-width="1.5" stroke-dasharray="5 3"/>')
    # Points with the same gain and forgetting share one dot (and are on or off the front
    # together), labelled with all their numbers instead of numbers printed over each other.
    groups: dict[tuple[float, float], list[Dot]] = {}
    for d in dots:
        groups.setdefault((d.forgetting, d.gain), []).append(d)
    for (forgetting, gain), same in sorted(groups.items(), key=lambda kv: kv[1][0].on_front):  # front on top
        cx, cy, on = sx(forgetting), sy(gain), same[0].on_front
        where = "on the Pareto front" if on else "dominated by another point"
        tip = "; ".join(f"#{d.number} {d.name}" for d in same)
        tip += f": gain {fmt.pts(gain, True)}, forgetting {fmt.pts(forgetting, True)} ({where})"
        numbers = ",".join(str(d.number) for d in same)
        style = (f'r="6" fill="{GOOD}" stroke="#1f2328" stroke-width="1"' if on
                 else f'r="5" fill="#fff" stroke="{DOMINATED}" stroke-width="1.5"')
        body.append(f'<g class="{"front" if on else "dominated"}" data-points="{numbers}"><title>{_esc(tip)}</title>'
                    f'<circle cx="{_n(cx)}" cy="{_n(cy)}" {style}/>'
                    f'<text x="{_n(cx + 8)}" y="{_n(cy - 6)}" fill="#1f2328">{numbers}</text></g>')
    lx = left + pw + 14
    body.append(f'<circle cx="{lx + 6}" cy="{top + 10}" r="6" fill="{GOOD}" stroke="#1f2328"/>'
                f'<text x="{lx + 18}" y="{top + 14}" fill="#1f2328">Pareto front</text>')
    body.append(f'<circle cx="{lx + 6}" cy="{top + 30}" r="5" fill="#fff" stroke="{DOMINATED}" stroke-width="1.5"/>'
                f'<text x="{lx + 18}" y="{top + 34}" fill="#1f2328">dominated</text>')
    body.append(f'<text x="{lx}" y="{top + 58}" fill="#57606a">numbers: rows of</text>'
                f'<text x="{lx}" y="{top + 72}" fill="#57606a">the table below</text>')
    return _svg(width, height, title, body)
