"""Mixture-of-Experts routing as a pipeline of small phases over tiles of tokens.

A tile is up to 128 tokens (``lanes``) whose logits are stored transposed,
``Zt[e, l]`` (expert ``e`` of the tile's token ``l``), in the compute dtype
(float32 for float32, bfloat16 and float16 logits, float64 for float64). Every
phase is a loop over experts whose inner loop runs over the 16 lanes, so
LLVM vectorizes it across tokens whatever E is, and nothing mixes tokens:
a token's bits depend on it alone. The phases::

    load_tile -> scan_tile -> [softmax_tile | sigmoid_tile] -> [keys_tile ->
    group_mask -> gather_groups] -> select_tile -> weights_tile -> order_tile

``chunk_kernel(config)`` composes the phases one configuration uses into a
driver that routes a range of blocks; the configuration (scoring, bias,
groups, statistics, ...) is frozen into the driver, so a call compiles only
the phases it uses. The wrapper runs one driver per chunk (``_execute``), then
groups the assignments by expert with ``scatter_*`` (a stable counting sort
whose histogram the driver already counted), admitting them under a
capacity in the same pass.

Semantics of one token (the contract of ``fastroute.route``):

* NaN logits make the token invalid (status ``BAD_NAN``), or with
  ``nan_ignore`` count as ``-inf``. A ``+inf`` logit under softmax is
  invalid (``BAD_POS_INF``): the distribution is undefined.
* Scores: softmax ``exp(z - m) * (1 / sum(exp(z - m)))`` or sigmoid, in the
  compute dtype; sums in float64, over the experts in order.
* Selection key: the logit itself when there is no bias and no grouping
  (softmax and sigmoid are increasing, so this is the exact order of the
  scores); otherwise ``score + bias`` in the compute dtype.
* Groups: experts split into ``n_groups`` contiguous groups, a group's score
  is its best key (``top2=False``) or the sum of its two best keys; the
  ``topk_groups`` best groups stay eligible (ties: lower group), the keys
  of every other expert are out of the running. A token none of whose
  eligible experts has a logit above ``-inf`` is invalid (``BAD_ALL_INF``).
* The ``k`` best keys are chosen (ties: lower expert id), their weights are
  the unbiased scores, renormalised to sum 1 if asked (under softmax: a
  softmax over the chosen logits), times ``scale``; then rounded to the
  output precision and the row is ordered by weight, descending, ties to
  the lower expert id.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import types
from numba.extending import overload

from .._dtypes import widen
from .._jit import jit, uidx
from ._math import exp_neg, exp_neg32, log1p_pos
from .select import index_limit
from .status import BAD_ALL_INF, BAD_NAN, BAD_POS_INF, OK

NAN_ = np.nan
NINF = -np.inf


# --- compute precision ----------------------------------------------------------
# Scores are computed in the dtype of the ``z`` buffer: float32 for float32,
# bfloat16 and float16 logits, float64 for float64 logits. Sums are float64.


def _exp_c(x):  # exp of x <= 0 in x's precision
    return np.exp(x)


def typed(z, v):  # the constant v in z's dtype
    raise NotImplementedError


@overload(_exp_c)
def _exp_c_impl(x):
    if x == types.float32:
        return lambda x: exp_neg32(x)
    return lambda x: exp_neg(x)


@overload(typed)
def _typed_impl(z, v):
    if z.dtype == types.float32:
        return lambda z, v: np.float32(v)
    return lambda z, v: np.float64(v)


@jit(inline="always")
def token_status(m, nans, nan_ignore, sigmoid):
    if nans and not nan_ignore:
        return BAD_NAN
    if m == NINF:
        return BAD_ALL_INF
    if m == np.inf and not sigmoid:
        return BAD_POS_INF
    return OK


@jit(inline="always")
def _sigmoid_c(z, one):
    t = _exp_c(-abs(z))
    return (one if z >= 0 else t) / (one + t)


def new_tile(x, E, nl):  # np.empty((E, nl)) of the compute dtype of x
    raise NotImplementedError


@overload(new_tile)
def _tile_impl(x, E, nl):
    if x.dtype == types.float64:
        return lambda x, E, nl: np.empty((E, nl), np.float64)
    return lambda x, E, nl: np.empty((E, nl), np.float32)


# --- the phases of a tile -------------------------------------------------------
#: tokens per tile (SIMD lanes) at most; a tile holds at most TILE logits
MAX_LANES = 128
TILE = 8192


@functools.cache
def lanes(E: int, block_tokens: int) -> int:
    """Tokens per tile: long inner loops over the lanes (the loop vectorizer
    then amortizes its alias checks), a tile of at most ``TILE`` logits (at least 8 lanes), and
    no more tokens than a block."""
    return max(1, min(MAX_LANES, block_tokens, max(8, TILE // max(E, 1))))


@jit
def load_tile(x, t0, nt, Zt):
    """``Zt[e, l] = x[t0 + l, e]`` decoded to the compute dtype; lanes past
    the ``nt`` tokens repeat the last one."""
    E, nl = Zt.shape
    for ln in range(nl):
        t = uidx(t0 + min(ln, nt - 1))
        for e in range(E):
            Zt[e, ln] = widen(x[t, e])


@jit
def scan_tile(Zt, nan_ignore, m, nz):
    """Lane maxima ``m`` (NaN skipped) and NaN counts ``nz``; with
    ``nan_ignore`` every NaN of the tile becomes ``-inf``."""
    E, nl = Zt.shape
    ninf = typed(Zt, NINF)
    for ln in range(nl):
        m[ln] = ninf
        nz[ln] = 0
    for e in range(E):
        for ln in range(nl):
            v = Zt[e, ln]
            nz[ln] += np.int32(1) if v != v else np.int32(0)
            m[ln] = v if v > m[ln] else m[ln]
    if nan_ignore:
        total = 0
        for ln in range(nl):
            total += nz[ln]
        if total:
            for e in range(E):
                for ln in range(nl):
                    Zt[e, ln] = ninf if Zt[e, ln] != Zt[e, ln] else Zt[e, ln]


@jit
def softmax_tile(Zt, m, St, S, F):
    """Softmax scores ``St`` of the tile's lanes (``m``: their maxima, finite
    for a valid token): ``t = exp(z - m)`` in the compute dtype, ``S`` its
    float64 sum and ``F = sum t * (m - z)`` (the entropy's numerator), then
    ``St = t * (1 / S)`` rounded to the compute dtype. (Three passes: the
    exp pass alone, then the float64 sums, vectorize best.)"""
    E, nl = Zt.shape
    for e in range(E):
        for ln in range(nl):
            St[e, ln] = _exp_c(Zt[e, ln] - m[ln])
    for ln in range(nl):
        S[ln] = 0.0
        F[ln] = 0.0
    for e in range(E):
        for ln in range(nl):
            t = St[e, ln]
            S[ln] += np.float64(t)
            F[ln] += np.float64(t) * -np.float64(Zt[e, ln] - m[ln]) if t > 0 else 0.0
    for ln in range(nl):
        S[ln] = 1.0 / S[ln] if S[ln] > 0.0 else 0.0  # S now holds 1 / sum
    for e in range(E):
        for ln in range(nl):
            St[e, ln] = np.float64(St[e, ln]) * S[ln]
    for ln in range(nl):
        S[ln] = 1.0 / S[ln] if S[ln] > 0.0 else 0.0  # the sum again


@jit
def exp_sums_tile(Zt, m, S, U):
    """``S = sum exp(z - m)`` per lane (``m`` finite, float64; the
    logsumexp under sigmoid scoring, the batch priority under softmax). ``U``:
    scratch of the tile's shape (the exps first, then their float64 sums:
    two passes vectorize better than one)."""
    E, nl = Zt.shape
    for e in range(E):
        for ln in range(nl):
            U[e, ln] = _exp_c(Zt[e, ln] - typed(Zt, m[ln]))
    for ln in range(nl):
        S[ln] = 0.0
    for e in range(E):
        for ln in range(nl):
            S[ln] += np.float64(U[e, ln])


@jit
def sigmoid_tile(Zt, St, S, F, sums):
    """Sigmoid scores ``St``; with ``sums`` also ``S = sum s`` and
    ``F = sum s log s`` (float64; ``log s = min(z, 0) - log1p(exp(-|z|))``)."""
    E, nl = Zt.shape
    one = typed(Zt, 1.0)
    if not sums:
        for e in range(E):
            for ln in range(nl):
                St[e, ln] = _sigmoid_c(Zt[e, ln], one)
        return
    for ln in range(nl):
        S[ln] = 0.0
        F[ln] = 0.0
    for e in range(E):
        for ln in range(nl):
            z = Zt[e, ln]
            t = _exp_c(-abs(z))  # z = +-inf gives t = 0
            sg = (one if z >= 0 else t) / (one + t)
            St[e, ln] = sg
            lg = (np.float64(z) if z < 0 else 0.0) - log1p_pos(np.float64(t))
            S[ln] += np.float64(sg)
            F[ln] += np.float64(sg) * lg if sg > 0 else 0.0


@jit
def accumulate_tile(St, inv, valid, PA):
    """``PA[e, l] += St[e, l] * inv[l]`` (float64) for the valid lanes: the
    score distributions summed lane by lane over a block."""
    E, nl = St.shape
    for e in range(E):
        for ln in range(nl):
            PA[e, ln] += np.float64(St[e, ln]) * inv[ln] if valid[ln] else 0.0


@jit
def keys_tile(St, bias, K):
    """Selection keys ``K = St + bias`` (or ``St`` without a bias)."""
    E, nl = St.shape
    if bias.shape[0] == 0:
        for e in range(E):
            for ln in range(nl):
                K[e, ln] = St[e, ln]
        return
    for e in range(E):
        b = bias[e]
        for ln in range(nl):
            K[e, ln] = St[e, ln] + b


@jit
def group_mask(K, Zt, n_groups, topk_groups, top2, G, ok):
    """Group-limited routing: the ``topk_groups`` best of ``n_groups``
    contiguous groups stay eligible (a group's score: its best key, or the
    sum of its two best), ties to the lower group. ``G`` is float64 scratch
    of ``(2 * n_groups + 2, lanes)``: rows ``n_groups + g`` end up 1.0 for
    a kept group ``g`` and 0.0 otherwise. ``ok[l]``: a kept expert has a
    logit above ``-inf``. Every loop is branch-free across the lanes."""
    E, nl = K.shape
    gs = E // n_groups
    a = 2 * n_groups
    b = a + 1
    for g in range(n_groups):
        for ln in range(nl):
            G[a, ln] = NINF
            G[b, ln] = NINF
        for e in range(g * gs, (g + 1) * gs):
            for ln in range(nl):
                v = np.float64(K[e, ln])
                hi = G[a, ln]
                G[a, ln] = v if v > hi else hi
                lo = hi if v > hi else v
                G[b, ln] = lo if lo > G[b, ln] else G[b, ln]
        for ln in range(nl):
            G[g, ln] = G[a, ln] + G[b, ln] if top2 else G[a, ln]
    # a group is kept when fewer than topk_groups groups rank above it in
    # (score descending, group ascending)
    for g in range(n_groups):
        r = n_groups + g
        for ln in range(nl):
            G[r, ln] = 0.0
        for h in range(n_groups):
            for ln in range(nl):
                above = (G[h, ln] > G[g, ln]) | ((G[h, ln] == G[g, ln]) & (h < g))
                G[r, ln] += 1.0 if above else 0.0
        for ln in range(nl):
            G[r, ln] = 1.0 if G[r, ln] < topk_groups else 0.0
    for ln in range(nl):
        ok[ln] = False
    for g in range(n_groups):
        r = n_groups + g
        for e in range(g * gs, (g + 1) * gs):
            for ln in range(nl):
                ok[ln] |= (G[r, ln] > 0.0) & (Zt[e, ln] > NINF)


@jit
def gather_groups(K, G, n_groups, K2, gsel):
    """The keys of each lane's kept groups (``group_mask``), in group order,
    into ``K2`` (``topk_groups * gs`` rows): the selection then runs over
    them alone, and position order is expert order. ``gsel[q, l]``: the
    ``q``-th kept group of lane ``l`` (0 where a lane, being invalid, keeps
    fewer)."""
    E, nl = K.shape
    tg = gsel.shape[0]
    gs = E // n_groups
    cnt = G[2 * n_groups]
    for ln in range(nl):
        cnt[ln] = 0.0
    for q in range(tg):
        for ln in range(nl):
            gsel[q, ln] = 0
    for g in range(n_groups):
        r = n_groups + g
        for q in range(tg):
            for ln in range(nl):
                take = (G[r, ln] > 0.0) & (cnt[ln] == q)
                gsel[q, ln] = np.int32(g) if take else gsel[q, ln]
        for ln in range(nl):
            cnt[ln] += G[r, ln]
    for q in range(tg):
        for i in range(gs):
            for ln in range(nl):
                K2[q * gs + i, ln] = K[uidx(gsel[q, ln] * gs + i), ln]


@jit
def ungather(kidx, gsel, gs):
    """Positions in ``gather_groups``' rows back to expert ids."""
    k, nl = kidx.shape
    for j in range(k):
        for ln in range(nl):
            c = kidx[j, ln]
            q = c // gs
            kidx[j, ln] = gsel[uidx(q), ln] * gs + (c - q * gs)


