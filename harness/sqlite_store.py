"""A key → JSON store in one SQLite file that never stops a run.

The result and judge caches save work; they are not results. So a cache home that is
read-only, on a full disk or corrupt costs a warning and the cache, never the run: opening
fails → no cache; a write fails → one warning, and this process writes no more (SQLite
rolls the failed transaction back, so the file stays valid for the next run).
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path
from typing import Any, Iterable


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


class SQLiteStore:
    """`get_many`/`put_many` over TABLE(key, value[, extra columns]); `path=None` disables it."""

    table = "store"
    columns = "key TEXT PRIMARY KEY, value TEXT NOT NULL"
    what = "cache"

    def __init__(self, path: Path | None):
        self.path = path
        self._db: sqlite3.Connection | None = None
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), timeout=60)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"CREATE TABLE IF NOT EXISTS {self.table} ({self.columns})")
            self._db.commit()
        except (OSError, sqlite3.Error) as exc:
            self._disable(f"cannot open the {self.what} {path} ({exc}): running without it; "
                          "fix: make HARNESS_HOME writable, or pass --no-cache")

    def _disable(self, message: str) -> None:
        _warn(message)
        self.close()

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        if self._db is None:
            return {}
        keys = list(dict.fromkeys(keys))
        found: dict[str, Any] = {}
        try:
            for i in range(0, len(keys), 500):
                chunk = keys[i:i + 500]
                q = f"SELECT key, value FROM {self.table} WHERE key IN ({','.join('?' * len(chunk))})"
                found.update((k, json.loads(v)) for k, v in self._db.execute(q, chunk))
        except sqlite3.Error as exc:
            self._disable(f"cannot read the {self.what} {self.path} ({exc}): recomputing without it")
            return {}
        return found

    def _write(self, sql: str, rows: list[tuple]) -> None:
        """One transaction; a failure (disk full, read-only) disables the store for this process."""
        if self._db is None or not rows:
            return
        try:
            with self._db:
                self._db.executemany(sql, rows)
        except sqlite3.Error as exc:
            self._disable(f"cannot write the {self.what} {self.path} ({exc}): results are kept in this run but "
                          "not cached; fix: free space or make HARNESS_HOME writable")

    def close(self) -> None:
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
            self._db = None
