"""Word-level differences between a base and an adapter output, as highlight ranges.

The browser draws the highlights, so ranges are sent instead of marked-up text: each output
is embedded once, and the page slices it with `String.prototype.slice`. JavaScript strings
index UTF-16 code units while Python indexes code points, so offsets are converted for text
outside the Basic Multilingual Plane (emoji), or highlights would drift after the first one.
"""

from __future__ import annotations

import difflib
import re

_WORDS = re.compile(r"\S+")
# Quadratic matching on very long outputs costs more than the highlight is worth.
MAX_WORDS = 2000


def _words(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in _WORDS.finditer(text)]


def _utf16(text: str):
    """Code-point offset -> UTF-16 offset (identity when every character is in the BMP)."""
    if text.isascii() or len(text.encode("utf-16-le", "surrogatepass")) == 2 * len(text):
        return lambda i: i
    prefix = [0]
    for c in text:
        prefix.append(prefix[-1] + (2 if ord(c) >= 0x10000 else 1))
    return lambda i: prefix[i]


def _ranges(spans: list[tuple[int, int]], runs: list[tuple[int, int]], conv) -> list[int]:
    out: list[int] = []
    for lo, hi in runs:
        if lo >= hi:
            continue
        out += [conv(spans[lo][0]), conv(spans[hi - 1][1])]
    return out


def word_diff(base: str, other: str) -> tuple[list[int], list[int]] | None:
    """Ranges of words only in `base` and only in `other`.

    Args:
        base: The base model's output.
        other: The adapter's output.

    Returns:
        (base ranges, other ranges), each a flat list [start0, end0, start1, end1, ...] of
        UTF-16 offsets of changed words; None when the texts are equal or too long to diff.
    """
    if base == other:
        return None
    a, b = _words(base), _words(other)
    if len(a) > MAX_WORDS or len(b) > MAX_WORDS:
        return None
    matcher = difflib.SequenceMatcher(None, [base[s:e] for s, e in a], [other[s:e] for s, e in b], autojunk=False)
    gone, new = [], []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            gone.append((i1, i2))
            new.append((j1, j2))
    return _ranges(a, gone, _utf16(base)), _ranges(b, new, _utf16(other))
