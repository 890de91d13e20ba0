"""VLLMEngine against transformers + PEFT on SmolLM2, fp32: greedy texts and Generation
fields equal to the transformers engine's, log-likelihoods within 1e-4 with the same
greedy flags, and base rows never scored with an adapter.

The vLLM tests build one engine for the whole module (vLLM starts in 30-90 s here). vLLM
starts its engine process with `spawn` on CPU; under pytest that needs nothing special,
since pytest's entry points guard `__main__`. Without vLLM they are skipped; the adapter
settings tests below them need no vLLM.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import ConfigError, ModelError
from harness.evaluate.engines.vllm import VLLMEngine, lora_settings
from harness.types import GenerationParams
from tests.conftest import smollm2_dir

HAVE_VLLM = importlib.util.find_spec("vllm") is not None


def needs_vllm(test):
    """Marked `vllm` and `slow` (real SmolLM2); skipped where vLLM is not installed."""
    for mark in (pytest.mark.vllm, pytest.mark.slow,
                 pytest.mark.skipif(not HAVE_VLLM, reason="vLLM is not installed (ci/install-vllm.sh .venv installs it)")):
        test = mark(test)
    return test


QUESTIONS = [
    "What is the capital of France?",
    "Name three primary colors.",
    "Write one sentence about the sea.",
    "What is 12 times 7?",
    "Give me a synonym for happy.",
    "Who wrote Romeo and Juliet?",
    "Describe a cat in a few words.",
    "What is the boiling point of water in Celsius?",
    "Translate 'good morning' into French.",
    "List two uses of a hammer.",
]
CONTEXTS = [
    ("The capital of France is", [" Paris", " London", " Paris, a city on the Seine."]),
    ("Question: What color is the sky on a clear day?\nAnswer:", [" blue", " green", " It is blue."]),
    ("The quick brown fox jumps over the", [" lazy dog", " fence", " moon"]),
    ("1, 2, 3, 4,", [" 5", " 6, 7", " 5, 6, 7, 8"]),
]
LL_TOL = 1e-4


def _build_adapter(base: Path, dest: Path, seed: int, std: float) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:  # PEFT starts B at zero (no effect): make it move the logits
            torch.nn.init.normal_(p, std=std)
    peft_model.save_pretrained(dest)
    return dest


@pytest.fixture(scope="module")
def adapters(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("vllm-loras")
    return {"a": _build_adapter(smollm2_dir(), root / "a", seed=1, std=0.05),
            "b": _build_adapter(smollm2_dir(), root / "b", seed=2, std=0.05)}


@pytest.fixture(scope="module")
def engine(adapters):
    with pytest.MonkeyPatch.context() as mp:  # the engine process inherits this environment
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        try:
            eng = VLLMEngine(smollm2_dir(), adapters, dtype="float32", seed=0, max_model_len=2048)
        except ConfigError as exc:  # installed but not importable (e.g. CUDA-linked torchvision)
            pytest.skip(str(exc))
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def reference(adapters):
    """Plain transformers + PEFT in fp32: the base with both adapters loaded."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(smollm2_dir(), dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(adapters["a"]), adapter_name="a")
    model.load_adapter(str(adapters["b"]), adapter_name="b")
    model.eval()
    return model, AutoTokenizer.from_pretrained(smollm2_dir())


def _use(model, variant):
    from contextlib import nullcontext

    if variant == "base":
        return model.disable_adapter()
    model.set_adapter(variant)
    return nullcontext()


def _prompts(tok) -> list[list[int]]:
    out = []
    for q in QUESTIONS:
        text = tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, tokenize=False)
        out.append(tok(text, add_special_tokens=False)["input_ids"])
    return out


def _pairs(tok) -> list[tuple[list[int], list[int]]]:
    return [(tok(ctx)["input_ids"], tok(cont, add_special_tokens=False)["input_ids"])
            for ctx, conts in CONTEXTS for cont in conts]


