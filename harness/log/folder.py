"""`RunFolder`: the one place that knows a run folder's file names and how to read and
write them.

    folder = RunFolder("runs/cmp")
    meta = folder.read_meta()          # RunMeta
    items = folder.read_items()        # list[ItemRecord]

Reads validate against `harness.log.schema`; a malformed file raises `RunLogError` (exit 2)
naming the file and line, never an AttributeError deep in a reader. Every write goes through
`atomic_write` (write a temporary file, then rename): a reader, or CI uploading the folder,
never sees half a file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, TypeVar

from pydantic import BaseModel, ValidationError

from harness.errors import RunLogError
from harness.log.schema import (
    RUN_SCHEMA_VERSION,
    ItemRecord,
    LeakRecord,
    RunMeta,
    VerdictDoc,
)

RUN = "run.json"
ITEMS = "items.jsonl"
LEAKS = "leaks.jsonl"
LEAK_SUMMARY = "leaks.json"
VERDICT = "verdict.json"
SUMMARY = "summary.md"
JUNIT = "junit.xml"
REPORT = "report.html"
ADAPTERS = "adapters"
CI_FILES = (SUMMARY, JUNIT, VERDICT)
DERIVED = (LEAKS, LEAK_SUMMARY, *CI_FILES, REPORT)  # written from a run: stale once the run is replaced
RERENDER = "re-run the evaluation with this harness version (cached items make it quick), then `harness gate`/`harness report` on the new folder"
M = TypeVar("M", bound=BaseModel)


def atomic_write(path: str | os.PathLike, chunks: Iterable[str]) -> Path:
    """Writes text to `path` through a temporary file and a rename; returns the path."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            for chunk in chunks:
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _problem(exc: ValidationError) -> str:
    """The first validation error as `field.path: message`."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "document"
    return f"{where}: {err['msg']}"


def _validate(model: type[M], data: Any, where: str, fix: str) -> M:
    if not isinstance(data, dict):
        raise RunLogError(f"{where} is a JSON {type(data).__name__}, not an object", fix)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RunLogError(f"{where} does not match the {model.__name__} schema ({_problem(exc)})", fix) from None


class RunFolder:
    """A run folder: run.json, items.jsonl and what later stages write beside them."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def file(self, name: str) -> Path:
        """Path of one of the folder's files (use the module's constants for `name`)."""
        return self.path / name

    @property
    def run_json(self) -> Path:
        return self.path / RUN

    @property
    def items_jsonl(self) -> Path:
        return self.path / ITEMS

    @property
    def leaks_jsonl(self) -> Path:
        return self.path / LEAKS

    @property
    def verdict_json(self) -> Path:
        return self.path / VERDICT

    @property
    def report_html(self) -> Path:
        return self.path / REPORT

    @property
    def adapters(self) -> Path:
        return self.path / ADAPTERS

    def has_run(self) -> bool:
        return self.run_json.is_file()

    # ---- reading -------------------------------------------------------------------------

    def _json(self, path: Path, fix: str) -> Any:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise RunLogError(f"{path} is not valid JSON ({exc})", fix) from None

    def read_meta(self) -> RunMeta:
        """run.json as a `RunMeta`.

        Raises:
            RunLogError: Missing, not JSON, of a schema version this harness does not read, or
                not matching the schema.
        """
        if not self.run_json.is_file():
            raise RunLogError(f"no {RUN} in {self.path}", "pass the --out folder of a finished `harness run`/`compare`")
        data = self._json(self.run_json, "re-run the evaluation to rewrite it")
        version = data.get("schema_version") if isinstance(data, dict) else None
        if isinstance(data, dict) and version != RUN_SCHEMA_VERSION:
            raise RunLogError(f"{self.run_json} has run-log schema {version}, this harness reads {RUN_SCHEMA_VERSION}",
                              RERENDER)
        return _validate(RunMeta, data, str(self.run_json), RERENDER)

    def read_spec(self) -> dict[str, Any] | None:
        """The `spec` of an existing run.json, or None when there is none or it cannot be read."""
        try:
            data = json.loads(self.run_json.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data.get("spec") if isinstance(data, dict) else None

    def written_by_ab(self) -> bool:
        """Whether run.json is an `ab` run (training records beside the evaluation), which a
        new `ab` into the same folder resumes rather than replaces."""
        try:
            data = json.loads(self.run_json.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(data, dict) and bool(data.get("training"))

    def _lines(self, path: Path, model: type[M], fix: str) -> list[M]:
        out = []
        with open(path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    data = json.loads(line)
                except ValueError:
                    raise RunLogError(f"{path}:{n} is not valid JSON", fix) from None
                out.append(_validate(model, data, f"{path}:{n}", fix))
        return out

    def read_items(self) -> list[ItemRecord]:
        """items.jsonl, one `ItemRecord` per line.

        Raises:
            RunLogError: Missing file, or a line that is not JSON or not an item record.
        """
        if not self.items_jsonl.is_file():
            raise RunLogError(f"no {ITEMS} in {self.path}",
                              "the run was not finished: re-run it (cached items are reused)")
        return self._lines(self.items_jsonl, ItemRecord, "re-run the evaluation to rewrite it")

    def read_leaks(self, path: Path | None = None) -> list[LeakRecord]:
        """leaks.jsonl (or `path`, relative to the folder) as `LeakRecord`s; [] when absent."""
        path = self.path / path if path is not None else self.leaks_jsonl
        if not path.is_file():
            return []
        return self._lines(path, LeakRecord, "re-run the leak check (`harness leaks` or `compare --train`)")

    def read_verdict(self) -> VerdictDoc | None:
        """verdict.json as a `VerdictDoc`, or None when the folder has not been gated.

        Raises:
            RunLogError: Not JSON or not a verdict document.
        """
        if not self.verdict_json.is_file():
            return None
        data = self._json(self.verdict_json, "re-run `harness gate` on this folder")
        return _validate(VerdictDoc, data, str(self.verdict_json), "re-run `harness gate` on this folder")

    # ---- writing -------------------------------------------------------------------------

    def write_run(self, meta: RunMeta, items: Iterable[ItemRecord | dict[str, Any]]) -> None:
        """Writes items first, then run.json: a run.json on disk always has its items beside it.

        Dict items are validated as `ItemRecord`s, so a writer's bug fails here, not in a reader.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        records = (r if isinstance(r, ItemRecord) else _validate(ItemRecord, r, f"item record for {ITEMS}",
                                                                  "fix the writer of this record")
                   for r in items)
        atomic_write(self.items_jsonl, (r.to_line() for r in records))
        atomic_write(self.run_json, [meta.to_json()])

    def write_meta(self, meta: RunMeta) -> None:
        """Rewrites run.json (e.g. after adding `ab` to a finished run)."""
        atomic_write(self.run_json, [meta.to_json()])

    def write_text(self, name: str, text: str) -> Path:
        """Writes one of the folder's text files atomically."""
        self.path.mkdir(parents=True, exist_ok=True)
        return atomic_write(self.path / name, [text])

    def clear_derived(self, in_use: Iterable[str | os.PathLike] = ()) -> None:
        """Removes every file derived from the folder's previous run (leak labels, CI files, the
        report, `ab`'s trained adapters unless `in_use` holds a path inside them), so a
        replaced run leaves nothing describing models it does not have. Files the harness did
        not name are left alone."""
        import shutil

        for name in DERIVED:
            (self.path / name).unlink(missing_ok=True)
        mine = self.adapters.resolve()
        if self.adapters.is_dir() and not any(mine in Path(p).resolve().parents for p in in_use):
            shutil.rmtree(self.adapters)

    def clear_ci_files(self) -> None:
        """Removes summary.md, junit.xml and verdict.json, so a failed gate leaves no stale verdict."""
        for name in CI_FILES:
            (self.path / name).unlink(missing_ok=True)
