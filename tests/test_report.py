"""The HTML report without a browser: sections, escaping, numbers, CLI (tests/test_report_browser.py
drives the page in Chromium)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.analysis.comparison import Comparison
from harness.analysis.gate import apply_gate
from harness.analysis.policy import load_policy
from harness.outputs.report import render_report
from harness.pipeline import gate_run
from harness.outputs.report.diff import word_diff
from harness.outputs.report.html import json_for_script, render_html
from harness.outputs.report.svg import delta_bars
from harness.outputs.report.training import training_panels
from harness.outputs.report.view import build_view
from tests.report_fixtures import PAYLOADS, POLICY, base_only_run, rich_run, suite_task
from tests.runlog_factory import write_run

HARNESS = [sys.executable, "-m", "harness.cli"]


def cli(*args, **kw):
    return subprocess.run([*HARNESS, *map(str, args)], capture_output=True, text=True, **kw)


class Page(HTMLParser):
    """Collects tags, attributes, section ids and the text of table rows per section."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.sections: list[str] = []
        self.rows: dict[str, list[list[str]]] = {}
        self.scripts: list[str] = []
        self._section, self._row, self._cell, self._script = None, None, None, None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "section":
            self._section = a.get("id")
            self.sections.append(self._section)
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "script":
            self._script = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.setdefault(self._section, []).append(self._row)
            self._row = None
        elif tag == "script" and self._script is not None:
            self.scripts.append("".join(self._script))
            self._script = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._script is not None:
            self._script.append(data)


@pytest.fixture(scope="module")
def rich(tmp_path_factory):
    return rich_run(tmp_path_factory.mktemp("report") / "rich")


@pytest.fixture(scope="module")
def xss(tmp_path_factory):
    return rich_run(tmp_path_factory.mktemp("report") / "xss", payloads=True)


def _html(run: Path, **kw) -> str:
    return render_report(run, **kw).read_text(encoding="utf-8")


# ---- sections ------------------------------------------------------------------------------


def test_full_run_has_every_section_in_order(rich):
    page = Page(_html(rich))
    assert page.sections == ["verdict", "headline", "forgetting", "flips", "examples", "leaks", "training", "cost",
                             "provenance"]


def test_sections_absent_from_the_run_log_are_omitted(tmp_path):
    run = write_run(tmp_path / "plain", [suite_task(30, judge=False)])
    text = _html(run)
    page = Page(text)
    assert page.sections == ["verdict", "headline", "flips", "examples", "leaks", "cost", "provenance"]
    assert "Not gated" in text
    # the factory's suite carries leak labels; without them the leak panel goes too
    run2 = rich_run(tmp_path / "r2", leaks=False, training=False, gate=False)
    page2 = Page(_html(run2))
    assert "leaks" not in page2.sections and "training" not in page2.sections
    assert not any(a.get("href") in ("#leaks", "#training") for t, a in page2.tags if t == "a")


def test_single_model_run_shows_scores_not_deltas(tmp_path):
    run = base_only_run(tmp_path / "base")
    text = _html(run)
    page = Page(text)
    assert page.sections == ["verdict", "headline", "examples", "cost", "provenance"]
    assert "Single run: nothing compared" in text
    meta = json.loads((run / "run.json").read_text())
    agg = meta["aggregates"]["suites"]["squad-qa"]["base"]
    rows = {(r[1], r[2]): r[4] for r in page.rows["headline"][1:]}
    assert rows[("exact_match", "base")] == f"{100 * agg['exact_match']:.2f}"


# ---- escaping ------------------------------------------------------------------------------


def test_payloads_never_reach_the_markup(xss):
    text = _html(xss)
    for p in PAYLOADS:
        if any(c in p for c in "<>\""):
            assert p not in text, p
    page = Page(text)
    # Only our own markup: no element or attribute a payload could have smuggled in.
    assert not [t for t, _ in page.tags if t in ("img", "iframe", "object", "embed", "link", "base", "form")]
    assert not [(t, k) for t, a in page.tags for k in a if k.startswith("on") or k in ("src", "srcdoc")]
    hrefs = [a["href"] for t, a in page.tags if "href" in a]
    assert hrefs and all(h.startswith("#") for h in hrefs)
    assert [a.get("type") for t, a in page.tags if t == "script"] == ["application/json", None]
    # ... and the texts are all there, as text
    texts = "\n".join(_strings(json.loads(page.scripts[0])))
    for p in PAYLOADS:
        assert p in texts, p
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in text  # the task name in the tables


def _strings(x):
    if isinstance(x, str):
        yield x
    elif isinstance(x, dict):
        for v in x.values():
            yield from _strings(v)
    elif isinstance(x, list):
        for v in x:
            yield from _strings(v)


def test_json_for_script_cannot_close_its_element():
    text = str(json_for_script({"a": "</script><script>x()</script>", "b": "<!-- \u2028 & >"}))
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"a": "</script><script>x()</script>", "b": "<!-- \u2028 & >"}


