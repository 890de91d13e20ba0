"""The Trainer: prepare (optimizer, schedule, resume), step, validate, checkpoint.

A plain PyTorch loop over peft (no Trainer from transformers): owning the loop is what
lets a resumed run reproduce an uninterrupted one bit for bit (data position, RNG and
optimizer state are all restored at an optimizer-step boundary).

Loss: cross-entropy on completion tokens only, averaged over every completion token of
one optimizer step (all its accumulated micro-batches), so gradient accumulation trains
like a bigger batch regardless of how the tokens fall into micro-batches.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness.errors import ConfigError
from harness.train.batches import Batcher, validation_loss
from harness.train.checkpoint import (checkpoint_dirs, load_checkpoint, python_rng_state, restore_weights,
                                      save_checkpoint, set_python_rng_state)
from harness.train.config import TrainConfig
from harness.train.encode import Encoded
from harness.train.progress import Interrupts, ProgressBar
from harness.train.schedule import epoch_batches, lr_lambda, steps_per_epoch


@dataclass
class State:
    """Mutable progress of one training, saved in every checkpoint's state.json."""

    step: int = 0
    epoch: int = 0
    group: int = 0  # next accumulation group within `epoch`
    curve: list[dict[str, Any]] = field(default_factory=list)
    best_val: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    tokens: int = 0
    labelled_tokens: int = 0
    train_s: float = 0.0
    step_s: list[float] = field(default_factory=list)  # seconds per optimizer step (not part of the curve,
    #                                                    which must be identical across identical runs)
    wall_s: float = 0.0  # wall time of earlier sessions (set when a checkpoint is written)
    resumed_from: list[int] = field(default_factory=list)
    stopped: str | None = None


class StopEarly(Exception):
    """`stop_after_steps` was reached; a checkpoint holds the state."""


