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
from numba import types
from numba.extending import overload

from .._dtypes import widen
from .._jit import jit, uidx

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


# The helpers below work on the segment ``x[r, lo:hi]`` of a 2-D array and
# write into row ``ro`` of ``vals``/``idxs``, recording positions ``i`` in
# ``[lo, hi)``. Dense rows are ``lo = 0, hi = n, ro = r``; a CSR matrix is its
# ``data`` as one row, each matrix row a segment. Nothing creates a view per
# row, which would cost an atomic reference-count update on the shared parent
# array.


@jit(inline="always")
def _group_hits(x, r, i, thr, largest):
    # number of x[r, i:i + GROUP] strictly better than thr (NaN never is)
    hits = 0
    for j in range(GROUP):
        hits += 1 if _beats(widen(x[r, uidx(i + j)]), thr, largest) else 0
    return hits


@jit(inline="always")
def _next_beating(x, r, i, hi, thr, largest):
    # the first j in [i, hi) with x[r, j] strictly better than thr, or hi;
    # whole groups without a candidate are skipped with one vectorized test
    while i + GROUP <= hi and _group_hits(x, r, i, thr, largest) == 0:
        i += GROUP
    while i < hi and not _beats(widen(x[r, i]), thr, largest):
        i += 1
    return i


@jit(inline="always")
def _insert(vals, idxs, ro, pos, v, i, largest):
    # place (v, i) into the sorted prefix vals[ro, :pos + 1], shifting worse ones
    j = pos
    while j > 0 and _beats(v, vals[ro, j - 1], largest):
        vals[ro, j] = vals[ro, j - 1]
        idxs[ro, j] = idxs[ro, j - 1]
        j -= 1
    vals[ro, j] = v
    idxs[ro, j] = i


@jit(inline="always")
def _sift_down(vals, idxs, ro, start, size, largest):
    # restore the heap below `start`; the root is the worst element
    j = start
    v = vals[ro, j]
    ix = idxs[ro, j]
    while True:
        c = 2 * j + 1
        if c >= size:
            break
        if c + 1 < size and _worse(
            vals[ro, c + 1], idxs[ro, c + 1], vals[ro, c], idxs[ro, c], largest
        ):
            c += 1
        if not _worse(vals[ro, c], idxs[ro, c], v, ix, largest):
            break
        vals[ro, j] = vals[ro, c]
        idxs[ro, j] = idxs[ro, c]
        j = c
    vals[ro, j] = v
    idxs[ro, j] = ix


@jit
def _sift_up(vals, idxs, ro, pos, largest):
    v = vals[ro, pos]
    ix = idxs[ro, pos]
    j = pos
    while j > 0:
        p = (j - 1) >> 1
        if not _worse(v, ix, vals[ro, p], idxs[ro, p], largest):
            break
        vals[ro, j] = vals[ro, p]
        idxs[ro, j] = idxs[ro, p]
        j = p
    vals[ro, j] = v
    idxs[ro, j] = ix


@jit
def _fill_nans(x, r, lo, hi, cnt, k, vals, idxs, ro):
    # the scan skipped NaNs; append them in position order until k are chosen
    for i in range(lo, hi):
        if cnt >= k:
            break
        v = widen(x[r, i])
        if v != v:
            vals[ro, cnt] = v
            idxs[ro, cnt] = i
            cnt += 1
    return cnt


@jit
def select_insertion(x, r, lo, hi, k, largest, vals, idxs, ro):
    cnt = 0
    i = lo
    while i < hi and cnt < k:  # fill phase
        v = widen(x[r, i])
        if v == v:
            _insert(vals, idxs, ro, cnt, v, i, largest)
            cnt += 1
        i += 1
    if cnt < k:
        return _fill_nans(x, r, lo, hi, cnt, k, vals, idxs, ro)
    thr = vals[ro, k - 1]
    i = _next_beating(x, r, i, hi, thr, largest)  # hot loop: one compare per element
    while i < hi:
        _insert(vals, idxs, ro, k - 1, widen(x[r, i]), i, largest)
        thr = vals[ro, k - 1]
        i = _next_beating(x, r, i + 1, hi, thr, largest)
    return cnt


