"""The grid of a `harness sweep`: training settings and the values each takes.

A grid comes from a YAML file, from repeated `--set key=v1,v2` options, or both (a key may
appear in only one of them). Keys are `harness train` settings (harness/train/config.py),
with the usual aliases: `r`/`lora_r` for rank, `lora_alpha`, `learning_rate`, `num_epochs`,
`lora_dropout`; `-` and `_` are the same. The points are the cartesian product of the values,
in the order given::

    # grid.yaml
    rank: [4, 8, 16]
    lr: [1.0e-4, 5.0e-4]
    target_modules: ["q_proj,v_proj", [q_proj, k_proj, v_proj, o_proj]]
    epochs: 1            # a single value: the same for every point

A list is the values; one value of `target_modules` is itself a list of modules, written as
a nested list or as one string joined with `,` (YAML) or `+` (`--set
target_modules=q_proj+v_proj,all-linear`, since `,` separates the values there).

Every value, and then every point's whole training config, is validated before anything is
trained, so a typo fails in a second as one line naming the key.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from harness.errors import ConfigError
from harness.suggest import did_you_mean

ALIASES = {"r": "rank", "lora_r": "rank", "lora_rank": "rank", "lora_alpha": "alpha", "learning_rate": "lr",
           "num_epochs": "epochs", "num_train_epochs": "epochs", "lora_dropout": "dropout", "modules": "target_modules"}
# Settings a sweep cannot vary, and what to do instead: they say where things are, not how to train.
NOT_SWEPT = {
    "base": "pass the base model as the BASE argument", "data": "pass the training data with --train",
    "out": "pass the sweep folder with --out", "val_data": "set val_data in --config",
    "seed": "pass the seeds with --seeds (every point trains each seed)", "device": "pass --device",
    "save_every": "set it in --config", "keep_checkpoints": "set it in --config",
    "eval_suites": "pass the suites with --suite", "allow_overlap": "set it in --config",
    "trust_code": "pass --trust-code",
}
NAME_LIMIT = 96  # characters of a point's folder name before it is shortened to a hash


@dataclass(frozen=True)
class Grid:
    """Validated grid: setting -> its values (as the training config stores them), in order."""

    axes: dict[str, list[Any]]

    def points(self) -> list[dict[str, Any]]:
        """Every combination of values, the last key varying fastest."""
        keys = list(self.axes)
        return [dict(zip(keys, combo)) for combo in itertools.product(*(self.axes[k] for k in keys))]


def _setting(raw: str, where: str) -> str:
    from harness.train.config import TrainConfig

    key = str(raw).strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key in NOT_SWEPT:
        raise ConfigError(f"{where}: '{raw}' cannot be swept", NOT_SWEPT[key])
    allowed = [k for k in TrainConfig.model_fields if k not in NOT_SWEPT]
    if key not in allowed:
        raise ConfigError(f"{where}: unknown training setting '{raw}'",
                          f"{did_you_mean(key, allowed)}settings a sweep can vary: {', '.join(allowed)}")
    return key


def _scalar(text: str) -> Any:
    """One `--set` value as YAML would read it, except that `1e-3` is a number, not a string."""
    t = text.strip()
    low = t.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("null", "none", "default"):
        return None
    for kind in (int, float):
        try:
            return kind(t)
        except ValueError:
            pass
    return t


def parse_sets(options: Iterable[str]) -> dict[str, list[Any]]:
    """`--set key=v1,v2` options -> {key: [values]} (keys as written; checked by `build_grid`)."""
    out: dict[str, list[Any]] = {}
    for opt in options:
        key, eq, values = str(opt).partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--set {opt!r} is not KEY=VALUE[,VALUE...]", "write e.g. --set rank=4,8,16")
        parts = values.split(",")
        if any(not p.strip() for p in parts):
            raise ConfigError(f"--set {opt!r} has an empty value",
                              "separate non-empty values with commas, e.g. lr=1e-4,5e-4")
        if key.strip() in out:
            raise ConfigError(f"--set {key.strip()} is given twice",
                              "list all its values in one --set, comma-separated")
        out[key.strip()] = [_scalar(p) for p in parts]
    return out


def load_grid_file(path: Path) -> dict[str, list[Any]]:
    """A grid YAML: a mapping of setting -> list of values (or one value)."""
    from harness.evaluate.suite_config import load_yaml
    from harness.io import display_path

    doc = load_yaml(path)
    where = display_path(Path(path))
    if not isinstance(doc, dict) or not doc:
        raise ConfigError(f"{where}: a grid must be a mapping of training settings to lists of values",
                          "write e.g. `rank: [4, 8]` and `lr: [1.0e-4, 5.0e-4]`, one setting per line")
    return {str(k): (v if isinstance(v, list) else [v]) for k, v in doc.items()}


def _check_value(key: str, value: Any, where: str) -> Any:
    """`value` checked as setting `key` on its own; returns it ready for the training config.

    Rules that tie settings together (early stopping needs validation data) are left to the
    check of each whole point, since one value alone cannot satisfy them.
    """
    from pydantic import ValidationError

    from harness.spec_errors import spec_error
    from harness.train.config import TrainConfig

    if key == "target_modules" and isinstance(value, str):
        value = value.replace("+", ",")
    try:
        TrainConfig(**{key: value})
    except ValidationError as exc:
        if any(err.get("loc") for err in exc.errors()):  # a field error, not a cross-setting rule
            raise spec_error(exc, where, TrainConfig, key_word="setting",
                             docs="the settings in harness/train/config.py") from None
    return value


def build_grid(grid_file: Path | None, sets: Iterable[str], config: Path | None = None) -> Grid:
    """Reads, validates and combines the grid file and `--set` options.

    Args:
        grid_file: `--grid` YAML, or None.
        sets: `--set key=v1,v2` options.
        config: `--config` training settings every point starts from (checked with each point).

    Raises:
        ConfigError: An unknown or unsweepable key, a bad or repeated value, a key given twice,
            an empty grid, or a point whose whole training config is invalid (one line).
    """
    from harness.io import display_path
    from harness.train.config import load_train_config

    sources = []
    if grid_file is not None:
        sources.append((display_path(Path(grid_file)), load_grid_file(grid_file)))
    sources.append(("--set", parse_sets(sets)))
    raw: dict[str, list[Any]] = {}
    spelled: dict[str, tuple[str, str]] = {}  # key -> (where, as written), for messages
    for where, given in sources:
        for raw_key, values in given.items():
            key = _setting(raw_key, where)
            if key in raw:
                raise ConfigError(f"{where}: '{raw_key}' is already in the grid (as '{key}')",
                                  "give each setting once, in the grid file or in --set")
            if not values:
                raise ConfigError(f"{where}: {raw_key} has no values", f"list at least one value for {raw_key}")
            raw[key] = [_check_value(key, v, where) for v in values]
            spelled[key] = (where, raw_key)
    if not raw:
        raise ConfigError("the sweep has no grid", "pass --grid GRID.yaml or --set KEY=V1,V2 (e.g. --set rank=4,8)")
    # Each whole point is validated with --config; the stored values are the config's own
    # spelling of them (1e-3 -> 0.001, "q_proj,v_proj" -> [q_proj, v_proj]).
    axes: dict[str, list[Any]] = {k: [None] * len(v) for k, v in raw.items()}
    for index in itertools.product(*(range(len(v)) for v in raw.values())):
        point = {k: raw[k][i] for k, i in zip(raw, index)}
        try:
            stored = load_train_config(config, **point).model_dump(mode="json")
        except ConfigError as exc:
            raise ConfigError(f"grid point {point_name(point)}: {exc.message}", exc.hint) from None
        for k, i in zip(raw, index):
            axes[k][i] = stored[k]
    for key, values in axes.items():
        for i, v in enumerate(values):
            if v in values[:i]:
                where, raw_key = spelled[key]
                raise ConfigError(f"{where}: {raw_key} lists {value_text(v)} twice",
                                  "list each value once (two equal values would train the same point twice)")
    return Grid(axes)


def value_text(value: Any) -> str:
    """A setting's value as the point names and the report show it."""
    if isinstance(value, list):
        return "+".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return "default" if value is None else str(value)


def point_name(settings: dict[str, Any]) -> str:
    """The point's folder name, from its settings (`rank=8_lr=0.0005`): the same settings always
    give the same name, which is what lets a re-run find a finished point."""
    from harness.hashing import sha256_json

    name = "_".join(f"{k}={value_text(v)}" for k, v in settings.items())
    name = re.sub(r"[^A-Za-z0-9._+=-]", "-", name)
    if len(name) > NAME_LIMIT:
        name = f"{name[:NAME_LIMIT - 13]}-{sha256_json(settings)[:12]}"
    return name
