"""The Suite: a validated suite.yaml with its data, prompt and optional hook."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import ModuleType
from typing import Any, Sequence

from harness.errors import AssetError, ConfigError, HarnessError
from harness.evaluate.suite_config import SuiteSpec
from harness.evaluate.suites.hooks import call_hook, hook_callable, load_hook
from harness.evaluate.suites.lookup import asset_path
from harness.evaluate.suites.prompt import compile_prompt, render_template
from harness.evaluate.suites.records import ExampleBuilder
from harness.hashing import sha256_bytes, sha256_file
from harness.io import display_path
from harness.suggest import unknown_name_message
from harness.types import Example, GenerationParams, Prompt


class Suite:
    """A validated suite. Construct with `harness.evaluate.suites.load_suite`."""

    def __init__(self, spec: SuiteSpec, yaml_path: Path, trusted_dirs: Sequence[str | os.PathLike[str]] = ()):
        self.spec = spec
        self.yaml_path = Path(yaml_path)
        self.path = self.yaml_path.parent
        self.name = spec.name
        self.version = spec.version
        self.description = spec.description
        self._where = display_path(self.yaml_path)
        self._examples: list[Example] | None = None
        self._pool: list[Example] | None = None
        self._pool_checked = False
        self._data_hash: str | None = None
        self._data_path: Path | None = None

        self.hook: ModuleType | None = None
        self._hook_sha: str | None = None
        if spec.python:
            self.hook, self._hook_sha = load_hook(self.path, spec.python, self.name, self._where, trusted_dirs)
        hook_file = self.path / spec.python if spec.python else None
        self._hook_prompt = hook_callable(self.hook, "prompt", self._where, hook_file)
        self._records = ExampleBuilder(spec.fields, self._where, hook_callable(self.hook, "transform", self._where,
                                                                               hook_file), hook_file)

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
            self._data_hash = sha256_file(self.data_path)
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
                # a holdout changes which records are evaluated; absent, older fingerprints stay valid
                **({"fewshot": s.fewshot.model_dump(exclude_none=True)} if s.fewshot else {}),
            },
            sort_keys=True,
            ensure_ascii=False,
        )
        return {
            "name": self.name,
            "version": self.version,
            "data_hash": self.data_hash,
            "prompt_hash": sha256_bytes(blob.encode("utf-8")),
            "metrics": self.metric_names,
        }

    # ----------------------------------------------------------------- examples

    def examples(self, limit: int | None = None) -> list[Example]:
        """Examples in file order (the first `limit` when given); ids are unique strings."""
        if self._examples is None:
            examples = self._records.build(self.data_path, self.spec.data.resolved_format)
            few = self.spec.fewshot
            if few is not None and few.holdout is not None:
                from harness.evaluate.suites.pool import split_holdout

                examples, self._pool = split_holdout(examples, few.holdout, few.disjoint_on)
            self._examples = examples
        if limit is None:
            return list(self._examples)
        if limit < 0:
            raise ConfigError(f"limit must be >= 0, got {limit}", "pass a non-negative limit")
        return self._examples[:limit]

    @property
    def has_fewshot_pool(self) -> bool:
        return self.spec.fewshot is not None

    def fewshot_pool(self) -> list[Example]:
        """The few-shot pool (`fewshot:`), checked against every eval item (see `suites.pool`).

        Raises:
            ConfigError: no pool declared, an unreadable pool file, or a pool that overlaps the eval set.
        """
        few = self.spec.fewshot
        if few is None:
            raise ConfigError(f"suite '{self.name}' has no few-shot pool",
                              f"add `fewshot: {{file: pool.jsonl}}` (or `holdout: N`) to {self._where}, "
                              "or drop --baseline fewshot:K")
        if not self._pool_checked:
            from harness.evaluate.suites.pool import check_disjoint

            evals = self.examples()
            if few.file is not None:
                path = Path(few.file).expanduser()
                path = path if path.is_absolute() else self.path / path
                if not path.is_file():
                    raise ConfigError(f"{self._where}: fewshot.file: {display_path(path)} does not exist",
                                      f"fix the path (relative to {display_path(self.path)}) or create the file")
                self._pool = self._records.build(path, few.resolved_format)
            # a holdout is disjoint by construction; it is checked all the same, as a file is
            check_disjoint(self._pool or [], evals, self.render, few.disjoint_on, self._where)
            self._pool_checked = True
        return list(self._pool or [])

    def fewshot_pool_hash(self) -> str:
        """sha256 of the pool's source: the pool file's bytes, or the data file's for a holdout."""
        few = self.spec.fewshot
        if few is not None and few.file is not None:
            path = Path(few.file).expanduser()
            return sha256_file(path if path.is_absolute() else self.path / path)
        return self.data_hash

    def render(self, example: Example) -> Prompt:
        """The prompt for one example: plain text, or chat messages when `chat: true`."""
        if self._hook_prompt is not None:
            text = self._hook_render(example)
        else:
            assert self._template is not None
            text = render_template(self._template, example, self._where)
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

    def _hook_render(self, example: Example) -> str:
        assert self._hook_prompt is not None
        text = call_hook(self._hook_prompt, dict(example.vars), "prompt", f"example '{example.id}'", self._where,
                         self._hook_file())
        if not isinstance(text, str):
            raise ConfigError(f"{self._where}: python: prompt() returned {type(text).__name__}, not str",
                              f"return the prompt text from prompt() in {display_path(self._hook_file())}")
        return text

    def _check_metrics(self) -> None:
        from harness.evaluate.metrics import get_metric

        for i, name in enumerate(self.spec.metrics):
            if name.startswith("evaluate:"):
                if not name.split(":", 1)[1].strip():
                    raise ConfigError(f"{self._where}: metrics[{i}]: 'evaluate:' needs a metric name",
                                      "write e.g. `evaluate:meteor`")
                continue
            try:
                get_metric(name)
            except HarnessError as exc:
                raise ConfigError(f"{self._where}: metrics[{i}]: {exc.message}",
                                  exc.hint or "use a registered metric name or `evaluate:NAME`") from None

    def _compile_prompt(self) -> Any:
        if self._hook_prompt is not None:
            if self.spec.prompt is not None:
                raise ConfigError(
                    f"{self._where}: prompt: given both here and as prompt() in {display_path(self._hook_file())}",
                    "keep one of them",
                )
            return None
        filters = getattr(self.hook, "FILTERS", None) if self.hook else None
        return compile_prompt(self.spec, self.yaml_path, self._where, filters)

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
        from harness.assets import ASSETS

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
            base = asset_path(data.asset)
        except AssetError as exc:
            hint = exc.hint or "set data.asset to one of the available assets"
            raise AssetError(f"{self._where}: data.asset: {exc.message}", hint) from None
        path = base / data.path
        if not path.resolve().is_relative_to(base.resolve()):
            raise ConfigError(f"{self._where}: data.path: '{data.path}' points outside the asset folder",
                              "name a file inside the asset")
        if not path.is_file():
            held = sorted(p.name for p in base.iterdir() if not p.name.startswith(".")) if base.is_dir() else []
            raise ConfigError(
                f"{self._where}: data.path: {path} does not exist in asset '{data.asset}'",
                f"use one of: {', '.join(held) or 'nothing there'}; or re-pull the asset",
            )
        return path
