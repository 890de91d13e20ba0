"""CI files of a gate, written next to the run log: summary.md, junit.xml, verdict.json.

All three render the same `Verdict` (and its `Comparison`), so they cannot disagree.
summary.md is GitHub-flavoured Markdown for `$GITHUB_STEP_SUMMARY` or a PR comment;
junit.xml has one test case per rule (and adapter) so CI systems list rules as tests.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from harness.analysis.comparison import Comparison
from harness.analysis.deltas import DeltaRow
from harness.analysis.verdict import FAIL, INCONCLUSIVE, PASS, SKIPPED, Verdict
from harness.fmt import mde as _mde
from harness.fmt import pts as _f
from harness.fmt import pval as _p
from harness.fmt import test_label
from harness.log.folder import JUNIT, SUMMARY, VERDICT, RunFolder

FLIPS_PER_TASK = 5
WEAKEST_SUBJECTS = 10
_ICON = {PASS: "✅", FAIL: "❌", INCONCLUSIVE: "⚠️", SKIPPED: "⏭️"}


def _cell(text: Any, width: int = 80) -> str:
    """A Markdown table cell: one line, pipes escaped, long text cut."""
    s = " ".join(str(text).split())
    if len(s) > width:
        s = s[: width - 1] + "…"
    return s.replace("|", "\\|") or " "


def _delta_table(rows: list[DeltaRow], confidence: float, subjects: bool = False) -> list[str]:
    what = "subject" if subjects else "task"
    head = (f"| adapter | {what} | metric | n | base | adapter | Δ | one-sided {confidence:.0%} bounds | p | p (Holm) "
            "| MDE | test |")
    out = [head, "|" + "---|" * 12]
    for r in rows:
        label = r.subject if subjects else r.task
        out.append(f"| {_cell(r.adapter)} | {_cell(label)} | {_cell(r.metric)} | {r.n} | {_f(r.base)} | {_f(r.score)} "
                   f"| **{_f(r.delta, True)}** | {_f(r.ci_low, True)} … {_f(r.ci_high, True)} | {_p(r.p_value)} "
                   f"| {_p(r.p_holm)} | {_mde(r.mde)} | {_cell(test_label(r))} |")
    return out


def render_summary(verdict: Verdict) -> str:
    """summary.md: verdict, rules, flags, deltas with bounds and p-values, weakest subjects, top flips."""
    comp: Comparison = verdict.comparison
    icon = _ICON.get(verdict.verdict, "")
    lines = [f"## {icon} harness gate: {verdict.verdict.upper()} (exit {verdict.exit_code})", ""]
    policy = verdict.policy.source or "policy"
    adapters = ", ".join(f"`{a}`" for a in comp.adapters)
    lines.append(f"Run `{comp.run_dir}` · policy `{policy}` · base vs {adapters} · "
                 f"points = 100 × score · bounds: one-sided {comp.confidence:.0%}, paired bootstrap "
                 f"({comp.resamples} resamples, seed {comp.seed})")
    lines += ["", "### Rules", "", "| | rule | status | reason |", "|---|---|---|---|"]
    for r in verdict.rules:
        warns = r.status == "fail" and not r.blocking  # a `severity: warn` rule: it failed, it does not block
        status = r.status + (" (blocks)" if r.status == INCONCLUSIVE and r.blocking else
                             " (allowed)" if r.status == INCONCLUSIVE else " (warns only)" if warns else "")
        icon = "⚠️" if warns else _ICON.get(r.status, "")
        lines.append(f"| {icon} | {_cell(r.name)} | {status} | {_cell(r.reason, 400)} |")
    if verdict.flags:
        lines += ["", "### Flags", ""]
        for f in verdict.flags:
            mark = "❌" if f.severity == "error" else "⚠️" if f.severity == "warning" else "ℹ️"
            lines.append(f"- {mark} **{f.code}**: {f.message}")
    from harness.outputs.seed_spread import summary_lines

    lines += summary_lines(comp.meta, verdict.b_vs_a)  # `harness ab`: gains per seed, B vs A
    lines += ["", "### Deltas", ""]
    lines += _delta_table(comp.rows, comp.confidence) if comp.rows else ["No paired comparisons."]
    clustered = sorted({r.task for r in comp.rows if r.clusters is not None})
    if clustered:
        lines += ["", f"Clustered tasks ({', '.join(clustered)}): the bootstrap and the test resample whole clusters "
                  "of items (the suite's cluster key); DE, the design effect, is how many times the variance of Δ "
                  "exceeds what independent items would give, and bounds and MDE include it."]
    if comp.subject_rows:
        weakest = sorted(comp.subject_rows, key=lambda r: r.gain)[:WEAKEST_SUBJECTS]
        lines += ["", f"<details><summary>Weakest {len(weakest)} of {len(comp.subject_rows)} subject comparisons"
                  "</summary>", ""]
        lines += _delta_table(weakest, comp.confidence, subjects=True)
        lines += ["", "</details>"]
    if comp.baseline_rows:  # `compare --baseline`: was fine-tuning worth it?
        from dataclasses import replace

        lines += ["", "### Against baselines", "",
                  "Each adapter against each baseline arm, paired on the same items: the `base` column is the arm's "
                  "score and Δ = adapter − arm (Holm within each adapter and arm).", ""]
        lines += _delta_table([replace(r, adapter=f"{r.adapter} vs {r.against}") for r in comp.baseline_rows],
                              comp.confidence)
    from harness.outputs.leak_summary import summary_lines as leak_lines

    lines += leak_lines(comp)  # scores on clean, contaminated (input only / + answer) and dated items
    flips_any = False
    flip_lines = ["", "### Top flips (right → wrong; largest drops for continuous metrics)", "",
                  "| adapter | task | item | metric | base → adapter | base answer | adapter answer | reference |",
                  "|---|---|---|---|---|---|---|---|"]
    counts = []
    for adapter in comp.adapters:
        for data in comp.tasks():
            flips = comp.flips_for(adapter, data.task)
            if not flips:
                continue
            flips_any = True
            metric = flips[0].metric
            row = comp.row(adapter, data.task, metric, kind=data.kind)
            better = row.better if row else "?"
            counts.append(f"`{adapter}` {data.task} ({metric}): {len(flips)} worse, {better} better")
            for f in flips[:FLIPS_PER_TASK]:
                ref = f.references[0] if f.references else ""
                item = f"{f.subject}/{f.item_id}" if f.subject and not f.item_id.startswith(f.subject) else f.item_id
                flip_lines.append(f"| {_cell(adapter)} | {_cell(f.task)} | {_cell(item, 40)} | {f.metric} "
                                  f"| {_f(f.base_score)} → {_f(f.adapter_score)} | {_cell(f.base_prediction, 60)} "
                                  f"| {_cell(f.adapter_prediction, 60)} | {_cell(ref, 60)} |")
    if flips_any:
        lines += flip_lines + ["", "Items that moved: " + "; ".join(counts) + "."]
    return "\n".join(lines) + "\n"


def render_junit(verdict: Verdict) -> str:
    """junit.xml: one <testcase> per rule result; failures for failing and blocking inconclusive rules."""
    rules = verdict.rules
    failures = sum(r.blocking for r in rules)
    skipped = sum(not r.blocking and r.status in (INCONCLUSIVE, SKIPPED) for r in rules)
    elapsed = f"{verdict.elapsed_s:.3f}"
    root = ET.Element("testsuites", name="harness gate", tests=str(len(rules)), failures=str(failures), errors="0",
                      skipped=str(skipped), time=elapsed)
    suite = ET.SubElement(root, "testsuite", name=f"harness gate ({verdict.policy.source or 'policy'})",
                          tests=str(len(rules)), failures=str(failures), errors="0", skipped=str(skipped),
                          time=elapsed)
    props = ET.SubElement(suite, "properties")
    for key, value in (("verdict", verdict.verdict), ("exit_code", verdict.exit_code),
                       ("run_dir", verdict.comparison.run_dir)):
        ET.SubElement(props, "property", name=key, value=str(value))
    for r in rules:
        case = ET.SubElement(suite, "testcase", classname=f"gate.{r.adapter}", name=r.name, time="0")
        if r.blocking:
            node = ET.SubElement(case, "failure", message=r.reason, type=r.status)
            node.text = json.dumps(r.numbers, default=str)
        elif r.status in (INCONCLUSIVE, SKIPPED):
            ET.SubElement(case, "skipped", message=f"{r.status} (allowed): {r.reason}")
        out = ET.SubElement(case, "system-out")
        out.text = f"{r.status}: {r.reason}"
    flags = ET.SubElement(suite, "system-out")
    flags.text = "\n".join(f"{f.severity}: {f.message}" for f in verdict.flags)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def render_verdict_json(verdict: Verdict) -> str:
    """verdict.json: verdict, exit code, rules with numbers, flags and the task-level deltas."""
    return verdict.to_doc().to_json()


def write_ci_files(verdict: Verdict, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Writes summary.md, junit.xml and verdict.json into `out_dir` (atomically, each).

    Returns:
        name -> path of each file written.
    """
    folder = RunFolder(out_dir)
    return {name: folder.write_text(name, text) for name, text in
            ((SUMMARY, render_summary(verdict)), (JUNIT, render_junit(verdict)), (VERDICT, render_verdict_json(verdict)))}
