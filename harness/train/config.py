"""Training configuration: every hyperparameter of `harness train`, validated, YAML-loadable.

A config file holds any subset of the fields below (unknown keys are errors, with a
did-you-mean); values given on the command line or as keyword overrides win::

    # lora-short.yaml
    rank: 8
    alpha: 16
    lr: 1.0e-3
    epochs: 2
    batch_size: 8
    dtype: bf16

    cfg = load_train_config("lora-short.yaml", base="smollm2-135m", data="train.jsonl", out="runs/a")

The *fingerprint* of a config is what makes two trainings the same training: every
field that can change the adapter, but not where it is written, how often it is
checkpointed, or which eval suites it is checked against. Paths of the base model and
data are replaced by their content hashes when the fingerprint is taken (see
`result_fields`), so moving a file does not make a finished adapter look stale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.errors import ConfigError
from harness.spec_errors import spec_error
from harness.suggest import close_match

DTYPE_ALIASES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16"}
FIELD_ROLES = ("id", "prompt", "completion", "messages", "text")

# Fields that only say where/how the run is written or checked; they never change the
# trained weights, so they stay out of the fingerprint.
NON_RESULT_FIELDS = ("base", "data", "val_data", "out", "save_every", "keep_checkpoints", "eval_suites",
                     "allow_overlap", "trust_code")


class TrainConfig(BaseModel):
    """Hyperparameters and inputs of one LoRA SFT run.

    Attributes:
        base: Base model: folder, .gguf, asset name (`smollm2-135m`) or hub id.
        data: Training file (.jsonl, .jsonl.gz, .json, .csv, .parquet).
        out: Output folder for the adapter, training.json and checkpoints/.
        val_data: Held-out file for validation loss (same layout as `data`).
        val_fraction: Or hold out this share of `data` (seeded) when `val_data` is unset.
        fields: Role -> column mapping (roles: id, prompt, completion, messages, text);
            unmapped roles are detected from the first record's column names.
        format: `chat` renders through the tokenizer's chat template, `plain` joins prompt
            and completion text; `auto` = chat for `messages` records, plain otherwise.
        add_eos: Append the EOS token to plain completions so the model learns to stop.
        rank, alpha, dropout: LoRA r, lora_alpha, lora_dropout. Dropout defaults to 0 as in
            peft: on CPU it costs about a third of the step time (a fresh mask over the input
            of every adapted projection), and short SFT runs rarely need it.
        target_modules: Module names to adapt; None = every linear projection of a
            llama-style block (q,k,v,o,gate,up,down), else peft's "all-linear".
        lr, weight_decay, max_grad_norm: AdamW learning rate, decoupled weight decay,
            gradient clipping (0 disables).
        scheduler, warmup_ratio, warmup_steps: LR schedule after a linear warmup
            (`warmup_steps` wins over `warmup_ratio`).
        epochs, max_steps: Passes over the data; `max_steps` caps optimizer steps (and
            the schedule is laid out over the capped count).
        batch_size, grad_accum: Sequences per forward pass; forward passes per optimizer
            step. The loss is averaged over every completion token of the whole step, so
            batch 8 x accum 2 trains like batch 16.
        max_length: Tokens per sequence; longer ones lose prompt tokens on the left (as evaluation
            does), then tokens at the end, and are counted.
        group_by_length: Batch sequences of similar length inside seeded windows (less
            padding, same epoch content); the order stays a function of the seed.
        seed: Seeds LoRA init, data order (one seeded shuffle per epoch), dropout, the
            validation split.
        eval_every: Validation loss every N optimizer steps (0 = at the end only).
        patience: Early stopping: stop after this many validations without improvement
            by more than `min_delta`; the adapter saved is then the best one.
        dtype: float32, or bfloat16 autocast (LoRA weights and optimizer stay float32).
        save_every: Checkpoint every N optimizer steps (0 = only on interruption).
        keep_checkpoints: How many of the latest checkpoints to keep.
        eval_suites: Suites whose items must not appear in the training data.
        allow_overlap: Train even when they do.
        trust_code: Folders whose suite python hooks may run (for `eval_suites`).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    base: str | None = None
    data: Path | None = None
    out: Path | None = None
    val_data: Path | None = None
    val_fraction: float = Field(0.0, ge=0.0, lt=0.9)
    fields: dict[str, str] = Field(default_factory=dict)
    format: Literal["auto", "chat", "plain"] = "auto"
    add_eos: bool = True

    rank: int = Field(8, gt=0)
    alpha: float = Field(16.0, gt=0)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: list[str] | None = None

    lr: float = Field(2e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, ge=0)
    scheduler: Literal["linear", "cosine", "constant"] = "linear"
    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0)
    warmup_steps: int | None = Field(None, ge=0)

    epochs: int = Field(1, gt=0)
    max_steps: int | None = Field(None, gt=0)
    batch_size: int = Field(8, gt=0)
    grad_accum: int = Field(1, gt=0)
    max_length: int = Field(1024, ge=8)
    group_by_length: bool = True
    seed: int = 0

    eval_every: int = Field(0, ge=0)
    patience: int | None = Field(None, gt=0)
    min_delta: float = Field(0.0, ge=0)
    dtype: str = "float32"
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps, as for evaluation

    save_every: int = Field(50, ge=0)
    keep_checkpoints: int = Field(2, gt=0)
    eval_suites: list[str] = Field(default_factory=list)
    allow_overlap: bool = False
    trust_code: list[Path] = Field(default_factory=list)

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        from harness.evaluate.devices import device_field

        return device_field(value)

    @field_validator("dtype")
    @classmethod
    def _dtype(cls, value: str) -> str:
        key = str(value).lower()
        if key not in DTYPE_ALIASES:
            raise ValueError(f"unknown dtype '{value}'; use float32 or bf16")
        return DTYPE_ALIASES[key]

    @field_validator("fields")
    @classmethod
    def _roles(cls, value: dict[str, str]) -> dict[str, str]:
        for role in value:
            if role not in FIELD_ROLES:
                close = close_match(role, FIELD_ROLES)
                guess = f" (did you mean '{close}'?)" if close else ""
                raise ValueError(f"unknown field role '{role}'{guess}; roles: {', '.join(FIELD_ROLES)}")
        return value

    @field_validator("target_modules", mode="before")
    @classmethod
    def _modules(cls, value: Any) -> Any:
        if isinstance(value, str):  # "q_proj,v_proj" from the command line or YAML
            value = [v.strip() for v in value.split(",") if v.strip()]
        return value or None

    @model_validator(mode="after")
    def _consistent(self) -> "TrainConfig":
        if self.patience is not None and self.val_data is None and self.val_fraction == 0.0:
            raise ValueError("early stopping (patience) needs validation data: set val_data or val_fraction")
        if self.patience is not None and not self.eval_every:
            raise ValueError("early stopping (patience) needs eval_every > 0: validation loss every N steps")
        if self.val_data is not None and self.val_fraction:
            raise ValueError("give val_data or val_fraction, not both")
        return self

    def result_fields(self) -> dict[str, Any]:
        """The fields that decide the trained weights (inputs are added as hashes by the caller)."""
        return self.model_dump(mode="json", exclude=set(NON_RESULT_FIELDS))

    def require_inputs(self) -> None:
        """Raise a one-line error when base, data or out is missing (they may come from the CLI)."""
        for name, flag in (("base", "BASE argument"), ("data", "--data"), ("out", "--out")):
            if getattr(self, name) in (None, ""):
                raise ConfigError(f"training needs `{name}`", f"pass {flag} or set `{name}:` in the config file")


