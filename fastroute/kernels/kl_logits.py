"""The divergence of two softmax distributions from their logits,
``D(softmax(z_p / T) || softmax(z_q / T))``: fast kernels for short rows
(a row per SIMD lane) and long rows (16 lanes), exact to the contract for
any logits within ``2**600 T`` of each other, and a careful serial path for
the rows beyond (spans past float64, tiny temperatures)."""

from __future__ import annotations

import math

import numpy as np

from .._dtypes import widen
from .._jit import jit, uidx
from ._math import exp_neg, log_normal
from ._reduce import L16, sum16
from .entropy import background_tile, transpose_rows

# --- between two softmax distributions ------------------------------------------
# The term Q g(P / Q) = P delta - P + Q of a pair with log-ratio delta: for
# |delta| < 1/2 the series Q sum_k (k - 1) delta^k / k! (no cancellation),
# else that form with P, Q from their exponentials (both <= 1: no overflow).
# An error common to every delta (the log W's) changes D only at second
# order, as in kl_rows.


@jit(inline="always")
def _g_exp_series(t):
    # g(e^t) = t e^t - (e^t - 1) = sum_{k>=2} (k - 1) t^k / k!, |t| < 1/2
    a = 14.0 / 1307674368000.0
    a = a * t + 13.0 / 87178291200.0
    a = a * t + 12.0 / 6227020800.0
    a = a * t + 11.0 / 479001600.0
    a = a * t + 10.0 / 39916800.0
    a = a * t + 9.0 / 3628800.0
    a = a * t + 8.0 / 362880.0
    a = a * t + 7.0 / 40320.0
    a = a * t + 6.0 / 5040.0
    a = a * t + 5.0 / 720.0
    a = a * t + 4.0 / 120.0
    a = a * t + 3.0 / 24.0
    a = a * t + 2.0 / 6.0
    a = a * t + 1.0 / 2.0
    return a * t * t


@jit(inline="always")
def _two_diff(a, b):
    # a - b = s + e exactly (Knuth's TwoSum)
    s = a - b
    bb = s - a
    return s, (a - (s - bb)) - (b + bb)


@jit(inline="always")
def _logit_bad(v):
    return (v != v) | (v == np.inf)


@jit(inline="always")
def _logit_term(x, y, ep, eq, c_hi, c_lo, inv_t, inv_wp, inv_wq, lw):
    """``(Q g(P / Q), inf, huge)`` of one pair of logits ``x``, ``y`` with
    their exponentials ``ep = exp((x - max) / T)``, ``eq``; ``c = max_p -
    max_q`` as ``c_hi + c_lo``, ``lw = log W_p - log W_q``. ``huge``: the
    log-ratio is beyond ``_DELTA_FAST`` or not finite (a difference of the
    logits overflowed), so the term may be wrong: the row is left to
    :func:`kl_logits_careful_rows`. Branch-free."""
    pp = ep * inv_wp
    qq = eq * inv_wq
    p_zero = x == -np.inf
    q_zero = y == -np.inf
    s_hi, s_lo = _two_diff(x, y)
    dz = (s_hi - c_hi) + (s_lo - c_lo)  # delta = dz / T - lw
    dz = 0.0 if (p_zero or q_zero) else dz
    d = dz * inv_t - lw
    small = abs(d) < 0.5
    # P delta - P + Q, with P / T formed first (no overflow of dz / T)
    t = qq * _g_exp_series(d) if small else (pp * inv_t) * dz - pp * (lw + 1.0) + qq
    # P = 0 (or below the smallest float): P delta is below 1e-300
    # unless the logits themselves are near float64's limit
    t = qq if (p_zero or pp == 0.0) else t
    return t, q_zero and not p_zero, not (abs(d) < _DELTA_FAST)


@jit(inline="always")
def _softmax_consts(mx, my, wp, wq):
    c_hi, c_lo = _two_diff(mx, my)
    return c_hi, c_lo, 1.0 / wp, 1.0 / wq, log_normal(wp) - log_normal(wq)


# --- the careful path: rows the fast kernels cannot carry ----------------------
# Logits whose differences overflow float64 (a span beyond 1.8e308), or whose
# log-ratios are beyond 2**600 (a tiny temperature): every difference is
# formed from halves when it would overflow (exact: both operands are then
# above 2**969), and a term P delta whose P is below 2**-960 (or 0 by
# underflow) is formed from its logarithm.

#: P below this: the term P delta is formed as exp(log P + log delta)
_P_LOG = 2.0**-960


