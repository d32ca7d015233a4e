"""Expert choice: the scores of every (token, expert) pair from the tile
phases of ``route``, then each expert's top ``C`` tokens (a radix sort of
order-preserving keys, ties to the lower token)."""

from __future__ import annotations

import functools

import numpy as np
from numba import types
from numba.extending import overload

from .._jit import f32_bits, f64_bits, jit, uidx
from .route import (
    NINF,
    OK,
    load_tile,
    new_tile,
    scan_tile,
    sigmoid_tile,
    softmax_tile,
    token_status,
    typed,
)

# --- scores for expert choice ----------------------------------------------------


@functools.cache
def scores_kernel(sigmoid):
    """``scores_chunk(x, nan_ignore, bt, nl, scores, status, b0, b1)``: the score
    distributions of blocks ``b0:b1``, written transposed (``scores[e, t]``)."""

    @jit
    def scores_chunk(x, nan_ignore, bt, nl, scores, status, b0, b1):
        T, E = x.shape
        Zt = new_tile(x, E, nl)
        St = new_tile(x, E, nl)
        m = np.empty(nl, Zt.dtype)
        nz = np.empty(nl, np.int32)
        st = np.empty(nl, np.int8)
        S = np.empty(nl)
        F = np.empty(nl)
        for t0 in range(b0 * bt, min(b1 * bt, T), nl):
            nt = min(nl, T - t0)
            load_tile(x, t0, nt, Zt)
            scan_tile(Zt, nan_ignore, m, nz)
            for ln in range(nl):
                st[ln] = token_status(m[ln], nz[ln], nan_ignore, sigmoid)
                m[ln] = m[ln] if (st[ln] == OK and m[ln] < np.inf) else 0.0
            if sigmoid:
                sigmoid_tile(Zt, St, S, F, False)
            else:
                softmax_tile(Zt, m, St, S, F)
            for ln in range(nt):
                status[t0 + ln] = st[ln]
            for e in range(E):
                for ln in range(nt):
                    scores[e, uidx(t0 + ln)] = St[e, ln] if st[ln] == OK else 0.0

    return scores_chunk


#: tokens sampled per expert to estimate its capacity-th best score
SAMPLE = 1024
_RADIX_BITS = 11


def _rank_key(v):  # uint64 that orders like -v (any non-NaN float; -0 before +0)
    raise NotImplementedError


@overload(_rank_key)
def _rank_key_impl(v):
    if v == types.float32:

        def impl(v):
            b = np.uint64(np.uint32(np.int64(f32_bits(v)) & 0xFFFFFFFF))
            flip = np.uint64(0xFFFFFFFF) if b >> np.uint64(31) else np.uint64(0x80000000)
            return np.uint64(0xFFFFFFFF) - (b ^ flip)

        return impl

    def impl64(v):
        b = np.uint64(f64_bits(v))
        top = np.uint64(1) << np.uint64(63)
        flip = ~np.uint64(0) if b & top else top
        return ~(b ^ flip)

    return impl64


@jit
def _radix_sort(keys, idx, n, tk, ti, nbits):
    """Stable ascending LSD radix sort of ``keys[:n]`` (uint64, below
    ``2**nbits``), carrying ``idx``; the result ends in ``keys``/``idx``."""
    nb = 1 << _RADIX_BITS
    mask = np.uint64(nb - 1)
    cnt = np.empty(nb, np.int64)
    src_k, src_i, dst_k, dst_i = keys, idx, tk, ti
    passes = (nbits + _RADIX_BITS - 1) // _RADIX_BITS
    moved = 0
    for p in range(passes):
        sh = np.uint64(p * _RADIX_BITS)
        cnt[:] = 0
        for i in range(n):
            cnt[(src_k[i] >> sh) & mask] += 1
        if n and cnt[(src_k[0] >> sh) & mask] == n:
            continue  # every key has this digit: the pass would move nothing
        pos = 0
        for d in range(nb):
            c = cnt[d]
            cnt[d] = pos
            pos += c
        for i in range(n):
            d = (src_k[i] >> sh) & mask
            q = cnt[d]
            cnt[d] = q + 1
            dst_k[q] = src_k[i]
            dst_i[q] = src_i[i]
        src_k, src_i, dst_k, dst_i = dst_k, dst_i, src_k, src_i
        moved += 1
    if moved % 2:
        for i in range(n):
            keys[i] = src_k[i]
            idx[i] = src_i[i]


@jit
def score_order(prio):
    """The tokens by priority, descending, ties to the lower token (a stable
    radix sort; ``prio`` without NaN): the admission order of
    batch-prioritized routing."""
    n = prio.shape[0]
    keys = np.empty(n, np.uint64)
    perm = np.empty(n, np.int64)
    for i in range(n):
        keys[i] = _rank_key(prio[i])
        perm[i] = i
    _radix_sort(keys, perm, n, np.empty(n, np.uint64), np.empty(n, np.int64), 64)
    return perm


@jit
def top_tokens(scores, C, lo, hi, tokens, weights):
    """Expert choice: the ``C`` best tokens of each expert ``lo <= e < hi``
    (``scores[e, t]``, no NaN), by score descending, ties to the lower token.

    A threshold filter: the scores of about ``SAMPLE`` tokens give a
    threshold that about ``1.25 C + 64`` tokens reach; while fewer than
    ``C`` do, a lower one from the sample (at the end, every token). The candidates (in token order) are then
    ordered by a stable radix sort on their scores' bits. The result does
    not depend on the sample, only the time does."""
    T = scores.shape[1]
    if C <= 0 or T == 0:
        return
    # the sample: runs of 32 consecutive tokens, evenly spaced (a strided
    # sample would cost a cache miss per token)
    runs = max(1, min(T, SAMPLE) // 32)
    ns = min(T, runs * 32)
    samp = np.empty(ns, scores.dtype)
    keys = np.empty(T, np.uint64)
    ci = np.empty(T, np.int64)
    tk = np.empty(T, np.uint64)
    ti = np.empty(T, np.int64)
    nbits = 8 * scores.itemsize
    for e in range(lo, hi):
        row = scores[e]
        for q in range(runs):
            t0 = q * (T - 32) // max(runs - 1, 1) if T > 32 else 0
            for i in range(min(32, ns - q * 32)):
                samp[q * 32 + i] = row[t0 + i]
        samp.sort()
        r = min(T, C + C // 4 + 64) * ns // T  # a rank from the top in the sample
        while True:
            tau = samp[ns - 1 - r] if r < ns else typed(row, NINF)
            count = 0
            for t in range(T):
                count += 1 if row[t] >= tau else 0
            if count >= C:
                break
            r = 2 * r + 16  # too few reach it: a lower threshold
        n = 0
        for t in range(T):
            v = row[t]
            if v >= tau:
                keys[n] = _rank_key(v)
                ci[n] = t
                n += 1
        _radix_sort(keys, ci, n, tk, ti, nbits)
        for j in range(C):
            t = ci[j]
            tokens[e, j] = t
            weights[e, j] = row[t]


__all__ = ["scores_kernel", "score_order", "top_tokens"]
