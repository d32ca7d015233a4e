"""Kernels on compressed sparse rows (CSR): checks, canonical form, top-k,
entropy, co-occurrence counts, row normalisation, relatedness scores.

A CSR matrix is ``indptr`` (``nrows + 1``), ``indices`` and ``data``
(``nnz`` each). The row kernels see ``data`` as a ``(1, nnz)`` array and each
matrix row ``r`` as its segment ``indptr[r]:indptr[r + 1]``, so they reuse the
dense kernels of ``select`` and ``entropy`` without a view per row.

Most kernels need the *canonical* form: column indices strictly increasing
within each row (sorted, no duplicates). ``check_serial`` says whether a
matrix already is; ``transpose`` (or ``sort_rows``) + ``sum_duplicates``
produce it otherwise, summing duplicates in storage order starting from 0,
exactly as ``toarray`` does.

Parallel work is split by stored entries (``entry_chunks``), not by rows:
real matrices are Zipf-shaped, a few rows holding most of the entries.
"""

from __future__ import annotations

import functools

import numpy as np

from .._jit import jit, uidx
from ._fast import KEYS_MAX_N, pop_best, sort_key
from ._math import BLOCK, log_normal
from .entropy import (
    EXACT,
    entropy_logits_segment,
    entropy_one_pass,
    entropy_two_pass,
    one_pass_decide,
)
from .select import select_heap, select_insertion

_INV_LN2 = 1.4426950408889634
_EPS = 2.0**-52

#: The work of a row, in stored entries, besides its entries (measured: a
#: short row costs 30-60 ns of top-k, 10-25 ns of entropy, an entry 1-2 ns)
TOPK_ROW_COST = 32
ENTROPY_ROW_COST = 8
ROW_COST = 4  # the other kernels (checks)

# check_serial() / check_parallel() result codes
CANONICAL = 0
UNSORTED = 1  # valid, but unsorted or duplicate column indices
BAD_INDEX = 2  # a column index outside [0, ncols)


#: indptr_problem() result codes
BAD_START = 1  # indptr[0] != 0 (or indptr empty)
DECREASING = 2
BAD_END = 3  # indptr[-1] != nnz


@jit
def indptr_problem(indptr, nnz):
    """``(0, -1)`` if ``indptr`` is valid for ``nnz`` entries, else a code
    and the first bad position."""
    n = indptr.shape[0]
    if n == 0 or indptr[0] != 0:
        return BAD_START, 0
    for r in range(1, n):
        if indptr[r] < indptr[r - 1]:
            return DECREASING, r
    if indptr[n - 1] != nnz:
        return BAD_END, n - 1
    return 0, -1


@jit
def entry_chunks(indptr, nchunks, row_cost=ROW_COST):
    """Row boundaries ``b[0] = 0 <= ... <= b[nchunks] = nrows`` splitting the
    work ``indptr[r] + row_cost * r`` into ``nchunks`` near-equal parts.

    The chunks must be equal in time, not in entries: a row costs its
    entries plus ``row_cost``."""
    nrows = indptr.shape[0] - 1
    total = np.int64(indptr[nrows]) + row_cost * nrows
    bounds = np.empty(nchunks + 1, np.int64)
    bounds[0] = 0
    for c in range(1, nchunks):
        target = total * c // nchunks
        lo, hi = bounds[c - 1], nrows
        while lo < hi:  # first row whose cumulative work reaches target
            mid = (lo + hi) >> 1
            if np.int64(indptr[mid]) + row_cost * mid < target:
                lo = mid + 1
            else:
                hi = mid
        bounds[c] = lo
    bounds[nchunks] = nrows
    return bounds


# --- validation --------------------------------------------------------------


@jit
def check_rows(indptr, indices, ncols, lo, hi):
    # (code, position) for rows lo:hi: BAD_INDEX with the first bad entry,
    # else UNSORTED or CANONICAL. Two flat, vectorized passes over the rows'
    # entries, then a correction at each row start.
    e0, e1 = np.int64(indptr[lo]), np.int64(indptr[hi])
    nc = np.uint64(ncols)
    bad = 0
    for t in range(e1 - e0):
        bad += 1 if np.uint64(np.int64(indices[uidx(e0 + t)])) >= nc else 0  # < 0 wraps
    if bad:
        for p in range(e0, e1):
            if indices[p] < 0 or indices[p] >= ncols:
                return BAD_INDEX, p
    down = 0  # adjacent pairs that do not increase, row starts included
    for t in range(e1 - e0 - 1):
        down += 1 if indices[uidx(e0 + t + 1)] <= indices[uidx(e0 + t)] else 0
    for r in range(lo + 1, hi):
        p = np.int64(indptr[r])
        if e0 < p < e1 and indptr[r] != indptr[r - 1]:  # each row start once
            down -= 1 if indices[p] <= indices[p - 1] else 0
    return (UNSORTED if down else CANONICAL), np.int64(-1)


