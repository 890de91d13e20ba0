"""Training speed: `harness train` vs a plain peft loop, fp32 and bf16 autocast, same run.

    .venv/bin/python bench/train.py [--steps 4] [--batch-size 8] [--max-length 320] [--model smollm2-135m]

Both loops train the same LoRA config on the same tokens: the demo's SQuAD training
records (written to a temporary folder unless --data is given) that fit --max-length
whole, tokenized with the prompt
masked, taken in the same seeded order, batch for batch, with the same AdamW settings,
clipping and constant LR. The plain loop is what a careful user writes by hand:
`model(input_ids, attention_mask, labels=labels).loss`, backward, step, and for bf16 it
wraps the forward in `torch.autocast("cpu", dtype=torch.bfloat16)`.

Prints tokens/s (non-padding tokens / seconds in forward, backward and optimizer step,
over every step but the first, which pays one-off warm-up costs) for each loop and dtype, the harness/plain ratios, the bf16/fp32 speedups, and how far
the loss curves are apart:

* harness vs plain in fp32: should agree to float rounding (same math; the harness only
  skips logits that carry no loss);
* bf16 vs fp32 (harness): the tolerance is 0.05 nats on the per-step mean loss. bf16
  keeps 8 mantissa bits, so each matmul input is rounded by up to 2^-9 relative; over 30
  layers that moves the step-1 loss by well under 1% (<= 0.02 nats at a loss near 1.7).
  Later steps also inherit the slightly different updates (AdamW normalises gradients,
  so a tiny gradient difference becomes a full-size difference in the few coordinates
  where the gradient is near zero), which adds a little per step over a few steps;
  0.05 nats (3% of the starting loss) is well below the 0.2-0.5 nats the loss falls in
  the first steps of the demo, so a curve inside it tells the same training story.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

TOLERANCE = 0.05


def plain_loop(model_dir: str, records: list[dict], args, bf16: bool) -> dict:
    """A minimal hand-written peft training loop; returns tokens/s and the loss curve."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.train.schedule import epoch_seed

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    torch.manual_seed(args.seed)
    model = get_peft_model(model, LoraConfig(r=args.rank, lora_alpha=2 * args.rank, lora_dropout=args.dropout,
                                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                             "up_proj", "down_proj"], task_type="CAUSAL_LM"))
    model.train()
    examples = []
    for r in records:  # prompt masked with -100, reply (with its end-of-turn marker) labelled
        prompt = tok.apply_chat_template(r["messages"][:-1], add_generation_prompt=True, tokenize=False)
        full = tok.apply_chat_template(r["messages"], tokenize=False)
        p = tok(prompt, add_special_tokens=False)["input_ids"]
        c = tok(full[len(prompt):], add_special_tokens=False)["input_ids"]
        examples.append(((p + c)[: args.max_length], ([-100] * len(p) + c)[: args.max_length]))
    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(epoch_seed(args.seed, 0))).tolist()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    losses, tokens, seconds = [], [], []
    for step in range(args.steps):
        batch = [examples[i] for i in order[step * args.batch_size:(step + 1) * args.batch_size]]
        width = max(len(ids) for ids, _ in batch)
        ids = torch.tensor([i + [tok.pad_token_id] * (width - len(i)) for i, _ in batch])
        labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in batch])
        mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in batch])
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        seconds.append(time.perf_counter() - t0)
        tokens.append(int(mask.sum()))
        losses.append(float(loss.detach()))
    return _speed(losses, tokens, seconds)


def _speed(losses: list[float], tokens: list[int], seconds: list[float]) -> dict:
    # The first step pays one-off costs (allocator warm-up, oneDNN kernel selection), so
    # throughput is taken over the later steps only.
    return {"tokens_per_s": sum(tokens[1:]) / sum(seconds[1:]), "losses": losses, "tokens": sum(tokens[1:]),
            "seconds": sum(seconds[1:])}