@jit(inline="always")
def _gap(v, m, inv_t):
    # (v - m) / T for v <= m (v may be -inf), without overflow of v - m
    g = v - m
    if g == -np.inf and v != -np.inf:
        return ((0.5 * v - 0.5 * m) * inv_t) * 2.0
    return g * inv_t


@jit(inline="always")
def _kl_logits_careful(zp, r, zq, rq, inv_t, w):
    """``w * D`` of one row of any finite logits, a serial sum in index
    order; the rules of the fast kernels (NaN; ``-inf`` logits; ``+inf *
    sign(w)`` where ``p > 0`` and ``q = 0``)."""
    n = zp.shape[1]
    mx = -np.inf
    my = -np.inf
    bad = False
    for j in range(n):
        x = np.float64(widen(zp[r, j]))
        y = np.float64(widen(zq[rq, j]))
        bad |= _logit_bad(x) | _logit_bad(y)
        mx = max(mx, x)
        my = max(my, y)
    if bad or n == 0 or mx == -np.inf or my == -np.inf:
        return np.nan
    wp = 0.0
    wq = 0.0
    for j in range(n):
        wp += exp_neg(_gap(np.float64(widen(zp[r, j])), mx, inv_t))
        wq += exp_neg(_gap(np.float64(widen(zq[rq, j])), my, inv_t))
    inv_wp = 1.0 / wp
    inv_wq = 1.0 / wq
    lwp = log_normal(wp)
    lw = lwp - log_normal(wq)
    c_hi, c_lo = _two_diff(mx, my)
    log_w = math.log(abs(w))
    total = 0.0
    for j in range(n):
        x = np.float64(widen(zp[r, j]))
        y = np.float64(widen(zq[rq, j]))
        if y == -np.inf and x != -np.inf:
            return np.inf if w > 0.0 else -np.inf  # p > 0 where q = 0
        u = _gap(x, mx, inv_t)
        pp = exp_neg(u) * inv_wp
        qq = exp_neg(_gap(y, my, inv_t)) * inv_wq
        if x == -np.inf:
            total += qq * w  # P = 0: Q g(0) = Q
            continue
        # delta = sc * dz / T - lw, dz = (x - mx) - (y - my) at the scale 1 / sc
        s_hi, s_lo = _two_diff(x, y)
        dz = (s_hi - c_hi) + (s_lo - c_lo)
        sc = 1.0
        if not abs(dz) < np.inf:  # a difference overflowed: from halves
            a_hi, a_lo = _two_diff(0.5 * x, 0.5 * mx)
            b_hi, b_lo = _two_diff(0.5 * y, 0.5 * my)
            dz = (a_hi - b_hi) + (a_lo - b_lo)
            sc = 2.0
        d = sc * (dz * inv_t) - lw  # may be +-inf: beyond float64
        if abs(d) < 0.5:
            t = (qq * w) * _g_exp_series(d)
        elif d < 0.0:  # P < Q: P delta >= P log P, no overflow
            t = (0.0 if (pp == 0.0 or d == -np.inf) else (pp * w) * d) - pp * w + qq * w
        else:
            if pp >= _P_LOG and d < np.inf:
                pd = (pp * w) * d
            elif pp >= _P_LOG:  # delta beyond float64: lw is below its last bit
                pd = (((pp * w) * dz) * inv_t) * sc
            elif u == -np.inf:
                pd = 0.0
            else:  # P tiny or 0 by underflow: exp(log P + log delta)
                ld = math.log(d) if d < np.inf else math.log(dz) + math.log(inv_t * sc)
                pd = math.exp(u - lwp + ld + log_w)
                pd = pd if w > 0.0 else -pd
            t = pd - pp * w + qq * w
        total += t
    return total


@jit
def kl_logits_careful_rows(zp, zq, q_step, inv_t, w, rows, out):
    """``out[r] = w * D(softmax(zp[r] / T) || softmax(zq[r * q_step] / T))``
    (``inv_t = 1 / T``) for the rows ``r`` in ``rows``: those the fast
    kernels marked ``LOGITS_CAREFUL``, or (``w = 1 / log(base)``, every term
    scaled before the sum) those beyond float64 in nats that may be finite
    in another base. Compiled only when some call needs it."""
    for i in range(rows.shape[0]):
        r = rows[i]
        out[r] = _kl_logits_careful(zp, r, zq, r * q_step, inv_t, w)


