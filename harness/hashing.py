"""Content hashes for provenance and cache keys."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Sequence

from harness.home import home, writes_allowed


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of some bytes."""
    return hashlib.sha256(data).hexdigest()


def sha256_json(obj: Any) -> str:
    """Hash of a JSON-able object with sorted keys, so dict order never changes a key."""
    return sha256_bytes(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode("utf-8"))


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    return sha256_files([path])


def sha256_files(paths: Sequence[str | Path]) -> str:
    """Hex sha256 over the bytes of several files, streamed, in the order given."""
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def hash_files(paths: list[Path]) -> str:
    """One hash over several files (name + content), memoised by path, size and mtime.

    Base weights are hundreds of MB; re-hashing them on every run would cost seconds, so
    digests are remembered in `$HARNESS_HOME/hashes.json` until the file changes.
    """
    memo_path = home() / "hashes.json"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    h = hashlib.sha256()
    changed = False
    for path in sorted(paths, key=lambda p: p.name):
        st = path.stat()
        key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
        digest = memo.get(key)
        if digest is None:
            digest = memo[key] = sha256_file(path)
            changed = True
        h.update(path.name.encode() + b"\0" + digest.encode() + b"\0")
    if changed and writes_allowed():
        tmp = memo_path.with_suffix(f".tmp{os.getpid()}")
        try:  # a memo only saves time: a read-only or full cache home must not stop a run
            memo_path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(memo))
            os.replace(tmp, memo_path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
    return h.hexdigest()