def fitting_records(path: Path, model_dir: str, max_length: int) -> list[dict]:
    """Chat records whose whole conversation fits max_length tokens (no truncation on either side)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            if len(tok(tok.apply_chat_template(r["messages"], tokenize=False), add_special_tokens=False)["input_ids"]) \
                    <= max_length:
                out.append(r)
    return out


def harness_loop(model: str, data: Path, out: Path, args, bf16: bool) -> dict:
    from harness.train import TrainConfig, train_adapter

    cfg = TrainConfig(base=model, data=data, out=out, rank=args.rank, alpha=2 * args.rank, dropout=args.dropout,
                      lr=args.lr, scheduler="constant", batch_size=args.batch_size, max_steps=args.steps,
                      max_length=args.max_length, group_by_length=False, seed=args.seed, save_every=0,
                      dtype="bfloat16" if bf16 else "float32")
    r = train_adapter(cfg, progress=False, force=True, log=lambda m: None).record
    return _speed([p["loss"] for p in r["loss_curve"]], [p["tokens"] for p in r["loss_curve"]], r["step_s"])


def main() -> None:
    ap = argparse.ArgumentParser(description="harness train vs a plain peft loop (tokens/s), fp32 and bf16")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--data", type=Path, help="chat JSONL (default: the demo split's train.jsonl)")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=320)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print("command:", shlex.join([sys.executable, *sys.argv]))

    from harness.models import resolve_base

    tmp = Path(tempfile.mkdtemp(prefix="bench-train-"))
    data = args.data
    if data is None:
        from harness.train.demo_data import make_demo_split

        data = make_demo_split(tmp / "data").train_file
    model_dir = str(resolve_base(args.model)[1])
    records = fitting_records(data, model_dir, args.max_length)
    need = args.steps * args.batch_size
    if len(records) < need:
        sys.exit(f"{data} has {len(records)} records of at most {args.max_length} tokens; {need} are needed")
    data = tmp / "bench.jsonl"  # both loops read exactly these records, none truncated
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    print(f"model {args.model}, {args.steps} steps x batch {args.batch_size}, max_length {args.max_length}, "
          f"LoRA r={args.rank} on all projections, torch threads {torch.get_num_threads()}")

    results: dict[tuple[str, str], dict] = {}
    # Interleaved so that load from other processes hits both loops alike.
    for dtype in ("fp32", "bf16"):
        bf16 = dtype == "bf16"
        results["plain", dtype] = plain_loop(model_dir, records, args, bf16)
        results["harness", dtype] = harness_loop(args.model, data, tmp / f"harness-{dtype}", args, bf16)
        for loop in ("plain", "harness"):
            r = results[loop, dtype]
            print(f"  {loop:8} {dtype}: {r['tokens_per_s']:7.1f} tokens/s  ({r['tokens']} tokens in "
                  f"{r['seconds']:.1f}s after the first step)  losses {', '.join(f'{x:.4f}' for x in r['losses'])}", flush=True)

    tps = {k: v["tokens_per_s"] for k, v in results.items()}
    print()
    print(f"{'':10}{'harness':>10}{'plain':>10}{'harness/plain':>15}")
    for dtype in ("fp32", "bf16"):
        print(f"{dtype + ' tok/s':10}{tps['harness', dtype]:10.1f}{tps['plain', dtype]:10.1f}"
              f"{tps['harness', dtype] / tps['plain', dtype]:14.2f}x")
    h_speed = tps["harness", "bf16"] / tps["harness", "fp32"]
    p_speed = tps["plain", "bf16"] / tps["plain", "fp32"]
    print(f"bf16/fp32 speedup: harness {h_speed:.2f}x (target >= 1.6x: {'PASS' if h_speed >= 1.6 else 'FAIL'}), "
          f"plain autocast {p_speed:.2f}x")
    hp = max(abs(a - b) for a, b in zip(results["harness", "fp32"]["losses"], results["plain", "fp32"]["losses"]))
    h32, h16 = results["harness", "fp32"]["losses"], results["harness", "bf16"]["losses"]
    diff = [abs(a - b) for a, b in zip(h32, h16)]
    print(f"loss curves: harness vs plain (fp32) max |diff| {hp:.2e}; harness bf16 vs fp32 max |diff| "
          f"{max(diff):.4f} (step 1: {diff[0]:.4f}); tolerance {TOLERANCE} nats: "
          f"{'PASS' if max(diff) <= TOLERANCE else 'FAIL'}")


if __name__ == "__main__":
    main()
