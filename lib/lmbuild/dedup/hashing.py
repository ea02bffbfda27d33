"""Vectorised 64-bit hashing of Arrow strings, byte spans and integer tuples, in numpy.

`hash_spans` hashes many byte spans of one buffer at once (the strings of a pyarrow string
array, or the words of a text buffer): a polynomial hash sum(b_k * p^k) over each span's bytes,
taken modulo 2^64 (numpy's uint64 arithmetic wraps). A span's hash needs the sum over its bytes
with powers counted from its first byte; an odd base p is invertible modulo 2^64, so the sum
over [s, e) is (C[e] - C[s]) * p^-s, where C is the running sum (`np.cumsum`) of b_k * p^k over
a window of the buffer: one pass over the bytes for all spans of a window, whatever their
number. Windows hold CHUNK_BYTES at most (a longer span is summed window by window). The
span's length and a seed are added and the result goes through the MurmurHash3 64-bit
finaliser (fmix64), so every output bit depends on every input bit. The same construction over
uint64 values (`hash_sequences`) hashes sequences of word hashes.

Properties that matter here: strings differing in one byte never collide (p^k is odd, so a
single difference d * p^k is never 0 modulo 2^64); distinct strings otherwise collide with
probability about 2^-64 for natural text. It is not a cryptographic hash: an adversary can build
colliding strings (Thue-Morse sequences defeat any polynomial hash modulo 2^64), which is
acceptable for deduplicating a training corpus.

`combine` hashes tuples of uint64 columns (word hashes into n-gram hashes, MinHash values into
band keys) with distinct random odd multipliers per position, so the order of the tuple counts.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

U64 = np.uint64
# Two odd bases for the polynomial hash (two are used together for 128-bit document hashes).
BASES = (U64(0x100000001B3), U64(0x9E3779B97F4A7C15))
_FMIX1 = U64(0xFF51AFD7ED558CCD)
_FMIX2 = U64(0xC4CEB9FE1A85EC53)
_LEN_MUL = U64(0xD6E8FEB86659FD93)
# Spans are hashed in windows of at most this many bytes (a span longer than that is summed
# piece by piece): the power tables and the temporaries are uint64 arrays of that length.
CHUNK_BYTES = 2**19

_tables: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _power_tables(base: np.uint64) -> tuple[np.ndarray, np.ndarray]:
    """p^k and p^-k modulo 2^64 for k <= CHUNK_BYTES (built once per process)."""
    key = int(base)
    if key not in _tables:
        fwd = np.full(CHUNK_BYTES + 1, base, dtype=np.uint64)
        inv = np.full(CHUNK_BYTES + 1, U64(pow(key, -1, 2**64)), dtype=np.uint64)
        fwd[0] = inv[0] = 1
        _tables[key] = (np.cumprod(fwd, dtype=np.uint64), np.cumprod(inv, dtype=np.uint64))
    return _tables[key]


def _long_span_sum(data: np.ndarray, start: int, end: int, base: np.uint64) -> int:
    """sum b_k p^(k - start) over a span longer than a window: window sums scaled by p^offset
    (a loop over windows of CHUNK_BYTES, not over bytes)."""
    fwd, _ = _power_tables(base)
    step = pow(int(base), CHUNK_BYTES, 2**64)
    total, scale = 0, 1
    for lo in range(start, end, CHUNK_BYTES):
        hi = min(lo + CHUNK_BYTES, end)
        piece = int(np.sum(data[lo:hi].astype(np.uint64) * fwd[:hi - lo], dtype=np.uint64))
        total = (total + piece * scale) % 2**64
        scale = scale * step % 2**64
    return total


def fmix64(h: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser (a bijection with full avalanche); into `out` (which may
    be `h` itself) or a new array."""
    out = h.copy() if out is None else out
    if out is not h:
        out[...] = h
    tmp = np.empty_like(out)
    for mult in (_FMIX1, _FMIX2):
        np.right_shift(out, U64(33), out=tmp)
        out ^= tmp
        out *= mult
    np.right_shift(out, U64(33), out=tmp)
    out ^= tmp
    return out


