"""Content-addressed cache of judge completions in SQLite (`$HARNESS_HOME/cache/judge.sqlite`).

A key hashes what determines a judge reply: the judge's identity (backend, endpoint, model
or weights hash), the exact messages sent, and the decoding parameters. The API key is
never part of a key or a value. Only completed exchanges are stored (a reply that did not
parse is stored too, since asking again at temperature 0 would get the same reply), so a
resumed or repeated run re-asks nothing; transport failures are not stored and are retried.
Rows are committed one by one as replies arrive: a killed run loses only calls in flight.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable

from harness.hashing import sha256_json

CACHE_VERSION = 1  # bump when what a cached reply means changes


def default_path() -> Path:
    """`$HARNESS_HOME/cache/judge.sqlite`."""
    from harness.home import home

    return home() / "cache" / "judge.sqlite"


def call_key(identity: dict[str, Any], messages: list[dict[str, str]], params: dict[str, Any]) -> str:
    """The cache key of one chat call.

    Args:
        identity: Who answers (backend, endpoint, model); see each backend's `identity()`.
        messages: The chat messages exactly as sent.
        params: Decoding parameters (temperature, max_tokens, json mode).
    """
    return sha256_json({"v": CACHE_VERSION, "judge": identity, "messages": messages, "params": params})


class JudgeCache:
    """`get_many`/`put` over one SQLite file; `path=None` disables caching.

    Use from one thread: the orchestrator writes replies as worker threads hand them back.
    """

    def __init__(self, path: Path | None):
        self.path = path
        self._db: sqlite3.Connection | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), timeout=60)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS judge_calls "
                "(key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL)"
            )
            self._db.commit()

    def get_many(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        if self._db is None:
            return {}
        keys = list(dict.fromkeys(keys))
        found: dict[str, dict[str, Any]] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            q = f"SELECT key, value FROM judge_calls WHERE key IN ({','.join('?' * len(chunk))})"
            found.update((k, json.loads(v)) for k, v in self._db.execute(q, chunk))
        return found

    def put(self, key: str, value: dict[str, Any]) -> None:
        if self._db is None:
            return
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO judge_calls (key, value, created) VALUES (?, ?, ?)",
                             (key, json.dumps(value, ensure_ascii=False), time.time()))

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> "JudgeCache":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