# --- canonical form ------------------------------------------------------------


@jit
def transpose(indptr, indices, data, ncols):
    """The transpose (equivalently: the CSC form) by a stable counting sort.

    In each output row the column indices (the input's row numbers) are
    non-decreasing, and entries of one input (row, column) keep their
    storage order. Index arrays keep the input's index dtype.
    """
    nrows = indptr.shape[0] - 1
    nnz = indices.shape[0]
    tptr = np.zeros(ncols + 1, indptr.dtype)
    for p in range(nnz):
        tptr[indices[p] + 1] += 1
    for c in range(ncols):
        tptr[c + 1] += tptr[c]
    fill = tptr[:-1].copy()
    tind = np.empty(nnz, indices.dtype)
    tdat = np.empty(nnz, data.dtype)
    for r in range(nrows):
        for p in range(indptr[r], indptr[r + 1]):
            c = indices[p]
            q = fill[c]
            fill[c] = q + 1
            tind[q] = r
            tdat[q] = data[p]
    return tptr, tind, tdat


@jit
def group_rows(keys, minor, data, nrows):
    """Entries ``(keys[p], minor[p], data[p])`` grouped by ``keys`` (a stable
    counting sort): CSR arrays whose rows keep the storage order. Index
    arrays have the dtype of ``minor`` (the caller makes both alike)."""
    nnz = keys.shape[0]
    ptr = np.zeros(nrows + 1, minor.dtype)
    for p in range(nnz):
        ptr[keys[p] + 1] += 1
    for r in range(nrows):
        ptr[r + 1] += ptr[r]
    fill = ptr[:-1].copy()
    ind = np.empty(nnz, minor.dtype)
    dat = np.empty(nnz, data.dtype)
    for p in range(nnz):
        r = keys[p]
        q = fill[r]
        fill[r] = q + 1
        ind[q] = minor[p]
        dat[q] = data[p]
    return ptr, ind, dat


@jit
def sort_rows(indptr, indices, data):
    """Sort each row's entries by column, stably, in place. Memory and time
    scale with the stored entries, not with the number of columns (the
    counting sort of ``transpose`` needs one counter per column)."""
    for r in range(indptr.shape[0] - 1):
        a, b = indptr[r], indptr[r + 1]
        if b - a > 1:
            order = np.argsort(indices[a:b], kind="mergesort")
            ind = indices[a:b][order]
            dat = data[a:b][order]
            indices[a:b] = ind
            data[a:b] = dat


@jit
def sum_duplicates(indptr, indices, data):
    """Merge the adjacent equal column indices of each row (sorted rows in,
    canonical rows out); a merged value is ``0 + d1 + d2 + ...`` in storage
    order, the arithmetic of ``toarray``."""
    nrows = indptr.shape[0] - 1
    optr = np.zeros(nrows + 1, indptr.dtype)
    for r in range(nrows):
        u = 0
        for p in range(indptr[r], indptr[r + 1]):
            if p == indptr[r] or indices[p] != indices[p - 1]:
                u += 1
        optr[r + 1] = optr[r] + u
    oind = np.empty(optr[nrows], indices.dtype)
    odat = np.empty(optr[nrows], data.dtype)
    for r in range(nrows):
        q = optr[r] - 1
        for p in range(indptr[r], indptr[r + 1]):
            if p == indptr[r] or indices[p] != indices[p - 1]:
                q += 1
                oind[q] = indices[p]
                odat[q] = data[p] if data[p] != 0 else 0  # -0.0 -> +0.0, as 0 + d
            else:
                odat[q] = odat[q] + data[p]
    return optr, oind, odat


# --- top-k -----------------------------------------------------------------------


@jit(inline="always")
def _keys_segment(data2d, a, b, k, largest, vals, idxs, ro, keys):
    # float32 only: m = min(k, b - a) max passes over 64-bit keys (value
    # order, then lower position), as kernels/_fast.py; positions into idxs
    n = b - a
    for i in range(n):
        keys[i] = sort_key(np.float32(data2d[0, uidx(a + i)]), i, largest)
    m = min(k, n)
    for j in range(m):
        c = pop_best(keys, n)
        idxs[ro, j] = a + c
        vals[ro, j] = data2d[0, uidx(a + c)]
    return m


