"""What the arrays of each SciPy sparse format mean, read with plain Python
loops: the oracle of the sparse fuzzer (``fuzz_sparse.py``).

``dense_of(A)`` returns ``(dense, stored)``: ``A.toarray()`` computed from
the raw arrays (duplicates summed in storage order starting from 0, in the
data dtype, as SciPy's ``toarray`` does) and the set of stored ``(row,
col)`` positions; or raises ``Malformed`` (a rule below is broken: fastroute
must raise ``ValueError``) or ``Unsupported`` (a dtype fastroute does not
take: ``TypeError``). The rules are those of a well-formed matrix:

* shape: two integers in ``[0, 2**62)``; data dtype bool, integer or
  float32/float64 (float16, complex and object are unsupported);
* CSR/CSC: 1-D integer ``indptr`` of ``major + 1`` entries, starting at 0,
  non-decreasing, ending at ``nnz``; 1-D integer ``indices`` in
  ``[0, minor)``; 1-D ``data``; ``len(indices) == len(data) == nnz``;
* COO: two 1-D integer coordinate arrays and 1-D data of one length, in range;
* BSR: 3-D data ``(blocks, R, C)``, ``R, C >= 1`` dividing the shape; CSR
  rules over block rows and block columns;
* DIA: 2-D data ``(offsets, L)``, 1-D integer offsets without duplicates;
  entry ``(j - offset, j)`` for ``j < min(L, ncols)`` when in range; zeros
  are not stored (as ``tocoo``);
* LIL: ``rows`` and ``data`` of ``nrows`` lists, pairwise of one length,
  integer columns in range;
* DOK: keys ``(row, col)`` integer pairs in range;
* LIL and DOK values: each converts to the matrix's dtype as
  ``np.array([v], dtype)`` does, without a floating-point error (NaN into
  an integer dtype, an overflow).
"""

from __future__ import annotations

import operator

import numpy as np


class Malformed(Exception):
    """The matrix breaks a format rule."""


class Unsupported(Exception):
    """The data dtype is not one fastroute takes for sparse input."""


def _int_array(a, what: str) -> list[int]:
    a = np.asarray(a)
    if a.ndim != 1 or a.dtype.kind not in "iu":
        raise Malformed(f"{what} must be a 1-D integer array")
    return [int(v) for v in a]


def _data(a) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 1:
        raise Malformed("data must be 1-D")
    return a


def _check_dtype(dtype) -> np.dtype:
    dt = np.dtype(dtype)
    if dt.kind not in "biuf" or dt.itemsize > 8 or dt == np.float16:
        raise Unsupported(str(dt))
    return dt


def _shape(A) -> tuple[int, int]:
    shape = tuple(A.shape)
    if len(shape) != 2:
        raise Malformed("not 2-D")
    out = []
    for n in shape:
        if isinstance(n, (bool, np.bool_)):
            raise Malformed("shape")
        try:
            n = operator.index(n)
        except TypeError:
            raise Malformed("shape") from None
        if not 0 <= n < 2**62:
            raise Malformed("shape")
        out.append(n)
    return out[0], out[1]


def _value(v, dt):
    try:
        with np.errstate(all="raise"):
            return np.array([v], dtype=dt)[0]
    except (TypeError, ValueError, OverflowError, FloatingPointError):
        raise Malformed("value") from None


def _compressed(indptr, indices, data, nmajor, nminor):
    """(major, minor, value) triples of CSR-like arrays, in storage order."""
    ptr = _int_array(indptr, "indptr")
    ind = _int_array(indices, "indices")
    if len(ptr) != nmajor + 1 or len(ind) != len(data):
        raise Malformed("lengths")
    if ptr[0] != 0 or ptr[-1] != len(ind) or any(b < a for a, b in zip(ptr, ptr[1:], strict=False)):
        raise Malformed("indptr")
    out = []
    for r in range(nmajor):
        for p in range(ptr[r], ptr[r + 1]):
            if not 0 <= ind[p] < nminor:
                raise Malformed("index")
            out.append((r, ind[p], p))
    return out


