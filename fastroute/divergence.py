"""``fastroute.relative_entropy`` and ``fastroute.cross_entropy``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._dtypes import FAST_DTYPES, HALF, SINGLE, real_array, to_float
from ._execute import finish, min_work, run, run_csr
from ._sparse import as_csr, is_sparse, shape_of
from ._validate import (
    check_alloc,
    check_axis,
    check_base,
    check_real,
    raise_status,
    unravel_row,
)
from .entropy import entropy
from .kernels import csr as K
from .kernels.divergence import (
    QTAB_WIDTH,
    RAW_SCALE,
    cross_rows,
    csr_csr_rows,
    csr_dense_rows,
    kl_rows,
    q_table,
    raw_rows,
)
from .kernels.divergence32 import SHORT32_N, csr_kl32_rows, kl32_long_rows, kl32_short_rows
from .kernels.entropy import EXACT, to_float32
from .kernels.kl_logits import (
    LOGITS_CAREFUL,
    LOGITS_SHORT_N,
    kl_logits_careful_rows,
    kl_logits_long_rows,
    kl_logits_short_rows,
)

__all__ = ["relative_entropy", "cross_entropy", "kl_from_logits"]

#: the executor's work per pair of entries (two logs or exps and the sums:
#: about four cheap passes), which sets when a call goes parallel
_WORK_PER_ENTRY = 4


def relative_entropy(
    p: Any, q: Any, /, *, axis: int = -1, base: float | None = None, normalize: bool = True
) -> np.ndarray:
    """Relative entropy (Kullback-Leibler divergence) ``D(p || q)`` of every
    slice along ``axis``.

    Parameters
    ----------
    p, q : array_like or scipy.sparse matrix
        Probabilities or non-negative counts (bool, integers, float16/32/64, bfloat16)
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
        float16/bfloat16/float32, float64 otherwise.

    Notes
    -----
    A term with ``p = 0`` contributes 0; ``p > 0`` where ``q = 0`` gives
    ``+inf`` (``-inf`` in a base below 1: every result is divided by
    ``log(base)``). A slice with NaN or ``+inf`` in ``p`` or ``q`` gives NaN; with
    ``normalize=True`` so does a slice where ``p`` or ``q`` sums to 0 (no
    distribution). The normalized divergence is a sum of non-negative terms
    ``Q g(P / Q)``, ``g(r) = r log r - r + 1``, with ``P / Q - 1`` formed from
    the raw entries by an error-free difference of products: for float64
    the error is within ``1e-12 * D + 2e-15`` also for nearly equal rows
    (``q = p (1 + 1e-8)``, ``D ~ 1e-17``), near-deterministic rows, and
    counts from ``1e-300`` to ``1e300``. float16/bfloat16/float32 inputs (dense,
    normalized) evaluate the logarithms and series in float32 and what
    decides the cancellation (the row sums, ``P / Q - 1``) in float64:
    within 2 float32 ulp (rows with entries beyond ``2**100`` or ratios
    beyond ``2**60`` take the float64 path). The unnormalized sum has terms of
    both signs; its error is relative to ``sum |p log(p / q)|``. The bits of
    a slice's result do not depend on the thread count or the other slices.
    With ``base``, a sum beyond float64 in nats (entries near 1e308) is
    summed again with every term divided by ``log(base)`` first, so it is
    finite when the result in that base is.
    Strided or integer inputs are copied once into contiguous rows of the
    compute dtype. A ``p`` or ``q`` that is one slice repeated (a background
    ``q``, or a view from ``np.broadcast_to``) is read in place, never
    repeated in memory; other broadcasts are copied. The memory a call needs
    (result and copies) is checked before anything is allocated.

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
        slice), the shapes do not broadcast, the lengths along ``axis``
        differ, a list is ragged, a sparse matrix is malformed, or the call
        would need more memory than the machine has.
    TypeError
        Unsupported dtype,
        a sparse ``q`` with a dense ``p``, or ``base`` not a number.

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

    The arguments, shapes, dtypes, rules and errors are those of
    :func:`relative_entropy`, and so is the result: a NumPy array of the
    broadcast shape without ``axis`` (0-d for 1-D inputs). Normalized, it is
    computed as ``entropy(p) + relative_entropy(p, q)``, two sums of
    non-negative terms (the same accuracy), both in float64 and rounded once;
    ``normalize=False`` sums ``-p log q`` of the entries as given.

    Examples
    --------
    >>> import numpy as np
    >>> import fastroute as fr
    >>> fr.cross_entropy(np.array([[1, 1], [1, 3]]), np.array([1, 1]), base=2)
    array([1., 1.])
    >>> fr.cross_entropy(np.array([1, 3]), np.array([1, 1]), base=2)
    array(1.)
    """
    func = "cross_entropy"
    if not normalize:
        return _divergence(p, q, axis, base, normalize, func, cross=True)
    if axis == -1 and base is None:
        small = _small(p, q, True, True, None)
        if small is not None:
            return small
    # both parts in float64 (float inputs widened exactly, after they are
    # checked), rounded once
    if is_sparse(p) or is_sparse(q):
        a, c, f32 = _sparse_widened(p, q, axis, func)
        d = _divergence(a, c, axis, base, True, func)  # checks everything first
        h = entropy(a, axis=axis, base=base)
    else:
        a, c = _array(p, "p", func), _array(q, "q", func)
        f32 = a.dtype in SINGLE and c.dtype in SINGLE
        shape = _broadcast(a, c, func)
        if len(shape) == 0:
            raise ValueError(f"{func}: p and q must have at least one dimension")
        ax = check_axis(axis, len(shape))
        a1 = _widened(_minimal(a, len(shape), ax))  # a slice repeated: widened once
        c1 = _widened(_minimal(c, len(shape), ax))
        d = _divergence(_spread(a1, a1.shape[: len(shape) - a.ndim] + a.shape),
                        _spread(c1, c1.shape[: len(shape) - c.ndim] + c.shape),
                        axis, base, True, func)  # fmt: skip
        h = entropy(a1, axis=ax, base=base)  # broadcasts against d
    return np.asarray(h + d, np.float32 if f32 else np.float64)


def _widened(a: np.ndarray) -> np.ndarray:
    # float32 and half floats as float64 (exact); anything else as it is
    return to_float(a, np.float64) if a.dtype in SINGLE else a


def _sparse_widened(p: Any, q: Any, axis: Any, func: str):
    """``(p, q, f32)`` for the normalized sparse cross-entropy: both checked
    first (a malformed matrix is an error before SciPy touches it), then
    rebuilt from the checked arrays with float data as float64."""
    if not is_sparse(p):
        raise _dense_p_sparse_q(func)
    ax = check_axis(axis, 2)
    a, dt_p = _checked_sparse(p, ax, func)
    if is_sparse(q):
        c, dt_q = _checked_sparse(q, ax, func)
    else:
        c = _array(q, "q", func)
        dt_q = c.dtype
        if c.ndim <= 2:
            c1 = _widened(_minimal(c, 2, ax))
            c = _spread(c1, c1.shape[: 2 - c.ndim] + c.shape)
    return a, c, dt_p in SINGLE and dt_q in SINGLE


def _checked_sparse(x: Any, ax: int, func: str):
    """The sparse ``x`` checked (``as_csr``) and rebuilt from its canonical
    arrays, float data as float64; and its dtype."""
    import scipy.sparse as sp

    m = as_csr(x, func, columns=ax == 0)
    data = m.data.astype(np.float64) if m.dtype.kind == "f" else m.data
    cls = sp.csc_array if ax == 0 else sp.csr_array  # the orientation of x
    shape = m.shape[::-1] if ax == 0 else m.shape
    out = cls((data, m.indices, m.indptr), shape=shape)
    out.has_canonical_format = True
    return out, m.dtype


#: the smallest temperature: ``1 / T`` must be a finite float64
MIN_TEMPERATURE = 2.0**-1022


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
        Logits (float16/32/64, bfloat16, integers, bool) of the same length along
        ``axis``; ``z_q`` broadcasts against ``z_p`` as in
        :func:`relative_entropy`.
    axis : int, default -1
    base : float, optional
        Logarithm base; ``None`` gives nats.
    temperature : float, default 1.0
        ``T``: both logits are divided by it (distillation). Any float64
        from ``2**-1022`` (about ``2.2e-308``, the smallest normal float64)
        to the largest finite one; smaller (subnormal), zero, negative or
        non-finite temperatures are a ``ValueError``.

    Returns
    -------
    numpy.ndarray
        The broadcast shape without ``axis``; float32 when both inputs are
        float16/bfloat16/float32, float64 otherwise.

    Notes
    -----
    No overflow for any finite logits and temperature: logits whose
    differences are beyond float64 (``[1e308, -1e308]``) or far beyond ``T``
    (``T = 1e-300``) give the exact divergence rounded, ``+inf`` only when
    it is beyond float64 (in ``base``, when the value in that base is).
    ``-inf`` is probability 0: ``+inf`` where ``p > 0`` and ``q = 0``. NaN
    or ``+inf`` in a slice, an all-``-inf`` slice or an empty one give NaN.
    The sum has non-negative terms ``Q g(P / Q)`` built from the logit
    differences, so nearly equal rows keep their digits (the accuracy of
    :func:`relative_entropy`). Rows with such extreme logits take a slower
    careful path; the others keep the fast one.

    Examples
    --------
    >>> import numpy as np
    >>> import fastroute as fr
    >>> float(fr.kl_from_logits(np.array([0.0, 0.0]), np.array([0.0, -np.inf])))
    inf
    >>> fr.kl_from_logits(np.array([[1.0, 2.0], [5.0, 5.0]]), np.array([2.0, 3.0]))
    array([0.        , 0.12011451])
    >>> float(fr.kl_from_logits(np.array([1e308, 1e308]), np.array([1e308, -1e308])))
    1e+308
    """
    func = "kl_from_logits"
    t = check_real(temperature, "temperature", func, finite=False)
    if not (t >= MIN_TEMPERATURE and math.isfinite(t)):
        raise ValueError(
            f"{func}: temperature must be positive and finite, at least 2**-1022 "
            f"(2.2250738585072014e-308, the smallest normal float64), got {temperature!r}"
        )
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
    if p.dtype not in FAST_DTYPES or _WORK_PER_ENTRY * p.size >= min_work() or not 1 <= p.ndim <= 2:
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
    f32 = p.dtype in SINGLE
    if cross and normalize:  # H(p) + D(p || q), both in float64, rounded once
        out64 = np.empty(rows)
        status = np.zeros(rows, np.uint8)
        cross_rows(p2, q2, step, out64, status, 0, rows)  # widened inside
        if np.count_nonzero(status):
            return None
        out = out64.astype(np.float32) if f32 else out64
        return out.reshape(()) if p.ndim == 1 else out
    out = np.empty(rows)  # float64 always: one compiled kernel per input precision
    status = np.zeros(rows, np.uint8)
    kernel, args = _plan(p2, q2, step, normalize, cross, logits, f32, out, status)
    if kernel(*args, 0, rows) and logits is not None:
        _careful_rows(p2, q2, step, logits, out)
    if np.count_nonzero(status):
        return None  # a negative entry, or rows for the float64 kernel
    if f32:  # rounded once (beyond float32's range: inf, without NumPy's warning)
        out32 = np.empty(rows, np.float32)
        to_float32(out, out32)
        out = out32
    return out.reshape(()) if p.ndim == 1 else out


