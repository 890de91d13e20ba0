"""Generative-benchmark speed: lm-eval's `hf` backend vs the harness backend on GSM8K.

    .venv/bin/python bench/gsm8k.py [--items 16] [--max-gen-toks 256] [--batch 8] [--chat]

SmolLM2-135M fp32 on the offline GSM8K mirror, 0-shot, greedy, both backends in this run on
the same docs and the same lm-eval task. lm-eval's `hf` decodes each batch with
`model.generate` until every row has met a stop sequence (or max_gen_toks); the harness
engine drops finished rows from the batch and prefills each prompt without padding.
Prints wall times, the speed ratio and how many generations and scores are identical.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HARNESS_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=16)
    ap.add_argument("--max-gen-toks", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--chat", action="store_true", help="render through the chat template")
    args = ap.parse_args()

    from lm_eval.models.huggingface import HFLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.assets import asset_path
    from harness.evaluate.forgetting.backend import HarnessLM
    from harness.evaluate.forgetting.parity import compare_runs, run_backend
    from harness.evaluate.forgetting.tasks import resolve, task_manager

    folder = asset_path("smollm2-135m")
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    tm = task_manager(True)
    specs = [leaf.config for leaf in resolve(["gsm8k"], offline=True)]
    samples = {"gsm8k": list(range(args.items))}
    fmt = {"apply_chat_template": True} if args.chat else {}
    runs = {}
    for name, cls in (("lm-eval hf", HFLM), ("harness", HarnessLM)):
        lm = cls(pretrained=model, tokenizer=tok, batch_size=args.batch, max_gen_toks=args.max_gen_toks)
        runs[name] = run_backend(lm, list(tm.load(specs)["tasks"].values()), samples, 0, task_manager=tm, **fmt)
        print(f"{name:>10}: {runs[name].wall_s:7.1f} s  exact_match {runs[name].scores and sum(v['exact_match'] for v in runs[name].scores.values()) / len(runs[name].scores):.3f}")
    c = compare_runs(runs["lm-eval hf"], runs["harness"])
    ratio = runs["lm-eval hf"].wall_s / runs["harness"].wall_s
    print(f"GSM8K {args.items} items, max_gen_toks {args.max_gen_toks}, batch {args.batch}{', chat template' if args.chat else ''}: "
          f"harness {ratio:.2f}x lm-eval hf; identical generations {c['same_text']}/{c['generated']}, "
          f"identical per-filter scores {c['same_scores']}/{c['scored']}")


if __name__ == "__main__":
    main()
