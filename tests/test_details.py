"""Per-item evidence from metrics that explain a score (JSON errors, schema paths) reaches
items.jsonl through the suite evaluation, for every model."""

from __future__ import annotations

from harness.evaluate.metrics import get_metric
from harness.log.folder import RunFolder
from tests.test_run import cli


def test_json_extract_writes_each_failures_evidence_to_the_run_log(tmp_path, tiny_dir, tiny_lora):
    out = tmp_path / "run"
    cli("compare", tiny_dir, f"ft={tiny_lora}", "--suite", "json-extract", "--limit", 3, "--out", out,
        "--batch-size", 3)
    items = RunFolder(out).read_items()
    assert len(items) == 6
    valid = get_metric("json_valid")
    for r in items:  # a random tiny model writes no JSON: every reply carries why it failed
        want = valid.details([r.prediction], [r.references])[0]
        if r.scores["json_valid"] == 0.0:
            assert r.details["json_valid"] == want and want["error"]
        else:
            assert want is None and "json_valid" not in (r.details or {})
