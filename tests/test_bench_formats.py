"""Generative lm-eval tasks (GSM8K) and chat-formatted benchmarks: the offline mirror renders
lm-eval's own requests, our backend gives lm-eval `hf`'s generations, scores and
log-likelihoods, and both flow into the run log, the gate and the report."""

from __future__ import annotations

import json

import datasets
import pytest

from harness.evaluate.forgetting.parity import compare_runs, run_backend
from harness.evaluate.forgetting.tasks import resolve, task_manager
from tests.test_forgetting import SUBJECTS
from tests.test_run import cli

CHAT = {"apply_chat_template": True, "fewshot_as_multiturn": True}


def _serve_gsm8k_from_asset(monkeypatch):
    """Let lm-eval's *unmodified* gsm8k tasks load `openai/gsm8k` from the local test split."""
    from harness.assets import asset_path

    real = datasets.load_dataset

    def fake(path=None, name=None, **kw):
        assert path == "openai/gsm8k", path
        test = str(asset_path("gsm8k") / "test.jsonl")
        return real("json", data_files={"test": test, "train": test})  # train: never drawn at 0-shot / fixed shots

    monkeypatch.setattr("lm_eval.api.task.datasets.load_dataset", fake)


@pytest.mark.parametrize("task_name, shots", [("gsm8k", 0), ("gsm8k_cot", 8), ("gsm8k_cot_zeroshot", 0)])
def test_gsm8k_mirror_renders_lm_evals_requests(monkeypatch, task_name, shots):
    tm = task_manager(True)
    mirror = tm.load([resolve([task_name], num_fewshot=shots, offline=True)[0].config])["tasks"][task_name]
    _serve_gsm8k_from_asset(monkeypatch)
    original = tm.load([task_name])["tasks"][task_name]
    assert original.config.dataset_path == "openai/gsm8k"  # really lm-eval's own config
    for task in (mirror, original):
        task.set_config("num_fewshot", shots)
        task.set_fewshot_seed(1234)
        task.build_all_requests(limit=5, rank=0, world_size=1)
    got = [(i.doc_id, i.args) for i in mirror.instances]
    want = [(i.doc_id, i.args) for i in original.instances]
    assert got == want and len(got) == 5
    context, gen_kwargs = got[0][1]
    assert "Janet" in context and context.count("A:" if "cot" in task_name else "Answer:") == shots + 1
    assert gen_kwargs["do_sample"] is False and gen_kwargs["until"]
    assert original.doc_to_target(original.eval_docs[0]).endswith("18")  # the gold answer of test item 0


def test_gsm8k_offline_refusals():
    from harness.errors import ConfigError
    from harness.evaluate.forgetting.tasks import _check_supported

    with pytest.raises(ConfigError, match="no training split for 5-shot"):
        resolve(["gsm8k"], num_fewshot=5, offline=True)
    with pytest.raises(ConfigError, match="samples its generations"):
        resolve(["gsm8k_cot_self_consistency"], offline=True)
    with pytest.raises(ConfigError, match="rolling log-likelihood"):
        _check_supported("wikitext", {"output_type": "loglikelihood_rolling"})
    _check_supported("gsm8k", {"output_type": "generate_until", "generation_kwargs": {"do_sample": False}})


@pytest.fixture(scope="module")
def tiny_model(tiny_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_dir).eval(), AutoTokenizer.from_pretrained(tiny_dir)


def _parity(model, tok, names, shots, limit, max_gen_toks=256, **fmt):
    from lm_eval.models.huggingface import HFLM

    from harness.evaluate.forgetting.backend import HarnessLM

    tm = task_manager(True)
    specs = [leaf.config for leaf in resolve(names, num_fewshot=shots, offline=True)]
    samples = {name: list(range(limit)) for name in names}
    runs = [run_backend(cls(pretrained=model, tokenizer=tok, batch_size=8, max_gen_toks=max_gen_toks),
                        list(tm.load(specs)["tasks"].values()), samples, shots, task_manager=tm, **fmt)
            for cls in (HFLM, HarnessLM)]
    return runs, compare_runs(*runs)


@pytest.fixture(scope="module")
def talkative_model(tmp_path_factory):
    """A tiny model whose greedy text varies with the prompt (the default init repeats ':')."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tests.conftest import build_tiny_model

    path = build_tiny_model(tmp_path_factory.mktemp("talkative"), init=0.1)
    return AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


def test_generation_parity_tiny(talkative_model):
    """Greedy generations, extracted answers and exact-match scores equal lm-eval hf's."""
    (ref, ours), result = _parity(*talkative_model, ["gsm8k"], 0, 16, max_gen_toks=48)
    assert result["generated"] == result["same_text"] == 16
    assert result["scored"] == result["same_scores"] == 32  # two filters: strict-match, flexible-extract
    assert result["same_requests"] == 16
    assert ref.acc == ours.acc
    assert len(set(ref.texts.values())) > 1  # a model that says one thing would make parity trivial


@pytest.mark.parametrize("names, shots, limit", [(SUBJECTS, 0, 4), (SUBJECTS, 2, 3), (["hellaswag"], 0, 6)])
def test_chat_template_parity_tiny(tiny_model, names, shots, limit):
    (ref, _), result = _parity(*tiny_model, names, shots, limit, **CHAT)
    assert result["items"] == result["agree"] == len(names) * limit
    assert result["max_abs_dll"] <= 1e-4, result
    assert result["same_requests"] == result["items"]
    context = next(iter(ref.requests.values()))[0][0]
    assert "<|im_start|>user" in context and context.rstrip().endswith("assistant")  # SmolLM2's template
    if shots:
        assert context.count("<|im_start|>assistant") == shots + 1  # few-shot examples as earlier turns


