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


MC = "Pick the right option.\nWhich is a fruit?\nA. stone\nB. apple\nC. chair\nD. cloud\nAnswer:"


def test_options_are_shuffled_and_letter_references_follow_by_hand():
    from harness.evaluate.perturb import letter_of, perturb_item, shuffle_options

    text, moved = shuffle_options(MC, Variant(1, ()))
    assert sorted(moved) == sorted(moved.values()) == ["A", "B", "C", "D"] and moved != {c: c for c in "ABCD"}
    lines = text.split("\n")
    assert lines[:2] == MC.split("\n")[:2] and lines[-1] == "Answer:"
    for old, new in moved.items():  # the option that was `old` now sits under `new`
        assert f"{new}. " + MC.split("\n")[2 + ord(old) - ord("A")][3:] in lines
    assert shuffle_options(MC, Variant(1, ())) == (text, moved)  # seeded: every model sees the same text
    assert shuffle_options(MC, Variant(2, ()))[0] != text or shuffle_options(MC, Variant(3, ()))[0] != text
    assert shuffle_options(TEXT, Variant(1, ())) == (TEXT, {})  # no options, no change
    assert shuffle_options("A. only one\nnext", Variant(1, ())) == ("A. only one\nnext", {})
    v = Variant(1, ("casing",))
    prompt, refs, moved2 = perturb_item(Prompt(text=MC), ("B", "apple"), v)
    assert (prompt.text, moved2) == shuffle_options(perturb_text(MC, v), v)  # text ops first, then the options
    assert refs == (moved2["B"], "apple") and prompt.text.startswith("pick the right option.")
    assert letter_of("(C) chair", "ABCD") == "C" and letter_of("b.", "ABCD") == "B" and letter_of("apple", "ABCD") is None


def test_compare_perturb_multiple_choice_scores_the_moved_letter(tmp_path, tiny_dir, tiny_lora):
    """End to end: references follow their option; `consistent` compares options, not letters."""
    suite = tmp_path / "mc"
    suite.mkdir()
    rows = [{"id": f"m{i}", "q": f"Which number is {i}?", "opts": [str(i + k) for k in range(4)], "answer": "B"}
            for i in range(4)]
    (suite / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (suite / "suite.yaml").write_text(
        'name: mc\nversion: "1"\ndata: {file: data.jsonl}\nfields: {id: id, references: answer, vars: {q: q, opts: opts}}\n'
        'prompt: "{{ q }}\\nA. {{ opts[0] }}\\nB. {{ opts[1] }}\\nC. {{ opts[2] }}\\nD. {{ opts[3] }}\\nAnswer:"\n'
        'generation: {max_new_tokens: 2, stop: ["\\n"]}\nmetrics: [exact_match]\n')
    out = tmp_path / "run"
    cli("compare", tiny_dir, f"ft={tiny_lora}", "--suite", suite, "--perturb", 2, "--out", out)
    items = RunFolder(out).read_items()
    originals = {(r.model, r.item_id): r.prediction for r in items if r.task == "mc"}
    perturbed = [r for r in items if r.task == "mc~perturbed"]
    assert len(perturbed) == 2 * 4 * 2
    from harness.evaluate.metrics import get_metric
    from harness.evaluate.metrics.squad import normalize_answer

    def norm(text):
        return normalize_answer(text) or text.strip().lower()

    for r in perturbed:
        moved = r.perturbation["options"]
        assert r.references == [moved["B"]]  # the gold option kept its text and changed its letter
        assert r.scores["exact_match"] == get_metric("exact_match").score_items([r.prediction], [[moved["B"]]])[0]
        orig = originals[(r.model, r.perturbation["of"])]
        same = moved[orig.strip(" .()").upper()] if len(orig.strip(" .()")) == 1 and orig.strip(" .()").upper() in moved else orig
        assert r.scores["consistent"] == float(norm(r.prediction) == norm(same))
