"""Suites: a folder with `suite.yaml` (schema in harness.evaluate.suite_config), its data and optional hooks.

    suite = load_suite("squad-qa")          # a bundled name, a folder, or a suite.yaml path
    for ex in suite.examples(limit=10):
        prompt = suite.render(ex)

Names are looked up in the folders of `HARNESS_SUITES_PATH` (os.pathsep list), then in the
bundled `suites/` folder; a suite called NAME is the file `<folder>/NAME/suite.yaml`.

Python hooks (`python: hooks.py`) are code: bundled suites are trusted, any other suite
runs its hook only when its folder is inside one of `trusted_dirs`. A hook module may define

    prompt(vars: dict) -> str        render the prompt instead of the YAML `prompt`
    transform(record: dict) -> dict  reshape each raw record before the field mapping
    FILTERS = {"name": fn}           extra jinja filters for the YAML `prompt`

and may call `harness.evaluate.metrics.register_metric` at import time.
"""

from __future__ import annotations

import csv
import difflib
import gzip
import hashlib
import importlib.util
import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Sequence

import yaml
from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, UndefinedError, meta
from jinja2.sandbox import SandboxedEnvironment

from harness.evaluate.suite_config import SuiteSpec, display_path, format_of, load_yaml, parse_suite_spec
from harness.errors import AssetError, ConfigError, HarnessError
from harness.registry import unknown_name_message
from harness.types import Example, GenerationParams, Prompt

BUNDLED_DIR = Path(__file__).resolve().parents[2] / "suites"
SUITE_FILE = "suite.yaml"
ENV_PATH = "HARNESS_SUITES_PATH"

_MISSING = object()


# --------------------------------------------------------------------------- lookup


def search_dirs() -> list[Path]:
    """Folders searched for suites by name: `HARNESS_SUITES_PATH` entries, then bundled."""
    extra = [Path(p).expanduser() for p in os.environ.get(ENV_PATH, "").split(os.pathsep) if p.strip()]
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
    """The suite.yaml a reference points at, and whether it was found by name."""
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


def load_suite(ref: str | os.PathLike[str], trusted_dirs: Sequence[str | os.PathLike[str]] = ()) -> Suite:
    """Load and validate a suite (schema, metrics, template, hook trust, local data file).

    Records are read lazily by `Suite.examples()`; an asset that is not pulled yet is
    reported there, so listing and inspecting suites works before `harness assets pull`.
    """
    yaml_path, by_name = resolve_suite_file(ref)
    spec = parse_suite_spec(load_yaml(yaml_path), yaml_path)
    where = display_path(yaml_path)
    if by_name and spec.name != yaml_path.parent.name:
        raise ConfigError(
            f"{where}: name: '{spec.name}' differs from its folder '{yaml_path.parent.name}'",
            "make `name` match the folder name so lookups by name find it",
        )
    return Suite(spec, yaml_path, trusted_dirs)


# --------------------------------------------------------------------------- listing


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
            if name in seen:
                continue
            seen.add(name)
            try:
                doc = load_yaml(yaml_path)
                if not isinstance(doc, dict):
                    raise ConfigError(f"{display_path(yaml_path)}: not a mapping")
            except HarnessError as exc:
                out.append(SuiteInfo(name, "?", "", yaml_path.parent, source, None, str(exc)))
                continue
            out.append(SuiteInfo(
                name=name,
                version=str(doc.get("version", "?")),
                description=str(doc.get("description") or ""),
                path=yaml_path.parent,
                source=source,
                n_items=_cheap_count(yaml_path.parent, doc.get("data")),
            ))
    return out


def _cheap_count(folder: Path, data: Any) -> int | None:
    if not isinstance(data, dict):
        return None
    try:
        if data.get("file"):
            path = folder / str(data["file"])
        elif data.get("asset") and data.get("path"):
            path = _asset_path(str(data["asset"])) / str(data["path"])
        else:
            return None
        if (data.get("format") or format_of(path.name)) != "jsonl" or not path.is_file():
            return None
        with open(path, "rb") as fh:
            return sum(1 for line in fh if line.strip())
    except (HarnessError, OSError, ImportError):
        return None


# --------------------------------------------------------------------------- the suite


