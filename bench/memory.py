"""Peak memory of `harness compare` (base + 1 LoRA adapter) vs a base-only run, same items.

    .venv/bin/python bench/memory.py [--limit 8] [--suite squad-qa]

Each measurement runs in its own process and reports its own peak RSS. The peer is a
base-only `harness run`, and, for scale, two separate transformers model loads (what a
script that loads base and merged adapter side by side would hold).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys
from pathlib import Path
mode, out, suite, limit, adapter = sys.argv[1:6]
if mode == "two-copies":
    import torch
    from transformers import AutoModelForCausalLM
    from harness.assets import asset_path
    a = AutoModelForCausalLM.from_pretrained(asset_path("smollm2-135m"), dtype=torch.float32)
    b = AutoModelForCausalLM.from_pretrained(asset_path("smollm2-135m"), dtype=torch.float32)
    with torch.inference_mode():  # touch every weight: safetensors pages are mapped lazily
        for m in (a, b):
            m(input_ids=torch.tensor([[1, 2, 3]]))
else:
    from harness.evaluate.run import RunConfig, execute
    cfg = RunConfig(base="smollm2-135m", adapters=[adapter] if mode == "compare" else [], suites=[suite],
                    limit=int(limit), out=Path(out), use_cache=False, force=True)
    execute(cfg, warn=lambda m: None)
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_adapter(dest: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from harness.assets import asset_path

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(asset_path("smollm2-135m"))
    cfg = LoraConfig(r=16, lora_alpha=32, init_lora_weights=False,
                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    get_peft_model(model, cfg).save_pretrained(dest)


def measure(mode: str, out: Path, suite: str, limit: int, adapter: Path) -> float:
    proc = subprocess.run([sys.executable, "-c", CHILD, mode, str(out), suite, str(limit), str(adapter)],
                          capture_output=True, text=True, env={**__import__("os").environ, "HARNESS_PROGRESS": "0"})
    if proc.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["peak_rss_mb"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=8)
    ap.add_argument("--suite", default="squad-qa")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        adapter = Path(tmp) / "lora-r16"
        make_adapter(adapter)
        base = measure("base", Path(tmp) / "base", args.suite, args.limit, adapter)
        both = measure("compare", Path(tmp) / "cmp", args.suite, args.limit, adapter)
        two = measure("two-copies", Path(tmp) / "two", args.suite, args.limit, adapter)
    print(f"suite {args.suite}, {args.limit} items, SmolLM2-135M fp32, LoRA r=16 on all linear layers")
    print(f"peak RSS base-only harness run:        {base:8.0f} MB")
    print(f"peak RSS harness compare base+adapter: {both:8.0f} MB")
    print(f"peak RSS two plain model copies:       {two:8.0f} MB (one forward each)")
    print(f"ratio compare / base-only: {both / base:.3f}x  (target <= 1.15x)")


if __name__ == "__main__":
    main()
