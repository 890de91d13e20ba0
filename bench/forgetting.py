"""Forgetting-check speed: lm-eval's `hf` backend vs the harness backend, same run, same docs.

    .venv/bin/python bench/forgetting.py [--quick]

SmolLM2-135M fp32 on the offline mirrors: MMLU 0-shot (first 5 per subject = 285 items),
MMLU 5-shot (first 1 per subject = 57), HellaSwag (first 200); then the harness in bf16 on
MMLU 0-shot against the fp32 reference. Prints wall times, speed ratios, prediction
agreement, max |delta log-likelihood| and, for MMLU 0-shot, the share of the fp32 roofline:
model FLOPs for the distinct inputs lm-eval asks for (LM head only where a log-prob is
read) over the matmul peak measured here, in this run. This VM's peak drifts by up to 20%
within minutes, so it is measured before and after the cases and the higher one is used:
the roofline share errs low, never high.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TQDM_DISABLE", "1")  # before lm-eval imports tqdm: no per-task bars in the output

import torch  # noqa: E402

from harness.assets import asset_path
from harness.evaluate.forgetting.backend import HarnessLM
from harness.evaluate.forgetting.parity import compare_runs, run_backend
from harness.evaluate.forgetting.scorer import build_sequences
from harness.evaluate.forgetting.tasks import resolve, task_manager


class Recording(HarnessLM):
    """Keeps the token requests lm-eval sends, to count the FLOPs they need."""

    def _loglikelihood_tokens(self, requests, disable_tqdm=False, override_bs=None):
        self.seen = getattr(self, "seen", []) + [(list(c), list(x)) for _, c, x in requests]
        return super()._loglikelihood_tokens(requests, disable_tqdm, override_bs)


def matmul_peak(dtype=torch.float32, n=2048, reps=10) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def needed_flops(model, requests, max_length) -> float:
    cfg = model.config
    embed = cfg.vocab_size * cfg.hidden_size
    body = sum(p.numel() for p in model.parameters()) - embed  # tied head counted below, per position
    flops = 0.0
    for seq in build_sequences(requests, max_length):
        n = len(seq.tokens)
        heads = n - seq.first_needed
        attn = 2 * 2 * cfg.num_hidden_layers * cfg.hidden_size * n * n / 2  # QK^T and AV, causal half
        flops += 2 * body * n + attn + 2 * embed * heads
    return flops


def setting(tm, names, shots, limit):
    specs = [leaf.config for leaf in resolve(names, num_fewshot=shots, offline=True)]
    tasks = tm.load(specs)["tasks"]
    samples = {t: list(range(min(limit, len(task.eval_docs)))) for t, task in tasks.items()}
    return specs, samples


def parity_case(tm, ref_model, tok, names, shots, limit, batch_size=16, model=None):
    """lm-eval's `hf` backend on `ref_model` and the harness backend on `model` (default: the
    same model), same docs: (reference run, harness run, comparison, the harness LM with the
    requests it saw)."""
    from lm_eval.models.huggingface import HFLM

    specs, samples = setting(tm, names, shots, limit)
    ref = run_backend(HFLM(pretrained=ref_model, tokenizer=tok, batch_size=batch_size),
                      list(tm.load(specs)["tasks"].values()), samples, shots, task_manager=tm)
    lm = Recording(pretrained=model if model is not None else ref_model, tokenizer=tok, batch_size=batch_size)
    ours = run_backend(lm, list(tm.load(specs)["tasks"].values()), samples, shots, task_manager=tm)
    return ref, ours, compare_runs(ref, ours), lm


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer items, for a smoke run")
    ap.add_argument("--cases", default="mmlu0,mmlu5,hellaswag,bf16",
                    help="comma-separated subset of mmlu0,mmlu5,hellaswag,bf16 (bf16 needs mmlu0)")
    args = ap.parse_args()
    wanted = set(args.cases.split(","))
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = asset_path("smollm2-135m")
    tok = AutoTokenizer.from_pretrained(path)
    fp32 = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    tm = task_manager(True)
    q = args.quick
    cases = [("MMLU 0-shot", ["mmlu"], 0, 1 if q else 5, "mmlu0"), ("MMLU 5-shot", ["mmlu"], 5, 1, "mmlu5"),
             ("HellaSwag", ["hellaswag"], 0, 20 if q else 200, "hellaswag")]
    cases = [c[:4] for c in cases if c[4] in wanted or (c[4] == "mmlu0" and "bf16" in wanted)]
    peak = matmul_peak()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, fp32 matmul peak {peak:.1f} GFLOP/s (2048^2, best of 10)")
    refs, rooflines = {}, []
    for label, names, shots, limit in cases:
        ref, ours, c, lm = parity_case(tm, fp32, tok, names, shots, limit)
        refs[label] = (ref, names, shots, limit)
        line = (f"{label:12} items {c['items']:4}  lm-eval hf {ref.wall_s:7.1f}s  harness {ours.wall_s:6.1f}s  "
                f"ratio {ref.wall_s / ours.wall_s:5.2f}x  agree {c['agree']}/{c['items']}  max|dll| {c['max_abs_dll']:.1e}")
        print(line, flush=True)
        if shots == 0 and names == ["mmlu"]:
            rooflines.append((label, needed_flops(fp32, lm.seen, lm.max_length), ours.wall_s))
        key = next(iter(ref.acc))
        print(f"{'':12} acc ({key}): lm-eval hf {ref.acc[key]:.4f}, harness {ours.acc[key]:.4f}")
    after = matmul_peak()
    peak = max(peak, after)
    print(f"fp32 matmul peak after the cases {after:.1f} GFLOP/s; using {peak:.1f}")
    for label, flops, wall in rooflines:
        roof = flops / (peak * 1e9)
        print(f"{label:12} roofline {roof:.1f}s (model FLOPs / peak) -> harness at {100 * roof / wall:.0f}% of roofline")
    if "bf16" not in wanted:
        return
    bf16 = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16).eval()
    ref, names, shots, limit = refs["MMLU 0-shot"]
    specs, samples = setting(tm, names, shots, limit)
    ours = run_backend(HarnessLM(pretrained=bf16, tokenizer=tok, batch_size=16), list(tm.load(specs)["tasks"].values()), samples, shots, task_manager=tm)
    c = compare_runs(ref, ours)
    print(f"{'MMLU bf16':12} items {c['items']:4}  lm-eval hf fp32 {ref.wall_s:7.1f}s  harness bf16 {ours.wall_s:6.1f}s  "
          f"ratio {ref.wall_s / ours.wall_s:5.2f}x  agree {c['agree']}/{c['items']} ({100 * c['agree'] / c['items']:.1f}%)")


if __name__ == "__main__":
    main()
