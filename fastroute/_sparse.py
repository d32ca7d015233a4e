"""SciPy sparse input: checked CSR views and the sparse ``top_k``/``entropy``.

SciPy is imported only when a sparse matrix is actually passed in.
"""

from __future__ import annotations

import operator
from typing import Any, NamedTuple

import numpy as np

from ._execute import run, run_csr
from ._validate import check_alloc
from .kernels import csr as K
from .kernels._fast import KEYS_MAX_K
from .kernels.entropy32 import csr_rows
from .kernels.select import INSERTION_MAX_K

_INDEX_TYPES = (np.dtype(np.int32), np.dtype(np.int64))


def is_sparse(x: Any) -> bool:
    """True for a SciPy sparse array or matrix (without importing SciPy)."""
    return type(x).__module__.startswith("scipy.sparse") and hasattr(x, "format")


class CSR(NamedTuple):
    """Checked, canonical CSR arrays (sorted, unique column indices per row).

    ``data`` has a dtype the kernels take (bool is viewed as uint8);
    ``dtype`` is the caller's.
    """

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    shape: tuple[int, int]
    dtype: np.dtype


def as_csr(x: Any, func: str, *, columns: bool = False) -> CSR:
    """Canonical CSR arrays of ``x`` (of ``x.T`` when ``columns``), checked.

    Every format's arrays are checked before anything indexes with them
    (SciPy's compiled conversions do no bounds checking, so a malformed BSR,
    COO, DIA, LIL or DOK matrix handed to ``tocsr()`` can crash the process);
    the conversion itself is fastroute's own. The caller's matrix is never
    modified; a copy is made only when ``x`` is not CSR (CSC for
    ``columns``) or its rows are not canonical.
    """
    if not is_sparse(x):
        raise TypeError(f"{func}: expected a scipy.sparse matrix, got {type(x).__name__}")
    shape = shape_of(x, func)
    nrows, ncols = shape[::-1] if columns else shape
    _kernel_data(np.empty(0, _declared_dtype(x, func)), func)  # a TypeError before any work
    fmt = x.format
    if fmt in ("csr", "csc"):
        same = (fmt == "csr") != columns  # compressed along the rows we want
        nmajor, nminor = (nrows, ncols) if same else (ncols, nrows)
        data = _data_1d(x.data, func)
        indptr, indices = _checked(x.indptr, x.indices, data, nmajor, func)
        code = _check_indices(indptr, indices, nminor, func)
        dtype, data = data.dtype, _kernel_data(data, func)
        if same:
            return _finish(indptr, indices, data, (nrows, ncols), dtype,
                           canonical=code == K.CANONICAL)  # fmt: skip
        check_alloc(24 * (nrows + 1), f"a CSR form with {nrows} rows", func)
        indptr, indices, data = K.transpose(indptr, indices, data, nrows)  # sorted rows
        return _finish(indptr, indices, data, (nrows, ncols), dtype, canonical=False,
                       sorted_rows=True)  # fmt: skip
    check_alloc(24 * (nrows + 1), f"a CSR form with {nrows} rows", func)
    row, col, data, index_dtype = _coo_arrays(x, fmt, shape, func)
    if columns:
        row, col = col, row
    return _from_coo(row, col, data, (nrows, ncols), func, index_dtype)


def shape_of(x: Any, func: str) -> tuple[int, int]:
    try:
        shape = tuple(x.shape)
    except Exception:
        raise ValueError(f"{func}: malformed sparse matrix: it has no valid shape") from None
    if len(shape) != 2:
        raise ValueError(f"{func}: sparse input must be 2-D, got shape {shape}")
    out = []
    for n in shape:
        try:
            if isinstance(n, (bool, np.bool_)):
                raise TypeError
            n = operator.index(n)
        except TypeError:
            raise ValueError(
                f"{func}: malformed sparse matrix: its shape {shape} must be two integers"
            ) from None
        if not 0 <= n < 2**62:
            raise ValueError(
                f"{func}: malformed sparse matrix: shape {shape}; each dimension must be in "
                "[0, 2**62)"
            )
        out.append(n)
    return out[0], out[1]


def _declared_dtype(x: Any, func: str) -> np.dtype:
    try:
        return np.dtype(x.dtype)
    except Exception:
        raise _malformed(func, "it has no valid dtype") from None