class Trainer:
    """One training of a LoRA-wrapped model on encoded samples, writing checkpoints to `out`.

    Args:
        cfg: The training settings.
        model: The peft-wrapped model, in training mode.
        pad_id: Padding token id.
        encoded: Training samples.
        val_encoded: Validation samples (may be empty).
        out: The output folder (checkpoints go to out/checkpoints).
        fp: The training's fingerprint; a checkpoint must carry the same to be resumed.
        log: One-line messages.
        started: When the training command started (`time.time()`), for its wall time.
    """

    def __init__(self, cfg: TrainConfig, model: Any, pad_id: int, encoded: list[Encoded],
                 val_encoded: list[Encoded], out: Path, fp: dict[str, Any], log: Callable[[str], None],
                 started: float):
        self.cfg, self.model, self.out, self.fp, self.log = cfg, model, out, fp, log
        self.encoded, self.val_encoded = encoded, val_encoded
        self.started = started
        self.batcher = Batcher(encoded, pad_id, model, self.autocast)
        self.val_batcher = Batcher(val_encoded, pad_id, model, self.autocast) if val_encoded else None
        self.state = State()
        self.best_weights: dict | None = None
        self.wall_before = 0.0
        self.in_update = False
        self.last_val: float | None = None

    # ----------------------------------------------------------------- prepare

    def autocast(self) -> Any:
        """bf16 autocast around forward passes when training in bf16, else nothing."""
        import torch

        from harness.evaluate.devices import model_device

        kind = torch.device(model_device(self.model)).type
        return torch.autocast(kind, dtype=torch.bfloat16) if self.cfg.dtype == "bfloat16" else contextlib.nullcontext()

    def prepare(self, resume: bool) -> None:
        """Optimizer and LR schedule; with `resume`, everything restored from the latest checkpoint."""
        import torch

        cfg = self.cfg
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.n_trainable = sum(p.numel() for p in self.params)
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.per_epoch = steps_per_epoch(len(self.encoded), cfg.batch_size, cfg.grad_accum)
        full = self.per_epoch * cfg.epochs
        self.total_steps = full if cfg.max_steps is None else min(cfg.max_steps, full)
        self.warmup = cfg.warmup_steps if cfg.warmup_steps is not None else math.ceil(cfg.warmup_ratio * self.total_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer,
                                                           lr_lambda(cfg.scheduler, self.total_steps, self.warmup))
        ckpts = checkpoint_dirs(self.out) if resume else []
        if ckpts:
            self._restore(ckpts[-1])
        self.out.mkdir(parents=True, exist_ok=True)
        self.rng_at_step = torch.get_rng_state()
        self.py_rng_at_step = python_rng_state()
        self.wall_before = self.state.wall_s

    def _restore(self, ckpt: Path) -> None:
        import torch

        saved, trainer = load_checkpoint(ckpt)
        if saved.get("fingerprint") != self.fp:
            raise ConfigError(f"checkpoint {ckpt} belongs to a training with other data, settings or base",
                              "resume with the original settings, or pass --force to start over")
        restore_weights(self.model, ckpt)
        self.optimizer.load_state_dict(trainer["optimizer"])
        self.scheduler.load_state_dict(trainer["scheduler"])
        torch.set_rng_state(trainer["torch_rng"])
        set_python_rng_state(saved["python_rng"])
        self.best_weights = trainer.get("best_weights")
        self.state = State(**{k: v for k, v in saved["state"].items() if k in State.__dataclass_fields__})
        self.state.resumed_from.append(self.state.step)
        self.log(f"resuming from {ckpt.name} (step {self.state.step} of {self.total_steps})")

    # ----------------------------------------------------------------- the loop

    def run(self, progress: bool, stop_after_steps: int | None) -> bool:
        """Train to the end (or early stop); False when stopped by `stop_after_steps`.

        Raises:
            KeyboardInterrupt: after saving a checkpoint at the last completed step.
        """
        state = self.state
        try:
            with Interrupts(self.log) as interrupts, ProgressBar(progress, self.total_steps, state.step) as bar:
                while state.step < self.total_steps and state.stopped is None:
                    self._epoch(interrupts, bar, stop_after_steps)
        except StopEarly:
            return False
        except KeyboardInterrupt:
            if not self.in_update and state.step > 0:
                path = self.checkpoint()
                self.log(f"interrupted at step {state.step} of {self.total_steps}; checkpoint {path}; "
                         "run again with --resume to continue")
            raise
        return True

    def _epoch(self, interrupts: Interrupts, bar: ProgressBar, stop_after_steps: int | None) -> None:
        cfg, state = self.cfg, self.state
        batches = epoch_batches([len(e.input_ids) for e in self.encoded], cfg.batch_size, cfg.seed, state.epoch,
                                cfg.group_by_length)
        groups = [batches[i:i + cfg.grad_accum] for i in range(0, len(batches), cfg.grad_accum)]
        epoch = state.epoch
        while state.epoch == epoch and state.step < self.total_steps and state.stopped is None:
            step_loss = self.step(groups[state.group], len(groups), interrupts)
            if cfg.eval_every and state.step % cfg.eval_every == 0:
                self.last_val = self.validate()
                if cfg.patience is not None and state.bad_evals >= cfg.patience:
                    state.stopped = "early_stopping"
                    self.log(f"early stopping at step {state.step}: no validation improvement in "
                             f"{cfg.patience} evaluations (best {state.best_val:.4f} at step {state.best_step})")
            bar.update(state.step, step_loss, self.last_val)
            self._after_step(stop_after_steps)

    def step(self, group: list[list[int]], n_groups: int, interrupts: Interrupts) -> float:
        """One optimizer step over an accumulation group of micro-batches; returns its loss."""
        import torch

        cfg, state = self.cfg, self.state
        t0 = time.perf_counter()
        n_lab = sum(self.batcher.labelled(b) for b in group)
        self.optimizer.zero_grad(set_to_none=True)
        loss_total, tokens = 0.0, 0
        for b in group:
            interrupts.check()  # parameters are still those of the last step here
            loss, n_tok = self.batcher.loss_sum(b)
            (loss / n_lab).backward()
            loss_total += float(loss.detach())
            tokens += n_tok
        # From here to the end of the step's bookkeeping the state is between steps; an
        # interruption now keeps the last periodic checkpoint instead of saving one.
        self.in_update = True
        if cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm)
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        state.step += 1
        state.group += 1
        if state.group == n_groups:
            state.epoch, state.group = state.epoch + 1, 0
        state.step_s.append(round(time.perf_counter() - t0, 4))
        state.train_s += state.step_s[-1]
        state.tokens += tokens
        state.labelled_tokens += n_lab
        step_loss = loss_total / n_lab
        state.curve.append({"step": state.step, "epoch": state.epoch if state.group else state.epoch - 1,
                            "loss": round(step_loss, 6), "lr": lr, "tokens": tokens})
        return step_loss

    def _after_step(self, stop_after_steps: int | None) -> None:
        """Periodic checkpoint, or the checkpoint before stopping at `stop_after_steps`."""
        import torch

        state, total = self.state, self.total_steps
        # RNG as the next step will find it (validation may have drawn from it)
        self.rng_at_step, self.py_rng_at_step = torch.get_rng_state(), python_rng_state()
        if state.stopped is None and self.cfg.save_every and state.step % self.cfg.save_every == 0 \
                and state.step < total:
            self.checkpoint()
        if stop_after_steps is not None and state.step >= stop_after_steps and state.step < total \
                and state.stopped is None:
            path = self.checkpoint()
            self.log(f"stopped after step {state.step} of {total}; checkpoint {path}")
            raise StopEarly
        self.in_update = False

    # ----------------------------------------------------------------- validate, checkpoint, finish

    def validate(self) -> float | None:
        """Validation loss now, recorded on the curve; tracks the best step for early stopping."""
        cfg, state = self.cfg, self.state
        if self.val_batcher is None:
            return None
        val = round(validation_loss(self.val_batcher, len(self.val_encoded), cfg.batch_size), 6)
        state.curve[-1]["val_loss"] = val
        if state.best_val is None or val < state.best_val - cfg.min_delta:
            state.best_val, state.best_step, state.bad_evals = val, state.step, 0
            if cfg.patience is not None:
                self.best_weights = self._lora_state()
        else:
            state.bad_evals += 1
        return val

    def _lora_state(self) -> dict:
        from peft import get_peft_model_state_dict

        return {k: v.detach().clone() for k, v in get_peft_model_state_dict(self.model).items()}

    def checkpoint(self) -> Path:
        """Save weights, optimizer, schedule, RNG and progress as of the last completed step."""
        self.state.wall_s = self.wall_before + time.time() - self.started
        doc = {"fingerprint": self.fp, "total_steps": self.total_steps, "python_rng": self.py_rng_at_step,
               "state": self.state.__dict__}
        return save_checkpoint(self.out, self.state.step, self.model, self.optimizer, self.scheduler,
                               self.rng_at_step, doc, self.best_weights, self.cfg.keep_checkpoints)

    def finish(self) -> int:
        """Final validation, stop reason, best weights restored and the adapter saved; returns the saved step."""
        cfg, state = self.cfg, self.state
        if self.val_batcher is not None and (not state.curve or "val_loss" not in state.curve[-1]):
            self.last_val = self.validate()
        state.stopped = state.stopped or ("max_steps" if cfg.max_steps is not None and state.step >= cfg.max_steps
                                          and state.step < self.per_epoch * cfg.epochs else "completed")
        saved_step = state.step
        if cfg.patience is not None and self.best_weights is not None and state.best_step != state.step:
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(self.model, self.best_weights)
            saved_step = state.best_step
        self.model.save_pretrained(self.out)
        return saved_step

    def wall_s(self) -> float:
        """Wall time of this training over all its sessions."""
        return round(self.wall_before + time.time() - self.started, 3)