def _plan(p2, q2, step, normalize, cross, logits, f32, out, status):
    """(row kernel, its arguments before ``lo, hi``) of a dense divergence:
    the logits kernels (short rows as SIMD lanes, long ones one by one;
    they return how many rows they left for ``_careful_rows``), the
    float32-log kernels of normalized float32 rows (rows beyond float32
    marked ``EXACT``), the float64 normalized kernel, or the unnormalized
    sums."""
    n = p2.shape[1]
    if logits is not None:
        kernel = kl_logits_short_rows if n <= LOGITS_SHORT_N else kl_logits_long_rows
        return kernel, (p2, q2, step, logits, out)
    if normalize and f32:
        return (kl32_short_rows if n <= SHORT32_N else kl32_long_rows), (p2, q2, step, out, status)
    if normalize:
        return kl_rows, (p2, q2, step, out, status)
    return raw_rows, (p2, q2, step, cross, 1.0, out, status)


def _careful_rows(zp, zq, step, inv_t, out):
    """The careful kernel on the rows the logits kernels marked
    ``LOGITS_CAREFUL`` (logits near the float64 limit or far beyond ``T``;
    usually none: the kernel is compiled only when some row needs it)."""
    kl_logits_careful_rows(zp, zq, step, inv_t, 1.0, np.flatnonzero(out == LOGITS_CAREFUL), out)


