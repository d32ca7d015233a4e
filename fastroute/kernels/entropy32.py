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

* ``n <= SHORT_N``: rows are processed as tiles of up to ``LANES`` rows,
  transposed, each row one SIMD lane; a row's terms are summed in index
  order.
* longer rows: ``BLOCK`` lanes per row, lane ``i`` summing entries
  ``i, i + BLOCK, ...`` in order, then a pairwise tree over the lanes.

CSR rows (``csr_rows``) go the same two ways by their number of stored
entries, with tiles up to ``CSR_TILE_N``: a tile holds a run of consecutive
rows, each zero-padded to the run's longest; an exact zero adds nothing to
any sum, so a row's bits do not depend on its neighbours.

Scratch views are made once per tile, never per row: on this kind of machine
each view or array-passing call costs an atomic reference count update, and
per-row views made the short-row kernel three times slower.
"""

from __future__ import annotations

import numpy as np

from .._dtypes import widen
from .._jit import f32_bits, jit, uidx
from ._math import BLOCK, LOG32_REL_ERR, fma, log32_parts, log_normal
from ._reduce import tree_sum
from .entropy import EXACT, OK, exact_rows, transpose_rows

__all__ = [
    "entropy32_rows",
    "short_rows",
    "long_rows",
    "long_row",
    "one_short_row",
    "csr_rows",
    "exact_rows",
    "EXACT",
    "SHORT_N",
    "LANES",
    "WORK32_SIZE",
]

#: rows up to this length are processed as tiles of rows, transposed: up to
#: ``LANES`` rows and ``TILE`` entries (padded) per tile; on CSR input,
#: rows of up to ``CSR_TILE_N`` stored entries (there, longer rows cost more
#: per row: a slice, a call, three trees)
SHORT_N = 64
CSR_TILE_N = 256
LANES = 64
TILE = 4096
_LN2 = 0.6931471805599453
_F = np.float32
_MIN_NORMAL_BITS = np.int32(0x00800000)
_INF_BITS = np.int32(0x7F800000)
_E24 = 2.0**-24
_E52 = 2.0**-52
#: ``|e| * log 2 <= _EXP_LOG_MAX`` for the exponent of any normal float32
_EXP_LOG_MAX = 105.0

#: float64 elements of scratch ``entropy32_rows`` needs for any rows (short
#: rows: 3 float32 tiles of TILE entries and 5 float64 values per lane; long rows: 4
#: BLOCK-long lane buffers; the exact kernel afterwards: 2 BLOCK buffers)
WORK32_SIZE = max(3 * TILE // 2 + 5 * LANES, 4 * BLOCK)


@jit(inline="always")
def _tile_lanes(n):
    """Rows of length ``n`` per tile (a row's bits do not depend on it)."""
    return min(LANES, max(1, TILE // max(n, 1)))


def work_size(n: int, rows: int) -> int:
    """float64 scratch ``entropy32_rows`` needs for ``rows`` rows of ``n``."""
    if n > SHORT_N:
        return 4 * BLOCK
    if rows == 1:
        return 0  # a single short row takes ``one_short_row``: no scratch
    nl = min(_tile_lanes.py_func(n), rows)
    return (3 * n * nl + 1) // 2 + 5 * nl


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
    nl = min(_tile_lanes(n), hi - lo)  # fewer lanes for a few rows (same bits)
    t = _tile(work, n, nl)
    xt, depth = t[0], t[7]
    for rr in range(nl):
        depth[rr] = n
    for r0 in range(lo, hi, nl):
        g = min(nl, hi - r0)
        transpose_rows(x, r0, g, xt, _F(1.0))  # idle lanes: harmless ones
        _tile_rows(*t, normalize)
        _set_lanes(r0, g, t, normalize, out, status)


@jit(inline="always")
def _tile(work, n, nl):
    """The views of ``work`` for a tile of ``nl`` rows of length ``n``: the
    entries transposed (a row per lane), their ``f`` and ``rest`` (float32,
    ``n x nl``), then per lane S, H (first A), B (float32), the flags (int32:
    bit 0 bad entries, bit 1 bound failed) and the depth of the row's sums."""
    tile = n * nl
    w32 = work.view(np.float32)
    o = (3 * tile + 1) // 2  # float64 offset past the tiles
    return (
        w32[:tile].reshape((n, nl)),
        w32[tile : 2 * tile].reshape((n, nl)),
        w32[2 * tile : 3 * tile].reshape((n, nl)),
        work[o : o + nl],
        work[o + nl : o + 2 * nl],
        work[o + 2 * nl : o + 3 * nl].view(np.float32)[:nl],
        work[o + 3 * nl : o + 4 * nl].view(np.int32)[:nl],
        work[o + 4 * nl : o + 5 * nl],
    )


@jit
def _tile_rows(xt, ft, rt, a_s, a_a, a_b, flags, depth, normalize):
    """The one-pass entropies and flags of the rows in the tile (``_tile``)."""
    n, nl = xt.shape
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
            flags[rr] |= np.int32(_bad_bits(ix))
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
        h, ok = _finish(a_s[rr], a_a[rr], np.float64(a_b[rr]), depth[rr], normalize)
        a_a[rr] = h
        flags[rr] |= np.int32(not ok) << 1


@jit(inline="always")
def _bad_bits(ix):
    # NaN, infinite, negative or subnormal (zero is fine)
    return (ix >= _INF_BITS) | (ix < _MIN_NORMAL_BITS) & (ix != 0)


@jit
def one_short_row(x, r, normalize, out, status):
    """Row ``r`` (``x.shape[1] <= SHORT_N``) as one lane of a tile: the same
    operations in the same order, so the same bits as ``short_rows``,
    without the tile. A kernel of its own, so that a call on many rows does
    not compile it."""
    n = x.shape[1]
    a_s = 0.0
    a_a = 0.0
    a_b = _F(0.0)
    fl = np.int32(0)
    for j in range(n):
        v = widen(x[r, j]) + _F(0.0)
        ix = f32_bits(v)
        e, f, rest = log32_parts(ix)
        a_b += abs(v * (f + rest))
        fl |= np.int32(_bad_bits(ix))
        x64 = np.float64(v)
        a_s += x64
        a_a = fma(x64, fma(np.float64(e), _LN2, np.float64(f) + np.float64(rest)), a_a)
    h, ok = _finish(a_s, a_a, np.float64(a_b), float(n), normalize)
    if ok and not fl:
        out[r] = h
        status[r] = OK
    elif normalize and fl == 0 and _one_nonzero(x[r]):
        out[r] = 0.0
        status[r] = OK
    else:
        _set(r, a_s, fl, h, False, normalize, out, status)


@jit(inline="always")
def _set_lanes(r0, g, t, normalize, out, status):
    # the rows r0 : r0 + g from their lanes (as ``_set``; a row the bound
    # rejects is still exactly 0 if normalized with a single nonzero entry)
    xt, a_s, a_h, flags = t[0], t[3], t[4], t[6]
    empty = np.nan if normalize else 0.0
    for rr in range(g):
        fl = flags[rr]
        if fl == 0 or fl == 2 and normalize and _one_nonzero(xt[:, rr]):
            out[r0 + rr] = a_h[rr] if fl == 0 else 0.0
            status[r0 + rr] = OK
        elif a_s[rr] == 0.0 and (fl & 1) == 0:
            out[r0 + rr] = empty
            status[r0 + rr] = OK
        else:
            status[r0 + rr] = EXACT


@jit(inline="always")
def _one_nonzero(v):
    c = 0
    for i in range(v.shape[0]):
        c += widen(v[i]) != _F(0.0)
    return c == 1


@jit
def long_rows(x, normalize, out, status, lo, hi, work):
    for r in range(lo, hi):
        s, bad, h, ok = long_row(x, r, 0, x.shape[1], normalize, work)
        _set(r, s, bad, h, ok, normalize, out, status)


@jit
def long_row(x, r, lo, hi, normalize, work):
    """``(S, bad, H, accepted)`` of the float32 row ``x[r, lo:hi]`` (any
    length) with ``BLOCK`` lanes; ``work``: float64 scratch of ``4 * BLOCK``."""
    n = hi - lo
    w = min(n, BLOCK)
    a_s = work[:BLOCK]
    a_a = work[BLOCK : 2 * BLOCK]
    f32 = work[2 * BLOCK : 4 * BLOCK].view(np.float32)
    fb = f32[:BLOCK]
    rb = f32[BLOCK : 2 * BLOCK]
    a_b = f32[2 * BLOCK : 3 * BLOCK]
    depth = float((n + BLOCK - 1) // BLOCK) + 9.0
    top = np.int32(0)
    low = np.int32(0x7FFFFFFF)
    for start in range(0, n, BLOCK):
        m = min(BLOCK, n - start)
        for i in range(m):
            v = widen(x[r, uidx(lo + start + i)]) + _F(0.0)
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
            v = widen(x[r, uidx(lo + start + i)]) + _F(0.0)
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
    if normalize and not ok and not bad and s > 0.0:
        ok = _one_nonzero(x[r, lo:hi])  # then exactly 0 (found only where the bound fails)
        h = 0.0 if ok else h
    return s, bad, h, ok


@jit
def csr_rows(indptr, data2d, normalize, out, status, lo, hi):
    """The rows ``lo:hi`` of a CSR matrix with float32 ``data``, as the dense
    kernels do them: rows of more than ``CSR_TILE_N`` stored entries one by
    one (``long_row``), runs of shorter rows as one tile (``_tile_lanes``), each
    row zero-padded to the run's longest (padding adds exact zeros, so a
    row's bits depend on its own entries only). Called from Python: a jitted
    wrapper would compile it a second time."""
    work = np.empty(WORK32_SIZE)
    r = lo
    while r < hi:
        a = indptr[r]
        if indptr[r + 1] - a > CSR_TILE_N:
            s, bad, h, ok = long_row(data2d, 0, a, indptr[r + 1], normalize, work)
            _set(r, s, bad, h, ok, normalize, out, status)
            r += 1
            continue
        r1 = r + 1  # a run of short rows that fits in a tile
        n = indptr[r + 1] - a
        while r1 < hi and r1 - r < LANES:
            m = max(n, indptr[r1 + 1] - indptr[r1])
            if m > CSR_TILE_N or (r1 - r + 1) * m > TILE:
                break
            n = m
            r1 += 1
        nl = r1 - r
        t = _tile(work, n, nl)
        xt, depth = t[0], t[7]
        for rr in range(nl):
            b0, b1 = indptr[r + rr], indptr[r + rr + 1]
            for j in range(b1 - b0):
                xt[j, rr] = data2d[0, b0 + j] + _F(0.0)
            for j in range(b1 - b0, n):
                xt[j, rr] = _F(0.0)
            depth[rr] = b1 - b0
        _tile_rows(*t, normalize)
        _set_lanes(r, nl, t, normalize, out, status)
        r = r1
