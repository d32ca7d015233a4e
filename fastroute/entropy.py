"""``fastroute.entropy`` and ``fastroute.entropy_from_logits``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _drivers as drv
from ._jit import PARALLEL_MIN_WORK, parallel_guard
from ._sparse import is_sparse, sparse_entropy
from ._validate import (
    HALF_BLOCK_ELEMENTS,
    as_real_array,
    check_axis,
    check_base,
    rows_view,
    unravel_row,
)
from .kernels import entropy32 as K32
from .kernels._math import BLOCK
from .kernels.entropy import EXACT, FLAT_MAX_N, LOGIT_LANES, NEGATIVE, SHORT_LOGITS_N

__all__ = ["entropy", "entropy_from_logits"]


def entropy(
    p: Any, /, *, axis: int = -1, base: float | None = None, normalize: bool = True
) -> np.ndarray:
    """Shannon entropy of every slice of ``p`` along ``axis``.

    Parameters
    ----------
    p : array_like or scipy.sparse matrix
        Probabilities or non-negative counts (bool, integers, float16/32/64),
        ``ndim >= 1``, any layout; or a 2-D SciPy sparse matrix (rows for
        ``axis`` -1/1, columns for 0), whose implicit entries are zeros and
        whose duplicate entries are summed, as in ``p.toarray()``.
    axis : int, default -1
        Axis holding each distribution.
    base : float, optional
        Logarithm base of the result; ``None`` gives nats, ``2`` bits.
    normalize : bool, default True
        True: entropy of ``p / p.sum(axis)`` (as ``scipy.stats.entropy``),
        computed without a normalized copy. False: ``-sum(p * log p)`` of the
        entries as given.

    Returns
    -------
    numpy.ndarray
        Shape of ``p`` without ``axis``. float32 for float16/float32 input,
        float64 otherwise; the sums are always accumulated in float64.

    Notes
    -----
    Zeros contribute exactly 0 (``0 log 0 = 0``). A slice containing NaN or
    ``+inf`` gives NaN. With ``normalize=True`` an all-zero or empty slice
    gives NaN (there is no distribution); with ``normalize=False`` it gives 0.
    For float64 input the error is at most ``1e-12 * H + 2e-15`` also for
    near-deterministic slices such as ``[1e6, 1]``: the largest entry is
    handled through ``log1p`` and every summed term is non-negative.
    float16/float32 input is within 4 float32 ulp of the exact entropy (in
    practice correctly rounded): the logs are float32, the sums float64, and
    a row whose error bound does not prove the 4 ulp is recomputed exactly.
    The bits of a slice's result do not depend on the thread count, on the
    other slices or on the memory layout.
    Sparse input sums over the stored entries only: it agrees with the dense
    result on ``p.toarray()`` within that bound, not always to the last bit.
    The row is split into parallel work by stored entries.

    Raises
    ------
    ValueError
        A slice holds a negative entry (the message names the first one).
    TypeError
        Unsupported dtype, or ``base`` not a number.

    Examples
    --------
    >>> import numpy as np
    >>> import fastroute as fr
    >>> fr.entropy(np.array([[1, 1, 0, 0], [3, 1, 0, 0]]), base=2)
    array([1.        , 0.81127812])
    """
    if type(p) is np.ndarray and axis == -1 and base is None and p.dtype in _FAST_DTYPES:
        small = _small_rows(p, bool(normalize), False)  # None: not the small case
        if small is not None:
            return small
    b = check_base(base, "entropy")
    if type(p) is not np.ndarray and is_sparse(p):
        ax = check_axis(axis, 2)
        out64, status, dtype = sparse_entropy(p, ax, normalize, False, "entropy")
        lead = out64.shape
    else:
        a = as_real_array(p, "entropy")
        ax = check_axis(axis, a.ndim)
        lead = a.shape[:ax] + a.shape[ax + 1 :]
        out64 = np.empty(lead, _out_dtype(a.dtype, b))
        status = np.zeros(lead, np.uint8)
        _run(a, ax, out64.reshape(-1), status.reshape(-1), bool(normalize), False)
        dtype = a.dtype
    if np.count_nonzero(status):
        row = int(np.flatnonzero(status.reshape(-1) == NEGATIVE)[0])
        where = unravel_row(row, lead)
        raise ValueError(
            f"entropy: slice {where} (along axis {ax}) has a negative entry; "
            "probabilities and counts must be >= 0"
        )
    return _finish(out64, dtype, b)


def entropy_from_logits(z: Any, /, *, axis: int = -1, base: float | None = None) -> np.ndarray:
    """Shannon entropy of ``softmax(z)`` along ``axis``, in one stable pass.

    Parameters
    ----------
    z : array_like or scipy.sparse matrix
        Logits (float16/32/64, integers, bool), ``ndim >= 1``, any layout; or
        a 2-D SciPy sparse matrix, whose implicit entries are logits equal to
        0, as in ``z.toarray()``.
    axis : int, default -1
    base : float, optional
        Logarithm base; ``None`` gives nats.

    Returns
    -------
    numpy.ndarray
        Shape of ``z`` without ``axis``; float32 for float16/float32 input,
        float64 otherwise.

    Notes
    -----
    No overflow for any finite logits (``[1e30, 0, -1e30]`` gives 0). ``-inf``
    is probability 0. A slice that is empty, all ``-inf``, or contains NaN or
    ``+inf`` gives NaN. Same accuracy as :func:`entropy`.

    Examples
    --------
    >>> import numpy as np
    >>> import fastroute as fr
    >>> fr.entropy_from_logits(np.array([[0.0, 0.0], [1e30, -1e30]]))
    array([0.69314718, 0.        ])
    """
    if type(z) is np.ndarray and axis == -1 and base is None and z.dtype in _FAST_DTYPES:
        small = _small_rows(z, False, True)
        if small is not None:
            return small
    b = check_base(base, "entropy_from_logits")
    if type(z) is not np.ndarray and is_sparse(z):
        out64, _, dtype = sparse_entropy(z, check_axis(axis, 2), False, True, "entropy_from_logits")
        return _finish(out64, dtype, b)
    a = as_real_array(z, "entropy_from_logits")
    ax = check_axis(axis, a.ndim)
    lead = a.shape[:ax] + a.shape[ax + 1 :]
    out64 = np.empty(lead, _out_dtype(a.dtype, b))
    _run(a, ax, out64.reshape(-1), None, False, True)
    return _finish(out64, a.dtype, b)


_FAST_DTYPES = frozenset((np.dtype(np.float32), np.dtype(np.float64)))
_F32 = np.dtype(np.float32)


def _out_dtype(dtype, base):
    # the kernels write float32 results directly (rounded from the float64
    # value, as the conversion after a division by log(base) would)
    return np.float32 if base is None and dtype.char in "ef" else np.float64


def _small_rows(x, normalize, logits):
    """The lean path of a small 1-D or 2-D float32/float64 array along its
    last axis: the serial kernel called directly, nothing else (one-row calls
    cost about a microsecond of Python). None when ``x`` is not that case;
    the same kernels as the general path, so the same bits."""
    if x.size >= PARALLEL_MIN_WORK or x.ndim > 2 or x.ndim == 0:
        return None
    x2 = x if x.ndim == 2 else x.reshape(1, -1)
    rows, n = x2.shape
    if n == 0 or rows == 0:
        return None
    f32 = x2.dtype == _F32
    out = np.empty(rows, np.float32 if f32 else np.float64)
    if logits and n <= SHORT_LOGITS_N:
        nl = min(LOGIT_LANES, rows)
        drv.logits_short_serial(x2, out, 0, rows, np.empty((n + 5) * nl))
    elif logits:
        drv.logits_serial(x2, out, 0, rows)
    else:
        status = np.zeros(rows, np.uint8)
        if f32 and n <= K32.SHORT_N:
            nl = min(K32.LANES, rows)
            work = np.empty((3 * n * nl + 1) // 2 + 4 * nl)  # K32.work_size(n, rows)
            drv.entropy32_short_serial(x2, normalize, out, status, 0, rows, work)
        elif f32:
            drv.entropy32_long_serial(x2, normalize, out, status, 0, rows, np.empty(4 * BLOCK))
        elif n <= FLAT_MAX_N and x2.flags.c_contiguous:
            drv.entropy_flat_serial(x2, x2.reshape(-1), normalize, out, status, 0, rows)
        else:
            drv.entropy_serial(x2, normalize, out, status, 0, rows)
        if np.count_nonzero(status):  # (faster than .any() on small arrays)
            _exact_rows(x2, normalize, out, status)
            if np.count_nonzero(status):
                return None  # a negative entry: the general path names it
    return out.reshape(()) if x.ndim == 1 else out


def _run(a, ax, out, status, normalize, logits):
    r0 = 0
    for block in rows_view(a.view(np.uint8) if a.dtype == np.bool_ else a, ax):
        r1 = r0 + block.shape[0]
        _rows(block, out[r0:r1], None if status is None else status[r0:r1], normalize, logits)
        r0 = r1


def _rows(x2, out, status, normalize, logits):
    if x2.shape[0] == 0:
        return
    if x2.dtype == np.float16:  # Numba has no float16: widen row blocks (exact)
        step = max(1, HALF_BLOCK_ELEMENTS // max(1, x2.shape[1]))
        for r in range(0, x2.shape[0], step):
            st = None if status is None else status[r : r + step]
            _rows(x2[r : r + step].astype(np.float32), out[r : r + step], st, normalize, logits)
        return
    # short C-contiguous rows: many rows per vectorized loop (same bits)
    flat = not logits and x2.shape[1] <= FLAT_MAX_N and x2.flags.c_contiguous
    f32 = not logits and x2.dtype == np.float32
    with parallel_guard(x2.size) as par:
        if f32:
            _rows32(x2, normalize, out, status, par)
        elif logits and x2.shape[1] <= SHORT_LOGITS_N and par:
            drv.logits_short_parallel(x2, out, drv.n_chunks(x2.shape[0]))
        elif logits and x2.shape[1] <= SHORT_LOGITS_N:
            nl = min(LOGIT_LANES, x2.shape[0])
            work = np.empty((x2.shape[1] + 5) * nl)
            drv.logits_short_serial(x2, out, 0, x2.shape[0], work)
        elif logits and par:
            drv.logits_parallel(x2, out, drv.n_chunks(x2.shape[0]))
        elif logits:
            drv.logits_serial(x2, out, 0, x2.shape[0])
        elif flat and par:
            drv.entropy_flat_parallel(
                x2, x2.reshape(-1), normalize, out, status, drv.n_chunks(x2.shape[0])
            )
        elif flat:
            drv.entropy_flat_serial(x2, x2.reshape(-1), normalize, out, status, 0, x2.shape[0])
        elif par:
            drv.entropy_parallel(x2, normalize, out, status, drv.n_chunks(x2.shape[0]))
        else:
            drv.entropy_serial(x2, normalize, out, status, 0, x2.shape[0])
    if not logits:
        _exact_rows(x2, normalize, out, status)


def _rows32(x2, normalize, out, status, par):
    # float32: the kernel of the row length (exact rows left marked EXACT)
    nrows = x2.shape[0]
    if x2.shape[1] <= K32.SHORT_N:
        fast, fast_par = drv.entropy32_short_serial, drv.entropy32_short_parallel
    else:
        fast, fast_par = drv.entropy32_long_serial, drv.entropy32_long_parallel
    if par:
        fast_par(x2, normalize, out, status, drv.n_chunks(nrows))
    else:
        fast(x2, normalize, out, status, 0, nrows, np.empty(K32.WORK32_SIZE))


def _exact_rows(x2, normalize, out, status):
    # the exact kernel for the rows the one-pass bound could not certify
    # (compiled only when some row needs it)
    exact = np.flatnonzero(status == EXACT)
    if exact.size == 0:
        return
    lo, hi = int(exact[0]), int(exact[-1]) + 1
    with parallel_guard(exact.size * x2.shape[1]) as par:
        if par:
            drv.entropy_exact_parallel(
                x2[lo:hi], normalize, out[lo:hi], status[lo:hi], drv.n_chunks(hi - lo)
            )
        else:
            drv.entropy_exact_serial(
                x2, normalize, out, status, lo, hi, np.empty(BLOCK), np.empty(BLOCK)
            )


def _finish(out64, dtype, base):
    if base is not None:
        out64 /= math.log(base)
    if dtype.char in "ef" and out64.dtype != np.float32:
        out32 = np.empty(out64.shape, np.float32)
        drv.to_float32(out64.reshape(-1), out32.reshape(-1))  # |H| > float32 max -> +-inf
        return out32
    return out64