def _exact_rows(p2, q2, step, out, status):
    """The float64 kernel on the rows the float32 kernel marked ``EXACT``
    (entries or ratios beyond its range; usually none)."""
    ex = np.flatnonzero(status == EXACT)
    if ex.size:
        sub, sub_status = np.empty(ex.size), np.zeros(ex.size, np.uint8)
        kl_rows(p2[ex], q2[ex] if step else q2, step, sub, sub_status, 0, ex.size)
        out[ex] = sub
        status[ex] = sub_status


def _dense_p_sparse_q(func: str) -> TypeError:
    return TypeError(
        f"{func}: q is sparse but p is dense; pass p as a scipy.sparse matrix too, or q.toarray()"
    )


def _array(x: Any, name: str, func: str) -> np.ndarray:
    """``x`` as a checked real kernel view (``real_array``)."""
    return real_array(x, func, name)


def _work(x: np.ndarray, f32: bool) -> np.dtype:
    """The dtype ``x``'s rows are read in: half floats as their bits (the
    kernels widen them), everything else float32 or float64 (one compiled
    kernel per precision)."""
    return x.dtype if x.dtype in HALF else np.dtype(np.float32 if f32 else np.float64)


def _minimal(x: np.ndarray, ndim: int, ax: int) -> np.ndarray:
    """``x`` with ``ndim`` dimensions (leading 1s added) and every
    zero-stride axis but ``ax`` (a broadcast view's repeats) cut to length
    1: a view of the data ``x`` really holds."""
    x = x.reshape((1,) * (ndim - x.ndim) + x.shape)
    cut = tuple(
        slice(0, 1) if (i != ax and st == 0 and sh > 1) else slice(None)
        for i, (sh, st) in enumerate(zip(x.shape, x.strides, strict=True))
    )
    return x[cut]


