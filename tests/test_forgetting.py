"""Forgetting checks: offline mirrors render lm-eval's exact requests; our backend gives
lm-eval's hf backend's numbers; benchmarks flow into the run log."""

from __future__ import annotations

import json

import datasets
import pytest

from harness.evaluate.forgetting.parity import compare_runs, run_backend
from harness.evaluate.forgetting.tasks import resolve, task_manager
from tests.test_run import cli, make_suite

SUBJECTS = ["mmlu_anatomy", "mmlu_high_school_physics"]


def _serve_hub_names_from_assets(monkeypatch):
    """Let lm-eval's *unmodified* tasks load their hub dataset names from the local arrow files."""
    from harness.assets import asset_path

    real = datasets.load_dataset

    def fake(path=None, name=None, **kw):
        if path == "cais/mmlu":
            folder = asset_path("mmlu") / name
            return real("arrow", data_files={s: str(next((folder / s).glob("*.arrow"))) for s in ("test", "dev", "validation")})
        if path == "Rowan/hellaswag":  # lm-eval touches a train split even at 0-shot; nothing is drawn from it
            val = str(next((asset_path("hellaswag") / "none" / "validation").glob("*.arrow")))
            return real("arrow", data_files={"validation": val, "train": val})
        raise AssertionError(f"unexpected dataset {path}")

    monkeypatch.setattr("lm_eval.api.task.datasets.load_dataset", fake)


@pytest.mark.parametrize("task_name, shots", [("mmlu_anatomy", 0), ("mmlu_anatomy", 5), ("hellaswag", 0)])
def test_mirror_renders_lm_evals_requests(monkeypatch, task_name, shots):
    tm = task_manager(True)
    mirror_cfg = resolve([task_name], num_fewshot=shots, offline=True)[0].config
    mirror = tm.load([mirror_cfg])["tasks"][task_name]
    _serve_hub_names_from_assets(monkeypatch)
    original = tm.load([task_name])["tasks"][task_name]
    assert original.config.dataset_path in ("cais/mmlu", "Rowan/hellaswag")  # really lm-eval's own config
    for task in (mirror, original):
        task.set_config("num_fewshot", shots)
        task.set_fewshot_seed(1234)
        task.build_all_requests(limit=4, rank=0, world_size=1)
    got = [(i.doc_id, i.idx, i.args) for i in mirror.instances]
    want = [(i.doc_id, i.idx, i.args) for i in original.instances]
    assert got == want and len(got) == 16
    if shots:
        assert got[0][2][0].count("\nAnswer:") == shots + 1  # few-shot block from the dev split


@pytest.fixture(scope="module")
def tiny_model(tiny_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_dir).eval(), AutoTokenizer.from_pretrained(tiny_dir)


def _parity(model, tok, task_names, shots, limit):
    from lm_eval.models.huggingface import HFLM

    from harness.evaluate.forgetting.backend import HarnessLM

    tm = task_manager(True)
    specs = [leaf.config for leaf in resolve(task_names, num_fewshot=shots, offline=True)]
    samples = {name: list(range(limit)) for name in task_names}
    ref = run_backend(HFLM(pretrained=model, tokenizer=tok, batch_size=8), list(tm.load(specs)["tasks"].values()), samples, shots, task_manager=tm)
    ours = run_backend(HarnessLM(pretrained=model, tokenizer=tok, batch_size=8), list(tm.load(specs)["tasks"].values()), samples, shots, task_manager=tm)
    return compare_runs(ref, ours)


@pytest.mark.parametrize("names, shots, limit", [(SUBJECTS, 0, 6), (SUBJECTS, 5, 3), (["hellaswag"], 0, 8)])
def test_backend_parity_tiny(tiny_model, names, shots, limit):
    model, tok = tiny_model
    result = _parity(model, tok, names, shots, limit)
    assert result["items"] == len(names) * limit
    assert result["agree"] == result["items"]
    assert result["max_abs_dll"] <= 1e-4, result


@pytest.mark.slow
@pytest.mark.parametrize("names, shots, limit", [(SUBJECTS, 0, 3), (SUBJECTS, 5, 2), (["hellaswag"], 0, 6)])
def test_backend_parity_smollm2(names, shots, limit):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tests.conftest import smollm2_dir

    model = AutoModelForCausalLM.from_pretrained(smollm2_dir()).eval()
    result = _parity(model, AutoTokenizer.from_pretrained(smollm2_dir()), names, shots, limit)
    assert result["agree"] == result["items"] == len(names) * limit
    assert result["max_abs_dll"] <= 1e-4, result


