"""`train_adapter`: LoRA supervised fine-tuning of a base model, resumable and reproducible.

A plain PyTorch loop over peft (no Trainer): the loop is short, and owning it is what
lets a resumed run reproduce an uninterrupted one bit for bit (data position, RNG and
optimizer state are all restored at an optimizer-step boundary) and lets the loss skip
the vocabulary projection of prompt tokens, which carry no loss.

Loss: cross-entropy on completion tokens only, averaged over every completion token of
one optimizer step (all its accumulated micro-batches), so gradient accumulation trains
like a bigger batch regardless of how the tokens fall into micro-batches. Logits are
computed only at positions that predict a labelled token (transformers' boolean
`logits_to_keep`); with long prompts and short answers that removes most of the
lm_head work, forward and backward.

bf16: `torch.autocast("cpu", torch.bfloat16)` around forward passes; the frozen base
linear weights are stored in bf16 (autocast would re-cast them on every call) and their
outputs are upcast so the LoRA term is added in float32 (see `_prepare_bf16`); LoRA
weights, AdamW state, norms, embeddings and the residual stream stay float32.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
import shutil
import signal
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness.errors import ConfigError
from harness.hashing import sha256_file, sha256_json
from harness.train.checkpoint import (CHECKPOINTS, checkpoint_dirs, load_checkpoint, python_rng_state,
                                      restore_weights, save_checkpoint, set_python_rng_state)
from harness.train.config import TrainConfig
from harness.train.data import Dataset, Sample, load_dataset
from harness.train.encode import IGNORE, Encoded, encode_sample
from harness.train.schedule import epoch_batches, epoch_seed, lr_lambda, steps_per_epoch

RECORD_FILE = "training.json"
SCHEMA_VERSION = 1
LLAMA_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json", "adapter_model.bin", "README.md", RECORD_FILE)


@dataclass
class TrainResult:
    """What `train_adapter` produced.

    Attributes:
        adapter_dir: The PEFT adapter folder (= cfg.out).
        record: The training.json content (for an unfinished run: the state so far).
        finished: False when stopped early by `stop_after_steps` or an interruption
            (a checkpoint holds the state; `resume=True` continues).
        reused: True when OUT already held this exact finished training.
    """

    adapter_dir: Path
    record: dict[str, Any]
    finished: bool = True
    reused: bool = False


@dataclass
class _State:
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


# --------------------------------------------------------------------------- preparation


def _log_default(msg: str) -> None:
    print(msg, file=sys.stderr)


def fingerprint(cfg: TrainConfig, data_sha: str, val_sha: str | None) -> dict[str, Any]:
    """What must match for two trainings to be the same one (base hash added after loading)."""
    return {"config": sha256_json(cfg.result_fields()), "data": data_sha, "val": val_sha}


def _read_record(out: Path) -> dict[str, Any] | None:
    path = out / RECORD_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        return {}


def _check_out(out: Path, fp: dict[str, Any], resume: bool, force: bool, log) -> dict[str, Any] | None:
    """Decide what OUT may be used for; returns the finished record when it can be reused."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file", "pass a folder path")
    record = _read_record(out)
    if force:
        for name in ADAPTER_FILES:
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
        return None
    if record is not None:
        old = {k: (record.get("fingerprint") or {}).get(k) for k in fp}
        if old == fp:
            return record
        raise ConfigError(f"{out} already holds a finished adapter trained with other data or settings",
                          "choose another --out folder, or pass --force to replace it")
    if (out / "adapter_config.json").is_file():
        raise ConfigError(f"{out} holds an adapter that `harness train` did not make (no {RECORD_FILE})",
                          "choose another --out folder, or pass --force to replace it")
    ckpts = checkpoint_dirs(out)
    if ckpts and not resume:
        raise ConfigError(f"{out} holds checkpoints of an unfinished training (last: {ckpts[-1].name})",
                          "pass --resume to continue it, or --force to start over")
    if resume and not ckpts:
        log(f"no checkpoint in {out / CHECKPOINTS}: starting from the beginning")
    return None