def _one_slice(x: np.ndarray, ax: int) -> bool:
    return all(x.shape[i] == 1 for i in range(x.ndim) if i != ax)


def _plan_rows(x: np.ndarray, shape, ax: int, rows: int, n: int, work) -> tuple[bool, int]:
    """``(one, nbytes)``: whether ``x`` (from ``_minimal``) is one slice for
    every row, and the bytes of the copy its rows will need."""
    isz = np.dtype(work).itemsize
    if _one_slice(x, ax):
        return True, n * isz
    v = np.moveaxis(_spread(x, shape), ax, -1)
    return False, 0 if (v.dtype == work and v.flags.c_contiguous) else rows * n * isz


def _rows_of(x: np.ndarray, one: bool, shape, ax: int, rows: int, n: int, work) -> np.ndarray:
    """The ``(rows, n)`` C-contiguous rows of ``x`` in the compute dtype, a
    copy only when the layout or the dtype differs (one compiled kernel per
    precision, not per layout); ``(1, n)`` when ``one``."""
    if one:
        row = np.moveaxis(x, ax, -1).reshape(1, n)
        return row.astype(work) if not row.flags.writeable else _rows_c(row, work)
    return _rows_c(np.moveaxis(_spread(x, shape), ax, -1), work).reshape(rows, n)


def _repeated(row: np.ndarray, rows: int) -> np.ndarray:
    # one row read for every row with a zero stride (never copied rows times)
    return np.lib.stride_tricks.as_strided(
        row, shape=(rows, row.shape[1]), strides=(0, row.strides[1]), writeable=False
    )