def test_compare_with_benchmarks_records_items_and_flips(tmp_path, tiny_dir, tiny_lora):
    suite = make_suite(tmp_path / "arith", n=4)
    out = tmp_path / "run"
    args = ["compare", tiny_dir, f"ft={tiny_lora}", "--suite", suite, "--bench", "mmlu_anatomy,hellaswag",
            "--bench", "mmlu_astronomy", "--limit-per-subject", 3, "--out", out]
    proc = cli(*args)
    assert "hellaswag" in proc.stdout
    meta = json.loads((out / "run.json").read_text())
    rows = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    bench = [r for r in rows if r["kind"] == "bench"]
    assert len(bench) == 2 * 9
    for r in bench:
        assert {"model", "task", "item_id", "prediction", "correct", "subject", "scores", "loglikelihoods"} <= set(r)
        assert r["correct"] == (r["scores"]["acc"] == 1.0)
    hs = [r for r in bench if r["task"] == "hellaswag"]
    assert all("acc_norm" in r["scores"] for r in hs)
    from harness.leaks import bench_items

    leak_ids = {it.item_id for it in bench_items("hellaswag")}
    assert {r["item_id"] for r in hs} <= leak_ids  # leak labels attach to exactly these items
    assert all(r["item_id"] == f"{r_ind}:{r['doc_id']}" for r in hs for r_ind in [r["item_id"].split(":")[0]])
    by_model = {m: sorted(r["item_id"] for r in bench if r["model"] == m) for m in ("base", "ft")}
    assert by_model["base"] == by_model["ft"]  # same items for base and adapter, always
    anatomy = [r for r in bench if r["task"] == "mmlu_anatomy" and r["model"] == "base"]
    assert [r["item_id"] for r in anatomy] != ["anatomy:0", "anatomy:1", "anatomy:2"]  # seeded sample, not the head
    agg = meta["aggregates"]["bench"]
    assert agg["hellaswag"]["base"]["n"] == 3 and 0 <= agg["hellaswag"]["ft"]["acc_norm"] <= 1
    flips = sum(r["correct"] != b["correct"] for r in bench if r["model"] == "ft"
                for b in bench if b["model"] == "base" and b["item_id"] == r["item_id"] and b["task"] == r["task"])
    recorded = sum(a.get("flips", {}).get(k, 0) for t in agg.values() for a in t.values()
                   for k in ("right_to_wrong", "wrong_to_right"))
    assert flips == recorded
    prov = meta["provenance"]["benchmarks"]["hellaswag"]
    assert prov["limit_per_subject"] == 3 and prov["split"] == ["validation"] and len(prov["item_set_hash"]) == 64

    again = cli(*args)
    meta2 = json.loads((out / "run.json").read_text())
    assert meta2["timing"]["items_computed"] == 0, again.stdout
    assert meta2["provenance"]["bench_requests"]["base"]["computed"] == 0
    rows2 = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    assert sorted(map(json.dumps, [r for r in rows2 if r["kind"] == "bench"])) == sorted(map(json.dumps, bench))
    assert meta2["aggregates"]["bench"] == agg  # served from the per-model outcome cache, unchanged


def test_benchmark_outcome_key_follows_docs_samples_and_shots(monkeypatch):
    """The cached outcome of a model is reused only for the very same docs and settings."""
    from harness.evaluate.forgetting.runner import _content_hash

    tm = task_manager(True)
    specs = [leaf.config for leaf in resolve(["mmlu_anatomy"], num_fewshot=0, offline=True)]
    tasks = tm.load(specs)["tasks"]
    base = _content_hash(tasks, {"mmlu_anatomy": [0, 1, 2]}, 0, 0)
    assert base == _content_hash(tm.load(specs)["tasks"], {"mmlu_anatomy": [0, 1, 2]}, 0, 0)
    assert base != _content_hash(tasks, {"mmlu_anatomy": [0, 1, 3]}, 0, 0)
    assert base != _content_hash(tasks, {"mmlu_anatomy": [0, 1, 2]}, 5, 0)
    task = tasks["mmlu_anatomy"]
    edited = [dict(d) for d in task.eval_docs]
    edited[1]["question"] += " (edited)"  # same doc ids, changed text
    monkeypatch.setattr(type(task), "eval_docs", property(lambda self: edited))
    assert base != _content_hash(tasks, {"mmlu_anatomy": [0, 1, 2]}, 0, 0)