@jit
def select_tile(K, k, first, kidx, kval):
    """The ``k`` best keys of every lane (NaN keys never chosen, ties to the
    lower expert) into ``kidx[j, l]`` / ``kval[j, l]``, best first.

    Keys are ranked by ``(key descending, expert ascending)``, a total order
    on the non-NaN keys; round ``j`` is one branch-free pass over the tile
    for the best key ranked below round ``j - 1``'s choice, so nothing is
    written to ``K``. ``first`` (length 0 or lanes): the lane maxima of
    ``K``, already known (round 0 is then a pass for the lowest expert
    holding it). A lane with fewer than ``k`` non-NaN keys (an invalid
    token) gets expert 0 in the rounds left over."""
    E, nl = K.shape
    ninf = typed(K, NINF)
    for j in range(k):
        for ln in range(nl):
            kval[j, ln] = ninf
            kidx[j, ln] = -1
        if j == 0 and first.shape[0] > 0:
            for e in range(E - 1, -1, -1):
                ee = np.int32(e)
                for ln in range(nl):
                    kidx[0, ln] = ee if K[e, ln] == first[ln] else kidx[0, ln]
            for ln in range(nl):
                kval[0, ln] = first[ln]
        elif j == 0:
            for e in range(E):
                ee = np.int32(e)
                for ln in range(nl):
                    v = K[e, ln]
                    take = ((v > kval[0, ln]) | (kidx[0, ln] < 0)) & (v == v)
                    kval[0, ln] = v if take else kval[0, ln]
                    kidx[0, ln] = ee if take else kidx[0, ln]
        else:
            for e in range(E):
                ee = np.int32(e)
                for ln in range(nl):
                    v = K[e, ln]
                    pv = kval[j - 1, ln]
                    below = (v < pv) | ((v == pv) & (ee > kidx[j - 1, ln]))
                    take = below & ((v > kval[j, ln]) | (kidx[j, ln] < 0))
                    kval[j, ln] = v if take else kval[j, ln]
                    kidx[j, ln] = ee if take else kidx[j, ln]
    for j in range(k):
        for ln in range(nl):
            kidx[j, ln] = kidx[j, ln] if kidx[j, ln] > 0 else np.int32(0)


