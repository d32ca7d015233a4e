"""Relative entropy of float32 rows with float32 logs.

The float64 kernel (:mod:`.divergence`) evaluates every term in float64;
a float32 result needs about 2**-24 of it, so this kernel does the
expensive part (the logarithm and the series) in float32 on twice the SIMD
lanes, and only what decides the cancellation in float64:

* the row sums ``S_p``, ``S_q`` (float64 lanes, as in the float64 kernel);
* ``num = p S_q K - q S_p K`` from an error-free difference of products in
  float64 (``K`` a power of two near ``1 / (S_p S_q)``, so that
  ``w = q S_p K`` is ``Q`` times a number in ``[1, 2)``): ``num`` is 0
  exactly when ``P = Q``, and ``d = P / Q - 1 = num / w`` to float32
  precision however close ``P`` is to ``Q``.

Each term ``w g(1 + d)``, ``g(r) = r log r - r + 1 >= 0``, is then formed in
float32 from ``num`` and ``w``: for ``r`` in ``[1/2, 2)`` as the series
``num s + 2 w r s^3 A(s^2)`` in ``s = d / (2 + d)`` (no cancellation), else
as ``w r log r - num`` with ``log r`` from ``log32_parts`` (the subtraction
loses at most a factor 3.6 at ``r = 2``). Each term is then within a few
float32 ulp; the terms are non-negative and summed in float64, so the sum
is too. Rows with an entry the float32 steps cannot carry (``Q`` below
``2**-100`` of the row, ``P / Q`` beyond ``2**60``, entries above ``2**100``)
are marked ``EXACT`` for the float64 kernel.
"""

from __future__ import annotations

import math

import numpy as np

from .._dtypes import widen
from .._jit import bits_f64, f32_bits, f64_bits, jit, uidx
from ._math import fma, log32_parts
from ._reduce import L16, sum16
from .divergence import dd_add, entry_flags, two_sum
from .entropy import EXACT, NEGATIVE, OK, background_tile, transpose_rows

__all__ = ["kl32_short_rows", "kl32_long_rows", "csr_kl32_rows", "SHORT32_N"]

_F = np.float32
_LN2_HI32 = _F(0.693359375)  # 8 significant bits: e * _LN2_HI32 is exact
_LN2_LO32 = _F(-2.12194440e-4)
_A32 = tuple(_F(1.0 / (2 * k + 3)) for k in range(12))  # atanh(s) = s + s^3 A(s^2)
_ONE = _F(1.0)
_TWO = _F(2.0)
_ZERO = _F(0.0)
_THIRD = _F(1.0 / 3.0)
_THREE = _F(3.0)
_LN2 = math.log(2.0)
_W_LO = 2.0**-100  # w below this: the row goes to the float64 kernel
_W_HI = 2.0**60
_R_LO = _F(2.0**-60)
_R_HI = _F(2.0**60)
_ENTRY_HI = 2.0**100  # a row sum above this: the float64 kernel


@jit(inline="always")
def _a32(x):
    # A(x) = sum_{k<12} x^k / (2k + 3): |s| <= 1/2 needs 12 terms for 2**-26
    a = _A32[11]
    a = fma(a, x, _A32[10])
    a = fma(a, x, _A32[9])
    a = fma(a, x, _A32[8])
    a = fma(a, x, _A32[7])
    a = fma(a, x, _A32[6])
    a = fma(a, x, _A32[5])
    a = fma(a, x, _A32[4])
    a = fma(a, x, _A32[3])
    a = fma(a, x, _A32[2])
    a = fma(a, x, _A32[1])
    return fma(a, x, _A32[0])


@jit(inline="always")
def _quotient(num, den):
    # num / den (float64) from a float32 reciprocal and one correction step:
    # within about 2**-46 for normal float32-range operands
    y = _ONE / _F(den)
    q0 = _F(num) * y
    return fma(fma(-np.float64(q0), den, num), np.float64(y), np.float64(q0))


