"""Streaming readers for training data: JSONL, text, CSV, Parquet and HF arrow.

Nothing here loads a training file whole. A file is cut into *tasks* that a worker turns
into a block of row texts (`read_task`):

* plain JSONL / text: byte ranges cut at line ends; each worker reads its own range, so
  the parent process ships only (path, start, end);
* gzipped JSONL / text: the parent decompresses sequentially and ships blocks of lines;
* CSV, Parquet, arrow: the parent streams record batches (pyarrow, only the mapped
  columns) and ships them; Arrow IPC pickles as raw buffers.

Row ids: JSONL/text rows are 0-based line numbers (blank lines count, so `row + 1` is
the line an editor shows); CSV rows are 0-based data rows (the header is not a row);
Parquet and arrow rows are 0-based row indices over the whole file or folder.

Record forms, and how their text is assembled (parts joined by newlines):

* prompt/completion: `prompt`, then `completion`;
* text: each `text` field in the order given;
* chat: the `messages` list, each turn's `content` (OpenAI style), `value` (ShareGPT)
  or text parts; role names are skipped.

Without an explicit mapping the form is detected from the first record's field names.
"""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from harness.errors import ConfigError, HarnessError
from harness.leaks.items import flatten_text

FORMATS = ("jsonl", "text", "csv", "parquet", "arrow")
ROLES = ("text", "prompt", "completion", "messages")
DEFAULT_CHUNK_BYTES = 8 << 20

# Auto-detection, tried in order against the first record's field names.
_AUTO_FORMS: list[tuple[str, dict[str, Any]]] = [
    ("messages", {"messages": "messages"}),
    ("messages", {"messages": "conversations"}),
    ("messages", {"messages": "conversation"}),
    ("prompt/completion", {"prompt": "prompt", "completion": "completion"}),
    ("prompt/completion", {"prompt": "prompt", "completion": "response"}),
    ("prompt/completion", {"prompt": "question", "completion": "answer"}),
    ("text", {"text": ("instruction", "input", "output")}),
    ("text", {"text": ("instruction", "output")}),
    ("text", {"text": ("text",)}),
    ("text", {"text": ("content",)}),
]


@dataclass(frozen=True)
class FieldMap:
    """Which fields of a training record hold the text.

    Attributes:
        text: Fields read as plain text, concatenated in this order.
        prompt: The prompt field of prompt/completion records.
        completion: The completion field.
        messages: A list of chat turns ({"role", "content"} or ShareGPT {"from", "value"}).
    """

    text: tuple[str, ...] = ()
    prompt: str | None = None
    completion: str | None = None
    messages: str | None = None

    @property
    def empty(self) -> bool:
        return not (self.text or self.prompt or self.completion or self.messages)

    @property
    def columns(self) -> list[str]:
        """Every mapped field name, in assembly order, no repeats."""
        cols = [c for c in (self.prompt, *self.text, self.completion, self.messages) if c]
        return list(dict.fromkeys(cols))

    @property
    def form(self) -> str:
        if self.messages and not (self.text or self.prompt or self.completion):
            return "messages"
        if (self.prompt or self.completion) and not (self.text or self.messages):
            return "prompt/completion"
        if self.text and not (self.prompt or self.completion or self.messages):
            return "text"
        return "mixed"

    def describe(self) -> dict[str, Any]:
        return {"form": self.form, **{k: v for k, v in (("text", list(self.text)), ("prompt", self.prompt),
                                                          ("completion", self.completion),
                                                          ("messages", self.messages)) if v}}

    def row_text(self, record: dict) -> str:
        """The text of one record under this mapping ("" when its fields are missing)."""
        parts: list[str] = []
        if self.prompt:
            parts += flatten_text(record.get(self.prompt))
        for name in self.text:
            parts += flatten_text(record.get(name))
        if self.completion:
            parts += flatten_text(record.get(self.completion))
        if self.messages:
            parts += flatten_text(_maybe_json(record.get(self.messages)), messages=True)
        return "\n".join(parts)


def _maybe_json(value: Any) -> Any:
    # CSV cells and some Parquet exports store the messages list as a JSON string.
    if isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def parse_field_specs(specs: Sequence[str] | None) -> FieldMap:
    """CLI `--field` values -> FieldMap.

    Each spec is `ROLE=NAME` with ROLE one of text, prompt, completion, messages, or a
    bare `NAME` (short for text=NAME). `text` may repeat; the others may not.

    Raises:
        ConfigError: unknown role, or a role given twice.
    """
    from harness.registry import unknown_name_message

    text: list[str] = []
    single: dict[str, str] = {}
    for spec in specs or []:
        role, sep, name = spec.partition("=")
        if not sep:
            role, name = "text", spec
        role, name = role.strip(), name.strip()
        if role not in ROLES:
            raise ConfigError(f"--field {spec}: {unknown_name_message('field role', role, ROLES)}",
                              "write --field ROLE=NAME, e.g. --field text=body or --field prompt=question")
        if not name:
            raise ConfigError(f"--field {spec}: no field name", f"write --field {role}=NAME")
        if role == "text":
            text.append(name)
        elif role in single:
            raise ConfigError(f"--field {role}= given twice ({single[role]}, {name})",
                              f"pass one --field {role}=NAME (use text=NAME to add more text fields)")
        else:
            single[role] = name
    return FieldMap(text=tuple(text), **single)


# --------------------------------------------------------------------------- sources


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


def _where(path: str | os.PathLike) -> str:
    from harness.evaluate.suite_config import display_path

    return str(display_path(Path(path)))


