"""report.html of a sweep folder: the gain/forgetting chart and one table row per point.

Drawn from sweep.json alone (no model, no torch), with the same escaping and Content-Security-
Policy rules as a run's report (`harness.outputs.report.html`); the page has no script, so its
policy allows none. Each row links to the point's own run report.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from markupsafe import Markup

from harness import fmt
from harness.log.schema import SweepDoc
from harness.outputs.report.scatter import Dot, tradeoff_chart

TEMPLATES = Path(__file__).with_name("templates")
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'none'; base-uri 'none'; form-action 'none'"


@dataclass(frozen=True)
class PointRow:
    """One table row, every cell already text."""

    number: int
    name: str
    link: str | None  # the point's report.html, relative to the sweep folder
    values: list[str]  # one per grid key
    gain: str
    forgetting: str
    per_task: str
    front: str  # "front" | "dominated" | "" (not measured)
    status: str
    seconds: str


def _rows(doc: SweepDoc, folder: Path) -> list[PointRow]:
    from harness.sweep_grid import value_text

    rows = []
    for i, p in enumerate(doc.points, 1):
        spread = f" ± {fmt.pts(p.gain_sd_points)}" if p.gain_sd_points is not None else ""
        gain = fmt.pts(p.gain_points, True) + spread
        report = Path(p.run) / "report.html"
        rows.append(PointRow(
            number=i, name=p.name, link=report.as_posix() if p.run and (folder / report).is_file() else None,
            values=[value_text(p.settings.get(k)) for k in doc.grid], gain=gain if p.status == "done" else "",
            forgetting=fmt.pts(p.forgetting_points, True) if p.status == "done" else "",
            per_task=", ".join(f"{t} {fmt.pts(v, True)}" for t, v in p.forgetting_per_task.items()),
            front="" if p.on_front is None else ("front" if p.on_front else "dominated"),
            status=p.status + (f": {p.error}" if p.error else ""), seconds=fmt.seconds(p.seconds)))
    return rows


def _chart(doc: SweepDoc) -> Markup:
    dots = [Dot(i, p.name, p.gain_points, p.forgetting_points, bool(p.on_front))
            for i, p in enumerate(doc.points, 1)
            if p.status == "done" and p.gain_points is not None and p.forgetting_points is not None]
    return tradeoff_chart(dots, f"task gain ({doc.gain_task} {doc.gain_metric}) against forgetting")


def _setup(doc: SweepDoc) -> list[tuple[str, str]]:
    return [("base", doc.base), ("training data", doc.train), ("training data sha256", doc.train_sha256),
            ("settings every point starts from", doc.config or "defaults of harness train"),
            ("suites", ", ".join(doc.suites)), ("benchmarks", ", ".join(doc.benches) or "none"),
            ("seeds", ", ".join(map(str, doc.seeds))), ("limit", "all items" if doc.limit is None else str(doc.limit)),
            ("command", " ".join(doc.command))]


def render_sweep_html(doc: SweepDoc, folder: Path) -> str:
    """The sweep report of `doc` (the sweep in `folder`) as one HTML document."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    from harness import __version__

    # An environment of its own: the page shares the run report's stylesheet, not its macros.
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    css = (TEMPLATES / "report.css").read_text(encoding="utf-8")
    return env.get_template("sweep.html.j2").render(
        doc=doc, rows=_rows(doc, folder), chart=_chart(doc), setup=_setup(doc), folder=str(folder),
        version=__version__, csp=CSP, css=Markup(css), rendered=time.strftime("%Y-%m-%d %H:%M"),
        done=sum(p.status == "done" for p in doc.points))


def render_sweep_report(out: str | Path, *, force: bool = False) -> Path:
    """Writes OUT/report.html for the sweep folder OUT (from its sweep.json); returns its path.

    Raises:
        HarnessError: No readable sweep.json, or a report.html there that harness did not write
            (without `force`), or one that cannot be written.
    """
    from harness.log.folder import REPORT, atomic_write
    from harness.outputs.report.html import check_report_target
    from harness.sweep import read_sweep

    folder = Path(out)
    doc = read_sweep(folder)
    target = check_report_target(folder, folder / REPORT, force)
    atomic_write(target, [render_sweep_html(doc, folder).encode("utf-8", "replace").decode("utf-8")])
    return target
