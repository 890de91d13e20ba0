"""Run the same lm-eval tasks through lm-eval's `hf` backend and ours; compare per request.

Used by the parity tests and bench/forgetting.py: identical predictions and log-likelihoods
within tolerance (multiple choice), identical generations and scores (generate_until), with
plain or chat-template prompts, are what let our numbers stand for lm-eval's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class BackendRun:
    lls: dict[tuple[str, int], list[float]]   # (task, doc_id) -> per-choice log-likelihoods
    preds: dict[tuple[str, int], int]
    acc: dict[str, float]                     # lm-eval's aggregated results per task/group
    wall_s: float
    texts: dict[tuple[str, int], str]         # generate_until: (task, doc_id) -> the generation
    scores: dict[tuple[str, int, str], dict]  # (task, doc_id, filter) -> per-sample metrics and extraction
    requests: dict[tuple[str, int], list]     # (task, doc_id) -> the rendered request arguments


def run_backend(lm, specs, samples, num_fewshot: int, seed: int = 0, task_manager=None, **fmt) -> BackendRun:
    """`fmt`: lm-eval's rendering switches (apply_chat_template, fewshot_as_multiturn,
    system_instruction), passed to `simple_evaluate` as they are."""
    from lm_eval import simple_evaluate

    from harness.evaluate.forgetting.runner import _quiet_lm_eval

    _quiet_lm_eval()
    t0 = time.perf_counter()
    # Pass the TaskManager that built `specs`: otherwise lm-eval re-indexes all its tasks (~20 s).
    res = simple_evaluate(model=lm, tasks=specs, num_fewshot=num_fewshot, samples=samples, log_samples=True,
                          task_manager=task_manager,
                          bootstrap_iters=0, verbosity="ERROR", random_seed=seed, numpy_random_seed=seed,
                          torch_random_seed=seed, fewshot_random_seed=seed, **fmt)
    wall = time.perf_counter() - t0
    lls, preds, texts, scores, requests = {}, {}, {}, {}, {}
    for task, rows in res["samples"].items():
        for s in rows:
            key = (task, s["doc_id"])
            requests[key] = [list(a) if isinstance(a, (list, tuple)) else a for a in s["arguments"]]
            if s["filtered_resps"] and isinstance(s["filtered_resps"][0], (list, tuple)):
                ll = [float(r[0]) for r in s["filtered_resps"]]
                lls[key] = ll
                preds[key] = max(range(len(ll)), key=ll.__getitem__)
            else:
                texts[key] = s["resps"][0][0]
                scores[(task, s["doc_id"], s["filter"])] = {
                    "extracted": s["filtered_resps"][0], **{m: float(s[m]) for m in s["metrics"]}}
    acc = {k: v.get("acc,none") for k, v in res["results"].items() if "acc,none" in v}
    return BackendRun(lls, preds, acc, wall, texts, scores, requests)


def compare_runs(ref: BackendRun, ours: BackendRun) -> dict:
    """Agreement of argmax predictions and the largest |delta log-likelihood| (multiple choice);
    identical generations and per-filter scores (generate_until); identical rendered requests."""
    assert sorted(ref.requests) == sorted(ours.requests), "backends saw different docs"
    keys = sorted(ref.lls)
    agree = sum(ref.preds[k] == ours.preds[k] for k in keys)
    max_dll = max((abs(a - b) for k in keys for a, b in zip(ref.lls[k], ours.lls[k])), default=0.0)
    gen = sorted(ref.texts)
    return {"items": len(keys) + len(gen), "agree": agree, "max_abs_dll": max_dll,
            "generated": len(gen), "same_text": sum(ref.texts[k] == ours.texts.get(k) for k in gen),
            "same_scores": sum(v == ours.scores.get(k) for k, v in ref.scores.items()), "scored": len(ref.scores),
            "same_requests": sum(ref.requests[k] == ours.requests[k] for k in ref.requests)}