@jit
def weights_tile(Zt, St, kidx, kval, opts, W, D):
    """Float64 weights ``W[j, l]`` of the chosen experts. ``opts`` is
    ``(sigmoid, renorm, logit_keys, scale)``: renormalised (softmax over
    the chosen logits, or sigmoid scores over their sum) or the raw
    scores ``St``, times ``scale``. ``logit_keys``: the keys were the
    logits, so ``kval`` holds the chosen logits. ``D``: float64 scratch of
    one value per lane."""
    sigmoid, renorm, logit_keys, scale = opts
    k, nl = W.shape
    if not renorm:
        for j in range(k):
            for ln in range(nl):
                W[j, ln] = np.float64(St[uidx(kidx[j, ln]), ln]) * scale
        return
    one = typed(Zt, 1.0)
    ninf = typed(Zt, NINF)
    Cz = kval
    if not logit_keys:
        for j in range(k):
            for ln in range(nl):
                Cz[j, ln] = Zt[uidx(kidx[j, ln]), ln]
    if sigmoid:
        for j in range(k):
            for ln in range(nl):
                W[j, ln] = np.float64(_sigmoid_c(Cz[j, ln], one))
    elif k > 0:
        # D: the largest chosen logit (exact); with logit keys the choices
        # are in descending order, so it is the first
        for ln in range(nl):
            D[ln] = np.float64(Cz[0, ln])
        if not logit_keys:
            for i in range(1, k):
                for ln in range(nl):
                    c = np.float64(Cz[i, ln])
                    D[ln] = c if c > D[ln] else D[ln]
        for j in range(k):
            for ln in range(nl):
                mk = typed(Zt, D[ln])
                w = np.float64(_exp_c(Cz[j, ln] - mk))
                W[j, ln] = w if mk > ninf else 0.0
    for ln in range(nl):
        D[ln] = 0.0
    for j in range(k):
        for ln in range(nl):
            D[ln] += W[j, ln]
    for j in range(k):
        for ln in range(nl):
            W[j, ln] = W[j, ln] / D[ln] * scale if D[ln] > 0.0 else 0.0


