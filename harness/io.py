"""One records reader for suites, training data and leak scans.

    for label, record in read_records(path):      # label: "line 3", "item 0", "row 7"
        ...

Formats, from the file name unless given: `jsonl` (also `.ndjson`), `jsonl.gz`, `json` (a
list of records), `csv` (`.tsv` is tab-separated), `parquet` and `arrow` (an arrow file or a
`datasets.save_to_disk` split folder). Records are read lazily, so taking the first record
of a large file is cheap. Labels name a record for messages: JSON Lines and CSV records by
the line an editor shows (`line N`), JSON list items by index (`item N`, 0-based), Parquet
and arrow rows by 1-based row number (`row N`). Every problem is a one-line ConfigError
that names the file and, where there is one, the line (`data.jsonl:3: invalid JSON ...`).

pyarrow (Parquet, arrow) is imported only when such a file is read.
"""

from __future__ import annotations

import csv
import gzip
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from harness.errors import ConfigError

RECORD_FORMATS = ("jsonl", "jsonl.gz", "json", "csv", "parquet", "arrow")
_SUFFIXES = (("jsonl.gz", "jsonl.gz"), ("ndjson.gz", "jsonl.gz"), ("jsonl", "jsonl"), ("ndjson", "jsonl"),
             ("json", "json"), ("csv", "csv"), ("tsv", "csv"), ("parquet", "parquet"), ("arrow", "arrow"))
_JSONL_ARRAY_HINT = "write one JSON object per line (jq -c '.[]' FILE > FILE.jsonl)"