@jit(inline="always")
def _term(num, w):
    """``(w g(1 + num / w), rare)`` for ``w > 0`` (float64 in, float64 out):
    the float32 steps of the module docstring. ``rare`` when ``w`` or the
    ratio is beyond their range."""
    wr = w + num  # w r, r = P / Q
    s = _quotient(num, w + wr)  # d / (2 + d)
    r = _quotient(wr, w)
    s32 = _F(s)
    x = s32 * s32
    # near r = 1: w (d s + 2 r s^3 A(s^2)), the first part in float64
    near = num * s + np.float64(_TWO * _F(wr) * (s32 * x) * _a32(x))
    r32 = _F(r)
    e, f, rest = log32_parts(f32_bits(r32))
    log_r = np.float64(e) * _LN2 + (np.float64(f) + np.float64(rest))
    far = fma(wr, log_r, -num)  # w (r log r - d), r outside [1/3, 3)
    t = near if (r32 >= _THIRD) & (r32 < _THREE) else far
    rare = (w < _W_LO) | (w > _W_HI) | ((r32 > _ZERO) & ((r32 < _R_LO) | (r32 > _R_HI)))
    return t, rare


#: rows up to this length are processed as tiles, a row per SIMD lane
SHORT32_N = 32
#: rows per tile
TILE_ROWS = 64


@jit(inline="always")
def _pow2_scale(x):
    """``(K, ok)``: the power of two with ``x K`` in ``[1, 2)`` for a positive
    normal float64 ``x`` with ``K`` normal; ``ok`` False otherwise."""
    be = (f64_bits(x) >> 52) & 0x7FF
    ok = (be >= 1) & (be <= 2045)
    return bits_f64(np.int64(2046 - (be if ok else 1023)) << 52), ok


@jit(inline="always")
def _pair_term(pj, qj, spk, sqk):
    # (term, flags): the term w g(P / Q) of one pair (w = q S_p K), bit 0 of
    # flags when p > 0 and q = 0 (+inf), bit 1 when it is beyond the float32 steps
    a = np.float64(pj)
    b = np.float64(qj)
    w = b * spk
    num = fma(a, sqk, -w) - fma(b, spk, -w)
    t, bad = _term(num, w)
    t = 0.0 if qj == _ZERO else t  # p = q = 0: 0 (p > 0: inf)
    t = w if pj == _ZERO else t  # p = 0: Q g(0) = Q
    inf = (pj > _ZERO) & (qj == _ZERO)
    rare = bad & (qj > _ZERO) & (pj > _ZERO)
    return t, np.int64(inf) | (np.int64(rare) << 1)


@jit(inline="always")
def _finish_row(r, sp, sq, total, fl, tfl, out, status):
    # the row's result from its sums, its terms' total and flags
    status[r] = NEGATIVE if fl & 1 else OK
    if fl:
        out[r] = np.nan
    elif not (sp > 0.0 and sq > 0.0):
        out[r] = np.nan  # no distribution (empty or all zeros)
    elif tfl & 1:
        out[r] = np.inf
    elif tfl & 2:
        status[r] = EXACT
    else:
        out[r] = total


# The rows of one call go through one of two kernels, chosen by the row
# length (so that a call compiles only the one it uses): rows of up to
# SHORT32_N entries as tiles of rows, one per SIMD lane, summed in index
# order; longer rows in 16 lanes and a fixed tree. Either computes
# D(p[r] || q[r * q_step]) of the normalized float32 rows lo:hi into out,
# with the rules and status of divergence.kl_rows; rows it cannot carry are
# marked EXACT (out unset) for kl_rows.


