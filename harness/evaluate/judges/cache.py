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
import time
from pathlib import Path
from typing import Any

from harness.hashing import sha256_json
from harness.sqlite_store import SQLiteStore

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


class JudgeCache(SQLiteStore):
    """`get_many`/`put` over one SQLite file; `path=None` disables caching.

    Use from one thread: the orchestrator writes replies as worker threads hand them back.
    """

    table = "judge_calls"
    columns = "key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL"
    what = "judge cache"

    def put(self, key: str, value: dict[str, Any]) -> None:
        self._write("INSERT OR REPLACE INTO judge_calls (key, value, created) VALUES (?, ?, ?)",
                    [(key, json.dumps(value, ensure_ascii=False), time.time())])

    def __enter__(self) -> "JudgeCache":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
