"""Generation speed: harness engine vs one-at-a-time `model.generate`, same run, same items.

    .venv/bin/python bench/generate.py [--items 64] [--suite squad-qa] [--batch-size 16]

Prints wall times, the speed ratio, how many greedy outputs are identical, and one
differing item if any (fp32 padding can flip near-ties). Also prints prompt/new token
totals, because the ratio depends on the prefill share: prefill FLOPs are the same for
both methods, batching only wins on decode.
"""

from __future__ import annotations

import argparse
import time

import torch

from harness.evaluate import models
from harness.evaluate.engines.generate import generate
from harness.evaluate.suite_eval import encode_prompt
from harness.evaluate.suites import load_suite


def suite_prompts(tok, suite_name: str, items: int):
    """(generation parameters, tokenized prompts) of a suite's first `items` examples."""
    suite = load_suite(suite_name)
    return suite.generation, [encode_prompt(tok, suite.render(ex))[1] for ex in suite.examples(items)]


def harness_pass(model, tok, prompts, params, batch_size: int) -> tuple[dict[int, str], int, float]:
    """The harness engine over all prompts: (texts by prompt index, new tokens, seconds)."""
    t0 = time.perf_counter()
    texts: dict[int, str] = {}
    new_tokens = 0
    for idx, gens in generate(model, tok, prompts, params, batch_size=batch_size):
        for i, g in zip(idx, gens):
            texts[i] = g.text
            new_tokens += g.new_tokens
    return texts, new_tokens, time.perf_counter() - t0


def one_at_a_time(model, tok, prompts, params) -> tuple[dict[int, str], float]:
    """`model.generate` prompt by prompt, greedy, same stops: (texts by prompt index, seconds)."""
    t0 = time.perf_counter()
    texts: dict[int, str] = {}
    with torch.inference_mode():
        for i, p in enumerate(prompts):
            out = model.generate(torch.tensor([p], device=model.device),
                                 attention_mask=torch.ones(1, len(p), dtype=torch.long, device=model.device),
                                 max_new_tokens=params.max_new_tokens, do_sample=False,
                                 stop_strings=list(params.stop) or None, tokenizer=tok,
                                 pad_token_id=tok.pad_token_id)
            text = tok.decode(out[0, len(p):], skip_special_tokens=True)
            for s in params.stop:
                text = text.split(s)[0] if s in text else text
            texts[i] = text
    return texts, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=64)
    ap.add_argument("--suite", default="squad-qa")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()

    bundle = models.load(args.model, probe=False)
    model, tok = bundle.model, bundle.tokenizer
    params, prompts = suite_prompts(tok, args.suite, args.items)
    ours, new_tokens, t_ours = harness_pass(model, tok, prompts, params, args.batch_size)
    ref, t_ref = one_at_a_time(model, tok, prompts, params)

    same = sum(ours[i] == ref[i] for i in ref)
    print(f"suite {args.suite}, {len(prompts)} items, model {args.model}, batch {args.batch_size}, torch threads {torch.get_num_threads()}")
    print(f"prompt tokens {sum(map(len, prompts))} (mean {sum(map(len, prompts)) / len(prompts):.0f}), new tokens {new_tokens}")
    print(f"one-at-a-time model.generate: {t_ref:.1f}s")
    print(f"harness engine:               {t_ours:.1f}s")
    print(f"speed ratio: {t_ref / t_ours:.2f}x")
    print(f"identical greedy text: {same}/{len(prompts)} ({100 * same / len(prompts):.1f}%)")
    diff = next((i for i in ref if ours[i] != ref[i]), None)
    if diff is not None:
        print(f"example difference (item {diff}):\n  generate: {ref[diff]!r}\n  harness:  {ours[diff]!r}")


if __name__ == "__main__":
    main()
