"""Batched greedy generation with a KV cache, left padding and per-row stopping.

A hand-written decode loop instead of `model.generate` because it prefills each prompt
without padding after computing the batch's shared prefix (chat template, instructions)
once, lets finished rows leave the batch (the KV cache shrinks with them), checks stop
strings per row, applies the LM head only where a token is chosen, and times each row to
its own finish.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator, Sequence

from harness.types import Generation, GenerationParams


@dataclass(frozen=True)
class Batch:
    indices: list[int]  # positions in the caller's prompt list


def plan_batches(lengths: Sequence[int], batch_size: int, order_seed: int | None = None) -> list[Batch]:
    """Longest prompts first, ties by index: the plan depends only on the prompts, so a
    resumed run rebuilds the very same batches and gets bit-identical results.

    `order_seed` shuffles the items instead (still deterministic), so different prompts
    share batches and padding: `harness calibrate` uses it to measure order noise.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    if order_seed is not None:
        import random

        random.Random(order_seed).shuffle(order)
    return [Batch(order[i:i + batch_size]) for i in range(0, len(order), batch_size)]


def _eos_ids(model, tokenizer) -> set[int]:
    ids: set[int] = set()
    for src in (getattr(model, "generation_config", None), tokenizer):
        eos = getattr(src, "eos_token_id", None)
        if eos is None:
            continue
        ids.update(eos if isinstance(eos, (list, tuple)) else [eos])
    return ids


def _cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def _common_prefix(prompts: Sequence[Sequence[int]]) -> int:
    """Token count shared by every prompt, leaving each at least one token of its own."""
    first = prompts[0]
    n = min(len(p) for p in prompts) - 1
    for p in prompts[1:]:
        k = 0
        while k < n and p[k] == first[k]:
            k += 1
        n = k
    return max(n, 0)


def _plain_kv(model) -> bool:
    """Per-row prefill merges plain full-attention KV caches; other cache kinds use padding."""
    cfg = getattr(model, "config", None)
    types = getattr(cfg, "layer_types", None) or []
    return not getattr(cfg, "sliding_window", None) and all(t == "full_attention" for t in types)


def _prefill_rows(model, prompts: Sequence[Sequence[int]]):
    """Prefill each prompt alone (no padding FLOPs; prefill is compute-bound, so batching
    it buys little) after computing the batch's shared prefix once, then merge the KV
    caches left-padded for batched decoding, which is memory-bound and gains from batching."""
    import torch
    from transformers import DynamicCache

    shared = _common_prefix(prompts) if len(prompts) > 1 else 0
    prefix_kv = None
    if shared:
        pc = DynamicCache()
        model(input_ids=torch.tensor([prompts[0][:shared]]), past_key_values=pc, use_cache=True, logits_to_keep=1)
        prefix_kv = [(layer.keys, layer.values) for layer in pc.layers]
    rows, last = [], []
    for p in prompts:
        cache = DynamicCache(ddp_cache_data=prefix_kv) if prefix_kv else DynamicCache()
        suffix = torch.tensor([p[shared:]])
        pos = torch.arange(shared, len(p)).unsqueeze(0)
        out = model(input_ids=suffix, position_ids=pos, past_key_values=cache, use_cache=True, logits_to_keep=1)
        last.append(out.logits[0, -1])
        rows.append([(layer.keys, layer.values) for layer in cache.layers])
    width = max(len(p) for p in prompts)
    n = len(prompts)
    merged = []
    for li in range(len(rows[0])):
        k0, v0 = rows[0][li]
        keys = k0.new_zeros((n, k0.shape[1], width, k0.shape[3]))
        values = v0.new_zeros((n, v0.shape[1], width, v0.shape[3]))
        for r, p in enumerate(prompts):
            keys[r, :, width - len(p):] = rows[r][li][0][0]
            values[r, :, width - len(p):] = rows[r][li][1][0]
        merged.append((keys, values))
    mask = torch.zeros((n, width), dtype=torch.long)
    for r, p in enumerate(prompts):
        mask[r, width - len(p):] = 1
    positions = torch.tensor([[len(p) - 1] for p in prompts])
    return torch.stack(last), DynamicCache(ddp_cache_data=merged), mask, positions


