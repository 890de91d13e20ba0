"""Finding suites: by name on `HARNESS_SUITES_PATH` and in the bundled folder, or by path."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, HarnessError
from harness.evaluate.bundled import bundled_suites_dir
from harness.evaluate.suite_config import load_yaml
from harness.io import display_path, record_format
from harness.suggest import unknown_name_message

BUNDLED_DIR = bundled_suites_dir()
SUITE_FILE = "suite.yaml"
ENV_PATH = "HARNESS_SUITES_PATH"


_warned: set[str] = set()  # HARNESS_SUITES_PATH entries already warned about in this process


def search_dirs() -> list[Path]:
    """Folders searched for suites by name: `HARNESS_SUITES_PATH` entries, then bundled.

    An entry that is not an existing folder is skipped, with one warning line on stderr the
    first time this process meets it.
    """
    extra: list[Path] = []
    for entry in os.environ.get(ENV_PATH, "").split(os.pathsep):
        if not entry.strip():
            continue
        folder = Path(entry).expanduser()
        if folder.is_dir():
            extra.append(folder)
        elif entry not in _warned:
            _warned.add(entry)
            what = "is not a folder" if folder.exists() else "does not exist"
            print(f"warning: {ENV_PATH} entry '{entry}' {what}; fix: point it at a folder that holds "
                  f"suite folders (NAME/{SUITE_FILE}), or remove it from {ENV_PATH}", file=sys.stderr)
    return [*extra, BUNDLED_DIR]


def _by_name(name: str) -> Path | None:
    for folder in search_dirs():
        candidate = folder / name / SUITE_FILE
        if candidate.is_file():
            return candidate
    return None


def _known_names() -> list[str]:
    names: set[str] = set()
    for folder in search_dirs():
        if folder.is_dir():
            names.update(p.parent.name for p in folder.glob(f"*/{SUITE_FILE}"))
    return sorted(names)


def _looks_like_path(ref: str) -> bool:
    return "/" in ref or os.sep in ref or ref.endswith((".yaml", ".yml")) or ref in (".", "..")


def resolve_suite_file(ref: str | os.PathLike[str]) -> tuple[Path, bool]:
    """The suite.yaml a reference points at, and whether it was found by name.

    Raises:
        ConfigError: no such file or folder, a folder without suite.yaml, an unknown name.
    """
    text = os.fspath(ref)
    if not _looks_like_path(text):
        found = _by_name(text)
        if found is not None:
            return found, True
    path = Path(text).expanduser()
    if path.is_dir():
        for fname in (SUITE_FILE, "suite.yml"):
            if (path / fname).is_file():
                return path / fname, False
        raise ConfigError(
            f"{display_path(path)}: folder has no {SUITE_FILE}",
            f"create {display_path(path / SUITE_FILE)} or pass the suite file itself",
        )
    if path.is_file():
        return path, False
    if _looks_like_path(text):
        raise ConfigError(f"{text}: no such suite file or folder", "check the path")
    raise ConfigError(
        unknown_name_message("suite", text, _known_names()),
        f"run `harness suites list`, pass a suite folder, or add its parent folder to {ENV_PATH}",
    )


@dataclass(frozen=True)
class SuiteInfo:
    """A cheap summary for `harness suites list` (the YAML is read, not validated)."""

    name: str
    version: str
    description: str
    path: Path
    source: str  # "bundled" or the HARNESS_SUITES_PATH folder it came from
    n_items: int | None = None  # counted only for jsonl data that is already on disk
    error: str | None = None  # set when the YAML cannot be read


def list_suites() -> list[SuiteInfo]:
    """Every suite findable by name, first match wins (as in `load_suite`)."""
    seen: set[str] = set()
    out: list[SuiteInfo] = []
    for folder in search_dirs():
        if not folder.is_dir():
            continue
        source = "bundled" if folder.resolve() == BUNDLED_DIR else str(folder)
        for yaml_path in sorted(folder.glob(f"*/{SUITE_FILE}")):
            name = yaml_path.parent.name
            if name not in seen:
                seen.add(name)
                out.append(_info(name, yaml_path, source))
    return out


def _info(name: str, yaml_path: Path, source: str) -> SuiteInfo:
    try:
        doc = load_yaml(yaml_path)
        if not isinstance(doc, dict):
            raise ConfigError(f"{display_path(yaml_path)}: not a mapping")
    except HarnessError as exc:
        return SuiteInfo(name, "?", "", yaml_path.parent, source, None, str(exc))
    return SuiteInfo(
        name=name,
        version=str(doc.get("version", "?")),
        description=str(doc.get("description") or ""),
        path=yaml_path.parent,
        source=source,
        n_items=_cheap_count(yaml_path.parent, doc.get("data")),
    )


def _cheap_count(folder: Path, data: Any) -> int | None:
    if not isinstance(data, dict):
        return None
    try:
        if data.get("file"):
            path = folder / str(data["file"])
        elif data.get("asset") and data.get("path"):
            path = asset_path(str(data["asset"])) / str(data["path"])
        else:
            return None
        if (data.get("format") or record_format(path.name)) != "jsonl" or not path.is_file():
            return None
        with open(path, "rb") as fh:
            return sum(1 for line in fh if line.strip())
    except (HarnessError, OSError, ImportError):
        return None


def asset_path(name: str) -> Path:
    """The folder of a pulled asset (imported late: listing suites needs no asset code)."""
    from harness.assets import asset_path as path_of

    return path_of(name)
