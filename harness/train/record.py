"""training.json: what was trained, on what, how, and how it went."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from harness.train.config import TrainConfig
from harness.train.data import Dataset
from harness.train.schedule import epoch_seed
from harness.train.trainer import Trainer

SCHEMA_VERSION = 1


@dataclass
class Inputs:
    """The data side of a training, as read and encoded before the loop."""

    data: Dataset
    data_sha: str
    val_data: Dataset | None
    val_sha: str | None
    dropped: list[str]
    truncated: int
    val_truncated: int
    overlap: dict[str, Any]


def training_record(cfg: TrainConfig, trainer: Trainer, inputs: Inputs, base_info: Any, targets: list[str] | str,
                    saved_step: int, command: list[str] | None) -> dict[str, Any]:
    """The training.json document of a finished training."""
    import peft
    import torch
    import transformers

    state = trainer.state
    data, val_data = inputs.data, inputs.val_data
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "harness-train",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": command or [],
        "config": cfg.model_dump(mode="json"),
        "fingerprint": trainer.fp,
        "base": {"spec": base_info.spec, "sha256": base_info.sha256, "name_or_path": base_info.name_or_path},
        "data": {"path": str(data.path), "sha256": inputs.data_sha, "form": data.form, "fields": data.fields,
                 "records": len(data.samples), "train_samples": len(trainer.encoded), "dropped": inputs.dropped,
                 "truncated": inputs.truncated, "max_length": cfg.max_length},
        "val": {"path": str(val_data.path) if val_data else None, "sha256": inputs.val_sha,
                "fraction": cfg.val_fraction, "samples": len(trainer.val_encoded), "truncated": inputs.val_truncated},
        "lora": {"r": cfg.rank, "alpha": cfg.alpha, "dropout": cfg.dropout, "target_modules": targets,
                 "trainable_params": trainer.n_trainable},
        "seed": cfg.seed,
        "data_order": {"shuffle": "torch.randperm per epoch", "group_by_length": cfg.group_by_length,
                       "epoch_seeds": [epoch_seed(cfg.seed, e) for e in range(state.epoch + (state.group > 0))]},
        "dtype": cfg.dtype,
        "steps": state.step, "total_steps": trainer.total_steps, "steps_per_epoch": trainer.per_epoch,
        "warmup_steps": trainer.warmup,
        "stopped": state.stopped, "saved_step": saved_step,
        "best_val_loss": state.best_val, "best_step": state.best_step,
        "final_loss": state.curve[-1]["loss"] if state.curve else None,
        "loss_curve": state.curve,
        "tokens": {"trained": state.tokens, "labelled": state.labelled_tokens},
        "train_s": round(state.train_s, 3),
        "step_s": state.step_s,
        "tokens_per_s": round(state.tokens / state.train_s, 1) if state.train_s else None,
        "wall_s": trainer.wall_s(),
        "resumed_from": state.resumed_from,
        "overlap": inputs.overlap,
        "libraries": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__},
    }
