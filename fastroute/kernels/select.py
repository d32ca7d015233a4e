"""Bounded top-k selection over one 1-D slice.

Order (the contract of ``fastroute.top_k``), for ``largest=True``:

1. numbers by value, descending; ``-0.0`` and ``+0.0`` are equal;
   ``+inf``/``-inf`` are ordinary values;
2. equal values: lower index first;
3. NaN after every number, NaNs among themselves by index.

``largest=False`` mirrors 1 (ascending) and keeps 2 and 3.

Small ``k`` uses a sorted insertion buffer held in the output arrays; large
``k`` a binary heap. Either way the scan does one comparison per element
against the current k-th best value, which lives in a register.
"""

from __future__ import annotations

import numpy as np

from .._jit import _u, jit

#: Up to this k the insertion buffer is used, above it the heap.
INSERTION_MAX_K = 24

#: The scan tests this many elements against the threshold at once (a
#: vectorized compare); only a group with a candidate is walked one by one.
GROUP = 64


@jit(inline="always")
def _beats(a, b, largest):
    # strictly better value (for candidates that arrive in index order,
    # an equal value loses: it has the higher index)
    return a > b if largest else a < b


@jit(inline="always")
def _worse(av, ai, bv, bi, largest):
    # "a ranks after b" for the heap (no NaN inside the heap)
    if av == bv:
        return ai > bi
    return av < bv if largest else av > bv


# The helpers below work on row ``r`` of 2-D arrays (``x``, ``vals``,
# ``idxs``): the drivers call them without creating a view per row, which
# would cost an atomic reference-count update on the shared parent array.


@jit(inline="always")
def _group_hits(x, r, i, thr, largest):
    # number of x[r, i:i + GROUP] strictly better than thr (NaN never is)
    hits = 0
    for j in range(GROUP):
        hits += 1 if _beats(x[r, _u(i + j)], thr, largest) else 0
    return hits


@jit(inline="always")
def _next_beating(x, r, i, thr, largest):
    # the first j >= i with x[r, j] strictly better than thr, or the row length;
    # whole groups without a candidate are skipped with one vectorized test
    n = x.shape[1]
    while i + GROUP <= n and _group_hits(x, r, i, thr, largest) == 0:
        i += GROUP
    while i < n and not _beats(x[r, i], thr, largest):
        i += 1
    return i


@jit(inline="always")
def _insert(vals, idxs, r, pos, v, i, largest):
    # place (v, i) into the sorted prefix vals[r, :pos + 1], shifting worse ones
    j = pos
    while j > 0 and _beats(v, vals[r, j - 1], largest):
        vals[r, j] = vals[r, j - 1]
        idxs[r, j] = idxs[r, j - 1]
        j -= 1
    vals[r, j] = v
    idxs[r, j] = i


@jit(inline="always")
def _sift_down(vals, idxs, r, start, size, largest):
    # restore the heap below `start`; the root is the worst element
    j = start
    v = vals[r, j]
    ix = idxs[r, j]
    while True:
        c = 2 * j + 1
        if c >= size:
            break
        if c + 1 < size and _worse(vals[r, c + 1], idxs[r, c + 1], vals[r, c], idxs[r, c], largest):
            c += 1
        if not _worse(vals[r, c], idxs[r, c], v, ix, largest):
            break
        vals[r, j] = vals[r, c]
        idxs[r, j] = idxs[r, c]
        j = c
    vals[r, j] = v
    idxs[r, j] = ix


@jit(inline="always")
def _sift_up(vals, idxs, r, pos, largest):
    v = vals[r, pos]
    ix = idxs[r, pos]
    j = pos
    while j > 0:
        p = (j - 1) >> 1
        if not _worse(v, ix, vals[r, p], idxs[r, p], largest):
            break
        vals[r, j] = vals[r, p]
        idxs[r, j] = idxs[r, p]
        j = p
    vals[r, j] = v
    idxs[r, j] = ix


