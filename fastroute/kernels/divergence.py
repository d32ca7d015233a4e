"""Relative entropy (KL divergence) of probability and count rows.

With both rows normalized, ``D(P || Q) = sum_i P_i log(P_i / Q_i)`` is a sum
of terms of both signs whose total can be far smaller than the terms (a
student close to its teacher: ``D ~ eps**2`` for ``Q = P (1 + eps)``). The
kernel sums the non-negative terms of the equivalent form

    D = sum_i Q_i g(P_i / Q_i),    g(r) = r log r - r + 1 >= 0

(the added ``- P_i + Q_i`` sum to zero), so the sum has no cancellation. Each
``r - 1 = (p_i S_q - q_i S_p) / (q_i S_p)`` is formed from the raw entries
with an error-free difference of products (FMA), so a pair that agrees to 8
digits still gets its ``r - 1`` to full precision, and ``g(1 + d)`` is a
series in ``s = d / (2 + d)`` near ``d = 0`` (no cancellation there either).

The row sums ``S_p``, ``S_q`` are ordinary float64 sums: their rounding
perturbs ``D`` only by ``gamma * D + (gamma - delta)**2 / 2`` for relative
errors ``gamma``, ``delta`` (the ``- P + Q`` terms absorb the first-order
part), far inside the contract. The rows are scaled by powers of two (exact)
so that no product overflows.

Sums run in index order, so a row's bits depend on the row (and its ``q``)
alone.
"""

from __future__ import annotations

import math

import numpy as np

from .._jit import _u, jit
from ._math import BLOCK, exp_neg, fma, log_normal, log_pos
from ._reduce import L16, sum16, tree_sum
from .entropy import EXACT, NEGATIVE, OK, WORK_SIZE, background_tile, transpose_rows
from .slices import entropy_1d

__all__ = [
    "kl_rows",
    "cross_rows",
    "raw_rows",
    "kl_logits_short_rows",
    "kl_logits_long_rows",
    "kl_logits_careful_rows",
    "LOGITS_CAREFUL",
    "raw_rows_scaled",
    "RAW_SCALE",
    "relative_entropy_1d",
    "g1p",
    "q_table",
    "csr_dense_rows",
    "csr_csr_rows",
]

#: |s| below this takes the series of g (12 terms reach 2**-60 there)
_S_SERIES = 0.2
#: r - 1 beyond this: the term is computed as P log(P / Q) - P + Q
_D_BIG = 2.0**40
_TINY = 2.0**-1000


@jit(inline="always")
def _atanh_tail(x):
    # A(x) = sum_k x**k / (2k + 3), so that atanh(s) = s + s**3 A(s**2)
    a = 1.0 / 25.0
    a = a * x + 1.0 / 23.0
    a = a * x + 1.0 / 21.0
    a = a * x + 1.0 / 19.0
    a = a * x + 1.0 / 17.0
    a = a * x + 1.0 / 15.0
    a = a * x + 1.0 / 13.0
    a = a * x + 1.0 / 11.0
    a = a * x + 1.0 / 9.0
    a = a * x + 1.0 / 7.0
    a = a * x + 1.0 / 5.0
    return a * x + 1.0 / 3.0


@jit(inline="always")
def g1p(d):
    """``g(1 + d) = (1 + d) log(1 + d) - d`` for ``d >= -1``, accurate to a
    few ulp also for tiny ``|d|`` (where it is about ``d**2 / 2``).
    Branch-free: near ``d = 0`` the series ``d s + 2 (1 + d) s^3 A(s^2)`` in
    ``s = d / (2 + d)`` (from ``log(1 + d) = 2 atanh(s)``; every part of one
    sign with ``d``), elsewhere ``r log r - d``."""
    s = d / (2.0 + d)
    x = s * s
    series = s * (d + 2.0 * (1.0 + d) * x * _atanh_tail(x))
    r = max(1.0 + d, 0.0)
    direct = r * log_pos(r) - d  # r = 0: 0 * (a finite log) - d = 1
    return series if abs(s) < _S_SERIES else direct


@jit(inline="always")
def _log1p_of(d):
    # log(1 + d) for d >= -1, accurate near 0 (the series of g1p); branch-free
    s = d / (2.0 + d)
    x = s * s
    series = 2.0 * (s + s * x * _atanh_tail(x))
    return series if abs(s) < _S_SERIES else log_pos(max(1.0 + d, 0.0))


