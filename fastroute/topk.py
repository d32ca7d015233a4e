"""``fastroute.top_k``: the k largest or smallest entries along an axis."""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import numpy as np

from ._dtypes import FAST_DTYPES, HALF, SINGLE, half_array, real_array
from ._execute import min_work, run
from ._sparse import is_sparse, sparse_top_k
from ._validate import (
    check_axis,
    check_choice,
    check_k,
    rows_view,
)
from .kernels._fast import KEYS_MAX_K, KEYS_MAX_N, topk_keys_rows
from .kernels.select import INSERTION_MAX_K, heap_rows, insertion_rows

__all__ = ["TopK", "top_k"]


class TopK(NamedTuple):
    """Result of :func:`top_k`: ``values`` (input dtype) and ``indices`` (``np.intp``)."""

    values: np.ndarray
    indices: np.ndarray


def top_k(
    x: Any,
    k: int,
    /,
    *,
    axis: int = -1,
    mode: Literal["largest", "smallest"] = "largest",
    sorted: bool = True,
    explicit: bool = False,
    format: Literal["dense", "csr"] = "dense",
) -> Any:
    """The ``k`` largest (or smallest) entries of ``x`` along ``axis``.

    Same signature and meaning as ``numpy.top_k`` (array API), with a fully
    specified, deterministic order.

    Parameters
    ----------
    x : array_like or scipy.sparse matrix
        Anything ``np.asarray`` accepts (NumPy arrays of any layout, CPU
        tensors without a copy), ``ndim >= 1``. Dtypes: bool, signed and
        unsigned integers, float16, bfloat16, float32, float64. Or a 2-D SciPy sparse
        array/matrix (see *Sparse input*).
    k : int
        Number of entries to keep, ``0 <= k <= x.shape[axis]``.
    axis : int, default -1
        Axis to select along.
    mode : {"largest", "smallest"}
        Keep the largest or the smallest entries.
    sorted : bool, default True
        True: results in rank order. False: the same (value, index) pairs in
        an unspecified order (may be faster for large ``k``).
    explicit : bool, default False
        Sparse input only: rank the stored entries alone (SciPy's
        ``explicit`` meaning). Slices with fewer than ``k`` stored entries
        are padded with index ``-1`` and value 0.
    format : {"dense", "csr"}, default "dense"
        Sparse input only: ``"csr"`` returns, instead of a ``TopK``, the
        matrix pruned to its top-k entries per row (per column for
        ``axis=0``) as a canonical CSR matrix of the input's class (zero
        values are not stored).

    Returns
    -------
    TopK(values, indices)
        Both shaped like ``x`` with ``axis`` replaced by ``k``, C-contiguous.
        ``values`` keep the input dtype, ``indices`` are ``np.intp``.

    Notes
    -----
    Order for ``mode="largest"``: values descending; equal values keep the
    lower index first; ``-0.0`` and ``+0.0`` are equal; ``±inf`` are ordinary
    values; NaN ranks after every number, so it appears only when needed to
    fill ``k``, NaNs in index order. ``mode="smallest"``: values ascending,
    the tie and NaN rules unchanged. The input is never modified and the
    result is the same bits for any thread count.

    *Sparse input* (``csr_array``/``csr_matrix``; CSC is transposed by a
    counting sort, other formats converted with ``tocsr()``; int32 or int64
    indices): the result is exactly that of ``top_k(x.toarray(), k)``
    (``axis`` -1/1 ranks rows, 0 ranks columns): implicit and stored zeros
    are zeros, duplicate entries are summed, the storage order of column
    indices never matters. The input is checked in one pass (a malformed
    matrix raises ``ValueError``) and never modified. Sparse results are
    always in rank order.

    Raises
    ------
    TypeError
        ``x`` of an unsupported dtype, ``k`` or ``axis`` not an integer.
    ValueError
        ``k`` out of range, ``mode`` unknown, ``x`` a scalar.
    numpy.exceptions.AxisError
        ``axis`` out of range.

    Examples
    --------
    >>> import numpy as np
    >>> import fastroute as fr
    >>> fr.top_k(np.array([[3.0, 1.0, 3.0, np.nan], [0.5, 2.0, -1.0, 2.0]]), 2)
    TopK(values=array([[3., 3.],
           [2., 2.]]), indices=array([[0, 2],
           [1, 3]]))
    >>> import scipy.sparse as sp
    >>> A = sp.csr_array(np.array([[0.0, 0.2, 0.0, 0.7], [0.0, 0.0, 0.0, 0.0]]))
    >>> fr.top_k(A, 3, explicit=True)
    TopK(values=array([[0.7, 0.2, 0. ],
           [0. , 0. , 0. ]]), indices=array([[ 3,  1, -1],
           [-1, -1, -1]]))
    """
    if (
        type(x) is np.ndarray
        and x.ndim == 2
        and axis == -1
        and format == "dense"
        and not explicit
        and x.size < min_work()
        and x.dtype in FAST_DTYPES
        and type(k) is int
        and 0 <= k <= x.shape[1]
        and (mode == "largest" or mode == "smallest")
    ):  # the lean path of small 2-D float arrays: checks and a serial kernel
        values = np.empty((x.shape[0], k), x.dtype)
        indices = np.empty((x.shape[0], k), np.intp)
        if values.size:
            kernel = _ROW_KERNELS[_strategy(x.dtype, x.shape[1], k)]
            kernel(x, k, mode == "largest", bool(sorted), values, indices, 0, x.shape[0])
        return TopK(values, indices)
    check_choice(mode, "mode", ("largest", "smallest"), "top_k")
    check_choice(format, "format", ("dense", "csr"), "top_k")
    largest = mode == "largest"
    sort = bool(sorted)
    if type(x) is not np.ndarray and is_sparse(x):  # ndarray: skip the check
        ax = check_axis(axis, 2)
        out = sparse_top_k(x, k, ax, largest, sort, explicit, format, check_k)
        return out if format == "csr" else TopK(*out)
    if explicit or format != "dense":
        raise ValueError(
            "top_k: explicit=True and format='csr' apply to scipy.sparse input only; "
            f"got {type(x).__name__}"
        )
    a = real_array(x, "top_k")
    ax = check_axis(axis, a.ndim)
    n = a.shape[ax]
    k = check_k(k, n, "top_k")

    lead = a.shape[:ax] + a.shape[ax + 1 :]
    values = np.empty(lead + (k,), a.dtype)
    indices = np.empty(lead + (k,), np.intp)
    if values.size:
        if a.dtype.char == "?":  # Numba sees bool as uint8: same order
            a, vout = a.view(np.uint8), values.view(np.uint8)
        else:
            vout = values
        blocks = rows_view(a, ax)
        vrows = vout.reshape(-1, k)
        irows = indices.reshape(-1, k)
        if len(blocks) == 1:
            _select(blocks[0], k, largest, sort, vrows, irows)
        else:
            r0 = 0
            for block in blocks:
                r1 = r0 + block.shape[0]
                _select(block, k, largest, sort, vrows[r0:r1], irows[r0:r1])
                r0 = r1
    if ax != a.ndim - 1:
        values = np.ascontiguousarray(np.moveaxis(values, -1, ax))
        indices = np.ascontiguousarray(np.moveaxis(indices, -1, ax))
    if a.dtype in HALF:
        values = half_array(values)
    return TopK(values, indices)


def _select(x2, k, largest, sort, vals, idxs):
    """Fill ``vals``/``idxs`` (C-contiguous 2-D) with the top-k of each row of ``x2``."""
    kernel = _ROW_KERNELS[_strategy(x2.dtype, x2.shape[1], k)]
    half = x2.dtype in HALF  # compared as float32, the chosen bits copied
    v = np.empty(vals.shape, np.float32) if half else vals
    run(kernel, (x2, k, largest, sort, v, idxs), x2.shape[0], x2.size)
    if half:
        vals.view(np.uint16)[...] = np.take_along_axis(x2.view(np.uint16), idxs, axis=1)


def _strategy(dtype, n, k):
    """The row kernel for rows of ``n`` entries of ``dtype``: float32 sort
    keys for short rows and small ``k``, else a sorted insertion buffer for
    small ``k``, else a binary heap."""
    if dtype in SINGLE and n <= KEYS_MAX_N and k <= KEYS_MAX_K:
        return "keys"
    return "insertion" if k <= INSERTION_MAX_K else "heap"


_ROW_KERNELS = {"keys": topk_keys_rows, "insertion": insertion_rows, "heap": heap_rows}
