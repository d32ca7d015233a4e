"""Shannon entropy of one 1-D slice: of probabilities/counts and of logits.

Probabilities/counts ``p`` (sum ``S``) are first tried with the one-pass
formula ``H = log S - sum(p log p) / S``, one read of the row with the
vectorized ``log`` of ``_math``. Its rounding error is bounded by
``(log2(n) + 8) eps (|log S| + 1 + sum|p log p| / S)``; when that bound is not
below a tenth of the contract's tolerance (near-deterministic rows, where
``log S`` and the sum nearly cancel) or the row is at an extreme scale, the
row is recomputed with an exact two-pass formula. Its first pass finds the
largest entry ``m`` (integer reductions on the IEEE bits); with
``R = sum(p) - m`` summed without ``m`` (never by subtraction) and
``S = m + R``::

      H = log1p(R / m) + sum_i p_i * (log m - log p_i) / S

where every summed term is non-negative (no cancellation) and the dominant
entry is handled through ``log1p``.

Logits ``z`` with maximum ``M``, ``u = z - M <= 0`` and
``W = sum_{i != argmax} exp(u_i)`` use, in two passes::

      H = log1p(W) + sum_i exp(u_i) * (-u_i) / (1 + W)

Sums are pairwise trees over blocks of ``BLOCK`` values (``_reduce``), so the
bits of a row's result depend on the row alone, never on the path, the batch
or the thread count.

Results are in nats and float64. Conventions (also those of the public
functions): zeros contribute exactly 0; a NaN or ``+inf`` in the slice gives
NaN; with ``normalize=True`` an all-zero or empty slice gives NaN, with
``normalize=False`` it gives 0.0; logits: ``-inf`` is probability 0, an
all-``-inf`` or empty slice gives NaN.

The ``*_row`` functions take a 2-D array and a row number, the ``*_segment``
functions a part ``lo:hi`` of one row (a CSR matrix's ``data`` is one row,
each matrix row a segment): the drivers call them without creating a view per row (a view costs an atomic reference-count
update on the parent array, which threads would fight over).
"""

from __future__ import annotations

import math

import numpy as np
from numba.extending import overload

from .._dtypes import single_type, widen
from .._jit import jit, uidx
from ._math import BLOCK, EXP_ZERO_BELOW, exp_neg, exp_neg_lo, log1p_pos, log_normal
from ._reduce import tree_sum
from .status import EXACT, NEGATIVE, OK  # entropy_status_1d returns OK (0) or NEGATIVE (1)

#: Length of the float64 scratch array the kernels need (``work`` argument):
#: what the float32 kernel needs for one row (``entropy32.WORK32_ONE_ROW``)
#: plus its two result slots.
WORK_SIZE = 4 * BLOCK + 2


_POS_INF_BITS = 0x7FF0000000000000
_HUGE = 2.0**1000
_TINY = 2.0**-900
_EPS = 2.0**-52


@jit(inline="always")
def _scan_nonneg(p, r, lo, hi, buf):
    """Pass 1 over ``p[r, lo:hi]``: (max, has_nan, has_inf, has_negative)."""
    bits = buf.view(np.int64)
    top = np.int64(0)
    low = np.int64(0)
    for start in range(lo, hi, BLOCK):
        m = min(BLOCK, hi - start)
        for i in range(m):
            buf[i] = np.float64(widen(p[r, uidx(start + i)])) + 0.0  # -0.0 -> +0.0
        for i in range(m):
            b = bits[i]
            top = b if b > top else top
            low = b if b < low else low
    neg = False
    if low < 0:
        # a sign bit is set: a negative number, or merely a NaN with its sign
        # bit set (e.g. -np.nan). Tell them apart on the slow path.
        for i in range(lo, hi):
            v = np.float64(widen(p[r, i]))
            if v < 0.0:
                neg = True
            elif v != v:
                top = np.int64(_POS_INF_BITS + 1)
    bits[0] = min(top, np.int64(_POS_INF_BITS))
    return buf[0], top > _POS_INF_BITS, top == _POS_INF_BITS, neg


