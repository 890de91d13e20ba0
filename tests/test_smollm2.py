"""Slow path: the real SmolLM2-135M-Instruct through the CLI."""

from __future__ import annotations

import json

import pytest

from tests.conftest import build_lora, smollm2_dir
from tests.test_run import cli

pytestmark = pytest.mark.slow


def test_smollm2_answers_a_known_question():
    from harness.evaluate import models
    from harness.evaluate.engines.generate import generate_batch
    from harness.evaluate.suite_eval import encode_prompt
    from harness.types import GenerationParams, Prompt

    bundle = models.load("smollm2-135m", probe=False)
    _, ids = encode_prompt(bundle.tokenizer, Prompt(messages=(("user", "What is the capital of France?"),)))
    out = generate_batch(bundle.model, bundle.tokenizer, [ids], GenerationParams(max_new_tokens=16))[0]
    assert out.text == "The capital of France is Paris."
    assert out.stopped_by == "eos"


def test_compare_smollm2_with_adapter_on_squad(tmp_path):
    lora = build_lora(smollm2_dir(), tmp_path / "smol-lora", r=8)
    out = tmp_path / "run"
    proc = cli("compare", smollm2_dir(), lora, "--suite", "squad-qa", "--limit", 8, "--out", out)
    assert "exact_match" in proc.stdout and "f1" in proc.stdout
    meta = json.loads((out / "run.json").read_text())
    assert meta["models"] == ["base", "smol-lora"]
    assert meta["provenance"]["adapters"]["smol-lora"]["has_effect"] is True
    rows = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    assert len(rows) == 16
    squad_ids = [json.loads(line)["id"] for line in
                 (smollm2_dir().parent / "squad" / "squad.jsonl").read_text().splitlines()[:8]]
    assert [r["item_id"] for r in rows if r["model"] == "base"] == squad_ids
    base_f1 = meta["aggregates"]["suites"]["squad-qa"]["base"]["f1"]
    assert base_f1 == pytest.approx(sum(r["scores"]["f1"] for r in rows if r["model"] == "base") / 8)
    assert all(r["prediction"] or r["stopped_by"] for r in rows)
