"""Text normalisation shared by every detector, on both sides of the comparison.

A token is a maximal run of letters and digits after lower-casing; everything else
(punctuation, underscores, whitespace, symbols) separates tokens. This is the GPT-3 /
PaLM style of normalisation: casing and punctuation edits of a leaked item vanish, so
only word-level changes can hide a copy.

Two implementations produce the same tokens:

* a fast path for ASCII text (`bytes.lower` + a 256-byte translate table + `split`,
  all in C, several hundred MB/s), used for the bulk of training data;
* a Unicode path (NFKC, `str.lower`, a regex over `[^\\W_]+`) for everything else.

For ASCII input the two are identical by construction (ASCII word characters other than
`_` are exactly `[0-9a-z]` after lowering), which the tests check, so a training row and
an eval item always tokenise the same way whichever path each one took.
"""

from __future__ import annotations

import re
import unicodedata

# Row separator inside a joined chunk. It is a control character, which normalisation
# maps to a separator anywhere it occurs inside text, so it can never be part of a token.
ROW_SEP = "\x01"
ROW_SEP_TOKEN = ROW_SEP.encode()

_WORD_BYTES = set(range(ord("0"), ord("9") + 1)) | set(range(ord("a"), ord("z") + 1))
# bytes >= 128 never reach this table (the ASCII path is taken only for ASCII input).
_TABLE = bytes(c if c in _WORD_BYTES or c == ord(ROW_SEP) else 0x20 for c in range(256))
_WORD_RE = re.compile(r"[^\W_]+")
_WORD_OR_SEP_RE = re.compile(r"[^\W_]+|" + re.escape(ROW_SEP))
_ASCII_WORD_RE = re.compile(r"[A-Za-z0-9]+")


def tokens(text: str) -> list[bytes]:
    """Normalised tokens of one text, as UTF-8 bytes.

    Args:
        text: Any text.

    Returns:
        Lower-cased letter/digit runs, in order.
    """
    if text.isascii():
        return text.encode("ascii").lower().translate(_TABLE).replace(ROW_SEP_TOKEN, b" ").split()
    return [t.encode("utf-8") for t in _WORD_RE.findall(unicodedata.normalize("NFKC", text).lower())]


def normalize(text: str) -> str:
    """The normalised form of `text`: its tokens joined by single spaces."""
    return b" ".join(tokens(text)).decode("utf-8")


def chunk_tokens(texts: list[str]) -> tuple[list[bytes], list[int]]:
    """Tokens of many rows at once, with one separator token between rows.

    Rows are joined and tokenised in one C-level pass, which is several times faster
    than one call per row. The separators (`ROW_SEP_TOKEN`) stay in the list, at
    positions `cumsum(counts + 1) - 1`, so that callers can drop them with one numpy
    mask instead of a Python-level filter over every token.

    Args:
        texts: Row texts.

    Returns:
        (tokens with separators, token count per row).
    """
    if not texts:
        return [], []
    joined = f" {ROW_SEP} ".join(texts)
    if joined.count(ROW_SEP) != len(texts) - 1:
        # A row carries the separator character itself; it is a separator under
        # normalisation anyway, so blank it out before joining.
        joined = f" {ROW_SEP} ".join(t.replace(ROW_SEP, " ") for t in texts)
    if joined.isascii():
        toks = joined.encode("ascii").lower().translate(_TABLE).split()
    else:
        toks = [t.encode("utf-8") for t in _WORD_OR_SEP_RE.findall(unicodedata.normalize("NFKC", joined).lower())]
    counts: list[int] = []
    last = -1
    try:  # list.index runs in C; one Python step per row, not per token
        pos = toks.index(ROW_SEP_TOKEN)
        while True:
            counts.append(pos - last - 1)
            last = pos
            pos = toks.index(ROW_SEP_TOKEN, pos + 1)
    except ValueError:
        counts.append(len(toks) - last - 1)
    return toks, counts


def token_spans(text: str) -> list[tuple[int, int]]:
    """Character offsets (start, end) of each token of `text` in the original string.

    Used only to quote evidence, for the few rows that matched. For non-ASCII text whose
    NFKC form tokenises differently from the raw text the offsets may not line up with
    `tokens(text)`; callers check the count and fall back to the normalised tokens.
    """
    pattern = _ASCII_WORD_RE if text.isascii() else _WORD_RE
    return [m.span() for m in pattern.finditer(text)]


def quote_span(text: str, start: int, end: int, max_chars: int = 400) -> str:
    """The original text of tokens [start, end) of `text`, shortened to `max_chars`.

    Args:
        text: The original row text.
        start: First token index.
        end: One past the last token index.
        max_chars: Longer quotes are cut in the middle with an ellipsis.
    """
    spans = token_spans(text)
    if len(spans) == len(tokens(text)) and 0 <= start < end <= len(spans):
        quote = text[spans[start][0]:spans[end - 1][1]]
    else:
        quote = b" ".join(tokens(text)[start:end]).decode("utf-8", "replace")
    quote = " ".join(quote.split())
    if len(quote) > max_chars:
        half = max_chars // 2 - 2
        quote = f"{quote[:half]} … {quote[-half:]}"
    return quote