@jit(inline="always")
def entropy_segment(p, r, lo, hi, normalize, b0, b1, b2):
    """Entropy (nats) and status of the entries ``p[r, lo:hi]`` of the 2-D ``p``.

    ``b0``, ``b1``, ``b2``: distinct float64 scratch arrays of ``BLOCK``
    elements. Tries the one-pass formula and falls back to the exact
    two-pass one when its error bound is not small enough.
    """
    h, status, ok = entropy_one_pass(p, r, lo, hi, normalize, b0, b1, b2)
    if ok:
        return h, status
    return entropy_two_pass(p, r, lo, hi, normalize, b0, b1)


@jit(inline="always")
def entropy_row(p, r, normalize, b0, b1, b2):
    """Entropy (nats) and status of row ``r`` of the 2-D array ``p``."""
    return entropy_segment(p, r, 0, p.shape[1], normalize, b0, b1, b2)


@jit(inline="always")
def entropy_one_pass(p, r, lo, hi, normalize, b0, b1, b2):
    # H = log S - A / S with A = sum p log p, in one read of the row. Returns
    # (h, status, accepted). It is accepted when a rigorous-in-spirit bound of
    # its rounding error, (log2(n) + 8) eps (|log S| + 1 + B / S) with
    # B = sum |p log p|, is below a tenth of the contract's tolerance;
    # otherwise (near-deterministic rows, extreme scales) the caller uses the
    # exact two-pass formula.
    s_sum = 0.0
    a_sum = 0.0
    b_sum = 0.0
    neg = 0
    bad = 0
    for start in range(lo, hi, BLOCK):
        m = min(BLOCK, hi - start)
        for i in range(m):
            v = np.float64(widen(p[r, uidx(start + i)])) + 0.0  # -0.0 -> +0.0
            neg += 1 if v < 0.0 else 0  # -inf too; a NaN is never < 0
            bad += 1 if (v != v or v == np.inf) else 0
            t = v * log_normal(v)  # 0 * finite = 0 for zeros
            b0[i] = v
            b1[i] = t
            b2[i] = abs(t)
        s_sum += tree_sum(b0, m)
        a_sum += tree_sum(b1, m)
        b_sum += tree_sum(b2, m)
    return _one_pass_finish(hi - lo, s_sum, a_sum, b_sum, neg, bad, normalize)


@jit(inline="always")
def _one_pass_finish(n, s_sum, a_sum, b_sum, neg, bad, normalize):
    # (h, status, accepted) from the one-pass sums; see entropy_one_pass
    log_s = log_normal(s_sum)
    h = log_s - a_sum / s_sum
    err = (math.log2(n) + 8.0) * _EPS * (abs(log_s) + 1.0 + b_sum / s_sum)
    return one_pass_decide(s_sum, a_sum, h, err, neg, bad, normalize)


@jit(inline="always")
def one_pass_decide(s_sum, a_sum, h, err, neg, bad, normalize):
    # h and err are meaningful only for a finite positive s_sum
    if neg:
        return np.nan, NEGATIVE, True
    if bad:
        return np.nan, OK, True
    if s_sum == 0.0:
        return (np.nan if normalize else 0.0), OK, True
    if not (_TINY <= s_sum <= _HUGE):
        return np.nan, OK, False  # subnormal entries or overflow risk: exact path
    if not normalize:
        return -a_sum, OK, True  # the same sum the exact path computes
    return h, OK, err <= 1e-13 * h


@jit(inline="always")
def transpose_rows(x, r0, g, xt, idle):
    """Rows ``r0 : r0 + g`` of the 2-D ``x`` into the columns of the tile
    ``xt`` (``n x nl``, one row per SIMD lane), ``-0.0`` as ``+0.0`` (exact
    in ``xt``'s dtype); the lanes ``g:`` get ``idle``."""
    n, nl = xt.shape
    for rr in range(g):
        for j in range(n):
            xt[j, rr] = widen(x[uidx(r0 + rr), j]) + 0.0
    for rr in range(g, nl):
        for j in range(n):
            xt[j, rr] = idle


@jit(inline="always")
def background_tile(x, xt):
    """Row 0 of the 2-D ``x`` into every column (lane) of the tile ``xt``
    (one background row shared by all rows of a tile), ``-0.0`` as ``+0.0``."""
    n, nl = xt.shape
    for j in range(n):
        v = widen(x[0, j]) + 0.0
        for rr in range(nl):
            xt[j, rr] = v


#: float64 rows up to this length are processed as tiles of up to
#: ``LANES64`` rows, transposed (a row per SIMD lane, its sums in index order)
SHORT64_N = 32  # measured: 2.5x the per-row kernel at n=8, equal at 64
LANES64 = 64
#: float64 scratch ``short_rows64`` needs for any rows
SHORT64_WORK_SIZE = (SHORT64_N + 4) * LANES64


