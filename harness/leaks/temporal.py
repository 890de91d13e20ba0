"""Temporal leakage: eval items dated on or before the last day the training data covers.

"Train on data up to X, evaluate on what came after": an item dated after the training
data's last day cannot have been copied into it; one dated on or before that day may have
been, whatever the n-gram detectors say (a paraphrase, a translation, a report of the same
event). Such items are *at risk*; the label is reported beside the n-gram labels, never
folded into them.

* Dates are ISO 8601: `YYYY-MM-DD`, or a date-time that starts with one
  (`2024-03-01T12:00:00Z`; the calendar date as written counts, no time-zone shift).
  Anything else in a date field (a number, `03/01/2024`, `2024-13-01`) is an error naming
  the file and line. Missing, null or empty: undated.
* Eval items: the field a suite maps as `fields.meta.date`, else the data record's
  top-level `date`. Benchmark items are undated.
* Training rows: a top-level `date` (JSONL objects; a `date` column in CSV, Parquet, arrow).
* The cutoff: `--train-cutoff DATE`, else the latest date among the training rows;
  none when neither exists (items then keep their dates but get no status).
* Status of an item: `at_risk` (date <= cutoff), `after_cutoff`, or `undated`.
"""

from __future__ import annotations

import collections
import datetime as dt
import gzip
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from harness.errors import ConfigError, HarnessError

STATUSES = ("at_risk", "after_cutoff", "undated")
DATE_FIELD = "date"
RULE = ("at_risk: the item is dated on or before the cutoff (the last day the training data covers); "
        "after_cutoff: dated later; undated: no date")
_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_HINT = "write dates as YYYY-MM-DD (ISO 8601), or leave the field out for an undated row"


def parse_date(value: Any) -> dt.date | None:
    """A date field's value as a date; None for missing/empty.

    Raises:
        ValueError: the value is not an ISO 8601 date (the message says what it is).
    """
    if value is None:
        return None
    if isinstance(value, dt.datetime):  # Parquet timestamps arrive as datetimes
        return value.date()
    if isinstance(value, dt.date):
        return value
    if not isinstance(value, str):
        raise ValueError(f"{json.dumps(value, default=str)[:40]} is a {type(value).__name__}, not a date")
    text = value.strip()
    if not text:
        return None
    # fromisoformat alone would also take "20240301" and week dates: one spelling only.
    if not _ISO_DAY.match(text):
        raise ValueError(f"'{text[:40]}' is not a YYYY-MM-DD date")
    try:
        return dt.date.fromisoformat(text) if len(text) == 10 else dt.datetime.fromisoformat(text).date()
    except ValueError:
        raise ValueError(f"'{text[:40]}' is not a valid date") from None


def parse_cutoff(value: str | dt.date | None) -> dt.date | None:
    """`--train-cutoff` as a date (None when not given).

    Raises:
        ConfigError: not a YYYY-MM-DD date.
    """
    if value is None or isinstance(value, dt.date):
        return value
    try:
        day = parse_date(value)
    except ValueError as exc:
        raise ConfigError(f"--train-cutoff: {exc}", "pass the last day the training data covers, e.g. "
                          "--train-cutoff 2024-06-30") from None
    if day is None:
        raise ConfigError("--train-cutoff is empty", "pass a date, e.g. --train-cutoff 2024-06-30")
    return day


def status(date: str | dt.date | None, cutoff: dt.date) -> str:
    """One item's status against the cutoff (STATUSES)."""
    if date is None:
        return "undated"
    day = date if isinstance(date, dt.date) else dt.date.fromisoformat(date)
    return "at_risk" if day <= cutoff else "after_cutoff"


# --------------------------------------------------------------------------- eval items