#: logit rows up to this length are processed as tiles, a row per SIMD lane
LOGITS_SHORT_N = 32
#: what the fast kernels write for a row they cannot carry, for
#: ``kl_logits_careful_rows`` (a divergence is never negative)
LOGITS_CAREFUL = -1.0
#: a row with a log-ratio beyond this (or a difference of logits beyond
#: float64) is left to the careful path. Below it the fast kernels are
#: exact to the contract: a term they drop for ``P`` below the smallest
#: float64 is under ``2**-1074 * 2**600``.
_DELTA_FAST = 2.0**600
#: ``1 / T`` below this (``T > 2**1000``): every row takes the careful path
#: (a difference of two logits beyond float64 may still be a moderate
#: multiple of ``T``)
_INV_T_FAST = 2.0**-1000


# D(softmax(zp[r] / T) || softmax(zq[r * q_step] / T)) in nats for the rows
# lo:hi into out, inv_t = 1 / T, by one of two kernels chosen by the row
# length (a call compiles only the one it uses): rows of up to
# LOGITS_SHORT_N logits as tiles of rows (one per SIMD lane, summed in index
# order), longer ones in 16 lanes and a fixed tree. -inf logits are
# probability 0 (+inf where p > 0 and q = 0); NaN, +inf, an all--inf row or
# an empty row give NaN. A row whose logits differ by more than float64
# carries, or by more than 2**600 T, is marked LOGITS_CAREFUL for
# kl_logits_careful_rows (so is every row when T > 2**1000).
#
# The log-ratio of a pair is delta = ((zp - zq) - (max zp - max zq)) / T -
# (log W_p - log W_q); both differences are formed exactly (TwoSum) before
# they are combined, so delta is accurate to a few ulp of |delta| +
# |log W_p - log W_q| however large the logits. Each exponential is
# computed once (kept for the terms).


@jit
def kl_logits_long_rows(zp, zq, q_step, inv_t, out, lo, hi):
    """Logit rows longer than ``LOGITS_SHORT_N``: 16 lanes, a fixed tree.
    Returns how many rows it marked ``LOGITS_CAREFUL``."""
    n = zp.shape[1]
    careful = inv_t < _INV_T_FAST
    marked = 0
    nf = n - n % L16
    ep = np.empty(max(n, 1))
    eq = np.empty(max(n, 1))
    a0 = np.empty(L16)
    a1 = np.empty(L16)
    for r in range(lo, hi):
        rq = r * q_step
        for i in range(L16):  # running maxima in 16 lanes
            a0[i] = -np.inf
            a1[i] = -np.inf
        bad = False
        for start in range(0, nf, L16):
            for i in range(L16):
                x = np.float64(widen(zp[r, uidx(start + i)]))
                y = np.float64(widen(zq[rq, uidx(start + i)]))
                bad |= _logit_bad(x) | _logit_bad(y)
                a0[i] = x if x > a0[i] else a0[i]
                a1[i] = y if y > a1[i] else a1[i]
        for i in range(n - nf):
            x = np.float64(widen(zp[r, uidx(nf + i)]))
            y = np.float64(widen(zq[rq, uidx(nf + i)]))
            bad |= _logit_bad(x) | _logit_bad(y)
            a0[i] = x if x > a0[i] else a0[i]
            a1[i] = y if y > a1[i] else a1[i]
        mx = -np.inf
        my = -np.inf
        for i in range(L16):
            mx = a0[i] if a0[i] > mx else mx
            my = a1[i] if a1[i] > my else my
        if bad or n == 0 or mx == -np.inf or my == -np.inf:
            out[r] = np.nan
            continue
        for i in range(L16):
            a0[i] = 0.0
            a1[i] = 0.0
        for start in range(0, nf, L16):
            for i in range(L16):  # the exponentials, kept
                j = uidx(start + i)
                e0 = exp_neg((np.float64(widen(zp[r, j])) - mx) * inv_t)
                e1 = exp_neg((np.float64(widen(zq[rq, j])) - my) * inv_t)
                ep[j] = e0
                eq[j] = e1
                a0[i] += e0
                a1[i] += e1
        for i in range(n - nf):
            j = uidx(nf + i)
            e0 = exp_neg((np.float64(widen(zp[r, j])) - mx) * inv_t)
            e1 = exp_neg((np.float64(widen(zq[rq, j])) - my) * inv_t)
            ep[j] = e0
            eq[j] = e1
            a0[i] += e0
            a1[i] += e1
        c_hi, c_lo, inv_wp, inv_wq, lw = _softmax_consts(mx, my, sum16(a0), sum16(a1))
        for i in range(L16):
            a0[i] = 0.0
        inf = False
        huge = careful
        for start in range(0, nf, L16):
            for i in range(L16):  # branch-free, vectorized
                j = uidx(start + i)
                x = np.float64(widen(zp[r, j]))
                y = np.float64(widen(zq[rq, j]))
                t, f, h = _logit_term(x, y, ep[j], eq[j], c_hi, c_lo, inv_t, inv_wp, inv_wq, lw)
                a0[i] += t
                inf |= f
                huge |= h
        for i in range(n - nf):
            j = uidx(nf + i)
            x = np.float64(widen(zp[r, j]))
            y = np.float64(widen(zq[rq, j]))
            t, f, h = _logit_term(x, y, ep[j], eq[j], c_hi, c_lo, inv_t, inv_wp, inv_wq, lw)
            a0[i] += t
            inf |= f
            huge |= h
        out[r] = np.inf if inf else (LOGITS_CAREFUL if huge else sum16(a0))
        marked += huge and not inf
    return marked


