"""The training panel, read tolerantly from run.json's `training` key.

Expected (every field optional; unknown scalar fields are shown as they are):

    "training": {
      "adapter": "ft",                                # which adapter this run trained
      "loss_curve": [{"step": 10, "loss": 2.31, "val_loss": 2.40}, ...],
      "hyperparameters": {"lr": 2e-4, "r": 8, "epochs": 1, ...},
      "data_hash": "sha256 of the training data",
      "wall_s": 812.5,
      "tokens_per_s": 1520.0
    }

`training` may also be a list of such objects, or a mapping adapter name -> object. Aliases
accepted: curve/history/log_history/losses for the curve; train_loss/training_loss for loss;
eval_loss/validation_loss for val_loss; global_step/iteration/epoch for step; hparams/config/
args for hyperparameters; dataset_hash/data_sha256/data.sha256 for the data hash;
wall_time_s/train_runtime/runtime_s for wall time; tokens_per_second/train_tokens_per_second
for throughput. Curve points that carry only a val_loss (as in Hugging Face's log_history)
are merged into the point of the same step.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

_CURVE = ("loss_curve", "curve", "history", "log_history", "losses")
_STEP = ("step", "global_step", "iteration", "epoch")
_LOSS = ("loss", "train_loss", "training_loss")
_VAL = ("val_loss", "eval_loss", "validation_loss")
_HYPER = ("hyperparameters", "hparams", "config", "args")
_DATA = ("data_hash", "dataset_hash", "data_sha256")
_WALL = ("wall_s", "wall_time_s", "train_runtime", "runtime_s")
_TPS = ("tokens_per_s", "tokens_per_second", "train_tokens_per_second")
_NAME = ("adapter", "name")
_ALL = set(_CURVE + _HYPER + _DATA + _WALL + _TPS + _NAME + ("data",))


@dataclass
class CurvePoint:
    step: float
    loss: float | None = None
    val_loss: float | None = None


@dataclass
class TrainingPanel:
    name: str | None
    curve: list[CurvePoint]
    hyperparameters: list[tuple[str, str]]
    data_hash: str | None
    wall_s: float | None
    tokens_per_s: float | None
    other: list[tuple[str, str]] = field(default_factory=list)

    @property
    def final_loss(self) -> float | None:
        losses = [p.loss for p in self.curve if p.loss is not None]
        return losses[-1] if losses else None

    @property
    def final_val_loss(self) -> float | None:
        losses = [p.val_loss for p in self.curve if p.val_loss is not None]
        return losses[-1] if losses else None


def _first(d: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for k in keys:
        if d.get(k) is not None:
            return d[k]
    return None


def _float(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _curve(points: Any) -> list[CurvePoint]:
    if not isinstance(points, list):
        return []
    by_step: dict[float, CurvePoint] = {}
    for i, p in enumerate(points):
        if isinstance(p, (int, float)):  # a bare list of losses
            p = {"step": i, "loss": p}
        if not isinstance(p, dict):
            continue
        step = _float(_first(p, _STEP))
        step = float(i) if step is None else step
        loss, val = _float(_first(p, _LOSS)), _float(_first(p, _VAL))
        if loss is None and val is None:
            continue
        point = by_step.setdefault(step, CurvePoint(step))
        point.loss = loss if loss is not None else point.loss
        point.val_loss = val if val is not None else point.val_loss
    return sorted(by_step.values(), key=lambda p: p.step)


def _flat(d: Any, prefix: str = "") -> list[tuple[str, str]]:
    if not isinstance(d, dict):
        return [] if d is None else [(prefix or "value", _text(d))]
    out = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out += _flat(v, key + ".")
        else:
            out.append((key, _text(v)))
    return out


def _text(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)


def _panel(d: dict[str, Any], name: str | None) -> TrainingPanel | None:
    data = d.get("data") if isinstance(d.get("data"), dict) else {}
    panel = TrainingPanel(
        name=str(_first(d, _NAME) or name) if (_first(d, _NAME) or name) else None,
        curve=_curve(_first(d, _CURVE)),
        hyperparameters=_flat(_first(d, _HYPER)),
        data_hash=_first(d, _DATA) or data.get("sha256") or data.get("hash"),
        wall_s=_float(_first(d, _WALL)),
        tokens_per_s=_float(_first(d, _TPS)),
        other=[(k, _text(v)) for k, v in d.items()
               if k not in _ALL and not isinstance(v, (dict, list)) and v is not None])
    empty = not (panel.curve or panel.hyperparameters or panel.data_hash or panel.wall_s or panel.tokens_per_s
                 or panel.other)
    return None if empty else panel


def _looks_single(d: dict[str, Any]) -> bool:
    return bool(_ALL & set(d)) or not all(isinstance(v, dict) for v in d.values())


def training_panels(raw: Any) -> list[TrainingPanel]:
    """One panel per trained adapter in run.json's `training` (empty when absent or unusable)."""
    if isinstance(raw, list):
        entries = [(None, d) for d in raw if isinstance(d, dict)]
    elif isinstance(raw, dict) and raw:
        entries = [(None, raw)] if _looks_single(raw) else [(str(k), v) for k, v in raw.items()]
    else:
        return []
    return [p for p in (_panel(d, name) for name, d in entries) if p is not None]