def display_path(path: str | Path) -> str:
    """The path relative to the working directory when it is under it, else as given."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


def record_format(path: str | Path) -> str | None:
    """The records format a file name implies (one of RECORD_FORMATS), or None."""
    name = Path(path).name.lower()
    return next((fmt for suffix, fmt in _SUFFIXES if name.endswith("." + suffix)), None)


def read_records(path: str | Path, fmt: str | None = None, *,
                 objects: bool = False) -> Iterator[tuple[str, Any]]:
    """(label, record) for every record of a file, in file order, read lazily.

    Args:
        path: The data file (or arrow folder).
        fmt: One of RECORD_FORMATS; default from the file name.
        objects: Refuse records that are not JSON objects (else they are yielded as is,
            for callers that reshape records first).

    Raises:
        ConfigError: unknown format, unreadable file, invalid JSON (naming file and line).
    """
    path = Path(path)
    where = display_path(path)
    fmt = fmt or record_format(path) or ("arrow" if path.is_dir() else None)
    readers = {"jsonl": _jsonl, "jsonl.gz": _jsonl, "json": _json_list, "csv": _csv,
               "parquet": _parquet, "arrow": _arrow}
    if fmt not in readers:
        raise ConfigError(f"{where}: unknown data format '{fmt or path.suffix}'",
                          f"use one of {', '.join(RECORD_FORMATS)}")
    with _reading(where):
        for label, record in readers[fmt](path, fmt):
            if objects and not isinstance(record, dict):
                if isinstance(record, list) and label == "line 1":
                    raise ConfigError(f"{where} is a JSON array, not JSON Lines", _JSONL_ARRAY_HINT)
                raise ConfigError(f"{at(where, label)}: a record must be a JSON object, got {type(record).__name__}",
                                  "write one {...} object per record")
            yield label, record


@contextmanager
def _reading(where: str) -> Iterator[None]:
    """Turns any failure to read a data file into a one-line ConfigError naming it."""
    try:
        yield
    except ConfigError:
        raise
    except (OSError, UnicodeDecodeError, EOFError, csv.Error) as exc:
        raise ConfigError(f"{where}: cannot read data: {type(exc).__name__}: {exc}",
                          "check the file and its format") from None
    except Exception as exc:  # pyarrow raises its own error types for corrupt files
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ConfigError(f"{where}: cannot read data: {type(exc).__name__}: {first}",
                          "check the file and its format") from None


def at(where: str, label: str) -> str:
    """`file:3` for a `line 3` label (editors and terminals jump there), else `file: label`."""
    kind, _, number = label.partition(" ")
    return f"{where}:{number}" if kind == "line" else f"{where}: {label}"


def _jsonl(path: Path, fmt: str) -> Iterator[tuple[str, Any]]:
    opener = gzip.open if fmt == "jsonl.gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                if lineno == 1 and line.lstrip()[:1] == "[":
                    raise ConfigError(f"{display_path(path)} is a JSON array, not JSON Lines", _JSONL_ARRAY_HINT) from None
                raise ConfigError(f"{display_path(path)}:{lineno}: invalid JSON: {exc.msg} (column {exc.colno})",
                                  "fix or regenerate that line; each line must be one JSON object") from None
            if "\\ud" in line.lower():
                _refuse_lone_surrogates(record, f"{display_path(path)}:{lineno}")
            yield f"line {lineno}", record


def _refuse_lone_surrogates(record: Any, where: str) -> None:
    """A `\\ud800`-style escape without its pair decodes to text no tokenizer or UTF-8 file
    can hold; say where, rather than crash in the tokenizer minutes later."""
    try:
        json.dumps(record, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = exc.object[exc.start:exc.end].encode("unicode_escape").decode()
        raise ConfigError(f"{where}: text holds a lone UTF-16 surrogate ({bad}), which is not valid Unicode",
                          "remove it, or write the character with both halves of its surrogate pair") from None


def _json_list(path: Path, fmt: str) -> Iterator[tuple[str, Any]]:
    text = path.read_text(encoding="utf-8")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{display_path(path)}:{exc.lineno}: invalid JSON: {exc.msg} (column {exc.colno})",
                          "fix or regenerate the file") from None
    if not isinstance(doc, list):
        raise ConfigError(f"{display_path(path)}: a .json data file must hold a list of records, got {type(doc).__name__}",
                          "write a JSON list of objects, or use .jsonl")
    escapes = "\\ud" in text.lower()
    for i, record in enumerate(doc):
        if escapes:
            _refuse_lone_surrogates(record, f"{display_path(path)}: item {i}")
        yield f"item {i}", record


def _csv(path: Path, fmt: str) -> Iterator[tuple[str, Any]]:
    delimiter = "\t" if path.name.lower().endswith(".tsv") else ","
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh, delimiter=delimiter)
        for row in reader:
            yield f"line {reader.line_num}", dict(row)


def _parquet(path: Path, fmt: str) -> Iterator[tuple[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError(f"{display_path(path)}: reading Parquet needs pyarrow",
                          "pip install pyarrow, or convert the file to JSONL") from None
    row = 0
    for batch in pq.ParquetFile(str(path)).iter_batches():
        for record in batch.to_pylist():
            row += 1
            yield f"row {row}", record


def _arrow(path: Path, fmt: str) -> Iterator[tuple[str, Any]]:
    row = 0
    for file in arrow_folder_files(path) if path.is_dir() else [path]:
        for batch in iter_arrow_batches(file):
            for record in batch.to_pylist():
                row += 1
                yield f"row {row}", record


def record_fields(path: str | Path, fmt: str | None = None) -> list[str]:
    """Field names of a file's records without reading its rows where the format allows.

    CSV: the header; Parquet and arrow: the schema; JSON Lines and JSON: the first
    record's keys ([] for a file without records).

    Raises:
        ConfigError: as `read_records`.
    """
    path = Path(path)
    fmt = fmt or record_format(path) or ("arrow" if path.is_dir() else None)
    if fmt not in ("csv", "parquet", "arrow"):
        first = next(read_records(path, fmt, objects=True), None)
        return list(first[1]) if first else []
    with _reading(display_path(path)):
        if fmt == "csv":
            delimiter = "\t" if path.name.lower().endswith(".tsv") else ","
            with open(path, encoding="utf-8-sig", newline="") as fh:
                return list(csv.DictReader(fh, delimiter=delimiter).fieldnames or [])
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return list(pq.ParquetFile(str(path)).schema_arrow.names)
        return _arrow_schema_names((arrow_folder_files(path) if path.is_dir() else [path])[0])


def arrow_folder_files(folder: Path) -> list[Path]:
    """Data files of a `datasets.save_to_disk` split folder, in dataset order.

    Raises:
        ConfigError: a DatasetDict folder (several splits), or no arrow files.
    """
    folder = Path(folder)
    if (folder / "dataset_dict.json").is_file():
        splits = sorted(p.name for p in folder.iterdir() if p.is_dir())
        example = display_path(folder / (splits[0] if splits else "train"))
        raise ConfigError(f"{display_path(folder)} holds several splits ({', '.join(splits)})",
                          f"pass the split folder you trained on, e.g. {example}")
    state = folder / "state.json"
    if state.is_file():
        try:
            files = [folder / d["filename"] for d in json.loads(state.read_text())["_data_files"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{display_path(state)} is not a datasets state file ({exc})",
                              "re-save the dataset with save_to_disk") from None
    else:
        files = sorted(folder.glob("*.arrow"))
    if not files:
        raise ConfigError(f"{display_path(folder)}: no .arrow files", "pass a save_to_disk folder or a data file")
    return files


def iter_arrow_batches(path: Path, columns: list[str] | None = None) -> Iterator[Any]:
    """Record batches of an arrow file (IPC stream, as `datasets` writes, or IPC file)."""
    import pyarrow as pa

    with pa.memory_map(str(path)) as src:
        try:
            reader = pa.ipc.open_stream(src)
        except pa.ArrowInvalid:
            src.seek(0)
            reader = pa.ipc.open_file(src)
            for i in range(reader.num_record_batches):
                b = reader.get_batch(i)
                yield b.select(columns) if columns else b
            return
        for b in reader:
            yield b.select(columns) if columns else b


def _arrow_schema_names(path: Path) -> list[str]:
    import pyarrow as pa

    with pa.memory_map(str(path)) as src:
        try:
            return list(pa.ipc.open_stream(src).schema.names)
        except pa.ArrowInvalid:
            src.seek(0)
            return list(pa.ipc.open_file(src).schema.names)