@jit(inline="always")
def _scale_of(s):
    # a power of two 2**-e with s * 2**-e in [1, 2), for a positive normal s
    m, e = math.frexp(s)
    return math.ldexp(1.0, 1 - e)


@jit(inline="always")
def _sum_times(x, r, n, c):
    # sum of the row's entries times the power of two c (exact products)
    s = 0.0
    for j in range(n):
        s += np.float64(x[r, j]) * c
    return s


@jit(inline="always")
def _scaling(x, r, n, s):
    """``(c1, c2, s1)``: powers of two with ``x * c1 * c2`` exact (no
    intermediate overflow or underflow of a normal entry) and the row's sum
    ``s1`` of those in ``[1, 2)``. A sum that overflowed (finite entries) or
    is tiny is summed again with the entries scaled first."""
    c1 = 1.0
    if s == np.inf:
        c1 = 2.0**-64  # n * max float64 * 2**-64 < 2**1024 for any n < 2**63
    elif s < 2.0**-960:
        c1 = 2.0**120
    t = s if c1 == 1.0 else _sum_times(x, r, n, c1)
    c2 = _scale_of(t)
    return c1, c2, t * c2


@jit(inline="always")
def _flags(a, b):
    # bit 0: a negative entry; bit 1: NaN or +inf
    neg = (a < 0.0) | (b < 0.0)
    bad = (a != a) | (b != b) | (a == np.inf) | (b == np.inf)
    return np.int64(neg) | (np.int64(bad) << 1)


@jit(inline="always")
def _row_sums(p, r, q, rq, n, b0, b1):
    # (S_p, S_q, flags): bit 0 a negative entry, bit 1 NaN or +inf; BLOCK
    # lanes, each summing j, j + BLOCK, ... in order, then a pairwise tree
    fl = 0
    for start in range(0, n, BLOCK):
        m = min(BLOCK, n - start)
        for i in range(m):
            a = np.float64(p[r, _u(start + i)])
            b = np.float64(q[rq, _u(start + i)])
            b0[i] = a if start == 0 else b0[i] + a
            b1[i] = b if start == 0 else b1[i] + b
            fl |= _flags(a, b)
    w = min(n, BLOCK)
    return tree_sum(b0, w), tree_sum(b1, w), fl


@jit(inline="always")
def _row_start(p, r, q, rq, n, out, status, b0, b1):
    # the row sums and checks: (S_p, S_q, done); done when the row's result
    # is already set (a negative entry: NaN and NEGATIVE; NaN or +inf: NaN)
    sp, sq, fl = _row_sums(p, r, q, rq, n, b0, b1)
    status[r] = NEGATIVE if fl & 1 else OK
    if fl:
        out[r] = np.nan
    return sp, sq, fl != 0


@jit
def kl_rows(p, q, q_step, out, status, lo, hi):
    """``D(p[r] || q[r * q_step])`` in nats of the normalized rows ``lo:hi``
    of the 2-D ``p`` into ``out`` (float64 or float32), with ``status[r]``
    ``OK`` or ``NEGATIVE`` (a negative entry in either row; ``out`` is then
    NaN). ``q_step`` 0: one background row ``q[0]`` for every row of ``p``.

    Both rows are divided by their sums (NaN if either sum is 0 or the row
    is empty). A term with ``p = 0`` contributes 0; ``p > 0`` with ``q = 0``
    makes the result ``+inf``; NaN or ``+inf`` anywhere in either row gives
    NaN. The terms are summed in ``BLOCK`` lanes and a pairwise tree, an
    order that depends on the row length only.
    """
    n = p.shape[1]
    b0, b1 = np.empty(BLOCK), np.empty(BLOCK)
    for r in range(lo, hi):
        rq = r * q_step
        sp, sq, done = _row_start(p, r, q, rq, n, out, status, b0, b1)
        if not done:
            out[r] = _kl_normalized(p, r, q, rq, n, sp, sq, b0)


