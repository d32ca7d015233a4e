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
from .kernels._fast import top_k_keys_f32
from .kernels.entropy import WORK_SIZE, entropy_logits_1d, entropy_status_1d
from .kernels.select import top_k_1d

#: float32 rows of at most this length, with k at most KEYS_MAX_K, use the
#: vectorized key kernel; everything else the bounded insertion buffer/heap.
KEYS_MAX_N = 1024
KEYS_MAX_K = 16


@jit(inline="always")
def _chunk(c, nchunks, nrows):
    return (c * nrows) // nchunks, ((c + 1) * nrows) // nchunks


@jit(inline="always")
def _n_chunks(nrows):
    return min(nrows, 16 * numba.get_num_threads())


# --- top-k: generic (any dtype, any k) ---------------------------------------


@jit
def _topk_rows(x, k, largest, sort, vals, idxs, lo, hi):
    for r in range(lo, hi):
        top_k_1d(x[r], k, largest, sort, vals[r], idxs[r])


@jit
def topk_serial(x, k, largest, sort, vals, idxs):
    _topk_rows(x, k, largest, sort, vals, idxs, 0, x.shape[0])


@pjit
def topk_parallel(x, k, largest, sort, vals, idxs):
    nchunks = _n_chunks(x.shape[0])
    for c in numba.prange(nchunks):
        lo, hi = _chunk(c, nchunks, x.shape[0])
        _topk_rows(x, k, largest, sort, vals, idxs, lo, hi)


# --- top-k: short float32 rows, small k -------------------------------------


@jit
def _topk_rows_keys(x, k, largest, vals, idxs, lo, hi):
    fbuf = np.empty(x.shape[1], np.float32)
    keys = np.empty(x.shape[1], np.int64)
    for r in range(lo, hi):
        top_k_keys_f32(x[r], k, largest, fbuf, keys, vals[r], idxs[r])


@jit
def topk_keys_serial(x, k, largest, vals, idxs):
    _topk_rows_keys(x, k, largest, vals, idxs, 0, x.shape[0])


@pjit
def topk_keys_parallel(x, k, largest, vals, idxs):
    nchunks = _n_chunks(x.shape[0])
    for c in numba.prange(nchunks):
        lo, hi = _chunk(c, nchunks, x.shape[0])
        _topk_rows_keys(x, k, largest, vals, idxs, lo, hi)


# --- entropy of probabilities / counts --------------------------------------


@jit
def _entropy_rows(p, normalize, out, status, lo, hi):
    work = np.empty(WORK_SIZE)
    for r in range(lo, hi):
        out[r], status[r] = entropy_status_1d(p[r], normalize, work)


@jit
def entropy_serial(p, normalize, out, status):
    _entropy_rows(p, normalize, out, status, 0, p.shape[0])


@pjit
def entropy_parallel(p, normalize, out, status):
    nchunks = _n_chunks(p.shape[0])
    for c in numba.prange(nchunks):
        lo, hi = _chunk(c, nchunks, p.shape[0])
        _entropy_rows(p, normalize, out, status, lo, hi)


# --- entropy of logits -------------------------------------------------------


@jit
def _logits_rows(z, out, lo, hi):
    work = np.empty(WORK_SIZE)
    for r in range(lo, hi):
        out[r] = entropy_logits_1d(z[r], work)


@jit
def logits_serial(z, out):
    _logits_rows(z, out, 0, z.shape[0])


@pjit
def logits_parallel(z, out):
    nchunks = _n_chunks(z.shape[0])
    for c in numba.prange(nchunks):
        lo, hi = _chunk(c, nchunks, z.shape[0])
        _logits_rows(z, out, lo, hi)
