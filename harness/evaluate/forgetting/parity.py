"""Run the same lm-eval tasks through lm-eval's `hf` backend and ours; compare per request.

Used by the parity tests and bench/forgetting.py: identical predictions and log-likelihoods
within tolerance are what let our numbers stand for lm-eval's.
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


def run_backend(lm, specs, samples, num_fewshot: int, seed: int = 0, task_manager=None) -> BackendRun:
    from lm_eval import simple_evaluate

    from harness.evaluate.forgetting.runner import _quiet_lm_eval

    _quiet_lm_eval()
    t0 = time.perf_counter()
    # Pass the TaskManager that built `specs`: otherwise lm-eval re-indexes all its tasks (~20 s).
    res = simple_evaluate(model=lm, tasks=specs, num_fewshot=num_fewshot, samples=samples, log_samples=True,
                          task_manager=task_manager,
                          bootstrap_iters=0, verbosity="ERROR", random_seed=seed, numpy_random_seed=seed,
                          torch_random_seed=seed, fewshot_random_seed=seed)
    wall = time.perf_counter() - t0
    lls, preds = {}, {}
    for task, rows in res["samples"].items():
        for s in rows:
            ll = [float(r[0]) for r in s["filtered_resps"]]
            lls[(task, s["doc_id"])] = ll
            preds[(task, s["doc_id"])] = max(range(len(ll)), key=ll.__getitem__)
    acc = {k: v.get("acc,none") for k, v in res["results"].items() if "acc,none" in v}
    return BackendRun(lls, preds, acc, wall)


def compare_runs(ref: BackendRun, ours: BackendRun) -> dict:
    """Agreement of argmax predictions and the largest |delta log-likelihood|."""
    keys = sorted(ref.lls)
    assert keys == sorted(ours.lls), "backends saw different docs"
    agree = sum(ref.preds[k] == ours.preds[k] for k in keys)
    max_dll = max(abs(a - b) for k in keys for a, b in zip(ref.lls[k], ours.lls[k]))
    return {"items": len(keys), "agree": agree, "max_abs_dll": max_dll}
