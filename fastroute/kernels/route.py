"""Mixture-of-Experts routing of blocks of tokens, and grouping by expert.

``route_rows`` routes a block of tokens whose logits were copied into a
flat buffer of the compute dtype (float32 for float32, bfloat16 and float16
logits, float64 for float64), so it compiles twice whatever the input dtype;
``route_block`` reads the caller's logits (bfloat16 and float16 as raw bits)
into that buffer. ``route_all_*`` route every block, sum the statistics in
block order and group the assignments by expert (a counting sort).

Semantics of one token (the contract of ``fastroute.route``):

* NaN logits make the token invalid (status ``BAD_NAN``), or with
  ``nan_ignore`` count as ``-inf``. A ``+inf`` logit under softmax is
  invalid (``BAD_POS_INF``): the distribution is undefined.
* Scores: softmax ``exp(z - m) * (1 / sum(exp(z - m)))`` or sigmoid, in the
  compute dtype; sums in float64.
* Selection key: the logit itself when there is no bias and no grouping
  (softmax and sigmoid are increasing, so this is the exact order of the
  scores); otherwise ``score + bias`` in the compute dtype.
* Groups: experts split into ``n_groups`` contiguous groups, a group's score
  is its best key (``top2=False``) or the sum of its two best keys; the
  ``topk_groups`` best groups stay eligible (ties: lower group), the keys
  of every other expert become ``-inf``. A token none of whose eligible
  experts has a logit above ``-inf`` is invalid (``BAD_ALL_INF``).
* The ``k`` best keys are chosen (ties: lower expert id), their weights are
  the unbiased scores, renormalised to sum 1 if asked (under softmax: a
  softmax over the chosen logits), times ``scale``; then rounded to the
  output precision and the row is ordered by weight, descending, ties to
  the lower expert id.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import types
from numba.extending import overload

from .._jit import _u, jit, pjit
from ._math import bits_f32, bits_f64, exp_neg, exp_neg32, f32_bits, f64_bits, log1p_pos

#: status of a routed token
OK = 0
BAD_NAN = 1
BAD_ALL_INF = 2
BAD_POS_INF = 3

_NAN = np.nan
_NINF = -np.inf
_INT64_MIN = np.int64(-9223372036854775808)
_INT64_MAX = np.int64(9223372036854775807)
_LOW32 = np.int64(0xFFFFFFFF)


# --- reading logits: float32/float64, bfloat16 and float16 as raw bits -------
# Numba has neither 16-bit float type, so the wrappers pass bfloat16 arrays
# as uint16 and float16 arrays as int16 (views, no copy); ``as_compute`` decodes
# the bits exactly.


def as_compute(v):  # the plain-Python meaning (used only with NUMBA_DISABLE_JIT)
    if isinstance(v, np.uint16):
        return np.array(np.uint32(v) << np.uint32(16)).view(np.float32)[()]
    if isinstance(v, np.int16):
        return np.float32(np.array(v).view(np.float16))
    return v


@jit(inline="always")
def _bf16(v):
    return bits_f32(np.int32(np.int32(v) << 16))


@jit(inline="always")
def _f16(v):
    h = np.int64(v) & 0xFFFF
    e = (h >> 10) & 0x1F
    m = h & 0x3FF
    sub = np.float64(m) * 5.9604644775390625e-08  # m * 2**-24 (e == 0)
    norm = np.float64(m + 1024) * bits_f64((e + 998) << 52)  # (1024 + m) * 2**(e - 25)
    mag = sub if e == 0 else norm
    mag = (np.inf if m == 0 else np.nan) if e == 31 else mag
    return np.float32(-mag if h & 0x8000 else mag)  # exact


@overload(as_compute)
def _as_compute_impl(v):
    if isinstance(v, types.Float):
        return lambda v: v
    if isinstance(v, types.Integer) and v.bitwidth == 16:
        return (lambda v: _f16(v)) if v.signed else (lambda v: _bf16(v))
    return None


# --- compute precision ----------------------------------------------------------
# Scores are computed in the dtype of the ``z`` buffer: float32 for float32,
# bfloat16 and float16 logits, float64 for float64 logits. Sums are float64.
# Selection runs on int64 keys: a float32 key packs its value and its index
# (one vectorized max per choice, see ``_fast.pop_best``); a float64 key is
# the order-preserving value alone, the index found by a second scan.


def _exp_c(x):  # exp of x <= 0 in x's precision
    return np.exp(x)


def _ordkey(v, i):  # int64 key: larger is better, ties to the lower i
    raise NotImplementedError


def _packed(z):  # whether _ordkey packs the index
    raise NotImplementedError


def _typed(z, v):  # the constant v in z's dtype
    raise NotImplementedError


@overload(_exp_c)
def _exp_c_impl(x):
    if x == types.float32:
        return lambda x: exp_neg32(x)
    return lambda x: exp_neg(x)


@overload(_ordkey)
def _ordkey_impl(v, i):
    if v == types.float32:

        def key32(v, i):
            b = np.int64(f32_bits(v + np.float32(0.0)))  # -0.0 -> +0.0
            return ((b ^ ((b >> 31) & 0x7FFFFFFF)) << 32) | (_LOW32 - i)

        return key32

    def key64(v, i):
        b = f64_bits(v + 0.0)
        return b ^ ((b >> 63) & 0x7FFFFFFFFFFFFFFF)

    return key64


@overload(_packed)
def _packed_impl(z):
    packed = z.dtype == types.float32
    return lambda z: packed


@overload(_typed)
def _typed_impl(z, v):
    if z.dtype == types.float32:
        return lambda z, v: np.float32(v)
    return lambda z, v: np.float64(v)


@jit(inline="always")
def _rescan(keys, R, lane, lanes):
    m = _INT64_MIN
    for r in range(R):
        kb = keys[_u(r * 16 + lane)]
        m = kb if kb > m else m
    lanes[lane] = m


@jit(inline="always")
def _select_pops(keys, R, k, packed, idxs, off, lanes):
    # k rounds: the best of the 16 lane maxima, then a rescan of its lane
    for j in range(k):
        best = _INT64_MIN
        for ln in range(16):
            best = lanes[ln] if lanes[ln] > best else best
        if packed:
            c = _LOW32 - (best & _LOW32)
        else:
            c = 0
            while keys[c] != best:
                c += 1
        idxs[off + j] = c
        keys[c] = _INT64_MIN
        _rescan(keys, R, c & 15, lanes)


#: from this many rows of 16 keys on, selection filters by a threshold
THRESHOLD_MIN_R = 4


@jit(inline="always")
def _select(keys, R, k, packed, idxs, off, lanes, cand):
    """The ``k`` best of ``keys[:16 R]`` into ``idxs[off:]`` (lowest index among
    equal keys); ``lanes[ln]`` must hold the maximum of ``keys[ln::16]``.
    ``keys`` is clobbered; ``cand`` is int64 scratch of 2 * 16 R.

    Long rows (k <= 16): the smallest lane maximum among the k largest is a
    threshold no chosen key is below (k lanes reach it). One vectorized test
    per row of 16 finds the few keys at or above it; they are ranked by
    insertion in index order (an equal key never passes an earlier one).
    Otherwise: k rounds over the lane maxima (see ``_select_pops``)."""
    if R < THRESHOLD_MIN_R or k > 16 or k == 0:
        _select_pops(keys, R, k, packed, idxs, off, lanes)
        return
    thr = _INT64_MAX
    for a in range(16):
        above = 0
        la = lanes[a]
        for b in range(16):
            above += 1 if lanes[b] > la else 0
        thr = la if (above < k and la < thr) else thr
    n = 0
    for r in range(R):
        hits = 0
        for ln in range(16):
            hits += 1 if keys[_u(r * 16 + ln)] >= thr else 0
        if hits:
            for ln in range(16):
                e = r * 16 + ln
                kb = keys[e]
                if kb >= thr:
                    # insert (kb, e) into cand[0:n] (keys) / cand[P:P+n] (ids)
                    j = min(n, k - 1) if n >= k else n
                    if n >= k and not kb > cand[k - 1]:
                        continue
                    while j > 0 and kb > cand[j - 1]:
                        cand[j] = cand[j - 1]
                        cand[R * 16 + j] = cand[R * 16 + j - 1]
                        j -= 1
                    cand[j] = kb
                    cand[R * 16 + j] = e
                    n = min(n + 1, k)
    for j in range(k):
        idxs[off + j] = cand[R * 16 + j]


@jit(inline="always")
def _status(m, nans, nan_ignore, sigmoid):
    if nans and not nan_ignore:
        return BAD_NAN
    if m == _NINF:
        return BAD_ALL_INF
    if m == np.inf and not sigmoid:
        return BAD_POS_INF
    return OK


#: float32 rows of at most this many experts select across 16 tokens at once
ACROSS_MAX_E = 64


@jit(inline="always")
def _across(Z, P, n, E, k, nan_ignore, sigmoid, idx, stride, status, mx, nans):
    """Step 1 of ``route_rows`` for float32 (packed keys) and short rows, 16
    tokens at a time with one SIMD lane per token: the keys are stored
    transposed, ``KT[e, ln]``, so every maximum over experts is an
    element-wise maximum over rows. A choice is that maximum; its key is then
    removed (one store per lane). Lanes past the last token repeat it. NaN
    must already be replaced (``nans[i]`` counts token i's)."""
    KT = np.empty((max(E, 1), 16), np.int64)
    best = np.empty(16, np.int64)
    for g0 in range(0, n, 16):
        gl = min(16, n - g0)
        for ln in range(16):
            best[ln] = _INT64_MIN
        for e in range(E):
            for ln in range(16):
                kb = _ordkey(Z[_u(min(g0 + ln, n - 1) * P + e)], e)
                KT[e, ln] = kb
                best[ln] = kb if kb > best[ln] else best[ln]
        for ln in range(gl):
            i = g0 + ln
            c = _LOW32 - (best[ln] & _LOW32)
            m = Z[i * P + c]
            st = _status(m, nans[i], nan_ignore, sigmoid)
            status[i] = st
            mx[i] = m if (st == OK and m < np.inf) else 0.0
        for j in range(k):
            if j > 0:
                for ln in range(16):
                    best[ln] = _INT64_MIN
                for e in range(E):
                    for ln in range(16):
                        kb = KT[e, ln]
                        best[ln] = kb if kb > best[ln] else best[ln]
            for ln in range(gl):
                c = _LOW32 - (best[ln] & _LOW32)
                KT[c, ln] = _INT64_MIN
                idx[(g0 + ln) * stride + j] = c


@jit(inline="always")
def _sigmoid_c(z, one):
    t = _exp_c(-abs(z))
    return (one if z >= 0 else t) / (one + t)


# --- a block of tokens --------------------------------------------------------
# Per-token loops over E experts vectorize badly for small E (LLVM's vector
# loops want more iterations than 8 or 16), so the arithmetic runs over the
# whole block at once: logits of ``n`` tokens are rows of length ``P = 16
# ceil(E / 16)`` (padded with -inf) in flat buffers, and every exp, sigmoid
# and log is one long flat loop. Per token remain the key/selection steps and
# short sums. Nothing mixes tokens: each token's bits depend on it alone.


@jit(inline="always")
def _row_sum(buf, off, R, acc):
    """Sum (float64) of ``buf[off : off + 16 R]``: 16 lanes summed along the
    row, then pairwise. The order depends on R alone."""
    for ln in range(16):
        acc[ln] = np.float64(buf[_u(off + ln)])
    for r in range(1, R):
        for ln in range(16):
            acc[ln] += np.float64(buf[_u(off + r * 16 + ln)])
    for half in (8, 4, 2, 1):
        for ln in range(half):
            acc[ln] += acc[ln + half]
    return acc[0]


def _zbuf(x, n):  # np.empty(n) of the compute dtype of x (float64 or float32)
    raise NotImplementedError


@overload(_zbuf)
def _zbuf_impl(x, n):
    if x.dtype == types.float64:
        return lambda x, n: np.empty(n, np.float64)
    return lambda x, n: np.empty(n, np.float32)


@jit
def route_rows(
    Z, U, n, E, k, sigmoid, renorm, bias, n_groups, topk_groups, top2, scale,
    nan_ignore, stats, round32, idx, W, status, lse, ent, pacc, prio,
):  # fmt: skip
    """Route the ``n`` tokens whose logits are the rows ``Z[i*P : i*P + E]``
    (float32 or float64; ``Z[i*P + E : (i+1)*P]`` must be -inf). NaN is
    replaced in place by -inf. ``U`` (like ``Z``) receives the scores when
    they are needed (``stats``, bias, groups or not ``renorm``).

    Writes, per token ``i``: ``status[i]``; chosen experts ``idx[i*k : i*k
    + k]`` and float64 weights ``W[i*k : ...]``;
    with ``stats``: ``lse[i]`` (logsumexp of the logits), ``ent[i]``
    (entropy of the score distribution) and the distribution added to
    ``pacc[:E]``; ``prio[i]`` (the unbiased score of the first choice) if
    ``prio`` is not empty. ``bias`` (Z's dtype) of length 0: no bias.
    """
    R = (E + 15) >> 4
    P = R * 16
    packed = _packed(Z)
    ninf = _typed(Z, _NINF)
    one = _typed(Z, 1.0)
    has_bias = bias.shape[0] > 0
    grouped = n_groups > 1
    need_scores = stats or has_bias or grouped or not renorm
    F = np.empty(n * P)  # float64 terms of sums
    keys = np.empty(P, np.int64)
    cand = np.empty(2 * P, np.int64)
    lanes = np.empty(16, np.int64)
    acc = np.empty(16)
    key = _zbuf(Z, P)
    C = _zbuf(Z, n * k)  # chosen logits (minus their max)
    mx = _zbuf(Z, max(n, 1))
    g = max(n_groups, 1)
    gsc = np.empty(g)
    ga = _zbuf(Z, g)
    gb = _zbuf(Z, g)
    gtaken = np.empty(g, np.bool_)

    # 1. NaN (one flat test; replaced by -inf only where present), the keys
    # of the logits, the maximum, the status; and the selection when it is
    # on the logits themselves (no bias, no groups)
    nz = np.zeros(max(n, 1), np.int64)
    nan_total = 0
    for j in range(n * P):
        nan_total += 1 if Z[j] != Z[j] else 0
    if nan_total:
        for i in range(n):
            for e in range(E):
                if Z[i * P + e] != Z[i * P + e]:
                    nz[i] += 1
                    Z[i * P + e] = ninf
    plain = not (has_bias or grouped)
    if packed and E <= ACROSS_MAX_E:
        _across(Z, P, n, E, k if plain else 0, nan_ignore, sigmoid, idx, k, status, mx, nz)
    else:
        for i in range(n):
            o = i * P
            for ln in range(16):
                lanes[ln] = _INT64_MIN
            # the -inf padding gets keys too: they rank after every expert
            for r in range(R):
                for ln in range(16):
                    e = _u(r * 16 + ln)
                    kb = _ordkey(Z[_u(o + e)], e)
                    keys[e] = kb
                    lanes[ln] = kb if kb > lanes[ln] else lanes[ln]
            best = _INT64_MIN
            for ln in range(16):
                best = lanes[ln] if lanes[ln] > best else best
            c = 0
            if packed:
                c = _LOW32 - (best & _LOW32)
            else:
                while keys[c] != best:
                    c += 1
            m = Z[o + c]
            st = _status(m, nz[i], nan_ignore, sigmoid)
            status[i] = st
            mx[i] = m if (st == OK and m < np.inf) else 0.0
            if plain and st == OK:
                _select(keys, R, k, packed, idx, i * k, lanes, cand)

    # 2. scores and statistics: flat over the block for short rows (long
    # flat loops vectorize), row by row for long ones (one pass fewer)
    if need_scores:
        if stats or not sigmoid:
            if P < 64:
                for i in range(n):
                    o = i * P
                    mi = mx[i]
                    for e in range(P):
                        U[_u(o + e)] = Z[_u(o + e)] - mi
                for j in range(n * P):
                    u = U[j]
                    t = _exp_c(u)
                    F[j] = np.float64(t) * -np.float64(u) if t > 0 else 0.0
                    U[j] = t
            else:
                for i in range(n):
                    o = i * P
                    mi = mx[i]
                    for e in range(P):
                        u = Z[_u(o + e)] - mi
                        t = _exp_c(u)
                        F[_u(o + e)] = np.float64(t) * -np.float64(u) if t > 0 else 0.0
                        U[_u(o + e)] = t
            for i in range(n):
                if status[i] != OK:
                    continue
                o = i * P
                s_sum = _row_sum(U, o, R, acc)
                if stats:
                    log_s = math.log(s_sum)
                    lse[i] = np.float64(mx[i]) + log_s
                    if not sigmoid:
                        ent[i] = log_s + _row_sum(F, o, R, acc) / s_sum
                if not sigmoid:
                    inv = 1.0 / s_sum
                    if stats:
                        for e in range(E):
                            U[_u(o + e)] = np.float64(U[_u(o + e)]) * inv
                            pacc[e] += np.float64(U[_u(o + e)])
                    else:
                        for e in range(E):
                            U[_u(o + e)] = np.float64(U[_u(o + e)]) * inv
        if sigmoid:
            if stats:
                for j in range(n * P):
                    z = Z[j]
                    t = _exp_c(-abs(z))  # z = +-inf gives t = 0
                    sg = (one if z >= 0 else t) / (one + t)
                    U[j] = sg
                    # s log s, with log s = min(z, 0) - log1p(t)
                    lg = (np.float64(z) if z < 0 else 0.0) - log1p_pos(np.float64(t))
                    F[j] = np.float64(sg) * lg if sg > 0 else 0.0
            else:
                for j in range(n * P):
                    U[j] = _sigmoid_c(Z[j], one)
            if stats:
                for i in range(n):
                    if status[i] != OK:
                        continue
                    o = i * P
                    if mx[i] == 0.0:  # the maximum may be +inf: then so is lse
                        for e in range(E):
                            if Z[o + e] == np.inf:
                                lse[i] = np.inf
                    pn = _row_sum(U, o, R, acc)
                    ent[i] = math.log(pn) - _row_sum(F, o, R, acc) / pn
                    inv = 1.0 / pn
                    for e in range(E):
                        pacc[e] += np.float64(U[o + e]) * inv

    # 3. biased or group-limited selection, per token
    if has_bias or grouped:
        for i in range(n):
            if status[i] != OK:
                continue
            o = i * P
            for e in range(E):
                key[e] = U[o + e] + bias[e] if has_bias else U[o + e]
            if grouped:
                # the best two keys of every group, all groups at once
                gs = E // n_groups
                for gg in range(n_groups):
                    ga[gg] = ninf
                    gb[gg] = ninf
                for j in range(gs):
                    for gg in range(n_groups):
                        v = key[gg * gs + j]
                        a = ga[gg]
                        ga[gg] = v if v > a else a
                        lo = a if v > a else v
                        gb[gg] = lo if lo > gb[gg] else gb[gg]
                for gg in range(n_groups):
                    a = np.float64(ga[gg])
                    gsc[gg] = a + np.float64(gb[gg]) if top2 else a
                    gtaken[gg] = False
                for _ in range(topk_groups):
                    bg = -1
                    for gg in range(n_groups):
                        if not gtaken[gg] and (bg < 0 or gsc[gg] > gsc[bg]):
                            bg = gg
                    gtaken[bg] = True
                # keys of the kept groups' experts; the others can never be
                # chosen (the kept groups hold at least k experts)
                for ln in range(16):
                    lanes[ln] = _INT64_MIN
                for e in range(E, P):
                    keys[e] = _INT64_MIN
                finite = False
                for gg in range(n_groups):
                    base = gg * gs
                    if not gtaken[gg]:
                        for e in range(base, base + gs):
                            keys[e] = _INT64_MIN
                        continue
                    for e in range(base, base + gs):
                        finite |= Z[o + e] > _NINF
                    if gs % 16 == 0:
                        for r in range(gs >> 4):
                            for ln in range(16):
                                e = _u(base + r * 16 + ln)
                                kb = _ordkey(key[e], e)
                                keys[e] = kb
                                lanes[ln] = kb if kb > lanes[ln] else lanes[ln]
                    else:
                        for e in range(base, base + gs):
                            kb = _ordkey(key[e], e)
                            keys[e] = kb
                            ln = e & 15
                            lanes[ln] = kb if kb > lanes[ln] else lanes[ln]
                if not finite:
                    status[i] = BAD_ALL_INF
                    continue
            else:
                for ln in range(16):
                    lanes[ln] = _INT64_MIN
                for r in range(R):
                    for ln in range(16):
                        e = _u(r * 16 + ln)
                        kb = _ordkey(key[e], e) if e < E else _INT64_MIN
                        keys[e] = kb
                        lanes[ln] = kb if kb > lanes[ln] else lanes[ln]
            _select(keys, R, k, packed, idx, i * k, lanes, cand)

    # 4. weights
    if renorm:
        for i in range(n):
            o = i * k
            mk = ninf
            if status[i] == OK:
                for j in range(k):
                    v = Z[i * P + idx[o + j]]
                    C[o + j] = v
                    mk = v if v > mk else mk
            else:
                for j in range(k):
                    C[o + j] = ninf
            if not sigmoid:
                if mk > _NINF:
                    for j in range(k):
                        C[o + j] = C[o + j] - mk
                # every chosen logit -inf (possible with a bias): weights 0
        if sigmoid:
            for j in range(n * k):
                W[j] = np.float64(_sigmoid_c(C[j], one))
        else:
            for j in range(n * k):
                W[j] = np.float64(_exp_c(C[j]))
        for i in range(n):
            o = i * k
            den = 0.0
            for j in range(k):
                den += W[o + j]
            for j in range(k):
                W[o + j] = W[o + j] / den * scale if den > 0.0 else 0.0
    else:
        for i in range(n):
            if status[i] == OK:
                for j in range(k):
                    W[i * k + j] = np.float64(U[i * P + idx[i * k + j]]) * scale

    # 5. round to the output precision, order by (weight desc, id asc); the
    # chosen set is already fixed by the keys
    for i in range(n):
        if status[i] != OK:
            continue
        o = i * k
        for j in range(k):
            wj = np.float64(np.float32(W[o + j])) if round32 else W[o + j]
            ij = idx[o + j]
            p = j
            while p > 0 and (W[o + p - 1] < wj or (W[o + p - 1] == wj and idx[o + p - 1] > ij)):
                W[o + p] = W[o + p - 1]
                idx[o + p] = idx[o + p - 1]
                p -= 1
            W[o + p] = wj
            idx[o + p] = ij
        if prio.shape[0] > 0 and k > 0:
            prio[i] = np.float64(U[i * P + idx[o]])


@jit
def route_block(
    x, b, bt, k, sigmoid, renorm, bias, n_groups, topk_groups, top2, scale,
    nan_ignore, stats, round32, experts, weights, status, ent, psum, zsum, prio,
):  # fmt: skip
    """Route tokens ``b*bt : (b+1)*bt`` of the (T, E) logits ``x``.

    Per token: ``experts``/``weights`` rows, ``status``; with ``stats`` also
    ``ent[t]``, and the block's partial sums ``psum[b, :]`` (score
    distributions) and ``zsum[b]`` (squared logsumexp); ``prio[t]`` when
    ``prio`` is not empty. Blocks depend on ``T`` only, so the partial sums
    are the same for any thread count.
    """
    T, E = x.shape
    lo = b * bt
    n = min(lo + bt, T) - lo
    P = (E + 15) >> 4 << 4
    Z = _zbuf(x, n * P)
    for i in range(n):
        t = _u(lo + i)
        for e in range(E):
            Z[_u(i * P + e)] = as_compute(x[t, e])
        for e in range(E, P):
            Z[i * P + e] = -np.inf
    idx = np.empty(max(n * k, 1), np.int64)
    W = np.empty(max(n * k, 1))
    st = np.empty(n, np.int8)
    lse = np.empty(n)
    h = np.empty(n)
    pacc = np.zeros(E)
    pr = np.empty(n if prio.shape[0] > 0 else 0)
    route_rows(
        Z, _zbuf(x, n * P), n, E, k, sigmoid, renorm, bias, n_groups, topk_groups,
        top2, scale, nan_ignore, stats, round32, idx, W, st, lse, h, pacc, pr,
    )  # fmt: skip
    zs = 0.0
    for i in range(n):
        t = lo + i
        status[t] = st[i]
        ok = st[i] == OK
        for j in range(k):
            experts[t, j] = idx[i * k + j] if ok else 0
            weights[t, j] = W[i * k + j] if ok else 0.0
        if stats:
            ent[t] = h[i] if ok else np.nan
            zs += lse[i] * lse[i] if ok else 0.0
        if pr.shape[0] > 0:
            prio[t] = pr[i] if ok else 0.0
    if stats:
        zsum[b] = zs
        for e in range(E):
            psum[b, e] = pacc[e]


@jit
def _finish(T, E, k, status, psum, zsum, hist, counts, offsets, order):
    """Serial middle shared by both drivers, between the histogram and the
    scatter. Returns ``(bad, code, aux, z_loss, max_count)``: the first
    invalid token and its status (or -1, 0), aux_loss and z_loss (block sums
    added in block order: the same bits for any thread count), and the
    largest count. Fills ``counts``/``offsets`` and the write positions of
    the scatter (in ``hist``)."""
    for t in range(T):
        if status[t] != OK:
            return t, status[t], _NAN, _NAN, 0
    p_mean = np.zeros(E)
    for b in range(psum.shape[0]):
        for e in range(E):
            p_mean[e] += psum[b, e]
    z_loss = _NAN
    if T > 0:
        zs = 0.0
        for b in range(zsum.shape[0]):
            zs += zsum[b]
        z_loss = zs / T
        for e in range(E):
            p_mean[e] /= T
    n = T * k
    _offsets(hist, 1, counts, offsets)
    _starts(hist, counts, offsets, n, order)
    aux = _NAN
    if n > 0:
        acc = 0.0
        for e in range(E):
            acc += counts[e] / n * p_mean[e]
        aux = E * acc
    cmax = 0
    for e in range(E):
        cmax = max(cmax, counts[e])
    return -1, 0, aux, z_loss, cmax


@jit
def route_all_serial(
    x, bt, k, sigmoid, renorm, bias, n_groups, topk_groups, top2, scale, nan_ignore,
    round32, nchunks, stats, experts, weights, ent, prio, counts, order, offsets,
):  # fmt: skip
    """Route every token of ``x`` into the given outputs and group the
    assignments (serial twin of ``route_all_parallel``, same bits).

    Returns ``(bad, code, aux, z_loss, max_count)``: ``bad`` >= 0 is the
    first invalid token and ``code`` its status (the outputs are then
    meaningless). ``counts``/``order``/``offsets`` get the grouping of all
    assignments (``order`` holds T * k)."""
    T, E = x.shape
    nb = (T + bt - 1) // bt
    status = np.empty(T, np.int8)
    psum = np.empty((nb, E))
    zsum = np.empty(nb)
    for b in range(nb):
        route_block(
            x, b, bt, k, sigmoid, renorm, bias, n_groups, topk_groups, top2, scale,
            nan_ignore, stats, round32, experts, weights, status, ent, psum, zsum, prio,
        )  # fmt: skip
    ids = experts.reshape(-1)
    n = ids.shape[0]
    hist = np.zeros((nchunks, E), np.int64)
    for c in range(nchunks):
        _histogram(ids, E, c * n // nchunks, (c + 1) * n // nchunks, hist, c)
    res = _finish(T, E, k, status, psum, zsum, hist, counts, offsets, order)
    if res[0] < 0:
        for c in range(nchunks):
            _scatter(ids, c * n // nchunks, (c + 1) * n // nchunks, hist, c, order)
    return res


@pjit
def route_all_parallel(
    x, bt, k, sigmoid, renorm, bias, n_groups, topk_groups, top2, scale, nan_ignore,
    round32, nchunks, stats, experts, weights, ent, prio, counts, order, offsets,
):  # fmt: skip
    T, E = x.shape
    nb = (T + bt - 1) // bt
    status = np.empty(T, np.int8)
    psum = np.empty((nb, E))
    zsum = np.empty(nb)
    for b in numba.prange(nb):
        route_block(
            x, b, bt, k, sigmoid, renorm, bias, n_groups, topk_groups, top2, scale,
            nan_ignore, stats, round32, experts, weights, status, ent, psum, zsum, prio,
        )  # fmt: skip
    ids = experts.reshape(-1)
    n = ids.shape[0]
    hist = np.zeros((nchunks, E), np.int64)
    for c in numba.prange(nchunks):
        _histogram(ids, E, c * n // nchunks, (c + 1) * n // nchunks, hist, c)
    res = _finish(T, E, k, status, psum, zsum, hist, counts, offsets, order)
    if res[0] < 0:
        for c in numba.prange(nchunks):
            _scatter(ids, c * n // nchunks, (c + 1) * n // nchunks, hist, c, order)
    return res


@jit
def select_serial(x, bt, k, nobias, round32, experts, weights, status):
    """Experts and weights only (plain softmax routing, no statistics), for
    measuring the routing kernel alone; serial twin of ``select_parallel``."""
    nb = (x.shape[0] + bt - 1) // bt
    none = np.empty(0)
    for b in range(nb):
        route_block(
            x, b, bt, k, False, True, nobias, 0, 0, False, 1.0, False, False, round32,
            experts, weights, status, none, np.empty((0, 0)), none, none,
        )  # fmt: skip


@pjit
def select_parallel(x, bt, k, nobias, round32, experts, weights, status):
    nb = (x.shape[0] + bt - 1) // bt
    none = np.empty(0)
    for b in numba.prange(nb):
        route_block(
            x, b, bt, k, False, True, nobias, 0, 0, False, 1.0, False, False, round32,
            experts, weights, status, none, np.empty((0, 0)), none, none,
        )  # fmt: skip


@jit
def scores_block(x, b, bt, sigmoid, nan_ignore, scores, status):
    """Score distributions of tokens ``b*bt : (b+1)*bt``, written transposed:
    ``scores[e, t]`` (for expert choice)."""
    T, E = x.shape
    lo = b * bt
    n = min(lo + bt, T) - lo
    P = (E + 15) >> 4 << 4
    Z = _zbuf(x, n * P)
    U = _zbuf(x, n * P)
    for i in range(n):
        for e in range(E):
            Z[i * P + e] = as_compute(x[lo + i, e])
        for e in range(E, P):
            Z[i * P + e] = -np.inf
    st = np.empty(n, np.int8)
    scratch = np.empty(max(n, 1))
    # k = 0 and renorm off: the scores alone, no statistics
    route_rows(
        Z, U, n, E, 0, sigmoid, False, np.empty(0, Z.dtype), 0, 0, False, 1.0,
        nan_ignore, False, False, np.empty(1, np.int64), scratch, st, scratch, scratch,
        np.zeros(E), np.empty(0),
    )  # fmt: skip
    for i in range(n):
        status[lo + i] = st[i]
        for e in range(E):
            scores[e, lo + i] = U[i * P + e] if st[i] == OK else 0.0


@jit
def scores_serial(x, bt, sigmoid, nan_ignore, scores, status, nb):
    for b in range(nb):
        scores_block(x, b, bt, sigmoid, nan_ignore, scores, status)


@pjit
def scores_parallel(x, bt, sigmoid, nan_ignore, scores, status, nb):
    for b in numba.prange(nb):
        scores_block(x, b, bt, sigmoid, nan_ignore, scores, status)


# --- capacity ----------------------------------------------------------------


@jit
def admit(experts, perm, capacity, num_experts, dropped):
    """Admit assignments choice by choice (all first choices, then all
    second choices, ...), tokens in the order ``perm``; an expert takes at
    most ``capacity``. Fills ``dropped``; returns the kept counts."""
    T, k = experts.shape
    fill = np.zeros(num_experts, np.int64)
    for j in range(k):
        for i in range(T):
            t = perm[i]
            e = experts[t, j]
            if fill[e] < capacity:
                fill[e] += 1
                dropped[t, j] = False
            else:
                dropped[t, j] = True
    return fill


# --- grouping by expert: a stable counting sort -------------------------------


@jit
def _histogram(ids, E, lo, hi, hist, c):
    # counts of ids[lo:hi] per expert into hist[c]; False if an id is invalid
    ok = True
    for i in range(lo, hi):
        v = ids[i]
        if v >= 0 and v < E:
            hist[c, v] += 1
        elif v != -1:
            ok = False
    return ok


@jit
def _scatter(ids, lo, hi, start, c, order):
    for i in range(lo, hi):
        v = ids[i]
        if v >= 0:
            p = start[c, v]
            order[p] = i
            start[c, v] = p + 1


@jit
def _offsets(hist, block_size, counts, offsets):
    # assignments per expert and the segment starts, each padded up to a
    # multiple of block_size
    nchunks, E = hist.shape
    for e in range(E):
        counts[e] = 0
    for c in range(nchunks):
        for e in range(E):
            counts[e] += hist[c, e]
    offsets[0] = 0
    for e in range(E):
        seg = (counts[e] + block_size - 1) // block_size * block_size
        offsets[e + 1] = offsets[e] + seg


@jit
def _starts(hist, counts, offsets, sentinel, order):
    # each chunk's first write position per expert (into hist), and the
    # padding of every segment filled with the sentinel
    nchunks, E = hist.shape
    for e in range(E):
        pos = offsets[e]
        for c in range(nchunks):
            n = hist[c, e]
            hist[c, e] = pos
            pos += n
        for p in range(offsets[e] + counts[e], offsets[e + 1]):
            order[p] = sentinel


@jit
def _layout(hist, block_size, sentinel):
    E = hist.shape[1]
    counts = np.empty(E, np.int64)
    offsets = np.empty(E + 1, np.int64)
    _offsets(hist, block_size, counts, offsets)
    order = np.empty(offsets[E], np.int64)
    _starts(hist, counts, offsets, sentinel, order)
    return counts, offsets, order


@jit
def group_serial(ids, E, block_size, sentinel, nchunks):
    """Stable grouping of the flat expert ids ``ids`` (-1: skip).

    Returns ``(ok, order, offsets, counts)``; ``ok`` is False when an id is
    outside ``[-1, E)`` (nothing else is then valid)."""
    n = ids.shape[0]
    hist = np.zeros((nchunks, E), np.int64)
    ok = True
    for c in range(nchunks):
        ok &= _histogram(ids, E, c * n // nchunks, (c + 1) * n // nchunks, hist, c)
    if not ok:
        return False, np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64)
    counts, offsets, order = _layout(hist, block_size, sentinel)
    for c in range(nchunks):
        _scatter(ids, c * n // nchunks, (c + 1) * n // nchunks, hist, c, order)
    return True, order, offsets, counts


@pjit
def group_parallel(ids, E, block_size, sentinel, nchunks):
    n = ids.shape[0]
    hist = np.zeros((nchunks, E), np.int64)
    good = np.empty(nchunks, np.bool_)
    for c in numba.prange(nchunks):
        good[c] = _histogram(ids, E, c * n // nchunks, (c + 1) * n // nchunks, hist, c)
    if not good.all():
        return False, np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64)
    counts, offsets, order = _layout(hist, block_size, sentinel)
    for c in numba.prange(nchunks):
        _scatter(ids, c * n // nchunks, (c + 1) * n // nchunks, hist, c, order)
    return True, order, offsets, counts


# --- public one-token kernel ---------------------------------------------------


@jit
def route_1d(
    logits, k, sigmoid, renormalize, bias, n_groups, topk_groups, group_top2, scale,
    experts, weights,
):  # fmt: skip
    """Route one token: its ``k`` experts and their weights.

    Parameters
    ----------
    logits : 1-D float array (E,)
    k : int, ``1 <= k <= E`` and at most the eligible experts (not checked)
    sigmoid : bool, sigmoid scores (True) or softmax (False)
    renormalize : bool, weights divided by their sum
    bias : 1-D float64 array (E,) of selection biases, or length 0 for none
    n_groups, topk_groups : int, group-limited routing (``n_groups <= 1``: off);
        ``n_groups`` must divide E
    group_top2 : bool, a group's score is the sum of its two best scores
    scale : float, multiplies the weights
    experts : 1-D integer array (k,), output
    weights : 1-D float array (k,), output (float32 output rounds once)

    Returns the status: 0 routed, 1 NaN logit, 2 no eligible expert has a
    logit above -inf, 3 ``+inf`` logit under softmax. NaN is never ignored
    here. Semantics are those of ``fastroute.route`` (see this module's doc);
    scratch space is allocated per call.

    Examples
    --------
    >>> import numba, numpy as np
    >>> from fastroute.kernels import route_1d
    >>> @numba.njit
    ... def top2(z):
    ...     e = np.empty(2, np.int32); w = np.empty(2, np.float32)
    ...     route_1d(z, 2, False, True, np.empty(0), 0, 0, False, 1.0, e, w)
    ...     return e, w
    >>> top2(np.array([0.0, 2.0, 1.0, 2.0], np.float32))
    (array([1, 3], dtype=int32), array([0.5, 0.5], dtype=float32))
    """
    E = logits.shape[0]
    P = (E + 15) >> 4 << 4
    Z = _zbuf(logits, P)
    for e in range(E):
        Z[e] = as_compute(logits[e])
    for e in range(E, P):
        Z[e] = -np.inf
    bc = np.empty(bias.shape[0], Z.dtype)
    for e in range(bias.shape[0]):
        bc[e] = bias[e]
    idx = np.empty(max(k, 1), np.int64)
    W = np.empty(max(k, 1))
    status = np.empty(1, np.int8)
    scratch = np.empty(1)
    route_rows(
        Z, _zbuf(logits, P), 1, E, k, sigmoid, renormalize, bc, n_groups, topk_groups,
        group_top2, scale, False, False, weights.itemsize == 4, idx, W, status,
        scratch, scratch, np.zeros(E), np.empty(0),
    )  # fmt: skip
    st = status[0]
    if st == OK:
        for j in range(k):
            experts[j] = idx[j]
            weights[j] = W[j]
    return st
