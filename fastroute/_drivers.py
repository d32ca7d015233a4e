"""Row loops over 2-D arrays: a serial and a parallel twin for each kernel.

Rows are processed in chunks so that scratch buffers are allocated once per
chunk, never per row. Each row's result depends only on that row and on the
same compiled kernel, so serial, parallel and any thread count give
identical bits.
"""

from __future__ import annotations

import numba
import numpy as np

from ._jit import jit, pjit
from .kernels._fast import topk_keys_rows
from .kernels._math import BLOCK
from .kernels.entropy import entropy_flat_rows, entropy_logits_row, entropy_row
from .kernels.entropy32 import WORK32_SIZE, exact_rows, long_rows, short_rows
from .kernels.select import top_k_row

# Every parallel twin takes `nchunks` from the caller (see `n_chunks`):
# reading the thread count inside a cached kernel would freeze it.


@jit(inline="always")
def _chunk(c, nchunks, nrows):
    return (c * nrows) // nchunks, ((c + 1) * nrows) // nchunks


def n_chunks(nrows: int) -> int:
    """Chunks for a parallel launch: enough for load balance on a noisy machine."""
    return max(1, min(nrows, 16 * numba.get_num_threads()))


# --- top-k: generic (any dtype, any k) ---------------------------------------


@jit
def _topk_rows(x, k, largest, sort, vals, idxs, lo, hi):
    for r in range(lo, hi):
        top_k_row(x, r, k, largest, sort, vals, idxs)


@jit
def topk_serial(x, k, largest, sort, vals, idxs):
    _topk_rows(x, k, largest, sort, vals, idxs, 0, x.shape[0])


@pjit
def topk_parallel(x, k, largest, sort, vals, idxs, nchunks):
    for c in numba.prange(nchunks):
        lo, hi = _chunk(c, nchunks, x.shape[0])
        _topk_rows(x, k, largest, sort, vals, idxs, lo, hi)


# --- top-k: short float32 rows, small k -------------------------------------


@jit
def topk_keys_serial(x, k, largest, vals, idxs):
    topk_keys_rows(x, k, largest, vals, idxs, 0, x.shape[0])


@pjit
def topk_keys_parallel(x, k, largest, vals, idxs, nchunks):
    for c in numba.prange(nchunks):
        lo, hi = _chunk(c, nchunks, x.shape[0])
        topk_keys_rows(x, k, largest, vals, idxs, lo, hi)


# --- entropy of probabilities / counts --------------------------------------


@jit
def _entropy_rows(p, normalize, out, status, lo, hi):
    b0, b1, b2 = np.empty(BLOCK), np.empty(BLOCK), np.empty(BLOCK)
    for r in range(lo, hi):
        out[r], status[r] = entropy_row(p, r, normalize, b0, b1, b2)


@jit
def entropy_serial(p, normalize, out, status):
    _entropy_rows(p, normalize, out, status, 0, p.shape[0])


@pjit
def entropy_parallel(p, normalize, out, status, nchunks):
    for c in numba.prange(nchunks):
        lo, hi = _chunk(c, nchunks, p.shape[0])
        _entropy_rows(p, normalize, out, status, lo, hi)


@jit
def entropy_flat_serial(p, flat, normalize, out, status):
    entropy_flat_rows(p, flat, normalize, out, status, 0, p.shape[0])


@pjit
def entropy_flat_parallel(p, flat, normalize, out, status, nchunks):
    for c in numba.prange(nchunks):
        lo, hi = _chunk(c, nchunks, p.shape[0])
        entropy_flat_rows(p, flat, normalize, out, status, lo, hi)


# float32 rows: the fast kernels are called directly for the serial path (a
# jitted wrapper would compile their code a second time); rows they leave
# to the exact kernel are marked EXACT.


@pjit
def entropy32_short_parallel(p, normalize, out, status, nchunks):
    for c in numba.prange(nchunks):
        lo, hi = _chunk(c, nchunks, p.shape[0])
        short_rows(p, normalize, out, status, lo, hi, np.empty(WORK32_SIZE))


@pjit
def entropy32_long_parallel(p, normalize, out, status, nchunks):
    for c in numba.prange(nchunks):
        lo, hi = _chunk(c, nchunks, p.shape[0])
        long_rows(p, normalize, out, status, lo, hi, np.empty(WORK32_SIZE))


@pjit
def entropy32_exact_parallel(p, normalize, out, status, nchunks):
    for c in numba.prange(nchunks):
        lo, hi = _chunk(c, nchunks, p.shape[0])
        exact_rows(p, normalize, out, status, lo, hi, np.empty(BLOCK), np.empty(BLOCK))


# --- entropy of logits -------------------------------------------------------


@jit
def _logits_rows(z, out, lo, hi):
    b0, b1 = np.empty(BLOCK), np.empty(BLOCK)
    for r in range(lo, hi):
        out[r] = entropy_logits_row(z, r, b0, b1)


@jit
def logits_serial(z, out):
    _logits_rows(z, out, 0, z.shape[0])


@pjit
def logits_parallel(z, out, nchunks):
    for c in numba.prange(nchunks):
        lo, hi = _chunk(c, nchunks, z.shape[0])
        _logits_rows(z, out, lo, hi)


@jit
def to_float32(src, dst):
    """``dst[:] = src`` rounded to float32 (overflow to +-inf, without NumPy's warning)."""
    for i in range(src.shape[0]):
        dst[i] = np.float32(src[i])
