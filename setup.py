"""The package list, which pyproject.toml cannot express: `harness*` plus `harness._suites`.

`harness._suites` is the top-level suites/ folder (mapped in `[tool.setuptools.package-dir]`),
so that a wheel carries the bundled suites; everything else is configured in pyproject.toml.
"""

from setuptools import find_namespace_packages, setup

setup(packages=[*find_namespace_packages(include=["harness*"]), "harness._suites"])