@jit
def short_rows64(x, normalize, out, status, lo, hi, work):
    """The one-pass entropy of rows ``lo:hi`` of the float64 (or widened)
    2-D ``x``, ``x.shape[1] <= SHORT64_N``, rows transposed into SIMD lanes so
    that the log, the sums and the finish are vector operations. The sums
    run in index order, so the error bound is ``(n + 8) eps (|log S| + 1 +
    B / S)``; rows it rejects are marked ``EXACT`` (for ``exact_rows``).
    A row's bits depend on the row alone. ``work``: float64 scratch of
    ``(n + 4) * min(rows, LANES64)`` elements (``SHORT64_WORK_SIZE`` for any)."""
    n = x.shape[1]
    if n == 0:  # empty rows: no tile (its row 0 holds the results below)
        for r in range(lo, hi):
            out[r], status[r], _ = one_pass_decide(0.0, 0.0, 0.0, 0.0, 0, 0, normalize)
        return
    nl = min(LANES64, hi - lo)
    xt = work[: n * nl].reshape((n, nl))
    o = n * nl
    a_s = work[o : o + nl]
    a_a = work[o + nl : o + 2 * nl]
    a_b = work[o + 2 * nl : o + 3 * nl]
    flags = work[o + 3 * nl : o + 4 * nl].view(np.int64)
    err_scale = (n + 8.0) * _EPS
    for r0 in range(lo, hi, nl):
        g = min(nl, hi - r0)
        transpose_rows(x, r0, g, xt, 1.0)  # idle lanes: harmless ones
        for rr in range(nl):
            a_s[rr] = 0.0
            a_a[rr] = 0.0
            a_b[rr] = 0.0
            flags[rr] = 0
        for j in range(n):
            for rr in range(nl):
                v = xt[j, rr]
                t = v * log_normal(v)  # 0 * finite = 0 for zeros
                a_s[rr] += v
                a_a[rr] += t
                a_b[rr] += abs(t)
                flags[rr] |= np.int64(v < 0.0) | (np.int64((v != v) | (v == np.inf)) << 1)
        for rr in range(nl):  # the one-pass value and its error bound, vectorized
            s_sum = a_s[rr]
            log_s = log_normal(s_sum)
            h = log_s - a_a[rr] / s_sum
            a_b[rr] = err_scale * (abs(log_s) + 1.0 + a_b[rr] / s_sum)
            xt[0, rr] = h  # the row's entries are no longer needed
        for rr in range(g):
            h, st, ok = one_pass_decide(
                a_s[rr], a_a[rr], xt[0, rr], a_b[rr], flags[rr] & 1, flags[rr] >> 1, normalize
            )
            out[r0 + rr] = h
            status[r0 + rr] = st if ok else EXACT


@jit
def entropy_two_pass(p, r, lo, hi, normalize, buf, rest):
    """Exact entropy (nats) and status of ``p[r, lo:hi]``."""
    mx, has_nan, has_inf, neg = _scan_nonneg(p, r, lo, hi, buf)
    if neg:
        return np.nan, NEGATIVE
    if has_nan or has_inf:
        return np.nan, OK
    if mx == 0.0:
        return (np.nan if normalize else 0.0), OK  # all-zero or empty
    # Rescale by an exact power of two so that the maximum is far from
    # overflow and from the subnormal range: then every entry that is still
    # subnormal weighs less than 2**-900 of the maximum and log_normal may
    # treat it approximately. The normalized entropy does not change;
    # for normalize=False the scale is undone at the end.
    scale = 1.0
    if mx > _HUGE:
        scale = 2.0**-600
    elif mx < _TINY:
        scale = 2.0**600
    mx = mx * scale
    # the same vectorized log as the entries: the maximum's own term
    # m * (log m - log m) is then exactly 0
    logm = log_normal(mx) if normalize else 0.0
    t_sum = 0.0
    r_sum = 0.0
    n_max = 0
    for start in range(lo, hi, BLOCK):
        m = min(BLOCK, hi - start)
        for i in range(m):
            v = np.float64(widen(p[r, uidx(start + i)])) * scale + 0.0  # -0.0 -> +0.0
            buf[i] = v * (logm - log_normal(v))  # 0 * finite = 0 for zeros
            rest[i] = v if v < mx else 0.0
            n_max += 1 if v == mx else 0
        t_sum += tree_sum(buf, m)
        r_sum += tree_sum(rest, m)
    if not normalize:
        if scale != 1.0:  # -sum p log p = (H_c + log(c) * sum(p_c)) / c at scale c
            return (t_sum + math.log(scale) * (r_sum + n_max * mx)) / scale, OK
        return t_sum, OK
    r_sum += (n_max - 1) * mx  # tied maxima other than the first
    return log1p_pos(r_sum / mx) + t_sum / (mx + r_sum), OK


