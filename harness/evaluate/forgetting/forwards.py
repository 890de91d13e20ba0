"""The two model passes the scorer needs, behind one interface.

Rows are token lists (right-padded internally, however each forward likes).
`prefix(rows)` runs shared prefixes and returns each layer's post-RoPE (keys, values),
`[rows, kv heads, longest row, head dim]`. `hidden(rows, starts, past, keep)` runs
suffixes whose row i continues its own prefix at position `starts[i]`: `past` holds
per-layer cache tensors `[rows, kv heads, front, dim]` and `keep[i, j]` says whether slot j
belongs to row i's prefix. It returns the final-normed hidden states of the tokens listed
in `read` (indices into the rows' tokens packed row after row), in that order.

`LlamaForward` does this for Llama-family decoders: its projections and MLP run on the
packed real tokens only (no FLOPs on padding) and only attention sees a padded layout; it
fuses what PyTorch can fuse and keeps no cache bookkeeping. `ModelForward` calls the
model's own decoder and serves every other architecture and adapter kind. Tests hold both
to plain one-request forwards.
"""

from __future__ import annotations

from dataclasses import dataclass


class Unsupported(Exception):
    """The fast path cannot reproduce this model's forward; use `ModelForward`."""


def forward_for(model):
    """The fused pass for a Llama-family model in one piece on the CPU; the model's own
    decoder elsewhere: the fused pass is tuned for CPU kernels, and on a GPU the decoder's
    SDPA/flash attention is the default until `bench/gpu.sh` measures otherwise; weights
    spread by a device map or quantized by bitsandbytes are the decoder's to run."""
    import torch

    from harness.evaluate.devices import model_device

    spread = len(set((getattr(model, "hf_device_map", None) or {}).values())) > 1
    quantized = getattr(model, "is_quantized", False) or getattr(model, "is_loaded_in_4bit", False) \
        or getattr(model, "is_loaded_in_8bit", False)
    if model_device(model) != "cpu" or spread or quantized:
        return ModelForward(model)
    try:
        with torch.no_grad():  # stacked weights must not carry autograd history
            return LlamaForward(model)
    except Unsupported:
        return ModelForward(model)


