"""The output folder of a training: what it may hold, and whether it can be reused or resumed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

from harness.errors import ConfigError
from harness.hashing import sha256_json
from harness.train.checkpoint import CHECKPOINTS, checkpoint_dirs
from harness.train.config import TrainConfig

RECORD_FILE = "training.json"
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json", "adapter_model.bin", "README.md", RECORD_FILE)


def fingerprint(cfg: TrainConfig, data_sha: str, val_sha: str | None) -> dict[str, Any]:
    """What must match for two trainings to be the same one (base hash added after loading)."""
    return {"config": sha256_json(cfg.result_fields()), "data": data_sha, "val": val_sha}


def _read_record(out: Path) -> dict[str, Any] | None:
    """training.json of OUT: None when absent, {} when unreadable."""
    path = out / RECORD_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        return {}


def check_out(out: Path, fp: dict[str, Any], resume: bool, force: bool,
              log: Callable[[str], None]) -> dict[str, Any] | None:
    """Decide what OUT may be used for; returns the finished record when it can be reused."""
    from harness.outputs.guard import check_dir

    check_dir(out)
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