class Suite:
    """A validated suite. Construct with `load_suite`."""

    def __init__(self, spec: SuiteSpec, yaml_path: Path, trusted_dirs: Sequence[str | os.PathLike[str]] = ()):
        self.spec = spec
        self.yaml_path = Path(yaml_path)
        self.path = self.yaml_path.parent
        self.name = spec.name
        self.version = spec.version
        self.description = spec.description
        self._where = display_path(self.yaml_path)
        self._examples: list[Example] | None = None
        self._data_hash: str | None = None
        self._data_path: Path | None = None

        self.hook: ModuleType | None = None
        self._hook_sha: str | None = None
        if spec.python:
            self.hook, self._hook_sha = self._load_hook(spec.python, trusted_dirs)
        self._hook_prompt = self._hook_callable("prompt")
        self._hook_transform = self._hook_callable("transform")

        self._check_metrics()
        self._template = self._compile_prompt()
        if spec.data.file is not None:
            self._data_path = self._local_data_path()
        else:
            self._check_asset_name()

    def __repr__(self) -> str:
        return f"Suite({self.name!r}, version={self.version!r}, path={str(self.path)!r})"

    # ----------------------------------------------------------------- properties

    @property
    def generation(self) -> GenerationParams:
        g = self.spec.generation
        return GenerationParams(max_new_tokens=g.max_new_tokens, stop=tuple(g.stop))

    @property
    def metric_names(self) -> list[str]:
        return list(self.spec.metrics)

    @property
    def data_path(self) -> Path:
        """The data file; for an asset suite this needs the asset pulled."""
        if self._data_path is None:
            self._data_path = self._asset_data_path()
        return self._data_path

    @property
    def data_hash(self) -> str:
        """sha256 of the data file's bytes."""
        if self._data_hash is None:
            h = hashlib.sha256()
            with open(self.data_path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            self._data_hash = h.hexdigest()
        return self._data_hash

    def fingerprint(self) -> dict[str, Any]:
        """What identifies this suite's results: a change in any value makes results incomparable.

        `prompt_hash` covers the template, system message, chat flag, generation settings,
        the field mapping and the hook file's bytes (a hook can change prompts and records).
        """
        s = self.spec
        blob = json.dumps(
            {
                "prompt": s.prompt,
                "system": s.system,
                "chat": s.chat,
                "generation": self.generation.key(),
                "fields": s.fields.model_dump(),
                "python": self._hook_sha,
            },
            sort_keys=True,
            ensure_ascii=False,
        )
        return {
            "name": self.name,
            "version": self.version,
            "data_hash": self.data_hash,
            "prompt_hash": hashlib.sha256(blob.encode("utf-8")).hexdigest(),
            "metrics": self.metric_names,
        }

    # ----------------------------------------------------------------- examples

    def examples(self, limit: int | None = None) -> list[Example]:
        """Examples in file order (the first `limit` when given); ids are unique strings."""
        if self._examples is None:
            self._examples = self._build_examples()
        if limit is None:
            return list(self._examples)
        if limit < 0:
            raise ConfigError(f"limit must be >= 0, got {limit}", "pass a non-negative limit")
        return self._examples[:limit]

    def render(self, example: Example) -> Prompt:
        """The prompt for one example: plain text, or chat messages when `chat: true`."""
        if self._hook_prompt is not None:
            try:
                text = self._hook_prompt(dict(example.vars))
            except Exception as exc:
                raise ConfigError(
                    f"{self._where}: python: prompt() failed on example '{example.id}': "
                    f"{type(exc).__name__}: {exc}",
                    f"fix prompt() in {display_path(self._hook_file())}",
                ) from exc
            if not isinstance(text, str):
                raise ConfigError(
                    f"{self._where}: python: prompt() returned {type(text).__name__}, not str",
                    f"return the prompt text from prompt() in {display_path(self._hook_file())}",
                )
        else:
            assert self._template is not None
            try:
                text = self._template.render(example.vars)
            except UndefinedError as exc:
                raise ConfigError(
                    f"{self._where}: prompt: {exc.message} (example '{example.id}')",
                    f"use one of the variables {', '.join(sorted(example.vars)) or '(none)'}, "
                    "or map it under fields.vars",
                ) from None
            except TemplateError as exc:
                raise ConfigError(
                    f"{self._where}: prompt: {type(exc).__name__}: {exc} (example '{example.id}')",
                    "fix the template expression",
                ) from None
        if not self.spec.chat:
            return Prompt(text=text)
        messages: list[tuple[str, str]] = []
        if self.spec.system is not None:
            messages.append(("system", self.spec.system))
        messages.append(("user", text))
        return Prompt(messages=tuple(messages))

    def check(self, limit: int | None = None) -> int:
        """Read the data and render every example (or the first `limit`); return how many."""
        examples = self.examples(limit)
        for example in examples:
            self.render(example)
        return len(examples)

    # ----------------------------------------------------------------- internals

    def _hook_file(self) -> Path:
        assert self.spec.python is not None
        return self.path / self.spec.python

    def _load_hook(self, rel: str, trusted_dirs: Sequence[str | os.PathLike[str]]) -> tuple[ModuleType, str]:
        folder = self.path.resolve()
        file = (self.path / rel).resolve()
        if not file.is_relative_to(folder):
            raise ConfigError(
                f"{self._where}: python: '{rel}' is outside the suite folder",
                "put the hook module inside the suite folder and name it relative to it",
            )
        if not file.is_file():
            raise ConfigError(
                f"{self._where}: python: {display_path(file)} does not exist",
                f"create it or remove `python: {rel}`",
            )
        if not _is_trusted(folder, trusted_dirs):
            raise ConfigError(
                f"{self._where}: python: this suite would run code from {display_path(file)}, "
                f"but {display_path(folder)} is not a trusted folder",
                f"read that file, then allow it with `--trust-code {display_path(folder)}` "
                "(or remove `python:` from the suite)",
            )
        source = file.read_bytes()
        sha = hashlib.sha256(source).hexdigest()
        tag = hashlib.sha256(str(file).encode()).hexdigest()[:8]
        modname = f"_harness_suite_hook_{self.name.replace('-', '_').replace('.', '_')}_{tag}_{sha[:12]}"
        module = sys.modules.get(modname)
        if module is None:
            spec = importlib.util.spec_from_file_location(modname, file)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[modname] = module
            try:
                spec.loader.exec_module(module)
            except HarnessError as exc:
                del sys.modules[modname]
                raise ConfigError(f"{self._where}: python: {display_path(file)}: {exc.message}", exc.hint) from exc
            except Exception as exc:
                del sys.modules[modname]
                raise ConfigError(
                    f"{self._where}: python: importing {display_path(file)} failed: "
                    f"{type(exc).__name__}: {exc}",
                    "fix the hook module",
                ) from exc
        return module, sha

    def _hook_callable(self, attr: str) -> Callable[..., Any] | None:
        if self.hook is None or not hasattr(self.hook, attr):
            return None
        fn = getattr(self.hook, attr)
        if not callable(fn):
            raise ConfigError(
                f"{self._where}: python: `{attr}` in {display_path(self._hook_file())} is not a function",
                f"define `def {attr}(...)` or remove the name",
            )
        return fn

    def _check_metrics(self) -> None:
        getter = _metric_getter()
        for i, name in enumerate(self.spec.metrics):
            if name.startswith("evaluate:"):
                if not name.split(":", 1)[1].strip():
                    raise ConfigError(
                        f"{self._where}: metrics[{i}]: 'evaluate:' needs a metric name",
                        "write e.g. `evaluate:meteor`",
                    )
                continue
            try:
                getter(name)
            except HarnessError as exc:
                raise ConfigError(
                    f"{self._where}: metrics[{i}]: {exc.message}",
                    exc.hint or "use a registered metric name or `evaluate:NAME`",
                ) from None
            except (KeyError, ValueError) as exc:
                raise ConfigError(
                    f"{self._where}: metrics[{i}]: unknown metric '{name}' ({exc})",
                    "use a registered metric name or `evaluate:NAME`",
                ) from None

    def _compile_prompt(self):
        spec = self.spec
        if self._hook_prompt is not None and spec.prompt is not None:
            raise ConfigError(
                f"{self._where}: prompt: given both here and as prompt() in {display_path(self._hook_file())}",
                "keep one of them",
            )
        if self._hook_prompt is not None:
            return None
        if spec.prompt is None:
            raise ConfigError(
                f"{self._where}: prompt: required key is missing",
                "add a jinja `prompt:` (or define prompt(vars) in the suite's python hook)",
            )
        env = make_jinja_env(getattr(self.hook, "FILTERS", None) if self.hook else None, self._where)
        try:
            ast = env.parse(spec.prompt)
            template = env.from_string(spec.prompt)
        except TemplateSyntaxError as exc:
            line = _block_scalar_line(self.yaml_path, "prompt", exc.lineno)
            where = f"{self._where}:{line}" if line else self._where
            raise ConfigError(
                f"{where}: prompt: template syntax error on line {exc.lineno} of the template: {exc.message}",
                "fix the jinja syntax ({{ var }}, {% for x in xs %}...{% endfor %})",
            ) from None
        if spec.fields.vars is not None:
            used = meta.find_undeclared_variables(ast) - set(env.globals)
            unknown = sorted(used - set(spec.fields.vars))
            if unknown:
                close = difflib.get_close_matches(unknown[0], list(spec.fields.vars), n=1, cutoff=0.6)
                guess = f"did you mean '{close[0]}'? " if close else ""
                raise ConfigError(
                    f"{self._where}: prompt: uses variable '{unknown[0]}', which fields.vars does not define",
                    f"{guess}defined: {', '.join(sorted(spec.fields.vars)) or 'none'}; "
                    f"add `{unknown[0]}: <path>` under fields.vars or fix the name",
                )
        return template

    def _local_data_path(self) -> Path:
        rel = self.spec.data.file
        assert rel is not None
        path = Path(rel).expanduser()
        path = path if path.is_absolute() else self.path / path
        if not path.is_file():
            raise ConfigError(
                f"{self._where}: data.file: {display_path(path)} does not exist",
                f"fix the path (relative to {display_path(self.path)}) or create the file",
            )
        return path

    def _check_asset_name(self) -> None:
        """An unknown asset name is a suite error even before anything is pulled."""
        try:
            from harness.assets import ASSETS
        except ImportError:
            return
        name = self.spec.data.asset
        if name not in ASSETS:
            raise ConfigError(
                f"{self._where}: data.asset: {unknown_name_message('asset', str(name), ASSETS)}",
                "set data.asset to a known asset, or use `file:` for data next to the suite",
            )

    def _asset_data_path(self) -> Path:
        data = self.spec.data
        assert data.asset is not None and data.path is not None
        try:
            base = _asset_path(data.asset)
        except AssetError as exc:
            hint = exc.hint or "set data.asset to one of the available assets"
            raise AssetError(f"{self._where}: data.asset: {exc.message}", hint) from None
        path = (base / data.path)
        if not path.resolve().is_relative_to(base.resolve()):
            raise ConfigError(
                f"{self._where}: data.path: '{data.path}' points outside the asset folder",
                "name a file inside the asset",
            )
        if not path.is_file():
            held = sorted(p.name for p in base.iterdir() if not p.name.startswith(".")) if base.is_dir() else []
            raise ConfigError(
                f"{self._where}: data.path: {path} does not exist in asset '{data.asset}'",
                f"use one of: {', '.join(held) or 'nothing there'}; or re-pull the asset",
            )
        return path

    def _build_examples(self) -> list[Example]:
        fields = self.spec.fields
        path = self.data_path
        out: list[Example] = []
        seen: dict[str, str] = {}
        for index, (label, record) in enumerate(_read_records(path, self.spec.data.resolved_format)):
            where_rec = f"record {index} ({label} of {display_path(path)})"
            if self._hook_transform is not None:
                try:
                    record = self._hook_transform(record)
                except Exception as exc:
                    raise ConfigError(
                        f"{self._where}: python: transform() failed on {where_rec}: {type(exc).__name__}: {exc}",
                        f"fix transform() in {display_path(self._hook_file())}",
                    ) from exc
            if not isinstance(record, dict):
                raise ConfigError(
                    f"{self._where}: data: {where_rec} is a {type(record).__name__}, not an object",
                    "each record must be a JSON object / CSV row",
                )

            def get(dotted: str, field: str) -> Any:
                value = resolve_path(record, dotted)
                if value is _MISSING:
                    keys = ", ".join(map(str, list(record)[:20]))
                    raise ConfigError(
                        f"{self._where}: {field}: {where_rec} has no '{dotted}'",
                        f"fix the dotted path; the record's keys are: {keys}",
                    )
                return value

            if fields.id is None:
                ex_id = str(index)
            else:
                raw_id = get(fields.id, "fields.id")
                if not isinstance(raw_id, (str, int)) or isinstance(raw_id, bool) or raw_id == "":
                    raise ConfigError(
                        f"{self._where}: fields.id: {where_rec} has id {_short(raw_id)}",
                        "ids must be non-empty strings or integers; point fields.id at such a field",
                    )
                ex_id = str(raw_id)
            if ex_id in seen:
                raise ConfigError(
                    f"{self._where}: fields.id: duplicate id '{ex_id}' in {where_rec} (first at {seen[ex_id]})",
                    "make ids unique in the data, or point fields.id at a unique field",
                )
            seen[ex_id] = f"record {index}"

            refs = get(fields.references, "fields.references")
            references = _as_references(refs)
            if references is None:
                raise ConfigError(
                    f"{self._where}: fields.references: {where_rec} has {_short(refs)}; "
                    "references must be a string or a non-empty list of strings",
                    "point fields.references at the gold answer(s)",
                )
            if fields.vars is None:
                ex_vars = dict(record)
            else:
                ex_vars = {name: get(dotted, f"fields.vars.{name}") for name, dotted in fields.vars.items()}
            ex_meta = {"row": index}
            ex_meta.update({name: get(dotted, f"fields.meta.{name}") for name, dotted in fields.meta.items()})
            out.append(Example(id=ex_id, vars=ex_vars, references=references, meta=ex_meta))
        return out


# --------------------------------------------------------------------------- helpers


def make_jinja_env(filters: Any = None, where: str = "") -> SandboxedEnvironment:
    """The prompt environment: sandboxed, StrictUndefined, trim_blocks + lstrip_blocks."""
    env = SandboxedEnvironment(
        undefined=StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    if filters is not None:
        if not isinstance(filters, dict) or not all(callable(f) for f in filters.values()):
            raise ConfigError(f"{where}: python: FILTERS must be a dict of name -> function", "fix FILTERS")
        env.filters.update(filters)
    return env


def resolve_path(record: Any, dotted: str) -> Any:
    """`a.b.0.c` into nested dicts/lists; `_MISSING` when any step is absent."""
    current = record
    for part in dotted.split("."):
        if isinstance(current, dict):
            if part not in current:
                return _MISSING
            current = current[part]
        elif isinstance(current, list) and part.lstrip("-").isdigit():
            i = int(part)
            if not -len(current) <= i < len(current):
                return _MISSING
            current = current[i]
        else:
            return _MISSING
    return current


def _as_references(value: Any) -> tuple[str, ...] | None:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (str(value),)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _read_records(path: Path, fmt: str) -> list[tuple[str, Any]]:
    """(position label, record) pairs in file order."""
    where = display_path(path)
    try:
        if fmt in ("jsonl", "jsonl.gz"):
            opener = gzip.open if fmt == "jsonl.gz" else open
            out = []
            with opener(path, "rt", encoding="utf-8") as fh:
                for lineno, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        out.append((f"line {lineno}", json.loads(line)))
                    except json.JSONDecodeError as exc:
                        raise ConfigError(
                            f"{where}:{lineno}: invalid JSON: {exc.msg} (column {exc.colno})",
                            "fix or regenerate the data file; each line must be one JSON object",
                        ) from None
            return out
        if fmt == "json":
            text = path.read_text(encoding="utf-8")
            try:
                doc = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError(
                    f"{where}:{exc.lineno}: invalid JSON: {exc.msg} (column {exc.colno})",
                    "fix or regenerate the data file",
                ) from None
            if not isinstance(doc, list):
                raise ConfigError(
                    f"{where}: a .json data file must hold a list of records, got {type(doc).__name__}",
                    "write a JSON list, or use .jsonl",
                )
            return [(f"item {i}", rec) for i, rec in enumerate(doc)]
        if fmt == "csv":
            text = path.read_text(encoding="utf-8-sig")
            reader = csv.DictReader(io.StringIO(text, newline=""))
            out = []
            for row in reader:
                out.append((f"line {reader.line_num}", dict(row)))
            return out
    except (OSError, UnicodeDecodeError, EOFError, csv.Error) as exc:
        raise ConfigError(f"{where}: cannot read data: {exc}", "check the file and its format") from None
    raise ConfigError(f"{where}: unknown data format '{fmt}'", "use jsonl, jsonl.gz, json or csv")


def _is_trusted(folder: Path, trusted_dirs: Sequence[str | os.PathLike[str]]) -> bool:
    folder = folder.resolve()
    for d in (BUNDLED_DIR, *trusted_dirs):
        root = Path(d).expanduser().resolve()
        if folder == root or folder.is_relative_to(root):
            return True
    return False


def _asset_path(name: str) -> Path:
    from harness.assets import asset_path

    return asset_path(name)


def _metric_getter() -> Callable[[str], Any]:
    from harness.evaluate.metrics import get_metric

    return get_metric


def _block_scalar_line(yaml_path: Path, key: str, template_line: int | None) -> int | None:
    """The file line of a template line when `key` is a top-level `|` block scalar."""
    if not template_line:
        return None
    try:
        node = yaml.compose(yaml_path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, OSError):
        return None
    if not isinstance(node, yaml.MappingNode):
        return None
    for k, v in node.value:
        if getattr(k, "value", None) == key and isinstance(v, yaml.ScalarNode):
            if v.style == "|":
                return v.start_mark.line + 1 + template_line
            if v.style in (None, "", "'", '"') and template_line == 1:
                return v.start_mark.line + 1
    return None
