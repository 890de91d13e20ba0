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

Modules: `lookup` (names, paths, listing), `suite` (the Suite), `records` (records ->
Examples), `prompt` (jinja), `hooks` (trusted code). Data files are read by `harness.io`.
"""

from __future__ import annotations

import os
from typing import Sequence

from harness.errors import ConfigError
from harness.evaluate.suite_config import load_yaml, parse_suite_spec
from harness.evaluate.suites.lookup import BUNDLED_DIR, SuiteInfo, list_suites, resolve_suite_file, search_dirs
from harness.evaluate.suites.prompt import make_jinja_env
from harness.evaluate.suites.suite import Suite
from harness.io import display_path

__all__ = ["BUNDLED_DIR", "Suite", "SuiteInfo", "list_suites", "load_suite", "make_jinja_env",
           "resolve_suite_file", "search_dirs"]


def load_suite(ref: str | os.PathLike[str], trusted_dirs: Sequence[str | os.PathLike[str]] = ()) -> Suite:
    """Load and validate a suite (schema, metrics, template, hook trust, local data file).

    Records are read lazily by `Suite.examples()`; an asset that is not pulled yet is
    reported there, so listing and inspecting suites works before `harness assets pull`.

    Args:
        ref: A suite name, a suite folder or a suite.yaml path.
        trusted_dirs: Folders whose suites may run their `python:` hook.

    Raises:
        ConfigError: a problem in the suite (one line naming the file and field).
    """
    yaml_path, by_name = resolve_suite_file(ref)
    spec = parse_suite_spec(load_yaml(yaml_path), yaml_path)
    if by_name and spec.name != yaml_path.parent.name:
        raise ConfigError(
            f"{display_path(yaml_path)}: name: '{spec.name}' differs from its folder '{yaml_path.parent.name}'",
            "make `name` match the folder name so lookups by name find it",
        )
    return Suite(spec, yaml_path, trusted_dirs)