@jit
def order_tile(W, kidx, round32, bad):
    """Round the weights to the output precision and order each lane's
    choices by weight, descending, ties to the lower expert (an insertion
    sort, only in a lane that is not already in that order). ``bad``: bool
    scratch of one value per lane."""
    k, nl = W.shape
    if round32:
        for j in range(k):
            for ln in range(nl):
                W[j, ln] = np.float64(np.float32(W[j, ln]))
    for ln in range(nl):
        bad[ln] = False
    for j in range(1, k):
        for ln in range(nl):
            w0 = W[j - 1, ln]
            w1 = W[j, ln]
            bad[ln] |= (w0 < w1) | ((w0 == w1) & (kidx[j - 1, ln] > kidx[j, ln]))
    for ln in range(nl):
        if not bad[ln]:
            continue
        for j in range(1, k):
            wj = W[j, ln]
            ij = kidx[j, ln]
            p = j
            while p > 0 and (W[p - 1, ln] < wj or (W[p - 1, ln] == wj and kidx[p - 1, ln] > ij)):
                W[p, ln] = W[p - 1, ln]
                kidx[p, ln] = kidx[p - 1, ln]
                p -= 1
            W[p, ln] = wj
            kidx[p, ln] = ij


# --- the driver of one configuration ---------------------------------------------