def _entries(A, shape):
    """(row, col, value) of every stored entry in storage order, and the dtype."""
    nrows, ncols = shape
    fmt = A.format
    if fmt in ("csr", "csc"):
        data = _data(A.data)
        dt = _check_dtype(data.dtype)
        major, minor = (nrows, ncols) if fmt == "csr" else (ncols, nrows)
        trip = _compressed(A.indptr, A.indices, data, major, minor)
        if fmt == "csr":
            return [(r, c, data[p]) for r, c, p in trip], dt
        return [(r, c, data[p]) for c, r, p in trip], dt
    if fmt == "coo":
        data = _data(A.data)
        dt = _check_dtype(data.dtype)
        if len(A.coords) != 2:
            raise Malformed("coords")
        row = _int_array(A.coords[0], "row")
        col = _int_array(A.coords[1], "col")
        if not len(row) == len(col) == len(data):
            raise Malformed("lengths")
        for r, c in zip(row, col, strict=False):
            if not (0 <= r < nrows and 0 <= c < ncols):
                raise Malformed("coords")
        return [(r, c, data[p]) for p, (r, c) in enumerate(zip(row, col, strict=False))], dt
    if fmt == "bsr":
        data = np.asarray(A.data)
        dt = _check_dtype(data.dtype)
        if data.ndim != 3:
            raise Malformed("bsr data")
        _, R, C = data.shape
        if R < 1 or C < 1 or nrows % R or ncols % C:
            raise Malformed("blocksize")
        trip = _compressed(A.indptr, A.indices, data, nrows // R, ncols // C)
        out = []
        for br, bc, p in trip:
            for a in range(R):
                for b in range(C):
                    out.append((br * R + a, bc * C + b, data[p, a, b]))
        return out, dt
    if fmt == "dia":
        data = np.asarray(A.data)
        dt = _check_dtype(data.dtype)
        offsets = _int_array(np.asarray(A.offsets).reshape(-1), "offsets")
        if data.ndim != 2 or data.shape[0] != len(offsets) or len(set(offsets)) != len(offsets):
            raise Malformed("dia")
        out = []
        for d, off in enumerate(offsets):
            for j in range(min(data.shape[1], ncols)):
                i = j - off
                if 0 <= i < nrows and data[d, j] != 0:
                    out.append((i, j, data[d, j]))
        return out, dt
    if fmt == "lil":
        dt = _check_dtype(A.dtype)
        try:
            rows, vals = list(A.rows), list(A.data)
            if len(rows) != nrows or len(vals) != nrows:
                raise Malformed("lil rows")
            out = []
            for r in range(nrows):
                if len(rows[r]) != len(vals[r]):
                    raise Malformed("lil row")
                for c, v in zip(rows[r], vals[r], strict=False):
                    if not isinstance(c, (int, np.integer)) or isinstance(c, (bool, np.bool_)):
                        raise Malformed("lil col")
                    if not 0 <= int(c) < ncols:
                        raise Malformed("lil col")
                    out.append((r, int(c), _value(v, dt)))
        except (TypeError, ValueError, OverflowError):
            raise Malformed("lil") from None
        return out, dt
    if fmt == "dok":
        dt = _check_dtype(A.dtype)
        out = []
        for key, v in A.items():
            if not (isinstance(key, tuple) and len(key) == 2):
                raise Malformed("dok key")
            r, c = key
            for i in (r, c):
                if not isinstance(i, (int, np.integer)) or isinstance(i, (bool, np.bool_)):
                    raise Malformed("dok key")
            if not (0 <= r < nrows and 0 <= c < ncols):
                raise Malformed("dok key")
            out.append((int(r), int(c), _value(v, dt)))
        return out, dt
    raise Unsupported(fmt)


def dense_of(A) -> tuple[np.ndarray, set[tuple[int, int]]]:
    """``(A.toarray(), stored positions)`` from the raw arrays; see the module doc."""
    try:
        dt = _check_dtype(A.dtype)
    except (AttributeError, TypeError):
        raise Malformed("dtype") from None
    shape = _shape(A)
    entries, dt = _entries(A, shape)
    if shape[0] * shape[1] > 10**7:  # a fuzzed shape: no dense form here
        raise OverflowError("too large to densify")
    dense = np.zeros(shape, dt)
    with np.errstate(over="ignore", invalid="ignore"):
        for r, c, v in entries:
            dense[r, c] = dense[r, c] + v  # 0 + d1 + d2 ..., in the data dtype
    return dense, {(r, c) for r, c, _ in entries}
