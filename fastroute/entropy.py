"""``fastroute.entropy`` and ``fastroute.entropy_from_logits``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._dtypes import F32, FAST_DTYPES, SINGLE, compute_dtype, real_array
from ._execute import finish, min_work, run
from ._sparse import as_csr, is_sparse, sparse_entropy
from ._validate import (
    check_axis,
    check_base,
    raise_status,
    rows_view,
    unravel_row,
)
from .kernels import entropy as KE
from .kernels import entropy32 as K32
from .kernels._math import BLOCK
from .kernels.divergence import RAW_SCALE, raw_rows
from .kernels.entropy import (
    EXACT,
    LANES64,
    LOGIT_LANES,
    SHORT64_N,
    SHORT_LOGITS_N,
)

__all__ = ["entropy", "entropy_from_logits"]


def entropy(
    p: Any, /, *, axis: int = -1, base: float | None = None, normalize: bool = True
) -> np.ndarray:
    """Shannon entropy of every slice of ``p`` along ``axis``.

    Parameters
    ----------
    p : array_like or scipy.sparse matrix
        Probabilities or non-negative counts (bool, integers, float16/32/64, bfloat16),
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
        Shape of ``p`` without ``axis``. float32 for float16/bfloat16/float32 input,
        float64 otherwise; the sums are always accumulated in float64.

    Notes
    -----
    Zeros contribute exactly 0 (``0 log 0 = 0``). A slice containing NaN or
    ``+inf`` gives NaN. With ``normalize=True`` an all-zero or empty slice
    gives NaN (there is no distribution); with ``normalize=False`` it gives 0.
    For float64 input the error is at most ``1e-12 * H + 2e-15`` also for
    near-deterministic slices such as ``[1e6, 1]``: the largest entry is
    handled through ``log1p`` and every summed term is non-negative.
    float16/bfloat16/float32 input is within 4 float32 ulp of the exact entropy (in
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
    if type(p) is np.ndarray and axis == -1 and base is None and p.dtype in FAST_DTYPES:
        small = _small_rows(p, bool(normalize), False)  # None: not the small case
        if small is not None:
            return small
    b = check_base(base, "entropy")
    if type(p) is not np.ndarray and is_sparse(p):
        ax = check_axis(axis, 2)
        out64, status, dtype = sparse_entropy(p, ax, normalize, False, "entropy")
        lead = out64.shape
    else:
        a = real_array(p, "entropy")
        ax = check_axis(axis, a.ndim)
        lead = a.shape[:ax] + a.shape[ax + 1 :]
        out64 = np.empty(lead, _out_dtype(a.dtype, b))
        status = np.zeros(lead, np.uint8)
        _run(a, ax, out64.reshape(-1), status.reshape(-1), bool(normalize), False)
        dtype = a.dtype
    if np.count_nonzero(status):
        raise_status(status.reshape(-1), "entropy",
                     lambda r: f"slice {unravel_row(r, lead)} (along axis {ax})")  # fmt: skip
    if b is None or normalize:
        return finish(out64, dtype, b)
    # -sum p log p beyond float64 in nats may be finite in a base with
    # |log(base)| > 1 (entries near the float64 maximum): summed again
    beyond = np.flatnonzero(np.isinf(out64.reshape(-1)))
    out = finish(out64, dtype, b)
    if beyond.size:
        if is_sparse(p):
            rows = _stored_rows(as_csr(p, "entropy", columns=ax == 0), beyond)
        else:
            rows = np.moveaxis(a, ax, -1)[np.unravel_index(beyond, lead)] if lead else a[None]
        out.reshape(-1)[beyond] = _raw_in_base(np.asarray(rows, np.float64), math.log(b))
    return out


def entropy_from_logits(z: Any, /, *, axis: int = -1, base: float | None = None) -> np.ndarray:
    """Shannon entropy of ``softmax(z)`` along ``axis``, in one stable pass.

    Parameters
    ----------
    z : array_like or scipy.sparse matrix
        Logits (float16/32/64, bfloat16, integers, bool), ``ndim >= 1``, any layout; or
        a 2-D SciPy sparse matrix, whose implicit entries are logits equal to
        0, as in ``z.toarray()``.
    axis : int, default -1
    base : float, optional
        Logarithm base; ``None`` gives nats.

    Returns
    -------
    numpy.ndarray
        Shape of ``z`` without ``axis``; float32 for float16/bfloat16/float32 input,
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
    if type(z) is np.ndarray and axis == -1 and base is None and z.dtype in FAST_DTYPES:
        small = _small_rows(z, False, True)
        if small is not None:
            return small
    b = check_base(base, "entropy_from_logits")
    if type(z) is not np.ndarray and is_sparse(z):
        out64, _, dtype = sparse_entropy(z, check_axis(axis, 2), False, True, "entropy_from_logits")
        return finish(out64, dtype, b)
    a = real_array(z, "entropy_from_logits")
    ax = check_axis(axis, a.ndim)
    lead = a.shape[:ax] + a.shape[ax + 1 :]
    out64 = np.empty(lead, _out_dtype(a.dtype, b))
    _run(a, ax, out64.reshape(-1), None, False, True)
    return finish(out64, a.dtype, b)


def _out_dtype(dtype, base):
    # the kernels write float32 results directly (rounded from the float64
    # value, as the conversion after a division by log(base) would)
    return compute_dtype(dtype) if base is None else np.float64


def _small_rows(x, normalize, logits):
    """The lean path of a small 1-D or 2-D float32/float64 array along its
    last axis: the row dispatch of the general path (``_rows``, serial)
    without its validation and layout handling, so one-row calls cost about
    a microsecond of Python. None when ``x`` is not that case (or holds a
    negative entry, which the general path then reports)."""
    if 2 * x.size >= min_work() or x.ndim > 2 or x.ndim == 0:
        return None
    x2 = x if x.ndim == 2 else x.reshape(1, -1)
    rows, n = x2.shape
    if n == 0 or rows == 0:
        return None
    out = np.empty(rows, np.float32 if x2.dtype == F32 else np.float64)
    status = None if logits else np.zeros(rows, np.uint8)
    if _rows(x2, out, status, normalize, logits):
        return None  # a negative entry: the general path names it
    return out.reshape(()) if x.ndim == 1 else out


def _run(a, ax, out, status, normalize, logits):
    r0 = 0
    for block in rows_view(a.view(np.uint8) if a.dtype == np.bool_ else a, ax):
        r1 = r0 + block.shape[0]
        _rows(block, out[r0:r1], None if status is None else status[r0:r1], normalize, logits)
        r0 = r1


def _rows(x2, out, status, normalize, logits):
    """Fill ``out`` (and ``status``) for the rows of the 2-D ``x2``; returns
    True when some row is left with a nonzero status (a negative entry)."""
    if x2.shape[0] == 0:
        return False
    rows, n = x2.shape
    f32 = x2.dtype in SINGLE  # float32 and the half floats (read as bits)
    if not logits and f32 and rows == 1 and n <= K32.SHORT_N:
        K32.one_short_row(x2, 0, normalize, out, status)  # the bits of a lane of a tile
    else:
        kernel, scratch, cost = _plan(logits, f32, n)
        args = (x2, out) if logits else (x2, normalize, out, status)
        run(kernel, args, rows, cost * x2.size, scratch)
    return False if logits else _exact_rows(x2, normalize, out, status)


def _plan(logits, f32, n):
    """(row kernel, its float64 scratch per chunk, work per element) for
    rows of ``n`` entries: short rows go as SIMD lanes (logits: any dtype;
    probabilities: float32 logs, or float64), long rows one by one. The
    probability kernels mark the rows their error bound cannot certify
    ``EXACT`` (for ``_exact_rows``)."""
    if logits:
        if n <= SHORT_LOGITS_N:
            return KE.logits_short_rows, lambda m: ((n + 5) * min(LOGIT_LANES, m),), 2
        return KE.logits_rows, (), 2
    if f32:
        if n <= K32.SHORT_N:
            return K32.short_rows, lambda m: (K32.work_size(n, max(m, 2)),), 1
        return K32.long_rows, (4 * BLOCK,), 1
    if n <= SHORT64_N:
        return KE.short_rows64, lambda m: ((n + 4) * min(LANES64, m),), 2
    return KE.one_pass_rows, (), 2


def _exact_rows(x2, normalize, out, status):
    """The exact kernel for the rows the one-pass bound could not certify
    (compiled only when some row needs it); returns True when some row's
    status is still nonzero afterwards (a negative entry)."""
    if not np.count_nonzero(status):  # the common case, cheap on small arrays
        return False
    exact = np.flatnonzero(status == EXACT)
    if exact.size:
        lo, hi = int(exact[0]), int(exact[-1]) + 1
        args = (x2[lo:hi], normalize, out[lo:hi], status[lo:hi])
        run(KE.exact_rows, args, hi - lo, 4 * exact.size * x2.shape[1], (BLOCK, BLOCK))
    return bool(np.count_nonzero(status))


def _stored_rows(m, where):
    """The stored entries of the CSR rows ``where`` of ``m``, zero-padded to
    one length (zeros add nothing to ``-sum p log p``)."""
    lens = m.indptr[where + 1] - m.indptr[where]
    rows = np.zeros((where.size, int(lens.max())))
    for i, r in enumerate(where.tolist()):
        rows[i, : lens[i]] = m.data[m.indptr[r] : m.indptr[r + 1]]
    return rows


def _raw_in_base(rows, lb):
    """``-sum p log p / lb`` of the float64 ``rows``, every term scaled
    before it is summed (no overflow; ``+-inf`` only beyond float64)."""
    sub, status = np.empty(rows.shape[0]), np.zeros(rows.shape[0], np.uint8)
    raw_rows(rows, rows, 1, True, RAW_SCALE / lb, sub, status, 0, rows.shape[0])
    with np.errstate(over="ignore"):
        return sub / RAW_SCALE