@jit
def cross_rows(p, q, q_step, out, status, lo, hi):
    """Normalized cross-entropy ``H(P, Q) = H(P) + D(P || Q)`` in nats of
    the rows ``lo:hi`` into the float64 ``out``, every entry widened to
    float64 (the rules and ``status`` of :func:`kl_rows`; ``H(P)`` as
    ``entropy_1d`` of the widened row, so the bits are those of
    ``entropy(p64) + relative_entropy(p64, q64)``)."""
    kl_rows(p, q, q_step, out, status, lo, hi)
    work = np.empty(WORK_SIZE)
    row = np.empty(p.shape[1])
    for r in range(lo, hi):
        for j in range(p.shape[1]):
            row[j] = np.float64(p[r, j])
        out[r] += entropy_1d(row, True, work)


@jit
def raw_rows(p, q, q_step, cross, out, status, lo, hi):
    """As :func:`kl_rows` for the entries as given: ``sum p log(p / q)``, or
    (``cross``) ``-sum p log q``; 0 for an empty row. A row whose terms
    overflow (entries near the float64 maximum: the sum is then ``+-inf``
    or NaN, not the divergence) is marked ``EXACT`` for
    :func:`raw_rows_scaled`."""
    n = p.shape[1]
    b0, b1 = np.empty(BLOCK), np.empty(BLOCK)
    for r in range(lo, hi):
        rq = r * q_step
        sp, sq, done = _row_start(p, r, q, rq, n, out, status, b0, b1)
        if not done:
            out[r], over = _raw(p, r, q, rq, n, cross, b0, 1.0)
            status[r] = EXACT if over else OK


#: the scale of the terms in ``raw_rows_scaled`` (a power of two: exact),
#: so that no term overflows whatever ``w``
RAW_SCALE = 2.0**-128


@jit
def raw_rows_scaled(p, q, q_step, cross, w, out, status, lo, hi):
    """:func:`raw_rows` times ``w``, every term scaled before it is summed,
    for the rows ``raw_rows`` marked ``EXACT``: with ``w = RAW_SCALE /
    log(base)`` (or ``RAW_SCALE``) no term overflows, and the sum divided by
    ``RAW_SCALE`` is the divergence in that base (``+-inf`` only beyond
    float64). A ``p > 0`` where ``q = 0`` gives ``+inf * sign(w)``."""
    n = p.shape[1]
    b0, b1 = np.empty(BLOCK), np.empty(BLOCK)
    for r in range(lo, hi):
        rq = r * q_step
        sp, sq, done = _row_start(p, r, q, rq, n, out, status, b0, b1)
        if not done:
            out[r] = _raw(p, r, q, rq, n, cross, b0, w)[0]


@jit(inline="always")
def _kl_normalized(p, r, q, rq, n, sp, sq, acc):
    if not (sp > 0.0 and sq > 0.0):
        return np.nan  # no distribution (empty or all zeros)
    # products in _kl_scaled cannot overflow
    return _kl_scaled(p, r, q, rq, n, _scaling(p, r, n, sp), _scaling(q, rq, n, sq), acc)


@jit(inline="always")
def _kl_scaled(p, r, q, rq, n, ps, qs, acc):
    """``sum Q g(P / Q)`` of ``p[r, :n]`` against ``q[rq, :n]``, both scaled
    by ``ps = (p1, p2, sp1)``, ``qs = (q1, q2, sq1)`` (from ``_scaling``):
    ``P = p p1 p2 / sp1``, ``Q = q q1 q2 / sq1``."""
    p1, p2, sp1 = ps
    q1, q2, sq1 = qs
    inv_sq1 = 1.0 / sq1
    inf = 0
    rare = 0
    for start in range(0, n, BLOCK):
        m = min(BLOCK, n - start)
        for i in range(m):  # branch-free, vectorized
            pj = np.float64(p[r, _u(start + i)])
            qj = np.float64(q[rq, _u(start + i)])
            a = pj * p1 * p2
            b = qj * q1 * q2
            # d = a sq1 / (b sp1) - 1 from an error-free difference of products
            w = b * sp1
            ok = w > _TINY
            d = (fma(a, sq1, -w) - fma(b, sp1, -w)) / (w if ok else 1.0)
            big = (pj > 0.0) & ((w <= _TINY) | (d >= _D_BIG))  # summed apart below
            inf |= np.int64((pj > 0.0) & (qj == 0.0))
            rare += np.int64(big)
            t = (b * inv_sq1) * g1p(d if ok else 0.0)  # p = 0: Q g(0) = Q
            t = 0.0 if big else t
            acc[i] = t if start == 0 else acc[i] + t
    if inf:
        return np.inf
    total = tree_sum(acc, min(n, BLOCK))
    if rare:  # P far above Q (Q may be subnormal): no cancellation left
        log_shift = math.log(p1) + math.log(p2) - math.log(sp1)
        log_shift -= math.log(q1) + math.log(q2) - math.log(sq1)
        for j in range(n):
            pj = np.float64(p[r, j])
            qj = np.float64(q[rq, j])
            b = qj * q1 * q2
            w = b * sp1
            if pj > 0.0 and qj > 0.0:
                a = pj * p1 * p2
                d = (fma(a, sq1, -w) - fma(b, sp1, -w)) / w if w > _TINY else np.inf
                if d >= _D_BIG:
                    pp = a / sp1
                    qq = b * inv_sq1
                    total += pp * (math.log(pj) - math.log(qj) + log_shift) - pp + qq
    return total