def string_offsets(strings: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets into the data buffer, data buffer as uint8) of a string array, slice-aware."""
    if pa.types.is_large_string(strings.type):
        off_type = np.int64
    elif pa.types.is_string(strings.type) or pa.types.is_binary(strings.type):
        off_type = np.int32
    else:
        raise TypeError(f"hash_strings needs a string array, got {strings.type}")
    buffers = strings.buffers()
    n = len(strings)
    offsets = np.frombuffer(buffers[1], off_type)[strings.offset:strings.offset + n + 1].astype(np.int64)
    data = np.frombuffer(buffers[2], np.uint8) if buffers[2] is not None else np.zeros(0, np.uint8)
    return offsets, data


def hash_spans(data: np.ndarray, starts: np.ndarray, ends: np.ndarray, base: np.uint64 = BASES[0],
               seed: int = 0, mix: bool = True) -> np.ndarray:
    """One uint64 hash per byte span data[starts[i]:ends[i]]; spans must be in increasing,
    non-overlapping order (e.g. the strings of an Arrow array, or the words of a text buffer).
    `mix=False` skips the final fmix64: the raw polynomial (plus length and seed terms) is
    collision-free enough but its low bits are weak, so use it only as the input of another
    hash that mixes (word hashes feed n-gram and document hashes)."""
    n = len(starts)
    out = np.empty(n, np.uint64)
    fwd, inv = _power_tables(base)
    terms = np.empty(min(CHUNK_BYTES, int(ends[-1] - starts[0]) if n else 0), np.uint64)
    running = np.zeros(len(terms) + 1, np.uint64)
    i = 0
    while i < n:
        lo = int(starts[i])
        # spans i..j-1 end within one window starting at span i
        j = int(np.searchsorted(ends, lo + CHUNK_BYTES, side="right"))
        if j <= i:  # span i alone is longer than a window
            out[i] = _long_span_sum(data, lo, int(ends[i]), base)
            i += 1
            continue
        width = int(ends[j - 1]) - lo
        np.multiply(data[lo:lo + width], fwd[:width], out=terms[:width], dtype=np.uint64)
        np.cumsum(terms[:width], out=running[1:width + 1])
        s, e = starts[i:j] - lo, ends[i:j] - lo
        out[i:j] = (running[e] - running[s]) * inv[s]
        i = j
    out += (ends - starts).astype(np.uint64) * _LEN_MUL
    out += U64(seed & 0xFFFFFFFFFFFFFFFF)
    return fmix64(out, out) if mix else out


def hash_strings(strings: pa.Array, base: np.uint64 = BASES[0], seed: int = 0, mix: bool = True) -> np.ndarray:
    """One uint64 hash per string of an Arrow string array (nulls hash like the empty string)."""
    if isinstance(strings, pa.ChunkedArray):
        strings = strings.combine_chunks()
    if len(strings) == 0:
        return np.empty(0, np.uint64)
    offsets, data = string_offsets(strings)
    return hash_spans(data, offsets[:-1], offsets[1:], base, seed, mix)


def hash_sequences(values: np.ndarray, starts: np.ndarray, ends: np.ndarray, base: np.uint64 = BASES[0],
                   seed: int = 0) -> np.ndarray:
    """One uint64 hash per run values[starts[i]:ends[i]] of uint64 values (e.g. the word hashes
    of each document), with the same polynomial construction as for bytes."""
    return hash_spans(values, starts, ends, base, seed)


def multipliers(count: int, seed: int) -> np.ndarray:
    """`count` random odd uint64 multipliers, fixed by the seed."""
    rng = np.random.default_rng([seed, 0x6C6D6275696C64])  # second word: "lmbuild"
    return rng.integers(0, 2**64, size=count, dtype=np.uint64, endpoint=False) | U64(1)


def combine(columns: list[np.ndarray], mults: np.ndarray) -> np.ndarray:
    """Order-sensitive hash of tuples given as equal-length uint columns: fmix64(sum c_i * m_i)."""
    acc = np.multiply(columns[0], mults[0], dtype=np.uint64)
    term = np.empty_like(acc)
    for col, mult in zip(columns[1:], mults[1:]):
        np.multiply(col, mult, out=term, dtype=np.uint64)
        acc += term
    return fmix64(acc, acc)