def suite_dates(suite: Any, examples: Sequence[Any]) -> dict[str, str | None]:
    """Example id -> ISO date (or None) of a suite's examples.

    Args:
        suite: A loaded `harness.evaluate.suites.Suite`.
        examples: Its examples (`suite.examples(limit)`).

    Raises:
        ConfigError: a bad date, as `FILE:LINE: ...` for JSONL data.
    """
    from harness.io import at, display_path, read_records

    declared = DATE_FIELD in suite.spec.fields.meta
    wanted = {int(ex.meta.get("row", i)): ex for i, ex in enumerate(examples)}
    out: dict[str, str | None] = {}
    raw: dict[int, tuple[str, Any]] = {}
    if not declared and wanted:
        # The record's own top-level `date`; records are re-read (only up to the last
        # example used) because the field mapping may leave it out of the example.
        last = max(wanted)
        for index, (label, record) in enumerate(read_records(suite.data_path, suite.spec.data.resolved_format)):
            if index in wanted:
                raw[index] = (label, record.get(DATE_FIELD) if isinstance(record, dict) else None)
            if index >= last:
                break
    for index, ex in wanted.items():
        value = ex.meta.get(DATE_FIELD) if declared else raw.get(index, ("", None))[1]
        try:
            day = parse_date(value)
        except ValueError as exc:
            label = raw[index][0] if index in raw else _label_of(suite, index)
            where = at(display_path(suite.data_path), label)
            field = f"fields.meta.{DATE_FIELD}" if declared else f"field '{DATE_FIELD}'"
            raise ConfigError(f"{where}: {field} of item '{ex.id}': {exc}", _HINT) from None
        out[str(ex.id)] = day.isoformat() if day else None
    return out


def _label_of(suite: Any, index: int) -> str:
    """The record label ("line 3") of record `index`, for an error message."""
    from harness.io import read_records

    for i, (label, _) in enumerate(read_records(suite.data_path, suite.spec.data.resolved_format)):
        if i == index:
            return label
    return f"record {index}"


# --------------------------------------------------------------------------- training rows


@dataclass
class TrainingDates:
    """Dates found in training rows: how many rows had one, and the range."""

    dated_rows: int = 0
    first: dt.date | None = None
    last: dt.date | None = None

    def add(self, day: dt.date | None) -> None:
        if day is None:
            return
        self.dated_rows += 1
        self.first = day if self.first is None or day < self.first else self.first
        self.last = day if self.last is None or day > self.last else self.last

    def as_dict(self) -> dict[str, Any]:
        return {"dated_rows": self.dated_rows, "first": _iso(self.first), "last": _iso(self.last)}


def _iso(day: dt.date | None) -> str | None:
    return day.isoformat() if day else None


def training_dates(sources: Sequence[Any]) -> TrainingDates:
    """Scan training sources (`harness.leaks.io.Source`) for row dates.

    JSONL lines are parsed only when they contain `"date"`, so undated data costs one
    byte search per line.

    Raises:
        HarnessError: a bad date, as `training data FILE:LINE: ...` (`FILE: row N` for
            columnar files, N 0-based as in leaks.jsonl).
    """
    out = TrainingDates()
    for src in sources:
        if src.format == "jsonl":
            _jsonl_dates(src, out)
        elif src.format in ("csv", "parquet", "arrow"):
            _column_dates(src, out)
    return out


def _bad(where: str, exc: ValueError) -> HarnessError:
    return HarnessError(f"training data {where}: field '{DATE_FIELD}': {exc}", _HINT)


