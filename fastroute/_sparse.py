"""SciPy sparse input: checked CSR views and the sparse ``top_k``/``entropy``.

SciPy is imported only when a sparse matrix is actually passed in.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ._drivers import n_chunks
from ._jit import parallel_guard
from .kernels import csr as K
from .kernels._fast import KEYS_MAX_K

_INDEX_TYPES = (np.dtype(np.int32), np.dtype(np.int64))


def is_sparse(x: Any) -> bool:
    """True for a SciPy sparse array or matrix (without importing SciPy)."""
    return type(x).__module__.startswith("scipy.sparse") and hasattr(x, "format")


class CSR(NamedTuple):
    """Checked, canonical CSR arrays (sorted, unique column indices per row).

    ``data`` has a dtype the kernels take (bool is viewed as uint8, float16
    widened to float32); ``dtype`` is the caller's.
    """

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    shape: tuple[int, int]
    dtype: np.dtype


def as_csr(x: Any, func: str, *, columns: bool = False) -> CSR:
    """Canonical CSR arrays of ``x`` (of ``x.T`` when ``columns``), checked.

    The caller's matrix is never modified; a copy is made only when ``x`` is
    not CSR (CSC for ``columns``) or its rows are not canonical.
    """
    if not is_sparse(x):
        raise TypeError(f"{func}: expected a scipy.sparse matrix, got {type(x).__name__}")
    if len(x.shape) != 2:
        raise ValueError(f"{func}: sparse input must be 2-D, got shape {x.shape}")
    nrows, ncols = (int(x.shape[1]), int(x.shape[0])) if columns else map(int, x.shape)
    want = "csc" if columns else "csr"
    other = "csr" if columns else "csc"
    if x.format == want:
        indptr, indices, data = _checked(x.indptr, x.indices, x.data, nrows, ncols, func)
    elif x.format == other:  # the transpose of its compressed arrays, re-sorted
        indptr, indices, data = _checked(x.indptr, x.indices, x.data, ncols, nrows, func)
        _check_indices(indptr, indices, nrows, func)  # before any index is used
        indptr, indices, data = K.transpose(indptr, indices, _kernel_data(data, func), nrows)
        return _finish(indptr, indices, data, (nrows, ncols), x.dtype, canonical=False,
                       sorted_rows=True)  # fmt: skip
    else:
        if x.format == "coo":
            _check_coo(x, func)
        y = x.tocsc() if columns else x.tocsr()
        indptr, indices, data = _checked(y.indptr, y.indices, y.data, nrows, ncols, func)
    code = _check_indices(indptr, indices, ncols, func)
    return _finish(indptr, indices, _kernel_data(data, func), (nrows, ncols), x.dtype,
                   canonical=code == K.CANONICAL)  # fmt: skip


def _finish(indptr, indices, data, shape, dtype, canonical, sorted_rows=False):
    if not canonical:  # two stable counting sorts (unless sorted), then merge equal columns
        if not sorted_rows:
            t = K.transpose(indptr, indices, data, shape[1])
            indptr, indices, data = K.transpose(*t, shape[0])
        indptr, indices, data = K.sum_duplicates(indptr, indices, data)
        if dtype == np.bool_:
            data = (data != 0).view(np.uint8)  # True + True is True in toarray
    return CSR(indptr, indices, data, shape, np.dtype(dtype))


def _kernel_data(data: np.ndarray, func: str) -> np.ndarray:
    kind = data.dtype.kind
    if kind not in "biuf":
        raise TypeError(
            f"{func}: unsupported sparse dtype {data.dtype}; pass real data "
            "(bool, integers, float32 or float64)"
        )
    if not data.dtype.isnative:
        data = data.astype(data.dtype.newbyteorder("="))
    if kind == "b":
        return data.view(np.uint8)
    if data.dtype == np.float16:
        return data.astype(np.float32)
    if data.dtype.itemsize > 8:
        raise TypeError(f"{func}: unsupported sparse dtype {data.dtype}; use float64")
    return data


def _as_index(a: Any, what: str, func: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 1 or a.dtype.kind not in "iu":
        raise ValueError(f"{func}: malformed sparse matrix: {what} must be a 1-D integer array")
    if a.dtype not in _INDEX_TYPES or not a.dtype.isnative:
        if a.size and (a.dtype.kind == "u" and int(a.max()) > np.iinfo(np.int64).max):
            raise ValueError(f"{func}: malformed sparse matrix: {what} has values beyond int64")
        a = a.astype(np.int64)
    return a


def _checked(indptr, indices, data, nrows, ncols, func):
    """Lengths and ``indptr`` checked; returns the three arrays."""
    indptr = _as_index(indptr, "indptr", func)
    indices = _as_index(indices, "indices", func)
    data = np.asarray(data)
    if data.ndim != 1:
        raise ValueError(f"{func}: malformed sparse matrix: data must be 1-D")
    if indptr.shape[0] != nrows + 1:
        raise ValueError(
            f"{func}: malformed sparse matrix: indptr has {indptr.shape[0]} entries, "
            f"expected {nrows + 1} (rows + 1)"
        )
    if indices.shape[0] != data.shape[0]:
        raise ValueError(
            f"{func}: malformed sparse matrix: {indices.shape[0]} indices but "
            f"{data.shape[0]} data values; they must have the same length"
        )
    code, pos = K.indptr_problem(indptr, indices.shape[0])
    if code == K.BAD_START:
        raise ValueError(f"{func}: malformed sparse matrix: indptr[0] must be 0")
    if code == K.DECREASING:
        raise ValueError(
            f"{func}: malformed sparse matrix: indptr decreases at position {pos} "
            f"({int(indptr[pos - 1])} then {int(indptr[pos])}); it must be non-decreasing"
        )
    if code == K.BAD_END:
        raise ValueError(
            f"{func}: malformed sparse matrix: indptr[-1] = {int(indptr[-1])} but there "
            f"are {indices.shape[0]} stored entries; they must be equal"
        )
    return indptr, indices, data


def _check_indices(indptr, indices, ncols, func) -> int:
    nrows = indptr.shape[0] - 1
    code, where = K.CANONICAL, -1
    if indices.shape[0]:
        with parallel_guard(indices.shape[0] + nrows) as par:
            if par:
                bounds = K.entry_chunks(indptr, n_chunks(nrows))
                code, where = K.check_parallel(indptr, indices, ncols, bounds)
            else:
                code, where = K.check_serial(indptr, indices, ncols)
    if code == K.BAD_INDEX:
        raise ValueError(
            f"{func}: malformed sparse matrix: stored entry {int(where)} has index "
            f"{int(indices[where])}, outside [0, {ncols})"
        )
    return int(code)


def _check_coo(x, func):
    for name, coord, size in (("row", x.coords[0], x.shape[0]), ("col", x.coords[1], x.shape[1])):
        if coord.size and (int(coord.min()) < 0 or int(coord.max()) >= size):
            raise ValueError(
                f"{func}: malformed sparse matrix: a COO {name} index is outside [0, {size})"
            )


def _launch(serial, parallel, m: CSR, row_cost: int, *args):
    """Run a row kernel serially, or in parallel on chunks of equal work
    (stored entries plus ``row_cost`` per row)."""
    nrows = m.shape[0]
    with parallel_guard(m.indices.shape[0] + row_cost * nrows) as par:
        if par and nrows > 1:
            parallel(*args, K.entry_chunks(m.indptr, n_chunks(nrows), row_cost))
        else:
            serial(*args)


# --- top_k / entropy on sparse input ----------------------------------------------


def canonical_result(like: Any, indptr, indices, data, shape) -> Any:
    """A canonical CSR result: ``csr_matrix`` when ``like`` is one of SciPy's
    matrix classes, else ``csr_array``; flagged canonical (no re-check)."""
    import scipy.sparse as sp

    cls = sp.csr_matrix if isinstance(like, sp.spmatrix) else sp.csr_array
    out = cls((data, indices, indptr), shape=shape)
    out.has_canonical_format = True
    return out


def sparse_top_k(x, k, axis, largest, sort, explicit, fmt, check_k):
    """``top_k`` of a sparse matrix; ``axis`` already normalized to 0 or 1."""
    func = "top_k"
    columns = axis == 0
    m = as_csr(x, func, columns=columns)
    nrows, ncols = m.shape
    k = check_k(k, ncols, func)
    vals = np.empty((nrows, k), m.data.dtype)
    idxs = np.empty((nrows, k), np.intp)
    if nrows and k:
        keys = m.data.dtype == np.float32 and k <= KEYS_MAX_K
        args = (m.indptr, m.indices, m.data.reshape(1, -1), ncols, k, largest, sort,
                bool(explicit), keys)  # fmt: skip
        _launch(K.topk_serial, K.topk_parallel, m, K.TOPK_ROW_COST, *args, vals, idxs)
    if m.dtype == np.bool_:
        vals = vals.view(np.bool_)
    elif vals.dtype != m.dtype:  # float16 data was widened: narrow back (exact)
        vals = vals.astype(m.dtype)
    if fmt == "csr":
        return _pruned(x, vals, idxs, m, columns)
    if columns:
        return np.ascontiguousarray(vals.T), np.ascontiguousarray(idxs.T)
    return vals, idxs


def _pruned(x, vals, idxs, m, columns):
    indptr, indices, data = K.topk_to_csr(vals, idxs, m.indices[:0])
    if columns:  # kept entries of each column -> rows of the CSR result
        indptr, indices, data = K.transpose(indptr, indices, data, m.shape[1])
        shape = (m.shape[1], m.shape[0])
    else:
        shape = m.shape
    return canonical_result(x, indptr, indices, data, shape)


def sparse_entropy(x, axis, normalize, logits, func):
    """Row (``axis=1``) or column (``axis=0``) entropies of a sparse matrix."""
    m = as_csr(x, func, columns=axis == 0)
    nrows, ncols = m.shape
    out = np.empty(nrows, np.float64)
    status = np.zeros(nrows, np.uint8)
    if nrows:
        args = (m.indptr, m.data.reshape(1, -1), ncols, bool(normalize), logits)
        _launch(K.entropy_serial, K.entropy_parallel, m, K.ENTROPY_ROW_COST, *args, out, status)
    return out, status, m.dtype


__all__ = ["CSR", "as_csr", "canonical_result", "is_sparse", "sparse_entropy", "sparse_top_k"]
