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

from .._jit import _u, jit


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
            buf[i] += buf[_u(i + half)]
        half >>= 1
    return buf[0]
