"""Where harness keeps its caches and offline assets."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The cache root: `$HARNESS_HOME`, default `~/.cache/harness`."""
    return Path(os.environ.get("HARNESS_HOME") or Path.home() / ".cache" / "harness")