def _divergence(p, q, axis, base, normalize, func, cross=False, logits=None):
    if axis == -1 and base is None:
        small = _small(p, q, bool(normalize), cross, logits)
        if small is not None:
            return small
    if is_sparse(p) or is_sparse(q):
        if logits is not None:
            raise TypeError(f"{func}: logits must be dense arrays, got a sparse matrix")
        if not is_sparse(p):
            raise _dense_p_sparse_q(func)
        return _sparse_divergence(p, q, axis, base, normalize, func, cross)
    b = check_base(base, func)
    a = _array(p, "p", func)
    c = _array(q, "q", func)
    shape = _broadcast(a, c, func)
    if len(shape) == 0:
        raise ValueError(f"{func}: p and q must have at least one dimension")
    ax = check_axis(axis, len(shape))
    a = _minimal(a, len(shape), ax)  # a broadcast view: the data it holds
    c = _minimal(c, len(shape), ax)
    if a.shape[ax] != c.shape[ax]:
        raise ValueError(
            f"{func}: p and q must have the same length along axis {ax}, "
            f"got {a.shape[ax]} and {c.shape[ax]}"
        )
    f32 = a.dtype in SINGLE and c.dtype in SINGLE
    n = shape[ax]
    lead = shape[:ax] + shape[ax + 1 :]
    rows = math.prod(lead)
    p_one, p_bytes = _plan_rows(a, shape, ax, rows, n, _work(a, f32))
    q_one, q_bytes = _plan_rows(c, shape, ax, rows, n, _work(c, f32))
    check_alloc(
        9 * rows + p_bytes + q_bytes,
        f"{rows} slices of length {n} (the result and contiguous copies of p and q)",
        func,
        "; pass fewer slices at a time",
    )
    # the same slice for every row: compute one and repeat the result
    k = 1 if (p_one and q_one) else rows
    p2 = _rows_of(a, p_one, shape, ax, rows, n, _work(a, f32))
    q2 = _rows_of(c, q_one, shape, ax, rows, n, _work(c, f32))
    if p_one and k > 1:
        p2 = _repeated(p2, k)
    step = 0 if q_one else 1
    out = np.empty(rows)  # float64: one compiled kernel per input precision; finish rounds
    status = np.zeros(rows, np.uint8)
    if rows:
        _run(p2, q2, step, normalize, cross, logits, f32, out[:k], status[:k])
    raise_status(status[:k], func, lambda r: f"slice {unravel_row(r, lead)} (along axis {ax})",
                 " in p or q")  # fmt: skip
    lb = None if b is None else _to_base(out[:k], b)
    if logits is not None and lb is not None and abs(lb) > 1.0:
        _careful_in_base(p2, q2, step, logits, out[:k], lb)
    elif logits is None and not normalize:
        ex = np.flatnonzero(status[:k] == EXACT)
        if ex.size:  # terms beyond float64: summed again, scaled (rare)
            _raw_scaled(p2[ex], q2[ex] if step else q2[:1], step, cross, out, ex, lb)
    if k < rows:
        out[k:] = out[0]
    return finish(out.reshape(lead), np.dtype(np.float32 if f32 else np.float64), None)


def _run(p2, q2, step, normalize, cross, logits, f32, out, status):
    """The kernel of the call on the rows of ``p2`` (``q2`` rows ``r *
    step``), then the careful or exact kernel on the rows it left."""
    rows, n = p2.shape
    kernel, args = _plan(p2, q2, step, normalize, cross, logits, f32, out, status)
    marked = run(kernel, args, rows, _WORK_PER_ENTRY * rows * max(n, 1))
    if logits is not None:
        if any(marked):
            _careful_rows(p2, q2, step, logits, out)
    elif normalize and f32:
        _exact_rows(p2, q2, step, out, status)


def _to_base(out: np.ndarray, base: float) -> float:
    """``out`` (nats) in ``base``, in place (beyond float64: +-inf, without
    NumPy's warning); returns ``log(base)``."""
    lb = math.log(base)
    with np.errstate(over="ignore"):
        out /= lb
    return lb


def _careful_in_base(zp, zq, step, inv_t, out, lb):
    """Logit rows beyond float64 in nats, which may be finite in a base with
    ``|log(base)| > 1``: summed again by the careful kernel with every term
    divided by ``log(base)`` first (rare: logits near the float64 limit)."""
    redo = np.flatnonzero(np.isinf(out))
    if redo.size:
        kl_logits_careful_rows(zp, zq, step, inv_t, 1.0 / lb, redo, out)


def _raw_scaled(p_rows, q_rows, step, cross, out, where, lb):
    """``out[where]`` (in ``base``, ``lb = log(base)`` or None for nats) of
    the unnormalized rows the kernel marked ``EXACT`` (terms beyond
    float64): summed again with every term scaled by ``RAW_SCALE / lb``
    (no overflow), then divided by ``RAW_SCALE``."""
    sub, status = np.empty(where.size), np.zeros(where.size, np.uint8)
    w = RAW_SCALE if lb is None else RAW_SCALE / lb
    raw_rows(p_rows, q_rows, step, cross, w, sub, status, 0, where.size)
    with np.errstate(over="ignore"):
        out[where] = sub / RAW_SCALE


