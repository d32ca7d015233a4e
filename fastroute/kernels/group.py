"""Grouping of expert assignments by expert: the scatter of a routing pass
(all slots, or admitted under a capacity by position or by score) and the
stable counting sort of ``group_by_expert`` (per-chunk histograms, the
padded layout, then per-chunk scatters: the order never depends on the
chunking)."""

from __future__ import annotations

import numpy as np

from .._jit import jit
from .status import OK

# --- grouping by expert, with capacity admission ---------------------------------


@jit
def scatter_all(experts, start, t0, t1, order):
    """Write the slots ``t * k + j`` of tokens ``t0:t1`` to their expert's
    next position ``start[e]`` (advanced)."""
    k = experts.shape[1]
    for t in range(t0, t1):
        for j in range(k):
            e = experts[t, j]
            p = start[e]
            order[p] = t * k + j
            start[e] = p + 1


@jit
def scatter_capacity(experts, run, capacity, start, t0, t1, order, dropped):
    """As ``scatter_all`` under a capacity: ``run[j, e]`` is the admission
    rank of the chunk's next ``j``-th choice of expert ``e`` (every first
    choice is admitted before any second choice; within a choice, tokens in
    order). A slot is kept when its rank is below ``capacity``."""
    k = experts.shape[1]
    for t in range(t0, t1):
        for j in range(k):
            e = experts[t, j]
            r = run[j, e]
            run[j, e] = r + 1
            keep = r < capacity
            dropped[t, j] = not keep
            if keep:
                p = start[e]
                order[p] = t * k + j
                start[e] = p + 1


@jit
def admit_by_score(experts, perm, capacity, num_experts, dropped, t_chunk, kept):
    """Admission by score (batch-prioritized routing): choice by choice,
    tokens in the order ``perm``; an expert keeps at most ``capacity``.
    Fills ``dropped`` and ``kept[c, e]``, the kept slots of expert ``e``
    among the tokens of chunk ``c`` (``t_chunk[t]``). The rows are gathered
    into ``perm`` order once, admitted in sequence, and scattered back: two
    random accesses per token instead of three per slot."""
    T, k = experts.shape
    es = np.empty((T, k), experts.dtype)
    cs = np.empty(T, np.int64)
    for i in range(T):
        t = perm[i]
        cs[i] = t_chunk[t]
        for j in range(k):
            es[i, j] = experts[t, j]
    ds = np.empty((T, k), np.bool_)
    fill = np.zeros(num_experts, np.int64)
    for j in range(k):
        for i in range(T):
            e = es[i, j]
            keep = fill[e] < capacity
            fill[e] += 1 if keep else 0
            ds[i, j] = not keep
            kept[cs[i], e] += 1 if keep else 0
    for i in range(T):
        t = perm[i]
        for j in range(k):
            dropped[t, j] = ds[i, j]


@jit
def scatter_kept(experts, dropped, start, t0, t1, order):
    """``scatter_all`` of the slots that are not dropped."""
    k = experts.shape[1]
    for t in range(t0, t1):
        for j in range(k):
            if not dropped[t, j]:
                e = experts[t, j]
                p = start[e]
                order[p] = t * k + j
                start[e] = p + 1


# --- grouping by expert: a stable counting sort -------------------------------


@jit
def histogram(ids, E, lo, hi, hist, c):
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
def scatter_ids(ids, lo, hi, start, c, order):
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
def layout(hist, block_size, sentinel):
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
        ok &= histogram(ids, E, c * n // nchunks, (c + 1) * n // nchunks, hist, c)
    if not ok:
        return False, np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64)
    counts, offsets, order = layout(hist, block_size, sentinel)
    for c in range(nchunks):
        scatter_ids(ids, c * n // nchunks, (c + 1) * n // nchunks, hist, c, order)
    return True, order, offsets, counts


__all__ = [
    "scatter_all", "scatter_capacity", "admit_by_score", "scatter_kept", "histogram",
    "scatter_ids", "layout", "group_serial", "summarize", "finish_serial", "OK",
]  # fmt: skip


# --- the end of a routing call: statistics and grouping ---------------------------


@jit
def summarize(hist, psum, lse2, T):
    """``(assigned, aux_loss, z_loss)`` from the chunks' histograms
    ``hist[c, j, e]`` and the block sums (summed in block order: the same bits
    for any number of chunks). ``assigned[e]`` counts before any dropping."""
    nch, k, E = hist.shape
    assigned = np.zeros(E, np.int64)
    for c in range(nch):
        for j in range(k):
            for e in range(E):
                assigned[e] += hist[c, j, e]
    aux = np.nan
    z_loss = np.nan
    if psum.shape[0] > 0 or lse2.shape[0] > 0:
        n = T * k
        if n > 0:
            acc = 0.0
            for e in range(E):
                p = 0.0
                for b in range(psum.shape[0]):
                    p += psum[b, e]
                acc += assigned[e] / n * (p / T)
            aux = E * acc
        if T > 0:
            zs = 0.0
            for b in range(lse2.shape[0]):
                zs += lse2[b]
            z_loss = zs / T
    return assigned, aux, z_loss


@jit
def finish_serial(experts, status, hist, psum, lse2, counts, offsets, order):
    """The end of a dropless routing on one thread (small batches, decode),
    after its driver ran over every block: ``summarize``, then the grouping
    into ``counts``/``offsets``/``order`` (only when every token is valid).
    Returns ``(first_bad, aux, z_loss, most)``: the first invalid token or
    -1, the statistics, the largest count. Only scalars are returned: a
    returned array costs more to box than a small routing takes."""
    T = status.shape[0]
    E = counts.shape[0]
    for t in range(T):
        if status[t] != OK:
            return t, np.nan, np.nan, 0
    assigned, aux, z_loss = summarize(hist, psum, lse2, T)
    offsets[0] = 0
    most = 0
    for e in range(E):
        counts[e] = assigned[e]
        offsets[e + 1] = offsets[e] + assigned[e]
        most = max(most, assigned[e])
    start = offsets[:E].copy()
    scatter_all(experts, start, 0, T, order)
    return -1, aux, z_loss, most
