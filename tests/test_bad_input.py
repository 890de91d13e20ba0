"""One malformed input per row, across every command: each must end with exactly one line on
stderr, exit 2, no traceback, before any model is loaded, and leave every file that existed
before byte-identical.

Rows run in this process (the CLI's `main`), with every model loader replaced by a tripwire:
a row whose check happens only after loading fails loudly instead of passing slowly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from tests.runlog_factory import binary_pair, squad_task, write_run
from tests.test_run import make_suite


class ModelLoaded(AssertionError):
    pass


@pytest.fixture
def tripwire(monkeypatch):
    """Loading any model is a test failure: these inputs are knowable before it."""
    import transformers

    from harness.evaluate import models
    from harness.train import model as train_model

    def trip(*args, **kwargs):
        raise ModelLoaded("a model was loaded before the bad input was found")

    for target, name in ((models, "load"), (models, "load_base"), (train_model, "load_model"),
                         (transformers.AutoModelForCausalLM, "from_pretrained")):
        monkeypatch.setattr(target, name, trip)


@pytest.fixture
def ws(tmp_path, tiny_dir, tiny_lora):
    """A workspace of good inputs (the bad part is in each row) and some user files."""
    suite = make_suite(tmp_path / "arith", n=4)
    (tmp_path / "notes.txt").write_text("the user's own file\n")
    (tmp_path / "report.html").write_text("<html>the user's own page</html>\n")
    (tmp_path / "noise.json").write_text('{"mine": true}\n')
    (tmp_path / "train.jsonl").write_text(json.dumps({"prompt": "What is 2 plus 2?", "completion": "4"}) + "\n")
    (tmp_path / "policy.yaml").write_text("rules: [{task: arith, metric: exact_match, max_drop: 5}]\n")
    em = binary_pair(40, 0.5, 2, 3)
    write_run(tmp_path / "done", [squad_task(40, em, em, name="arith")])
    for name, mutate in (("listrun", lambda d: d.joinpath("run.json").write_text("[1, 2]\n")),
                         ("strscores", _string_scores)):
        write_run(tmp_path / name, [squad_task(40, em, em, name="arith")])
        mutate(tmp_path / name)
    (tmp_path / "scan").mkdir()
    (tmp_path / "scan" / "leaks.jsonl").write_text('{"earlier": "scan"}\n')
    bad = make_suite(tmp_path / "surrogate", n=2)
    (bad / "data.jsonl").write_text('{"qid": "q0", "question": "a \\ud800 b", "answer": ["1"]}\n')
    broken = make_suite(tmp_path / "badjson", n=2)
    (broken / "data.jsonl").write_text('{"qid": "q0", "question": "ok", "answer": ["1"]}\n{"qid": \n')
    metric = make_suite(tmp_path / "badmetric", n=2)
    (metric / "suite.yaml").write_text((metric / "suite.yaml").read_text().replace("exact_match, f1", "exact_mach"))
    (tmp_path / "surrogate.jsonl").write_text('{"prompt": "x \\udc00", "completion": "y"}\n')
    (tmp_path / "bad.yaml").write_text("rules: [unclosed\n")
    (tmp_path / "arms.yaml").write_text("rules: [{task: arith, metric: exact_match, max_drop: 5}]\n"
                                        "b_vs_a: {rules: [{task: arith, metric: exact_match}]}\n")
    return {"tmp": tmp_path, "model": str(tiny_dir), "lora": str(tiny_lora), "suite": str(suite)}


def _string_scores(folder: Path) -> None:
    lines = folder.joinpath("items.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    first["scores"] = "high"
    folder.joinpath("items.jsonl").write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")


# (row id, argv with {placeholders}, text the one line must contain)
ROWS = [
    # run / compare: output locations
    ("compare-out-under-file", "compare {model} {lora} -s {suite} --out {tmp}/notes.txt/run", "is a file"),
    ("compare-out-is-file", "compare {model} {lora} -s {suite} --out {tmp}/notes.txt", "is a file"),
    ("run-out-under-file", "run {model} -s {suite} --out {tmp}/notes.txt/a/b", "is a file"),
    ("compare-out-holds-other-run", "compare {model} {lora} -s {suite} --out {tmp}/done", "already holds a run"),
    # run / compare: options
    ("run-limit-zero", "run {model} -s {suite} --limit 0 --out {tmp}/r", "--limit"),
    ("run-batch-zero", "run {model} -s {suite} --batch-size 0 --out {tmp}/r", "--batch-size"),
    ("run-fewshot-negative", "run {model} -s {suite} --num-fewshot -1 --out {tmp}/r", "--num-fewshot"),
    ("run-per-subject-zero", "run {model} --bench mmlu --limit-per-subject 0 --out {tmp}/r", "--limit-per-subject"),
    ("run-nothing", "run {model} --out {tmp}/r", "nothing to evaluate"),
    ("run-unknown-suite", "run {model} -s no-such-suite --out {tmp}/r", "no-such-suite"),
    ("run-unknown-bench", "run {model} --bench mmlux --out {tmp}/r", "mmlux"),
    ("run-suite-twice", "run {model} -s {suite} -s {suite} --out {tmp}/r", "named twice"),
    ("run-cuda-absent", "run {model} -s {suite} --device cuda --out {tmp}/r", "cuda"),
    ("run-bad-dtype", "run {model} -s {suite} --dtype float8 --out {tmp}/r", "float8"),
    ("run-bad-engine", "run {model} -s {suite} --engine tgi --out {tmp}/r", "tgi"),
    ("run-bad-load-in", "run {model} -s {suite} --load-in 3bit --out {tmp}/r", "3bit"),
    ("run-missing-model", "run {tmp}/no-model -s {suite} --out {tmp}/r", "no-model"),
    # run / compare: suite data
    ("suite-lone-surrogate", "run {model} -s {tmp}/surrogate --out {tmp}/r", "data.jsonl:1"),
    ("suite-invalid-json-line", "run {model} -s {tmp}/badjson --out {tmp}/r", "data.jsonl:2"),
    ("suite-unknown-metric", "run {model} -s {tmp}/badmetric --out {tmp}/r", "exact_mach"),
    # compare: gate inputs
    ("compare-policy-missing", "compare {model} {lora} -s {suite} --policy {tmp}/nope.yaml --out {tmp}/r", "nope.yaml"),
    ("compare-policy-malformed", "compare {model} {lora} -s {suite} --policy {tmp}/bad.yaml --out {tmp}/r", "bad.yaml"),
    ("compare-policy-b-vs-a", "compare {model} {lora} -s {suite} --policy {tmp}/arms.yaml --out {tmp}/r", "b_vs_a rules"),
    ("compare-train-missing", "compare {model} {lora} -s {suite} --train {tmp}/none.jsonl --out {tmp}/r", "none.jsonl"),
    ("compare-adapter-missing", "compare {model} {tmp}/no-lora -s {suite} --out {tmp}/r", "no-lora"),
    # report
    ("report-missing-folder", "report {tmp}/nowhere", "nowhere"),
    ("report-run-json-list", "report {tmp}/listrun", "run.json"),
    ("report-scores-string", "report {tmp}/strscores", "items.jsonl:1"),
    ("report-out-user-file", "report {tmp}/done --out {tmp}/report.html", "--force"),
    ("report-out-under-file", "report {tmp}/done --out {tmp}/notes.txt/r.html", "is a file"),
    # gate
    ("gate-run-json-list", "gate {tmp}/listrun --policy {tmp}/policy.yaml", "run.json"),
    ("gate-scores-string", "gate {tmp}/strscores --policy {tmp}/policy.yaml", "items.jsonl:1"),
    ("gate-policy-missing", "gate {tmp}/done --policy {tmp}/nope.yaml", "nope.yaml"),
    ("gate-noise-foreign", "gate {tmp}/done --policy {tmp}/policy.yaml --noise {tmp}/noise.json", "noise.json"),
    # calibrate
    ("calibrate-out-user-file", "calibrate {model} -s {suite} --out {tmp}/noise.json", "--force"),
    ("calibrate-out-folder", "calibrate {model} -s {suite} --out {tmp}/scan", "is a folder"),
    ("calibrate-batch-sizes", "calibrate {model} -s {suite} --out {tmp}/n.json --batch-sizes 4", "--batch-sizes"),
    # leaks
    ("leaks-train-missing", "leaks --train {tmp}/none.jsonl -s {suite} --out {tmp}/l", "none.jsonl"),
    ("leaks-out-holds-scan", "leaks --train {tmp}/train.jsonl -s {suite} --out {tmp}/scan", "already holds a leak scan"),
    ("leaks-out-is-file", "leaks --train {tmp}/train.jsonl -s {suite} --out {tmp}/notes.txt", "is a file"),
    ("leaks-workers-zero", "leaks --train {tmp}/train.jsonl -s {suite} --out {tmp}/l --workers 0", "--workers"),
    ("leaks-bad-field", "leaks --train {tmp}/train.jsonl -s {suite} --out {tmp}/l --field nonsense", "nonsense"),
    ("leaks-membership-alone", "leaks --train {tmp}/train.jsonl -s {suite} --out {tmp}/l --membership", "--model"),
    # train
    ("train-out-is-file", "train {model} --data {tmp}/train.jsonl --out {tmp}/notes.txt", "is a file"),
    ("train-out-under-file", "train {model} --data {tmp}/train.jsonl --out {tmp}/notes.txt/a", "is a file"),
    ("train-data-missing", "train {model} --data {tmp}/none.jsonl --out {tmp}/t", "none.jsonl"),
    ("train-data-surrogate", "train {model} --data {tmp}/surrogate.jsonl --out {tmp}/t", "surrogate.jsonl:1"),
    ("train-rank-zero", "train {model} --data {tmp}/train.jsonl --out {tmp}/t --rank 0", "rank"),
    ("train-cuda-absent", "train {model} --data {tmp}/train.jsonl --out {tmp}/t --device cuda", "cuda"),
    # ab
    ("ab-bad-seeds", "ab {model} --train {tmp}/train.jsonl -s {suite} --seeds x --out {tmp}/ab", "--seeds"),
    ("ab-nothing", "ab {model} --train {tmp}/train.jsonl --out {tmp}/ab", "nothing to evaluate"),
    ("ab-out-holds-compare", "ab {model} --train {tmp}/train.jsonl -s {suite} --out {tmp}/done", "did not write"),
    # usage errors (typer's own checks)
    ("calibrate-missing-out", "calibrate {model} -s {suite}", "Missing option '--out'"),
    ("run-unknown-option", "run {model} -s {suite} --bogus", "--bogus"),
    ("run-limit-not-a-number", "run {model} -s {suite} --limit many", "--limit"),
    ("gate-missing-run-dir", "gate", "run_dir"),
    # assets
    ("assets-unknown", "assets path no-such-asset", "no-such-asset"),
]


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "harness-home" not in p.parts}


def _invoke(argv: list[str], capfd) -> tuple[int, str]:
    capfd.readouterr()
    with pytest.raises(SystemExit) as stop:
        main(argv)
    return stop.value.code, capfd.readouterr().err


@pytest.mark.parametrize("row,argv,expect", ROWS, ids=[r[0] for r in ROWS])
def test_bad_input_is_one_line_exit_2_before_any_model_and_nothing_changes(row, argv, expect, ws, tripwire, capfd):
    args = [a.format(**ws) for a in argv.split()]
    before = _snapshot(ws["tmp"])
    code, err = _invoke(args, capfd)
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    assert expect in lines[0]
    assert _snapshot(ws["tmp"]) == before


def test_debug_adds_a_traceback_and_keeps_exit_2(ws, tripwire, capfd):
    code, err = _invoke(["--debug", "report", str(ws["tmp"] / "listrun")], capfd)
    assert code == 2
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("error: ")


def test_the_table_covers_every_command():
    commands = {r[1].split()[0] for r in ROWS}
    assert commands >= {"run", "compare", "report", "gate", "calibrate", "leaks", "train", "ab", "assets"}
    assert len(ROWS) >= 40