def _finish(indptr, indices, data, shape, dtype, canonical, sorted_rows=False):
    """The CSR of checked arrays, canonicalized into private copies unless
    ``canonical``: rows sorted stably (unless ``sorted_rows``), then equal
    columns merged, in storage order."""
    if not canonical:
        if not sorted_rows:
            indptr, indices, data = _sort_rows(indptr, indices, data, shape[1])
        indptr, indices, data = K.sum_duplicates(indptr, indices, data)
        if dtype == np.bool_:
            data = (data != 0).view(np.uint8)  # True + True is True in toarray
    return CSR(indptr, indices, data, shape, np.dtype(dtype).newbyteorder("="))


def counting_sort_ok(ncols: int, nnz: int, nrows: int) -> bool:
    """Whether one counter per column is affordable: the columns are not
    many more than the stored entries and rows (else sort per row)."""
    return ncols <= 2 * (nnz + nrows) + 4096


def _sort_rows(indptr, indices, data, ncols):
    """Rows sorted by column, stably, as new arrays."""
    nrows = indptr.shape[0] - 1
    if counting_sort_ok(ncols, indices.shape[0], nrows):  # two stable counting sorts
        t = K.transpose(indptr, indices, data, ncols)
        return K.transpose(*t, nrows)
    indices, data = indices.copy(), data.copy()
    K.sort_rows(indptr, indices, data)
    return indptr, indices, data


def _from_coo(row, col, data, shape, func, index_dtype=np.int32) -> CSR:
    """Canonical CSR of checked coordinates (storage order kept for
    duplicates), with ``index_dtype`` indices if they fit (else int64)."""
    nrows, ncols = shape
    nnz = data.shape[0]
    it = index_dtype if max(nnz, nrows, ncols) < 2**31 else np.int64
    row, col = row.astype(it, copy=False), col.astype(it, copy=False)
    dtype = data.dtype
    data = _kernel_data(data, func)
    if counting_sort_ok(ncols, nnz, nrows):  # by column, then stably by row
        indptr, indices, data = K.group_rows(col, row, data, ncols)
        indptr, indices, data = K.transpose(indptr, indices, data, nrows)
    else:
        indptr, indices, data = K.group_rows(row, col, data, nrows)
        K.sort_rows(indptr, indices, data)
    return _finish(indptr, indices, data, shape, dtype, canonical=False, sorted_rows=True)


def _kernel_data(data: np.ndarray, func: str) -> np.ndarray:
    kind = data.dtype.kind
    if kind not in "biuf" or data.dtype.itemsize > 8:
        raise TypeError(
            f"{func}: unsupported sparse dtype {data.dtype}; pass real data "
            "(bool, integers, float32 or float64)"
        )
    if data.dtype == np.float16:
        raise TypeError(
            f"{func}: float16 sparse data is not supported (SciPy's sparse formats do not "
            "support it either); convert it with A.astype(np.float32), which is exact"
        )
    if not data.dtype.isnative:
        data = data.astype(data.dtype.newbyteorder("="))
    if kind == "b":
        return data.view(np.uint8)
    return data


def _malformed(func: str, what: str) -> ValueError:
    return ValueError(f"{func}: malformed sparse matrix: {what}")


def _data_1d(data: Any, func: str) -> np.ndarray:
    data = np.asarray(data)
    if data.ndim != 1:
        raise _malformed(func, f"data must be 1-D, got {data.ndim} dimensions")
    return data


