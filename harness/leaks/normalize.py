"""Text normalisation shared by every detector, on both sides of the comparison.

A token is a maximal run of letters and digits after lower-casing; everything else
(punctuation, underscores, whitespace, symbols) separates tokens. This is the GPT-3 /
PaLM style of normalisation: casing and punctuation edits of a leaked item vanish, so
only word-level changes can hide a copy.

It runs on UTF-8 bytes, mostly in C: `bytes.lower` + a 256-byte translate table + `split`
(several hundred MB/s). ASCII letters and digits are word bytes, other ASCII bytes are
separators, bytes >= 128 are word bytes. Before that, each run of non-ASCII characters
(found with numpy, rare in most text) is folded on its own: NFKC, `str.lower`, and every
character that is not a Unicode letter or digit (curly quotes, dashes, ellipses, ...)
becomes a space (leftover combining diacritics are dropped). So "Don’t — CAFÉ" and
"don't cafe\u0301" normalise alike, while the cost of Unicode handling is paid per
non-ASCII run, not per byte. Eval items and training rows go through the same function,
so their tokens always agree.
"""

from __future__ import annotations

import itertools
import re
import unicodedata

import numpy as np

# Row separator inside a joined chunk. It is a control character, which normalisation
# maps to a separator anywhere it occurs inside a text, so it is never part of a token.
ROW_SEP = "\x01"
ROW_SEP_TOKEN = ROW_SEP.encode()

_WORD_BYTES = set(range(ord("0"), ord("9") + 1)) | set(range(ord("a"), ord("z") + 1)) | set(range(128, 256))
_TABLE = bytes(c if c in _WORD_BYTES or c == ord(ROW_SEP) else 0x20 for c in range(256))
_ALNUM = frozenset(b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_NON_WORD = re.compile(r"[\W_]")
_COMBINING = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")
_WORD_RE = re.compile(r"[^\W_]+")
_ASCII_WORD_RE = re.compile(r"[A-Za-z0-9]+")


def _fold_run(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    # Diacritics that NFKC could not compose ("İ".lower() is "i" + U+0307) are dropped
    # rather than split the word.
    return _NON_WORD.sub(" ", _COMBINING.sub("", text))


def _fold(data: bytes) -> bytes:
    """Fold every run of non-ASCII bytes (see module doc); ASCII bytes pass unchanged."""
    a = np.frombuffer(data, dtype=np.uint8)
    hi = np.flatnonzero(a >= 128)
    if not len(hi):
        return data
    cut = np.flatnonzero(np.diff(hi) > 1)
    starts = hi[np.r_[0, cut + 1]].tolist()
    ends = (hi[np.r_[cut, len(hi) - 1]] + 1).tolist()
    pieces: list[bytes] = []
    prev = 0
    for s, e in zip(starts, ends):
        # A letter just before the run may carry a combining accent ("e" + U+0301).
        if s - 1 >= prev and data[s - 1] in _ALNUM:
            s -= 1
        pieces.append(data[prev:s])
        pieces.append(_fold_run(data[s:e].decode("utf-8", "replace")).encode("utf-8"))
        prev = e
    pieces.append(data[prev:])
    return b"".join(pieces)


def normal_bytes(text: str) -> bytes:
    """The normalised UTF-8 bytes of `text`: tokens separated by runs of spaces."""
    data = text.encode("utf-8", "replace") if not text.isascii() else text.encode("ascii")
    if not text.isascii():
        data = _fold(data)
    return data.lower().translate(_TABLE)


def tokens(text: str) -> list[bytes]:
    """Normalised tokens of one text, as UTF-8 bytes.

    Args:
        text: Any text.

    Returns:
        Lower-cased letter/digit runs, in order.
    """
    return normal_bytes(text).replace(ROW_SEP_TOKEN, b" ").split()


def normalize(text: str) -> str:
    """The normalised form of `text`: its tokens joined by single spaces."""
    return b" ".join(tokens(text)).decode("utf-8")


def chunk_bytes(texts: list[str]) -> bytes:
    """Normalised bytes of many rows at once, with a separator token between rows.

    Rows are joined and normalised in one C-level pass, which is far faster than one call
    per row. The separator (`ROW_SEP_TOKEN`, surrounded by spaces) is a token of its own;
    callers find the row boundaries from it.

    Args:
        texts: Row texts.
    """
    if not texts:
        return b""
    joined = f" {ROW_SEP} ".join(texts)
    if joined.count(ROW_SEP) != len(texts) - 1:
        # A row carries the separator character itself; it is a separator under
        # normalisation anyway, so blank it out before joining.
        joined = f" {ROW_SEP} ".join(t.replace(ROW_SEP, " ") for t in texts)
    return normal_bytes(joined)


def chunk_tokens(texts: list[str]) -> list[bytes]:
    """Tokens of many rows, with `ROW_SEP_TOKEN` between rows (see `chunk_bytes`)."""
    return chunk_bytes(texts).split()


def quote_span(text: str, start: int, end: int, max_chars: int = 400) -> str:
    """The original text of tokens [start, end) of `text`, shortened to `max_chars`.

    Only the text up to the span is tokenised (rows can be whole documents).

    Args:
        text: The original row text.
        start: First token index.
        end: One past the last token index.
        max_chars: Longer quotes are cut in the middle with an ellipsis.
    """
    quote = None
    if 0 <= start < end:
        pattern = _ASCII_WORD_RE if text.isascii() else _WORD_RE
        spans = [m.span() for m in itertools.islice(pattern.finditer(text), end)]
        # ASCII text tokenises identically either way; otherwise check the prefix agrees.
        if len(spans) == end and (pattern is _ASCII_WORD_RE or len(tokens(text[:spans[-1][1]])) == end):
            quote = text[spans[start][0]:spans[end - 1][1]]
    if quote is None:
        quote = b" ".join(tokens(text)[start:end]).decode("utf-8", "replace")
    quote = " ".join(quote.split())
    if len(quote) > max_chars:
        half = max_chars // 2 - 2
        quote = f"{quote[:half]} … {quote[-half:]}"
    return quote
