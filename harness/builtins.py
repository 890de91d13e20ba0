"""Importing this module registers every built-in plugin."""

import harness.evaluate.metrics  # noqa: F401
