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

MIN_SHARED = 16  # shorter common prefixes are not worth a separate forward


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


def group_sequences(seqs: list[_Seq], max_rows: int = 32, token_budget: int = 8192) -> list[tuple[int, list[_Seq]]]:
    """Neighbours in sorted order that share a long prefix form a group: (prefix length, rows)."""
    groups: list[tuple[int, list[_Seq]]] = []
    i = 0
    while i < len(seqs):
        rows = [seqs[i]]
        shared = len(seqs[i].tokens)
        j = i + 1
        while j < len(seqs) and len(rows) < max_rows:
            common = min(shared, _lcp(rows[0].tokens, seqs[j].tokens))
            suffix_tokens = sum(len(r.tokens) - common for r in rows) + len(seqs[j].tokens) - common
            if common < MIN_SHARED or suffix_tokens > token_budget:
                break
            shared = common
            rows.append(seqs[j])
            j += 1
        prefix = 0
        if len(rows) > 1:
            prefix = min([shared] + [r.first_needed for r in rows])
            prefix = prefix if prefix >= MIN_SHARED else 0
        groups.append((prefix, rows))
        i = j
    return groups


def score(model, requests: Sequence[tuple[Sequence[int], Sequence[int]]], max_length: int,
          pad_id: int = 0, progress: Callable[[int], None] | None = None) -> list[tuple[float, bool]]:
    """(sum of continuation log-probs, continuation is the greedy choice) per request."""
    import torch
    from transformers import DynamicCache

    decoder, head, softcap = _parts(model)
    out: list[tuple[float, bool] | None] = [None] * len(requests)
    seqs = build_sequences(requests, max_length)
    groups = group_sequences(seqs)
    # Rows that share nothing worth caching are pooled and batched by length instead:
    # short prompts alone make matmuls too thin to reach the machine's peak.
    loose = [r for prefix, rows in groups if not prefix for r in rows]
    work = [(prefix, rows) for prefix, rows in groups if prefix] + [(0, loose)]
    with torch.inference_mode():
        for prefix, rows in work:
            prefix_kv = None
            if prefix:
                pc = DynamicCache()
                decoder(input_ids=torch.tensor([rows[0].tokens[:prefix]]), past_key_values=pc, use_cache=True)
                prefix_kv = [(layer.keys, layer.values) for layer in pc.layers]
            for sub in _sub_batches(rows, prefix):
                _score_rows(decoder, head, softcap, sub, prefix, prefix_kv, pad_id, out)
                if progress:
                    progress(sum(len(r.asks) for r in sub))
    return out  # type: ignore[return-value]


def _sub_batches(rows: list[_Seq], prefix: int, waste: float = 0.15, budget: int = 4096) -> list[list[_Seq]]:
    """Batch rows of similar suffix length so right padding stays under `waste`."""
    rows = sorted(rows, key=lambda r: -len(r.tokens))
    batches: list[list[_Seq]] = []
    cur: list[_Seq] = []
    for r in rows:
        n = len(r.tokens) - prefix
        if cur:
            width = len(cur[0].tokens) - prefix
            real = sum(len(x.tokens) - prefix for x in cur) + n
            if width * (len(cur) + 1) > real * (1 + waste) or width * (len(cur) + 1) > budget:
                batches.append(cur)
                cur = []
        cur.append(r)
    if cur:
        batches.append(cur)
    return batches


def _score_rows(decoder, head, softcap, rows, prefix, prefix_kv, pad_id, out) -> None:
    import torch
    import torch.nn.functional as F
    from transformers import DynamicCache

    n = len(rows)
    width = max(len(r.tokens) for r in rows) - prefix
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    mask = torch.zeros((n, prefix + width), dtype=torch.long)
    mask[:, :prefix] = 1
    for i, r in enumerate(rows):
        suffix = r.tokens[prefix:]
        ids[i, :len(suffix)] = torch.tensor(suffix)
        mask[i, prefix:prefix + len(suffix)] = 1
    kwargs = {}
    if prefix_kv is not None:
        kwargs["past_key_values"] = DynamicCache(ddp_cache_data=[
            (k.expand(n, -1, -1, -1).contiguous(), v.expand(n, -1, -1, -1).contiguous()) for k, v in prefix_kv])
        kwargs["use_cache"] = True
    # Right padding needs no mask under causal attention (real tokens never see the pads
    # after them, as in lm-eval's hf backend); only a prefix cache in front needs one.
    positions = torch.arange(prefix, prefix + width).unsqueeze(0).expand(n, -1)
    hidden = decoder(input_ids=ids, attention_mask=mask if prefix else None,
                     position_ids=positions, **kwargs).last_hidden_state
    for i, r in enumerate(rows):
        lo = r.first_needed - prefix
        hi = len(r.tokens) - prefix
        logits = head(hidden[i, lo:hi]).float()
        if softcap:
            logits = softcap * torch.tanh(logits / softcap)
        logp = F.log_softmax(logits, dim=-1)
        greedy = logits.argmax(-1)
        for req, start, targets in r.asks:
            rel = torch.arange(start - r.first_needed, start - r.first_needed + len(targets))
            tgt = torch.tensor(targets)
            out[req] = (float(logp[rel, tgt].sum()), bool((greedy[rel] == tgt).all()))
