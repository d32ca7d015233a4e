"""The public 1-D entropy kernels, ``entropy_1d`` and ``entropy_logits_1d``,
for use inside your own Numba code: one slice at a time, with the bits of
the public functions (float32 slices take the float32-log kernel of
``entropy32``, as ``fastroute.entropy`` does)."""

from __future__ import annotations

import numpy as np
from numba import types
from numba.extending import overload

from .._jit import jit
from ._math import BLOCK
from .entropy import (
    EXACT,
    SHORT64_N,
    SHORT_LOGITS_N,
    WORK_SIZE,
    entropy_logits_row,
    entropy_row,
    entropy_two_pass,
    logits_short_rows,
    short_rows64,
)
from .entropy32 import WORK32_ONE_ROW, entropy32_rows

__all__ = ["entropy_1d", "entropy_logits_1d", "entropy_status_1d", "WORK_SIZE"]


def _one_row32(p2, normalize, work):
    out = work[WORK32_ONE_ROW : WORK32_ONE_ROW + 1]
    status = work[WORK32_ONE_ROW + 1 : WORK32_ONE_ROW + 2].view(np.int64)
    entropy32_rows(p2, normalize, out, status, 0, 1, work)
    return out[0], status[0]


def _one_row64(p2, normalize, work):
    b0, b1, b2 = work[:BLOCK], work[BLOCK : 2 * BLOCK], work[2 * BLOCK : 3 * BLOCK]
    if p2.shape[1] > SHORT64_N:
        return entropy_row(p2, 0, normalize, b0, b1, b2)
    out = work[3 * BLOCK : 3 * BLOCK + 1]  # as the public functions do (same bits)
    status = work[3 * BLOCK + 1 : 3 * BLOCK + 2].view(np.int64)
    short_rows64(p2, normalize, out, status, 0, 1, b0)
    if status[0] == EXACT:
        return entropy_two_pass(p2, 0, 0, p2.shape[1], normalize, b0, b1)
    return out[0], status[0]


def _slice_entropy(p2, normalize, work):
    """(h, status) of the one-row 2-D ``p2``: the kernel of its dtype."""
    return (_one_row32 if p2.dtype == np.float32 else _one_row64)(p2, normalize, work)


@overload(_slice_entropy, jit_options={"error_model": "numpy"})
def _slice_entropy_impl(p2, normalize, work):
    return _one_row32 if p2.dtype == types.float32 else _one_row64


@jit
def entropy_status_1d(p, normalize, work):
    """Entropy (nats, float64) of the 1-D slice ``p`` and a status code.

    Returns ``(h, status)`` with ``status == NEGATIVE`` (and ``h`` NaN) when
    the slice holds a negative number, else ``OK``. ``work`` is a float64
    scratch array of at least ``WORK_SIZE`` elements.
    """
    return _slice_entropy(np.expand_dims(p, 0), normalize, work)


@jit
def entropy_1d(p, normalize, work):
    """Shannon entropy in nats (float64) of the 1-D slice ``p``.

    ``normalize=True``: entropy of ``p / p.sum()``; ``False``: ``-sum p log p``
    of the entries as given. Zeros contribute 0. NaN or ``+inf`` anywhere, a
    negative entry, or (normalize) an all-zero/empty slice give NaN, not an
    error: validate the values first if you need errors.
    ``work``: float64 scratch, at least ``WORK_SIZE`` elements; a shorter
    one raises ``ValueError`` (one compare per call).

    Examples
    --------
    >>> import numpy as np, numba
    >>> from fastroute.kernels import entropy_1d, WORK_SIZE
    >>> @numba.njit
    ... def row_entropies(P):
    ...     work = np.empty(WORK_SIZE)
    ...     out = np.empty(P.shape[0])
    ...     for i in range(P.shape[0]):
    ...         out[i] = entropy_1d(P[i], True, work)
    ...     return out
    >>> row_entropies(np.array([[1.0, 1.0], [1.0, 0.0]]))
    array([0.69314718, 0.        ])
    """
    if work.shape[0] < WORK_SIZE:
        raise ValueError("entropy_1d: work is too short; pass np.empty(WORK_SIZE)")
    return entropy_status_1d(p, normalize, work)[0]


@jit
def entropy_logits_1d(z, work):
    """Shannon entropy in nats (float64) of ``softmax(z)`` for the 1-D slice ``z``.

    Stable for any finite logits; ``-inf`` is probability 0; NaN, ``+inf``,
    an all-``-inf`` or an empty slice give NaN. ``work``: float64 scratch of at
    least ``WORK_SIZE`` elements; a shorter one raises ``ValueError`` (one
    compare per call).

    Examples
    --------
    >>> import numpy as np, numba
    >>> from fastroute.kernels import entropy_logits_1d, WORK_SIZE
    >>> @numba.njit
    ... def h(z):
    ...     return entropy_logits_1d(z, np.empty(WORK_SIZE))
    >>> float(h(np.array([1e30, 0.0, -1e30])))
    0.0
    """
    if work.shape[0] < WORK_SIZE:
        raise ValueError("entropy_logits_1d: work is too short; pass np.empty(WORK_SIZE)")
    z2 = np.expand_dims(z, 0)
    if z.shape[0] <= SHORT_LOGITS_N:  # as the public function does (same bits)
        out = work[-1:]
        logits_short_rows(z2, out, 0, 1, work[:-1])
        return out[0]
    return entropy_logits_row(z2, 0, work[:BLOCK], work[BLOCK:])
