"""Generation speed with LoRA adapters: VLLMEngine vs the transformers engine, same run.

    .venv/bin/python bench/vllm_engine.py [--prompts 16] [--new-tokens 64] [--skip-one-at-a-time]

SmolLM2-135M-Instruct in fp32 with two random r=8 LoRA adapters (q_proj, v_proj), greedy,
every variant (base, a, b) over the same chat prompts. Three ways, one after another:
  1. one-at-a-time `model.generate` on transformers + PEFT (the peer most scripts use),
  2. the transformers engine (`generate_batch`, all prompts in one batch) on the same model,
  3. VLLMEngine: the base once in vLLM, each adapter a LoRA request, one call per variant.
Prints new tokens per second for each (vLLM's start-up is printed, not counted), the ratios,
and how many greedy texts agree with the transformers engine. vLLM needs `ci/install-vllm.sh`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

QUESTIONS = [
    "What is the capital of France?", "Name three primary colors.", "Write one sentence about the sea.",
    "What is 12 times 7?", "Give me a synonym for happy.", "Who wrote Romeo and Juliet?",
    "Describe a cat in a few words.", "What is the boiling point of water in Celsius?",
    "Translate 'good morning' into French.", "List two uses of a hammer.", "Why is the sky blue?",
    "What does a bee make?", "Suggest a name for a goldfish.", "How many legs does a spider have?",
    "What is the opposite of cold?", "Tell me a fact about the Moon.", "What is photosynthesis?",
    "Name a famous painter.", "What language is spoken in Brazil?", "How do you make tea?",
]


def build_adapters(base: Path, root: Path) -> dict[str, Path]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    out = {}
    for seed, name in ((1, "a"), (2, "b")):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                torch.nn.init.normal_(p, std=0.05)
        peft_model.save_pretrained(root / name)
        out[name] = root / name
    return out


def transformers_passes(base: Path, adapters: dict[str, Path], prompts, params, one_at_a_time: bool):
    """(texts, new tokens, seconds) per method, summed over the variants."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.evaluate.engines.generate import generate_batch

    tok = AutoTokenizer.from_pretrained(base)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32),
                                      str(adapters["a"]), adapter_name="a")
    model.load_adapter(str(adapters["b"]), adapter_name="b")
    model.eval()
    results = {}
    generate_batch(model, tok, prompts[:2], type(params)(max_new_tokens=4))  # warm-up
    for method in ("batched", "one-at-a-time") if one_at_a_time else ("batched",):
        texts, tokens, seconds = {}, 0, 0.0
        for variant in ("base", *adapters):
            if variant != "base":
                model.set_adapter(variant)
            ctx = model.disable_adapter() if variant == "base" else nullcontext()
            with ctx, torch.inference_mode():
                t0 = time.perf_counter()
                if method == "batched":
                    gens = generate_batch(model, tok, prompts, params)
                    texts[variant] = [g.text for g in gens]
                    tokens += sum(g.new_tokens for g in gens)
                else:
                    texts[variant] = []
                    for p in prompts:
                        out = model.generate(torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long),
                                             max_new_tokens=params.max_new_tokens, do_sample=False,
                                             pad_token_id=tok.pad_token_id)
                        new = out[0, len(p):].tolist()
                        tokens += len(new)
                        texts[variant].append(tok.decode(new, skip_special_tokens=True))
                seconds += time.perf_counter() - t0
        results[method] = (texts, tokens, seconds)
    return results


def vllm_pass(base: Path, adapters: dict[str, Path], prompts, params):
    from harness.evaluate.engines.vllm import VLLMEngine
    from harness.types import GenerationParams

    t0 = time.perf_counter()
    engine = VLLMEngine(base, adapters, dtype="float32", seed=0, max_model_len=2048)
    startup = time.perf_counter() - t0
    try:
        for variant in engine.variants:  # warm-up, and each adapter loaded once
            engine.generate(variant, prompts[:2], GenerationParams(max_new_tokens=4))
        texts, tokens, seconds = {}, 0, 0.0
        for variant in engine.variants:
            t0 = time.perf_counter()
            gens = engine.generate(variant, prompts, params)
            seconds += time.perf_counter() - t0
            texts[variant] = [g.text for g in gens]
            tokens += sum(g.new_tokens for g in gens)
    finally:
        engine.close()
    return (texts, tokens, seconds), startup


def main() -> None:
    import torch
    from transformers import AutoTokenizer

    from harness.types import GenerationParams

    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--skip-one-at-a-time", action="store_true", help="only the batched transformers engine")
    args = ap.parse_args()

    base = _smollm2()
    tok = AutoTokenizer.from_pretrained(base)
    questions = (QUESTIONS * (args.prompts // len(QUESTIONS) + 1))[:args.prompts]
    prompts = [tok(tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                           tokenize=False), add_special_tokens=False)["input_ids"] for q in questions]
    params = GenerationParams(max_new_tokens=args.new_tokens)
    with tempfile.TemporaryDirectory() as tmp:
        adapters = build_adapters(base, Path(tmp))
        hf = transformers_passes(base, adapters, prompts, params, not args.skip_one_at_a_time)
        (v_texts, v_tokens, v_seconds), startup = vllm_pass(base, adapters, prompts, params)

    n_variants = 1 + len(adapters)
    print(f"SmolLM2-135M fp32, {n_variants} variants (base + 2 LoRA r=8), {len(prompts)} prompts, "
          f"{args.new_tokens} new tokens max, greedy; torch threads {torch.get_num_threads()}")
    rate = {"vllm": v_tokens / v_seconds}
    for method, (_, tokens, seconds) in hf.items():
        rate[method] = tokens / seconds
        print(f"transformers {method:>13}: {tokens:5d} tokens in {seconds:7.1f}s = {rate[method]:6.1f} tok/s")
    print(f"VLLMEngine              : {v_tokens:5d} tokens in {v_seconds:7.1f}s = {rate['vllm']:6.1f} tok/s "
          f"(start-up {startup:.0f}s, not counted)")
    for method in hf:
        print(f"ratio vLLM / transformers {method}: {rate['vllm'] / rate[method]:.2f}x")
    ref = hf["batched"][0]
    for variant in ref:
        same = sum(a == b for a, b in zip(v_texts[variant], ref[variant]))
        print(f"identical greedy text vs transformers engine, {variant}: {same}/{len(prompts)}")
    if "one-at-a-time" in hf:
        one = hf["one-at-a-time"][0]
        same = sum(a == b for v in ref for a, b in zip(one[v], ref[v]))
        print(f"(transformers engine vs model.generate: {same}/{len(prompts) * n_variants} identical)")


def _smollm2() -> Path:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "harness.cli", "assets", "path", "smollm2-135m"],
                         check=True, capture_output=True, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":  # vLLM starts its engine process with spawn: keep module import side-effect free
    main()
