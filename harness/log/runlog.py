"""The run log: `run.json` (spec, provenance, aggregates) and `items.jsonl` (one line per
item per model). Later stages (compare, gate, report) read only these files.

Every items.jsonl line has `model`, `kind` (suite|bench), `task`, `item_id`, `prediction`
and `scores` (metric -> value); benchmark lines add `correct` and `subject`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from harness.errors import RunLogError

SCHEMA_VERSION = 1
RUN_FILE = "run.json"
ITEMS_FILE = "items.jsonl"


def _atomic_write(path: Path, chunks: Iterable[str]) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        for chunk in chunks:
            fh.write(chunk)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_run(out_dir: Path, meta: dict[str, Any], records: list[dict[str, Any]]) -> None:
    """Write items first, then run.json: a run.json on disk always has its items beside it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {"schema_version": SCHEMA_VERSION, **meta}
    _atomic_write(out_dir / ITEMS_FILE, (json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    _atomic_write(out_dir / RUN_FILE, [json.dumps(meta, indent=2, ensure_ascii=False) + "\n"])


def update_meta(out_dir: Path, **fields: Any) -> dict[str, Any]:
    """Add top-level fields to a finished run's run.json (atomically); returns the new dict."""
    meta = read_meta(out_dir)
    meta.update(fields)
    _atomic_write(Path(out_dir) / RUN_FILE, [json.dumps(meta, indent=2, ensure_ascii=False) + "\n"])
    return meta


def read_meta(out_dir: Path) -> dict[str, Any]:
    path = Path(out_dir) / RUN_FILE
    if not path.is_file():
        raise RunLogError(f"no {RUN_FILE} in {out_dir}", "pass the --out folder of a finished `harness run`/`compare`")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise RunLogError(f"{path} is not valid JSON ({exc})", "re-run the evaluation to rewrite it") from None
    version = meta.get("schema_version")
    if version != SCHEMA_VERSION:
        raise RunLogError(f"{path} has run-log schema {version}, this harness reads {SCHEMA_VERSION}",
                          "re-run with this harness version, or use the version that wrote it")
    return meta


def read_items(out_dir: Path) -> list[dict[str, Any]]:
    path = Path(out_dir) / ITEMS_FILE
    if not path.is_file():
        raise RunLogError(f"no {ITEMS_FILE} in {out_dir}", "the run was not finished: re-run it (cached items are reused)")
    items = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            try:
                items.append(json.loads(line))
            except ValueError:
                raise RunLogError(f"{path}:{n} is not valid JSON", "re-run the evaluation to rewrite it") from None
    return items


@dataclass
class Run:
    """A loaded run log.

    Attributes:
        meta: run.json as a dict.
        items: one row per item per model (columns: model, kind, task, item_id, prediction, ...).
        scores: long form, one row per item, model and metric (model, kind, task, item_id, metric, value).
    """

    meta: dict[str, Any]
    items: Any
    scores: Any


def load_run(out_dir: str | Path) -> Run:
    """Read a run folder into pandas DataFrames."""
    import pandas as pd

    out_dir = Path(out_dir)
    meta = read_meta(out_dir)
    records = read_items(out_dir)
    items = pd.DataFrame.from_records(records)
    rows = [
        {"model": r["model"], "kind": r["kind"], "task": r["task"], "item_id": r["item_id"], "metric": m, "value": v}
        for r in records for m, v in r.get("scores", {}).items()
    ]
    scores = pd.DataFrame.from_records(rows, columns=["model", "kind", "task", "item_id", "metric", "value"])
    return Run(meta=meta, items=items, scores=scores)
