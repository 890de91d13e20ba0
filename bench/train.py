"""Training speed: `harness train` vs a plain peft loop, fp32 and bf16 autocast, same run.

    .venv/bin/python bench/train.py [--steps 3] [--batch-size 8] [--repeat 2] [--max-length 320] [--model smollm2-135m]

Both loops train the same LoRA config on the same tokens: the demo's SQuAD training
records (written to a temporary folder unless --data is given) that fit --max-length
whole, tokenized with the prompt masked, taken in the same seeded order, batch for
batch, with the same AdamW settings, clipping and constant LR. The plain loop is what a
careful user writes by hand: `model(input_ids, attention_mask, labels=labels).loss`,
backward, step, and for bf16 the forward inside `torch.autocast("cpu", torch.bfloat16)`.

Prints tokens/s (non-padding tokens / seconds in forward, backward and optimizer step,
over every step but the first, which pays one-off warm-up costs; best of --repeat
interleaved runs, since other load on the machine only ever slows a run) for each loop
and dtype, the harness/plain ratios, the bf16/fp32 speedups, and how far the loss
curves are apart:

* harness vs plain in fp32: the same math, so they agree to float rounding (the harness
  only skips the logits that carry no loss);
* harness bf16 vs fp32: tolerance 0.05 nats on every step's mean loss. At step 1 the
  weights are identical and the gap is pure arithmetic: bf16 rounds every matmul input
  to 8 significant bits (2^-9 relative), which moves a loss near 2 by about 0.01. Later
  steps add a trajectory gap: AdamW's first steps are sign-like (update ~ lr * g/|g|),
  so the ~1% of gradient coordinates whose sign bf16 flips move the other way by a full
  step. 0.05 nats is 2-3% of the loss and a small fraction of what the loss falls over a
  short run, and it is five times smaller than the lag of a plain autocast loop (also
  printed), where peft adds the young adapter's ~1e-3 relative contribution to a bf16
  base output and rounds it away (see harness.train.loop._prepare_bf16) -- the
  failure this tolerance is meant to catch.
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
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=320)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=2, help="runs of each loop and dtype (best is reported)")
    args = ap.parse_args()
    print("command:", shlex.join([sys.executable, *sys.argv]))

    from harness.evaluate.models import resolve_base

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

    runs: dict[tuple[str, str], list[dict]] = {}
    # Interleaved, and repeated: load from other processes only ever slows a run down, so
    # the best of the repeats is the closest to the machine's real speed.
    for rep in range(args.repeat):
        for dtype in ("fp32", "bf16"):
            bf16 = dtype == "bf16"
            for loop in ("plain", "harness"):
                r = plain_loop(model_dir, records, args, bf16) if loop == "plain" else \
                    harness_loop(args.model, data, tmp / f"harness-{dtype}", args, bf16)
                runs.setdefault((loop, dtype), []).append(r)
                print(f"  run {rep + 1}/{args.repeat} {loop:8} {dtype}: {r['tokens_per_s']:7.1f} tokens/s  "
                      f"({r['tokens']} tokens in {r['seconds']:.1f}s after the first step)  "
                      f"losses {', '.join(f'{x:.4f}' for x in r['losses'])}", flush=True)

    tps = {k: max(r["tokens_per_s"] for r in v) for k, v in runs.items()}
    losses = {k: v[0]["losses"] for k, v in runs.items()}
    print()
    print(f"tokens/s, best of {args.repeat}")
    print(f"{'':6}{'harness':>10}{'plain':>10}{'harness/plain':>15}")
    for dtype in ("fp32", "bf16"):
        print(f"{dtype:6}{tps['harness', dtype]:10.1f}{tps['plain', dtype]:10.1f}"
              f"{tps['harness', dtype] / tps['plain', dtype]:14.2f}x")
    h_speed = tps["harness", "bf16"] / tps["harness", "fp32"]
    p_speed = tps["plain", "bf16"] / tps["plain", "fp32"]
    print(f"bf16/fp32 speedup: harness {h_speed:.2f}x (target >= 1.6x: {'PASS' if h_speed >= 1.6 else 'FAIL'}), "
          f"plain autocast loop {p_speed:.2f}x")

    def gap(a, b):
        d = [abs(x - y) for x, y in zip(losses[a], losses[b])]
        return max(d), d[0]

    hp, _ = gap(("harness", "fp32"), ("plain", "fp32"))
    h16, h16_first = gap(("harness", "bf16"), ("harness", "fp32"))
    p16, _ = gap(("plain", "bf16"), ("plain", "fp32"))
    print(f"loss curves, max |diff| over {args.steps} steps: harness vs plain (fp32) {hp:.1e}; "
          f"harness bf16 vs fp32 {h16:.4f} (step 1: {h16_first:.4f}), tolerance {TOLERANCE} nats: "
          f"{'PASS' if h16 <= TOLERANCE else 'FAIL'}; plain autocast bf16 vs fp32 {p16:.4f}")

if __name__ == "__main__":
    main()
