"""Inline SVG charts, written as strings: no chart library, no script, nothing fetched.

Every piece of text that reaches a chart (subject names, model names, units) goes through
`_esc`, and numbers are formatted by this module, so a chart is as safe to inline as the
rest of the page. Functions return `markupsafe.Markup` for the template.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

from markupsafe import Markup

from harness import fmt

# Colours match report.css: better, worse, their "bounds include 0" variants, and neutral.
GOOD, BAD, GOOD_WEAK, BAD_WEAK, FLAT = "#1a7f37", "#cf222e", "#8fd19e", "#f4a3a8", "#8c959f"
SERIES = ("#57606a", "#0969da", "#bf8700", "#8250df", "#1b7c83")
FONT = "font-family=\"system-ui,-apple-system,'Segoe UI',Roboto,sans-serif\" font-size=\"11\""


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _n(x: float) -> str:
    """Coordinates with one decimal: enough for a screen, short in the file."""
    return f"{x:.1f}".rstrip("0").rstrip(".") if math.isfinite(x) else "0"


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (1, 2, 2.5 or 5 times a power of ten apart)."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(count - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks, t = [], start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 10))
        t += step
    if ticks[-1] < hi:
        ticks.append(round(t, 10))
    return ticks


def _tick_label(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000 or abs(v) < 0.01:
        return f"{v:.2g}"
    return f"{v:g}"


@dataclass(frozen=True)
class Frame:
    """A plot area (left, top, width pw, height ph) over data ranges; sx/sy map data to pixels."""

    left: float
    top: float
    pw: float
    ph: float
    x_lo: float
    x_hi: float
    y_lo: float
    y_hi: float

    def sx(self, v: float) -> float:
        return self.left + (v - self.x_lo) / (self.x_hi - self.x_lo) * self.pw

    def sy(self, v: float) -> float:
        return self.top + self.ph - (v - self.y_lo) / (self.y_hi - self.y_lo) * self.ph


def _svg(width: float, height: float, label: str, body: Iterable[str]) -> Markup:
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {_n(width)} {_n(height)}" '
            f'width="{_n(width)}" height="{_n(height)}" role="img" aria-label="{_esc(label)}" {FONT}>'
            f"<title>{_esc(label)}</title>")
    return Markup(head + "".join(body) + "</svg>")


def delta_bars(rows: Sequence, label_of, title: str, *, label_width: int = 230, plot_width: int = 360) -> Markup:
    """Horizontal bars of each row's delta (points) with a whisker over its one-sided bounds.

    Args:
        rows: `DeltaRow`s (delta, ci_low, ci_high, higher_is_better, n).
        label_of: Row -> label text (e.g. the subject).
        title: Accessible name of the chart.
        label_width: Room for labels on the left, px.
        plot_width: Width of the bar area, px.
    """
    row_h, top, value_w = 17, 22, 110
    extent = max([1.0] + [abs(v) for r in rows for v in (r.delta, r.ci_low, r.ci_high)
                          if v is not None and math.isfinite(v)])
    extent = min(extent, 100.0)
    ticks = [t for t in nice_ticks(-extent, extent, 5) if -extent <= t <= extent] or [0.0]
    height = top + row_h * len(rows) + 8
    width = label_width + plot_width + value_w

    def x(v: float) -> float:
        v = max(-extent, min(extent, v))
        return label_width + (v + extent) / (2 * extent) * plot_width

    body = []
    for t in ticks:
        body.append(f'<line x1="{_n(x(t))}" x2="{_n(x(t))}" y1="{top - 4}" y2="{_n(height - 6)}" '
                    f'stroke="{"#57606a" if t == 0 else "#d0d7de"}" stroke-width="{1 if t == 0 else 0.5}"/>')
        body.append(f'<text x="{_n(x(t))}" y="{top - 8}" text-anchor="middle" fill="#57606a">'
                    f"{_esc(_tick_label(t))}</text>")
    for i, r in enumerate(rows):
        y = top + i * row_h
        tone = fmt.tone(r)
        colour = {"better": GOOD, "worse": BAD, "better-weak": GOOD_WEAK, "worse-weak": BAD_WEAK}.get(tone.css, FLAT)
        x0, x1 = sorted((x(0), x(r.delta)))
        name = label_of(r)
        tip = (f"{name}: Δ {fmt.pts(r.delta, True)} points, bounds {fmt.pts(r.ci_low, True)} … "
               f"{fmt.pts(r.ci_high, True)}, n={r.n} ({tone.words})")
        body.append(f"<g><title>{_esc(tip)}</title>")
        body.append(f'<text x="{label_width - 6}" y="{_n(y + 12)}" text-anchor="end" fill="#1f2328">'
                    f"{_esc(_clip(name, 38))}</text>")
        body.append(f'<rect x="{_n(x0)}" y="{_n(y + 3)}" width="{_n(max(x1 - x0, 1))}" height="{row_h - 6}" '
                    f'fill="{colour}"/>')
        if math.isfinite(r.ci_low) and math.isfinite(r.ci_high):
            body.append(f'<line x1="{_n(x(r.ci_low))}" x2="{_n(x(r.ci_high))}" y1="{_n(y + row_h / 2)}" '
                        f'y2="{_n(y + row_h / 2)}" stroke="#1f2328" stroke-width="1"/>')
        body.append(f'<text x="{label_width + plot_width + 8}" y="{_n(y + 12)}" fill="#1f2328">'
                    f"{_esc(fmt.pts(r.delta, True))} {_esc(tone.arrow)} <tspan fill=\"#57606a\">n={r.n}</tspan>"
                    "</text></g>")
    return _svg(width, height, title, body)


def _clip(text: str, n: int) -> str:
    text = str(text)
    return text if len(text) <= n else text[: n - 1] + "…"


def line_chart(series: Sequence[tuple[str, Sequence[tuple[float, float]], bool]], title: str, *,
               x_label: str = "step", y_label: str = "loss", width: int = 560, height: int = 240) -> Markup:
    """Lines over a shared x axis, e.g. training and validation loss.

    Args:
        series: (name, [(x, y), ...], dashed) per line.
        title: Accessible name of the chart.
        x_label: Axis title under the x axis.
        y_label: Axis title beside the y axis.
    """
    left, right, top, bottom = 52, 120, 12, 36
    pts = [p for _, points, _ in series for p in points if math.isfinite(p[0]) and math.isfinite(p[1])]
    if not pts:
        return Markup("")
    x_lo, x_hi = min(p[0] for p in pts), max(p[0] for p in pts)
    y_lo, y_hi = min(p[1] for p in pts), max(p[1] for p in pts)
    if x_hi == x_lo:
        x_hi = x_lo + 1
    if y_hi == y_lo:
        y_lo, y_hi = y_lo - 0.5, y_hi + 0.5
    x_ticks, y_ticks = nice_ticks(x_lo, x_hi, 6), nice_ticks(y_lo, y_hi, 5)
    x_lo, x_hi = min(x_ticks[0], x_lo), max(x_ticks[-1], x_hi)
    y_lo, y_hi = min(y_ticks[0], y_lo), max(y_ticks[-1], y_hi)
    frame = Frame(left, top, width - left - right, height - top - bottom, x_lo, x_hi, y_lo, y_hi)
    pw, ph, sx, sy = frame.pw, frame.ph, frame.sx, frame.sy

    body = []
    for t in y_ticks:
        body.append(f'<line x1="{left}" x2="{left + pw}" y1="{_n(sy(t))}" y2="{_n(sy(t))}" stroke="#d0d7de" '
                    'stroke-width="0.5"/>')
        body.append(f'<text x="{left - 6}" y="{_n(sy(t) + 4)}" text-anchor="end" fill="#57606a">'
                    f"{_esc(_tick_label(t))}</text>")
    for t in x_ticks:
        body.append(f'<text x="{_n(sx(t))}" y="{top + ph + 14}" text-anchor="middle" fill="#57606a">'
                    f"{_esc(_tick_label(t))}</text>")
    body.append(f'<line x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}" stroke="#57606a"/>')
    body.append(f'<text x="{left + pw / 2}" y="{height - 4}" text-anchor="middle" fill="#57606a">'
                f"{_esc(x_label)}</text>")
    body.append(f'<text x="12" y="{top + ph / 2}" text-anchor="middle" fill="#57606a" '
                f'transform="rotate(-90 12 {_n(top + ph / 2)})">{_esc(y_label)}</text>')
    for k, (name, points, dashed) in enumerate(series):
        colour = SERIES[(k + 1) % len(SERIES)]
        good = [p for p in points if math.isfinite(p[0]) and math.isfinite(p[1])]
        if not good:
            continue
        path = " ".join(f"{_n(sx(a))},{_n(sy(b))}" for a, b in good)
        dash = ' stroke-dasharray="5 3"' if dashed else ""
        body.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.6"{dash}/>')
        if len(good) == 1:
            body.append(f'<circle cx="{_n(sx(good[0][0]))}" cy="{_n(sy(good[0][1]))}" r="2.5" fill="{colour}"/>')
        ly = top + 10 + 16 * k
        body.append(f'<line x1="{left + pw + 10}" x2="{left + pw + 30}" y1="{ly}" y2="{ly}" stroke="{colour}" '
                    f'stroke-width="2"{dash}/>')
        body.append(f'<text x="{left + pw + 35}" y="{ly + 4}" fill="#1f2328">{_esc(_clip(name, 14))}</text>')
    return _svg(width, height, title, body)


def histogram(samples: dict[str, Sequence[float]], title: str, unit: str, *, bins: int = 16, width: int = 360,
              height: int = 150) -> Markup:
    """Grouped histogram of one quantity per model (shared bins), e.g. output length.

    Args:
        samples: model -> values.
        title: Accessible name of the chart.
        unit: Axis title (e.g. "new tokens").
        bins: Number of bins.
    """
    values = [v for vs in samples.values() for v in vs if math.isfinite(v)]
    if not values:
        return Markup("")
    left, right, top, bottom = 34, 8, 18, 30
    lo, hi = min(values), max(values)
    if hi == lo:
        lo, hi = lo - 0.5, hi + 0.5
    step = (hi - lo) / bins
    counts = {}
    for model, vs in samples.items():
        c = [0] * bins
        for v in vs:
            if math.isfinite(v):
                c[min(int((v - lo) / step), bins - 1)] += 1
        counts[model] = c
    peak = max(max(c) for c in counts.values()) or 1
    pw, ph = width - left - right, height - top - bottom
    slot = pw / bins
    bar = slot / max(len(counts), 1)
    body = [f'<line x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}" stroke="#57606a"/>',
            f'<text x="{left - 4}" y="{top + 4}" text-anchor="end" fill="#57606a">{peak}</text>',
            f'<text x="{left - 4}" y="{top + ph}" text-anchor="end" fill="#57606a">0</text>']
    for k, (model, c) in enumerate(counts.items()):
        colour = SERIES[k % len(SERIES)]
        for b, n in enumerate(c):
            if not n:
                continue
            h = n / peak * ph
            a, z = lo + b * step, lo + (b + 1) * step
            span = f"{_tick_label(round(a, 2))}–{_tick_label(round(z, 2))} {unit}"
            body.append(f'<rect x="{_n(left + b * slot + k * bar)}" y="{_n(top + ph - h)}" '
                        f'width="{_n(max(bar - 0.5, 0.5))}" height="{_n(h)}" fill="{colour}">'
                        f"<title>{_esc(model)}: {n} item(s) with {_esc(span)}</title></rect>")
        body.append(f'<rect x="{left + 6 + 90 * k}" y="3" width="9" height="9" fill="{colour}"/>'
                    f'<text x="{left + 18 + 90 * k}" y="11" fill="#1f2328">{_esc(_clip(model, 12))}</text>')
    body.append(f'<text x="{left}" y="{top + ph + 13}" text-anchor="start" fill="#57606a">'
                f"{_esc(_tick_label(round(lo, 2)))}</text>")
    body.append(f'<text x="{left + pw}" y="{top + ph + 13}" text-anchor="end" fill="#57606a">'
                f"{_esc(_tick_label(round(hi, 2)))}</text>")
    body.append(f'<text x="{left + pw / 2}" y="{height - 3}" text-anchor="middle" fill="#57606a">{_esc(unit)}</text>')
    return _svg(width, height, title, body)
