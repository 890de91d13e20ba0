"""Hashed token n-grams in compact numpy arrays.

Token hashes are exactly XXH64 (seed `SEED`) of each normalised token's UTF-8 bytes,
computed for all tokens of a chunk at once: numpy finds the token spans in the
normalised byte buffer and runs the XXH64 small-input steps (8-byte lanes, a 4-byte
lane, single bytes, avalanche) on all tokens in parallel; the rare token of 32 bytes or
more goes through the xxhash library. No Python object is created per token, which is
what makes the scan run at tens of MB/s per core; the tests check every value against
`xxhash.xxh64_intdigest`, and any engine with an XXH64 implementation (Spark, DuckDB,
Rust) reproduces the same hashes.

An n-gram hash is then a polynomial over the token hashes mod 2**64, computed for every
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

from harness.leaks.normalize import ROW_SEP, chunk_bytes, normal_bytes

SEED = 0x5EED
_MULT = np.uint64(0x9E3779B97F4A7C15)  # odd, so the polynomial is invertible mod 2**64
_INV = np.uint64(pow(0x9E3779B97F4A7C15, -1, 1 << 64))
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)

# XXH64 primes
_P1 = np.uint64(0x9E3779B185EBCA87)
_P2 = np.uint64(0xC2B2AE3D27D4EB4F)
_P3 = np.uint64(0x165667B19E3779F9)
_P4 = np.uint64(0x85EBCA77C2B2AE63)
_P5 = np.uint64(0x27D4EB2F165667C5)
_LOW32 = np.uint64(0xFFFFFFFF)
_SEP_BYTE = ord(ROW_SEP)


def _rotl(x: np.ndarray, r: int) -> np.ndarray:
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


def byte_spans(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(start, length) of every token in a normalised byte buffer (tokens are separated by spaces)."""
    a = np.frombuffer(data, dtype=np.uint8)
    word = (a != 0x20).view(np.int8)
    edge = np.diff(word, prepend=np.int8(0), append=np.int8(0))
    starts = np.flatnonzero(edge == 1)
    ends = np.flatnonzero(edge == -1)
    return starts, ends - starts


def xxh64_spans(data: bytes, starts: np.ndarray, lens: np.ndarray, seed: int = SEED) -> np.ndarray:
    """XXH64 of every `data[start:start+len]`, vectorised.

    Args:
        data: A byte buffer.
        starts: int array of span starts.
        lens: int array of span lengths (> 0).
        seed: XXH64 seed.

    Returns:
        uint64 array, equal to `xxhash.xxh64_intdigest(data[s:s+l], seed)` element-wise.
    """
    n = len(data)
    padded = np.frombuffer(data + b"\0" * 8, dtype=np.uint8)
    # A little-endian uint64 view starting at every byte offset (unaligned reads).
    u64 = np.ndarray((n + 1,), dtype="<u8", buffer=padded, strides=(1,))
    rem = lens.astype(np.int64)
    pos = starts.astype(np.int64)
    h = rem.astype(np.uint64) + (np.uint64(seed) + _P5)
    # Up to three 8-byte lanes (inputs of 32+ bytes take XXH64's stripe path, below).
    idx = np.flatnonzero((rem >= 8) & (rem < 32))
    while len(idx):
        k1 = _rotl(u64[pos[idx]] * _P2, 31) * _P1
        h[idx] = _rotl(h[idx] ^ k1, 27) * _P1 + _P4
        pos[idx] += 8
        rem[idx] -= 8
        idx = idx[rem[idx] >= 8]
    idx = np.flatnonzero((rem >= 4) & (rem < 8))
    if len(idx):
        h[idx] = _rotl(h[idx] ^ ((u64[pos[idx]] & _LOW32) * _P1), 23) * _P2 + _P3
        pos[idx] += 4
        rem[idx] -= 4
    idx = np.flatnonzero((rem >= 1) & (rem < 4))
    while len(idx):
        h[idx] = _rotl(h[idx] ^ (padded[pos[idx]].astype(np.uint64) * _P5), 11) * _P1
        pos[idx] += 1
        rem[idx] -= 1
        idx = idx[rem[idx] >= 1]
    h ^= h >> np.uint64(33)
    h *= _P2
    h ^= h >> np.uint64(29)
    h *= _P3
    h ^= h >> np.uint64(32)
    for i in np.flatnonzero(lens >= 32).tolist():
        s = int(starts[i])
        h[i] = xxhash.xxh64_intdigest(data[s:s + int(lens[i])], seed)
    return h