def _hf_loglikelihood(model, pairs) -> list[tuple[float, bool]]:
    import torch

    out = []
    with torch.inference_mode():
        for ctx, cont in pairs:
            ids = torch.tensor([ctx + cont])
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
            rows = torch.arange(len(ctx) - 1, len(ctx) + len(cont) - 1)
            tgt = torch.tensor(cont)
            out.append((float(logp[rows, tgt].sum()), bool((logp[rows].argmax(-1) == tgt).all())))
    return out


def _with_greedy_pairs(model, tok, pairs):
    """Add pairs whose continuation is the model's own greedy continuation (greedy=True)."""
    import torch

    extra = []
    with torch.inference_mode():
        for ctx, _ in pairs[::3]:
            ids = model.generate(torch.tensor([ctx]), max_new_tokens=3, do_sample=False,
                                 pad_token_id=tok.pad_token_id or 0)
            extra.append((ctx, ids[0, len(ctx):].tolist()))
    return pairs + extra


@needs_vllm
@pytest.mark.parametrize("stop", [(), (".",)], ids=["no-stop", "stop"])
def test_generation_matches_transformers_engine(engine, reference, stop):
    """Greedy texts and every Generation field but the timing equal the transformers engine's."""
    from harness.evaluate.engines.generate import generate_batch

    model, tok = reference
    prompts = _prompts(engine.tokenizer)
    params = GenerationParams(max_new_tokens=40, stop=stop)
    reasons = set()
    texts = {}
    for variant in engine.variants:
        got = engine.generate(variant, prompts, params)
        with _use(model, variant):
            want = generate_batch(model, tok, prompts, params)
        for g, w in zip(got, want):
            assert (g.text, g.new_tokens, g.stopped_by, g.prompt_tokens) == \
                   (w.text, w.new_tokens, w.stopped_by, w.prompt_tokens), variant
            assert g.latency_s > 0
            reasons.add(g.stopped_by)
        texts[variant] = [g.text for g in got]
    assert texts["a"] != texts["base"] and texts["b"] != texts["base"]  # the adapters do something
    assert reasons >= ({"stop"} if stop else {"eos", "length"})


@needs_vllm
def test_loglikelihood_matches_transformers(engine, reference):
    model, tok = reference
    pairs = _with_greedy_pairs(model, tok, _pairs(engine.tokenizer))
    worst = {}
    for variant in engine.variants:
        got = engine.loglikelihood(variant, pairs)
        with _use(model, variant):
            want = _hf_loglikelihood(model, pairs)
        worst[variant] = max(abs(ll - ref_ll) for (ll, _), (ref_ll, _) in zip(got, want))
        for (ll, greedy), (ref_ll, ref_greedy) in zip(got, want):
            assert abs(ll - ref_ll) <= LL_TOL, (variant, ll, ref_ll)
            assert greedy == ref_greedy, variant
        assert any(g for _, g in got) and not all(g for _, g in got)  # both flags are exercised
    print(f"{len(pairs)} pairs, max |delta ll| per variant:", {v: f"{d:.1e}" for v, d in worst.items()})


@needs_vllm
def test_base_rows_never_scored_with_an_adapter(engine, reference):
    """Base results are the same before, between and after adapter calls, equal the plain
    base model's row by row, and every row differs from the adapters' by far more than the
    tolerance, so an adapter leaking into a base row could not go unnoticed."""
    model, tok = reference
    pairs = _pairs(engine.tokenizer)
    prompts = _prompts(engine.tokenizer)
    params = GenerationParams(max_new_tokens=24)
    first = engine.loglikelihood("base", pairs), [g.text for g in engine.generate("base", prompts, params)]
    adapter_ll = {v: engine.loglikelihood(v, pairs) for v in ("a", "b")}
    adapter_gen = {v: [g.text for g in engine.generate(v, prompts, params)] for v in ("a", "b")}
    between = engine.loglikelihood("base", pairs), [g.text for g in engine.generate("base", prompts, params)]
    engine.loglikelihood("b", pairs[:3])
    after = engine.loglikelihood("base", pairs), [g.text for g in engine.generate("base", prompts, params)]
    with model.disable_adapter():
        plain = _hf_loglikelihood(model, pairs)
    for run in (between, after):
        assert run[1] == first[1]
        assert max(abs(x[0] - y[0]) for x, y in zip(run[0], first[0])) <= 1e-5
    for i, (ll, _) in enumerate(first[0]):
        assert abs(ll - plain[i][0]) <= LL_TOL, i
        for v in ("a", "b"):
            assert abs(adapter_ll[v][i][0] - ll) > 10 * LL_TOL, (v, i)
    assert all(adapter_gen[v] != first[1] for v in ("a", "b"))


