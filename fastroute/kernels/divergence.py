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
from ._math import fma
from .entropy import NEGATIVE, OK

__all__ = ["kl_rows", "relative_entropy_1d", "g1p", "KL", "CROSS_RAW"]

#: |s| below this takes the series of g (12 terms reach 2**-60 there)
_S_SERIES = 0.2
#: r - 1 beyond this: the term is computed as P log(P / Q) - P + Q
_D_BIG = 2.0**40
_TINY = 2.0**-1000


@jit(inline="always")
def g1p(d):
    """``g(1 + d) = (1 + d) log(1 + d) - d`` for ``d >= -1``, accurate to a
    few ulp also for tiny ``|d|`` (where it is about ``d**2 / 2``)."""
    s = d / (2.0 + d)
    if abs(s) < _S_SERIES:
        # log(1 + d) = 2 atanh(s) = 2 (s + s^3 A(s^2)), A(x) = sum x^k / (2k + 3);
        # then g = d s + 2 (1 + d) s^3 A, every part of one sign with d
        x = s * s
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
        a = a * x + 1.0 / 3.0
        return s * (d + 2.0 * (1.0 + d) * x * a)
    r = 1.0 + d
    return (r * math.log(r) - d) if r > 0.0 else 1.0


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
def _row_sums(p, r, q, rq, n):
    # (S_p, S_q, flags): bit 0 a negative entry, bit 1 NaN or +inf
    sp = 0.0
    sq = 0.0
    fl = 0
    for j in range(n):
        a = np.float64(p[r, j])
        b = np.float64(q[rq, j])
        sp += a
        sq += b
        fl |= (1 if (a < 0.0 or b < 0.0) else 0) | (
            2 if (a != a or b != b or a == np.inf or b == np.inf) else 0
        )
    return sp, sq, fl


#: what ``kl_rows`` computes
KL = 0
CROSS_RAW = 1  # -sum p log q of the entries as given


@jit
def kl_rows(p, q, q_step, normalize, out, status, lo, hi, kind):
    """``D(p[r] || q[r * q_step])`` in nats for the rows ``lo:hi`` of the 2-D
    ``p`` into ``out`` (float64 or float32), with ``status[r]`` ``OK`` or
    ``NEGATIVE`` (a negative entry in either row; ``out`` is then NaN).

    ``q_step`` 0: one background row ``q[0]`` for every row of ``p``.
    ``kind`` ``CROSS_RAW``: ``-sum p log q`` of the entries as given instead.
    ``normalize``: both rows divided by their sums (NaN if either sum is 0
    or the row is empty); else ``sum p log(p / q)`` of the entries as given
    (0 for an empty row). A term with ``p = 0`` contributes 0; ``p > 0``
    with ``q = 0`` makes the result ``+inf``; NaN or ``+inf`` anywhere in
    either row gives NaN.
    """
    n = p.shape[1]
    for r in range(lo, hi):
        rq = r * q_step
        sp, sq, fl = _row_sums(p, r, q, rq, n)
        if fl & 1:
            out[r] = np.nan
            status[r] = NEGATIVE
            continue
        status[r] = OK
        if fl & 2:
            out[r] = np.nan
        elif kind == CROSS_RAW:
            out[r] = _cross_raw(p, r, q, rq, n)
        elif normalize:
            out[r] = _kl_normalized(p, r, q, rq, n, sp, sq)
        else:
            out[r] = _kl_raw(p, r, q, rq, n)


@jit(inline="always")
def _kl_normalized(p, r, q, rq, n, sp, sq):
    if not (sp > 0.0 and sq > 0.0):
        return np.nan  # no distribution (empty or all zeros)
    p1, p2, sp1 = _scaling(p, r, n, sp)  # products below cannot overflow
    q1, q2, sq1 = _scaling(q, rq, n, sq)
    # log P - log Q = log p - log q + log_shift for the big-ratio terms
    log_shift = math.log(p1) + math.log(p2) - math.log(sp1) - math.log(q1) - math.log(q2)
    log_shift += math.log(sq1)
    total = 0.0
    for j in range(n):
        pj = np.float64(p[r, _u(j)])
        qj = np.float64(q[rq, _u(j)])
        a = pj * p1 * p2
        b = qj * q1 * q2
        qq = b / sq1
        if pj == 0.0:
            total += qq  # Q g(0) = Q
            continue
        if qj == 0.0:
            return np.inf
        # d = a sq1 / (b sp1) - 1 from an error-free difference of products
        w = b * sp1
        d = (fma(a, sq1, -w) - fma(b, sp1, -w)) / w if w > _TINY else np.inf
        if d < _D_BIG:
            total += qq * g1p(d)
        else:  # P far above Q (Q may be subnormal): no cancellation left
            pp = a / sp1
            total += pp * (math.log(pj) - math.log(qj) + log_shift) - pp + qq
    return total


@jit(inline="always")
def _kl_raw(p, r, q, rq, n):
    total = 0.0
    for j in range(n):
        a = np.float64(p[r, _u(j)])
        b = np.float64(q[rq, _u(j)])
        if a == 0.0:
            continue
        if b == 0.0:
            return np.inf
        if abs(a - b) < 0.5 * b:  # a - b is exact here (Sterbenz)
            total += a * math.log1p((a - b) / b)
        else:
            ratio = a / b
            ok = 1e-300 < ratio < 1e300
            total += a * (math.log(ratio) if ok else math.log(a) - math.log(b))
    return total


@jit(inline="always")
def _cross_raw(p, r, q, rq, n):
    total = 0.0
    for j in range(n):
        a = np.float64(p[r, _u(j)])
        b = np.float64(q[rq, _u(j)])
        if a == 0.0:
            continue
        if b == 0.0:
            return np.inf
        total -= a * math.log(b)
    return total


@jit
def relative_entropy_1d(p, q, normalize):
    """Relative entropy ``D(p || q)`` in nats (float64) of the 1-D slices
    ``p`` and ``q`` (the same length), the rules of
    ``fastroute.relative_entropy``: zeros of ``p`` contribute 0, ``p > 0``
    where ``q = 0`` gives ``+inf``; NaN or ``+inf`` anywhere, a negative
    entry, or (normalize) a zero sum give NaN. This kernel never raises:
    validate first if you need errors.

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
    out = np.empty(1)
    status = np.empty(1, np.uint8)
    kl_rows(np.expand_dims(p, 0), np.expand_dims(q, 0), 1, normalize, out, status, 0, 1, KL)
    return out[0]