@jit
def kl32_long_rows(p, q, q_step, out, status, lo, hi):
    """Rows longer than ``SHORT32_N``: 16 lanes and a fixed tree."""
    n = p.shape[1]
    nf = n - n % L16
    ap = np.empty(L16)
    aq = np.empty(L16)
    for r in range(lo, hi):
        rq = r * q_step
        for i in range(L16):
            ap[i] = 0.0
            aq[i] = 0.0
        fl = 0
        for start in range(0, nf, L16):
            for i in range(L16):  # vectorized
                a = np.float64(widen(p[r, uidx(start + i)]))
                b = np.float64(widen(q[rq, uidx(start + i)]))
                ap[i] += a
                aq[i] += b
                fl |= entry_flags(a, b)
        for i in range(n - nf):
            a = np.float64(widen(p[r, uidx(nf + i)]))
            b = np.float64(widen(q[rq, uidx(nf + i)]))
            ap[i] += a
            aq[i] += b
            fl |= entry_flags(a, b)
        sp = sum16(ap)
        sq = sum16(aq)
        k, ok = _pow2_scale(sp * sq)  # S_p S_q K in [1, 2)
        spk = sp * k
        sqk = sq * k
        tfl = np.int64(not ok or sp > _ENTRY_HI or sq > _ENTRY_HI) << 1
        if fl == 0 and sp > 0.0 and sq > 0.0 and tfl == 0:
            for i in range(L16):
                ap[i] = 0.0
            for start in range(0, nf, L16):
                for i in range(L16):  # branch-free, vectorized
                    j = uidx(start + i)
                    t, f = _pair_term(widen(p[r, j]), widen(q[rq, j]), spk, sqk)
                    ap[i] += t
                    tfl |= f
            for i in range(n - nf):
                j = uidx(nf + i)
                t, f = _pair_term(widen(p[r, j]), widen(q[rq, j]), spk, sqk)
                ap[i] += t
                tfl |= f
        _finish_row(r, sp, sq, sum16(ap) / (spk * sq), fl, tfl, out, status)


@jit
def kl32_short_rows(p, q, q_step, out, status, lo, hi):
    """Rows of up to ``SHORT32_N`` entries, a row per lane: every sum is a
    vector add down the tile, in index order."""
    n = p.shape[1]
    nl = max(1, min(TILE_ROWS, hi - lo))
    pt = np.empty((n, nl), np.float32)
    qt = np.empty((n, nl), np.float32)
    ap = np.empty(nl)
    aq = np.empty(nl)
    at = np.empty(nl)
    spk = np.empty(nl)
    sqk = np.empty(nl)
    fl = np.empty(nl, np.int64)
    tfl = np.empty(nl, np.int64)
    if q_step == 0:
        background_tile(q, qt)
    for r0 in range(lo, hi, nl):
        g = min(nl, hi - r0)
        transpose_rows(p, r0, g, pt, _ONE)  # idle lanes: p = q = 1 (D = 0)
        if q_step != 0:
            transpose_rows(q, r0, g, qt, _ONE)
        for rr in range(nl):
            ap[rr] = 0.0
            aq[rr] = 0.0
            at[rr] = 0.0
            fl[rr] = 0
        for j in range(n):
            for rr in range(nl):  # vectorized across rows
                a = np.float64(pt[j, rr])
                b = np.float64(qt[j, rr])
                ap[rr] += a
                aq[rr] += b
                fl[rr] |= entry_flags(a, b)
        for rr in range(nl):
            k, ok = _pow2_scale(ap[rr] * aq[rr])
            spk[rr] = ap[rr] * k
            sqk[rr] = aq[rr] * k
            big = (ap[rr] > _ENTRY_HI) | (aq[rr] > _ENTRY_HI)
            tfl[rr] = np.int64(big or not ok) << 1
        for j in range(n):
            for rr in range(nl):  # branch-free, vectorized across rows
                t, f = _pair_term(pt[j, rr], qt[j, rr], spk[rr], sqk[rr])
                at[rr] += t
                tfl[rr] |= f
        for rr in range(g):
            total = at[rr] / (spk[rr] * aq[rr])
            _finish_row(r0 + rr, ap[rr], aq[rr], total, fl[rr], tfl[rr], out, status)


