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

from .._jit import jit

#: Up to this k the insertion buffer is used, above it the heap.
INSERTION_MAX_K = 24


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


@jit(inline="always")
def _insert(vals, idxs, pos, v, i, largest):
    # place (v, i) into the sorted prefix vals[:pos + 1], shifting worse ones
    j = pos
    while j > 0 and _beats(v, vals[j - 1], largest):
        vals[j] = vals[j - 1]
        idxs[j] = idxs[j - 1]
        j -= 1
    vals[j] = v
    idxs[j] = i


@jit(inline="always")
def _sift_down(vals, idxs, start, size, largest):
    # restore the heap below `start`; root = worst element
    j = start
    v = vals[j]
    ix = idxs[j]
    while True:
        c = 2 * j + 1
        if c >= size:
            break
        if c + 1 < size and _worse(vals[c + 1], idxs[c + 1], vals[c], idxs[c], largest):
            c += 1
        if not _worse(vals[c], idxs[c], v, ix, largest):
            break
        vals[j] = vals[c]
        idxs[j] = idxs[c]
        j = c
    vals[j] = v
    idxs[j] = ix


@jit(inline="always")
def _sift_up(vals, idxs, pos, largest):
    v = vals[pos]
    ix = idxs[pos]
    j = pos
    while j > 0:
        p = (j - 1) >> 1
        if not _worse(v, ix, vals[p], idxs[p], largest):
            break
        vals[j] = vals[p]
        idxs[j] = idxs[p]
        j = p
    vals[j] = v
    idxs[j] = ix


@jit
def _fill_nans(x, cnt, k, vals, idxs):
    # the scan skipped NaNs; append them in index order until k are chosen
    n = x.shape[0]
    for i in range(n):
        if cnt >= k:
            break
        v = x[i]
        if v != v:
            vals[cnt] = v
            idxs[cnt] = i
            cnt += 1
    return cnt


@jit
def _select_insertion(x, k, largest, vals, idxs):
    n = x.shape[0]
    cnt = 0
    i = 0
    while i < n and cnt < k:  # fill phase
        v = x[i]
        if v == v:
            _insert(vals, idxs, cnt, v, i, largest)
            cnt += 1
        i += 1
    if cnt == k:
        thr = vals[k - 1]
        while i < n:  # hot loop: one compare per element
            v = x[i]
            if _beats(v, thr, largest):
                _insert(vals, idxs, k - 1, v, i, largest)
                thr = vals[k - 1]
            i += 1
    else:
        _fill_nans(x, cnt, k, vals, idxs)


@jit
def _select_heap(x, k, largest, sort, vals, idxs):
    n = x.shape[0]
    cnt = 0
    i = 0
    while i < n and cnt < k:
        v = x[i]
        if v == v:
            vals[cnt] = v
            idxs[cnt] = i
            _sift_up(vals, idxs, cnt, largest)
            cnt += 1
        i += 1
    if cnt == k:
        thr = vals[0]
        while i < n:
            v = x[i]
            if _beats(v, thr, largest):
                vals[0] = v
                idxs[0] = i
                _sift_down(vals, idxs, 0, k, largest)
                thr = vals[0]
            i += 1
    if sort or cnt < k:
        # heapsort: move the worst to the end repeatedly -> best first
        end = cnt - 1
        while end > 0:
            tv = vals[0]
            ti = idxs[0]
            vals[0] = vals[end]
            idxs[0] = idxs[end]
            vals[end] = tv
            idxs[end] = ti
            _sift_down(vals, idxs, 0, end, largest)
            end -= 1
    if cnt < k:
        _fill_nans(x, cnt, k, vals, idxs)


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
    if k <= 0:
        return
    if k <= INSERTION_MAX_K:
        _select_insertion(x, k, largest, values, indices)
    else:
        _select_heap(x, k, largest, sort, values, indices)