@functools.cache
def chunk_kernel(sigmoid, renorm, has_bias, grouped, stats, prio):
    """The driver that routes blocks ``b0 <= b < b1`` of a call with this
    configuration (see the module doc for the phases it composes).

    ``route_chunk(x, bias, opts, outs, b0, b1)``: ``opts = (k, n_groups,
    topk_groups, top2, scale, nan_ignore, block_tokens, round32, lanes)``; ``outs =
    (experts, weights, status, ent, lse2, psum, prio, hist)`` where ``ent``
    and ``prio`` are per token (length 0 when unused), ``psum[b, e]`` and
    ``lse2[b]`` are each block's sums of the score distributions and of the
    squared logsumexp, ``hist[j, e]`` counts the chunk's valid tokens whose
    ``j``-th choice is ``e``. Blocks depend on T and E alone, so every sum
    is the same for any thread count."""
    need_scores = stats or has_bias or grouped or not renorm
    logit_keys = not (has_bias or grouped)
    # the batch priority (the first choice's score) without a score tile:
    # from the chosen logit and the exp sum, the same operations as the tile
    prio_direct = prio and not need_scores

    @jit
    def route_chunk(x, bias, opts, outs, b0, b1):
        k, n_groups, topk_groups, top2, scale, nan_ignore, bt, round32, nl = opts
        experts, weights, status, ent, lse2, psum, pri, hist = outs
        T, E = x.shape
        Zt = new_tile(x, E, nl)
        St = new_tile(x, E if need_scores else 0, nl)
        K = Zt if logit_keys else new_tile(x, E, nl)
        U = new_tile(x, E if (prio_direct and not sigmoid) or (stats and sigmoid) else 0, nl)
        m = np.empty(nl, Zt.dtype)
        nz = np.empty(nl, np.int32)
        st = np.empty(nl, np.int8)
        valid = np.empty(nl, np.bool_)
        ok = np.ones(nl, np.bool_)
        S = np.empty(nl)
        F = np.empty(nl)
        S2 = np.empty(nl)
        inv = np.ones(nl)
        D = np.empty(nl)
        kidx = np.empty((k, nl), np.int32)
        kval = np.empty((k, nl), Zt.dtype)
        W = np.empty((k, nl))
        G = np.empty((2 * n_groups + 2, nl))
        gs = E // n_groups
        K2 = new_tile(x, topk_groups * gs if grouped else 0, nl)
        gsel = np.empty((topk_groups if grouped else 0, nl), np.int32)
        PA = np.empty((E if stats else 0, nl))
        ZS = np.empty(nl)
        wopts = (sigmoid, renorm, logit_keys, scale)
        for b in range(b0, b1):
            lo = b * bt
            hi = min(lo + bt, T)
            if stats:
                PA[:] = 0.0
                ZS[:] = 0.0
            for t0 in range(lo, hi, nl):
                nt = min(nl, hi - t0)
                load_tile(x, t0, nt, Zt)
                scan_tile(Zt, nan_ignore, m, nz)
                for ln in range(nl):
                    st[ln] = token_status(m[ln], nz[ln], nan_ignore, sigmoid)
                    if not sigmoid:  # the shift of exp(z - m): finite for valid lanes
                        m[ln] = m[ln] if (st[ln] == OK and m[ln] < np.inf) else 0.0
                if need_scores:
                    if sigmoid:
                        sigmoid_tile(Zt, St, S, F, stats)
                    else:
                        softmax_tile(Zt, m, St, S, F)
                if prio_direct and not sigmoid:
                    for ln in range(nl):
                        inv[ln] = m[ln]
                    exp_sums_tile(Zt, inv, S2, U)
                if stats and sigmoid:  # the logsumexp, shifted by a finite maximum
                    for ln in range(nl):
                        inv[ln] = m[ln] if (st[ln] == OK and m[ln] < np.inf) else 0.0
                    exp_sums_tile(Zt, inv, S2, U)
                    for ln in range(nl):
                        lse = inv[ln] + math.log(S2[ln])
                        for e in range(E):
                            lse = np.inf if Zt[e, ln] == np.inf else lse
                        S2[ln] = lse
                if not logit_keys:
                    keys_tile(St, bias, K)
                    if grouped:
                        group_mask(K, Zt, n_groups, topk_groups, top2, G, ok)
                        for ln in range(nl):
                            st[ln] = BAD_ALL_INF if (st[ln] == OK and not ok[ln]) else st[ln]
                        gather_groups(K, G, n_groups, K2, gsel)
                # the lane maxima are round 0 of a selection on the logits
                select_tile(K2 if grouped else K, k, m if logit_keys else m[:0], kidx, kval)
                if grouped:
                    ungather(kidx, gsel, gs)
                weights_tile(Zt, St, kidx, kval, wopts, W, D)
                order_tile(W, kidx, round32, valid)
                for ln in range(nl):
                    valid[ln] = ln < nt and st[ln] == OK
                if stats:
                    if sigmoid:
                        for ln in range(nl):
                            inv[ln] = 1.0 / S[ln]
                            S[ln] = math.log(S[ln]) - F[ln] / S[ln]
                    else:
                        for ln in range(nl):
                            log_s = math.log(S[ln])
                            S2[ln] = np.float64(m[ln]) + log_s
                            S[ln] = log_s + F[ln] / S[ln]
                    accumulate_tile(St, inv, valid, PA)
                    for ln in range(nl):
                        ZS[ln] += S2[ln] * S2[ln] if valid[ln] else 0.0
                for ln in range(nt):
                    t = t0 + ln
                    status[t] = st[ln]
                    good = st[ln] == OK
                    for j in range(k):
                        c = kidx[j, ln]
                        experts[t, j] = c if good else 0
                        weights[t, j] = W[j, ln] if good else 0.0
                        if good:
                            hist[j, c] += 1
                    if stats:
                        ent[t] = S[ln] if good else NAN_
                    if prio and k > 0:
                        if not prio_direct:
                            p = St[uidx(kidx[0, ln]), ln]
                        elif sigmoid:
                            p = _sigmoid_c(kval[0, ln], typed(Zt, 1.0))
                        else:  # softmax_tile's t * (1 / S) of the first choice
                            e0 = np.float64(_exp_c(kval[0, ln] - m[ln]))
                            p = typed(Zt, e0 * (1.0 / S2[ln]))
                        pri[t] = np.float64(p) if good else 0.0
                    elif prio:
                        pri[t] = 0.0
            if stats:
                for e in range(E):
                    acc = 0.0
                    for ln in range(nl):
                        acc += PA[e, ln]
                    psum[b, e] = acc
                acc = 0.0
                for ln in range(nl):
                    acc += ZS[ln]
                lse2[b] = acc

    return route_chunk


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
    k : int, ``0 <= k <= E`` and at most the eligible experts
    sigmoid : bool, sigmoid scores (True) or softmax (False)
    renormalize : bool, weights divided by their sum
    bias : 1-D float64 array (E,) of selection biases, or length 0 for none
    n_groups, topk_groups : int, group-limited routing (``n_groups <= 1``: off);
        ``n_groups`` must divide E
    group_top2 : bool, a group's score is the sum of its two best scores
    scale : float, multiplies the weights
    experts : 1-D integer array of at least k elements, output; its dtype
        must hold ``E - 1``
    weights : 1-D float array of at least k elements, output (float32 output
        rounds once)

    Returns the status (constants of ``fastroute.kernels``): ``OK`` (0)
    routed, ``BAD_NAN`` a NaN logit, ``BAD_ALL_INF`` no eligible expert has
    a logit above -inf, ``BAD_POS_INF`` a ``+inf`` logit under softmax. NaN is never ignored
    here. Semantics and bits are those of ``fastroute.route`` (the same
    phases, on a tile of one lane); scratch space is allocated per call.
    Arguments that break the rules above (``k``, the lengths of ``bias``,
    ``experts`` and ``weights``, the groups) raise ``ValueError`` before
    anything is read or written (a few compares per call).

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
    if k < 0 or k > E:
        raise ValueError("route_1d: k is out of range; pass 0 <= k <= len(logits)")
    if experts.shape[0] < k or weights.shape[0] < k:
        raise ValueError("route_1d: experts and weights must hold at least k elements each")
    if E - 1 > index_limit(experts):
        raise ValueError(
            "route_1d: the dtype of experts cannot hold every expert id; use np.int32"
        )
    if bias.shape[0] != 0 and bias.shape[0] != E:
        raise ValueError("route_1d: bias must be empty (no bias) or hold len(logits) elements")
    if n_groups > 1:
        if E % n_groups != 0:
            raise ValueError("route_1d: n_groups must divide len(logits) (or be <= 1: no groups)")
        if topk_groups < 1:
            raise ValueError("route_1d: topk_groups must be at least 1 when n_groups > 1")
        if k > min(topk_groups, n_groups) * (E // n_groups):
            raise ValueError(
                "route_1d: the topk_groups eligible groups hold fewer than k experts; "
                "lower k or raise topk_groups"
            )
        if group_top2 and E // n_groups < 2:
            raise ValueError("route_1d: group_top2 needs at least 2 experts per group")
    Zt = new_tile(logits, E, 1)
    for e in range(E):
        Zt[e, 0] = widen(logits[e])
    m = np.empty(1, Zt.dtype)
    nz = np.empty(1, np.int32)
    scan_tile(Zt, False, m, nz)
    st = token_status(m[0], nz[0], False, sigmoid)
    if st != OK:
        return st
    logit_keys = not (bias.shape[0] > 0 or n_groups > 1)
    need = not (logit_keys and renormalize)
    St = new_tile(logits, E if need else 0, 1)
    S = np.empty(1)
    if need:
        if sigmoid:
            sigmoid_tile(Zt, St, S, S, False)
        else:
            softmax_tile(Zt, m, St, S, np.empty(1))
    K = Zt
    if not logit_keys:
        K = new_tile(logits, E, 1)
        bc = np.empty(bias.shape[0], Zt.dtype)
        for e in range(bias.shape[0]):
            bc[e] = bias[e]
        keys_tile(St, bc, K)
    kidx = np.empty((k, 1), np.int32)
    kval = np.empty((k, 1), Zt.dtype)
    if n_groups > 1:
        ok = np.empty(1, np.bool_)
        G = np.empty((2 * n_groups + 2, 1))
        group_mask(K, Zt, n_groups, topk_groups, group_top2, G, ok)
        if not ok[0]:
            return BAD_ALL_INF
        gs = E // n_groups
        tg = min(topk_groups, n_groups)
        K2 = new_tile(logits, tg * gs, 1)
        gsel = np.empty((tg, 1), np.int32)
        gather_groups(K, G, n_groups, K2, gsel)
        select_tile(K2, k, m[:0], kidx, kval)
        ungather(kidx, gsel, gs)
    else:
        select_tile(K, k, m if logit_keys else m[:0], kidx, kval)
    W = np.empty((k, 1))
    weights_tile(Zt, St, kidx, kval, (sigmoid, renormalize, logit_keys, scale), W, np.empty(1))
    order_tile(W, kidx, weights.itemsize == 4, np.empty(1, np.bool_))
    for j in range(k):
        experts[j] = kidx[j, 0]
        weights[j] = W[j, 0]
    return OK