def hash_tokens(toks: list[bytes]) -> np.ndarray:
    """XXH64 of each token (tokens must not contain spaces, as normalised tokens never do)."""
    if not toks:
        return np.zeros(0, dtype=np.uint64)
    data = b" ".join(toks)
    starts, lens = byte_spans(data)
    return xxh64_spans(data, starts, lens)


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


class SpanHashes:
    """Polynomial hashes of any spans of one token-hash array, each in O(1).

    Whole rows and short windows of every length are then hashed from one O(len(th))
    setup (the exact-copy detector needs both): with G the prefix sums of
    th[i] * MULT**-i (MULT is odd, hence invertible mod 2**64), the polynomial of
    th[s:e] is (G[e] - G[s]) * MULT**(e - 1). Values are not mixed: `mix` of them equals
    `ngram_hashes`, and their top bits are uniform already (the last token's XXH64 is
    added unmultiplied), which is all a bitmap prefilter needs.
    """

    def __init__(self, th: np.ndarray):
        n = len(th)
        self.pow = _powers(_MULT, n + 1)
        self.prefix = np.zeros(n + 1, np.uint64)
        np.cumsum(th * _powers(_INV, n), out=self.prefix[1:])

    def __call__(self, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """Polynomial of every span [start, end) (all must be non-empty)."""
        if not len(starts):
            return np.zeros(0, np.uint64)
        return (self.prefix[ends] - self.prefix[starts]) * self.pow[ends - 1]

    def windows(self, n: int) -> np.ndarray:
        """Polynomial of every n-token window, from slices of the prefix sums (no gathers)."""
        m = len(self.prefix) - n
        if m <= 0:
            return np.zeros(0, np.uint64)
        return (self.prefix[n:] - self.prefix[:m]) * self.pow[n - 1:n - 1 + m]

    def joined(self, a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """Polynomial of each span of `a` followed by the matching span of `b` (both
        non-empty), as if their tokens were one sequence, without building that sequence."""
        return self(*a) * self.pow[b[1] - b[0]] + self(*b)


_POWERS: dict[int, np.ndarray] = {}


def _powers(base: np.uint64, n: int) -> np.ndarray:
    """base**0 .. base**(n-1) mod 2**64 (array arithmetic wraps silently), read-only.

    Kept per process and grown by doubling: every block of a scan needs the same table.
    """
    have = _POWERS.get(int(base))
    if have is None or len(have) < n:
        size = max(n, 2 * len(have) if have is not None else 1 << 16)
        have = np.full(size, base, np.uint64)
        have[0] = 1
        np.multiply.accumulate(have, out=have)
        have.flags.writeable = False
        _POWERS[int(base)] = have
    return have[:n]


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
    data = chunk_bytes(texts)
    starts, lens = byte_spans(data)
    n_rows = len(texts)
    if n_rows > 1:
        a = np.frombuffer(data, dtype=np.uint8)
        is_sep = (lens == 1) & (a[starts] == _SEP_BYTE)
        sep_at = np.flatnonzero(is_sep)
        keep = ~is_sep
        starts, lens = starts[keep], lens[keep]
        bounds = sep_at - np.arange(len(sep_at))  # separators removed: first token of rows 1..
    else:
        bounds = np.zeros(0, np.int64)
    th = xxh64_spans(data, starts, lens) if len(starts) else np.zeros(0, np.uint64)
    row_start = np.concatenate([[0], bounds, [len(th)]]).astype(np.int64) if n_rows else np.zeros(1, np.int64)
    row = np.repeat(np.arange(n_rows, dtype=np.int32), np.diff(row_start))
    return TokenStream(th, row, row_start)


def text_hashes(text: str) -> np.ndarray:
    """Token hashes of one text (eval items)."""
    data = normal_bytes(text).replace(ROW_SEP.encode(), b" ")
    starts, lens = byte_spans(data)
    return xxh64_spans(data, starts, lens) if len(starts) else np.zeros(0, np.uint64)


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
