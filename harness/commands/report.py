"""`harness report RUN_DIR [--out FILE]`: the self-contained HTML report of a saved run.

Reads only the run log (run.json, items.jsonl, and verdict.json / leaks.jsonl when present):
no model and no torch, so it takes seconds even for 10k items. Top-level imports stay light.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def report(run_dir: Path = typer.Argument(..., help="Run folder written by `harness run` or `harness compare`."),
           out: Optional[Path] = typer.Option(None, "--out", "-o",
                                              help="HTML file to write, or a folder for report.html "
                                                   "(default: RUN_DIR/report.html)."),
           policy: Optional[Path] = typer.Option(None, "--policy", "-p",
                                                 help="Gate policy whose confidence and bootstrap settings to use "
                                                      "(default: those of the gate that wrote verdict.json)."),
           force: bool = typer.Option(False, "--force", help="Replace an --out file that is not a harness report.")) -> None:
    """Render a self-contained HTML report (opens offline, loads nothing) and print its path.

    Exit codes: 0 written; 2 error (missing or corrupt run log, incomparable models, bad policy, unwritable --out).
    """
    from harness.outputs.report.html import render_report

    typer.echo(str(render_report(run_dir, out, policy, force=force)))


def register(app: typer.Typer) -> None:
    """Adds `report` to the harness CLI."""
    app.command("report")(report)