@jit(inline="always")
def _explicit_row(indices, r, m, k, vals, idxs):
    # top-k among the stored entries of row r, its m selected into row r of
    # vals/idxs as positions: as column indices; fewer than k -> pad (-1, 0)
    for j in range(m):
        idxs[r, j] = indices[idxs[r, j]]
        if vals[r, j] == 0:
            vals[r, j] = 0  # a stored -0.0 reads as +0.0, as in toarray
    for j in range(m, k):
        idxs[r, j] = -1
        vals[r, j] = 0


@jit(inline="always")
def _dense_row(indptr, indices, data2d, ncols, r, k, largest, vals, idxs, sv, si, m):
    # top-k of the row as toarray() would give it, from the m stored entries
    # selected into sv/si: those that beat 0, then zeros (stored or
    # implicit) in column order, then the rest
    a, b = indptr[r], indptr[r + 1]
    j = 0
    t = 0
    while t < m and j < k:
        v = sv[0, t]
        if not (v > 0 if largest else v < 0):
            break
        vals[r, j] = v
        idxs[r, j] = indices[si[0, t]]
        j += 1
        t += 1
    q = a
    c = 0
    while j < k and c < ncols:
        while q < b and indices[q] < c:
            q += 1
        if not (q < b and indices[q] == c and data2d[0, q] != 0):  # NaN != 0
            vals[r, j] = 0
            idxs[r, j] = c
            j += 1
        c += 1
    while j < k:  # t < m here: the list holds every needed entry (see module)
        v = sv[0, t]
        t += 1
        if v == 0:
            continue  # a stored zero, already placed among the zeros
        vals[r, j] = v
        idxs[r, j] = indices[si[0, t - 1]]
        j += 1


@jit
def _select_keyed(data2d, a, b, k, largest, vals, idxs, ro, keys):
    # float32, k <= KEYS_MAX_K: the key passes for rows they suit, else the
    # insertion buffer. Not inlined: one compiled copy shared by both row
    # rules (a call costs nanoseconds per row; inlined into each, it took
    # a minute to compile)
    if k < b - a <= KEYS_MAX_N:
        return _keys_segment(data2d, a, b, k, largest, vals, idxs, ro, keys)
    return select_insertion(data2d, 0, a, b, k, largest, vals, idxs, ro)


@functools.cache
def topk_kernels(heap: bool, keyed: bool) -> tuple:
    """``(explicit_rows, dense_rows)``, the row kernels of sparse top-k over
    rows ``lo:hi`` (run by ``_execute.run_csr``): for ``k`` above
    ``INSERTION_MAX_K`` a binary heap (``heap``), else a sorted insertion
    buffer, with the key passes for the rows they suit when ``keyed``
    (float32 data, ``k <= KEYS_MAX_K``). Each kernel compiles its own
    selection only, and only when it is used.

    ``explicit_rows(indptr, indices, data2d, k, largest, sort, vals, idxs,
    lo, hi)``: the top-k among the stored entries (see ``_explicit_row``);
    ``dense_rows(indptr, indices, data2d, ncols, k, largest, vals, idxs,
    lo, hi)``: as ``toarray()`` gives the rows (see ``_dense_row``)."""

    @jit
    def explicit_rows(indptr, indices, data2d, k, largest, sort, vals, idxs, lo, hi):
        keys = np.empty(KEYS_MAX_N if keyed else 0, np.int64)
        for r in range(lo, hi):
            a, b = indptr[r], indptr[r + 1]
            if heap:  # heap and keyed are constants: the other branches are not compiled
                m = select_heap(data2d, 0, a, b, k, largest, sort, vals, idxs, r)
            elif keyed:
                m = _select_keyed(data2d, a, b, k, largest, vals, idxs, r, keys)
            else:
                m = select_insertion(data2d, 0, a, b, k, largest, vals, idxs, r)
            _explicit_row(indices, r, m, k, vals, idxs)

    @jit
    def dense_rows(indptr, indices, data2d, ncols, k, largest, vals, idxs, lo, hi):
        sv = np.empty((1, max(k, 1)), data2d.dtype)
        si = np.empty((1, max(k, 1)), np.intp)
        keys = np.empty(KEYS_MAX_N if keyed else 0, np.int64)
        for r in range(lo, hi):
            a, b = indptr[r], indptr[r + 1]
            if heap:
                m = select_heap(data2d, 0, a, b, k, largest, True, sv, si, 0)
            elif keyed:
                m = _select_keyed(data2d, a, b, k, largest, sv, si, 0, keys)
            else:
                m = select_insertion(data2d, 0, a, b, k, largest, sv, si, 0)
            _dense_row(indptr, indices, data2d, ncols, r, k, largest, vals, idxs, sv, si, m)

    explicit_rows.__name__ = "topk_explicit_rows"
    dense_rows.__name__ = "topk_dense_rows"
    return explicit_rows, dense_rows