@pytest.mark.slow
def test_gsm8k_generation_parity_smollm2():
    """16 GSM8K items on the real model: identical greedy generations and scores."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tests.conftest import smollm2_dir

    model = AutoModelForCausalLM.from_pretrained(smollm2_dir()).eval()
    (ref, ours), result = _parity(model, AutoTokenizer.from_pretrained(smollm2_dir()), ["gsm8k"], 0, 16,
                                  max_gen_toks=96)
    assert result["generated"] == result["same_text"] == 16, result
    assert result["scored"] == result["same_scores"] == 32, result
    assert ref.acc == ours.acc


@pytest.mark.slow
@pytest.mark.parametrize("names, shots, limit", [(SUBJECTS, 0, 3), (SUBJECTS, 2, 2), (["hellaswag"], 0, 4)])
def test_chat_template_parity_smollm2(names, shots, limit):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tests.conftest import smollm2_dir

    model = AutoModelForCausalLM.from_pretrained(smollm2_dir()).eval()
    _, result = _parity(model, AutoTokenizer.from_pretrained(smollm2_dir()), names, shots, limit, **CHAT)
    assert result["agree"] == result["items"] == len(names) * limit
    assert result["max_abs_dll"] <= 1e-4, result


def _gate_policy(tmp_path, **bench_prompts):
    policy = tmp_path / "gate.yaml"
    lines = ["version: 1", "on_no_effect: warn", "on_inconclusive: pass", "rules:",
             "  - {task: gsm8k, metric: exact_match, max_drop: 100}"]
    if bench_prompts:
        lines.append("bench_prompts: " + json.dumps(bench_prompts))
    policy.write_text("\n".join(lines) + "\n")
    return policy


def test_compare_gsm8k_chat_records_gate_report(tmp_path, tiny_dir, tiny_lora):
    out = tmp_path / "run"
    policy = _gate_policy(tmp_path, chat_template=True)
    proc = cli("compare", tiny_dir, f"ft={tiny_lora}", "--bench", "gsm8k,mmlu_anatomy", "--limit", 3,
               "--policy", policy, "--out", out, check=False)
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((out / "run.json").read_text())
    assert meta["spec"]["bench_format"] == {"chat_template": True, "fewshot_as_multiturn": True}
    prov = meta["provenance"]["benchmarks"]
    assert prov["gsm8k"]["output_type"] == ["generate_until"] and prov["gsm8k"]["format"]["chat_template"]
    rows = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    gsm = [r for r in rows if r["task"] == "gsm8k"]
    assert sorted((r["model"], r["doc_id"]) for r in gsm) == [(m, i) for m in ("base", "ft") for i in range(3)]
    for r in gsm:
        assert set(r["scores"]) == {"exact_match", "exact_match_flexible_extract"}
        assert r["details"]["exact_match"]["filter"] == "strict-match"
        extracted = r["details"]["exact_match_flexible_extract"]["extracted"]
        assert r["scores"]["exact_match_flexible_extract"] == float(extracted.strip("$.").replace(",", "") == r["target"].split("#### ")[-1])
        assert r["correct"] == (r["scores"]["exact_match"] == 1.0) and isinstance(r["prediction"], str)
    agg = meta["aggregates"]["bench"]["gsm8k"]
    for model in ("base", "ft"):
        mine = [r for r in gsm if r["model"] == model]
        assert agg[model]["exact_match"] == sum(r["scores"]["exact_match"] for r in mine) / 3
    assert meta["metrics"]["exact_match"]["higher_is_better"] is True
    verdict = json.loads((out / "verdict.json").read_text())
    assert any(r["task"] == "gsm8k" and r["metric"] == "exact_match" for r in verdict["rules"])
    html = (out / "report.html").read_text()
    assert "chat template, few-shot as turns" in html

    # the same run under a policy that wants plain prompts: the gate refuses it (exit 2, one line)
    plain = tmp_path / "plain.yaml"
    plain.write_text(_gate_policy(tmp_path).read_text() + "bench_prompts: {chat_template: false}\n")
    refused = cli("gate", out, "--policy", plain, check=False)
    assert refused.returncode == 2 and "plain prompts" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1


def test_chat_template_flag_errors(tmp_path, tiny_dir):
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(tiny_dir, bare)
    for f in ("chat_template.jinja",):
        (bare / f).unlink(missing_ok=True)
    cfg = json.loads((bare / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (bare / "tokenizer_config.json").write_text(json.dumps(cfg))
    proc = cli("run", bare, "--bench", "mmlu_anatomy", "--chat-template", "--out", tmp_path / "o", check=False)
    assert proc.returncode == 2 and "has no chat template" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "o" / "run.json").exists()
    proc = cli("compare", tiny_dir, tiny_dir, "--bench", "gsm8k", "--chat-template", "--policy",
               _gate_policy(tmp_path, chat_template=True, system_instruction="Be brief."), "--out", tmp_path / "p",
               check=False)
    assert proc.returncode == 2 and "bench_prompts require" in proc.stderr
