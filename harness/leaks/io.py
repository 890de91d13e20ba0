"""Training sources for leak scans: a file (JSONL, text, CSV, Parquet) or an arrow folder.

`open_source` checks that a file is readable and resolves its field mapping; `tasks`
cuts it into blocks for the workers. Records are read through `harness.io` (the one
records reader); plain and gzipped JSONL/text are read in byte ranges and line blocks by
`harness.leaks.tasks`, so nothing here loads a training file whole.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, HarnessError
from harness.io import arrow_folder_files, display_path, read_records, record_fields
from harness.leaks.fields import FieldMap, resolve_fields

FORMATS = ("jsonl", "text", "csv", "parquet", "arrow")


@dataclass(frozen=True)
class Source:
    """One training file (or arrow folder), checked and with its field mapping resolved.

    Attributes:
        path: As given by the user.
        format: One of FORMATS.
        fields: The resolved mapping (auto-detected when none was given).
        files: The data files, in order (one, except for arrow folders).
        size: Total bytes of `files`.
        gz: gzip-compressed JSONL/text.
        index: Position among the scan's sources (evidence refers to it).
    """

    path: str
    format: str
    fields: FieldMap
    files: tuple[str, ...]
    size: int
    gz: bool = False
    index: int = 0

    def describe(self) -> dict[str, Any]:
        return {"path": self.path, "format": self.format + (".gz" if self.gz else ""),
                "fields": self.fields.describe(), "bytes": self.size}


def detect_format(path: Path) -> tuple[str, bool]:
    """(format, gzipped) from the path's suffixes; folders are arrow datasets.

    Raises:
        ConfigError: an unknown suffix.
    """
    if path.is_dir():
        return "arrow", False
    name = path.name.lower()
    gz = name.endswith(".gz")
    if gz:
        name = name[:-3]
    for suffix, fmt in ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "jsonl"), (".txt", "text"),
                        (".csv", "csv"), (".tsv", "csv"), (".parquet", "parquet"), (".arrow", "arrow")):
        if name.endswith(suffix):
            if gz and fmt not in ("jsonl", "text"):
                break
            return fmt, gz
    raise ConfigError(f"{display_path(path)}: unknown training data format",
                      "use .jsonl, .txt, .csv, .parquet, .arrow (optionally .jsonl.gz/.txt.gz) or a save_to_disk folder")


def _field_names(path: Path, fmt: str, gz: bool) -> list[str]:
    """Field names available in the file (from its first record, header or schema)."""
    if fmt == "text":
        return ["text"]
    if fmt == "jsonl":
        first = next(read_records(path, "jsonl.gz" if gz else "jsonl", objects=True), None)
        return list(first[1]) if first else []
    return record_fields(path, fmt)


def csv_parse_options(path: Path) -> Any:
    """pyarrow CSV parse options for a .csv or .tsv file (quoted newlines allowed)."""
    import pyarrow.csv as pcsv

    return pcsv.ParseOptions(delimiter="\t" if path.name.lower().endswith(".tsv") else ",", newlines_in_values=True)


def open_source(path: str | os.PathLike, fields: FieldMap | None = None, index: int = 0) -> Source:
    """Check that a training file is readable and resolve its field mapping.

    Args:
        path: A file (.jsonl, .txt, .csv, .parquet, .arrow, .jsonl.gz, .txt.gz) or a
            `save_to_disk` folder.
        fields: Explicit mapping; None or empty to detect from the first record.
        index: The source's position in the scan.

    Raises:
        HarnessError: missing/unreadable file, unknown format or field.
    """
    p = Path(path).expanduser()
    where = display_path(p)
    if not p.exists():
        raise HarnessError(f"training data {where}: no such file or folder", "check the --train path")
    fmt, gz = detect_format(p)
    try:
        files = arrow_folder_files(p) if p.is_dir() else [p]
        size = sum(f.stat().st_size for f in files)
        with open(files[0], "rb") as fh:
            fh.read(1)
        available = _field_names(p, fmt, gz)
    except HarnessError:
        raise
    except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile) as exc:
        raise HarnessError(f"training data {where} is unreadable: {exc.__class__.__name__}: {exc}",
                           "check the file's permissions and that it is complete") from None
    except Exception as exc:  # pyarrow raises its own types for corrupt files
        raise HarnessError(f"training data {where} is unreadable as {fmt}: {str(exc).splitlines()[0][:200]}",
                           "check that the file is complete and its suffix matches its format") from None
    if fmt == "text":
        if fields is not None and not fields.empty:
            raise ConfigError(f"{where} is plain text (one row per line) and has no fields to map",
                              "drop --field for .txt files, or convert the file to JSONL")
        resolved = FieldMap(text=("text",))
    elif not available and fmt == "jsonl":
        raise HarnessError(f"training data {where} has no records", "check that the file is the one you trained on")
    else:
        resolved = resolve_fields(fields or FieldMap(), available, where)
    return Source(str(path), fmt, resolved, tuple(str(f) for f in files), size, gz, index)