def test_unknown_benchmark_is_one_line(tmp_path, tiny_dir):
    proc = cli("run", tiny_dir, "--bench", "hellaswagg", "--out", tmp_path / "o", check=False)
    assert proc.returncode == 2 and "did you mean 'hellaswag'" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli("run", tiny_dir, "--bench", "arc_easy", "--num-fewshot", "5", "--out", tmp_path / "o", check=False)
    assert proc.returncode == 2 and "training split" in proc.stderr


def _reference_scores(model, requests):
    """One plain forward per request: the definition the scorer must reproduce."""
    import torch

    out = []
    with torch.inference_mode():
        for ctx, cont in requests:
            ids = torch.tensor([list(ctx) + list(cont)])
            logp = torch.log_softmax(model(ids).logits[0, len(ctx) - 1:-1].float(), -1)
            tgt = torch.tensor(cont)
            out.append((float(logp[torch.arange(len(cont)), tgt].sum()), bool((logp.argmax(-1) == tgt).all())))
    return out


def _mixed_requests(seed: int = 0):
    """MMLU-like groups with per-subject blocks, HellaSwag-like endings, and loners."""
    import random

    rng = random.Random(seed)
    generic = [rng.randrange(5, 200) for _ in range(12)]
    requests = []
    for subject in range(4):  # MMLU-like: generic start, per-subject block, question, 1-token answers
        block = generic + [rng.randrange(5, 200) for _ in range(10 + 15 * subject)]
        for _ in range(3):
            question = block + [rng.randrange(5, 200) for _ in range(rng.randrange(3, 30))]
            requests += [(question, [a]) for a in (7, 8, 9, 10)]
    for _ in range(5):  # HellaSwag-like: one context, multi-token endings
        ctx = [rng.randrange(5, 200) for _ in range(rng.randrange(10, 40))]
        requests += [(ctx, [rng.randrange(5, 200) for _ in range(rng.randrange(1, 9))]) for _ in range(4)]
    requests += [([rng.randrange(5, 200) for _ in range(n)], [11, 12]) for n in (3, 17, 60)]  # loners
    return requests


@pytest.mark.parametrize("order_seed", [None, 3])
def test_scorer_shares_prefixes_and_matches_plain_forwards(tiny_model, order_seed):
    """Groups with different prefix lengths share batches (masked cache slots, per-row
    positions); rows with nothing to share ride along; every log-prob matches a plain pass."""
    from harness.evaluate.forgetting import scorer

    model, _ = tiny_model
    requests = _mixed_requests()
    seqs = scorer.build_sequences(requests, 2048)
    groups = scorer.group_sequences(seqs)
    assert max(p for p, _ in groups) >= 12 + 10 + 15 * 3  # the per-subject block, not just the generic start
    got = scorer.score(model, requests, 2048, token_budget=256, order_seed=order_seed)
    want = _reference_scores(model, requests)
    assert [g for _, g in got] == [g for _, g in want]
    assert max(abs(a - b) for (a, _), (b, _) in zip(got, want)) <= 1e-4


@pytest.mark.parametrize("head", ["softcap", "lora"])
def test_scorer_heads_beyond_a_plain_linear(head):
    """A soft-capped head (Gemma 2, served by the model's own decoder) and a LoRA-adapted
    head both take the scorer's general head path and still match plain forwards."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Gemma2Config, LlamaConfig

    from harness.evaluate.forgetting import scorer

    torch.manual_seed(0)
    if head == "softcap":
        cfg = Gemma2Config(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, head_dim=16, final_logit_softcapping=5.0)
        model = AutoModelForCausalLM.from_config(cfg).eval()
    else:
        cfg = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)
        base = AutoModelForCausalLM.from_config(cfg)
        model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "lm_head"], init_lora_weights=False)).eval()
    requests = _mixed_requests(1)
    got = scorer.score(model, requests, 2048, token_budget=128)
    want = _reference_scores(model, requests)
    assert [g for _, g in got] == [g for _, g in want]
    assert max(abs(a - b) for (a, _), (b, _) in zip(got, want)) <= 1e-4
