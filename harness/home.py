"""Where harness keeps its caches and offline assets."""

from __future__ import annotations

import os
from pathlib import Path

_writes = {"allowed": True}


def home() -> Path:
    """The cache root: `$HARNESS_HOME`, default `~/.cache/harness`."""
    return Path(os.environ.get("HARNESS_HOME") or Path.home() / ".cache" / "harness")


def allow_writes(allowed: bool) -> None:
    """Whether this process may write memos under the cache home: `--no-cache` means nothing
    is written there, not even the file-hash memo."""
    _writes["allowed"] = allowed


def writes_allowed() -> bool:
    return _writes["allowed"]