@jit(inline="always")
def _scan_logits(z, r, lo, hi, buf):
    """Pass 1 over the logits ``z[r, lo:hi]``: (max, has_nan)."""
    bits = buf.view(np.int64)
    best = np.int64(-9223372036854775807)
    nan = np.int64(0)
    for start in range(lo, hi, BLOCK):
        m = min(BLOCK, hi - start)
        for i in range(m):
            buf[i] = np.float64(widen(z[r, uidx(start + i)]))
        for i in range(m):
            b = bits[i]
            mag = b & 0x7FFFFFFFFFFFFFFF
            nan += 1 if mag > _POS_INF_BITS else 0
            key = b ^ ((b >> 63) & 0x7FFFFFFFFFFFFFFF)  # order-preserving
            best = key if key > best else best
    bits[0] = best ^ ((best >> 63) & 0x7FFFFFFFFFFFFFFF)
    return buf[0], nan > 0


def _exp_for(z, u):
    """``exp(u)`` (float64 ``u <= 0``) to the precision ``z``'s results need."""
    return exp_neg(u)


@overload(_exp_for)
def _exp_for_impl(z, u):
    if single_type(z.dtype):  # float32 results: 2**-36 is plenty
        return lambda z, u: exp_neg_lo(u)
    return lambda z, u: exp_neg(u)


@jit(inline="always")
def entropy_logits_segment(z, r, lo, hi, nzeros, acc, tmp):
    """Entropy (nats) of ``softmax`` over the logits ``z[r, lo:hi]`` together
    with ``nzeros`` further logits equal to 0 (the implicit entries of a
    sparse row).

    ``acc``, ``tmp``: distinct float64 scratch arrays of ``BLOCK`` elements.
    """
    if hi - lo + nzeros == 0:
        return np.nan
    top, has_nan = _scan_logits(z, r, lo, hi, acc)
    if has_nan:
        return np.nan
    if nzeros > 0 and not top > 0.0:
        top = 0.0  # also when the segment is empty (top is then -inf)
    if top == np.inf or top == -np.inf:
        return np.nan
    t_sum = 0.0
    w_sum = 0.0
    n_top = 0
    for start in range(lo, hi, BLOCK):
        m = min(BLOCK, hi - start)
        for i in range(m):
            u = np.float64(widen(z[r, uidx(start + i)])) - top  # <= 0, -inf allowed
            e = _exp_for(z, u)
            uc = u if u > EXP_ZERO_BELOW else EXP_ZERO_BELOW  # exp is exactly 0 there
            acc[i] = e * (-uc)
            tmp[i] = e if u < 0.0 else 0.0
            n_top += 1 if u == 0.0 else 0
        t_sum += tree_sum(acc, m)
        w_sum += tree_sum(tmp, m)
    if nzeros > 0:
        u = -top
        e = _exp_for(z, u)
        uc = u if u > EXP_ZERO_BELOW else EXP_ZERO_BELOW
        t_sum += nzeros * (e * (-uc))
        if u < 0.0:
            w_sum += nzeros * e
        else:
            n_top += nzeros
    w_sum += n_top - 1.0  # tied maxima other than the first
    return log1p_pos(w_sum) + t_sum / (1.0 + w_sum)


@jit(inline="always")
def entropy_logits_row(z, r, acc, tmp):
    """Entropy (nats) of ``softmax`` of row ``r`` of the 2-D array ``z``."""
    return entropy_logits_segment(z, r, 0, z.shape[1], 0, acc, tmp)


#: logit rows up to this length are processed LOGIT_LANES rows at a time,
#: transposed, one row per SIMD lane (each row's sums in index order)
SHORT_LOGITS_N = 64
LOGIT_LANES = 64
#: float64 scratch ``logits_short_rows`` needs
LOGITS_WORK_SIZE = (SHORT_LOGITS_N + 5) * LOGIT_LANES


