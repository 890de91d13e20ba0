"""`--perturb K`: seeded prompt variants, recorded, scored for consistency, gateable."""

from __future__ import annotations

import json

from harness.evaluate.perturb import Variant, perturb_prompt, perturb_text, variants
from harness.log.folder import RunFolder
from harness.types import Prompt
from tests.test_run import cli, make_suite

TEXT = "Answer the question with a number.\nQ: What is 2 plus 2?\nA:"


def test_each_operation_by_hand():
    assert perturb_text(TEXT, Variant(1, ("paraphrase",))) == TEXT.replace("Answer the question", "Respond to the question")
    assert perturb_text(TEXT, Variant(1, ("casing",))) == "answer the question with a number.\nQ: What is 2 plus 2?\nA:"
    assert perturb_text(TEXT, Variant(1, ("punctuation",))) == "Answer the question with a number\nQ: What is 2 plus 2?\nA:"
    assert perturb_text("Say hi", Variant(1, ("punctuation",))) == "Say hi."
    assert perturb_text(TEXT, Variant(1, ("whitespace",))) == \
        "Answer the question with a number. \n \nQ: What is 2 plus 2? \nA:"
    assert perturb_text("no known phrase here", Variant(1, ("paraphrase",))) == "no known phrase here"


def test_variants_are_seeded_distinct_and_change_only_the_last_user_turn():
    assert variants(4, 7) == variants(4, 7) and variants(4, 7) != variants(4, 8)
    assert all(1 <= len(v.ops) <= 2 for v in variants(20, 0))
    chat = Prompt(messages=(("system", "Answer briefly."), ("user", TEXT)))
    out = perturb_prompt(chat, Variant(1, ("casing",)))
    assert out.messages[0] == ("system", "Answer briefly.") and out.messages[1][1].startswith("answer the question")


def test_compare_with_perturb_records_variants_scores_consistency_and_gates_it(tmp_path, tiny_dir, tiny_lora):
    suite = make_suite(tmp_path / "arith", n=6)
    (suite / "suite.yaml").write_text((suite / "suite.yaml").read_text().replace(
        'prompt: "Q:', 'prompt: "Answer the question.\\nQ:'))
    policy = tmp_path / "gate.yaml"
    policy.write_text("rules:\n  - {task: arith~perturbed, metric: consistent, max_drop: 100}\n")
    out = tmp_path / "run"
    cli("compare", tiny_dir, f"ft={tiny_lora}", "--suite", suite, "--perturb", 3, "--out", out, "--policy", policy)
    items = RunFolder(out).read_items()
    perturbed = [r for r in items if r.task == "arith~perturbed"]
    assert len(perturbed) == 2 * 6 * 3 and len([r for r in items if r.task == "arith"]) == 12
    originals = {(r.model, r.item_id): r.prediction for r in items if r.task == "arith"}
    for r in perturbed:
        of = r.perturbation["of"]
        assert r.item_id == f"{of}~{r.perturbation['variant']}" and r.perturbation["ops"]
        assert r.scores["consistent"] == float(r.prediction.lower().strip(".") == originals[(r.model, of)].lower().strip("."))
        assert "exact_match" in r.scores
    meta = RunFolder(out).read_meta()
    agg = meta.aggregates.suites["arith~perturbed"]
    for model in ("base", "ft"):
        mine = [r.scores["consistent"] for r in perturbed if r.model == model]
        assert agg[model].metric_values()["consistent"] == sum(mine) / len(mine)
    assert meta.spec.model_dump()["perturb"] == 3 and meta.metrics["consistent"].higher_is_better
    verdict = json.loads((out / "verdict.json").read_text())
    assert any(r["task"] == "arith~perturbed" and r["metric"] == "consistent" for r in verdict["rules"])
    html = (out / "report.html").read_text()
    assert 'id="robustness"' in html and "arith~perturbed" not in html.split('id="robustness"')[1].split("</section>")[0]
    panel = html.split('id="robustness"')[1].split("</section>")[0]
    for model in ("base", "ft"):
        cons = 100 * agg[model].metric_values()["consistent"]
        assert f"<td>{model}</td>" in panel and f"{cons:.2f}" in panel
