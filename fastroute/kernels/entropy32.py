"""Entropy of float32 probability/count rows with a float32 log and a proven bound.

float32 input only has to meet the float32 contract (the result within 4
float32 ulp of the exact entropy), so the log need not be float64. Each entry
``x = 2**e * m`` gets ``log m`` from ``_math.log32_parts`` (float32 lanes,
twice as many per vector as float64), and everything that needs more
precision than float32 stays in float64: the exponent part ``e * log 2``,
the sum ``S`` and the sum ``A = sum x log x``, accumulated in fixed lanes.
The one-pass result is ``H = log S - A / S`` (``-A`` unnormalized).

Its error is bounded by what is summed anyway: the mantissa logs are within
``LOG32_REL_ERR * 2**-24 * |log m|`` (checked exhaustively), so with
``B = sum x |log m|``::

    |H - H_exact| <= 0.45 * 2**-24 * B / S  +  (float64 rounding, about
                     (depth + 4) * 2**-52 * (105 + |log S| + B / S))

A row is accepted when that is at most ``2.5 * 2**-24 * |H|``: with the
final rounding to float32 the result is then within 3 ulp. Rows that fail
(near-deterministic rows, where ``H`` is tiny against the terms) and rows
with NaN, infinities, negative or subnormal entries are marked ``EXACT``
and then computed by the exact float64 two-pass kernel
(``entropy.exact_rows``, compiled only when some row needs it); its result
is accurate to float64, so the rule that picks it keeps the contract too.

The summation order depends on the row length ``n`` alone, so a row's bits
do not depend on the batch, the thread count or the path:

* ``n <= SHORT_N``: rows are processed ``LANES`` at a time, transposed, each
  row one SIMD lane; a row's terms are summed in index order.
* longer rows: ``BLOCK`` lanes per row, lane ``i`` summing entries
  ``i, i + BLOCK, ...`` in order, then a pairwise tree over the lanes.
"""

from __future__ import annotations

import numpy as np

from .._jit import _u, jit
from ._math import BLOCK, LOG32_REL_ERR, f32_bits, fma, log32_parts, log_normal
from ._reduce import tree_sum
from .entropy import EXACT, OK, exact_rows

__all__ = [
    "entropy32_rows",
    "short_rows",
    "long_rows",
    "exact_rows",
    "EXACT",
    "SHORT_N",
    "LANES",
    "WORK32_SIZE",
]

#: rows up to this length are processed LANES rows at a time, transposed
SHORT_N = 64
LANES = 64
_LN2 = 0.6931471805599453
_F = np.float32
_MIN_NORMAL_BITS = np.int32(0x00800000)
_INF_BITS = np.int32(0x7F800000)
_E24 = 2.0**-24
_E52 = 2.0**-52
#: ``|e| * log 2 <= _EXP_LOG_MAX`` for the exponent of any normal float32
_EXP_LOG_MAX = 105.0

