"""Kernels of MoE dispatch and combine: row gathers and weighted row sums.

Rows are read and written as raw bits where Numba has no type for them
(bfloat16 and float16 as their ``_dtypes`` kernel views to read, widened
exactly, and as ``uint16`` to copy or write, rounded to nearest even). Each function is
compiled for the signatures it is called with, so a float32 model never
compiles the bfloat16 kernel. The row forms (``gather_row``,
``combine_row``) are for users' own ``@njit`` loops: they check their
indices and raise ``ValueError``; the drivers here use their unchecked
twins, over a layout ``grouped_layout`` has checked once.
"""

from __future__ import annotations

import numpy as np

from .._dtypes import narrow, widen
from .._jit import jit, uidx
from ._mem import prefetch_row, store_fence, store_row

__all__ = [
    "grouped_layout", "gather_row", "gather_rows", "combine_row", "combine_rows",
    "combine_rows_half",
]  # fmt: skip


@jit(nogil=True)
def grouped_layout(order, offsets, block, k, nslots, with_tokens, max_rows):
    """The grouped row layout of a routing, checked: ``(status, counts,
    poff, tokens, slot_row)``.

    Expert ``e``'s assignments ``order[offsets[e]:offsets[e + 1]]`` take
    rows ``poff[e]`` onward in that order, each segment padded to a multiple
    of ``block``; ``tokens[row]`` is the token of each row (``order // k``,
    -1 for padding) and ``slot_row[t * k + j]`` the row of each of the
    ``nslots`` slots (-1 when dropped); ``tokens`` is empty unless
    ``with_tokens``. ``status`` is 0, 1 when ``offsets``
    does not rise from 0 to ``len(order)``, 2 when the rows number more than
    ``max_rows`` (the arrays are then empty, nothing that size is allocated,
    and ``poff[E]`` is the number of rows, or 2**62 for more), or
    ``-1 - i`` for the first ``order[i]`` outside ``[0, nslots)`` or
    repeating an earlier slot. Nothing is indexed out of bounds.
    """
    E = offsets.shape[0] - 1
    counts = np.zeros(max(E, 0), np.int64)
    poff = np.zeros(max(E, 0) + 1, np.int64)
    empty = np.empty(0, np.int64)
    if E < 0 or offsets[0] != 0 or offsets[E] != order.shape[0]:
        return 1, counts, poff, empty, empty
    for e in range(E):
        c = offsets[e + 1] - offsets[e]
        if c < 0:
            return 1, counts, poff, empty, empty
        counts[e] = c
        # valid offsets have every c <= len(order) (others return 1 at their
        # first negative c), so with block <= 2**31 this saturating sum cannot overflow
        poff[e + 1] = min(poff[e] + (c + block - 1) // block * block, 2**62)
    if poff[E] > max_rows:
        return 2, counts, poff, empty, empty
    tokens = np.empty(poff[E] if with_tokens else 0, np.int64)
    for r in range(tokens.shape[0]):
        tokens[r] = -1
    slot_row = np.empty(nslots, np.int64)
    for s in range(nslots):
        slot_row[s] = -1
    for e in range(E):
        shift = poff[e] - offsets[e]
        for i in range(offsets[e], offsets[e + 1]):
            s = order[i]
            if s < 0 or s >= nslots or slot_row[s] >= 0:
                return -1 - i, counts, poff, tokens, slot_row
            slot_row[s] = i + shift
            if with_tokens:
                tokens[i + shift] = s // k
    return 0, counts, poff, tokens, slot_row


@jit(nogil=True, inline="always")
def _gather_row(src, s, out, r):
    # gather_row without its checks (the drivers' rows are checked already)
    H = src.shape[1]
    if s < 0:
        for h in range(H):
            out[r, h] = 0
    else:
        for h in range(H):
            out[r, h] = src[uidx(s), h]


@jit(nogil=True)
def gather_row(src, s, out, r):
    """``out[r, :] = src[s, :]``, or zeros for ``s < 0`` (a padding row);
    any element type (raw bits included).

    Raises ``ValueError`` unless ``0 <= r < out.shape[0]``, ``s <
    src.shape[0]`` and the rows of ``src`` and ``out`` have the same length
    (three compares; nothing is read or written out of bounds).
    """
    if r < 0 or r >= out.shape[0]:
        raise ValueError("gather_row: r is not a row of out; pass 0 <= r < out.shape[0]")
    if s >= src.shape[0]:
        raise ValueError(
            "gather_row: s is not a row of src; pass s < src.shape[0] (s < 0 for zeros)"
        )
    if src.shape[1] != out.shape[1]:
        raise ValueError("gather_row: the rows of src and out differ in length")
    _gather_row(src, s, out, r)


@jit(nogil=True)
def gather_rows(src, rows_of, out, lo, hi):
    """``out[r] = src[rows_of[r]]`` for ``r`` in ``lo:hi`` (zeros where
    ``rows_of[r] < 0``). ``rows_of`` must index ``src``'s rows."""
    for r in range(lo, hi):
        _gather_row(src, rows_of[r], out, r)


@jit(nogil=True, inline="always")
def _weighted_sum(x, pos, w, t, k, acc):
    # acc[:] = sum_j w[t, j] * x[pos[t k + j], h] over the kept slots (read widened),
    # in j order; the first kept slot is w x + 0 (the bits of a sum that
    # starts from zero: -0 -> +0); zeros without a kept slot
    H = acc.shape[0]
    first = True
    for j in range(k):
        p = pos[t * k + j]
        if p >= 0:
            wj = w[t, j]
            if first:
                for h in range(H):
                    acc[h] = wj * widen(x[uidx(p), h]) + np.float32(0.0)
                first = False
            else:
                for h in range(H):
                    acc[h] += wj * widen(x[uidx(p), h])
    if first:
        for h in range(H):
            acc[h] = 0.0


@jit(nogil=True, inline="always")
def _combine_row(x, pos, w, t, k, acc):
    # combine_row without its checks (the drivers' layout is checked already)
    _weighted_sum(x, pos, w, t, k, acc)


@jit(nogil=True)
def combine_row(x, pos, w, t, k, acc):
    """``acc[:] = sum_j w[t, j] * x[pos[t * k + j], :]`` for the slots with
    ``pos >= 0``, in ``j`` order, in ``acc``'s precision (one rounding per
    product and per sum; float32 or float64 ``x``, ``w`` of ``acc``'s
    dtype).

    Raises ``ValueError`` unless ``0 <= t < w.shape[0]``, ``0 <= k <=
    w.shape[1]``, ``(t + 1) * k <= len(pos)``, ``len(acc) == x.shape[1]``
    and each of the ``k`` positions read is below ``x.shape[0]`` (``k + 4``
    compares; nothing is read or written out of bounds).
    """
    if t < 0 or t >= w.shape[0] or k < 0 or k > w.shape[1] or (t + 1) * k > pos.shape[0]:
        raise ValueError(
            "combine_row: t or k is out of range; need 0 <= t < w.shape[0], "
            "0 <= k <= w.shape[1] and (t + 1) * k <= len(pos)"
        )
    if acc.shape[0] != x.shape[1]:
        raise ValueError("combine_row: acc must have x.shape[1] elements")
    for j in range(k):
        if pos[t * k + j] >= x.shape[0]:
            raise ValueError(
                "combine_row: pos holds a row outside x; pass each slot's row of x (-1: dropped)"
            )
    _combine_row(x, pos, w, t, k, acc)


@jit(nogil=True)
def combine_rows(x, pos, w, k, out, stream, lo, hi):
    """Tokens ``lo:hi`` of ``combine`` for float32/float64 rows: ``out[t] =
    sum_j w[t, j] x[pos[t k + j]]`` accumulated in ``w``'s dtype;
    ``stream``: store the rows with streaming stores (for outputs larger
    than the caches)."""
    H = out.shape[1]
    acc = np.empty(H, w.dtype)
    for t in range(lo, hi):
        _combine_row(x, pos, w, t, k, acc)
        if stream:
            store_row(out, t, acc)
        else:
            for h in range(H):
                out[t, h] = acc[h]
    if stream:
        store_fence()


@jit(nogil=True, inline="always")
def _prefetch_rows(x, pos, t, k):
    # ask for every cache line of token t's kept rows
    for j in range(k):
        p = pos[t * k + j]
        if p >= 0:
            prefetch_row(x, p)


@jit(nogil=True)
def combine_rows_half(x, pos, w, k, out, lo, hi):
    """``combine_rows`` for bfloat16 or float16 rows (``x`` a ``BF16``/``F16``
    kernel view, ``out`` its ``uint16`` bits): each read widened to float32
    exactly, float32 sums, each result rounded to nearest even. The next
    token's rows are prefetched while this one is summed (up to a quarter
    faster than the hardware prefetcher alone, in the benchmark cases)."""
    H = out.shape[1]
    acc = np.empty(H, np.float32)
    for t in range(lo, hi):
        if t + 1 < hi:
            _prefetch_rows(x, pos, t + 1, k)
        _weighted_sum(x, pos, w, t, k, acc)
        for h in range(H):
            out[t, h] = narrow(acc[h], x)