def arrow_folder_files(folder: Path) -> list[Path]:
    """Data files of a `datasets.save_to_disk` split folder, in dataset order.

    Raises:
        ConfigError: a DatasetDict folder (several splits), or no arrow files.
    """
    folder = Path(folder)
    if (folder / "dataset_dict.json").is_file():
        splits = sorted(p.name for p in folder.iterdir() if p.is_dir())
        raise ConfigError(f"{_where(folder)} holds several splits ({', '.join(splits)})",
                          f"pass the split folder you trained on, e.g. {_where(folder / (splits[0] if splits else 'train'))}")
    state = folder / "state.json"
    if state.is_file():
        try:
            files = [folder / d["filename"] for d in json.loads(state.read_text())["_data_files"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{_where(state)} is not a datasets state file ({exc})",
                              "re-save the dataset with save_to_disk") from None
    else:
        files = sorted(folder.glob("*.arrow"))
    if not files:
        raise ConfigError(f"{_where(folder)}: no .arrow files", "pass a save_to_disk folder or a data file")
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
    raise ConfigError(f"{_where(path)}: unknown training data format",
                      "use .jsonl, .txt, .csv, .parquet, .arrow (optionally .jsonl.gz/.txt.gz) or a save_to_disk folder")


def _first_record(path: Path, fmt: str, gz: bool, files: list[Path]) -> tuple[list[str], dict | None]:
    """Field names available in the file (and its first record, where cheap)."""
    if fmt == "text":
        return ["text"], None
    if fmt == "jsonl":
        opener = gzip.open if gz else open
        with opener(path, "rb") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except ValueError as exc:
                    if lineno == 1 and line.lstrip()[:1] == b"[":
                        raise ConfigError(f"{_where(path)} is a JSON array, not JSON Lines",
                                          "write one JSON object per line (jq -c '.[]' FILE > FILE.jsonl)") from None
                    raise ConfigError(f"{_where(path)}:{lineno}: invalid JSON ({exc})",
                                      "fix or remove that line") from None
                if isinstance(rec, list) and lineno == 1:
                    raise ConfigError(f"{_where(path)} is a JSON array, not JSON Lines",
                                      "write one JSON object per line (jq -c '.[]' FILE > FILE.jsonl)")
                if not isinstance(rec, dict):
                    raise ConfigError(f"{_where(path)}:{lineno}: a JSON {type(rec).__name__}, not an object",
                                      "write one JSON object per line, e.g. {\"text\": ...}")
                return list(rec), rec
        return [], None
    if fmt == "csv":
        import pyarrow.csv as pcsv

        reader = pcsv.open_csv(str(path), parse_options=_csv_parse(path))
        return list(reader.schema.names), None
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return list(pq.ParquetFile(str(path)).schema_arrow.names), None
    return _arrow_schema_names(files[0]), None


def _csv_parse(path: Path):
    import pyarrow.csv as pcsv

    return pcsv.ParseOptions(delimiter="\t" if path.name.lower().endswith(".tsv") else ",", newlines_in_values=True)


def resolve_fields(fields: FieldMap, available: list[str], where: str) -> FieldMap:
    """Check an explicit mapping against the available fields, or detect one.

    Raises:
        ConfigError: a mapped field is missing (with did-you-mean), or no known form fits.
    """
    from harness.registry import unknown_name_message

    if not fields.empty:
        for name in fields.columns:
            if name not in available:
                raise ConfigError(f"{where}: {unknown_name_message('field', name, available)}",
                                  "map an existing field with --field ROLE=NAME (roles: text, prompt, completion, messages)")
        return fields
    have = set(available)
    for _form, mapping in _AUTO_FORMS:
        wanted = [v for vals in mapping.values() for v in ((vals,) if isinstance(vals, str) else vals)]
        if all(w in have for w in wanted):
            kw = {k: (tuple(v) if k == "text" else v) for k, v in mapping.items()}
            return FieldMap(**kw)
    raise ConfigError(f"{where}: cannot tell which fields hold the training text (fields: {', '.join(available) or 'none'})",
                      "pass --field text=NAME, or --field prompt=NAME --field completion=NAME, or --field messages=NAME")


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
    where = _where(p)
    if not p.exists():
        raise HarnessError(f"training data {where}: no such file or folder", "check the --train path")
    fmt, gz = detect_format(p)
    try:
        files = arrow_folder_files(p) if p.is_dir() else [p]
        size = sum(f.stat().st_size for f in files)
        with open(files[0], "rb") as fh:
            fh.read(1)
        available, _ = _first_record(p, fmt, gz, files)
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


# --------------------------------------------------------------------------- tasks


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
        raise HarnessError(f"training data {_where(source.path)} is unreadable: {exc}",
                           "check that the file is complete") from None
    except Exception as exc:
        raise HarnessError(f"training data {_where(source.path)}: reading {fmt} failed: "
                           f"{str(exc).splitlines()[0][:200]}", "check that the file is complete and well-formed") from None


def _record_batches(source: Source, chunk_bytes: int) -> Iterator[Any]:
    cols = source.fields.columns
    if source.format == "csv":
        import pyarrow.csv as pcsv

        path = Path(source.files[0])
        reader = pcsv.open_csv(
            str(path), read_options=pcsv.ReadOptions(block_size=max(chunk_bytes, 1 << 16)),
            parse_options=_csv_parse(path),
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


def sha256_files(files: Sequence[str], block: int = 1 << 20) -> str:
    """sha256 over the bytes of `files`, streamed, in order."""
    import hashlib

    h = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(block), b""):
                h.update(chunk)
    return h.hexdigest()


__all__ = ["FieldMap", "Source", "Task", "RowBlock", "BadRecord", "open_source", "parse_field_specs",
           "plan_tasks", "read_task", "resolve_fields", "detect_format", "arrow_folder_files",
           "iter_arrow_batches", "sha256_files", "line_of_offset", "FORMATS"]
