"""The scorer's two forwards: the fused Llama pass and the model's own decoder give the
numbers a plain one-request forward gives, with adapters on, off and switched, in fp32
and bf16; models the fused pass cannot reproduce fall back to the decoder."""

from __future__ import annotations

import random

import pytest

from harness.evaluate.forgetting import scorer
from harness.evaluate.forgetting.forwards import LlamaForward, ModelForward, forward_for
from tests.test_forgetting import _reference_scores


def _requests(seed: int = 0):
    """MMLU-like groups (shared block, 1-token answers), HellaSwag-like endings, loners."""
    rng = random.Random(seed)
    out = []
    for subject in range(3):
        block = [rng.randrange(5, 200) for _ in range(12 + 9 * subject)]
        for _ in range(3):
            q = block + [rng.randrange(5, 200) for _ in range(rng.randrange(2, 25))]
            out += [(q, [a]) for a in (7, 8, 9)]
    for _ in range(4):
        ctx = [rng.randrange(5, 200) for _ in range(rng.randrange(9, 30))]
        out += [(ctx, [rng.randrange(5, 200) for _ in range(rng.randrange(1, 7))]) for _ in range(4)]
    return out + [([rng.randrange(5, 200) for _ in range(n)], [11, 12]) for n in (2, 40)]


def _assert_matches(got, want, tol):
    assert [g for _, g in got] == [g for _, g in want]
    assert max(abs(a - b) for (a, _), (b, _) in zip(got, want)) <= tol


@pytest.fixture(scope="module")
def tiny_peft(tiny_dir, tiny_lora, tiny_lora2):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_dir), tiny_lora, adapter_name="a")
    model.load_adapter(tiny_lora2, adapter_name="b")
    return model.eval()


@pytest.mark.parametrize("kind", [LlamaForward, ModelForward])
def test_forward_matches_plain_passes_with_adapters_switched(tiny_peft, kind):
    requests = _requests()
    seen = {}
    for name in ("a", "b", None):
        if name:
            tiny_peft.set_adapter(name)
            want = _reference_scores(tiny_peft, requests)
            got = scorer.score(tiny_peft, requests, 2048, token_budget=200, forward=kind(tiny_peft))
        else:
            with tiny_peft.disable_adapter():
                want = _reference_scores(tiny_peft, requests)
                got = scorer.score(tiny_peft, requests, 2048, token_budget=200, forward=kind(tiny_peft))
        _assert_matches(got, want, 1e-4)
        seen[name] = [ll for ll, _ in got]
    # The three variants really differ: a forward that ignored adapters would fail above.
    assert seen["a"] != seen["b"] != seen[None]


def test_fused_pass_in_bf16_is_as_accurate_as_the_decoder():
    """Against the fp32 result, the fused bf16 pass errs no more than the model's own bf16
    decoder does. Large random weights make attention peaked, so a wrong rotation or norm
    order shows up far above bf16 rounding (a flipped RoPE sign errs ~20x more)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=512, initializer_range=0.2)
    model = LlamaForCausalLM(cfg).eval()
    requests = _requests(1)
    exact = scorer.score(model, requests, 2048, forward=ModelForward(model))
    model = model.to(torch.bfloat16)

    def error(fwd):
        got = scorer.score(model, requests, 2048, token_budget=200, forward=fwd)
        return max(abs(a - b) for (a, _), (b, _) in zip(got, exact))

    decoder = error(ModelForward(model))
    assert 0 < error(LlamaForward(model)) <= 2 * decoder + 1e-3


def test_models_the_fused_pass_cannot_reproduce_fall_back(tmp_path, tiny_dir):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=256, n_embd=32, n_layer=2, n_head=2, n_positions=256)).eval()
    assert isinstance(forward_for(gpt2), ModelForward)
    requests = _requests(2)
    _assert_matches(scorer.score(gpt2, requests, 256), _reference_scores(gpt2, requests), 1e-4)

    dora = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_dir),
                          LoraConfig(r=4, target_modules=["q_proj", "v_proj"], use_dora=True)).eval()
    assert isinstance(forward_for(dora), ModelForward)
    assert isinstance(forward_for(AutoModelForCausalLM.from_pretrained(tiny_dir).eval()), LlamaForward)


@pytest.mark.parametrize("prefix", [None, "long", "short"])
def test_fused_hidden_reads_any_positions_of_unsorted_rows(tiny_dir, prefix):
    """Rows in no length order, several read positions each, some rows read nothing: the
    fused pass's trimmed last layer returns what the decoder returns for those positions.
    Cached prefixes of different lengths: long ones before short rows (attended through a
    mask) or short ones before long rows (laid inline in front of them, causal attention)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_dir).eval()
    rng = random.Random(5)
    lengths = (3, 10, 11, 6, 2, 8) if prefix != "short" else (24, 40, 44, 12, 5, 30)
    rows = [[rng.randrange(5, 200) for _ in range(n)] for n in lengths]  # 10 before 11: one block, reordered
    read, at = [], 0
    for i, r in enumerate(rows):
        read += [at + c for c in range(len(r)) if i != 3 and (c % 3 == 1 or c == len(r) - 1)]
        at += len(r)
    starts, past, keep = [0] * len(rows), None, None
    if prefix:
        sizes = (4, 9, 4, 1, 9, 6) if prefix == "long" else (2, 5, 3, 1, 4, 2)
        prefixes = [[rng.randrange(5, 200) for _ in range(n)] for n in sizes]
        starts = list(sizes)
        past = ModelForward(model).prefix(prefixes)
        keep = torch.arange(max(sizes))[None, :] < torch.tensor(starts)[:, None]
    with torch.inference_mode():
        want = ModelForward(model).hidden(rows, starts, past, keep, read)
        got = LlamaForward(model).hidden(rows, starts, past, keep, read)
    assert got.shape == want.shape == (len(read), model.config.hidden_size)
    assert torch.allclose(got, want, atol=1e-5)
