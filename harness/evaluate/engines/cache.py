"""Content-addressed per-item result cache in SQLite.

Keys hash everything that determines an output (model variant, prompt, decoding params,
engine version), so any run, resumed or new, reuses work another run already did. Each
batch is one transaction: a run killed with -9 loses at most the batch in flight.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, Iterable

from harness.hashing import sha256_json

ENGINE_VERSION = 2  # bump when a change to the engine changes outputs


def item_key(kind: str, model_key: str, prompt_hash: str, params: dict[str, Any]) -> str:
    return sha256_json({"kind": kind, "engine": ENGINE_VERSION, "model": model_key,
                        "prompt": prompt_hash, "params": params})


class ResultCache:
    """`get_many`/`put_many` over one SQLite file; `path=None` disables caching."""

    def __init__(self, path: Path | None):
        self.path = path
        self._db = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), timeout=60)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self._db.commit()

    def get_many(self, keys: Iterable[str]) -> dict[str, dict]:
        if self._db is None:
            return {}
        keys = list(dict.fromkeys(keys))
        found: dict[str, dict] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            q = f"SELECT key, value FROM results WHERE key IN ({','.join('?' * len(chunk))})"
            found.update((k, json.loads(v)) for k, v in self._db.execute(q, chunk))
        return found

    def put_many(self, items: dict[str, dict]) -> None:
        if self._db is None or not items:
            return
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO results (key, value) VALUES (?, ?)",
                                 [(k, json.dumps(v)) for k, v in items.items()])

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
