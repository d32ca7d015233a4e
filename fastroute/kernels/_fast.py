"""Top-k of short float32 rows by vectorized max passes over 64-bit keys.

Internal (used by the drivers for float32 rows of at most ``KEYS_MAX_N``
entries and ``k <= KEYS_MAX_K``); the order is exactly that of
``select.top_k_1d``.

Each entry becomes one int64 key::

    key = (order-preserving int32 of the value) << 32 | (2**32 - 1 - index)

so the largest key is the best value and, among equal values, the lowest
index. One integer max reduction, which LLVM turns into a few AVX
``vpmaxsq``, finds the next winner, whose index is read back from the low
half; its key is then set to the int64 minimum. ``-0.0`` is mapped to
``+0.0`` first (they tie) and NaN gets a key below every number, so NaNs
follow all numbers in index order.
"""

from __future__ import annotations

import numpy as np

from .._jit import jit

_INT64_MIN = np.int64(-9223372036854775808)
_NAN_KEY = np.int64(-2147483647)  # below the key of every float32 number
_LOW32 = np.int64(0xFFFFFFFF)

#: float32 rows up to this length with k up to KEYS_MAX_K use these kernels
KEYS_MAX_N = 64
KEYS_MAX_K = 16


@jit
def topk_keys_rows(x, k, largest, vals, idxs, lo, hi):
    """Top-k of rows ``lo:hi`` of the 2-D float32 array ``x``."""
    n = x.shape[1]
    npad = (n + 7) & ~7
    fbuf = np.zeros(npad, np.float32)
    bits = fbuf.view(np.int32)
    keys = np.empty(npad, np.int64)
    keys8 = keys.reshape(npad >> 3, 8)
    for i in range(n, npad):
        keys[i] = _INT64_MIN  # padding never wins
    for r in range(lo, hi):
        for i in range(n):
            fbuf[i] = x[r, i] + np.float32(0.0)  # -0.0 -> +0.0
        for i in range(n):
            b = np.int64(bits[i])
            ok = b ^ ((b >> 31) & 0x7FFFFFFF)
            if not largest:
                ok = ~ok
            if (b & 0x7FFFFFFF) > 0x7F800000:
                ok = _NAN_KEY
            keys[i] = (ok << 32) | (_LOW32 - i)
        for j in range(k):
            best = _max8(keys8)
            c = _LOW32 - (best & _LOW32)
            keys[c] = _INT64_MIN
            idxs[r, j] = c
            vals[r, j] = x[r, c]


@jit(inline="always")
def _max8(keys8):
    # eight explicit lanes with constant column indices (no wraparound code):
    # one vpmaxsq per 8 keys, also for rows too short for the loop vectorizer
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = _INT64_MIN
    for q in range(keys8.shape[0]):
        a0 = max(a0, keys8[q, 0])
        a1 = max(a1, keys8[q, 1])
        a2 = max(a2, keys8[q, 2])
        a3 = max(a3, keys8[q, 3])
        a4 = max(a4, keys8[q, 4])
        a5 = max(a5, keys8[q, 5])
        a6 = max(a6, keys8[q, 6])
        a7 = max(a7, keys8[q, 7])
    return max(max(max(a0, a1), max(a2, a3)), max(max(a4, a5), max(a6, a7)))
