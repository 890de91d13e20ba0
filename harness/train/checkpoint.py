"""Checkpoints: everything needed to continue a training as if it had never stopped.

OUT/checkpoints/step-000050/
    adapter_model.safetensors, adapter_config.json   the LoRA weights (a loadable adapter)
    trainer_state.pt     optimizer + scheduler state, torch RNG state, best weights so far
    state.json           step, data position (epoch, accumulation group), loss curve,
                         early-stopping state, token counts, fingerprint

A checkpoint is written to a temporary folder and renamed into place, so a crash while
saving never leaves a half checkpoint that `--resume` would pick. `trainer_state.pt` is
loaded with `weights_only=True`: it holds tensors and plain containers only.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

from harness.errors import ConfigError

CHECKPOINTS = "checkpoints"
STATE_FILE = "state.json"
TRAINER_FILE = "trainer_state.pt"


def checkpoint_dirs(out: Path) -> list[Path]:
    """Complete checkpoints under OUT/checkpoints, oldest first."""
    root = Path(out) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.glob("step-*") if (p / STATE_FILE).is_file() and (p / TRAINER_FILE).is_file()]
    return sorted(found, key=lambda p: p.name)


def python_rng_state() -> list:
    """random's state as JSON-able lists."""
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def set_python_rng_state(state: list) -> None:
    random.setstate((state[0], tuple(state[1]), state[2]))


def save_checkpoint(out: Path, step: int, model, optimizer, scheduler, torch_rng, state: dict[str, Any],
                    best_weights: dict | None, keep: int) -> Path:
    """Write checkpoint `step` atomically and prune all but the latest `keep`."""
    import torch

    root = Path(out) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:06d}"
    tmp = root / f".tmp-step-{step:06d}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp)
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "torch_rng": torch_rng, "best_weights": best_weights}, tmp / TRAINER_FILE)
    (tmp / STATE_FILE).write_text(json.dumps(state, indent=1))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in checkpoint_dirs(out)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state.json, trainer_state.pt contents) of one checkpoint."""
    import torch

    try:
        state = json.loads((path / STATE_FILE).read_text())
        trainer = torch.load(path / TRAINER_FILE, weights_only=True)
    except Exception as exc:
        raise ConfigError(f"checkpoint {path} is unreadable: {type(exc).__name__}: {exc}",
                          "delete that checkpoint folder to resume from an older one, or pass --force to start over") from None
    return state, trainer


def restore_weights(model, path: Path) -> None:
    """Load a checkpoint's LoRA weights into the peft model."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(str(path / "adapter_model.safetensors")))
