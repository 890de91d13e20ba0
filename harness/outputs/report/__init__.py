"""The HTML report: one self-contained file per run folder, rendered from the saved run log.

    from harness.outputs.report import render_report
    render_report("runs/cmp")                 # -> runs/cmp/report.html

`harness.outputs.report.view.build_view` gives the view model the page is drawn from; its numbers
are the `harness.analysis.comparison.Comparison` that summary.md and the gate use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def render_report(run_dir: str | Path, out: str | Path | None = None, policy: Any = None, **kwargs: Any) -> Path:
    """See `harness.outputs.report.html.render_report` (imported lazily: jinja2 and numpy load on use)."""
    from harness.outputs.report.html import render_report as _render

    return _render(run_dir, out, policy, **kwargs)


__all__ = ["render_report"]