def make_config(where: str = "training config", **values: Any) -> TrainConfig:
    """Build a TrainConfig from keyword values; validation errors become one-line ConfigErrors."""
    try:
        return TrainConfig(**values)
    except ValidationError as exc:
        raise spec_error(exc, where, TrainConfig, key_word="setting",
                         docs="the settings in harness/train/config.py or `harness train --help`") from None


def load_train_config(path: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """Load a YAML config (optional) and apply overrides; None-valued overrides are ignored.

    Relative paths inside the file (data, val_data, out) are taken relative to the file's
    folder, so a config can sit next to its data.

    Raises:
        ConfigError: unreadable YAML, unknown setting, bad value (one line).
    """
    from harness.evaluate.suite_config import load_yaml
    from harness.io import display_path

    values: dict[str, Any] = {}
    where = "training config"
    if path is not None:
        path = Path(path)
        where = display_path(path)
        doc = load_yaml(path)
        if doc is None:
            doc = {}
        if not isinstance(doc, dict):
            raise ConfigError(f"{where}: a training config must be a mapping of settings, got {type(doc).__name__}",
                              "write `key: value` lines, e.g. `rank: 8`")
        for key in ("data", "val_data", "out"):
            if isinstance(doc.get(key), str) and not Path(doc[key]).expanduser().is_absolute():
                doc[key] = str(path.parent / doc[key])
        values.update(doc)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return make_config(where, **values)
