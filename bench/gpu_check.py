"""The benchmark half of the GPU check (bench/gpu.sh runs it after the CUDA-marked tests).

    python bench/gpu_check.py --device cuda [--budget-s 330] [--models smollm2,llama-1b]
    python bench/gpu_check.py --device cpu --quick --models tiny      # smoke run (tests)

For each model (random weights built from config, see bench/gpu_models.py), on the device:
- parity: harness backend vs lm-eval's `hf` backend, MMLU 0-shot and HellaSwag, in fp32
  (correctness: agreement and max |delta ll|) and in the device's default dtype (speed);
  the reuse of bench/forgetting.py's `parity_case`;
- forward: the scorer with the fused `LlamaForward` vs the model's own decoder
  (`ModelForward`) on the same requests, time and max |delta ll| against the fp32 decoder:
  the measurement that decides which one the scorer uses on the device;
- generation: harness engine vs one-at-a-time `model.generate` (bench/generate.py's
  functions), new tokens per second and identical greedy texts.

Each section has an estimate and runs only if the budget still holds it; a section that
overruns its slot or fails prints one line and the run goes on to the next.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import signal
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

HERE = Path(__file__).resolve().parent
# Rough seconds per section on one H200 for (smollm2, llama-1b); tiny/CPU smoke runs use the first.
ESTIMATE = {"parity": (30, 45), "forward": (15, 30), "generate": (30, 30)}


def _bench(name: str):
    """Import bench/NAME.py (bench/ is scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class SlotOverrun(BaseException):
    """Raised by the alarm when a section runs past its slot (BaseException: libraries'
    `except Exception` must not swallow it)."""


class Budget:
    """Wall-clock budget shared by the sections."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds
        self.failures: list[str] = []

    def left(self) -> float:
        return self.end - time.monotonic()

    def run(self, title: str, need_s: float, fn, *args):
        """fn(*args) if `need_s` still fits, stopped at 3x its estimate or the budget's end.

        Returns fn's result, or None when skipped, stopped or failed (the last two are
        recorded in `failures`)."""
        left = self.left()
        if left < need_s:
            print(f"SKIPPED {title}: needs ~{need_s:.0f}s, {max(left, 0):.0f}s of the budget left", flush=True)
            return None
        slot = max(1.0, min(left, 3 * need_s))
        print(f"-- {title}", flush=True)

        def overrun(signum, frame):
            raise SlotOverrun

        previous = signal.signal(signal.SIGALRM, overrun)
        signal.setitimer(signal.ITIMER_REAL, slot)
        t0 = time.monotonic()
        try:
            return fn(*args)
        except SlotOverrun:
            print(f"STOPPED {title}: ran past its {slot:.0f}s slot", flush=True)
            self.failures.append(title)
        except Exception as exc:  # one broken section must not hide the others' figures
            self.failures.append(title)
            print(f"FAILED {title}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:400], flush=True)
            traceback.print_exc(limit=-4, file=sys.stderr)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            print(f"   ({time.monotonic() - t0:.1f}s)", flush=True)
        return None


def resolve_device(arg: str) -> str:
    """auto: cuda, then mps, then cpu (the CLI's rule)."""
    import torch

    if arg != "auto":
        if arg.startswith("cuda") and not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device here")
        return arg
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def header(device: str, budget_s: float) -> None:
    import lm_eval
    import torch
    import transformers

    where = device
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(device)
        where = f"{device} ({props.name}, {props.total_memory / 2**30:.0f} GiB), tf32 matmul {torch.backends.cuda.matmul.allow_tf32}"
    print(f"gpu check: device {where}; torch {torch.__version__}, transformers {transformers.__version__}, "
          f"lm-eval {lm_eval.__version__}; budget {budget_s:.0f}s", flush=True)
    print("random weights: accuracy is meaningless here; agreement, |delta ll| and speed are not", flush=True)


class Subject:
    """One model shape on the device: the fp32 weights and copies in other dtypes."""

    def __init__(self, name: str, tok, device: str):
        import torch

        self.name, self.tok, self.device = name, tok, device
        self.gm = _bench("gpu_models")
        t0 = time.perf_counter()
        fp32 = self.gm.build(name, tok, device)
        sync(device)
        self.copies = {"fp32": fp32}
        self.dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
        print(f"   {name}: {self.gm.SHAPES[name]}; {self.gm.parameters(fp32) / 1e6:.1f}M parameters, "
              f"random weights built on {device} in {time.perf_counter() - t0:.1f}s", flush=True)

    def model(self, dtype: str):
        import copy

        if dtype not in self.copies:
            self.copies[dtype] = copy.deepcopy(self.copies["fp32"]).to(self.dtypes[dtype])
        return self.copies[dtype]


def parity(s: Subject, dtype: str, cases, hf_batch: int, recorded: dict) -> None:
    """Harness vs lm-eval `hf`, both on `s` in `dtype`; keeps the requests for `forward`."""
    from harness.evaluate.forgetting.tasks import task_manager

    fg = _bench("forgetting")
    tm = task_manager(True)
    for label, names, shots, limit in cases:
        ref, ours, c, lm = fg.parity_case(tm, s.model(dtype), s.tok, names, shots, limit, batch_size=hf_batch)
        recorded.setdefault(label, (lm.seen, lm.max_length))  # one tokenizer for every shape: shared
        print(f"   {label:12} {dtype} items {c['items']:4}  lm-eval hf {ref.wall_s:6.1f}s  harness {ours.wall_s:6.1f}s  "
              f"ratio {ref.wall_s / ours.wall_s:5.2f}x  agree {c['agree']}/{c['items']}  max|dll| {c['max_abs_dll']:.1e}",
              flush=True)


def _timed_score(s: Subject, model, reqs, max_length: int, fwd):
    from harness.evaluate.forgetting import scorer

    scorer.score(model, reqs[:64], max_length, forward=fwd)  # warm-up: kernels, allocator, autotuning
    sync(s.device)
    t0 = time.perf_counter()
    got = scorer.score(model, reqs, max_length, forward=fwd)
    sync(s.device)
    return got, time.perf_counter() - t0


def forward(s: Subject, dtypes: list[str], recorded: dict) -> None:
    """Fused LlamaForward vs the model's decoder inside the scorer, same requests, per dtype."""
    import torch

    from harness.evaluate.forgetting.forwards import LlamaForward, ModelForward, Unsupported

    if not recorded:
        print("   no requests recorded (parity did not run): nothing to score", flush=True)
        return
    reqs = [r for seen, _ in recorded.values() for r in seen]
    max_length = min(n for _, n in recorded.values())
    ref = None
    for dtype in dtypes:
        model = s.model(dtype)
        times = {}
        for label, cls in (("decoder", ModelForward), ("fused", LlamaForward)):
            try:
                with torch.no_grad():
                    fwd = cls(model)
            except Unsupported as exc:
                print(f"   {dtype} {label}: not applicable ({exc})", flush=True)
                continue
            got, times[label] = _timed_score(s, model, reqs, max_length, fwd)
            ref = ref or got  # the fp32 decoder: dtypes run fp32 first
            dll = max(abs(a[0] - b[0]) for a, b in zip(got, ref))
            greedy = sum(a[1] == b[1] for a, b in zip(got, ref))
            print(f"   {dtype} {label:8} {len(reqs)} requests {times[label]:6.2f}s  "
                  f"max|dll| vs fp32 decoder {dll:.1e}  greedy flags agree {greedy}/{len(reqs)}", flush=True)
        if len(times) == 2:
            fast = min(times, key=times.get)
            print(f"   {dtype}: {fast} is faster by {max(times.values()) / min(times.values()):.2f}x on {s.device}",
                  flush=True)


def generation(s: Subject, dtype: str, items: int, batch: int) -> None:
    """Harness engine vs one-at-a-time `model.generate` on squad-qa prompts."""
    gen = _bench("generate")
    model = s.model(dtype)
    params, prompts = gen.suite_prompts(s.tok, "squad-qa", items)
    # Random weights hit the suite's stop string ("\n") at once; without stops every row
    # decodes up to the token limit (or EOS), so the figure is decode throughput.
    params = dataclasses.replace(params, stop=(), max_new_tokens=64)
    gen.harness_pass(model, s.tok, prompts[:2], params, batch)  # warm-up
    gen.one_at_a_time(model, s.tok, prompts[:1], params)
    ours, new_tokens, t_ours = gen.harness_pass(model, s.tok, prompts, params, batch)
    ref, t_ref = gen.one_at_a_time(model, s.tok, prompts, params)
    same = sum(ours[i] == ref[i] for i in ref)
    print(f"   {dtype} {len(prompts)} prompts, {new_tokens} new tokens, batch {batch}: one-at-a-time generate "
          f"{t_ref:.1f}s ({new_tokens / t_ref:,.0f} tok/s), harness {t_ours:.1f}s ({new_tokens / t_ours:,.0f} tok/s), "
          f"ratio {t_ref / t_ours:.2f}x, identical greedy text {same}/{len(prompts)}", flush=True)


def cases(quick: bool):
    """(label, lm-eval names, shots, docs per task)."""
    if quick:
        return [("MMLU 0-shot", ["mmlu_anatomy", "mmlu_astronomy"], 0, 2), ("HellaSwag", ["hellaswag"], 0, 4)]
    return [("MMLU 0-shot", ["mmlu"], 0, 5), ("HellaSwag", ["hellaswag"], 0, 200)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="GPU check benchmarks (see bench/gpu.sh)")
    ap.add_argument("--device", default="auto", help="auto|cpu|cuda|cuda:N|mps")
    ap.add_argument("--models", default="smollm2,llama-1b", help="comma-separated shapes from bench/gpu_models.py")
    ap.add_argument("--quick", action="store_true", help="a few items per case (smoke run)")
    ap.add_argument("--budget-s", type=float, default=330.0, help="wall-clock budget for all sections")
    ap.add_argument("--gen-items", type=int, default=16)
    ap.add_argument("--gen-batch", type=int, default=16)
    args = ap.parse_args(argv)
    device = resolve_device(args.device)
    cuda = device.startswith("cuda")
    default = "bf16" if cuda else "fp32"  # the CLI's default dtype per device
    dtypes = ["fp32"] + ([default] if default != "fp32" else [])
    budget = Budget(args.budget_s)
    header(device, args.budget_s)
    tok = _bench("gpu_models").tokenizer()
    names = args.models.split(",")
    items = 4 if args.quick else args.gen_items
    subjects: dict[str, Subject | None] = {}
    recorded: dict = {}

    def section(title, kind, name, fn, *fargs):
        if name not in subjects:
            subjects[name] = budget.run(f"[{name}] build", 10, Subject, name, tok, device)
        if subjects[name] is None:
            print(f"SKIPPED [{name}] {title}: the model was not built", flush=True)
            return
        budget.run(f"[{name}] {title}", ESTIMATE[kind][name == "llama-1b"], fn, subjects[name], *fargs)

    for name in names:
        section("parity fp32: harness vs lm-eval hf", "parity", name, parity, "fp32", cases(args.quick),
                64 if cuda else 16, recorded)
        section(f"scorer forward: fused vs model decoder ({', '.join(dtypes)})", "forward", name, forward, dtypes, recorded)
        section(f"generation {default}: harness vs one-at-a-time generate", "generate", name, generation, default,
                items, args.gen_batch)
    for name in names if default != "fp32" else []:
        section(f"parity {default}: harness vs lm-eval hf", "parity", name, parity, default, cases(args.quick),
                64, recorded)
    if cuda:
        import torch

        print(f"peak GPU memory allocated: {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB", flush=True)
    print(f"gpu check done, {budget.left():.0f}s of the budget unused; "
          f"{len(budget.failures)} section(s) failed or stopped{': ' if budget.failures else ''}"
          f"{'; '.join(budget.failures)}", flush=True)
    return 1 if budget.failures else 0


if __name__ == "__main__":
    sys.exit(main())