@jit
def kl_logits_short_rows(zp, zq, q_step, inv_t, out, lo, hi):
    """Logit rows of up to ``LOGITS_SHORT_N``, a row per lane (idle lanes:
    zeros). Returns how many rows it marked ``LOGITS_CAREFUL``."""
    n = zp.shape[1]
    nl = max(1, min(64, hi - lo))
    xt = np.empty((n, nl))
    yt = np.empty((n, nl))
    ept = np.empty((n, nl))
    eqt = np.empty((n, nl))
    mx = np.empty(nl)
    my = np.empty(nl)
    wp = np.empty(nl)
    wq = np.empty(nl)
    acc = np.empty(nl)
    lw = np.empty(nl)
    bad = np.empty(nl, np.bool_)
    inf = np.empty(nl, np.bool_)
    huge = np.empty(nl, np.bool_)
    careful = inv_t < _INV_T_FAST
    marked = 0
    if q_step == 0:
        background_tile(zq, yt)
    for r0 in range(lo, hi, nl):
        g = min(nl, hi - r0)
        transpose_rows(zp, r0, g, xt, 0.0)
        if q_step != 0:
            transpose_rows(zq, r0, g, yt, 0.0)
        for rr in range(nl):
            mx[rr] = -np.inf
            my[rr] = -np.inf
            bad[rr] = False
            wp[rr] = 0.0
            wq[rr] = 0.0
            acc[rr] = 0.0
            inf[rr] = False
            huge[rr] = careful
        for j in range(n):
            for rr in range(nl):
                x = xt[j, rr]
                y = yt[j, rr]
                bad[rr] |= _logit_bad(x) | _logit_bad(y)
                mx[rr] = x if x > mx[rr] else mx[rr]
                my[rr] = y if y > my[rr] else my[rr]
        for j in range(n):
            for rr in range(nl):  # vectorized across rows
                e0 = exp_neg((xt[j, rr] - mx[rr]) * inv_t)
                e1 = exp_neg((yt[j, rr] - my[rr]) * inv_t)
                ept[j, rr] = e0
                eqt[j, rr] = e1
                wp[rr] += e0
                wq[rr] += e1
        for rr in range(nl):  # mx, my, wp, wq become c_hi, c_lo, 1 / W_p, 1 / W_q
            bad[rr] |= (n == 0) | (mx[rr] == -np.inf) | (my[rr] == -np.inf)
            mx[rr], my[rr], wp[rr], wq[rr], lw[rr] = _softmax_consts(mx[rr], my[rr], wp[rr], wq[rr])
        for j in range(n):
            for rr in range(nl):  # branch-free, vectorized across rows
                t, f, h = _logit_term(xt[j, rr], yt[j, rr], ept[j, rr], eqt[j, rr], mx[rr],
                                      my[rr], inv_t, wp[rr], wq[rr], lw[rr])  # fmt: skip
                acc[rr] += t
                inf[rr] |= f
                huge[rr] |= h
        for rr in range(g):
            done = np.inf if inf[rr] else (LOGITS_CAREFUL if huge[rr] else acc[rr])
            out[r0 + rr] = np.nan if bad[rr] else done
            marked += huge[rr] and not (inf[rr] or bad[rr])
    return marked


__all__ = [
    "LOGITS_SHORT_N", "LOGITS_CAREFUL", "kl_logits_short_rows", "kl_logits_long_rows",
    "kl_logits_careful_rows",
]  # fmt: skip