def _encode_all(tokenizer, samples: list[Sample], cfg: TrainConfig) -> tuple[list[Encoded], list[str], int]:
    """(encoded samples with at least one labelled token, ids of dropped samples, truncated count)."""
    kept, dropped, truncated = [], [], 0
    for s in samples:
        enc = encode_sample(tokenizer, s, cfg.format, cfg.max_length, cfg.add_eos)
        truncated += enc.truncated
        if enc.n_labelled == 0:  # e.g. the completion was cut off entirely
            dropped.append(s.id)
        else:
            kept.append(enc)
    return kept, dropped, truncated


def _split_val(samples: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """(train, val): a seeded share of the samples held out for validation loss."""
    import torch

    n_val = max(1, round(len(samples) * fraction))
    if n_val >= len(samples):
        raise ConfigError(f"val_fraction {fraction} leaves no training data ({len(samples)} records)",
                          "lower val_fraction or add data")
    order = torch.randperm(len(samples), generator=torch.Generator().manual_seed(seed + 7919)).tolist()
    val = set(order[:n_val])
    return [s for i, s in enumerate(samples) if i not in val], [s for i, s in enumerate(samples) if i in val]


def resolve_targets(model, wanted: list[str] | None) -> list[str] | str:
    """LoRA target modules: as configured, else llama-style projections, else peft's "all-linear"."""
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    if wanted:
        missing = [w for w in wanted if w not in names and w != "all-linear"]
        if missing:
            import difflib

            linear = sorted(n for n in names if n.endswith("proj") or "linear" in n.lower() or n.startswith("fc"))
            close = difflib.get_close_matches(missing[0], sorted(names), n=1, cutoff=0.6)
            guess = f"did you mean '{close[0]}'? " if close else ""
            raise ConfigError(f"target module '{missing[0]}' is not in the base model",
                              f"{guess}projection modules: {', '.join(linear) or '(none found)'}")
        return wanted if wanted != ["all-linear"] else "all-linear"
    found = [p for p in LLAMA_PROJECTIONS if p in names]
    return found if len(found) == len(LLAMA_PROJECTIONS) else "all-linear"


def _upcast(module, inputs, output):
    return output.float()  # a no-op on float32 outputs (validation outside autocast)


def _prepare_bf16(model) -> int:
    """Set up the LoRA-wrapped linears for bf16 autocast; returns how many.

    Their frozen base weights are stored in bf16: under autocast a float32 weight would
    be cast to bf16 on every forward and backward call, and the cast gives the same bf16
    values, so storing them that way changes no result and saves the traffic (and half
    their memory).

    Their base outputs are handed back as float32, so that peft adds the LoRA term to the
    base output in float32. Early in training the LoRA term is about 1e-3 of the base
    output, below bf16's resolution (2^-8 relative): summed in bf16 it is rounded away
    and the forward pass does not see the adapter until it has grown. Measured on
    SmolLM2 (batch 8, lr 2e-4): after 4 steps the bf16 loss curve lagged fp32 by up to
    0.26 nats with bf16 sums, 0.19 with float32 sums on o_proj/down_proj only (the
    residual-stream writers), 0.03 with float32 sums everywhere. The price is memory:
    those outputs and what is saved from them for backward are float32 (peak RSS for
    8 x 512 tokens: fp32 10.1 GB, this 8.1 GB, plain autocast 6.4 GB).
    """
    import torch

    n = 0
    for module in model.modules():
        base = getattr(module, "base_layer", None)
        if isinstance(base, torch.nn.Linear) and not base.weight.requires_grad:
            base.weight.data = base.weight.data.to(torch.bfloat16)
            if base.bias is not None:
                base.bias.data = base.bias.data.to(torch.bfloat16)
            base.register_forward_hook(_upcast)
            n += 1
    return n


# --------------------------------------------------------------------------- batches and loss


class _Batcher:
    """Pads micro-batches (right padding) and computes the completion-only loss."""

    def __init__(self, encoded: list[Encoded], pad_id: int, model, autocast):
        self.encoded = encoded
        self.pad_id = pad_id
        self.model = model
        self.autocast = autocast
        base_forward = model.get_base_model().forward
        self.keep_logits = "logits_to_keep" in inspect.signature(base_forward).parameters

    def tensors(self, idx: list[int]):
        import torch

        rows = [self.encoded[i] for i in idx]
        width = max(len(r.input_ids) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for j, r in enumerate(rows):
            n = len(r.input_ids)
            ids[j, :n] = torch.tensor(r.input_ids)
            labels[j, :n] = torch.tensor(r.labels)
            mask[j, :n] = 1
        return ids, labels, mask

    def labelled(self, idx: list[int]) -> int:
        return sum(self.encoded[i].n_labelled for i in idx)

    def loss_sum(self, idx: list[int]):
        """(sum of token cross-entropies over the completion tokens, input tokens)."""
        import torch
        import torch.nn.functional as F

        ids, labels, mask = self.tensors(idx)
        # position t predicts token t+1: keep logits where the next token is labelled
        keep = torch.zeros_like(labels, dtype=torch.bool)
        keep[:, :-1] = labels[:, 1:] != IGNORE
        targets = labels[:, 1:][keep[:, :-1]]
        with self.autocast():
            if self.keep_logits:
                logits = self.model(input_ids=ids, attention_mask=mask, logits_to_keep=keep, use_cache=False).logits
                if logits.dim() != 2 or logits.shape[0] != targets.shape[0]:
                    self.keep_logits = False  # this architecture slices differently: take all logits
            if not self.keep_logits:
                logits = self.model(input_ids=ids, attention_mask=mask, use_cache=False).logits[keep]
        loss = F.cross_entropy(logits.float(), targets, reduction="sum")
        return loss, int(mask.sum())


def _validate(batcher: _Batcher, n: int, batch_size: int) -> float:
    """Token-weighted mean completion loss over the validation samples (no dropout)."""
    import torch

    model = batcher.model
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, n, batch_size):
            idx = list(range(i, min(n, i + batch_size)))
            loss, _ = batcher.loss_sum(idx)
            total += float(loss)
            count += batcher.labelled(idx)
    model.train()
    return total / max(1, count)


# --------------------------------------------------------------------------- progress


class _Bar:
    """Rich progress bar with the current loss; HARNESS_PROGRESS=0 or progress=False hides it."""

    def __init__(self, enabled: bool, total: int, done: int):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
            TimeRemainingColumn

        self.p = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(),
                          TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[val]}"),
                          TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
                          disable=not enabled or os.environ.get("HARNESS_PROGRESS") == "0")
        self.task = self.p.add_task("train", total=total, completed=done, loss="-", val="")

    def __enter__(self):
        self.p.__enter__()
        return self

    def __exit__(self, *exc):
        return self.p.__exit__(*exc)

    def update(self, step: int, loss: float, val: float | None) -> None:
        fields = {"loss": f"{loss:.4f}"}
        if val is not None:
            fields["val"] = f"val {val:.4f}"
        self.p.update(self.task, completed=step, **fields)


