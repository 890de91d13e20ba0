"""Refuse to train on the items the adapter will be judged on.

Two checks, both against every example of the given eval suites:

* exact: a training prompt (a user turn, the whole non-assistant part of a chat, a
  prompt, or a text) equals, after normalisation, one of an eval item's exact keys: its
  rendered prompt, its question, its variables, its whole text or a short question with
  its answer. Keys, normalisation and matching are harness.leaks.exact's, the detector
  `harness leaks` labels short items with, so the two agree on what a copy is; casing,
  punctuation and whitespace edits do not hide one. This check always runs.
* leak detector: when `harness.leaks` is importable, its n-gram / MinHash / exact-copy
  scan of whole training rows labels each eval item; "contaminated" items (most of the
  item's text, or a short item with its answer, is in the training data) count as
  overlapping. "suspect" ones (a 13-gram, partial coverage) are only reported,
  because a shared boilerplate sentence should not block training.

The result is a dict written to training.json under `overlap`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from harness.errors import ConfigError, HarnessError
from harness.leaks.exact import build_exact, match_texts
from harness.leaks.items import EvalItem, suite_items
from harness.train.data import Sample

MAX_IDS_SHOWN = 8


def exact_overlap(samples: Sequence[Sample], suite, items: Sequence[EvalItem] | None = None) -> list[tuple[str, str]]:
    """(eval item id, first training sample id) for every item one of whose exact keys a
    training prompt equals (harness.leaks.exact), in item order.

    Args:
        samples: Training samples.
        suite: The loaded eval suite.
        items: `suite_items(suite)` when the caller has them already.
    """
    items = list(items) if items is not None else suite_items(suite)
    texts, owners = [], []
    for s in samples:
        for text in s.prompt_texts():
            texts.append(text)
            owners.append(s.id)
    first: dict[int, int] = {}
    for t, i in match_texts(texts, build_exact(items)):
        first.setdefault(i, t)  # pairs come sorted by text, so this is the earliest sample
    return [(items[i].item_id, owners[first[i]]) for i in sorted(first)]


def _leak_scan(data_files: Sequence[Path], fields: dict[str, str], items: Sequence[EvalItem],
               log: Callable[[str], None]) -> tuple[list[str], list[str], bool]:
    """(contaminated ids, suspect ids, ran) from harness.leaks, or ([], [], False) without it."""
    try:
        from harness.leaks import parse_field_specs, scan
    except ImportError:
        return [], [], False
    specs = [f"{role}={col}" for role, col in fields.items() if role != "id"]
    try:
        report = scan([str(p) for p in data_files], items, fields=parse_field_specs(specs) if specs else None,
                      workers=1)
    except HarnessError:
        raise
    except Exception as exc:  # a detector bug must not hide the exact check's verdict
        log(f"warning: leak detector failed ({type(exc).__name__}: {exc}); using the exact-match check only")
        return [], [], False
    bad = [r["item_id"] for r in report.records if r["label"] == "contaminated"]
    suspect = [r["item_id"] for r in report.records if r["label"] == "suspect"]
    return bad, suspect, True


def check_overlap(samples: Sequence[Sample], data_files: Sequence[Path], fields: dict[str, str],
                  suites: Sequence[str], *, allow: bool = False, trusted_dirs: Sequence[Path] = (),
                  use_leaks: bool = True, log: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """Check training samples against eval suites; raise unless `allow`.

    Args:
        samples: Training (and validation) samples.
        data_files: The files they came from (for the leak detector).
        fields: The role -> column mapping used to read them.
        suites: Suite names or folders the adapter will be evaluated on.
        allow: Report overlap instead of refusing.
        trusted_dirs: Suite folders whose python hooks may run.
        use_leaks: Also run harness.leaks when importable.
        log: Receives warnings.

    Returns:
        {"suites": {name: {"n_items", "overlapping", "ids", "methods", "suspect"}}, "allowed": bool}

    Raises:
        ConfigError: overlap found and not allowed (one line: how many, which ids).
    """
    from harness.evaluate.suites import load_suite

    out: dict[str, Any] = {"suites": {}, "allowed": allow}
    problems = []
    for ref in suites:
        suite = load_suite(ref, trusted_dirs=[str(p) for p in trusted_dirs])
        items = suite_items(suite)
        exact = exact_overlap(samples, suite, items)
        leaked, suspect, ran = _leak_scan(data_files, fields, items, log) if use_leaks else ([], [], False)
        ids = list(dict.fromkeys([i for i, _ in exact] + leaked))
        out["suites"][suite.name] = {
            "n_items": len(suite.examples()), "overlapping": len(ids), "ids": ids,
            "exact": len(exact), "leak_detector": len(leaked) if ran else None,
            "suspect": suspect if ran else None,
            "methods": ["exact"] + (["harness.leaks"] if ran else []),
        }
        if ids:
            shown = ", ".join(ids[:MAX_IDS_SHOWN]) + (f" and {len(ids) - MAX_IDS_SHOWN} more" if len(ids) > MAX_IDS_SHOWN else "")
            how = f"exact {len(exact)}" + (f", leak detector {len(leaked)}" if ran else "")
            problems.append(f"{len(ids)} of {len(suite.examples())} items of suite '{suite.name}' ({how}): {shown}")
    if problems and not allow:
        raise ConfigError(f"training data overlaps eval items: {'; '.join(problems)}",
                          "remove them from the training data, or pass --allow-overlap to train anyway")
    for p in problems:
        log(f"warning: training data overlaps eval items (allowed): {p}")
    return out
