"""Batched greedy generation against one-at-a-time `model.generate`."""

from __future__ import annotations

import pytest
import torch

from harness.evaluate.engines.generate import generate, generate_batch, plan_batches
from harness.types import GenerationParams

TEXTS = ["Hello there", "The capital of France is a city called", "One two three four five six seven eight nine",
         "A", "Write a long story about a cat who", "Numbers: 1, 2, 3,", "Why is the sky blue?", "ok"]


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    tok.padding_side = "left"
    return AutoModelForCausalLM.from_pretrained(tiny_dir).eval(), tok


def _one_by_one(model, tok, ids, n):
    out = []
    for p in ids:
        gen = model.generate(torch.tensor([p]), max_new_tokens=n, do_sample=False, pad_token_id=tok.pad_token_id)
        out.append(gen[0, len(p):].tolist())
    return out


def test_batched_matches_unbatched_generate(tiny):
    model, tok = tiny
    ids = [tok(t)["input_ids"] for t in TEXTS]
    params = GenerationParams(max_new_tokens=12)
    got = {}
    for idx, gens in generate(model, tok, ids, params, batch_size=3):
        got.update(zip(idx, gens))
    ref = _one_by_one(model, tok, ids, 12)
    for i, tokens in enumerate(ref):
        eos = tok.eos_token_id
        tokens = tokens[: tokens.index(eos)] if eos in tokens else tokens
        assert got[i].text == tok.decode(tokens, skip_special_tokens=True), TEXTS[i]
        assert got[i].prompt_tokens == len(ids[i])
        assert got[i].stopped_by in ("eos", "length")


def test_deterministic_and_independent_of_batch_size(tiny):
    model, tok = tiny
    ids = [tok(t)["input_ids"] for t in TEXTS]
    params = GenerationParams(max_new_tokens=8)
    a = [g.text for g in generate_batch(model, tok, ids, params)]
    b = [g.text for g in generate_batch(model, tok, ids, params)]
    c = {}
    for idx, gens in generate(model, tok, ids, params, batch_size=2):
        c.update((i, g.text) for i, g in zip(idx, gens))
    assert a == b
    assert a == [c[i] for i in range(len(ids))]


def test_stop_strings_cut_the_text(tiny):
    model, tok = tiny
    ids = [tok(TEXTS[1])["input_ids"]]
    free = generate_batch(model, tok, ids, GenerationParams(max_new_tokens=16))[0]
    assert free.stopped_by == "length" and len(free.text) > 6
    stop = free.text[4:7]
    cut = generate_batch(model, tok, ids, GenerationParams(max_new_tokens=16, stop=(stop,)))[0]
    assert cut.stopped_by == "stop"
    assert cut.text == free.text[: free.text.find(stop)]
    assert cut.new_tokens < free.new_tokens


def test_plan_is_length_sorted_and_stable():
    lengths = [3, 9, 9, 1, 5]
    plan = plan_batches(lengths, 2)
    assert [b.indices for b in plan] == [[1, 2], [4, 0], [3]]


def test_plan_order_seed_shuffles_deterministically():
    lengths = list(range(40))
    sorted_plan = [b.indices for b in plan_batches(lengths, 8)]
    shuffled = [b.indices for b in plan_batches(lengths, 8, order_seed=1)]
    assert shuffled == [b.indices for b in plan_batches(lengths, 8, order_seed=1)]
    assert sorted(i for b in shuffled for i in b) == lengths and shuffled != sorted_plan
    assert [b.indices for b in plan_batches(lengths, 8, order_seed=2)] != shuffled


def test_padded_prefill_fallback_agrees(tiny, monkeypatch):
    """Models with sliding-window caches take the padded path; both paths decode alike."""
    import harness.evaluate.engines.generate as g

    model, tok = tiny
    ids = [tok(t)["input_ids"] for t in TEXTS]
    params = GenerationParams(max_new_tokens=8)
    per_row = [x.text for x in generate_batch(model, tok, ids, params)]
    monkeypatch.setattr(g, "_plain_kv", lambda m: False)
    padded = [x.text for x in generate_batch(model, tok, ids, params)]
    assert per_row == padded


def test_shared_prefix_is_found():
    from harness.evaluate.engines.generate import _common_prefix

    assert _common_prefix([[1, 2, 3, 4], [1, 2, 3, 9, 9], [1, 2, 5]]) == 2
    assert _common_prefix([[1, 2, 3], [1, 2, 3]]) == 2  # each keeps one token to prefill
