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

from .._jit import _u, jit
from ._math import BLOCK, f32_bits, fma, log32_parts
from ._reduce import tree_sum
from .divergence import _row_sums
from .entropy import EXACT, NEGATIVE, OK

__all__ = ["kl32_rows"]

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


@jit
def kl32_rows(p, q, q_step, out, status, lo, hi):
    """``D(p[r] || q[r * q_step])`` of the normalized float32 rows ``lo:hi``
    into ``out``, the rules and ``status`` of ``divergence.kl_rows``; rows
    this kernel cannot carry are marked ``EXACT`` (``out`` unset) for
    ``kl_rows``. Summed in ``BLOCK`` lanes and a tree: the order depends on
    the row length only."""
    n = p.shape[1]
    b0, b1 = np.empty(BLOCK), np.empty(BLOCK)
    for r in range(lo, hi):
        rq = r * q_step
        sp, sq, fl = _row_sums(p, r, q, rq, n, b0, b1)
        status[r] = NEGATIVE if fl & 1 else OK
        if fl:
            out[r] = np.nan
            continue
        if not (sp > 0.0 and sq > 0.0):
            out[r] = np.nan  # no distribution (empty or all zeros)
            continue
        if sp > _ENTRY_HI or sq > _ENTRY_HI:
            status[r] = EXACT
            continue
        # K: a power of two with S_p S_q K in [1, 2)
        m, ex = math.frexp(sp * sq)
        k = math.ldexp(1.0, 1 - ex)
        spk = sp * k
        sqk = sq * k
        inf = 0
        rare = 0
        for start in range(0, n, BLOCK):
            mm = min(BLOCK, n - start)
            for i in range(mm):  # branch-free, vectorized
                pj = p[r, _u(start + i)]
                qj = q[rq, _u(start + i)]
                a = np.float64(pj)
                b = np.float64(qj)
                w = b * spk
                num = fma(a, sqk, -w) - fma(b, spk, -w)
                t, bad = _term(num, w)
                t = 0.0 if qj == _ZERO else t  # p = q = 0: 0 (p > 0: inf)
                t = w if pj == _ZERO else t  # p = 0: Q g(0) = Q
                inf |= np.int64((pj > _ZERO) & (qj == _ZERO))
                rare |= np.int64(bad & (qj > _ZERO) & (pj > _ZERO))
                b0[i] = t if start == 0 else b0[i] + t
        if inf:
            out[r] = np.inf
        elif rare:
            status[r] = EXACT
        else:
            out[r] = tree_sum(b0, min(n, BLOCK)) / (spk * sq)
