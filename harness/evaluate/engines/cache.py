"""Content-addressed per-item result cache in SQLite.

Keys hash everything that determines an output (model variant, prompt, decoding params,
engine version), so any run, resumed or new, reuses work another run already did. Each
batch is one transaction: a run killed with -9 loses at most the batch in flight.
"""

from __future__ import annotations

import json
from typing import Any

from harness.hashing import sha256_json
from harness.sqlite_store import SQLiteStore

ENGINE_VERSION = 3  # bump when a change to the engine changes outputs


def item_key(kind: str, model_key: str, prompt_hash: str, params: dict[str, Any]) -> str:
    return sha256_json({"kind": kind, "engine": ENGINE_VERSION, "model": model_key,
                        "prompt": prompt_hash, "params": params})


class ResultCache(SQLiteStore):
    """Per-item results by key (see `item_key`); `path=None` disables caching."""

    table = "results"
    what = "result cache"

    def put_many(self, items: dict[str, dict]) -> None:
        self._write("INSERT OR REPLACE INTO results (key, value) VALUES (?, ?)",
                    [(k, json.dumps(v)) for k, v in items.items()])