# format="csr" from the explicit ranking: the stored entries in rank order
# are the full row's ranking with the zeros (stored and implicit) taken out.
# In the full ranking the "leading" entries (positive for largest, negative
# for smallest) come first, then every zero, then the rest (then NaN); so
# the pruned result keeps the leading entries of the explicit top k and then,
# of the rest, only as many as the zeros leave room for: the first nonzero
# entries of the explicit ranking, as many as ``_kept_rule`` counts.


@jit(inline="always")
def _kept_rule(vals, idxs, r, implicit, largest):
    # the pairs row r of an explicit top-k result keeps (``implicit``: the
    # row's implicit zeros): its leading entries, then as many of the rest
    # as the zeros leave room for
    k = vals.shape[1]
    lead = 0
    zeros = 0
    valid = 0
    for j in range(k):
        v = vals[r, j]
        ok = idxs[r, j] >= 0
        valid += ok
        lead += ok and (v > 0 if largest else v < 0)
        zeros += ok and v == 0
    room = max(0, k - lead - zeros - implicit)
    return lead + min(room, valid - lead - zeros)


@jit
def kept_counts(vals, idxs, src_indptr, ncols, implicit, largest, indptr, lo, hi):
    # indptr[r + 1] = the pairs row r keeps, rows lo:hi
    for r in range(lo, hi):
        iz = ncols - (src_indptr[r + 1] - src_indptr[r]) if implicit else 0
        indptr[r + 1] = _kept_rule(vals, idxs, r, iz, largest)


@jit
def kept_pairs(vals, idxs, indptr, indices, data, lo, hi):
    # the kept pairs of rows lo:hi (the first nonzero ones in rank order, as
    # many as indptr says), columns ascending: each pair goes to the rank of
    # its column among the row's kept columns (distinct). Branch-free, in
    # loops of fixed length k: the kept count varies from row to row, and
    # branches on it mispredict.
    k = vals.shape[1]
    cols = np.empty(k, np.int64)
    vs = np.empty(k, vals.dtype)
    for r in range(lo, hi):
        q0 = indptr[r]
        keep = indptr[r + 1] - q0
        m = 0
        for j in range(k):
            c = idxs[r, j]
            take = (c >= 0) & (vals[r, j] != 0) & (m < keep)
            cols[min(m, k - 1)] = c if take else cols[min(m, k - 1)]
            vs[min(m, k - 1)] = vals[r, j] if take else vs[min(m, k - 1)]
            m += take
        for j in range(k):
            cols[j] = cols[j] if j < m else np.int64(2**62)  # after every column
        for j in range(m):
            c = cols[j]
            rank = 0
            for i in range(k):
                rank += cols[i] < c
            indices[q0 + rank] = c
            data[q0 + rank] = vs[j]


@jit
def pruned_storage(indptr, vals):
    # row counts in indptr[1:] -> offsets, in place; the result's empty arrays
    n = indptr.shape[0] - 1
    for r in range(n):
        indptr[r + 1] += indptr[r]
    return np.empty(indptr[n], indptr.dtype), np.empty(indptr[n], vals.dtype)


# --- entropy -------------------------------------------------------------------------


#: rows of up to this many stored entries take the many-rows-per-loop path
SHORT_ROW = 32
_GROUP_ENTRIES = 4096


# The entropy helpers below are separate functions, not inlined: each is
# compiled once per signature and shared by the row kernels that call it
# (inlined into each, they took tens of seconds to compile).


@jit
def logits_rows(indptr, data2d, ncols, out, lo, hi):
    """Entropy of ``softmax`` of rows ``lo:hi``, implicit entries logits 0."""
    b0, b1 = np.empty(BLOCK), np.empty(BLOCK)
    for r in range(lo, hi):
        a, b = indptr[r], indptr[r + 1]
        out[r] = entropy_logits_segment(data2d, 0, a, b, ncols - (b - a), b0, b1)


@jit
def exact_rows(indptr, data2d, normalize, out, status, lo, hi):
    """The exact two-pass kernel for the rows of ``lo:hi`` marked ``EXACT``."""
    b0, b1 = np.empty(BLOCK), np.empty(BLOCK)
    for r in range(lo, hi):
        if status[r] == EXACT:
            out[r], status[r] = entropy_two_pass(
                data2d, 0, indptr[r], indptr[r + 1], normalize, b0, b1
            )