def _jsonl_dates(src: Any, out: TrainingDates) -> None:
    from harness.io import display_path

    opener = gzip.open if src.gz else open
    key = f'"{DATE_FIELD}"'.encode()
    with opener(src.files[0], "rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if key not in line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # the scan reports malformed lines with their own message
            if not isinstance(rec, dict):
                continue
            try:
                out.add(parse_date(rec.get(DATE_FIELD)))
            except ValueError as exc:
                raise _bad(f"{display_path(Path(src.path))}:{lineno}", exc) from None


def _column_dates(src: Any, out: TrainingDates) -> None:
    from harness.io import display_path, record_fields

    if DATE_FIELD not in record_fields(Path(src.path).expanduser(), src.format):
        return
    row = 0
    for batch in _date_batches(src):
        for value in batch.column(0).to_pylist():
            try:
                out.add(parse_date(value))
            except ValueError as exc:
                raise _bad(f"{display_path(Path(src.path))}: row {row}", exc) from None
            row += 1


def _date_batches(src: Any):
    """Record batches holding only the date column."""
    if src.format == "csv":
        import pyarrow.csv as pcsv

        from harness.leaks.io import csv_parse_options

        path = Path(src.files[0])
        yield from pcsv.open_csv(str(path), parse_options=csv_parse_options(path),
                                 convert_options=pcsv.ConvertOptions(include_columns=[DATE_FIELD],
                                                                     column_types={DATE_FIELD: "string"}))
    elif src.format == "parquet":
        import pyarrow.parquet as pq

        yield from pq.ParquetFile(src.files[0]).iter_batches(columns=[DATE_FIELD])
    else:
        from harness.io import iter_arrow_batches

        for f in src.files:
            yield from iter_arrow_batches(Path(f), [DATE_FIELD])


# --------------------------------------------------------------------------- labels


def add_temporal(report: Any, items: Sequence[Any], cutoff: dt.date | None, source: str | None,
                 training: TrainingDates | None = None) -> Any:
    """Write each item's date and status into a LeakReport's records, and a `temporal`
    section into its summary.

    Args:
        report: A `LeakReport` whose records are in `items` order (changed in place).
        items: The scanned `EvalItem`s.
        cutoff: The last day the training data covers, or None when unknown.
        source: Where the cutoff came from: "--train-cutoff" or "training data".
        training: Dates found in the training rows, when they were read.

    Returns:
        The report.
    """
    counts: dict[str, collections.Counter] = {}
    for rec, item in zip(report.records, items):
        c = counts.setdefault(rec["task"], collections.Counter())
        c["n"] += 1
        if item.date is not None:
            rec["date"] = item.date
        if cutoff is not None:
            rec["temporal"] = status(item.date, cutoff)
            c[rec["temporal"]] += 1
        else:
            c["undated" if item.date is None else "dated"] += 1
    keys = ("n", *STATUSES) if cutoff is not None else ("n", "dated", "undated")
    per_task = {task: {k: c[k] for k in keys} for task, c in counts.items()}
    section: dict[str, Any] = {"cutoff": _iso(cutoff), "cutoff_source": source, "rule": RULE, "counts": per_task,
                               "totals": {k: sum(c[k] for c in per_task.values()) for k in keys}}
    if training is not None:
        section["training"] = training.as_dict()
    report.summary["temporal"] = section
    return report


def resolve_cutoff(cutoff: dt.date | None, items: Sequence[Any], sources: Sequence[Any]):
    """(cutoff, source, training dates or None): `--train-cutoff` wins; else, when some item
    is dated, the latest training row date. Returns (None, None, None) when no item is dated
    and no cutoff was given: there is nothing to report."""
    if cutoff is not None:
        return cutoff, "--train-cutoff", None
    if not any(it.date is not None for it in items):
        return None, None, None
    found = training_dates(sources)
    return found.last, ("training data" if found.last else None), found


def check_dates(cutoff: str | None, suites: Sequence[str], train: Sequence[str | Path], trusted: Sequence = ()) -> None:
    """Preflight for commands that train before they scan (`harness ab`): the cutoff, every
    suite item's date and, when the cutoff will come from them, the training rows' dates.

    Raises:
        ConfigError / HarnessError: the first bad date, with its file and line.
    """
    from harness.evaluate.suites import load_suite
    from harness.leaks.io import open_source

    day = parse_cutoff(cutoff)
    dated = False
    for name in suites:
        suite = load_suite(name, [str(p) for p in trusted])
        dated |= any(d is not None for d in suite_dates(suite, suite.examples()).values())
    if day is None and dated:
        training_dates([open_source(p, None, i) for i, p in enumerate(train)])
