"""Importing this module registers every built-in plugin."""

import harness.metrics  # noqa: F401