def _as_index(a: Any, what: str, func: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 1 or a.dtype.kind not in "iu":
        raise _malformed(func, f"{what} must be a 1-D integer array")
    if a.dtype not in _INDEX_TYPES or not a.dtype.isnative:
        if a.size and (a.dtype.kind == "u" and int(a.max()) > np.iinfo(np.int64).max):
            raise _malformed(func, f"{what} has values beyond int64")
        a = a.astype(np.int64)
    return a


def _checked(indptr, indices, data, nmajor, func):
    """``indptr`` and ``indices`` as index arrays, ``indptr`` checked against
    ``nmajor`` rows and the entries of ``data`` (its length)."""
    indptr = _as_index(indptr, "indptr", func)
    indices = _as_index(indices, "indices", func)
    if indptr.shape[0] != nmajor + 1:
        raise _malformed(
            func, f"indptr has {indptr.shape[0]} entries, expected {nmajor + 1} (rows + 1)"
        )
    if indices.shape[0] != data.shape[0]:
        raise _malformed(
            func, f"{indices.shape[0]} indices but {data.shape[0]} data values; they must "
            "have the same length"
        )  # fmt: skip
    code, pos = K.indptr_problem(indptr, indices.shape[0])
    if code == K.BAD_START:
        raise _malformed(func, "indptr[0] must be 0")
    if code == K.DECREASING:
        raise _malformed(
            func, f"indptr decreases at position {pos} ({int(indptr[pos - 1])} then "
            f"{int(indptr[pos])}); it must be non-decreasing"
        )  # fmt: skip
    if code == K.BAD_END:
        raise _malformed(
            func, f"indptr[-1] = {int(indptr[-1])} but there are {indices.shape[0]} stored "
            "entries; they must be equal"
        )  # fmt: skip
    return indptr, indices


def _check_indices(indptr, indices, ncols, func, what="index") -> int:
    code, where = K.CANONICAL, -1
    if indices.shape[0]:
        for c, w in run_csr(K.check_rows, (indptr, indices, ncols), indptr, K.ROW_COST):
            if c == K.BAD_INDEX:  # the first bad entry in storage order
                code, where = c, w
                break
            code = max(code, c)
    if code == K.BAD_INDEX:
        raise _malformed(
            func, f"stored entry {int(where)} has {what} {int(indices[where])}, outside "
            f"[0, {ncols})"
        )  # fmt: skip
    return int(code)


def _check_range(a: np.ndarray, n: int, what: str, func: str) -> None:
    if a.size and (int(a.min()) < 0 or int(a.max()) >= n):
        p = int(np.flatnonzero((a < 0) | (a >= n))[0])
        raise _malformed(func, f"entry {p} has {what} {int(a[p])}, outside [0, {n})")


# --- the other formats as checked coordinates ----------------------------------------


def _coo_arrays(x: Any, fmt: str, shape: tuple[int, int], func: str):
    """``(row, col, data, index_dtype)`` of a BSR, COO, DIA, LIL or DOK
    matrix: its entries in storage order, every index checked against
    ``shape``, and the index dtype to keep (the caller's where the format
    has one: fewer kernel compilations)."""
    reader = _READERS.get(fmt)
    if reader is None:
        raise TypeError(f"{func}: unsupported sparse format {fmt!r}; convert it to CSR first")
    return reader(x, shape, func)


def _coo_of_coo(x, shape, func):
    coords = getattr(x, "coords", None)
    if coords is None:  # SciPy < 1.13
        coords = (x.row, x.col)
    if len(coords) != 2:
        raise _malformed(func, f"a 2-D COO matrix needs 2 coordinate arrays, got {len(coords)}")
    row = _as_index(coords[0], "COO row indices", func)
    col = _as_index(coords[1], "COO column indices", func)
    data = _data_1d(x.data, func)
    if not row.shape[0] == col.shape[0] == data.shape[0]:
        raise _malformed(
            func, f"COO has {row.shape[0]} row indices, {col.shape[0]} column indices and "
            f"{data.shape[0]} values; they must have the same length"
        )  # fmt: skip
    _check_range(row, shape[0], "row index", func)
    _check_range(col, shape[1], "column index", func)
    it = np.int64 if np.int64 in (row.dtype, col.dtype) else np.int32
    return row, col, data, it


def _coo_of_bsr(x, shape, func):
    data = np.asarray(x.data)
    if data.ndim != 3:
        raise _malformed(func, f"BSR data must be 3-D (blocks, R, C), got {data.ndim}-D")
    nblocks, R, C = data.shape
    if R < 1 or C < 1 or shape[0] % R or shape[1] % C:
        raise _malformed(func, f"BSR blocks of {R} x {C} do not tile the shape {shape}")
    indptr, indices = _checked(x.indptr, x.indices, data, shape[0] // R, func)
    _check_indices(indptr, indices, shape[1] // C, func, "block column index")
    brow = np.repeat(np.arange(shape[0] // R, dtype=np.int64), np.diff(indptr))
    row = (brow * R)[:, None, None] + np.arange(R)[None, :, None]
    col = (indices.astype(np.int64) * C)[:, None, None] + np.arange(C)[None, None, :]
    row = np.broadcast_to(row, data.shape).reshape(-1)
    col = np.broadcast_to(col, data.shape).reshape(-1)
    return row, col, data.reshape(-1), indices.dtype


def _coo_of_dia(x, shape, func):
    data = np.asarray(x.data)
    offsets = _as_index(np.asarray(x.offsets).reshape(-1), "DIA offsets", func)
    if data.ndim != 2 or data.shape[0] != offsets.shape[0]:
        raise _malformed(
            func, f"DIA data has shape {data.shape} for {offsets.shape[0]} offsets; it "
            "must be (offsets, length)"
        )  # fmt: skip
    if np.unique(offsets).shape[0] != offsets.shape[0]:
        raise _malformed(func, "DIA offsets contain duplicate values")
    nrows, ncols = shape
    width = min(data.shape[1], ncols)
    off = np.clip(offsets.astype(np.int64), -nrows, ncols)  # outside: an empty diagonal
    col = np.broadcast_to(np.arange(width, dtype=np.int64), (data.shape[0], width))
    row = col - off[:, None]
    vals = data[:, :width]
    keep = (row >= 0) & (row < nrows) & (vals != 0)  # as SciPy's tocoo: no zeros
    return row[keep], col[keep], vals[keep], np.int32


def _coo_of_lil(x, shape, func):
    rows, vals = x.rows, x.data
    nrows = shape[0]
    try:
        if len(rows) != nrows or len(vals) != nrows:
            raise _malformed(
                func, f"LIL rows/data hold {len(rows)}/{len(vals)} lists for {nrows} rows"
            )
        n = np.fromiter(map(len, rows), np.int64, nrows)
        nv = np.fromiter(map(len, vals), np.int64, nrows)
    except TypeError:
        raise _malformed(func, "LIL rows and data must be sequences of lists") from None
    if (n != nv).any():
        r = int(np.flatnonzero(n != nv)[0])
        raise _malformed(func, f"LIL row {r} has {n[r]} column indices but {nv[r]} values")
    try:
        col = np.array([c for r in rows for c in r])
    except (TypeError, ValueError, OverflowError):
        raise _malformed(func, "LIL column indices must be integers") from None
    data = _values([v for r in vals for v in r], x.dtype, "LIL", func)
    if col.size == 0:
        col = col.astype(np.int64)
    col = _as_index(col, "LIL column indices", func)
    _check_range(col, shape[1], "column index", func)
    return np.repeat(np.arange(nrows, dtype=np.int64), n), col, _data_1d(data, func), np.int32


def _values(values: list, dtype: np.dtype, fmt: str, func: str) -> np.ndarray:
    """The values of a LIL or DOK matrix as ``np.array(values, dtype)``."""
    try:
        with np.errstate(all="raise"):
            return np.array(values, dtype=dtype)
    except (TypeError, ValueError, OverflowError, FloatingPointError):
        raise _malformed(
            func, f"the {fmt} values do not all convert to its dtype {dtype}"
        ) from None


def _coo_of_dok(x, shape, func):
    items = list(x.items())
    try:
        keys = np.array([key for key, _ in items]) if items else np.empty((0, 2), np.int64)
    except (TypeError, ValueError, OverflowError):
        raise _malformed(func, "DOK keys must be (row, column) integer pairs") from None
    data = _values([v for _, v in items], x.dtype, "DOK", func)
    if keys.ndim != 2 or keys.shape[1] != 2:
        raise _malformed(func, "DOK keys must be (row, column) integer pairs")
    row = _as_index(keys[:, 0].copy(), "DOK row indices", func)
    col = _as_index(keys[:, 1].copy(), "DOK column indices", func)
    _check_range(row, shape[0], "row index", func)
    _check_range(col, shape[1], "column index", func)
    return row, col, _data_1d(data, func), np.int32


_READERS = {
    "coo": _coo_of_coo, "bsr": _coo_of_bsr, "dia": _coo_of_dia, "lil": _coo_of_lil,
    "dok": _coo_of_dok,
}  # fmt: skip


# --- top_k / entropy on sparse input ----------------------------------------------


def canonical_result(like: Any, indptr, indices, data, shape) -> Any:
    """A canonical CSR result: ``csr_matrix`` when ``like`` is one of SciPy's
    matrix classes, else ``csr_array``; flagged canonical (no re-check)."""
    import scipy.sparse as sp

    cls = sp.csr_matrix if isinstance(like, sp.spmatrix) else sp.csr_array
    if max(*shape, indices.shape[0]) >= 2**31 and indices.dtype != np.int64:
        indptr, indices = indptr.astype(np.int64), indices.astype(np.int64)  # SciPy needs it
    out = cls((data, indices, indptr), shape=shape)
    out.has_canonical_format = True
    return out


def sparse_top_k(x, k, axis, largest, sort, explicit, fmt, check_k):
    """``top_k`` of a sparse matrix; ``axis`` already normalized to 0 or 1."""
    func = "top_k"
    columns = axis == 0
    if not is_sparse(x):
        raise TypeError(f"{func}: expected a scipy.sparse matrix, got {type(x).__name__}")
    nrows, ncols = shape_of(x, func)[::-1] if columns else shape_of(x, func)
    k = check_k(k, ncols, func)  # and the size of the result, before any work
    check_alloc(nrows * k * 16, f"the top {k} of {nrows} rows", func)
    m = as_csr(x, func, columns=columns)
    vals = np.empty((nrows, k), m.data.dtype)
    idxs = np.empty((nrows, k), np.intp)
    if nrows and k:
        keys = m.data.dtype == np.float32 and k <= KEYS_MAX_K
        d2 = m.data.reshape(1, -1)
        explicit_rows, dense_rows = K.topk_kernels(k > INSERTION_MAX_K, keys)
        if explicit or fmt == "csr":  # csr: pruned from the explicit ranking
            args = (m.indptr, m.indices, d2, k, largest, sort or fmt == "csr", vals, idxs)
            run_csr(explicit_rows, args, m.indptr, K.TOPK_ROW_COST)
        else:
            args = (m.indptr, m.indices, d2, ncols, k, largest, vals, idxs)
            run_csr(dense_rows, args, m.indptr, K.TOPK_ROW_COST)
    if m.dtype == np.bool_:
        vals = vals.view(np.bool_)
    if fmt == "csr":
        return _pruned(x, vals, idxs, m, columns, not explicit, largest)
    if columns:
        return np.ascontiguousarray(vals.T), np.ascontiguousarray(idxs.T)
    return vals, idxs


def _pruned(x, vals, idxs, m, columns, implicit, largest):
    # the pairs each row keeps, their offsets, then the pairs (columns
    # ascending; zeros dropped)
    n = vals.shape[0]
    indptr = np.zeros(n + 1, m.indices.dtype)
    run(K.kept_counts, (vals, idxs, m.indptr, m.shape[1], implicit, largest, indptr), n, vals.size)
    indices, data = K.pruned_storage(indptr, vals)
    run(K.kept_pairs, (vals, idxs, indptr, indices, data), n, vals.size)
    if columns:  # kept entries of each column -> rows of the CSR result
        indptr, indices, data = K.transpose(indptr, indices, data, m.shape[1])
        shape = (m.shape[1], m.shape[0])
    else:
        shape = m.shape
    return canonical_result(x, indptr, indices, data, shape)


def _exact(m: CSR, exact: np.ndarray, args: tuple) -> None:
    # the exact kernel over the rows marked EXACT (usually a few
    # near-deterministic rows): in chunks of their rows' work
    lo, hi = int(exact[0]), int(exact[-1]) + 1
    ip = m.indptr[lo : hi + 1] - m.indptr[lo]
    indptr, data2d, normalize, out, status = args
    sub = (m.indptr[lo:], data2d, normalize, out[lo:hi], status[lo:hi])
    run_csr(K.exact_rows, sub, ip, K.ENTROPY_ROW_COST)


def sparse_entropy(x, axis, normalize, logits, func):
    """Row (``axis=1``) or column (``axis=0``) entropies of a sparse matrix."""
    m = as_csr(x, func, columns=axis == 0)
    nrows, ncols = m.shape
    out = np.empty(nrows, np.float64)
    status = np.zeros(nrows, np.uint8)
    if nrows:
        d2 = m.data.reshape(1, -1)
        cost = K.ENTROPY_ROW_COST
        if logits:
            run_csr(K.logits_rows, (m.indptr, d2, ncols, out), m.indptr, cost)
        else:
            args = (m.indptr, d2, bool(normalize), out, status)
            f32 = m.data.dtype == np.float32  # the float32-log kernel
            run_csr(csr_rows if f32 else K.entropy_rows, args, m.indptr, cost)
            exact = np.flatnonzero(status == K.EXACT)
            if exact.size:  # the exact kernel, compiled only when needed
                _exact(m, exact, args)
    return out, status, m.dtype


__all__ = [
    "CSR",
    "as_csr",
    "canonical_result",
    "counting_sort_ok",
    "is_sparse",
    "sparse_entropy",
    "sparse_top_k",
]