def _sparse_divergence(p, q, axis, base, normalize, func, cross):
    """Slices of the sparse ``p`` (rows, or columns for ``axis=0``) against a
    dense ``q`` that broadcasts to ``p``'s shape, or a sparse ``q`` of that
    shape (the union of the two patterns)."""
    b = check_base(base, func)
    shape = shape_of(p, func)
    ax = check_axis(axis, 2)
    columns = ax == 0
    m = as_csr(p, func, columns=columns)
    nrows, n = m.shape
    mode = 0 if normalize else 2 if cross else 1
    if is_sparse(q):
        if shape_of(q, func) != shape:
            raise ValueError(
                f"{func}: sparse p and q must have the same shape, got {shape} and "
                f"{shape_of(q, func)}"
            )
        mq = as_csr(q, func, columns=columns)
        f32 = m.dtype in SINGLE and mq.dtype in SINGLE
        q_bytes = 0
    else:
        c = _array(q, "q", func)
        try:
            fits = c.ndim <= 2 and np.broadcast_shapes(shape, c.shape) == shape
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(
                f"{func}: q of shape {c.shape} does not broadcast to p's shape {shape}"
            )
        c = _minimal(c, 2, ax)  # a broadcast view: the data it holds
        if c.shape[ax] != n:
            raise ValueError(
                f"{func}: p and q must have the same length along axis {ax}, "
                f"got {n} and {c.shape[ax]}"
            )
        f32 = m.dtype in SINGLE and c.dtype in SINGLE
        qt = np.moveaxis(c, ax, -1)
        q_bytes = qt.shape[0] * 8 * QTAB_WIDTH
        if not (qt.dtype == _work(c, f32) and qt.flags.c_contiguous):
            q_bytes += qt.shape[0] * n * _work(c, f32).itemsize
    work = np.float32 if f32 else np.float64
    data_bytes = 0 if m.data.dtype == work else m.data.shape[0] * np.dtype(work).itemsize
    check_alloc(
        9 * nrows + q_bytes + data_bytes,
        f"{nrows} slices of length {n} (the result, q's rows and their table)",
        func,
        "; pass fewer slices at a time",
    )
    pm = (m.indptr, m.indices, m.data.astype(work, copy=False).reshape(1, -1))
    out = np.empty(nrows)  # float64: one compiled kernel per input precision
    status = np.zeros(nrows, np.uint8)
    if nrows:
        if is_sparse(q):
            qm = (mq.indptr, mq.indices, mq.data.astype(work, copy=False).reshape(1, -1))
            kernel, args = csr_csr_rows, (pm, qm, mode, out, status)
        else:
            step = int(qt.shape[0] != 1)
            q2 = _rows_c(qt, _work(c, f32))
            tab = np.empty((q2.shape[0], QTAB_WIDTH))
            q_table(q2, tab)
            kernel, args = csr_dense_rows, (pm, q2, step, tab, mode, out, status)
            if mode == 0 and f32:  # the float32-log kernel
                kernel, args = csr_kl32_rows, (pm, q2, step, tab, out, status)
        run_csr(kernel, args, m.indptr, K.ENTROPY_ROW_COST)
        if not is_sparse(q) and mode == 0 and f32:
            for r in np.flatnonzero(status == EXACT).tolist():  # rows beyond float32
                csr_dense_rows(pm, q2, step, tab, 0, out, status, r, r + 1)
    raise_status(status, func, lambda r: f"slice {r} (along axis {ax})", " in p or q")
    lb = None if b is None else _to_base(out, b)
    if mode != 0:  # rows whose terms overflow: summed again, scaled (rare)
        for r in np.flatnonzero(status == EXACT).tolist():
            a, e = int(m.indptr[r]), int(m.indptr[r + 1])  # p = 0 has no term
            q_row = _csr_row(mq, r) if is_sparse(q) else np.asarray(q2[r * step], np.float64)
            p_r = np.array(pm[2][:, a:e], np.float64)
            q_r = q_row[m.indices[a:e]].reshape(1, -1)
            _raw_scaled(p_r, q_r, 1, cross, out, np.array([r]), lb)
    return finish(out, np.dtype(np.float32 if f32 else np.float64), None)


def _csr_row(m, r: int) -> np.ndarray:
    # row r of the canonical CSR m as a dense float64 row
    row = np.zeros(m.shape[1])
    a, e = int(m.indptr[r]), int(m.indptr[r + 1])
    row[m.indices[a:e]] = m.data[a:e]
    return row