#: float64 elements of scratch ``entropy32_rows`` needs for any rows (short
#: rows: 3 float32 tiles of SHORT_N x LANES and the lane sums; long rows: 4
#: BLOCK-long lane buffers; the exact kernel afterwards: 2 BLOCK buffers)
WORK32_SIZE = max(3 * SHORT_N * LANES // 2 + 4 * LANES, 4 * BLOCK)


def work_size(n: int, rows: int) -> int:
    """float64 scratch ``entropy32_rows`` needs for ``rows`` rows of ``n``."""
    if n > SHORT_N:
        return 4 * BLOCK
    nl = min(LANES, rows)
    return (3 * n * nl + 1) // 2 + 4 * nl


#: enough for a single row of any length
WORK32_ONE_ROW = max(work_size(SHORT_N, 1), 4 * BLOCK)


@jit(inline="always")
def _finish(s, a, b, depth, normalize):
    """(h, accepted) from the float64 sums of one row; see the module doc."""
    b = b * (1.0 + depth * 2.0**-22)  # B itself was summed in float32
    if normalize:
        log_s = log_normal(s)
        inv = 1.0 / s
        h = log_s - a * inv
        bs = b * inv
        err = LOG32_REL_ERR * _E24 * bs + (depth + 5.0) * _E52 * (_EXP_LOG_MAX + abs(log_s) + bs)
    else:
        h = 0.0 - a  # +0.0 when a is zero
        err = LOG32_REL_ERR * _E24 * b + (depth + 4.0) * _E52 * (_EXP_LOG_MAX * s + b)
    return h, (err <= 2.5 * _E24 * abs(h)) & (s > 0.0)


@jit(inline="always")
def _set(r, s, bad, h, ok, normalize, out, status):
    # the row's result, or EXACT for the exact kernel
    if ok and not bad:
        out[r] = h
        status[r] = OK
    elif s == 0.0 and not bad:  # all zeros (or empty)
        out[r] = np.nan if normalize else 0.0
        status[r] = OK
    else:  # NaN, inf, negative or subnormal entries, or a failed bound
        status[r] = EXACT


@jit
def entropy32_rows(x, normalize, out, status, lo, hi, work):
    """Entropy (nats) and status of rows ``lo:hi`` of the 2-D float32 ``x``
    into ``out`` (float64) and ``status`` (``OK``/``NEGATIVE``).

    ``work``: float64 scratch of at least ``WORK32_SIZE`` elements (or
    ``WORK32_ONE_ROW`` for a single row). The public functions call the
    three steps below one by one, so that a call compiles only the kernel
    its row length needs, and the exact kernel only when a row needs it.
    """
    if x.shape[1] <= SHORT_N:
        short_rows(x, normalize, out, status, lo, hi, work)
    else:
        long_rows(x, normalize, out, status, lo, hi, work)
    exact_rows(x, normalize, out, status, lo, hi, work[:BLOCK], work[BLOCK : 2 * BLOCK])


@jit
def short_rows(x, normalize, out, status, lo, hi, work):
    n = x.shape[1]
    nl = min(LANES, hi - lo)  # lanes in use: fewer for a few rows (same bits)
    tile = n * nl
    w32 = work.view(np.float32)
    xt = w32[:tile].reshape((n, nl))  # the entries, transposed: a row per lane
    ft = w32[tile : 2 * tile].reshape((n, nl))
    rt = w32[2 * tile : 3 * tile].reshape((n, nl))
    o = (3 * tile + 1) // 2  # float64 offset past the tiles
    a_s = work[o : o + nl]
    a_a = work[o + nl : o + 2 * nl]
    a_b = work[o + 2 * nl : o + 3 * nl].view(np.float32)[:nl]
    flags = work[o + 3 * nl : o + 4 * nl].view(np.int32)[:nl]
    depth = float(n)
    for r0 in range(lo, hi, nl):
        g = min(nl, hi - r0)
        for rr in range(g):
            for j in range(n):
                xt[j, rr] = x[_u(r0 + rr), j] + _F(0.0)  # -0.0 -> +0.0
        for rr in range(g, nl):  # idle lanes: harmless ones
            for j in range(n):
                xt[j, rr] = _F(1.0)
        for rr in range(nl):
            a_s[rr] = 0.0
            a_a[rr] = 0.0
            a_b[rr] = _F(0.0)
            flags[rr] = 0
        # float32 lanes: the mantissa logs, the bound's sum, the bad-entry flags
        for j in range(n):
            for rr in range(nl):
                v = xt[j, rr]
                ix = f32_bits(v)
                e, f, rest = log32_parts(ix)
                ft[j, rr] = f
                rt[j, rr] = rest
                a_b[rr] += abs(v * (f + rest))
                bad = (ix >= _INF_BITS) | (ix < _MIN_NORMAL_BITS) & (ix != 0)
                flags[rr] |= np.int32(bad)
        # float64 lanes: S and A
        for j in range(n):
            for rr in range(nl):
                v = xt[j, rr]
                e = np.int32(f32_bits(v) - np.int32(0x3F3504F3)) >> 23
                x64 = np.float64(v)
                t = fma(np.float64(e), _LN2, np.float64(ft[j, rr]) + np.float64(rt[j, rr]))
                a_s[rr] += x64
                a_a[rr] = fma(x64, t, a_a[rr])
        for rr in range(nl):  # the one-pass values and their bounds, vectorized
            h, ok = _finish(a_s[rr], a_a[rr], np.float64(a_b[rr]), depth, normalize)
            a_a[rr] = h
            flags[rr] |= np.int32(not ok) << 1  # bit 0: bad entries, bit 1: bound failed
        for rr in range(g):
            _set(r0 + rr, a_s[rr], flags[rr] & 1, a_a[rr], flags[rr] == 0, normalize, out, status)


@jit
def long_rows(x, normalize, out, status, lo, hi, work):
    n = x.shape[1]
    w = min(n, BLOCK)
    a_s = work[:BLOCK]
    a_a = work[BLOCK : 2 * BLOCK]
    f32 = work[2 * BLOCK : 4 * BLOCK].view(np.float32)
    fb = f32[:BLOCK]
    rb = f32[BLOCK : 2 * BLOCK]
    a_b = f32[2 * BLOCK : 3 * BLOCK]
    depth = float((n + BLOCK - 1) // BLOCK) + 9.0
    for r in range(lo, hi):
        top = np.int32(0)
        low = np.int32(0x7FFFFFFF)
        for start in range(0, n, BLOCK):
            m = min(BLOCK, n - start)
            for i in range(m):
                v = x[r, _u(start + i)] + _F(0.0)
                ix = f32_bits(v)
                e, f, rest = log32_parts(ix)
                fb[i] = f
                rb[i] = rest
                t = abs(v * (f + rest))
                if start == 0:
                    a_b[i] = t
                else:
                    a_b[i] += t
                top = max(top, ix)
                low = min(low, ix if ix != 0 else _MIN_NORMAL_BITS)
            for i in range(m):
                v = x[r, _u(start + i)] + _F(0.0)
                e = np.int32(f32_bits(v) - np.int32(0x3F3504F3)) >> 23
                x64 = np.float64(v)
                t = fma(np.float64(e), _LN2, np.float64(fb[i]) + np.float64(rb[i]))
                if start == 0:
                    a_s[i] = x64
                    a_a[i] = x64 * t
                else:
                    a_s[i] += x64
                    a_a[i] = fma(x64, t, a_a[i])
        s = tree_sum(a_s, w)
        a = tree_sum(a_a, w)
        b = np.float64(tree_sum(a_b, w))
        bad = top >= _INF_BITS or low < _MIN_NORMAL_BITS
        h, ok = _finish(s, a, b, depth, normalize)
        _set(r, s, bad, h, ok, normalize, out, status)