class _Interrupts:
    """The first Ctrl-C sets a flag that the loop checks between micro-batches, where the
    state is exactly that of the last optimizer step and a checkpoint can be written; a
    second Ctrl-C interrupts at once. Outside the main thread signals cannot be caught and
    Ctrl-C raises wherever it lands (the loop still checkpoints when that is safe)."""

    def __init__(self, log: Callable[[str], None]):
        self.log = log
        self.hit = False
        self.previous = None

    def __enter__(self) -> "_Interrupts":
        try:
            self.previous = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread
            self.previous = None
        return self

    def _handler(self, signum, frame) -> None:
        if self.hit:
            raise KeyboardInterrupt
        self.hit = True
        self.log("interrupt: stopping after this batch with a checkpoint (Ctrl-C again to stop now)")

    def check(self) -> None:
        if self.hit:
            raise KeyboardInterrupt

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


# --------------------------------------------------------------------------- the run


def train_adapter(cfg: TrainConfig, *, log: Callable[[str], None] | None = None, progress: bool = True,
                  resume: bool = False, force: bool = False, stop_after_steps: int | None = None,
                  command: list[str] | None = None) -> TrainResult:
    """Train a LoRA adapter on cfg.data and write it, with training.json, to cfg.out.

    Cheap checks run before the base model loads: config, data (every record), overlap
    with the eval suites, the state of the output folder.

    Args:
        cfg: Hyperparameters and inputs (base, data and out must be set).
        log: Receives one-line messages (default: stderr).
        progress: Show a progress bar with the loss (stderr).
        resume: Continue from the latest checkpoint in OUT/checkpoints.
        force: Replace whatever adapter or checkpoints OUT holds.
        stop_after_steps: Stop (with a checkpoint) once this many optimizer steps are
            done, as an interruption would; the schedule is unchanged. For tests and
            for splitting a training over several sessions.
        command: The command line, recorded in training.json.

    Returns:
        TrainResult; `.record` is the training.json content.

    Raises:
        HarnessError: bad config, unreadable or malformed data, overlap with eval items,
            an output folder holding something else, a base model that cannot load.
        KeyboardInterrupt: after saving a checkpoint at the last completed step.
    """
    import random

    import torch

    log = log or _log_default
    cfg.require_inputs()
    out = Path(cfg.out)  # type: ignore[arg-type]
    started = time.time()

    # ---- cheap checks, before minutes of model loading
    data = load_dataset(cfg.data, cfg.fields)  # type: ignore[arg-type]
    val_data: Dataset | None = load_dataset(cfg.val_data, cfg.fields) if cfg.val_data else None
    data_sha = sha256_file(data.path)
    val_sha = sha256_file(val_data.path) if val_data else None
    train_samples, val_samples = data.samples, (val_data.samples if val_data else [])
    if cfg.val_fraction:
        train_samples, val_samples = _split_val(data.samples, cfg.val_fraction, cfg.seed)
    overlap = {"suites": {}, "allowed": cfg.allow_overlap}
    if cfg.eval_suites:
        from harness.train.overlap import check_overlap

        overlap = check_overlap(train_samples, [data.path], data.fields, cfg.eval_suites, allow=cfg.allow_overlap,
                                trusted_dirs=cfg.trust_code, log=log)
    fp = fingerprint(cfg, data_sha, val_sha)
    done = _check_out(out, fp, resume, force, log)

    # ---- the model
    from harness.evaluate.models import load_base

    model, tok, base_info = load_base(cfg.base)  # type: ignore[arg-type]
    fp["base"] = base_info.sha256
    if done is not None:
        if (done.get("fingerprint") or {}).get("base") == base_info.sha256:
            log(f"{out} already holds this training (same base, data and settings): reusing it")
            return TrainResult(out, done, finished=True, reused=True)
        raise ConfigError(f"{out} already holds an adapter trained on another base model",
                          "choose another --out folder, or pass --force to replace it")
    encoded, dropped, truncated = _encode_all(tok, train_samples, cfg)
    val_encoded, _, val_truncated = _encode_all(tok, val_samples, cfg)
    if not encoded:
        raise ConfigError(f"{data.path}: no record has a completion token left to learn "
                          f"(max_length {cfg.max_length})", "raise --max-length or check the completions")
    if dropped:
        log(f"warning: {len(dropped)} records have no completion left after cutting to {cfg.max_length} tokens "
            f"and are skipped (first: {dropped[0]})")
    if truncated:
        log(f"{truncated} of {len(train_samples)} training records were cut to {cfg.max_length} tokens")

    from peft import LoraConfig, get_peft_model

    targets = resolve_targets(model, cfg.target_modules)
    torch.manual_seed(cfg.seed)  # LoRA A init draws from the global generator
    random.seed(cfg.seed)
    lora = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=targets,
                      bias="none", task_type="CAUSAL_LM")
    with warnings.catch_warnings():  # peft reads an attribute transformers 5 deprecates; not ours to fix
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        model = get_peft_model(model, lora)
    model.train()
    bf16 = cfg.dtype == "bfloat16"
    if bf16:
        _prepare_bf16(model)

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    params = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in params)
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    per_epoch = steps_per_epoch(len(encoded), cfg.batch_size, cfg.grad_accum)
    total_steps = per_epoch * cfg.epochs if cfg.max_steps is None else min(cfg.max_steps, per_epoch * cfg.epochs)
    warmup = cfg.warmup_steps if cfg.warmup_steps is not None else math.ceil(cfg.warmup_ratio * total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg.scheduler, total_steps, warmup))
    batcher = _Batcher(encoded, tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id, model, autocast)
    val_batcher = _Batcher(val_encoded, batcher.pad_id, model, autocast) if val_encoded else None

    state = _State()
    best_weights: dict | None = None
    ckpts = checkpoint_dirs(out) if resume else []
    if ckpts:
        saved, trainer = load_checkpoint(ckpts[-1])
        if saved.get("fingerprint") != fp:
            raise ConfigError(f"checkpoint {ckpts[-1]} belongs to a training with other data, settings or base",
                              "resume with the original settings, or pass --force to start over")
        restore_weights(model, ckpts[-1])
        optimizer.load_state_dict(trainer["optimizer"])
        scheduler.load_state_dict(trainer["scheduler"])
        torch.set_rng_state(trainer["torch_rng"])
        set_python_rng_state(saved["python_rng"])
        best_weights = trainer.get("best_weights")
        state = _State(**{k: v for k, v in saved["state"].items() if k in _State.__dataclass_fields__})
        state.resumed_from.append(state.step)
        log(f"resuming from {ckpts[-1].name} (step {state.step} of {total_steps})")
    out.mkdir(parents=True, exist_ok=True)

    def lora_state() -> dict:
        from peft import get_peft_model_state_dict

        return {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}

    rng_at_step = torch.get_rng_state()
    py_rng_at_step = python_rng_state()

    wall_before = state.wall_s

    def checkpoint() -> Path:
        state.wall_s = wall_before + time.time() - started
        doc = {"fingerprint": fp, "total_steps": total_steps, "python_rng": py_rng_at_step,
               "state": state.__dict__}
        return save_checkpoint(out, state.step, model, optimizer, scheduler, rng_at_step, doc, best_weights,
                               cfg.keep_checkpoints)

    def validate() -> float | None:
        nonlocal best_weights
        if val_batcher is None:
            return None
        val = round(_validate(val_batcher, len(val_encoded), cfg.batch_size), 6)
        state.curve[-1]["val_loss"] = val
        if state.best_val is None or val < state.best_val - cfg.min_delta:
            state.best_val, state.best_step, state.bad_evals = val, state.step, 0
            if cfg.patience is not None:
                best_weights = lora_state()
        else:
            state.bad_evals += 1
        return val

    in_update = False
    last_val: float | None = None
    try:
        with _Interrupts(log) as interrupts, _Bar(progress, total_steps, state.step) as bar:
            while state.step < total_steps and state.stopped is None:
                batches = epoch_batches([len(e.input_ids) for e in encoded], cfg.batch_size, cfg.seed, state.epoch,
                                        cfg.group_by_length)
                groups = [batches[i:i + cfg.grad_accum] for i in range(0, len(batches), cfg.grad_accum)]
                epoch = state.epoch
                while state.epoch == epoch and state.step < total_steps and state.stopped is None:
                    group = groups[state.group]
                    t0 = time.perf_counter()
                    n_lab = sum(batcher.labelled(b) for b in group)
                    optimizer.zero_grad(set_to_none=True)
                    loss_total, tokens = 0.0, 0
                    for b in group:
                        interrupts.check()  # parameters are still those of the last step here
                        loss, n_tok = batcher.loss_sum(b)
                        (loss / n_lab).backward()
                        loss_total += float(loss.detach())
                        tokens += n_tok
                    # From here to the end of the iteration the state is between steps; an
                    # interruption now keeps the last periodic checkpoint instead of saving one.
                    in_update = True
                    if cfg.max_grad_norm:
                        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                    lr = scheduler.get_last_lr()[0]
                    optimizer.step()
                    scheduler.step()
                    state.step += 1
                    state.group += 1
                    if state.group == len(groups):
                        state.epoch, state.group = state.epoch + 1, 0
                    state.step_s.append(round(time.perf_counter() - t0, 4))
                    state.train_s += state.step_s[-1]
                    state.tokens += tokens
                    state.labelled_tokens += n_lab
                    step_loss = loss_total / n_lab
                    state.curve.append({"step": state.step, "epoch": state.epoch if state.group else state.epoch - 1,
                                        "loss": round(step_loss, 6), "lr": lr, "tokens": tokens})
                    if cfg.eval_every and state.step % cfg.eval_every == 0:
                        last_val = validate()
                        if cfg.patience is not None and state.bad_evals >= cfg.patience:
                            state.stopped = "early_stopping"
                            log(f"early stopping at step {state.step}: no validation improvement in "
                                f"{cfg.patience} evaluations (best {state.best_val:.4f} at step {state.best_step})")
                    bar.update(state.step, step_loss, last_val)
                    # RNG as the next step will find it (validation above may have drawn from it)
                    rng_at_step, py_rng_at_step = torch.get_rng_state(), python_rng_state()
                    if state.stopped is None and cfg.save_every and state.step % cfg.save_every == 0 \
                            and state.step < total_steps:
                        checkpoint()
                    if stop_after_steps is not None and state.step >= stop_after_steps and state.step < total_steps \
                            and state.stopped is None:
                        path = checkpoint()
                        log(f"stopped after step {state.step} of {total_steps}; checkpoint {path}")
                        return TrainResult(out, {"state": dict(state.__dict__), "total_steps": total_steps},
                                           finished=False)
                    in_update = False
    except KeyboardInterrupt:
        if not in_update and state.step > 0:
            path = checkpoint()
            log(f"interrupted at step {state.step} of {total_steps}; checkpoint {path}; "
                "run again with --resume to continue")
        raise

    if val_batcher is not None and (not state.curve or "val_loss" not in state.curve[-1]):
        last_val = validate()
    state.stopped = state.stopped or ("max_steps" if cfg.max_steps is not None and state.step >= cfg.max_steps
                                      and state.step < per_epoch * cfg.epochs else "completed")
    saved_step = state.step
    if cfg.patience is not None and best_weights is not None and state.best_step != state.step:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, best_weights)
        saved_step = state.best_step
    model.save_pretrained(out)

    import peft
    import transformers

    record = {
        "schema_version": SCHEMA_VERSION,
        "kind": "harness-train",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": command or [],
        "config": cfg.model_dump(mode="json"),
        "fingerprint": fp,
        "base": {"spec": base_info.spec, "sha256": base_info.sha256, "name_or_path": base_info.name_or_path},
        "data": {"path": str(data.path), "sha256": data_sha, "form": data.form, "fields": data.fields,
                 "records": len(data.samples), "train_samples": len(encoded), "dropped": dropped,
                 "truncated": truncated, "max_length": cfg.max_length},
        "val": {"path": str(val_data.path) if val_data else None, "sha256": val_sha, "fraction": cfg.val_fraction,
                "samples": len(val_encoded), "truncated": val_truncated},
        "lora": {"r": cfg.rank, "alpha": cfg.alpha, "dropout": cfg.dropout, "target_modules": targets,
                 "trainable_params": n_trainable},
        "seed": cfg.seed,
        "data_order": {"shuffle": "torch.randperm per epoch", "group_by_length": cfg.group_by_length,
                       "epoch_seeds": [epoch_seed(cfg.seed, e) for e in range(state.epoch + (state.group > 0))]},
        "dtype": cfg.dtype,
        "steps": state.step, "total_steps": total_steps, "steps_per_epoch": per_epoch, "warmup_steps": warmup,
        "stopped": state.stopped, "saved_step": saved_step,
        "best_val_loss": state.best_val, "best_step": state.best_step,
        "final_loss": state.curve[-1]["loss"] if state.curve else None,
        "loss_curve": state.curve,
        "tokens": {"trained": state.tokens, "labelled": state.labelled_tokens},
        "train_s": round(state.train_s, 3),
        "step_s": state.step_s,
        "tokens_per_s": round(state.tokens / state.train_s, 1) if state.train_s else None,
        "wall_s": round(wall_before + time.time() - started, 3),
        "resumed_from": state.resumed_from,
        "overlap": overlap,
        "libraries": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__},
    }
    (out / RECORD_FILE).write_text(json.dumps(record, indent=1))
    return TrainResult(out, record, finished=True)
