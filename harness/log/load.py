"""`harness.load_run`: a run folder as pandas DataFrames, for notebooks and ad-hoc analysis."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from harness.log.folder import RunFolder
from harness.log.schema import RunMeta


@dataclass
class Run:
    """A loaded run log.

    Attributes:
        meta: run.json as a `harness.log.schema.RunMeta`.
        items: one row per item per model (columns: model, kind, task, item_id, prediction, ...).
        scores: long form, one row per item, model and metric (model, kind, task, item_id, metric, value).
    """

    meta: RunMeta
    items: Any
    scores: Any


def load_run(out_dir: str | os.PathLike) -> Run:
    """Reads a run folder into pandas DataFrames.

    Raises:
        RunLogError: Missing or malformed run.json / items.jsonl.
    """
    import pandas as pd

    folder = RunFolder(out_dir)
    meta = folder.read_meta()
    records = folder.read_items()
    items = pd.DataFrame.from_records([r.model_dump(exclude_unset=True) for r in records])
    rows = [{"model": r.model, "kind": r.kind, "task": r.task, "item_id": r.item_id, "metric": m, "value": v}
            for r in records for m, v in r.scores.items()]
    scores = pd.DataFrame.from_records(rows, columns=["model", "kind", "task", "item_id", "metric", "value"])
    return Run(meta=meta, items=items, scores=scores)
