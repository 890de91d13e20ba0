"""Output locations, checked before any work: the right kind, writable, and never a user's
file replaced without `--force`.

Every command that writes calls `check_dir` or `check_file` for each output before it loads
a model, so a typo in `--out` costs a second, not an evaluation. Writability is probed by
creating (and removing) a file, because permission bits lie for root and on read-only mounts.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Callable

from harness.errors import ConfigError


def _nearest_existing(path: Path) -> Path:
    """`path` or its closest ancestor that exists; a regular file on the way is an error."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    return probe


def _probe_writable(folder: Path, flag: str, target: Path) -> None:
    try:
        fd, name = tempfile.mkstemp(prefix=".harness-probe-", dir=folder)
    except OSError as exc:
        why = "is on a read-only file system" if exc.errno == errno.EROFS else "is not writable"
        raise ConfigError(f"{flag} {target}: {folder} {why} ({exc.strerror})",
                          "pick a folder you can write to, or fix its permissions") from None
    os.close(fd)
    os.unlink(name)


def _check_folder(folder: Path, flag: str, target: Path) -> None:
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        raise ConfigError(f"{flag} {target}: {existing} is a file, so no folder can be made under it",
                          f"pass a {flag} path that does not go through a file")
    _probe_writable(existing, flag, target)


def check_dir(path: str | os.PathLike, flag: str = "--out") -> Path:
    """A folder the command will create or write into: not a file, under no file, writable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path} is a file, not a folder", f"pass a folder path to {flag}")
    _check_folder(path, flag, path)
    return path


def starts_with(marker: bytes, within: int = 4096) -> Callable[[Path], bool]:
    """An ownership test: the file's first `within` bytes hold `marker` (what harness writes)."""
    def ours(path: Path) -> bool:
        try:
            with open(path, "rb") as fh:
                return marker in fh.read(within)
        except OSError:
            return False
    return ours


def check_file(path: str | os.PathLike, flag: str = "--out", force: bool = False,
               ours: Callable[[Path], bool] | None = None) -> Path:
    """A file the command will write: not a folder, its folder writable, and an existing file
    replaced only when `ours` recognises it as one harness wrote, or with `force`."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{flag} {path} is a folder, not a file", f"pass a file path to {flag}")
    if path.exists() and not force and not (ours is not None and ours(path)):
        raise ConfigError(f"{flag} {path} already exists and was not written by harness",
                          "pass --force to replace it, or choose another path")
    _check_folder(path.parent, flag, path)
    return path