@jit
def entropy_rows(indptr, data2d, normalize, out, status, lo, hi):
    """One-pass entropy of rows ``lo:hi``; rows its error bound rejects are
    marked ``EXACT`` (for ``exact_rows``/``exact_parallel``)."""
    b0, b1, b2 = np.empty(BLOCK), np.empty(BLOCK), np.empty(BLOCK)
    # scratch of the short-row groups: per entry, then per row
    ta, tb = np.empty(_GROUP_ENTRIES), np.empty(_GROUP_ENTRIES)
    fl = np.empty(_GROUP_ENTRIES, np.int64)
    rs, ra, rb = np.empty(_GROUP_ENTRIES), np.empty(_GROUP_ENTRIES), np.empty(_GROUP_ENTRIES)
    rh, re = np.empty(_GROUP_ENTRIES), np.empty(_GROUP_ENTRIES)
    rn, rf = np.empty(_GROUP_ENTRIES, np.int64), np.empty(_GROUP_ENTRIES, np.int64)
    r = lo
    while r < hi:
        a = indptr[r]
        if indptr[r + 1] - a > SHORT_ROW:
            h, st, ok = entropy_one_pass(data2d, 0, a, indptr[r + 1], normalize, b0, b1, b2)
            out[r] = h
            status[r] = st if ok else EXACT
            r += 1
            continue
        r1 = r + 1  # a group of consecutive short rows: at most _GROUP_ENTRIES
        # entries and rows (empty rows add rows, not entries)
        while (r1 < hi and r1 - r < _GROUP_ENTRIES and indptr[r1 + 1] - indptr[r1] <= SHORT_ROW
               and indptr[r1 + 1] - a <= _GROUP_ENTRIES):  # fmt: skip
            r1 += 1
        _short_rows(indptr, data2d, normalize, out, status, r, r1,
                    ta, tb, fl, rs, ra, rb, rh, re, rn, rf)  # fmt: skip
        r = r1


@jit
def _short_rows(indptr, data2d, normalize, out, status, r0, r1,
                ta, tb, fl, rs, ra, rb, rh, re, rn, rf):  # fmt: skip
    # the one-pass entropy of many short rows: the per-entry terms (with the
    # vectorized log) in one loop over all their entries, then the per-row
    # sums, then the per-row finish in one more vectorized loop; rows whose
    # error bound is too large are marked EXACT
    a0 = indptr[r0]
    m = indptr[r1] - a0
    for t in range(m):
        v = np.float64(data2d[0, uidx(a0 + t)]) + 0.0  # -0.0 -> +0.0
        lt = v * log_normal(v)  # 0 * finite = 0 for zeros
        ta[t] = lt
        tb[t] = abs(lt)
        fl[t] = (1 if v < 0.0 else 0) | (2 if (v != v or v == np.inf) else 0)
    g = r1 - r0
    for rr in range(g):
        a, b = indptr[r0 + rr] - a0, indptr[r0 + rr + 1] - a0
        s_sum = 0.0
        a_sum = 0.0
        b_sum = 0.0
        flags = 0
        for t in range(a, b):
            s_sum += np.float64(data2d[0, uidx(a0 + t)]) + 0.0
            a_sum += ta[t]
            b_sum += tb[t]
            flags |= fl[t]
        rs[rr], ra[rr], rb[rr], rf[rr], rn[rr] = s_sum, a_sum, b_sum, flags, b - a
    for rr in range(g):  # vectorized: the one-pass value and its error bound
        n = rn[rr]
        s_sum = rs[rr]
        log_s = log_normal(s_sum)
        one = n == 1  # a single positive entry: exactly 0
        rh[rr] = 0.0 if one else log_s - ra[rr] / s_sum
        scale = (log_normal(np.float64(max(n, 1))) * _INV_LN2 + 8.0) * _EPS
        re[rr] = 0.0 if one else scale * (abs(log_s) + 1.0 + rb[rr] / s_sum)
    for rr in range(g):
        r = r0 + rr
        h, st, ok = one_pass_decide(
            rs[rr], ra[rr], rh[rr], re[rr], rf[rr] & 1, rf[rr] >> 1, normalize
        )
        out[r] = h
        status[r] = st if ok else EXACT


__all__ = [
    "CANONICAL", "UNSORTED", "BAD_INDEX", "BAD_START", "DECREASING", "BAD_END", "ROW_COST",
    "TOPK_ROW_COST", "ENTROPY_ROW_COST", "indptr_problem", "entry_chunks", "check_rows",
    "transpose", "group_rows", "sort_rows", "sum_duplicates", "topk_kernels",
    "kept_counts", "kept_pairs", "pruned_storage", "entropy_rows",
    "exact_rows", "logits_rows",
]  # fmt: skip
