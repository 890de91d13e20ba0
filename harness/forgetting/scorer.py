"""Log-likelihood scoring that spends FLOPs only where lm-eval's numbers need them.

Requests are (context tokens, continuation tokens) pairs, built by lm-eval itself. The
scorer feeds each distinct input sequence once (MMLU's four single-token choices share one
forward), computes a prefix shared by neighbouring sequences once (HellaSwag's context
before its four endings, the few-shot block before every question of an MMLU subject),
and applies the LM head only at the positions whose log-probabilities are asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

MIN_SHARED = 8  # shorter common prefixes are not worth a cache slot


@dataclass
class _Seq:
    tokens: tuple[int, ...]
    first_needed: int  # earliest position whose logits are read
    asks: list[tuple[int, int, tuple[int, ...]]] = field(default_factory=list)  # (request, start, targets)


def _lcp(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _parts(model):
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    cap = getattr(inner.config, "final_logit_softcapping", None)
    return inner.get_decoder(), inner.get_output_embeddings(), cap


def build_sequences(requests: Sequence[tuple[Sequence[int], Sequence[int]]], max_length: int) -> list[_Seq]:
    """Deduplicate inputs; lm-eval's left truncation rule is applied first."""
    by_tokens: dict[tuple[int, ...], _Seq] = {}
    for r, (ctx, cont) in enumerate(requests):
        whole = list(ctx) + list(cont)
        inp = tuple(whole[-(max_length + 1):][:-1])
        start = len(inp) - len(cont)
        seq = by_tokens.get(inp)
        if seq is None:
            seq = by_tokens[inp] = _Seq(inp, start)
        seq.first_needed = min(seq.first_needed, start)
        seq.asks.append((r, start, tuple(cont)))
    return sorted(by_tokens.values(), key=lambda s: s.tokens)


def group_sequences(seqs: list[_Seq]) -> list[tuple[int, list[_Seq]]]:
    """Sorted neighbours sharing a prefix form groups: [(prefix length, rows)].

    A run of neighbours is split where splitting saves more prefix tokens than it loses:
    every MMLU prompt starts with the same dozen tokens, but one subject's rows share its
    description (0-shot) or its whole few-shot block (5-shot), a far longer prefix.
    """
    if not seqs:
        return []
    lcp = [min(_lcp(a.tokens, b.tokens), a.first_needed, b.first_needed) for a, b in zip(seqs, seqs[1:])]
    out: list[tuple[int, list[_Seq]]] = []

    def split(lo: int, hi: int, depth: int = 0) -> tuple[int, list[tuple[int, int, int]]]:
        """Best (saved tokens, [(lo, hi, prefix)]) for rows lo..hi (inclusive) of one run."""
        if lo == hi:
            return 0, [(lo, hi, 0)]
        low = min(lcp[lo:hi])
        whole = (low * (hi - lo) if low >= MIN_SHARED else 0, [(lo, hi, low)])
        if depth > 100:  # pathological nesting: keep the run whole rather than recurse on
            return whole
        cuts = [i for i in range(lo, hi) if lcp[i] == low]
        parts, saved, start = [], 0, lo
        for c in cuts + [hi]:
            got, spans = split(start, c, depth + 1)
            saved += got
            parts += spans
            start = c + 1
        return max(whole, (saved, parts), key=lambda x: x[0])

    i = 0
    while i < len(seqs):
        j = i
        while j < len(lcp) and lcp[j] >= MIN_SHARED:
            j += 1
        for lo, hi, prefix in split(i, j)[1]:
            out.append((prefix if prefix >= MIN_SHARED else 0, seqs[lo:hi + 1]))
        i = j + 1
    return out


def score(model, requests: Sequence[tuple[Sequence[int], Sequence[int]]], max_length: int,
          pad_id: int = 0, progress: Callable[[int], None] | None = None,
          token_budget: int = 4096, order_seed: int | None = None) -> list[tuple[float, bool]]:
    """(sum of continuation log-probs, continuation is the greedy choice) per request.

    Two phases per chunk of groups, both in wide batches because thin matmuls never reach
    the machine's peak: first the shared prefixes of many groups together, then the rows'
    suffixes together, each row attending to its own group's prefix through the cache.
    `order_seed` shuffles rows across batches instead of sorting them by length (same
    results up to float rounding; `harness calibrate` measures exactly that rounding).
    """
    import torch

    out: list[tuple[float, bool] | None] = [None] * len(requests)
    groups = group_sequences(build_sequences(requests, max_length))
    with torch.inference_mode():
        for chunk in _chunks(groups, 8 * token_budget):
            shared = [(g, prefix, rows[0]) for g, (prefix, rows) in enumerate(chunk) if prefix]
            kv = _prefix_kv(model, shared, len(chunk), pad_id, token_budget) if shared else None
            rows = [(g, prefix, r) for g, (prefix, members) in enumerate(chunk) for r in members]
            for batch in _sub_batches(rows, token_budget, order_seed=order_seed):
                _score_rows(model, batch, kv, pad_id, out)
                if progress:
                    progress(sum(len(r.asks) for _, _, r in batch))
    return out  # type: ignore[return-value]


def _chunks(groups, tokens: int):
    """Consecutive groups with about `tokens` suffix tokens and a prefix cache of at most
    `tokens` slots (groups x longest prefix): bounds the memory the caches take."""
    cur, n, longest = [], 0, 0
    for prefix, rows in groups:
        if cur and (len(cur) + 1) * max(longest, prefix) > tokens:
            yield cur
            cur, n, longest = [], 0, 0
        cur.append((prefix, rows))
        longest = max(longest, prefix)
        n += sum(len(r.tokens) - prefix for r in rows)
        if n >= tokens:
            yield cur
            cur, n, longest = [], 0, 0
    if cur:
        yield cur