@jit(inline="always")
def _raw(p, r, q, rq, n, cross, acc, w):
    # (sum, overflow): sum p log(p / q) (cross: -sum p log q) of the entries
    # as given, each term times w (1.0: the plain sum, the same bits);
    # overflow when the sum is +-inf or NaN but no p > 0 meets q = 0
    inf = 0
    for start in range(0, n, BLOCK):
        m = min(BLOCK, n - start)
        for i in range(m):  # branch-free, vectorized
            a = np.float64(p[r, _u(start + i)])
            b = np.float64(q[rq, _u(start + i)])
            inf |= np.int64((a > 0.0) & (b == 0.0))
            aw = a * w
            if cross:
                t = -aw * log_pos(b)
            else:
                # log(a / b): log1p of (a - b) / b (exact near a = b) or a log difference
                bb = b if b > 0.0 else 1.0
                near = abs(a - b) < 0.5 * b
                ratio = a / bb
                fits = (ratio > _TINY) & (ratio < 2.0**1000)
                lr = log_pos(ratio) if fits else log_pos(a) - log_pos(b)
                t = aw * (_log1p_of((a - b) / bb) if near else lr)
            t = 0.0 if a == 0.0 else t
            acc[i] = t if start == 0 else acc[i] + t
    if inf:
        return (np.inf if w > 0.0 else -np.inf), False
    total = tree_sum(acc, min(n, BLOCK))
    return total, not abs(total) < np.inf


# --- sparse p: CSR rows against dense rows or CSR rows --------------------------
# A row's stored pairs are copied into two float64 buffers (against CSR q:
# the union of both patterns, absent entries 0) and summed by the dense
# code above. Against a dense q, the columns p does not store contribute
# Q g(0) = Q each: their total is taken as (exact sum of q) - (exact sum of
# the stored q), both double-doubles, so that it carries the same second-
# order-only dependence on the rounding of S_q as the dense sum.

#: the row table of a dense q (``q_table``): scaling c1, c2, sq1 of
#: ``_scaling``; the exact sum of ``q * c1`` as hi + lo; flags
QTAB_WIDTH = 6


@jit(inline="always")
def _two_sum(a, b):
    # a + b = s + e exactly (Knuth's TwoSum)
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


@jit(inline="always")
def _dd_add(hi, lo, x):
    # the double-double hi + lo plus x (the error of hi + x kept in lo)
    s, e = _two_sum(hi, x)
    return s, lo + e


@jit
def q_table(q, tab):
    """``tab[r] = (c1, c2, sq1, hi, lo, flags)`` of every row of the dense
    ``q``: the scaling of ``_scaling`` (``c1 = 0`` when the row sums to 0),
    the sum of ``q[r] * c1`` as the double-double ``hi + lo``, and flags (bit
    0 a negative entry, bit 1 NaN or ``+inf``)."""
    n = q.shape[1]
    b0, b1 = np.empty(BLOCK), np.empty(BLOCK)
    for r in range(q.shape[0]):
        s, _, fl = _row_sums(q, r, q, r, n, b0, b1)
        tab[r, 5] = fl
        tab[r, 0:5] = 0.0
        if fl == 0 and s > 0.0:
            c1, c2, s1 = _scaling(q, r, n, s)
            hi = 0.0
            lo = 0.0
            for j in range(n):
                hi, lo = _dd_add(hi, lo, np.float64(q[r, j]) * c1)
            tab[r, 0], tab[r, 1], tab[r, 2], tab[r, 3], tab[r, 4] = c1, c2, s1, hi, lo


