"""`train_adapter`: LoRA supervised fine-tuning of a base model, resumable and reproducible.

The steps: cheap checks (config, data, overlap with eval suites, the output folder), the
model (`model.load_model`, then `model.add_lora`), encoding (`batches`), the loop
(`trainer.Trainer`: prepare / step / validate / checkpoint), training.json (`record`).

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

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from harness.errors import ConfigError
from harness.hashing import sha256_file
from harness.train.batches import encode_all, split_val
from harness.train.config import TrainConfig
from harness.train.data import Dataset, Sample, load_dataset
from harness.train.model import add_lora, load_model
from harness.train.outdir import RECORD_FILE, check_out, fingerprint
from harness.train.record import Inputs, training_record
from harness.train.trainer import Trainer

__all__ = ["RECORD_FILE", "TrainResult", "train_adapter"]


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
    log = log or _log_default
    cfg.require_inputs()
    out = Path(cfg.out)  # type: ignore[arg-type]
    started = time.time()
    inputs, train_samples, val_samples = _read_inputs(cfg, log)
    fp = fingerprint(cfg, inputs.data_sha, inputs.val_sha)
    done = check_out(out, fp, resume, force, log)

    model, tok, base_info = load_model(cfg)
    fp["base"] = base_info.sha256
    if done is not None:
        if (done.get("fingerprint") or {}).get("base") == base_info.sha256:
            log(f"{out} already holds this training (same base, data and settings): reusing it")
            return TrainResult(out, done, finished=True, reused=True)
        raise ConfigError(f"{out} already holds an adapter trained on another base model",
                          "choose another --out folder, or pass --force to replace it")
    encoded, inputs.dropped, inputs.truncated = encode_all(tok, train_samples, cfg)
    val_encoded, _, inputs.val_truncated = encode_all(tok, val_samples, cfg)
    if not encoded:
        raise ConfigError(f"{inputs.data.path}: no record has a completion token left to learn "
                          f"(max_length {cfg.max_length})", "raise --max-length or check the completions")
    if inputs.dropped:
        log(f"warning: {len(inputs.dropped)} records have no completion left after cutting to {cfg.max_length} "
            f"tokens and are skipped (first: {inputs.dropped[0]})")
    if inputs.truncated:
        log(f"{inputs.truncated} of {len(train_samples)} training records were cut to {cfg.max_length} tokens")

    model, targets = add_lora(model, cfg)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    trainer = Trainer(cfg, model, pad_id, encoded, val_encoded, out, fp, log, started)
    trainer.prepare(resume)
    if not trainer.run(progress, stop_after_steps):
        return TrainResult(out, {"state": dict(trainer.state.__dict__), "total_steps": trainer.total_steps},
                           finished=False)
    saved_step = trainer.finish()
    record = training_record(cfg, trainer, inputs, base_info, targets, saved_step, command)
    (out / RECORD_FILE).write_text(json.dumps(record, indent=1))
    return TrainResult(out, record, finished=True)


def _read_inputs(cfg: TrainConfig, log: Callable[[str], None]) -> tuple[Inputs, list[Sample], list[Sample]]:
    """Data and validation data read and checked (every record), hashed, split, checked for overlap."""
    data = load_dataset(cfg.data, cfg.fields)  # type: ignore[arg-type]
    val_data: Dataset | None = load_dataset(cfg.val_data, cfg.fields) if cfg.val_data else None
    data_sha = sha256_file(data.path)
    val_sha = sha256_file(val_data.path) if val_data else None
    train_samples, val_samples = data.samples, (val_data.samples if val_data else [])
    if cfg.val_fraction:
        train_samples, val_samples = split_val(data.samples, cfg.val_fraction, cfg.seed)
    overlap: dict[str, Any] = {"suites": {}, "allowed": cfg.allow_overlap}
    if cfg.eval_suites:
        from harness.train.overlap import check_overlap

        overlap = check_overlap(train_samples, [data.path], data.fields, cfg.eval_suites, allow=cfg.allow_overlap,
                                trusted_dirs=cfg.trust_code, log=log)
    return Inputs(data, data_sha, val_data, val_sha, [], 0, 0, overlap), train_samples, val_samples


def _log_default(msg: str) -> None:
    print(msg, file=sys.stderr)
