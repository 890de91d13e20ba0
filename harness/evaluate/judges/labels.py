"""Human labels for a judge: responses people scored, to measure the judge's agreement."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.evaluate.judges.spec import JudgeSpec
from harness.evaluate.suites.records import lookup
from harness.io import read_records, record_format


def read_labels(suite: Any, spec: JudgeSpec, where: str) -> list[dict[str, Any]]:
    """Rows of {id, response, labels: {criterion: level|None}} from the human-labels file.

    The file is .jsonl, .json (a list) or .csv, relative to the suite folder.

    Raises:
        ConfigError: a missing or unreadable file, a row without id or response, a
            criterion no row has a number for (one line naming the suite file).
    """
    hl = spec.human_labels
    assert hl is not None
    path = Path(hl.file)
    path = path if path.is_absolute() else Path(suite.path) / path
    if not path.is_file():
        raise ConfigError(f"{where}: judge.human_labels.file: {path} does not exist",
                          "fix the path (relative to the suite folder) or remove human_labels")
    try:
        rows = [row for _, row in read_records(path, record_format(path) or "jsonl", objects=True)]
    except ConfigError as exc:
        raise ConfigError(f"{where}: judge.human_labels.file: {exc.message}",
                          "use .jsonl (one object per line), .json (a list) or .csv") from None
    out: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        item_id, response = lookup(row, hl.id), lookup(row, hl.response)
        if item_id is None or not isinstance(response, str):
            missing = hl.id if item_id is None else hl.response
            raise ConfigError(f"{where}: judge.human_labels: row {i + 1} of {path.name} has no '{missing}'",
                              "fix human_labels.id / human_labels.response or the file")
        labels = {crit: _label_value(lookup(row, dotted)) for crit, dotted in hl.scores.items()}
        out.append({"id": str(item_id), "response": response, "labels": labels})
    for crit, dotted in hl.scores.items():
        if all(r["labels"][crit] is None for r in out):
            raise ConfigError(f"{where}: judge.human_labels.scores.{crit}: no row of {path.name} has a number at '{dotted}'",
                              "point it at the field holding the human score")
    return out


def _label_value(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return None
