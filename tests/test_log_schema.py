"""The run folder's typed contract: schemas in docs/ are current, malformed files fail as one
line naming file and line, old schema versions say how to re-render, round trips are exact."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import RunLogError
from harness.log.folder import RunFolder
from harness.log.schema import ItemRecord, LeakRecord, RunMeta, VerdictDoc, json_schemas
from harness.pipeline import gate_run
from tests.runlog_factory import binary_pair, continuous_pair, squad_task, write_run

DOCS = Path(__file__).resolve().parents[1] / "docs" / "schema"
F1_RULE = "rules:\n  - {name: squad-f1, task: squad-qa, metric: f1, max_drop: 1.0}\n"


def _run(tmp_path: Path, n: int = 30) -> Path:
    return write_run(tmp_path / "run", [squad_task(n, binary_pair(n, 0.5, 2, 2), continuous_pair(n, 0.5, 0.0))])


def _gate_cli(run: Path, policy: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", "gate", str(run), "--policy", str(policy)],
                          capture_output=True, text=True)


def test_json_schemas_in_docs_are_current():
    for name, text in json_schemas().items():
        path = DOCS / name
        assert path.is_file() and path.read_text(encoding="utf-8") == text, (
            f"{path} is stale: run `python -m harness.log.schema --write docs/schema`")
    assert sorted(p.name for p in DOCS.glob("*.schema.json")) == sorted(json_schemas())


def test_factory_run_round_trips_byte_for_byte(tmp_path):
    folder = RunFolder(_run(tmp_path))
    meta_text, items_text = folder.run_json.read_text(), folder.items_jsonl.read_text()
    folder.write_run(folder.read_meta(), folder.read_items())
    assert folder.run_json.read_text() == meta_text and folder.items_jsonl.read_text() == items_text


def test_extra_keys_are_kept_and_types_validated():
    rec = ItemRecord.model_validate({"model": "base", "task": "t", "item_id": 7, "scores": {"f1": 1, "judge:x": None},
                                     "plugin_field": {"a": 1}})
    assert rec.item_id == 7 and rec.scores == {"f1": 1.0, "judge:x": None} and rec.kind == "suite"
    assert json.loads(rec.to_line())["plugin_field"] == {"a": 1}
    for bad in ({"f1": "0.5"}, {"f1": True}, "0.5"):
        with pytest.raises(ValueError):
            ItemRecord.model_validate({"model": "base", "task": "t", "item_id": "a", "scores": bad})
    assert LeakRecord.model_validate({"task": "t", "item_id": "a", "label": "suspect"}).evidence == []
    meta = RunMeta.model_validate({"aggregates": {"suites": {"t": {"base": {"f1": 0.5, "n": 4, "judge:x": None}}}}})
    assert meta.aggregates.suites["t"]["base"].metric_values() == {"f1": 0.5, "judge:x": None}


def test_judge_rationales_come_from_either_field():
    judged = ItemRecord(model="ft", task="t", item_id="a", judge={"judge:faith": {"value": 1.0, "rationale": "ok"},
                                                                   "judge:pairwise": {"value": 0.5}})
    assert judged.judge_rationales() == {"judge:faith": "ok"}
    assert ItemRecord(model="ft", task="t", item_id="a", rationales={"m": "why", "n": None}).judge_rationales() == {
        "m": "why"}


@pytest.mark.parametrize("case", ["run-is-a-list", "scores-is-a-string", "schema-2", "no-version"])
def test_malformed_folders_fail_as_one_line_naming_file_and_line(case, tmp_path):
    run = _run(tmp_path)
    folder = RunFolder(run)
    if case == "run-is-a-list":
        folder.run_json.write_text("[1, 2]")
        where, words = "run.json", "not an object"
    elif case == "scores-is-a-string":
        lines = folder.items_jsonl.read_text().splitlines()
        rec = json.loads(lines[2])
        rec["scores"] = "0.5"
        lines[2] = json.dumps(rec)
        folder.items_jsonl.write_text("\n".join(lines) + "\n")
        where, words = "items.jsonl:3", "scores"
    else:
        meta = json.loads(folder.run_json.read_text())
        if case == "schema-2":
            meta["schema_version"] = 2
        else:
            del meta["schema_version"]
        folder.run_json.write_text(json.dumps(meta))
        where, words = "run.json", "re-run the evaluation with this harness version"
    with pytest.raises(RunLogError) as err:
        folder.read_meta(), folder.read_items()
    assert where in str(err.value) and words in str(err.value)
    policy = tmp_path / "gate.yaml"
    policy.write_text(F1_RULE)
    proc = _gate_cli(run, policy)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and where in lines[0], proc.stderr


def test_verdict_json_is_a_versioned_verdict_doc(tmp_path):
    run = _run(tmp_path, 200)
    policy = tmp_path / "gate.yaml"
    policy.write_text(F1_RULE)
    verdict, _ = gate_run(run, policy)
    raw = json.loads((run / "verdict.json").read_text())
    assert raw["schema"] == "harness-verdict/1" and raw["schema_version"] == 1
    doc = RunFolder(run).read_verdict()
    assert isinstance(doc, VerdictDoc) and doc.verdict == verdict.verdict
    assert doc.comparison_settings() == verdict.policy.comparison_settings()


def test_broken_verdict_json_is_a_note_in_the_report_not_an_error(tmp_path):
    from harness.outputs.report.view import build_view

    run = _run(tmp_path)
    (run / "verdict.json").write_text('{"verdict": "maybe"}')
    view = build_view(run, panels=False)
    assert view.verdict.status == "not gated" and "verdict.json" in view.verdict.notes[0]
