"""Cutting a training source into tasks, and reading a task's rows (in a worker).

A file is cut into *tasks* that a worker turns into a block of row texts (`read_task`):

* plain JSONL / text: byte ranges cut at line ends; each worker reads its own range, so
  the parent process ships only (path, start, end);
* gzipped JSONL / text: the parent decompresses sequentially and ships blocks of lines;
* CSV, Parquet, arrow: the parent streams record batches (pyarrow, only the mapped
  columns) and ships them; Arrow IPC pickles as raw buffers.

Row ids: JSONL/text rows are 0-based line numbers (blank lines count, so `row + 1` is
the line an editor shows); CSV rows are 0-based data rows (the header is not a row);
Parquet and arrow rows are 0-based row indices over the whole file or folder.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from harness.errors import HarnessError
from harness.io import display_path, iter_arrow_batches
from harness.leaks.fields import FieldMap
from harness.leaks.io import Source, csv_parse_options
from harness.leaks.items import flatten_text

DEFAULT_CHUNK_BYTES = 8 << 20


@dataclass
class Task:
    """A unit of work: where to find a block of rows.

    Exactly one of (start, end), `lines` or `batch` is set. `row_start` is the first
    row's id, or None for byte ranges (resolved after the scan from the row counts).
    """

    source: Source
    seq: int
    row_start: int | None = None
    start: int = 0
    end: int = 0
    lines: list[bytes] | None = None
    batch: Any = None
    size: int = 0


@dataclass
class RowBlock:
    """Row texts of one task, ready for the detectors."""

    texts: list[str]
    n_rows: int
    empty_rows: int = 0


class BadRecord(Exception):
    """A malformed record inside a worker; the parent turns it into a HarnessError."""

    def __init__(self, path: str, byte_offset: int, reason: str):
        super().__init__(path, byte_offset, reason)
        self.path, self.byte_offset, self.reason = path, byte_offset, reason


def _range_bounds(path: str, size: int, chunk_bytes: int) -> list[tuple[int, int]]:
    """Cut [0, size) into ranges of about chunk_bytes that end just after a newline."""
    bounds = []
    start = 0
    with open(path, "rb") as fh:
        while start < size:
            cut = start + chunk_bytes
            if cut >= size:
                bounds.append((start, size))
                break
            fh.seek(cut)
            fh.readline()
            end = min(fh.tell(), size)
            bounds.append((start, end))
            start = end
    return bounds


def plan_tasks(source: Source, chunk_bytes: int = DEFAULT_CHUNK_BYTES, first_seq: int = 0) -> Iterator[Task]:
    """Tasks covering a source, in row order (lazily: nothing is read ahead of the caller).

    Raises:
        HarnessError: the file turns out to be unreadable while streaming.
    """
    seq = first_seq
    fmt = source.format
    try:
        if fmt in ("jsonl", "text") and not source.gz:
            for start, end in _range_bounds(source.files[0], source.size, chunk_bytes):
                yield Task(source, seq, None, start, end, size=end - start)
                seq += 1
        elif fmt in ("jsonl", "text"):
            row = 0
            with gzip.open(source.files[0], "rb") as fh:
                while True:
                    lines = fh.readlines(chunk_bytes)
                    if not lines:
                        break
                    yield Task(source, seq, row, lines=lines, size=sum(map(len, lines)))
                    seq += 1
                    row += len(lines)
        else:
            row = 0
            for batch in _record_batches(source, chunk_bytes):
                yield Task(source, seq, row, batch=batch, size=batch.nbytes)
                seq += 1
                row += batch.num_rows
    except HarnessError:
        raise
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise HarnessError(f"training data {display_path(source.path)} is unreadable: {exc}",
                           "check that the file is complete") from None
    except Exception as exc:
        raise HarnessError(f"training data {display_path(source.path)}: reading {fmt} failed: "
                           f"{str(exc).splitlines()[0][:200]}", "check that the file is complete and well-formed") from None


def _record_batches(source: Source, chunk_bytes: int) -> Iterator[Any]:
    cols = source.fields.columns
    if source.format == "csv":
        import pyarrow.csv as pcsv

        path = Path(source.files[0])
        reader = pcsv.open_csv(
            str(path), read_options=pcsv.ReadOptions(block_size=max(chunk_bytes, 1 << 16)),
            parse_options=csv_parse_options(path),
            # Strings only: type inference on one block can disagree with a later block.
            convert_options=pcsv.ConvertOptions(include_columns=cols, column_types={c: "string" for c in cols}))
        yield from reader
    elif source.format == "parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(source.files[0])
        rows = max(pf.metadata.num_rows, 1)
        per_row = max(source.size / rows, 1.0)
        batch_rows = max(int(chunk_bytes / per_row), 64)
        yield from pf.iter_batches(batch_size=batch_rows, columns=cols)
    else:
        for f in source.files:
            for batch in iter_arrow_batches(Path(f), cols):
                # datasets writes batches of 1000 rows by default; regroup small ones
                # into chunk-sized slices and split big ones.
                if batch.nbytes <= chunk_bytes:
                    yield batch
                    continue
                per_row = max(batch.nbytes / max(batch.num_rows, 1), 1.0)
                step = max(int(chunk_bytes / per_row), 1)
                for off in range(0, batch.num_rows, step):
                    yield batch.slice(off, step)


def _json_rows(lines: list[bytes] | list[str], fields: FieldMap, path: str,
               base_offset: int | None) -> tuple[list[str], int]:
    texts: list[str] = []
    empty = 0
    loads = json.loads
    row_text = fields.row_text
    # Fast path for the commonest form: one plain text field.
    single = fields.text[0] if fields.form == "text" and len(fields.text) == 1 else None
    offset = base_offset
    for line in lines:
        if not line.strip():
            texts.append("")
            empty += 1
        else:
            try:
                rec = loads(line)
            except ValueError as exc:
                raise BadRecord(path, offset if offset is not None else -1, f"invalid JSON ({exc})") from None
            if not isinstance(rec, dict):
                raise BadRecord(path, offset if offset is not None else -1,
                                f"a JSON {type(rec).__name__}, not an object")
            if single is not None:
                v = rec.get(single)
                text = v if isinstance(v, str) else "\n".join(flatten_text(v))
            else:
                text = row_text(rec)
            if not text:
                empty += 1
            texts.append(text)
        if offset is not None:
            offset += len(line) + 1
    return texts, empty


def read_task(task: Task) -> RowBlock:
    """Row texts of one task (runs in a worker).

    Raises:
        BadRecord: a malformed JSON line.
    """
    src = task.source
    if task.batch is not None:
        return _batch_rows(task.batch, src.fields)
    if task.lines is not None:
        lines = [ln.rstrip(b"\r\n") for ln in task.lines]
        offset = None
    else:
        with open(src.files[0], "rb") as fh:
            fh.seek(task.start)
            data = fh.read(task.end - task.start)
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        offset = task.start
    if src.format == "text":
        texts = [ln.decode("utf-8", "replace") for ln in lines]
        return RowBlock(texts, len(texts), sum(1 for t in texts if not t.strip()))
    try:
        # Fast path: decode the block once; json.loads on str skips the per-line
        # encoding detection and decode that bytes input costs.
        str_lines = (b"\n".join(lines) if offset is None else data).decode("utf-8").split("\n")
        if str_lines and str_lines[-1] == "" and len(str_lines) == len(lines) + 1:
            str_lines.pop()
        texts, empty = _json_rows(str_lines, src.fields, src.path, None)
    except (UnicodeDecodeError, BadRecord):
        # Slow path, only to report the first bad line with its byte offset.
        texts, empty = _json_rows(lines, src.fields, src.path, offset)
    return RowBlock(texts, len(texts), empty)


def _batch_rows(batch: Any, fields: FieldMap) -> RowBlock:
    names = batch.schema.names
    n = batch.num_rows
    if fields.form == "text" and len(fields.text) == 1:
        # Column-wise conversion is several times cheaper than row dicts.
        col = batch.column(names.index(fields.text[0])).to_pylist()
        texts = [v if isinstance(v, str) else "\n".join(flatten_text(v)) for v in col]
    else:
        cols = {c: batch.column(names.index(c)).to_pylist() for c in fields.columns}
        texts = [fields.row_text({c: vals[i] for c, vals in cols.items()}) for i in range(n)]
    return RowBlock(texts, n, sum(1 for t in texts if not t))


def line_of_offset(path: str, byte_offset: int) -> int:
    """1-based line number of a byte offset (for error messages)."""
    with open(path, "rb") as fh:
        return fh.read(max(byte_offset, 0)).count(b"\n") + 1