def _prefill_padded(model, tokenizer, prompts: Sequence[Sequence[int]]):
    import torch
    from transformers import DynamicCache

    n, width = len(prompts), max(len(p) for p in prompts)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.full((n, width), pad, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    for r, p in enumerate(prompts):
        ids[r, width - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[r, width - len(p):] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache(config=getattr(model, "config", None))
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions,
                   past_key_values=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
    return logits, cache, mask, positions[:, -1:]


def generate_batch(model, tokenizer, prompts: Sequence[Sequence[int]], params: GenerationParams) -> list[Generation]:
    """Greedy-decode one batch of tokenized prompts."""
    import torch

    from harness.evaluate.devices import model_device, on_device

    n = len(prompts)
    eos = _eos_ids(model, tokenizer)
    stops = tuple(s for s in params.stop if s)
    out_tokens: list[list[int]] = [[] for _ in range(n)]
    results: list[Generation | None] = [None] * n
    active = list(range(n))  # caller rows still decoding, in cache-row order
    start = time.perf_counter()
    # every tensor this loop makes lives where the model's inputs go (no-op on the CPU)
    with torch.inference_mode(), on_device(model_device(model)):
        if _plain_kv(model):
            logits, cache, mask, positions = _prefill_rows(model, prompts)
        else:
            logits, cache, mask, positions = _prefill_padded(model, tokenizer, prompts)
        for step in range(params.max_new_tokens):
            nxt = logits.argmax(-1).tolist()
            keep: list[int] = []
            for slot, row in enumerate(active):
                tok = nxt[slot]
                reason = None
                if tok in eos:
                    reason = "eos"
                else:
                    out_tokens[row].append(tok)
                    if stops:
                        text = tokenizer.decode(out_tokens[row], skip_special_tokens=True)
                        if _cut_at_stop(text, stops)[1]:
                            reason = "stop"
                    if reason is None and step == params.max_new_tokens - 1:
                        reason = "length"
                if reason:
                    text = tokenizer.decode(out_tokens[row], skip_special_tokens=True)
                    text = _cut_at_stop(text, stops)[0] if stops else text
                    results[row] = Generation(text=text, prompt_tokens=len(prompts[row]),
                                              new_tokens=len(out_tokens[row]) + (reason == "eos"),
                                              latency_s=time.perf_counter() - start, stopped_by=reason)
                else:
                    keep.append(slot)
            if not keep:
                break
            if len(keep) < len(active):
                sel = torch.tensor(keep, dtype=torch.long)
                cache.batch_select_indices(sel)
                mask = mask[sel]
                positions = positions[sel]
                active = [active[s] for s in keep]
                nxt = [nxt[s] for s in keep]
            mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
            positions = positions + 1
            step_ids = torch.tensor(nxt, dtype=torch.long).unsqueeze(1)
            logits = model(input_ids=step_ids, attention_mask=mask, position_ids=positions,
                           past_key_values=cache, use_cache=True).logits[:, -1]
    return [r for r in results if r is not None] if all(results) else _fill_missing(results)


def _fill_missing(results):  # only reachable with max_new_tokens == 0
    return [r or Generation("", 0, 0, 0.0, "length") for r in results]


def generate(model, tokenizer, prompts: Sequence[Sequence[int]], params: GenerationParams,
             batch_size: int = 16) -> Iterator[tuple[list[int], list[Generation]]]:
    """Yield (prompt indices, generations) batch by batch, in the planned order."""
    for batch in plan_batches([len(p) for p in prompts], batch_size):
        yield batch.indices, generate_batch(model, tokenizer, [prompts[i] for i in batch.indices], params)