@jit
def logits_short_rows(z, out, lo, hi, work):
    """Entropy of ``softmax`` of rows ``lo:hi`` of the 2-D ``z``,
    ``z.shape[1] <= SHORT_LOGITS_N``: the rows transposed into SIMD lanes, so
    that the maximum, the exponentials, the sums and the finish (a ``log1p``
    and a division per row) are all vector operations. The same formula as
    ``entropy_logits_segment``; a row's sums run in index order, so its bits
    depend on the row alone. ``work``: float64, ``LOGITS_WORK_SIZE``
    elements (fewer for fewer rows: ``(n + 5) * min(rows, LOGIT_LANES)``)."""
    n = z.shape[1]
    nl = min(LOGIT_LANES, hi - lo)
    zt = work[: n * nl].reshape((n, nl))
    o = n * nl
    top = work[o : o + nl]
    w_sum = work[o + nl : o + 2 * nl]
    t_sum = work[o + 2 * nl : o + 3 * nl]
    n_top = work[o + 3 * nl : o + 4 * nl]
    bad = work[o + 4 * nl : o + 5 * nl]
    for r0 in range(lo, hi, nl):
        g = min(nl, hi - r0)
        transpose_rows(z, r0, g, zt, 0.0)  # idle lanes: harmless zeros
        for rr in range(nl):
            top[rr] = -np.inf
            bad[rr] = 0.0
        for j in range(n):
            for rr in range(nl):
                v = zt[j, rr]
                top[rr] = v if v > top[rr] else top[rr]
                bad[rr] = 1.0 if v != v else bad[rr]
        for rr in range(nl):
            w_sum[rr] = 0.0
            t_sum[rr] = 0.0
            n_top[rr] = 0.0
        for j in range(n):
            for rr in range(nl):
                u = zt[j, rr] - top[rr]  # <= 0, -inf allowed (NaN rows: flagged)
                e = _exp_for(z, u)
                uc = u if u > EXP_ZERO_BELOW else EXP_ZERO_BELOW
                t_sum[rr] += e * (-uc)
                w_sum[rr] += e if u < 0.0 else 0.0
                n_top[rr] += 1.0 if u == 0.0 else 0.0
        for rr in range(nl):  # the finish, one lane per row
            w = w_sum[rr] + (n_top[rr] - 1.0)  # tied maxima other than the first
            h = log1p_pos(w) + t_sum[rr] / (1.0 + w)
            m = top[rr]
            ok = bad[rr] == 0.0 and m != np.inf and m != -np.inf
            t_sum[rr] = h if ok else np.nan
        for rr in range(g):
            out[r0 + rr] = t_sum[rr]


@jit
def one_pass_rows(p, normalize, out, status, lo, hi):
    """The one-pass entropy of rows ``lo:hi`` of the 2-D ``p`` (any length);
    rows its error bound rejects are marked ``EXACT`` (for ``exact_rows``)."""
    b0, b1, b2 = np.empty(BLOCK), np.empty(BLOCK), np.empty(BLOCK)
    n = p.shape[1]
    for r in range(lo, hi):
        h, st, ok = entropy_one_pass(p, r, 0, n, normalize, b0, b1, b2)
        out[r] = h
        status[r] = st if ok else EXACT


@jit
def logits_rows(z, out, lo, hi):
    """Entropy of ``softmax`` of rows ``lo:hi`` of the 2-D ``z`` (any length)."""
    b0, b1 = np.empty(BLOCK), np.empty(BLOCK)
    for r in range(lo, hi):
        out[r] = entropy_logits_row(z, r, b0, b1)


@jit
def to_float32(src, dst):
    """``dst[:] = src`` rounded to float32 (overflow to +-inf, without NumPy's warning)."""
    for i in range(src.shape[0]):
        dst[i] = np.float32(src[i])


@jit
def exact_rows(x, normalize, out, status, lo, hi, b0, b1):
    """The exact two-pass kernel for the rows in ``lo:hi`` marked ``EXACT``
    (``b0``, ``b1``: float64 scratch of ``BLOCK`` elements)."""
    n = x.shape[1]
    for r in range(lo, hi):
        if status[r] == EXACT:
            out[r], status[r] = entropy_two_pass(x, r, 0, n, normalize, b0, b1)