def _prefix_kv(model, shared, n_groups: int, pad_id: int, budget: int) -> list:
    """Per layer (keys, values) of shape [groups, heads, longest prefix, dim]; group g's own
    prefix fills slots [0, p_g), whatever follows is never attended to."""
    import torch
    from transformers import DynamicCache

    decoder, _, _ = _parts(model)
    shared = sorted(shared, key=lambda x: -x[1])
    longest = shared[0][1]
    layers: list = []
    i = 0
    while i < len(shared):
        width = shared[i][1]
        part = shared[i:i + max(1, min(len(shared) - i, budget // width))]
        ids = torch.full((len(part), width), pad_id, dtype=torch.long)
        for j, (_, p, row) in enumerate(part):
            ids[j, :p] = torch.tensor(row.tokens[:p])
        cache = DynamicCache()
        # Right padding needs no mask: causal attention keeps real positions from seeing pads.
        decoder(input_ids=ids, past_key_values=cache, use_cache=True)
        where = torch.tensor([g for g, _, _ in part])
        for layer, c in enumerate(cache.layers):
            if len(layers) <= layer:
                shape = (n_groups, c.keys.shape[1], longest, c.keys.shape[3])
                layers.append((c.keys.new_zeros(shape), c.values.new_zeros(shape)))
            layers[layer][0][where, :, :width] = c.keys
            layers[layer][1][where, :, :width] = c.values
        i += len(part)
    return layers


def _sub_batches(rows, budget: int, waste: float = 0.15, order_seed: int | None = None):
    """Rows of similar suffix length, so right padding stays under `waste` of the batch."""
    rows = sorted(rows, key=lambda x: -(len(x[2].tokens) - x[1]))
    if order_seed is not None:
        import random

        random.Random(order_seed).shuffle(rows)
        waste = float("inf")  # any mix of lengths; only the token budget bounds a batch
    batches, cur, width, real = [], [], 0, 0
    for item in rows:
        n = len(item[2].tokens) - item[1]
        if cur:
            wide = max(width, n) * (len(cur) + 1)
            if wide > (real + n) * (1 + waste) or wide > budget:
                batches.append(cur)
                cur, width, real = [], 0, 0
        cur.append(item)
        width, real = max(width, n), real + n
    if cur:
        batches.append(cur)
    return batches


def _score_rows(model, batch, kv, pad_id, out, head_rows: int = 1024) -> None:
    import torch
    from transformers import DynamicCache

    decoder, head, softcap = _parts(model)
    n = len(batch)
    width = max(len(r.tokens) - p for _, p, r in batch)
    front = max(p for _, p, _ in batch)  # cache slots in front of the suffixes
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    positions = torch.zeros((n, width), dtype=torch.long)
    for i, (_, p, r) in enumerate(batch):
        suffix = r.tokens[p:]
        ids[i, :len(suffix)] = torch.tensor(suffix)
        positions[i] = torch.arange(p, p + width)
    kwargs = {}
    if front:
        # Row i's own group prefix sits in cache slots [0, p_i), the rest of the front is
        # masked out; positions continue from p_i, so RoPE sees what a whole-sequence pass
        # sees. Right padding after the suffix needs no mask under causal attention.
        mask = torch.zeros((n, front + width), dtype=torch.long)
        mask[:, front:] = 1
        for i, (_, p, _) in enumerate(batch):
            mask[i, :p] = 1
        groups = torch.tensor([g for g, _, _ in batch])
        layers = [(k.index_select(0, groups)[:, :, :front], v.index_select(0, groups)[:, :, :front]) for k, v in kv]
        kwargs = {"past_key_values": DynamicCache(ddp_cache_data=layers), "use_cache": True, "attention_mask": mask}
    hidden = decoder(input_ids=ids, position_ids=positions, **kwargs).last_hidden_state
    # The LM head runs only over positions some request reads, many rows per matmul, in
    # slices of about `head_rows` positions to bound the float32 vocabulary-wide logits.
    i = 0
    while i < n:
        j, count = i, 0
        while j < n and (count == 0 or count + _span(batch[j]) <= head_rows):
            count += _span(batch[j])
            j += 1
        rows_idx = [k for k in range(i, j) for _ in range(_span(batch[k]))]
        cols_idx = [q for _, p, r in batch[i:j] for q in range(r.first_needed - p, len(r.tokens) - p)]
        logp, greedy = _head(head, softcap, hidden[torch.tensor(rows_idx), torch.tensor(cols_idx)])
        offset = 0
        for _, _, r in batch[i:j]:
            for req, first, targets in r.asks:
                rel = torch.arange(first - r.first_needed, first - r.first_needed + len(targets)) + offset
                tgt = torch.tensor(targets)
                out[req] = (float(logp[rel, tgt].sum()), bool((greedy[rel] == tgt).all()))
            offset += len(r.tokens) - r.first_needed
        i = j


def _span(item) -> int:
    return len(item[2].tokens) - item[2].first_needed


def _head(head, softcap, hidden):
    import torch
    import torch.nn.functional as F

    logits = head(hidden).float()
    if softcap:
        logits = softcap * torch.tanh(logits / softcap)
    return F.log_softmax(logits, dim=-1), logits.argmax(-1)
