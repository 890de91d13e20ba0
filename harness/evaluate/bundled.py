"""Where the bundled suites live: inside an installed wheel, or in the source checkout.

The suites are kept in the repository's top-level `suites/` folder; a wheel ships the same
files as `harness/_suites/` (the `harness._suites` package-dir mapping in pyproject.toml).
An editable install or a plain checkout has no `harness/_suites/`, so the checkout's
folder is used there.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[1]


def bundled_suites_dir() -> Path:
    """The resolved folder holding the bundled suites, one sub-folder per suite.

    Returns:
        `harness/_suites/` when the package was installed from a wheel, else the
        checkout's top-level `suites/` folder.
    """
    installed = _PACKAGE / "_suites"
    return installed if installed.is_dir() else _PACKAGE.parent / "suites"
