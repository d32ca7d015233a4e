"""``fastroute.relative_entropy`` and ``fastroute.cross_entropy``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _drivers as drv
from ._jit import PARALLEL_MIN_WORK, parallel_guard
from ._sparse import _launch, _shape, as_csr, is_sparse
from ._validate import F32, FAST_DTYPES, as_real_array, check_axis, check_base, unravel_row
from .entropy import _finish, entropy
from .kernels import csr as K
from .kernels.divergence import LOGITS_SHORT_N, QTAB_WIDTH, q_table
from .kernels.divergence32 import SHORT32_N
from .kernels.entropy import EXACT, NEGATIVE

__all__ = ["relative_entropy", "cross_entropy", "kl_from_logits"]


def relative_entropy(
    p: Any, q: Any, /, *, axis: int = -1, base: float | None = None, normalize: bool = True
) -> np.ndarray:
    """Relative entropy (Kullback-Leibler divergence) ``D(p || q)`` of every
    slice along ``axis``.

    Parameters
    ----------
    p, q : array_like or scipy.sparse matrix
        Probabilities or non-negative counts (bool, integers, float16/32/64)
        of the same length along ``axis``; ``q`` broadcasts against ``p``
        (a single background distribution ``q`` for every row of ``p``).
        ``p`` may be a 2-D SciPy sparse matrix (rows for ``axis=-1``/``1``,
        columns for ``axis=0``), with ``q`` dense (broadcasting to ``p``'s
        shape: a background row ``(n,)``/``(1, n)``, or every row) or sparse
        of ``p``'s shape. Implicit entries are 0.
    axis : int, default -1
        Axis holding each distribution.
    base : float, optional
        Logarithm base of the result; ``None`` gives nats, ``2`` bits.
    normalize : bool, default True
        True: ``D(p / p.sum() || q / q.sum())`` (as
        ``scipy.stats.entropy(p, q)``). False: ``sum(p * log(p / q))`` of the
        entries as given (``scipy.special.rel_entr(p, q).sum()``).

    Returns
    -------
    numpy.ndarray
        The broadcast shape without ``axis``. float32 when both inputs are
        float16/float32, float64 otherwise.

    Notes
    -----
    A term with ``p = 0`` contributes 0; ``p > 0`` where ``q = 0`` gives
    ``+inf``. A slice with NaN or ``+inf`` in ``p`` or ``q`` gives NaN; with
    ``normalize=True`` so does a slice where ``p`` or ``q`` sums to 0 (no
    distribution). The normalized divergence is a sum of non-negative terms
    ``Q g(P / Q)``, ``g(r) = r log r - r + 1``, with ``P / Q - 1`` formed from
    the raw entries by an error-free difference of products: for float64
    the error is within ``1e-12 * D + 2e-15`` also for nearly equal rows
    (``q = p (1 + 1e-8)``, ``D ~ 1e-17``), near-deterministic rows, and
    counts from ``1e-300`` to ``1e300``. float16/float32 inputs (dense,
    normalized) evaluate the logarithms and series in float32 and what
    decides the cancellation (the row sums, ``P / Q - 1``) in float64:
    within 2 float32 ulp (rows with entries beyond ``2**100`` or ratios
    beyond ``2**60`` take the float64 path). The unnormalized sum has terms of
    both signs; its error is relative to ``sum |p log(p / q)|``. The bits of
    a slice's result do not depend on the thread count or the other slices.
    Strided, broadcast or integer inputs are copied once into contiguous
    rows of the compute dtype (a single background ``q`` is not repeated).

    Sparse ``p``: the columns ``p`` does not store contribute ``Q`` each
    (``g(0) = 1``); against a dense ``q`` their total is the exact sum of
    ``q`` less the exact sum over the stored columns (double-double sums),
    so the float64 contract holds also when ``p``'s pattern holds almost
    all of ``q``'s mass. Against a sparse ``q`` the sums run over the union
    of the two patterns. Duplicates are summed and indices sorted first
    (the caller's matrix is never modified).

    Raises
    ------
    ValueError
        ``p`` or ``q`` holds a negative entry (the message names the first
        slice), the shapes do not broadcast, or the lengths along ``axis``
        differ.
    TypeError
        Unsupported dtype, a sparse ``q`` with a dense ``p``, or ``base`` not
        a number.

    Examples
    --------
    >>> import numpy as np
    >>> import fastroute as fr
    >>> fr.relative_entropy(np.array([[1, 1], [1, 3]]), np.array([1, 1]), base=2)
    array([0.        , 0.18872188])
    >>> import scipy.sparse as sp
    >>> fr.relative_entropy(sp.csr_array([[1, 0, 1], [0, 2, 0]]), np.array([1, 1, 2]), base=2)
    array([0.5, 2. ])
    """
    return _divergence(p, q, axis, base, normalize, "relative_entropy")


def cross_entropy(
    p: Any, q: Any, /, *, axis: int = -1, base: float | None = None, normalize: bool = True
) -> np.ndarray:
    """Cross-entropy ``H(p, q) = -sum p log q`` of every slice along ``axis``.

    The arguments, shapes, dtypes and rules are those of
    :func:`relative_entropy`. Normalized, it is computed as
    ``entropy(p) + relative_entropy(p, q)``, two sums of non-negative terms
    (the same accuracy); ``normalize=False`` sums ``-p log q`` of the entries
    as given.

    Examples
    --------
    >>> import numpy as np
    >>> import fastroute as fr
    >>> fr.cross_entropy(np.array([[1, 1], [1, 3]]), np.array([1, 1]), base=2)
    array([1., 1.])
    """
    func = "cross_entropy"
    if not normalize:
        return _divergence(p, q, axis, base, normalize, func, cross=True)
    if axis == -1 and base is None:
        small = _small(p, q, True, True, None)
        if small is not None:
            return small
    # both parts in float64 (float inputs widened exactly), rounded once
    a, c = _widened(p), _widened(q)
    f32 = _dtype_of(p).char in "ef" and _dtype_of(q).char in "ef"
    d = _divergence(a, c, axis, base, True, func)  # checks everything first
    if is_sparse(a):
        h = entropy(a, axis=axis, base=base)
    else:
        shape = _broadcast(a, c, func)
        h = entropy(a if a.shape == shape else np.broadcast_to(a, shape), axis=axis, base=base)
    return (h + d).astype(np.float32 if f32 else np.float64, copy=False)


def _dtype_of(x: Any) -> np.dtype:
    return np.dtype(x.dtype) if is_sparse(x) else np.asarray(x).dtype


def _widened(x: Any) -> Any:
    # float16/float32 data as float64 (exact); anything else as it is
    if is_sparse(x):
        return x.astype(np.float64) if np.dtype(x.dtype).char in "ef" else x
    a = np.asarray(x)
    return a.astype(np.float64, copy=False) if a.dtype.kind == "f" else a


def kl_from_logits(
    z_p: Any,
    z_q: Any,
    /,
    *,
    axis: int = -1,
    base: float | None = None,
    temperature: float = 1.0,
) -> np.ndarray:
    """``D(softmax(z_p / T) || softmax(z_q / T))`` of every slice along
    ``axis``, computed stably from the logits (no probabilities or their
    logs are formed on their own).

    Parameters
    ----------
    z_p, z_q : array_like
        Logits (float16/32/64, integers, bool) of the same length along
        ``axis``; ``z_q`` broadcasts against ``z_p`` as in
        :func:`relative_entropy`.
    axis : int, default -1
    base : float, optional
        Logarithm base; ``None`` gives nats.
    temperature : float, default 1.0
        ``T > 0``, finite: both logits are divided by it (distillation).

    Returns
    -------
    numpy.ndarray
        The broadcast shape without ``axis``; float32 when both inputs are
        float16/float32, float64 otherwise.

    Notes
    -----
    No overflow for any finite logits. ``-inf`` is probability 0: ``+inf``
    where ``p > 0`` and ``q = 0``. NaN or ``+inf`` in a slice, an all-``-inf``
    slice or an empty one give NaN. The sum has non-negative terms
    ``Q g(P / Q)`` built from the logit differences, so nearly equal rows
    keep their digits (the accuracy of :func:`relative_entropy`).

    Examples
    --------
    >>> import numpy as np
    >>> import fastroute as fr
    >>> float(fr.kl_from_logits(np.array([0.0, 0.0]), np.array([0.0, -np.inf])))
    inf
    >>> fr.kl_from_logits(np.array([[1.0, 2.0], [5.0, 5.0]]), np.array([2.0, 3.0]))
    array([0.        , 0.12011451])
    """
    func = "kl_from_logits"
    if isinstance(temperature, (bool, np.bool_)) or not isinstance(
        temperature, (int, float, np.integer, np.floating)
    ):
        raise TypeError(f"{func}: temperature must be a number, got {type(temperature).__name__}")
    t = float(temperature)
    if not (t > 0.0 and math.isfinite(t)):
        raise ValueError(f"{func}: temperature must be positive and finite, got {temperature!r}")
    return _divergence(z_p, z_q, axis, base, True, func, logits=1.0 / t)


def _spread(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    # x broadcast to shape, only where it has to be: a broadcast view is
    # read-only, and a read-only array is another type to Numba (another
    # compiled kernel)
    return x if x.shape == shape else np.broadcast_to(x, shape)


def _rows_c(x: np.ndarray, dtype) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=dtype)


def _broadcast(a: np.ndarray, b: np.ndarray, func: str) -> tuple[int, ...]:
    try:
        return np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(
            f"{func}: p of shape {a.shape} and q of shape {b.shape} do not broadcast"
        ) from None


def _small(p, q, normalize, cross, logits):
    """The lean path of small same-dtype float32/float64 1-D or 2-D arrays
    along the last axis, ``q`` of ``p``'s shape or one 1-D background: the
    kernel without the general path's broadcasting and copies. None when
    not that case (or a negative entry, which the general path reports)."""
    if not (type(p) is np.ndarray and type(q) is np.ndarray and p.dtype == q.dtype):
        return None
    if p.dtype not in FAST_DTYPES or p.size >= PARALLEL_MIN_WORK or not 1 <= p.ndim <= 2:
        return None
    if not (p.flags.c_contiguous and q.flags.c_contiguous):
        return None
    if q.shape == p.shape:
        step = 1
    elif q.ndim == 1 and q.shape[0] == p.shape[-1]:
        step = 0
    else:
        return None
    p2 = p if p.ndim == 2 else p.reshape(1, -1)
    q2 = q if q.ndim == 2 else q.reshape(1, -1)
    rows = p2.shape[0]
    if rows == 0:
        return None
    f32 = p.dtype == F32
    if cross and normalize:  # H(p) + D(p || q), both in float64, rounded once
        out64 = np.empty(rows)
        status = np.zeros(rows, np.uint8)
        drv.cross_serial(p2, q2, step, out64, status, 0, rows)  # widened inside
        if np.count_nonzero(status):
            return None
        out = out64.astype(np.float32) if f32 else out64
        return out.reshape(()) if p.ndim == 1 else out
    out = np.empty(rows)  # float64 always: one compiled kernel per input precision
    status = np.zeros(rows, np.uint8)
    if logits is not None:
        _logits_kernels(p2.shape[1])[0](p2, q2, step, logits, out, 0, rows)
    elif normalize and f32:
        _kl32_kernels(p2.shape[1])[0](p2, q2, step, out, status, 0, rows)
    elif normalize:
        drv.kl_serial(p2, q2, step, out, status, 0, rows)
    else:
        drv.divergence_raw_serial(p2, q2, step, cross, out, status, 0, rows)
    if np.count_nonzero(status):
        return None  # a negative entry, or rows for the float64 kernel
    if f32:  # rounded once (beyond float32's range: inf, without NumPy's warning)
        out32 = np.empty(rows, np.float32)
        drv.to_float32(out, out32)
        out = out32
    return out.reshape(()) if p.ndim == 1 else out


def _kl32_kernels(n: int):
    # (serial, parallel) float32 kernels for rows of length n: a call compiles one
    if n <= SHORT32_N:
        return drv.kl32_short_serial, drv.kl32_short_parallel
    return drv.kl32_long_serial, drv.kl32_long_parallel


def _logits_kernels(n: int):
    if n <= LOGITS_SHORT_N:
        return drv.kl_logits_short_serial, drv.kl_logits_short_parallel
    return drv.kl_logits_long_serial, drv.kl_logits_long_parallel


def _exact_rows(p2, q2, step, out, status):
    """The float64 kernel on the rows the float32 kernel marked ``EXACT``
    (entries or ratios beyond its range; usually none)."""
    ex = np.flatnonzero(status == EXACT)
    if ex.size:
        sub, sub_status = np.empty(ex.size), np.zeros(ex.size, np.uint8)
        drv.kl_serial(p2[ex], q2[ex] if step else q2, step, sub, sub_status, 0, ex.size)
        out[ex] = sub
        status[ex] = sub_status


def _divergence(p, q, axis, base, normalize, func, cross=False, logits=None):
    if axis == -1 and base is None:
        small = _small(p, q, bool(normalize), cross, logits)
        if small is not None:
            return small
    if is_sparse(p) or is_sparse(q):
        if logits is not None:
            raise TypeError(f"{func}: logits must be dense arrays, got a sparse matrix")
        if not is_sparse(p):
            raise TypeError(
                f"{func}: q is sparse but p is dense; pass p as a scipy.sparse matrix "
                "too, or q.toarray()"
            )
        return _sparse_divergence(p, q, axis, base, normalize, func, cross)
    b = check_base(base, func)
    a = as_real_array(p, func)
    c = as_real_array(q, func)
    shape = _broadcast(a, c, func)
    if len(shape) == 0:
        raise ValueError(f"{func}: p and q must have at least one dimension")
    ax = check_axis(axis, len(shape))
    a = a.reshape((1,) * (len(shape) - a.ndim) + a.shape)
    c = c.reshape((1,) * (len(shape) - c.ndim) + c.shape)
    if a.shape[ax] != c.shape[ax]:
        raise ValueError(
            f"{func}: p and q must have the same length along axis {ax}, "
            f"got {a.shape[ax]} and {c.shape[ax]}"
        )
    f32 = a.dtype.char in "ef" and c.dtype.char in "ef"
    work = np.float32 if f32 else np.float64  # one compiled kernel per precision
    n = shape[ax]
    lead = shape[:ax] + shape[ax + 1 :]
    rows = math.prod(lead)
    # C-contiguous rows of the compute dtype (a copy only when the layout or
    # the dtype differs): one compiled kernel per precision, not per layout
    p2 = _rows_c(np.moveaxis(_spread(a, shape), ax, -1).reshape(rows, n), work)
    if all(c.shape[i] == 1 for i in range(len(shape)) if i != ax):  # one background q
        q2, step = _rows_c(np.moveaxis(c, ax, -1).reshape(1, n), work), 0
    else:
        q2 = _rows_c(np.moveaxis(_spread(c, shape), ax, -1).reshape(rows, n), work)
        step = 1
    out = np.empty(rows)  # float64: one compiled kernel per input precision; _finish rounds
    status = np.zeros(rows, np.uint8)
    if rows:
        with parallel_guard(rows * max(n, 1)) as par:
            par = par and rows > 1
            if logits is not None:
                serial, parallel = _logits_kernels(n)
                if par:
                    parallel(p2, q2, step, logits, out, drv.n_chunks(rows))
                else:
                    serial(p2, q2, step, logits, out, 0, rows)
            elif normalize and f32:
                serial, parallel = _kl32_kernels(n)
                if par:
                    parallel(p2, q2, step, out, status, drv.n_chunks(rows))
                else:
                    serial(p2, q2, step, out, status, 0, rows)
                _exact_rows(p2, q2, step, out, status)
            elif normalize and par:
                drv.kl_parallel(p2, q2, step, out, status, drv.n_chunks(rows))
            elif normalize:
                drv.kl_serial(p2, q2, step, out, status, 0, rows)
            elif par:
                drv.divergence_raw_parallel(p2, q2, step, cross, out, status, drv.n_chunks(rows))
            else:
                drv.divergence_raw_serial(p2, q2, step, cross, out, status, 0, rows)
    if np.count_nonzero(status):
        row = int(np.flatnonzero(status == NEGATIVE)[0])
        raise ValueError(
            f"{func}: slice {unravel_row(row, lead)} (along axis {ax}) has a negative "
            "entry in p or q; probabilities and counts must be >= 0"
        )
    return _finish(out.reshape(lead), np.dtype(np.float32 if f32 else np.float64), b)


def _sparse_divergence(p, q, axis, base, normalize, func, cross):
    """Slices of the sparse ``p`` (rows, or columns for ``axis=0``) against a
    dense ``q`` that broadcasts to ``p``'s shape, or a sparse ``q`` of that
    shape (the union of the two patterns)."""
    b = check_base(base, func)
    shape = _shape(p, func)
    ax = check_axis(axis, 2)
    columns = ax == 0
    m = as_csr(p, func, columns=columns)
    nrows, n = m.shape
    mode = 0 if normalize else 2 if cross else 1
    if is_sparse(q):
        if _shape(q, func) != shape:
            raise ValueError(
                f"{func}: sparse p and q must have the same shape, got {shape} and "
                f"{_shape(q, func)}"
            )
        mq = as_csr(q, func, columns=columns)
        f32 = m.dtype.char in "ef" and mq.dtype.char in "ef"
    else:
        c = as_real_array(q, func)
        try:
            fits = c.ndim <= 2 and np.broadcast_shapes(shape, c.shape) == shape
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(
                f"{func}: q of shape {c.shape} does not broadcast to p's shape {shape}"
            )
        c = c.reshape((1,) * (2 - c.ndim) + c.shape)
        if c.shape[ax] != n:
            raise ValueError(
                f"{func}: p and q must have the same length along axis {ax}, "
                f"got {n} and {c.shape[ax]}"
            )
        f32 = m.dtype.char in "ef" and c.dtype.char in "ef"
    work = np.float32 if f32 else np.float64
    pm = (m.indptr, m.indices, m.data.astype(work, copy=False).reshape(1, -1))
    out = np.empty(nrows)  # float64: one compiled kernel per input precision
    status = np.zeros(nrows, np.uint8)
    if nrows:
        if is_sparse(q):
            qm = (mq.indptr, mq.indices, mq.data.astype(work, copy=False).reshape(1, -1))
            args = (pm, qm, mode, out, status)
            serial, parallel = drv.csr_csr_serial, drv.csr_csr_parallel
        else:
            qt = np.moveaxis(c, ax, -1)
            step = int(qt.shape[0] != 1)
            q2 = _rows_c(qt, work)
            tab = np.empty((q2.shape[0], QTAB_WIDTH))
            q_table(q2, tab)
            args = (pm, q2, step, tab, mode, out, status)
            serial, parallel = drv.csr_dense_serial, drv.csr_dense_parallel
            if mode == 0 and f32:  # the float32-log kernel
                args = (pm, q2, step, tab, out, status)
                serial, parallel = drv.csr_kl32_serial, drv.csr_kl32_parallel
        _launch(serial, parallel, m, K.ENTROPY_ROW_COST, *args, rows=True)
        if not is_sparse(q) and mode == 0 and f32:
            for r in np.flatnonzero(status == EXACT).tolist():  # rows beyond float32
                drv.csr_dense_serial(pm, q2, step, tab, 0, out, status, r, r + 1)
    if np.count_nonzero(status):
        row = int(np.flatnonzero(status == NEGATIVE)[0])
        raise ValueError(
            f"{func}: slice {row} (along axis {ax}) has a negative entry in p or q; "
            "probabilities and counts must be >= 0"
        )
    return _finish(out, np.dtype(np.float32 if f32 else np.float64), b)
