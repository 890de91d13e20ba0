"""`harness train`: LoRA supervised fine-tuning of a base model on a data file.

    harness train smollm2-135m --data train.jsonl --out runs/lora --epochs 2 --lr 1e-3 \\
        --eval-suite squad-qa --dtype bf16
    harness train smollm2-135m --config lora.yaml --data train.jsonl --out runs/lora --resume

Writes a PEFT adapter folder (DIR/adapter_model.safetensors + adapter_config.json, ready
for `harness compare BASE DIR`), DIR/training.json (settings, hashes, loss curve, speed)
and DIR/checkpoints/. Options override the `--config` file, which overrides defaults.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

_HP = "Hyperparameters"


def train(
    base: Optional[str] = typer.Argument(None, help="Base model: folder, .gguf file, asset name or hub id (or `base:` in --config)."),
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="Training file: .jsonl/.jsonl.gz/.json/.csv/.parquet."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Adapter folder to write."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML with any of the settings below."),
    val_data: Optional[Path] = typer.Option(None, "--val-data", help="Held-out file for validation loss."),
    val_fraction: Optional[float] = typer.Option(None, "--val-fraction", help="Or hold out this share of --data (seeded)."),
    field: Optional[List[str]] = typer.Option(None, "--field", "-f",
                                              help="ROLE=COLUMN (roles: id, prompt, completion, messages, text); repeatable."),
    fmt: Optional[str] = typer.Option(None, "--format", help="auto | chat (tokenizer's chat template) | plain."),
    rank: Optional[int] = typer.Option(None, "--rank", "-r", help="LoRA rank [8].", rich_help_panel=_HP),
    alpha: Optional[float] = typer.Option(None, "--alpha", help="LoRA alpha [16].", rich_help_panel=_HP),
    dropout: Optional[float] = typer.Option(None, "--dropout", help="LoRA dropout [0].", rich_help_panel=_HP),
    target_modules: Optional[str] = typer.Option(None, "--target-modules",
                                                 help="Comma list [all llama projections, else all-linear].",
                                                 rich_help_panel=_HP),
    lr: Optional[float] = typer.Option(None, "--lr", help="AdamW learning rate [2e-4].", rich_help_panel=_HP),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay", rich_help_panel=_HP),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="linear | cosine | constant.", rich_help_panel=_HP),
    warmup_ratio: Optional[float] = typer.Option(None, "--warmup-ratio", rich_help_panel=_HP),
    warmup_steps: Optional[int] = typer.Option(None, "--warmup-steps", rich_help_panel=_HP),
    max_grad_norm: Optional[float] = typer.Option(None, "--max-grad-norm", help="Clip [1.0]; 0 = off.", rich_help_panel=_HP),
    epochs: Optional[int] = typer.Option(None, "--epochs", "-e", rich_help_panel=_HP),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Cap on optimizer steps.", rich_help_panel=_HP),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", help="Sequences per forward pass [8].",
                                             rich_help_panel=_HP),
    grad_accum: Optional[int] = typer.Option(None, "--grad-accum", help="Forward passes per optimizer step [1].",
                                             rich_help_panel=_HP),
    max_length: Optional[int] = typer.Option(None, "--max-length", help="Tokens per sequence [1024].", rich_help_panel=_HP),
    group_by_length: Optional[bool] = typer.Option(None, "--group-by-length/--no-group-by-length",
                                                   help="Batch similar lengths together [on].", rich_help_panel=_HP),
    seed: Optional[int] = typer.Option(None, "--seed", rich_help_panel=_HP),
    eval_every: Optional[int] = typer.Option(None, "--eval-every", help="Validation loss every N steps [end only].",
                                             rich_help_panel=_HP),
    patience: Optional[int] = typer.Option(None, "--patience", help="Early stopping after N evaluations without improvement.",
                                           rich_help_panel=_HP),
    min_delta: Optional[float] = typer.Option(None, "--min-delta", rich_help_panel=_HP),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="float32 | bf16 (autocast).", rich_help_panel=_HP),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N | mps (default: auto).",
                                         rich_help_panel=_HP),
    save_every: Optional[int] = typer.Option(None, "--save-every", help="Checkpoint every N steps [50]; 0 = off."),
    keep_checkpoints: Optional[int] = typer.Option(None, "--keep-checkpoints", help="Latest checkpoints kept [2]."),
    eval_suite: Optional[List[str]] = typer.Option(None, "--eval-suite", "-s",
                                                   help="Suite the adapter will be judged on: its items must not be "
                                                        "in the training data; repeatable."),
    allow_overlap: bool = typer.Option(False, "--allow-overlap", help="Train even if the data contains eval items."),
    trust_code: Optional[List[Path]] = typer.Option(None, "--trust-code", help="Suite folder whose python hook may run."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint in OUT/checkpoints."),
    force: bool = typer.Option(False, "--force", help="Replace the adapter or checkpoints OUT holds."),
    stop_after: Optional[int] = typer.Option(None, "--stop-after", hidden=True,
                                             help="Stop with a checkpoint after N steps (as an interruption would)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train a LoRA adapter (loss on completions only) and write it with its training record."""
    from harness.train import load_train_config, train_adapter

    fields = None
    if field:
        from harness.errors import ConfigError

        fields = {}
        for spec in field:
            role, sep, col = spec.partition("=")
            if not sep or not role.strip() or not col.strip():
                raise ConfigError(f"--field {spec}: expected ROLE=COLUMN", "e.g. --field prompt=question")
            fields[role.strip()] = col.strip()
    cfg = load_train_config(
        config, base=base, data=data, out=out, val_data=val_data, val_fraction=val_fraction, fields=fields,
        format=fmt, rank=rank, alpha=alpha, dropout=dropout, target_modules=target_modules, lr=lr,
        weight_decay=weight_decay, scheduler=scheduler, warmup_ratio=warmup_ratio, warmup_steps=warmup_steps,
        max_grad_norm=max_grad_norm, epochs=epochs, max_steps=max_steps, batch_size=batch_size, grad_accum=grad_accum,
        max_length=max_length, group_by_length=group_by_length, seed=seed, eval_every=eval_every, patience=patience,
        min_delta=min_delta, dtype=dtype, device=device, save_every=save_every, keep_checkpoints=keep_checkpoints,
        eval_suites=list(eval_suite) if eval_suite else None, allow_overlap=allow_overlap or None,
        trust_code=list(trust_code) if trust_code else None)
    try:
        result = train_adapter(cfg, log=lambda m: typer.echo(m, err=True), progress=not quiet, resume=resume,
                               force=force, stop_after_steps=stop_after, command=["harness", *sys.argv[1:]])
    except KeyboardInterrupt:
        typer.echo("interrupted: run the same command with --resume to continue from the last checkpoint", err=True)
        sys.exit(130)  # not typer.Exit: the CLI would add the evaluation's own resume advice
    if not result.finished:
        typer.echo(f"stopped at step {result.record['state']['step']} of {result.record['total_steps']}: "
                   "run the same command with --resume to continue")
        return
    r = result.record
    val = f", val loss {r['best_val_loss']:.4f} (best, step {r['best_step']})" if r.get("best_val_loss") is not None else ""
    typer.echo(f"trained {r['steps']} steps ({r['stopped']}): final loss {r['final_loss']:.4f}{val}; "
               f"{r['tokens_per_s']} tokens/s, wall {r['wall_s']:.1f}s")
    typer.echo(f"adapter: {result.adapter_dir}  (record: {result.adapter_dir / 'training.json'})")


def register(app: typer.Typer) -> None:
    """Adds `train` to the harness CLI."""
    app.command("train")(train)