@jit(inline="always")
def _max_row(indptr, lo, hi):
    cap = 1
    for r in range(lo, hi):
        cap = max(cap, indptr[r + 1] - indptr[r])
    return cap


@jit(inline="always")
def _rest_of_q(qb, m, tab, rq):
    # the scaled mass of q outside the row's m stored columns (>= 0)
    c1 = tab[rq, 0]
    hi = 0.0
    lo = 0.0
    for i in range(m):
        hi, lo = _dd_add(hi, lo, qb[0, i] * c1)
    h, e = _two_sum(tab[rq, 3], -hi)
    return max(h + (e + (tab[rq, 4] - lo)), 0.0) * tab[rq, 1]


@jit
def csr_dense_rows(pm, q, q_step, tab, mode, out, status, lo, hi):
    """Rows ``lo:hi`` of the CSR ``pm = (indptr, indices, data2d)`` (canonical,
    ``data2d`` of shape ``(1, nnz)``) against the dense rows ``q[r * q_step]``
    (their ``q_table`` in ``tab``): ``mode`` 0 ``D(P || Q)`` of the normalized
    rows, 1 ``sum p log(p / q)``, 2 ``-sum p log q`` of the entries as given;
    the rules and ``status`` of :func:`kl_rows`."""
    indptr, indices, data = pm
    pb = np.empty((1, _max_row(indptr, lo, hi)))
    qb = np.empty_like(pb)
    b0, b1 = np.empty(BLOCK), np.empty(BLOCK)
    for r in range(lo, hi):
        a = indptr[r]
        m = indptr[r + 1] - a
        rq = r * q_step
        for i in range(m):
            pb[0, i] = np.float64(data[0, a + i])
            qb[0, i] = np.float64(q[rq, indices[a + i]])
        sp, _, fl = _row_sums(pb, 0, pb, 0, m, b0, b1)
        fl |= np.int64(tab[rq, 5])
        status[r] = NEGATIVE if fl & 1 else OK
        if fl:
            out[r] = np.nan
        elif mode != 0:
            out[r], over = _raw(pb, 0, qb, 0, m, mode == 2, b0, 1.0)
            status[r] = EXACT if over else OK
        elif not (sp > 0.0 and tab[rq, 0] > 0.0):
            out[r] = np.nan  # no distribution
        else:
            qs = (tab[rq, 0], tab[rq, 1], tab[rq, 2])
            d = _kl_scaled(pb, 0, qb, 0, m, _scaling(pb, 0, m, sp), qs, b0)
            out[r] = d + _rest_of_q(qb, m, tab, rq) / tab[rq, 2]


