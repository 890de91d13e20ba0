"""`harness import`: lm-eval output, produced here by lm-eval itself, becomes a run log that
`harness gate` and `harness report` read like one of harness's own.

lm-eval runs twice on the tiny model (base, then base + a random LoRA through its own `peft=`
argument) over an offline MMLU group of two subjects, ARC-Easy and a small generation task
with two filters, and writes with its own `EvaluationTracker` exactly as `lm_eval
--output_path --log_samples` does. The generation task's gold answers are the base's own
greedy answers on even documents ("nope" on odd ones), found by a first lm-eval pass: the
base then scores exactly 1/2 and the adapter, whose outputs differ, less.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.cli import main
from tests.test_run import cli

LIMIT = 8
SUBJECTS = ["mmlu_anatomy", "mmlu_astronomy"]
GROUP = "minimmlu"


def _gen_task(data: Path) -> dict:
    return {"task": "tiny_qa", "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data)}},
            "test_split": "test", "output_type": "generate_until", "doc_to_text": "Q: {{question}}\nA:",
            "doc_to_target": "{{answer}}", "generation_kwargs": {"until": ["\n"], "max_gen_toks": 4, "do_sample": False},
            "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
            "filter_list": [{"name": "strict", "filter": [{"function": "take_first"}]},
                            {"name": "lower", "filter": [{"function": "lowercase"}, {"function": "take_first"}]}]}


def _write_qa(path: Path, answers: list[str]) -> Path:
    path.write_text("".join(json.dumps({"question": f"What is {i} plus one?", "answer": a}) + "\n"
                            for i, a in enumerate(answers)))
    return path


def _lm_eval(model_args: str, tasks: list, out: Path | None):
    """lm-eval's `simple_evaluate`, saved as its CLI saves (`--output_path out --log_samples`)."""
    from lm_eval import simple_evaluate
    from lm_eval.loggers import EvaluationTracker

    from harness.evaluate.forgetting.tasks import task_manager

    tracker = EvaluationTracker(output_path=str(out)) if out else None
    res = simple_evaluate(model="hf", model_args=model_args + ",dtype=float32,device=cpu", tasks=tasks,
                          task_manager=task_manager(True), limit=LIMIT, log_samples=True, batch_size=8,
                          bootstrap_iters=0, evaluation_tracker=tracker, verbosity="ERROR")
    if tracker is not None:  # as lm_eval/_cli/run.py does after the evaluation
        samples = res.pop("samples")
        tracker.save_results_aggregated(results=res, samples=samples)
        for task in res["configs"]:
            tracker.save_results_samples(task_name=task, samples=samples[task])
    return res


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_dir, tiny_lora):
    from harness.evaluate.forgetting.tasks import resolve

    root = tmp_path_factory.mktemp("lmeval")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_DATASETS_OFFLINE", "1")
        first = _lm_eval(f"pretrained={tiny_dir}", [_gen_task(_write_qa(root / "qa0.jsonl", ["?"] * LIMIT))], None)
        said = {s["doc_id"]: s["filtered_resps"][0] for s in first["samples"]["tiny_qa"] if s["filter"] == "strict"}
        qa = _write_qa(root / "qa.jsonl", [said[i] if i % 2 == 0 else "nope" for i in range(LIMIT)])
        mmlu = {"group": GROUP, "task": [leaf.config for leaf in resolve(SUBJECTS, offline=True)]}
        arc = resolve(["arc_easy"], offline=True)[0].config
        tasks = [mmlu, arc, _gen_task(qa)]
        _lm_eval(f"pretrained={tiny_dir}", tasks, root / "base")
        _lm_eval(f"pretrained={tiny_dir},peft={tiny_lora}", tasks, root / "ft")
    return root


def _lm_eval_files(folder: Path) -> tuple[dict, dict[str, list[dict]]]:
    """The results file and per-sample lines of the single model subfolder lm-eval wrote."""
    (sub,) = [p for p in folder.iterdir() if p.is_dir()]
    (results,) = sub.glob("results_*.json")
    samples = {f.name.split("_20")[0][len("samples_"):]: [json.loads(x) for x in f.read_text().splitlines()]
               for f in sub.glob("samples_*.jsonl")}
    return json.loads(results.read_text()), samples