@jit(inline="always")
def _fill_nans(x, r, cnt, k, vals, idxs):
    # the scan skipped NaNs; append them in index order until k are chosen
    for i in range(x.shape[1]):
        if cnt >= k:
            break
        v = x[r, i]
        if v != v:
            vals[r, cnt] = v
            idxs[r, cnt] = i
            cnt += 1


@jit(inline="always")
def _select_insertion(x, r, k, largest, vals, idxs):
    n = x.shape[1]
    cnt = 0
    i = 0
    while i < n and cnt < k:  # fill phase
        v = x[r, i]
        if v == v:
            _insert(vals, idxs, r, cnt, v, i, largest)
            cnt += 1
        i += 1
    if cnt == k:
        thr = vals[r, k - 1]
        i = _next_beating(x, r, i, thr, largest)  # hot loop: one compare per element
        while i < n:
            _insert(vals, idxs, r, k - 1, x[r, i], i, largest)
            thr = vals[r, k - 1]
            i = _next_beating(x, r, i + 1, thr, largest)
    else:
        _fill_nans(x, r, cnt, k, vals, idxs)


@jit(inline="always")
def _select_heap(x, r, k, largest, sort, vals, idxs):
    n = x.shape[1]
    cnt = 0
    i = 0
    while i < n and cnt < k:
        v = x[r, i]
        if v == v:
            vals[r, cnt] = v
            idxs[r, cnt] = i
            _sift_up(vals, idxs, r, cnt, largest)
            cnt += 1
        i += 1
    if cnt == k:
        thr = vals[r, 0]
        i = _next_beating(x, r, i, thr, largest)
        while i < n:
            vals[r, 0] = x[r, i]
            idxs[r, 0] = i
            _sift_down(vals, idxs, r, 0, k, largest)
            thr = vals[r, 0]
            i = _next_beating(x, r, i + 1, thr, largest)
    if sort or cnt < k:
        # heapsort: move the worst to the end repeatedly -> best first
        end = cnt - 1
        while end > 0:
            tv = vals[r, 0]
            ti = idxs[r, 0]
            vals[r, 0] = vals[r, end]
            idxs[r, 0] = idxs[r, end]
            vals[r, end] = tv
            idxs[r, end] = ti
            _sift_down(vals, idxs, r, 0, end, largest)
            end -= 1
    if cnt < k:
        _fill_nans(x, r, cnt, k, vals, idxs)


@jit
def top_k_row(x, r, k, largest, sort, vals, idxs):
    """Row ``r`` of the 2-D ``x`` into row ``r`` of ``vals``/``idxs`` (see ``top_k_1d``)."""
    if k <= 0:
        return
    if k <= INSERTION_MAX_K:
        _select_insertion(x, r, k, largest, vals, idxs)
    else:
        _select_heap(x, r, k, largest, sort, vals, idxs)


@jit
def top_k_1d(x, k, largest, sort, values, indices):
    """Write the top ``k`` of the 1-D array ``x`` into ``values[:k]`` and
    ``indices[:k]``.

    Parameters
    ----------
    x : 1-D array (any real dtype Numba supports, any stride)
    k : int, ``0 <= k <= x.shape[0]`` (not checked: Numba does no bounds checks)
    largest : bool, True for the largest values, False for the smallest
    sort : bool, False allows any order of the k pairs (faster for large k)
    values : 1-D array of ``x.dtype`` with at least ``k`` elements
    indices : 1-D integer array with at least ``k`` elements

    Ties go to the lower index; NaN ranks after every number (see module doc).

    Examples
    --------
    >>> import numpy as np, numba
    >>> from fastroute.kernels import top_k_1d
    >>> @numba.njit
    ... def best2(x):
    ...     v = np.empty(2, x.dtype); i = np.empty(2, np.intp)
    ...     top_k_1d(x, 2, True, True, v, i)
    ...     return i
    >>> best2(np.array([0.1, 0.7, 0.2, 0.7]))
    array([1, 3])
    """
    top_k_row(
        np.expand_dims(x, 0), 0, k, largest, sort,
        np.expand_dims(values, 0), np.expand_dims(indices, 0),
    )  # fmt: skip
