"""Top-k of short float32 rows by vectorized max passes over 64-bit keys.

Internal (used by the drivers for float32 rows of at most ``KEYS_MAX_N``
entries and ``k <= KEYS_MAX_K``); the order is exactly that of
``select.top_k_1d``.

Each entry becomes one int64 key::

    key = (order-preserving int32 of the value) << 32 | (2**32 - 1 - index)

so the largest key is the best value and, among equal values, the lowest
index. One integer max reduction, which LLVM vectorizes, finds the next
winner, whose index is read back from the low half; its key is then replaced
by the int64 minimum. ``-0.0`` is mapped to ``+0.0`` first (they tie) and NaN
gets a key below every number, so NaNs follow all numbers in index order.
"""

from __future__ import annotations

import numpy as np

from .._dtypes import widen
from .._jit import f32_bits, jit, uidx

_INT64_MIN = np.int64(-9223372036854775808)
_NAN_KEY = np.int64(-2147483647)  # below the key of every float32 number
_LOW32 = np.int64(0xFFFFFFFF)

#: float32 rows up to this length with k up to KEYS_MAX_K use these kernels
KEYS_MAX_N = 1024
KEYS_MAX_K = 16
#: rows up to ACROSS_MAX_N long (or ACROSS_MAX_N_BIG_K with k >= 8) are
#: processed ROW_BLOCK at a time, across rows (measured crossover)
ACROSS_MAX_N = 32
ACROSS_MAX_N_BIG_K = 128
ROW_BLOCK = 64


@jit(inline="always")
def sort_key(v, i, largest):
    b = np.int64(f32_bits(v + np.float32(0.0)))  # -0.0 -> +0.0
    ok = b ^ ((b >> 31) & 0x7FFFFFFF)  # int order == float order
    if not largest:
        ok = ~ok
    ok = _NAN_KEY if (b & 0x7FFFFFFF) > 0x7F800000 else ok
    return (ok << 32) | (_LOW32 - i)


@jit(inline="always")
def pop_best(keys, n):
    """The index held by the largest of ``keys[:n]`` (one vectorized max
    pass); that key is then replaced by the minimum, out of the running."""
    best = _INT64_MIN
    for i in range(n):
        b = keys[i]
        best = b if b > best else best
    c = _LOW32 - (best & _LOW32)
    keys[c] = _INT64_MIN
    return c


@jit
def topk_keys_rows(x, k, largest, sort, vals, idxs, lo, hi):
    """Top-k of rows ``lo:hi`` of the 2-D float32 (or half float) array ``x`` (always in
    rank order: ``sort`` is taken for the signature of the other row
    kernels)."""
    n = x.shape[1]
    if n <= ACROSS_MAX_N or (n <= ACROSS_MAX_N_BIG_K and k >= 8):
        _across_rows(x, k, largest, vals, idxs, lo, hi)
        return
    keys = np.empty(n, np.int64)
    for r in range(lo, hi):
        for i in range(n):
            keys[i] = sort_key(widen(x[r, i]), i, largest)
        for j in range(k):
            c = pop_best(keys, n)
            idxs[r, j] = c
            vals[r, j] = widen(x[r, c])


@jit(inline="always")
def _across_rows(x, k, largest, vals, idxs, lo, hi):
    # Very short rows: a per-row reduction is mostly overhead, so keys of
    # ROW_BLOCK rows are stored transposed and each pass is an element-wise
    # max across rows, one SIMD lane per row.
    n = x.shape[1]
    kt = np.empty((n, ROW_BLOCK), np.int64)
    best = np.empty(ROW_BLOCK, np.int64)
    for r0 in range(lo, hi, ROW_BLOCK):
        nb = min(ROW_BLOCK, hi - r0)
        for rr in range(nb):
            for i in range(n):
                kt[i, rr] = sort_key(widen(x[uidx(r0 + rr), i]), i, largest)
        for j in range(k):
            for rr in range(ROW_BLOCK):
                best[rr] = _INT64_MIN
            for i in range(n):
                for rr in range(ROW_BLOCK):
                    b = kt[i, rr]
                    best[rr] = b if b > best[rr] else best[rr]
            for rr in range(nb):
                c = _LOW32 - (best[rr] & _LOW32)
                kt[c, rr] = _INT64_MIN
                idxs[uidx(r0 + rr), j] = c
                vals[uidx(r0 + rr), j] = widen(x[uidx(r0 + rr), c])