def _inner(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


class ModelForward:
    packed = False  # pays for padding: the scorer keeps rows of a batch of similar length

    def __init__(self, model):
        self.decoder = _inner(model).get_decoder()

    def prefix(self, rows):
        from transformers import DynamicCache

        cache = DynamicCache()
        # Right padding needs no mask: causal attention keeps real positions from seeing pads.
        self.decoder(input_ids=_padded(rows)[0], past_key_values=cache, use_cache=True)
        return [(c.keys, c.values) for c in cache.layers]

    def hidden(self, rows, starts, past, keep, read):
        import torch
        from transformers import DynamicCache

        ids, where = _padded(rows)
        positions = torch.arange(ids.shape[1])[None, :] + torch.tensor(starts)[:, None]
        kwargs = {}
        if past is not None:
            mask = torch.cat([keep.long(), torch.ones(ids.shape, dtype=torch.long)], dim=1)
            kwargs = {"past_key_values": DynamicCache(ddp_cache_data=past), "use_cache": True, "attention_mask": mask}
        out = self.decoder(input_ids=ids, position_ids=positions, **kwargs).last_hidden_state
        return out.flatten(0, 1)[where[torch.tensor(read)]]


def _padded(rows):
    """[rows, longest] right-padded ids (pad id 0: pads are never read) and each real
    token's flat index in that layout, row after row."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
    where = torch.cat([torch.arange(len(r)) + i * width for i, r in enumerate(rows)])
    return ids, where


@dataclass
class _Proj:
    """A projection as the module applies it: `x·Wᵀ + b`, plus each active LoRA adapter as
    `(x·Aᵀ)·Bᵀ`, unmerged as PEFT and vLLM apply it (a merged `W + B·A` rounds differently
    in every token's sums: ~3e-4 in an fp32 log-likelihood with strong adapters). `down`
    stacks the adapters' A rows, `up` their scaled B columns."""

    weight: object
    bias: object = None
    down: object = None
    up: object = None

    def __call__(self, x):
        import torch.nn.functional as F

        y = F.linear(x, self.weight, self.bias)
        if self.down is not None:
            y.add_(F.linear(F.linear(x, self.down), self.up))
        return y

    def rows(self, part: slice) -> "_Proj":
        """The projection onto output rows `part` (the query or key/value block of a fused qkv)."""
        up = None if self.up is None else self.up[part]
        return _Proj(self.weight[part], None if self.bias is None else self.bias[part],
                     self.down if up is not None else None, up)

    @staticmethod
    def stack(projs: list["_Proj"]) -> "_Proj":
        """One projection whose outputs are those of `projs` one after another (q, k, v)."""
        import torch

        first = projs[0].weight
        bias = None if all(p.bias is None for p in projs) else torch.cat(
            [p.bias if p.bias is not None else first.new_zeros(p.weight.shape[0]) for p in projs])
        adapted = [p for p in projs if p.down is not None]
        if not adapted:
            return _Proj(torch.cat([p.weight for p in projs]), bias)
        down = torch.cat([p.down for p in adapted])
        up = first.new_zeros(sum(p.weight.shape[0] for p in projs), down.shape[0])
        row = col = 0
        for p in projs:  # block-diagonal: each projection's B reads its own A rows only
            if p.down is not None:
                up[row:row + p.weight.shape[0], col:col + p.down.shape[0]] = p.up
                col += p.down.shape[0]
            row += p.weight.shape[0]
        return _Proj(torch.cat([p.weight for p in projs]), bias, down, up)


def _projection(mod) -> _Proj:
    """What a linear layer applies, active LoRA adapters included; Unsupported otherwise."""
    import torch
    import torch.nn as nn

    if type(mod) is nn.Linear:
        return _Proj(mod.weight, mod.bias)
    try:
        from peft.tuners.lora import Linear as LoraLinear
    except ImportError:  # pragma: no cover - peft is a dependency
        raise Unsupported("peft missing")
    base = getattr(mod, "base_layer", None)
    if not isinstance(mod, LoraLinear) or type(base) is not nn.Linear:
        raise Unsupported(f"{type(mod).__name__} layer")
    if mod.disable_adapters or mod.merged:
        return _Proj(base.weight, base.bias)
    downs, ups = [], []
    for name in mod.active_adapters:
        if name not in mod.lora_A:
            continue
        if name in mod.lora_variant or getattr(mod, "lora_bias", {}).get(name):
            raise Unsupported("LoRA variant (DoRA, LoRA bias, ...)")
        a, b = mod.lora_A[name], mod.lora_B[name]
        if type(a) is not nn.Linear or type(b) is not nn.Linear:
            raise Unsupported("LoRA on a non-linear layer")
        downs.append(a.weight.to(base.weight.dtype))
        ups.append((b.weight * mod.scaling[name]).to(base.weight.dtype))
    if not downs:
        return _Proj(base.weight, base.bias)
    return _Proj(base.weight, base.bias, torch.cat(downs), torch.cat(ups, dim=1))


class LlamaForward:
    """Llama decoder pass: fused RMSNorm, RoPE by fused multiply-adds, GQA attention
    without repeated keys, causal attention without a mask when there is no prefix, in-place
    SiLU gating and residuals; LoRA adapters are applied unmerged, as PEFT applies them."""

    packed = True

    def __init__(self, model):
        import torch
        import torch.nn as nn

        inner = _inner(model)
        cfg = inner.config
        if cfg.model_type != "llama" or cfg.hidden_act != "silu" or inner.training:
            raise Unsupported(cfg.model_type)
        dec = inner.get_decoder()
        if type(dec.embed_tokens) is not nn.Embedding:
            raise Unsupported("adapted embedding")
        self.embed, self.rotary = dec.embed_tokens, dec.rotary_emb
        self.norm = (dec.norm.weight, dec.norm.variance_epsilon)
        self.heads, self.kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
        self.dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.layers = []
        for layer in dec.layers:
            att, mlp = layer.self_attn, layer.mlp
            self.layers.append({
                "ln1": (layer.input_layernorm.weight, layer.input_layernorm.variance_epsilon),
                "ln2": (layer.post_attention_layernorm.weight, layer.post_attention_layernorm.variance_epsilon),
                "qkv": _Proj.stack([_projection(m) for m in (att.q_proj, att.k_proj, att.v_proj)]),
                "o": _projection(att.o_proj), "gate": _projection(mlp.gate_proj),
                "up": _projection(mlp.up_proj), "down": _projection(mlp.down_proj),
                "scale": att.scaling,
            })

    def _norm(self, x, weight, eps):
        import torch
        import torch.nn.functional as F

        if x.dtype == weight.dtype == torch.float32:
            return F.rms_norm(x, (x.shape[-1],), weight, eps)
        # As the model does: normalise in float32, round to the working dtype, then scale.
        return F.rms_norm(x.float(), (x.shape[-1],), None, eps).to(x.dtype).mul_(weight)

    def _rope(self, x, cos, sin):
        """x: [tokens, heads, d]; cos/sin: [tokens, 1, d]; returns a new rotated tensor."""
        half = x.shape[-1] // 2
        out = x * cos
        out[..., :half].addcmul_(x[..., half:], sin[..., :half], value=-1)
        out[..., half:].addcmul_(x[..., :half], sin[..., half:])
        return out

    def _run(self, rows, starts, past=None, keep=None, read=None):
        import torch
        import torch.nn.functional as F

        h, kvh, d = self.heads, self.kv_heads, self.dim
        ids = torch.tensor([t for r in rows for t in r])
        positions = torch.cat([torch.arange(s, s + len(r)) for r, s in zip(rows, starts)])
        x = self.embed(ids)  # [tokens, hidden]: every projection sees real tokens only
        cos, sin = self.rotary(x[None], positions[None])
        cos, sin = cos[0, :, None], sin[0, :, None]
        collect = read is None
        layout = _Layout(rows, _attention_groups(rows, keep), keep)
        whole = _Layout(rows, [list(range(len(rows)))], None) if collect else None  # the cache's layout
        kept = []
        for i, L in enumerate(self.layers):
            if i == len(self.layers) - 1 and not collect:
                return self._last_layer(L, x, cos, sin, layout, past[i] if past is not None else None, read)
            a = self._norm(x, *L["ln1"])
            qkv = L["qkv"](a).view(-1, h + 2 * kvh, d)
            qk = self._rope(qkv[:, :h + kvh], cos, sin)
            if collect:
                kept.append((whole.block(whole.pad(qk[:, h:]), 0), whole.block(whole.pad(qkv[:, h + kvh:]), 0)))
                if i == len(self.layers) - 1:
                    break  # the prefix's outputs are never read, only its keys and values
            att = layout.attend(layout.pad(qk[:, :h]), layout.pad(qk[:, h:]), layout.pad(qkv[:, h + kvh:]),
                                past[i] if past is not None else None, L["scale"])
            x.add_(L["o"](att))
            a = self._norm(x, *L["ln2"])
            gate = F.silu(L["gate"](a), inplace=True).mul_(L["up"](a))
            x.add_(L["down"](gate))
        return kept

    def _last_layer(self, L, x, cos, sin, layout, past, read):
        """Keys and values for every token, everything else for the read tokens only: no
        later layer needs the others (one of ~30 layers' FLOPs for MMLU-like prompts)."""
        import torch
        import torch.nn.functional as F

        h, kvh, d = self.heads, self.kv_heads, self.dim
        a = self._norm(x, *L["ln1"])
        kv = L["qkv"].rows(slice(h * d, None))(a).view(-1, 2 * kvh, d)
        sel = torch.tensor(read)
        q = L["qkv"].rows(slice(0, h * d))(a[sel]).view(-1, h, d)
        q = self._rope(q, cos[sel], sin[sel])
        att = layout.attend_some(q, sel, layout.pad(self._rope(kv[:, :kvh], cos, sin)), layout.pad(kv[:, kvh:]),
                                 past, L["scale"])
        y = x[sel].add_(L["o"](att))
        a = self._norm(y, *L["ln2"])
        gate = F.silu(L["gate"](a), inplace=True).mul_(L["up"](a))
        return self._norm(y.add_(L["down"](gate)), *self.norm)

    def prefix(self, rows):
        return self._run(rows, [0] * len(rows))

    def hidden(self, rows, starts, past, keep, read):
        return self._run(rows, starts, past, keep, read)


def _attention_groups(rows, keep, waste: float = 0.3, most: int = 2048):
    """Rows (by index) of similar length: attention is the one padded computation, so its
    groups are tighter than the packed batch the projections run over. Each group costs a
    few small kernel launches per layer, so groups are not made tighter than `waste`."""
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
    fronts = keep.sum(1).tolist() if keep is not None else [0] * len(rows)
    out, cur, real = [], [], 0
    for i in order:
        if cur:
            width, front = len(rows[cur[0]]), max(fronts[j] for j in cur + [i])
            padded = (len(cur) + 1) * width * (front + width)
            needed = real + len(rows[i]) * (fronts[i] + len(rows[i]))
            if padded > needed * (1 + waste) or (len(cur) + 1) * width > most:
                out.append(cur)
                cur, real = [], 0
        cur.append(i)
        real += len(rows[i]) * (fronts[i] + len(rows[i]))
    if cur:
        out.append(cur)
    return out


INLINE_RATIO = 8  # a block's cached prefixes are laid inline when its rows are this many times longer


@dataclass
class _Block:
    offset: int  # first slot in the layout's buffer
    n: int  # rows
    width: int  # slots per row
    which: object  # the rows' batch indices (tensor)
    front: int = 0  # cache slots attended in front of the block (masked layout)
    mask: object = None  # [n, 1, width, front + width] for the masked layout
    fill: object = None  # inline layout: (flat slots, batch rows, cache positions) of the prefixes


class _Layout:
    """Where each packed token sits for attention: every group of rows gets a right-padded
    block [rows, width], blocks end to end in one buffer, so padding and unpadding are one
    copy per layer whatever the number of groups.

    A block whose rows continue cached prefixes attends in one of two ways. Short prefixes
    in front of long rows (MMLU's shared opening before each few-shot prompt) are copied
    into the block ahead of each row's tokens, so plain causal attention applies: the CPU
    kernel skips the upper triangle that a masked call computes (~1.7x faster at 1k tokens).
    Long prefixes before short rows (HellaSwag's context before its endings) stay apart and
    are attended through a mask, rather than recomputing attention for prefix queries.
    """

    def __init__(self, rows, groups, keep):
        import torch

        starts = [0]
        for r in rows:
            starts.append(starts[-1] + len(r))
        fronts = keep.sum(1).tolist() if keep is not None else [0] * len(rows)
        self.slot = torch.empty(starts[-1], dtype=torch.long)
        self.row_of = torch.empty(starts[-1], dtype=torch.long)  # (block, row in block) of each token
        self.block_of = torch.empty(starts[-1], dtype=torch.long)
        self.col = torch.empty(starts[-1], dtype=torch.long)  # key slot of each token in its block row
        self.blocks: list[_Block] = []
        offset = 0
        for members in groups:
            n, longest = len(members), max(len(rows[i]) for i in members)
            which = torch.tensor(members)
            front = max(fronts[i] for i in members)
            inline = 0 < front * INLINE_RATIO <= longest
            shift = [fronts[i] if inline else 0 for i in members]
            width = max(s + len(rows[i]) for s, i in zip(shift, members))
            for j, (i, s) in enumerate(zip(members, shift)):
                cols = torch.arange(len(rows[i])) + s
                self.slot[starts[i]:starts[i + 1]] = cols + offset + j * width
                self.row_of[starts[i]:starts[i + 1]] = j
                self.block_of[starts[i]:starts[i + 1]] = len(self.blocks)
                self.col[starts[i]:starts[i + 1]] = cols
            mask = fill = None
            if inline:
                # Slots [0, p_j) of row j take its cached prefix: (flat slots, batch rows, positions).
                row = torch.cat([torch.full((s,), j) for j, s in enumerate(shift)])
                pos = torch.cat([torch.arange(s) for s in shift])
                fill = (offset + row * width + pos, which[row], pos)
                front = 0
            elif front:
                # Row i's own group prefix sits in cache slots [0, p_i), the rest of the
                # front is masked out; right padding needs no mask under causal attention.
                mask = torch.ones((n, 1, width, front + width), dtype=torch.bool)
                mask[..., :front] = keep[which][:, None, None, :front]
                mask[..., front:] = torch.ones((width, width), dtype=torch.bool).tril()
            self.blocks.append(_Block(offset, n, width, which, front, mask, fill))
            offset += n * width
        self.size = offset

    def pad(self, t):
        """[tokens, heads, d] -> [slots, heads, d]; padding slots are zero."""
        out = t.new_zeros((self.size, *t.shape[1:]))
        out[self.slot] = t
        return out

    def block(self, flat, b: int):
        blk = self.blocks[b]
        return flat[blk.offset:blk.offset + blk.n * blk.width].view(blk.n, blk.width, *flat.shape[1:]).transpose(1, 2)

    def _keys(self, b, k, v, past):
        """Block b's keys and values, each row's cached prefix in front (written into the
        padded buffers `k` and `v` for an inline block)."""
        import torch

        blk = self.blocks[b]
        if blk.fill is not None:
            slots, src, pos = blk.fill
            k[slots], v[slots] = past[0][src, :, pos], past[1][src, :, pos]
        kb, vb = self.block(k, b), self.block(v, b)
        if blk.front:
            kb = torch.cat([past[0][blk.which, :, :blk.front], kb], dim=2)
            vb = torch.cat([past[1][blk.which, :, :blk.front], vb], dim=2)
        return kb, vb

    def attend(self, q, k, v, past, scale):
        """Padded q, k, v -> attention output for the real tokens, [tokens, heads * d]."""
        import torch.nn.functional as F

        out = q.new_empty(q.shape)  # pad queries' outputs are never gathered
        for b, blk in enumerate(self.blocks):
            kb, vb = self._keys(b, k, v, past)
            att = F.scaled_dot_product_attention(self.block(q, b), kb, vb, attn_mask=blk.mask, is_causal=blk.mask is None,
                                                 scale=scale, enable_gqa=q.shape[1] != k.shape[1])
            self.block(out, b).copy_(att)
        return out[self.slot].flatten(1)

    def attend_some(self, q, sel, k, v, past, scale):
        """Attention for the query tokens `sel` only ([len(sel), heads, d], packed-token
        indices): per block, each row's queries padded to the block's most, masked to
        the keys a causal pass would let them see."""
        import torch
        import torch.nn.functional as F

        out = q.new_empty((len(sel), q.shape[1] * q.shape[2]))
        blocks, rows, cols = self.block_of[sel], self.row_of[sel], self.col[sel]
        for b, blk in enumerate(self.blocks):
            n, width, front = blk.n, blk.width, blk.front
            mine = (blocks == b).nonzero().flatten()
            if not len(mine):
                continue
            r, order = torch.sort(rows[mine], stable=True)  # grouped by row in the block
            mine = mine[order]
            counts = torch.bincount(r, minlength=n)
            rank = torch.arange(len(mine)) - (torch.cumsum(counts, 0) - counts)[r]  # slot among the row's queries
            most = int(counts.max())
            qb = q.new_zeros((n, most, *q.shape[1:]))
            qb[r, rank] = q[mine]
            allow = torch.zeros((n, 1, most, front + width), dtype=torch.bool)
            allow[:, :, :, front] = True  # padding queries see one key, so no row is all -inf
            seen = torch.arange(width)[None, :] <= cols[mine][:, None]
            allow[r, 0, rank, front:] = seen
            if front:
                allow[r, 0, rank, :front] = blk.mask[r, 0, 0, :front]
            kb, vb = self._keys(b, k, v, past)
            att = F.scaled_dot_product_attention(qb.transpose(1, 2), kb, vb, attn_mask=allow, scale=scale,
                                                 enable_gqa=q.shape[1] != k.shape[1])
            out[mine] = att.transpose(1, 2)[r, rank].flatten(1)
        return out