def test_svg_escapes_labels():
    class R:
        subject, n, delta, ci_low, ci_high, higher_is_better = '"><script>x()</script>', 5, -2.0, -5.0, 1.0, True

    out = str(delta_bars([R()], lambda r: r.subject, "t<itle"))
    assert "<script>" not in out and "&lt;script&gt;" in out and "t&lt;itle" in out


def test_csp_allows_exactly_the_inline_script(rich):
    text = _html(rich)
    page = Page(text)
    csp = next(a["content"] for t, a in page.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy")
    script = page.scripts[1]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp
    assert "default-src 'none'" in csp and "img-src data:" in csp and "unsafe-eval" not in csp
    assert "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
    # the only absolute URL is the SVG namespace, which is a name, not a request
    assert set(re.findall(r"https?://[^\s\"'<>]+", text)) <= {"http://www.w3.org/2000/svg"}


# ---- numbers -------------------------------------------------------------------------------


def _summary_rows(path: Path) -> dict[tuple[str, str, str], list[str]]:
    lines = path.read_text().split("### Deltas")[1].split("\n\n")[1].splitlines()[2:]
    out = {}
    for line in lines:
        cells = [c.strip().strip("*") for c in line.strip("|").split("|")]
        out[(cells[0], cells[1], cells[2])] = cells[3:]
    return out


def test_view_numbers_are_the_comparisons_and_summary_md_agrees(rich):
    view = build_view(rich)
    policy = load_policy(rich.parent / f"{rich.name}-policy.yaml")
    fresh = Comparison.from_run_dir(rich, **policy.comparison_settings())
    assert [h.row.to_dict() for h in view.headline] == [r.to_dict() for r in fresh.rows]
    verdict = json.loads((rich / "verdict.json").read_text())
    assert [h.row.to_dict() for h in view.headline] == verdict["deltas"]
    assert view.verdict.notes == []
    # The HTML table prints exactly what summary.md prints for every row.
    summary = _summary_rows(rich / "summary.md")
    html_rows = Page(_html(rich)).rows["headline"]
    html = {}
    for r in html_rows:
        if len(r) == 11 and r[0] != "task":
            task = r[0].replace(" (benchmark)", "")
            # n, base, adapter, Δ (without the arrow), bounds, p, p (Holm), MDE, test
            html[("ft", task, r[1])] = [r[2], r[3], r[4], r[5].split(" ")[-1], r[6], r[7], r[8], r[9], r[10]]
    assert html == summary


def test_gate_settings_are_used_without_being_told(tmp_path):
    run = rich_run(tmp_path / "run", gate=False)
    pol = tmp_path / "p.yaml"
    pol.write_text("version: 1\nconfidence: 0.9\nbootstrap: {resamples: 2000, seed: 3}\n" + POLICY.split("\n", 1)[1])
    gate_run(run, pol)
    view = build_view(run)
    assert (view.settings["confidence"], view.settings["seed"]) == (0.9, 3) and view.verdict.notes == []
    pol.unlink()  # the policy is gone: verdict.json keeps confidence and bootstrap settings
    view = build_view(run)
    assert (view.settings["confidence"], view.settings["seed"]) == (0.9, 3)
    assert not any("bounds differ" in n for n in view.verdict.notes)


def test_stale_verdict_is_called_out(rich, tmp_path):
    run = rich_run(tmp_path / "stale")
    later = time.time() + 5
    os.utime(run / "run.json", (later, later))
    assert any("older than run.json" in n for n in build_view(run).verdict.notes)


def test_render_report_takes_a_fresh_verdict(tmp_path):
    run = rich_run(tmp_path / "run", gate=False)
    verdict, code = apply_gate(run, _policy(tmp_path))
    path = render_report(run, verdict=verdict)
    text = path.read_text()
    assert path == run / "report.html" and f"Gate: {verdict.verdict.upper()}" in text


def _policy(tmp_path: Path) -> Path:
    p = tmp_path / "gate.yaml"
    p.write_text(POLICY)
    return p


def test_flip_counts_match_the_comparison(rich):
    view = build_view(rich)
    comp = view.comparison
    for g in view.panels["flips"]:
        assert g.worse == len(comp.flips_for(g.adapter, g.task))
        assert g.better == comp.row(g.adapter, g.task, g.metric, kind=g.kind).better
    ex = view.panels["explorer"]
    assert ex.regressions == len(comp.flips) and ex.n_items == sum(d.n for d in comp.tasks())


def test_leak_panel_compares_clean_and_full(rich):
    leaks = build_view(rich).panels["leaks"]
    assert leaks.counts[0].counts == {"clean": 46, "suspect": 8, "contaminated": 6}
    d = leaks.deltas[0]
    assert d.full.row.subset == "all" and d.clean.row.subset == "clean" and d.clean.row.n == 46
    assert leaks.evidence[0]["label"] == "contaminated" and leaks.evidence_total == 14


# ---- parts ---------------------------------------------------------------------------------


def test_training_schema_is_tolerant():
    hf = {"log_history": [{"step": 10, "loss": 2.0}, {"step": 10, "eval_loss": 2.2}, {"step": 20, "loss": 1.5}],
          "args": {"learning_rate": 1e-4}, "train_runtime": 30.5, "dataset_hash": "abc", "note": "hi"}
    (p,) = training_panels(hf)
    assert [(c.step, c.loss, c.val_loss) for c in p.curve] == [(10, 2.0, 2.2), (20, 1.5, None)]
    assert p.wall_s == 30.5 and p.data_hash == "abc" and ("learning_rate", "0.0001") in p.hyperparameters
    assert ("note", "hi") in p.other
    per_adapter = training_panels({"a": {"losses": [3, 2, 1]}, "b": {"wall_s": 5}})
    assert [(x.name, len(x.curve)) for x in per_adapter] == [("a", 3), ("b", 0)]
    assert training_panels([{"loss_curve": [{"step": 1, "loss": "nan"}]}]) == []
    assert training_panels("garbage") == [] and training_panels(None) == []


def test_word_diff_marks_changed_words_in_utf16_offsets():
    assert word_diff("same", "same") is None
    gone, new = word_diff("the cat sat", "the dog sat")
    assert ("the cat sat"[gone[0]:gone[1]], "the dog sat"[new[0]:new[1]]) == ("cat", "dog")
    gone, new = word_diff("I 😀 like it", "I 😀 love it")
    assert new == [5, 9]  # "love" starts at UTF-16 offset 5 (the emoji is two code units)


# ---- CLI -----------------------------------------------------------------------------------


def test_cli_writes_the_report_and_prints_its_path(rich, tmp_path):
    proc = cli("report", rich, "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(tmp_path / "report.html") and (tmp_path / "report.html").stat().st_size > 10_000


@pytest.mark.parametrize("case", ["missing", "corrupt", "incomparable", "bad-policy", "unwritable"])
def test_cli_errors_are_one_line_with_exit_2(case, tmp_path, rich):
    run, extra = tmp_path / "run", []
    if case == "missing":
        pass
    elif case == "corrupt":
        run.mkdir()
        (run / "run.json").write_text("{not json")
    elif case == "incomparable":
        task = suite_task(20, judge=False)
        task.prompt_hashes = {"ft": [f"other{i}" for i in range(20)]}
        write_run(run, [task])
    elif case == "bad-policy":
        run, extra = rich, ["--policy", tmp_path / "nope.yaml"]
    else:
        run, extra = rich, ["--out", rich / "items.jsonl" / "x.html"]
    proc = cli("report", run, *extra)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "fix:" in lines[0], proc.stderr


def test_cli_report_does_not_import_torch(rich, tmp_path):
    code = ("import sys\nfrom harness.cli import main\n"
            f"sys.argv = ['harness', 'report', {str(rich)!r}, '--out', {str(tmp_path / 'r.html')!r}]\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "heavy = sorted(m for m in ('torch', 'transformers', 'lm_eval', 'peft') if m in sys.modules)\n"
            "print('HEAVY', heavy)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout, proc.stdout


def test_long_outputs_are_cut_and_say_so(tmp_path, monkeypatch):
    import harness.outputs.report.examples as examples

    monkeypatch.setattr(examples, "TEXT_BUDGET", 1000)  # 1000 chars for 2 x 24 outputs: the 600 floor applies
    task = suite_task(24, judge=False)
    task.predictions["ft"][0] = "word " * 400
    run = write_run(tmp_path / "long", [task])
    view = build_view(run)
    ex = view.panels["explorer"]
    out = ex.payload["items"][0]["o"][1]
    assert ex.cap == 600 and ex.cut == 1 and out["x"] == 2000 and len(out["p"]) == 601
    assert "1 output(s) longer than 600 characters are cut" in render_html(view)


def test_headline_only_view_for_summary_md(rich):
    view = build_view(rich, panels=False)
    assert view.panels == {} and view.headline and view.verdict.status == "inconclusive"
    assert 'id="examples"' in render_html(view)  # rendering fills the panels on demand


def test_tone_respects_the_metric_direction():
    from harness.fmt import tone

    class Row:
        def __init__(self, delta, lo, hi, hib):
            self.delta, self.ci_low, self.ci_high, self.higher_is_better = delta, lo, hi, hib

    assert (tone(Row(-3, -5, -1, False)).css, tone(Row(-3, -5, -1, False)).arrow) == ("better", "▼")
    assert tone(Row(-3, -5, 1, True)).css == "worse-weak"
    assert tone(Row(2, 0.5, 4, True)).css == "better"
    assert tone(Row(0.0, -1, 1, True)).css == "flat"