@jit
def csr_csr_rows(pm, qm, mode, out, status, lo, hi):
    """As :func:`csr_dense_rows` against the rows of the CSR ``qm`` (same
    shape, canonical): the sums run over the union of the two patterns."""
    indptr, indices, data = pm
    qptr, qind, qdata = qm
    cap = 1
    for r in range(lo, hi):
        cap = max(cap, indptr[r + 1] - indptr[r] + qptr[r + 1] - qptr[r])
    pb = np.empty((1, cap))
    qb = np.empty_like(pb)
    b0, b1 = np.empty(BLOCK), np.empty(BLOCK)
    for r in range(lo, hi):
        i, ie = indptr[r], indptr[r + 1]
        j, je = qptr[r], qptr[r + 1]
        m = 0
        while i < ie or j < je:  # merge the sorted column lists
            ci = indices[i] if i < ie else -1
            cj = qind[j] if j < je else -1
            take_p = i < ie and (j >= je or ci <= cj)
            take_q = j < je and (i >= ie or cj <= ci)
            pb[0, m] = np.float64(data[0, i]) if take_p else 0.0
            qb[0, m] = np.float64(qdata[0, j]) if take_q else 0.0
            i += np.int64(take_p)
            j += np.int64(take_q)
            m += 1
        sp, sq, fl = _row_sums(pb, 0, qb, 0, m, b0, b1)
        status[r] = NEGATIVE if fl & 1 else OK
        if fl:
            out[r] = np.nan
        elif mode != 0:
            out[r], over = _raw(pb, 0, qb, 0, m, mode == 2, b0, 1.0)
            status[r] = EXACT if over else OK
        else:
            out[r] = _kl_normalized(pb, 0, qb, 0, m, sp, sq, b0)


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
        x = np.float64(zp[r, j])
        y = np.float64(zq[rq, j])
        bad |= _logit_bad(x) | _logit_bad(y)
        mx = max(mx, x)
        my = max(my, y)
    if bad or n == 0 or mx == -np.inf or my == -np.inf:
        return np.nan
    wp = 0.0
    wq = 0.0
    for j in range(n):
        wp += exp_neg(_gap(np.float64(zp[r, j]), mx, inv_t))
        wq += exp_neg(_gap(np.float64(zq[rq, j]), my, inv_t))
    inv_wp = 1.0 / wp
    inv_wq = 1.0 / wq
    lwp = log_normal(wp)
    lw = lwp - log_normal(wq)
    c_hi, c_lo = _two_diff(mx, my)
    log_w = math.log(abs(w))
    total = 0.0
    for j in range(n):
        x = np.float64(zp[r, j])
        y = np.float64(zq[rq, j])
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
                x = np.float64(zp[r, _u(start + i)])
                y = np.float64(zq[rq, _u(start + i)])
                bad |= _logit_bad(x) | _logit_bad(y)
                a0[i] = x if x > a0[i] else a0[i]
                a1[i] = y if y > a1[i] else a1[i]
        for i in range(n - nf):
            x = np.float64(zp[r, _u(nf + i)])
            y = np.float64(zq[rq, _u(nf + i)])
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
                j = _u(start + i)
                e0 = exp_neg((np.float64(zp[r, j]) - mx) * inv_t)
                e1 = exp_neg((np.float64(zq[rq, j]) - my) * inv_t)
                ep[j] = e0
                eq[j] = e1
                a0[i] += e0
                a1[i] += e1
        for i in range(n - nf):
            j = _u(nf + i)
            e0 = exp_neg((np.float64(zp[r, j]) - mx) * inv_t)
            e1 = exp_neg((np.float64(zq[rq, j]) - my) * inv_t)
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
                j = _u(start + i)
                x = np.float64(zp[r, j])
                y = np.float64(zq[rq, j])
                t, f, h = _logit_term(x, y, ep[j], eq[j], c_hi, c_lo, inv_t, inv_wp, inv_wq, lw)
                a0[i] += t
                inf |= f
                huge |= h
        for i in range(n - nf):
            j = _u(nf + i)
            x = np.float64(zp[r, j])
            y = np.float64(zq[rq, j])
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


@jit
def relative_entropy_1d(p, q, normalize):
    """Relative entropy ``D(p || q)`` in nats (float64) of the 1-D slices
    ``p`` and ``q`` (the same length), the rules of
    ``fastroute.relative_entropy``: zeros of ``p`` contribute 0, ``p > 0``
    where ``q = 0`` gives ``+inf``; NaN or ``+inf`` anywhere, a negative
    entry, or (normalize) a zero sum give NaN, not an error: validate the
    values first if you need errors. Slices of different lengths raise
    ``ValueError`` (one compare per call).

    Examples
    --------
    >>> import numpy as np, numba
    >>> from fastroute.kernels import relative_entropy_1d
    >>> @numba.njit
    ... def divergences(P, q):
    ...     out = np.empty(P.shape[0])
    ...     for i in range(P.shape[0]):
    ...         out[i] = relative_entropy_1d(P[i], q, True)
    ...     return out
    >>> divergences(np.array([[1.0, 1.0], [1.0, 0.0]]), np.array([1.0, 1.0]))
    array([0.        , 0.69314718])
    """
    if p.shape[0] != q.shape[0]:
        raise ValueError("relative_entropy_1d: p and q differ in length; pass slices of one length")
    out = np.empty(1)
    status = np.empty(1, np.uint8)
    p2, q2 = np.expand_dims(p, 0), np.expand_dims(q, 0)
    if normalize:
        kl_rows(p2, q2, 1, out, status, 0, 1)
    else:
        raw_rows(p2, q2, 1, False, out, status, 0, 1)
        if status[0] == EXACT:  # terms beyond float64: summed again, scaled
            raw_rows_scaled(p2, q2, 1, False, RAW_SCALE, out, status, 0, 1)
            return out[0] / RAW_SCALE
    return out[0]
