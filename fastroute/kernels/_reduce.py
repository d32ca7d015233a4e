"""Deterministic, vectorizable float64 sums over a block buffer.

Without fastmath LLVM may not reorder a floating-point reduction, so a plain
``s += x[i]`` loop runs at one add per add-latency. ``tree_sum`` instead adds
the upper half of the buffer onto the lower half until one value is left:
every level is an element-wise loop that vectorizes, the order of additions is
fixed by the source and by ``n`` alone (so the bits never depend on the call
site or the thread count), and the result is a pairwise sum, whose rounding
error grows with log2(n) instead of n.
"""

from __future__ import annotations

from .._jit import jit, uidx


@jit(inline="always")
def tree_sum(buf, n):
    """Sum of ``buf[:n]`` by pairwise halving; ``buf`` must hold the next power
    of two >= max(n, 8) elements. Clobbers ``buf``."""
    size = 8
    while size < n:
        size <<= 1
    for i in range(n, size):
        buf[i] = 0.0
    half = size >> 1
    while half > 0:
        for i in range(half):
            buf[i] += buf[uidx(i + half)]
        half >>= 1
    return buf[0]


#: lanes of ``sum16``
L16 = 16


@jit(inline="always")
def sum16(a):
    """Sum of ``a[:16]`` in a fixed pairwise order (lanes ``i`` and ``i + 8``,
    then ``i + 4``, ...): a row's 16 partial sums to one value."""
    return (((a[0] + a[8]) + (a[4] + a[12])) + ((a[2] + a[10]) + (a[6] + a[14]))) + (
        ((a[1] + a[9]) + (a[5] + a[13])) + ((a[3] + a[11]) + (a[7] + a[15]))
    )
