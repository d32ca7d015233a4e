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

from .._dtypes import widen
from .._jit import jit, uidx
from ._math import BLOCK, fma, log_pos
from ._reduce import tree_sum
from .entropy import EXACT, NEGATIVE, OK, WORK_SIZE
from .slices import entropy_1d

__all__ = [
    "kl_rows",
    "cross_rows",
    "raw_rows",
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
        s += np.float64(widen(x[r, j])) * c
    return s


@jit
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
def entry_flags(a, b):
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
            a = np.float64(widen(p[r, uidx(start + i)]))
            b = np.float64(widen(q[rq, uidx(start + i)]))
            b0[i] = a if start == 0 else b0[i] + a
            b1[i] = b if start == 0 else b1[i] + b
            fl |= entry_flags(a, b)
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
            row[j] = np.float64(widen(p[r, j]))
        out[r] += entropy_1d(row, True, work)


#: the scale of the terms of a sum summed again by :func:`raw_rows` (a
#: power of two: exact), so that no term overflows whatever ``w``
RAW_SCALE = 2.0**-128


@jit
def raw_rows(p, q, q_step, cross, w, out, status, lo, hi):
    """As :func:`kl_rows` for the entries as given, every term times ``w``:
    ``w sum p log(p / q)``, or (``cross``) ``-w sum p log q``; 0 for an
    empty row. ``w = 1``: the plain sums; a row whose terms overflow
    (entries near the float64 maximum: the sum is then ``+-inf`` or NaN,
    not the divergence) is marked ``EXACT``, to be summed again with
    ``w = RAW_SCALE / log(base)`` (or ``RAW_SCALE``): then no term
    overflows, and the sum divided by ``RAW_SCALE`` is the divergence in
    that base (``+-inf`` only beyond float64). A ``p > 0`` where ``q = 0``
    gives ``+inf * sign(w)``."""
    n = p.shape[1]
    b0, b1 = np.empty(BLOCK), np.empty(BLOCK)
    for r in range(lo, hi):
        rq = r * q_step
        sp, sq, done = _row_start(p, r, q, rq, n, out, status, b0, b1)
        if not done:
            out[r], over = _raw(p, r, q, rq, n, cross, b0, w)
            status[r] = EXACT if (over and w == 1.0) else OK


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
            pj = np.float64(widen(p[r, uidx(start + i)]))
            qj = np.float64(widen(q[rq, uidx(start + i)]))
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
        total = _far_terms(p, r, q, rq, n, ps, qs, total)
    return total


@jit
def _far_terms(p, r, q, rq, n, ps, qs, total):
    # ``total`` plus the terms ``_kl_scaled`` left out, P far above Q:
    # P log(P / Q) - P + Q from logs of the entries (rare: not inlined)
    p1, p2, sp1 = ps
    q1, q2, sq1 = qs
    inv_sq1 = 1.0 / sq1
    log_shift = math.log(p1) + math.log(p2) - math.log(sp1)
    log_shift -= math.log(q1) + math.log(q2) - math.log(sq1)
    for j in range(n):
        pj = np.float64(widen(p[r, j]))
        qj = np.float64(widen(q[rq, j]))
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
            a = np.float64(widen(p[r, uidx(start + i)]))
            b = np.float64(widen(q[rq, uidx(start + i)]))
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
def two_sum(a, b):
    # a + b = s + e exactly (Knuth's TwoSum)
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


@jit(inline="always")
def dd_add(hi, lo, x):
    # the double-double hi + lo plus x (the error of hi + x kept in lo)
    s, e = two_sum(hi, x)
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
                hi, lo = dd_add(hi, lo, np.float64(widen(q[r, j])) * c1)
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
        hi, lo = dd_add(hi, lo, qb[0, i] * c1)
    h, e = two_sum(tab[rq, 3], -hi)
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
            qb[0, i] = np.float64(widen(q[rq, indices[a + i]]))
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
        raw_rows(p2, q2, 1, False, 1.0, out, status, 0, 1)
        if status[0] == EXACT:  # terms beyond float64: summed again, scaled
            raw_rows(p2, q2, 1, False, RAW_SCALE, out, status, 0, 1)
            return out[0] / RAW_SCALE
    return out[0]