@jit
def select_heap(x, r, lo, hi, k, largest, sort, vals, idxs, ro):
    cnt = 0
    i = lo
    while i < hi and cnt < k:
        v = widen(x[r, i])
        if v == v:
            vals[ro, cnt] = v
            idxs[ro, cnt] = i
            _sift_up(vals, idxs, ro, cnt, largest)
            cnt += 1
        i += 1
    if cnt == k:
        thr = vals[ro, 0]
        i = _next_beating(x, r, i, hi, thr, largest)
        while i < hi:
            vals[ro, 0] = widen(x[r, i])
            idxs[ro, 0] = i
            _sift_down(vals, idxs, ro, 0, k, largest)
            thr = vals[ro, 0]
            i = _next_beating(x, r, i + 1, hi, thr, largest)
    if sort or cnt < k:
        # heapsort: move the worst to the end repeatedly -> best first
        end = cnt - 1
        while end > 0:
            tv = vals[ro, 0]
            ti = idxs[ro, 0]
            vals[ro, 0] = vals[ro, end]
            idxs[ro, 0] = idxs[ro, end]
            vals[ro, end] = tv
            idxs[ro, end] = ti
            _sift_down(vals, idxs, ro, 0, end, largest)
            end -= 1
    if cnt < k:
        return _fill_nans(x, r, lo, hi, cnt, k, vals, idxs, ro)
    return cnt


@jit
def top_k_segment(x, r, lo, hi, k, largest, sort, vals, idxs, ro):
    """Top ``k`` of ``x[r, lo:hi]`` into ``vals[ro, :m]``/``idxs[ro, :m]``
    (``idxs`` get positions in ``[lo, hi)``); returns ``m = min(k, hi - lo)``."""
    if k <= 0:
        return 0
    if k <= INSERTION_MAX_K:
        return select_insertion(x, r, lo, hi, k, largest, vals, idxs, ro)
    return select_heap(x, r, lo, hi, k, largest, sort, vals, idxs, ro)


@jit
def insertion_rows(x, k, largest, sort, vals, idxs, lo, hi):
    """Top ``k <= INSERTION_MAX_K`` of rows ``lo:hi`` of the 2-D ``x`` into
    the same rows of ``vals``/``idxs`` (always in rank order)."""
    n = x.shape[1]
    for r in range(lo, hi):
        select_insertion(x, r, 0, n, k, largest, vals, idxs, r)


@jit
def heap_rows(x, k, largest, sort, vals, idxs, lo, hi):
    """Top ``k`` (any) of rows ``lo:hi`` of the 2-D ``x`` by a binary heap,
    in rank order when ``sort``."""
    n = x.shape[1]
    for r in range(lo, hi):
        select_heap(x, r, 0, n, k, largest, sort, vals, idxs, r)


@jit
def top_k_row(x, r, k, largest, sort, vals, idxs):
    """Row ``r`` of the 2-D ``x`` into row ``r`` of ``vals``/``idxs`` (see ``top_k_1d``)."""
    top_k_segment(x, r, 0, x.shape[1], k, largest, sort, vals, idxs, r)


def index_limit(a):
    """The largest index that the elements of array ``a`` hold exactly (a
    constant for each dtype, for the checks of the ``@njit`` entry points)."""
    if a.dtype.kind == "f":
        return 2 ** (np.finfo(a.dtype).nmant + 1)
    if a.dtype.kind in "iu":
        return min(int(np.iinfo(a.dtype).max), 2**62)
    return 0


@overload(index_limit, jit_options={"error_model": "numpy"})
def _index_limit_impl(a):
    if isinstance(a.dtype, types.Float):
        lim = 2 ** (np.finfo(str(a.dtype)).nmant + 1)
    elif isinstance(a.dtype, types.Integer):
        lim = min(int(np.iinfo(str(a.dtype)).max), 2**62)
    else:  # bool and anything else: room for 0 only
        lim = 0
    return lambda a: lim


@jit
def top_k_1d(x, k, largest, sort, values, indices):
    """Write the top ``k`` of the 1-D array ``x`` into ``values[:k]`` and
    ``indices[:k]``.

    Parameters
    ----------
    x : 1-D array (any real dtype Numba supports, any stride)
    k : int, ``0 <= k <= x.shape[0]``
    largest : bool, True for the largest values, False for the smallest
    sort : bool, False allows any order of the k pairs (faster for large k)
    values : 1-D array of ``x.dtype`` with at least ``k`` elements
    indices : 1-D integer array with at least ``k`` elements, of a dtype
        that holds ``x.shape[0] - 1`` (``np.intp`` always does)

    Ties go to the lower index; NaN ranks after every number (see module doc).
    Raises ``ValueError`` when ``k`` is out of range, ``values`` or
    ``indices`` is too short, or ``indices``' dtype is too narrow (four
    compares per call; nothing is written out of bounds).

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
    n = x.shape[0]
    if k < 0 or k > n:
        raise ValueError("top_k_1d: k is out of range; pass 0 <= k <= len(x)")
    if values.shape[0] < k or indices.shape[0] < k:
        raise ValueError("top_k_1d: values and indices must hold at least k elements each")
    if n - 1 > index_limit(indices):
        raise ValueError(
            "top_k_1d: the dtype of indices cannot hold every index of x; use np.intp"
        )
    top_k_row(
        np.expand_dims(x, 0), 0, k, largest, sort,
        np.expand_dims(values, 0), np.expand_dims(indices, 0),
    )  # fmt: skip
