"""json-extract: binds the `json_schema:json-extract` metric to schema.json in this folder.

The suite fingerprint hashes this file but not schema.json, so the schema's sha256 is pinned
here: an edited schema fails loading until its new hash is written below, which changes this
file and so the fingerprint (bump the suite version too).
"""

from __future__ import annotations

from pathlib import Path

from harness.evaluate.metrics.structured import register_schema_metric

SCHEMA_SHA256 = "7dc35256ad76c3b9fd1fc239e9b7a3133e67af91f8f9f8c9258f60e0efb08917"

register_schema_metric("json_schema:json-extract", Path(__file__).with_name("schema.json"), sha256=SCHEMA_SHA256)
