"""Internal row kernels with scratch buffers (not part of the public API)."""

from __future__ import annotations

import numpy as np

from .._jit import jit

_INT64_MIN = np.int64(-9223372036854775808)
_NAN_KEY = np.int64(-2147483647)  # below the key of every float32 number
_LOW32 = np.int64(0xFFFFFFFF)


@jit
def top_k_keys_f32(x, k, largest, fbuf, keys, values, indices):
    """Top-k of a short float32 row by k vectorized max passes over 64-bit keys.

    key = (order-preserving int32 of the value) << 32 | (2**32 - 1 - index):
    the largest key is the best value with the lowest index, so one integer
    max reduction (which LLVM vectorizes) finds the next winner, and its index
    is read back from the low half. NaN gets a key below every number, a
    taken slot the minimum int64. ``fbuf`` (float32) and ``keys`` (int64)
    hold at least ``x.shape[0]`` elements. Same order as ``top_k_1d``.
    """
    n = x.shape[0]
    for i in range(n):
        fbuf[i] = x[i] + np.float32(0.0)  # -0.0 -> +0.0
    bits = fbuf[:n].view(np.int32)
    for i in range(n):
        b = np.int64(bits[i])
        ok = b ^ ((b >> 31) & 0x7FFFFFFF)
        if not largest:
            ok = ~ok
        if (b & 0x7FFFFFFF) > 0x7F800000:
            ok = _NAN_KEY
        keys[i] = (ok << 32) | (_LOW32 - i)
    for r in range(k):
        best = _INT64_MIN
        for i in range(n):
            best = max(best, keys[i])
        j = _LOW32 - (best & _LOW32)
        keys[j] = _INT64_MIN
        indices[r] = j
        values[r] = x[j]