@needs_vllm
def test_loglikelihood_left_truncates_like_the_transformers_scorer(engine):
    """A pair longer than the window keeps its last max_length + 1 tokens (lm-eval's rule)."""
    ctx = engine.tokenizer("The quick brown fox jumps over the lazy dog. " * 400)["input_ids"]
    cont = engine.tokenizer(" The end", add_special_tokens=False)["input_ids"]
    assert len(ctx) + len(cont) > engine.max_length + 1
    window = (ctx + cont)[-(engine.max_length + 1):]
    short = window[:-len(cont)]
    assert engine.loglikelihood("base", [(ctx, cont)]) == engine.loglikelihood("base", [(short, cont)])


@needs_vllm
def test_unknown_variant_is_refused(engine):
    with pytest.raises(ConfigError, match="unknown model variant 'c'"):
        engine.generate("c", [[1, 2, 3]], GenerationParams())
    assert engine.kind == "vllm" and engine.variants == ["base", "a", "b"]
    assert engine.max_lora_rank == 8 and engine.lora_target_modules == ["q_proj", "v_proj"]
    assert engine.max_length == 2046



# -- no vLLM needed -----------------------------------------------------------------------

def _adapter_config(folder: Path, **cfg) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", **cfg}))
    return folder


def test_lora_settings_union_and_rank_rounding(tmp_path):
    a = _adapter_config(tmp_path / "a", r=8, target_modules=["q_proj", "v_proj"])
    b = _adapter_config(tmp_path / "b", r=12, target_modules=["v_proj", "down_proj"], rank_pattern={"down_proj": 20})
    assert lora_settings({"a": a}) == (8, ["q_proj", "v_proj"])
    assert lora_settings({"a": a, "b": b}) == (32, ["down_proj", "q_proj", "v_proj"])
    assert lora_settings({"a": a}, max_lora_rank=16) == (16, ["q_proj", "v_proj"])
    with pytest.raises(ConfigError, match="below the adapters' rank"):
        lora_settings({"b": b}, max_lora_rank=8)


def test_lora_settings_refuses_what_vllm_cannot_serve(tmp_path):
    with pytest.raises(ModelError, match="DoRA"):
        lora_settings({"d": _adapter_config(tmp_path / "d", r=8, target_modules=["q_proj"], use_dora=True)})
    with pytest.raises(ModelError, match="vLLM serves LoRA adapters only"):
        lora_settings({"i": _adapter_config(tmp_path / "i", peft_type="IA3", target_modules=["q_proj"])})
    with pytest.raises(ModelError, match="above vLLM's largest supported rank"):
        lora_settings({"big": _adapter_config(tmp_path / "big", r=1024, target_modules=["q_proj"])})
    with pytest.raises(ModelError, match="no adapter_config.json"):
        lora_settings({"x": tmp_path})


def test_lora_settings_reads_regex_targets_from_the_weights(tmp_path):
    import torch
    from safetensors.torch import save_file

    folder = _adapter_config(tmp_path / "re", r=4, target_modules=r".*\.(q_proj|o_proj)")
    save_file({"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": torch.zeros(4, 8),
               "base_model.model.model.layers.0.self_attn.o_proj.lora_B.weight": torch.zeros(8, 4)},
              str(folder / "adapter_model.safetensors"))
    assert lora_settings({"re": folder}) == (8, ["o_proj", "q_proj"])


def test_missing_vllm_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` fail as if absent
    with pytest.raises(ConfigError, match="--engine vllm needs vLLM, which is not installed") as err:
        VLLMEngine(tmp_path, {})
    assert "install it with: ci/install-vllm.sh" in str(err.value)


def test_harness_imports_without_vllm():
    code = "import sys, harness.evaluate.engines.vllm; assert 'vllm' not in sys.modules"
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=root)
