"""Hashed token n-grams in compact numpy arrays.

Each normalised token is hashed once with 64-bit xxhash (through a dict cache: natural
text is Zipfian, so almost every lookup is a hit and costs one C-level dict probe). An
n-gram hash is then a polynomial over the token hashes mod 2**64, computed for every
position at once with n vectorised multiply-adds, and finished with the splitmix64 mixer
so that the top bits are uniform (the prefilter bitmap indexes by them).

Collisions: two different n-grams collide with probability about 2**-64 per pair, so a
scan of 10**11 training n-grams against 10**7 eval n-grams expects far below one false
match; the exact-match step compares these 64-bit values only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xxhash

from harness.leaks.normalize import ROW_SEP_TOKEN, chunk_tokens, tokens

SEED = 0x5EED
_MULT = np.uint64(0x9E3779B97F4A7C15)  # odd, so the polynomial is invertible mod 2**64
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
_CACHE_MAX = 1 << 21  # tokens; ~200 MB of dict at most, then it starts over


class _TokenHashes(dict):
    """bytes -> xxh64; computes and remembers on a miss."""

    def __missing__(self, key: bytes) -> int:
        value = xxhash.xxh64_intdigest(key, SEED)
        self[key] = value
        return value


_CACHE = _TokenHashes()


def hash_tokens(toks: list[bytes]) -> np.ndarray:
    """64-bit xxhash of each token.

    Args:
        toks: Normalised tokens.

    Returns:
        uint64 array, one value per token.
    """
    if len(_CACHE) > _CACHE_MAX:
        _CACHE.clear()
    return np.fromiter(map(_CACHE.__getitem__, toks), dtype=np.uint64, count=len(toks))


SEP_HASH = int(xxhash.xxh64_intdigest(ROW_SEP_TOKEN, SEED))


def mix(h: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, in place; returns `h`."""
    h ^= h >> _S30
    h *= _M1
    h ^= h >> _S27
    h *= _M2
    h ^= h >> _S31
    return h


def ngram_hashes(th: np.ndarray, n: int) -> np.ndarray:
    """Hash of the n-gram starting at every position of a token-hash array.

    Args:
        th: uint64 token hashes.
        n: n-gram length.

    Returns:
        uint64 array of length max(len(th) - n + 1, 0). Positions whose n-gram crosses a
        row boundary are included; callers mask them with `within_rows`.
    """
    m = len(th) - n + 1
    if m <= 0:
        return np.zeros(0, dtype=np.uint64)
    h = th[:m].copy()
    for k in range(1, n):
        h *= _MULT
        h += th[k:k + m]
    return mix(h)


def ngram_hashes_at(th: np.ndarray, pos: np.ndarray, n: int) -> np.ndarray:
    """`ngram_hashes(th, n)[pos]` computed only at `pos` (all must satisfy pos + n <= len(th))."""
    h = th[pos]
    for k in range(1, n):
        h *= _MULT
        h += th[pos + k]
    return mix(h)


def within_rows(row: np.ndarray, pos: np.ndarray, n: int) -> np.ndarray:
    """Mask of positions whose n-gram lies inside one row (and inside the array)."""
    end = pos + (n - 1)
    ok = end < len(row)
    out = np.zeros(len(pos), dtype=bool)
    out[ok] = row[pos[ok]] == row[end[ok]]
    return out


@dataclass
class TokenStream:
    """Token hashes of a chunk of rows, separators removed.

    Attributes:
        hashes: uint64 hash per token.
        row: int32 chunk-local row index of each token.
        row_start: int64 index of each row's first token, plus a final end (len rows + 1).
    """

    hashes: np.ndarray
    row: np.ndarray
    row_start: np.ndarray


def token_stream(texts: list[str]) -> TokenStream:
    """Tokenise and hash a chunk of rows in bulk."""
    toks, counts = chunk_tokens(texts)
    th = hash_tokens(toks)
    counts_arr = np.asarray(counts, dtype=np.int64)
    if len(counts_arr) > 1:
        sep_at = np.cumsum(counts_arr + 1)[:-1] - 1
        keep = np.ones(len(th), dtype=bool)
        keep[sep_at] = False
        th = th[keep]
    row_start = np.zeros(len(counts_arr) + 1, dtype=np.int64)
    np.cumsum(counts_arr, out=row_start[1:])
    row = np.repeat(np.arange(len(counts_arr), dtype=np.int32), counts_arr)
    return TokenStream(th, row, row_start)


def text_hashes(text: str) -> np.ndarray:
    """Token hashes of one text (eval items)."""
    return hash_tokens(tokens(text))


class Bitmap:
    """A one-hash Bloom filter over 64-bit keys, indexed by their top bits.

    The prefilter for the training scan: a uint8 gather per training position rejects
    almost all of them before any exact lookup. Sized to ~1.5% fill.
    """

    def __init__(self, keys: np.ndarray, min_bits: int = 20, max_bits: int = 30):
        bits = int(np.clip(np.ceil(np.log2(max(len(keys), 1) * 64)), min_bits, max_bits))
        self.shift = np.uint64(64 - bits)
        self.bits = np.zeros(1 << (bits - 3), dtype=np.uint8)
        idx = keys >> self.shift
        np.bitwise_or.at(self.bits, (idx >> np.uint64(3)).astype(np.int64),
                         (np.uint8(1) << (idx & np.uint64(7)).astype(np.uint8)))

    def maybe(self, h: np.ndarray) -> np.ndarray:
        """Positions of `h` that may be keys (no false negatives)."""
        idx = h >> self.shift
        byte = self.bits[(idx >> np.uint64(3)).astype(np.intp)]
        return np.flatnonzero((byte >> (idx & np.uint64(7)).astype(np.uint8)) & np.uint8(1))