# --- CSR rows of float32 data against a dense float32 background ----------------


@jit
def csr_kl32_rows(pm, q, q_step, tab, out, status, lo, hi):
    """``D(P_r || Q)`` of the CSR rows ``lo:hi`` (``pm = (indptr, indices,
    data2d)``, canonical, float32 data) against the dense float32 rows
    ``q[r * q_step]`` with their ``q_table`` rows ``tab``: the float32 terms
    of :func:`kl32_long_rows` over the stored entries, plus the mass of ``q``
    outside the row's pattern from exact (double-double) sums. Rows beyond
    the float32 steps are marked ``EXACT`` (for ``csr_dense_rows``)."""
    indptr, indices, data = pm
    cap = 1
    for r in range(lo, hi):
        cap = max(cap, indptr[r + 1] - indptr[r])
    pb = np.empty(cap, np.float32)  # the row's stored p and its q, gathered
    qb = np.empty(cap, np.float32)
    ap = np.empty(L16)
    sh = np.empty(L16)
    sl = np.empty(L16)
    for r in range(lo, hi):
        a0 = indptr[r]
        m = indptr[r + 1] - a0
        rq = r * q_step
        for i in range(m):
            pb[i] = data[0, uidx(a0 + i)]
            qb[i] = widen(q[rq, uidx(indices[uidx(a0 + i)])])
        mf = m - m % L16
        for i in range(L16):
            ap[i] = 0.0
            sh[i] = 0.0
            sl[i] = 0.0
        fl = np.int64(tab[rq, 5])
        for start in range(0, mf, L16):
            for i in range(L16):  # vectorized
                a = np.float64(pb[uidx(start + i)])
                b = np.float64(qb[uidx(start + i)])
                ap[i] += a
                sh[i], sl[i] = dd_add(sh[i], sl[i], b)
                fl |= entry_flags(a, 0.0)
        for i in range(m - mf):
            a = np.float64(pb[uidx(mf + i)])
            b = np.float64(qb[uidx(mf + i)])
            ap[i] += a
            sh[i], sl[i] = dd_add(sh[i], sl[i], b)
            fl |= entry_flags(a, 0.0)
        sp = sum16(ap)
        c1 = tab[rq, 0]
        inv_c1 = 1.0 / c1 if c1 > 0.0 else 0.0  # exact: c1 is a power of two
        sq = tab[rq, 3] * inv_c1
        k2, ok = _pow2_scale(sp * sq)
        spk = sp * k2
        sqk = sq * k2
        tfl = np.int64(not ok or sp > _ENTRY_HI or sq > _ENTRY_HI) << 1
        if fl == 0 and sp > 0.0 and sq > 0.0 and tfl == 0:
            for i in range(L16):
                ap[i] = 0.0
            for start in range(0, mf, L16):
                for i in range(L16):  # branch-free, vectorized
                    j = uidx(start + i)
                    t, f = _pair_term(pb[j], qb[j], spk, sqk)
                    ap[i] += t
                    tfl |= f
            for i in range(m - mf):
                j = uidx(mf + i)
                t, f = _pair_term(pb[j], qb[j], spk, sqk)
                ap[i] += t
                tfl |= f
        # the mass of q outside the pattern: (exact sum of q) - (exact stored sum)
        s_hi, s_lo = 0.0, 0.0
        for i in range(L16):
            s_hi, s_lo = dd_add(s_hi, s_lo + sl[i], sh[i])
        h, e = two_sum(sq, -s_hi)
        rest = max(h + (e + tab[rq, 4] * inv_c1 - s_lo), 0.0)
        total = sum16(ap) / (spk * sq) + rest / sq
        _finish_row(r, sp, sq, total, fl, tfl, out, status)