def _items(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "items.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def imported(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("imported") / "run"
    proc = cli("import", runs / "base", runs / "ft", "--label", "ft", "--out", out)
    return out, proc


def test_lm_eval_wrote_its_own_layout(runs):
    # lm-eval's tracker puts each run under a folder named after the model (the peft path for the adapter).
    for side in ("base", "ft"):
        (sub,) = [p for p in (runs / side).iterdir() if p.is_dir()]
        names = sorted(p.name.split("_20")[0] for p in sub.iterdir())
        assert names == ["results", "samples_arc_easy", "samples_mmlu_anatomy", "samples_mmlu_astronomy",
                         "samples_tiny_qa"]


def test_items_are_lm_evals_samples(runs, imported):
    out, proc = imported
    items = _items(out)
    assert len(items) == 2 * (2 * LIMIT + LIMIT + LIMIT)  # two models x (two subjects + arc + tiny_qa)
    by_key = {(r["model"], r["lm_eval_task"], r["doc_id"]): r for r in items}
    for model, side in (("base", "base"), ("ft", "ft")):
        _, samples = _lm_eval_files(runs / side)
        for task, lines in samples.items():
            for line in lines:
                rec = by_key[(model, task, line["doc_id"])]
                assert rec["kind"] == "bench" and rec["doc_hash"] == line["doc_hash"]
                if task == "tiny_qa":
                    assert rec["scores"][f"exact_match,{line['filter']}"] == line["exact_match"]
                    assert rec["responses"][line["filter"]] == line["filtered_resps"][0]
                else:
                    assert rec["scores"]["acc"] == line["acc"]
                    assert rec["correct"] is (line["acc"] == 1.0)
                    lls = [float(r[0]) for r in line["filtered_resps"]]
                    assert rec["prediction"] == str(lls.index(max(lls)))
    # the group is one task with its subjects, named as harness's own mmlu runs name them
    anatomy = by_key[("base", "mmlu_anatomy", 3)]
    assert (anatomy["task"], anatomy["subject"], anatomy["item_id"]) == (GROUP, "anatomy", "anatomy:3")
    _, samples = _lm_eval_files(runs / "base")
    arc0 = next(s for s in samples["arc_easy"] if s["doc_id"] == 0)
    assert by_key[("base", "arc_easy", 0)]["item_id"] == arc0["doc"]["id"]
    # gold answers are the base's own replies on even docs: base exact_match is 4/8 by construction
    base_em = [by_key[("base", "tiny_qa", d)]["scores"]["exact_match,strict"] for d in range(LIMIT)]
    assert base_em == [1.0, 0.0] * (LIMIT // 2)


def test_aggregates_are_lm_evals_results(runs, imported):
    out, _ = imported
    meta = json.loads((out / "run.json").read_text())
    assert meta["models"] == ["base", "ft"] and meta["spec"]["benches"] == ["arc_easy", GROUP, "tiny_qa"]  # lm-eval sorts tasks
    bench = meta["aggregates"]["bench"]
    for model, side in (("base", "base"), ("ft", "ft")):
        results, _ = _lm_eval_files(runs / side)
        r = results["results"]
        assert bench["arc_easy"][model]["acc"] == pytest.approx(r["arc_easy"]["acc,none"], abs=1e-12)
        assert bench["arc_easy"][model]["acc_norm"] == pytest.approx(r["arc_easy"]["acc_norm,none"], abs=1e-12)
        for filt in ("strict", "lower"):
            assert bench["tiny_qa"][model][f"exact_match,{filt}"] == pytest.approx(r["tiny_qa"][f"exact_match,{filt}"])
        subjects = bench[GROUP][model]["per_subject"]
        assert subjects["anatomy"]["acc"] == pytest.approx(r["mmlu_anatomy"]["acc,none"])
        assert subjects["astronomy"]["acc"] == pytest.approx(r["mmlu_astronomy"]["acc,none"])
        # equal-sized subjects: the group's mean over items is the mean of the two subjects
        assert bench[GROUP][model]["acc"] == pytest.approx((r["mmlu_anatomy"]["acc,none"] + r["mmlu_astronomy"]["acc,none"]) / 2)
        assert bench[GROUP][model]["n"] == 2 * LIMIT
    prov = meta["provenance"]
    assert prov["imported"]["note"] == "imported from lm-eval" and prov["imported"]["label"] == "ft"
    assert prov["imported"]["adapter"]["lm_eval_version"] == prov["libraries"]["lm_eval"]
    assert prov["imported"]["base"]["config"]["limit"] == LIMIT
    assert Path(prov["imported"]["base"]["results_file"]).parent.parent == (runs / "base").resolve()
    assert prov["adapters"]["ft"]["has_effect"] is True and prov["adapters"]["ft"]["probe_max_abs_logit_delta"] > 0
    assert meta["metrics"]["exact_match,strict"] == {"higher_is_better": True, "corpus_level": False}


def test_gate_and_report_read_the_import(runs, imported, tmp_path):
    out, _ = imported
    _, b_samples = _lm_eval_files(runs / "base")
    _, a_samples = _lm_eval_files(runs / "ft")

    def em(samples):
        return [s["exact_match"] for s in sorted(samples["tiny_qa"], key=lambda s: s["doc_id"]) if s["filter"] == "strict"]

    base, ft = em(b_samples), em(a_samples)
    assert sum(base) - sum(ft) >= 3, "precondition: the random adapter answers unlike the base"
    policy = tmp_path / "policy.yaml"
    policy.write_text('rules:\n  - {task: tiny_qa, metric: "exact_match,strict", max_drop: 5}\n')
    proc = cli("gate", out, "--policy", policy, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    verdict = json.loads((out / "verdict.json").read_text())
    (rule,) = [r for r in verdict["rules"] if r["name"].startswith("tiny_qa")]
    assert rule["status"] == "fail"
    assert rule["numbers"]["n"] == LIMIT
    assert rule["numbers"]["delta"] == pytest.approx(100 * (sum(ft) - sum(base)) / LIMIT)
    report = cli("report", out)
    assert report.returncode == 0 and Path(report.stdout.strip()) == out / "report.html"
    html = (out / "report.html").read_text()
    assert "imported from lm-eval" in html and "exact_match,strict" in html


# --------------------------------------------------------------------------- bad input


def _copy(runs: Path, side: str, dest: Path) -> Path:
    shutil.copytree(runs / side, dest)
    return next(p for p in dest.iterdir() if p.is_dir())


def _edit_results(sub: Path, change) -> None:
    (path,) = sub.glob("results_*.json")
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _edit_samples(sub: Path, task: str, change) -> None:
    (path,) = sub.glob(f"samples_{task}_*.jsonl")
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    path.write_text("".join(json.dumps(x) + "\n" for x in change(lines)))


def _drop_task(sub: Path) -> None:
    _edit_results(sub, lambda d: [d[k].pop("tiny_qa", None) for k in ("configs", "results", "n-shot", "versions")])
    next(sub.glob("samples_tiny_qa_*.jsonl")).unlink()


def _change_prompt(lines):
    lines[3]["prompt_hash"] = "0" * 64
    return lines


BAD = [
    ("different-tasks", _drop_task, "different tasks (only in base: tiny_qa)"),
    ("no-samples-file", lambda s: next(s.glob("samples_arc_easy_*.jsonl")).unlink(), "no per-sample file samples_arc_easy_"),
    ("n-shot", lambda s: _edit_results(s, lambda d: d["n-shot"].update(arc_easy=5)),
     "ran 0-shot for base and 5-shot for adapter"),
    ("config", lambda s: _edit_results(s, lambda d: d["configs"]["arc_easy"].update(doc_to_text="Q: {{question}}")),
     "configured differently for base and adapter (differing: doc_to_text)"),
    ("fewer-docs", lambda s: _edit_samples(s, "arc_easy", lambda ls: ls[:-1]), "1 only in base (e.g. doc 7)"),
    ("prompt", lambda s: _edit_samples(s, "arc_easy", _change_prompt),
     "1 of 8 documents differ between base and adapter (e.g. doc 3: prompt)"),
    ("not-json", lambda s: next(s.glob("results_*.json")).write_text("{"), "is not valid JSON"),
    ("sample-line", lambda s: _edit_samples(s, "tiny_qa", lambda ls: [*ls, {"no": "doc"}]), ":17 is not an lm-eval sample"),
]


def _main(capsys, *args) -> tuple[int, list[str]]:
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    return exc.value.code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("name, change, expect", BAD, ids=[b[0] for b in BAD])
def test_mismatched_or_broken_runs_are_refused(runs, tmp_path, capsys, name, change, expect):
    change(_copy(runs, "ft", tmp_path / "ft"))
    code, err = _main(capsys, "import", runs / "base", tmp_path / "ft", "--out", tmp_path / "run")
    assert code == 2 and len(err) == 1 and expect in err[0], err
    assert not (tmp_path / "run").exists()


def test_bad_arguments_are_refused(runs, tmp_path, capsys, tiny_dir):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("mine\n")
    both = tmp_path / "both"
    for side in ("base", "ft"):
        _copy(runs, side, tmp_path / side)
        shutil.copytree(next((tmp_path / side).iterdir()), both / side)
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules: [{task: hellaswag, metric: acc, max_drop: 1}]\n")
    rows = [
        ((tmp_path / "nowhere", runs / "ft"), "base lm-eval output", "does not exist"),
        ((tmp_path / "empty", runs / "ft"), "", "no lm-eval results_<time>.json in base folder"),
        ((both, runs / "ft"), "", "holds lm-eval results of 2 models"),
        ((runs / "base", runs / "ft", "--label", "base"), "", "--label 'base'"),
        ((runs / "base", runs / "ft", "--policy", policy), "", "'hellaswag', which this run will not evaluate"),
        ((runs / "base", runs / "ft"), "notes", "is a file"),
        (("compare", runs / "base", f"ft={runs / 'ft'}", "--suite", "squad-qa"), "", "imported, not evaluated"),
        (("compare", tiny_dir, runs / "ft"), "", f"{runs / 'ft'} is lm-eval output but {tiny_dir} is not"),
    ]
    for args, where, expect in rows:
        out = tmp_path / "notes.txt" if where == "notes" else tmp_path / "run"
        command = [] if args[0] == "compare" else ["import"]
        code, err = _main(capsys, *command, *args, "--out", out)
        assert code == 2 and len(err) == 1 and expect in err[0], (args, err)
    assert not (tmp_path / "run").exists() and (tmp_path / "notes.txt").read_text() == "mine\n"


def test_compare_of_two_lm_eval_folders_imports_them(runs, imported, tmp_path, capsys):
    code, _ = _main(capsys, "compare", runs / "base", f"ft={runs / 'ft'}", "--out", tmp_path / "cmp")
    assert code == 0 and _items(tmp_path / "cmp") == _items(imported[0])


def test_replacing_another_run_needs_force(runs, imported, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(imported[0], out)
    code, err = _main(capsys, "import", runs / "base", runs / "ft", "--label", "other", "--out", out)
    assert code == 2 and "already holds a run" in err[0]
    assert json.loads((out / "run.json").read_text())["models"] == ["base", "ft"]


def test_a_metric_lm_eval_does_not_average_is_left_out(runs, tmp_path, capsys):
    # acc_norm's written aggregate no longer equals the mean of its samples: not a per-item metric
    _edit_results(_copy(runs, "ft", tmp_path / "ft"), lambda d: d["results"]["arc_easy"].update({"acc_norm,none": 0.123}))
    code, err = _main(capsys, "import", runs / "base", tmp_path / "ft", "--out", tmp_path / "run")
    assert code == 0
    assert any("'arc_easy': metric 'acc_norm' not imported" in line and "(0.123000)" in line for line in err), err
    arc = [r for r in _items(tmp_path / "run") if r["task"] == "arc_easy"]
    assert arc and all(set(r["scores"]) == {"acc"} for r in arc)


def test_chat_rendered_lm_eval_runs_keep_their_format(runs, tmp_path, capsys):
    """Runs lm-eval rendered through a chat template are recorded as such (spec.bench_format),
    so a policy's bench_prompts and the report header see how the prompts were made."""
    def chat(d):
        d.update(chat_template="{{ messages }}", chat_template_sha="ab" * 32, fewshot_as_multiturn=True)

    for side in ("base", "ft"):
        _edit_results(_copy(runs, side, tmp_path / side), chat)
    code, _ = _main(capsys, "import", tmp_path / "base", tmp_path / "ft", "--out", tmp_path / "run")
    assert code == 0
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["spec"]["bench_format"] == {"chat_template": True, "fewshot_as_multiturn": True}
    assert "chat template, few-shot as turns" in (tmp_path / "run" / "report.html").read_text()
