"""Renders a `ReportView` into one self-contained, offline HTML file.

Safety model: jinja2 autoescapes every value; the only strings marked safe are this
package's own CSS and script, the SVG from `harness.outputs.report.svg` (which escapes its text), and
the example data, serialised as JSON with `<`, `>` and `&` written as \\u escapes so no
string in it can end its <script> element. A Content-Security-Policy meta tag then allows no
network access at all, inline styles, `data:` images and exactly one script: ours, by hash.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from harness import fmt
from harness.errors import HarnessError
from harness.log.folder import REPORT, RunFolder, atomic_write
from harness.evaluate.forgetting.chat_format import describe as describe_format
from harness.outputs.report.svg import delta_bars, histogram, line_chart
from harness.outputs.report.view import ReportView, build_view

TEMPLATES = Path(__file__).with_name("templates")
FLIP_TEXT = 240  # characters of an output shown in the flips table (the examples show all)


@lru_cache(maxsize=1)
def _static() -> tuple[str, str]:
    """(css, js) of the page, read once."""
    return ((TEMPLATES / "report.css").read_text(encoding="utf-8"),
            (TEMPLATES / "report.js").read_text(encoding="utf-8"))


def script_hash(script: str) -> str:
    """The CSP source that allows exactly this inline script."""
    digest = hashlib.sha256(script.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def csp(script: str) -> str:
    """The page's Content-Security-Policy: nothing may load from anywhere but the page itself."""
    return ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
            f"script-src {script_hash(script)}; base-uri 'none'; form-action 'none'")


def json_for_script(obj: Any) -> Markup:
    """JSON that is safe inside <script type="application/json">.

    Escaping `<` stops `</script>` and `<!--` from ending or confusing the element; `>` and `&`
    are escaped too so the text means the same to any HTML parser. They occur only inside JSON
    strings, where \\uXXXX is the same character to `JSON.parse`.
    """
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    text = (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))
    return Markup(text)


def _clip(text: Any, n: int = FLIP_TEXT) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= n else s[: n - 1] + "…"


@lru_cache(maxsize=1)
def _env() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(pts=fmt.pts, pval=fmt.pval, seconds=fmt.seconds, clip=_clip)
    env.globals.update(
        subject_chart=lambda c: delta_bars(c.rows, lambda r: r.subject, f"{c.task}: delta of {c.metric} per subject"),
        bench_chart=lambda f: delta_bars([h.row for h in f.rows], lambda r: f"{r.task} {r.metric}",
                                         f"benchmark deltas of {f.adapter}", label_width=160),
        loss_chart=_loss_chart,
        hist=lambda samples, title, unit: histogram(samples, title, unit),
    )
    return env


def _loss_chart(panel: Any) -> Markup:
    series = [("train loss", [(p.step, p.loss) for p in panel.curve if p.loss is not None], False),
              ("val loss", [(p.step, p.val_loss) for p in panel.curve if p.val_loss is not None], True)]
    return line_chart([s for s in series if s[1]], "training loss per step")


def _sections(view: ReportView) -> list[tuple[str, str]]:
    p = view.panels
    candidates = [
        ("verdict", "Verdict", True),
        ("headline", "Every metric" if view.headline else "Scores", bool(view.headline or view.scores)),
        ("baselines", "Baselines", bool(p.get("baselines"))),
        ("forgetting", "Forgetting", bool(p.get("forgetting"))),
        ("robustness", "Robustness", bool(p.get("robustness"))),
        ("flips", "Flips", bool(p.get("flips"))),
        ("examples", "Examples", bool(p.get("explorer") and p["explorer"].n_items)),
        ("leaks", "Leaks", bool(p.get("leaks"))),
        ("seeds", "Seeds", bool(p.get("seeds"))),
        ("training", "Training", bool(p.get("training"))),
        ("cost", "Cost", bool(p.get("cost"))),
        ("provenance", "Provenance", True),
    ]
    return [(i, name) for i, name, on in candidates if on]


def _title(view: ReportView) -> str:
    base = view.meta.spec.base
    if view.comparison is not None:
        return f"{', '.join(view.adapters)} vs {view.base}" + (f" ({base})" if base else "")
    return f"{base or ', '.join(view.models) or 'run'}: scores"


def render_html(view: ReportView) -> str:
    """The report of `view` as one HTML document."""
    from harness import __version__

    if not view.panels:  # a view built for summary.md only
        from harness.outputs.report.panels import add_panels

        add_panels(view)
    css, js = _static()
    explorer = view.panels.get("explorer")
    return _env().get_template("report.html.j2").render(
        view=view, title=f"harness report · {_title(view)}", version=__version__, sections=_sections(view),
        bench_prompts=describe_format(view.meta.spec.bench_format.model_dump(exclude_unset=True)
                                      if view.meta.spec.bench_format else None),
        rendered=time.strftime("%Y-%m-%d %H:%M"), css=Markup(css), script=Markup(js), csp=csp(js),
        data_json=json_for_script(explorer.payload) if explorer else Markup("null"))


def _target(run_dir: Path, out: str | Path | None) -> Path:
    if out is None:
        return RunFolder(run_dir).report_html
    out = Path(out)
    return out / REPORT if out.is_dir() else out


def write_report(view: ReportView, out: str | Path) -> Path:
    """Writes the report atomically (a reader never opens half a file).

    Raises:
        HarnessError: The file cannot be written (one line naming it).
    """
    out = Path(out)
    # Lone surrogates (undecodable bytes in a model output) cannot be UTF-8: write '?'.
    text = render_html(view).encode("utf-8", "replace").decode("utf-8")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out, [text])
    except OSError as exc:
        raise HarnessError(f"cannot write the report to {out} ({exc.strerror or exc})",
                           "pass --out with a writable file or folder") from None
    return out


def render_report(run_dir: str | Path, out: str | Path | None = None, policy: Any = None, *,
                  verdict: Any = None, comparison: Any = None, force: bool = False) -> Path:
    """Renders report.html for a run folder from its saved logs (no model, no torch).

    Args:
        run_dir: A folder written by `harness run` or `harness compare`.
        out: The HTML file to write, or a folder for report.html (default RUN_DIR/report.html).
        policy: Gate policy (path or `Policy`) whose confidence and bootstrap settings the
            comparison uses; default: the settings of the gate that wrote verdict.json, if any.
        verdict: A `harness.analysis.verdict.Verdict` just computed for this folder: its comparison and
            decision are used as they are (nothing is recomputed).
        comparison: A `Comparison` of this folder already computed.
        force: Replace an existing `out` file that is not a harness report.

    Returns:
        The path written.

    Raises:
        HarnessError: Missing or corrupt run log, incomparable base and adapter, bad policy.
    """
    run_dir = Path(run_dir)
    target = check_report_target(run_dir, out, force)
    view = build_view(run_dir, policy=policy, comparison=comparison, verdict=verdict)
    return write_report(view, target)


def check_report_target(run_dir: Path, out: str | Path | None, force: bool = False) -> Path:
    """Where the report goes: writable, and a file there replaced only when it is a harness
    report (or with `force`)."""
    from harness.outputs.guard import check_file, starts_with

    return check_file(_target(Path(run_dir), out), force=force, ours=starts_with(b'<meta name="generator" content="harness'))
