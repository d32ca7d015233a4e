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
from .kernels.divergence import (
    cross_rows,
    csr_csr_rows,
    csr_dense_rows,
    kl_logits_long_rows,
    kl_logits_short_rows,
    kl_rows,
    raw_rows,
)
from .kernels.divergence32 import csr_kl32_rows, kl32_long_rows, kl32_short_rows
from .kernels.entropy import (
    EXACT,
    LOGITS_WORK_SIZE,
    SHORT64_WORK_SIZE,
    _entropy_one_pass,
    entropy_logits_row,
    exact_rows,
    logits_short_rows,
    short_rows64,
)
from .kernels.entropy32 import WORK32_SIZE, long_rows, short_rows
from .kernels.select import _select_heap, _select_insertion

# Every parallel twin takes `nchunks` from the caller (see `n_chunks`):
# reading the thread count inside a cached kernel would freeze it.


@jit(inline="always")
def _chunk(c, nchunks, nrows):
    return (c * nrows) // nchunks, ((c + 1) * nrows) // nchunks


def n_chunks(nrows: int) -> int:
    """Chunks for a parallel launch: enough for load balance on a noisy machine."""
    return max(1, min(nrows, 16 * numba.get_num_threads()))


# Each family has a ``*_serial`` kernel over rows ``lo:hi`` (called directly
# by the wrappers: a jitted wrapper around it would compile its code a second
# time) and a ``*_parallel`` twin, a thin prange loop over chunks of rows.

# --- top-k: generic (any dtype, any k) ---------------------------------------


@jit
def _topk_rows(x, k, largest, sort, vals, idxs, lo, hi):
    # k <= INSERTION_MAX_K: the sorted insertion buffer
    n = x.shape[1]
    for r in range(lo, hi):
        _select_insertion(x, r, 0, n, k, largest, vals, idxs, r)


topk_serial = _topk_rows


@pjit
def topk_parallel(x, k, largest, sort, vals, idxs, nchunks):
    for c in numba.prange(nchunks):
        lo, hi = _chunk(c, nchunks, x.shape[0])
        _topk_rows(x, k, largest, sort, vals, idxs, lo, hi)


@jit
def _topk_heap_rows(x, k, largest, sort, vals, idxs, lo, hi):
    # larger k: the binary heap
    n = x.shape[1]
    for r in range(lo, hi):
        _select_heap(x, r, 0, n, k, largest, sort, vals, idxs, r)


topk_heap_serial = _topk_heap_rows


@pjit
def topk_heap_parallel(x, k, largest, sort, vals, idxs, nchunks):
    for c in numba.prange(nchunks):
        lo, hi = _chunk(c, nchunks, x.shape[0])
        _topk_heap_rows(x, k, largest, sort, vals, idxs, lo, hi)


# --- top-k: short float32 rows, small k -------------------------------------

topk_keys_serial = topk_keys_rows


@pjit
def topk_keys_parallel(x, k, largest, vals, idxs, nchunks):
    for c in numba.prange(nchunks):
        lo, hi = _chunk(c, nchunks, x.shape[0])
        topk_keys_rows(x, k, largest, vals, idxs, lo, hi)


# --- entropy of probabilities / counts (float64, integers) ------------------


@jit
def _entropy_rows(p, normalize, out, status, lo, hi):
    # the one-pass formula; rows its bound rejects are marked EXACT
    b0, b1, b2 = np.empty(BLOCK), np.empty(BLOCK), np.empty(BLOCK)
    n = p.shape[1]
    for r in range(lo, hi):
        h, st, ok = _entropy_one_pass(p, r, 0, n, normalize, b0, b1, b2)
        out[r] = h
        status[r] = st if ok else EXACT


entropy_serial = _entropy_rows


@pjit
def entropy_parallel(p, normalize, out, status, nchunks):
    for c in numba.prange(nchunks):
        lo, hi = _chunk(c, nchunks, p.shape[0])
        _entropy_rows(p, normalize, out, status, lo, hi)


entropy64_short_serial = short_rows64


@pjit
def entropy64_short_parallel(p, normalize, out, status, nchunks):
    for c in numba.prange(nchunks):
        lo, hi = _chunk(c, nchunks, p.shape[0])
        short_rows64(p, normalize, out, status, lo, hi, np.empty(SHORT64_WORK_SIZE))


# --- entropy of float32 probabilities / counts -------------------------------
# the kernel of the row length, then the exact one for rows marked EXACT

entropy32_short_serial = short_rows
entropy32_long_serial = long_rows


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


# --- entropy of short logit rows (rows as SIMD lanes) ----------------------

logits_short_serial = logits_short_rows


@pjit
def logits_short_parallel(z, out, nchunks):
    for c in numba.prange(nchunks):
        lo, hi = _chunk(c, nchunks, z.shape[0])
        logits_short_rows(z, out, lo, hi, np.empty(LOGITS_WORK_SIZE))


# --- the exact kernel, for rows marked EXACT (any dtype) --------------------

entropy_exact_serial = exact_rows


@pjit
def entropy_exact_parallel(p, normalize, out, status, nchunks):
    for c in numba.prange(nchunks):
        lo, hi = _chunk(c, nchunks, p.shape[0])
        exact_rows(p, normalize, out, status, lo, hi, np.empty(BLOCK), np.empty(BLOCK))


# --- entropy of logits -------------------------------------------------------


@jit
def _logits_rows(z, out, lo, hi):
    b0, b1 = np.empty(BLOCK), np.empty(BLOCK)
    for r in range(lo, hi):
        out[r] = entropy_logits_row(z, r, b0, b1)


logits_serial = _logits_rows


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


# --- relative entropy / cross-entropy ---------------------------------------

kl_serial = kl_rows
#: one-call normalized cross-entropy of a few float64 rows (the small-call path)
cross_serial = cross_rows
divergence_raw_serial = raw_rows


@pjit
def kl_parallel(p, q, q_step, out, status, nchunks):
    for c in numba.prange(nchunks):
        lo, hi = _chunk(c, nchunks, p.shape[0])
        kl_rows(p, q, q_step, out, status, lo, hi)


@pjit
def divergence_raw_parallel(p, q, q_step, cross, out, status, nchunks):
    for c in numba.prange(nchunks):
        lo, hi = _chunk(c, nchunks, p.shape[0])
        raw_rows(p, q, q_step, cross, out, status, lo, hi)


#: float32 rows: the float32-log kernels, short rows (tiles) or long rows
#: (rows they mark EXACT: kl_rows)
kl32_short_serial = kl32_short_rows
kl32_long_serial = kl32_long_rows


@pjit
def kl32_short_parallel(p, q, q_step, out, status, nchunks):
    for c in numba.prange(nchunks):
        lo, hi = _chunk(c, nchunks, p.shape[0])
        kl32_short_rows(p, q, q_step, out, status, lo, hi)


@pjit
def kl32_long_parallel(p, q, q_step, out, status, nchunks):
    for c in numba.prange(nchunks):
        lo, hi = _chunk(c, nchunks, p.shape[0])
        kl32_long_rows(p, q, q_step, out, status, lo, hi)


kl_logits_short_serial = kl_logits_short_rows
kl_logits_long_serial = kl_logits_long_rows


@pjit
def kl_logits_short_parallel(zp, zq, q_step, inv_t, out, nchunks):
    for c in numba.prange(nchunks):
        lo, hi = _chunk(c, nchunks, zp.shape[0])
        kl_logits_short_rows(zp, zq, q_step, inv_t, out, lo, hi)


@pjit
def kl_logits_long_parallel(zp, zq, q_step, inv_t, out, nchunks):
    for c in numba.prange(nchunks):
        lo, hi = _chunk(c, nchunks, zp.shape[0])
        kl_logits_long_rows(zp, zq, q_step, inv_t, out, lo, hi)


# sparse p: the chunks' row bounds come from ``kernels.csr.entry_chunks``
csr_dense_serial = csr_dense_rows
csr_csr_serial = csr_csr_rows


@pjit
def csr_dense_parallel(pm, q, q_step, tab, mode, out, status, bounds):
    for c in numba.prange(bounds.shape[0] - 1):
        csr_dense_rows(pm, q, q_step, tab, mode, out, status, bounds[c], bounds[c + 1])


@pjit
def csr_csr_parallel(pm, qm, mode, out, status, bounds):
    for c in numba.prange(bounds.shape[0] - 1):
        csr_csr_rows(pm, qm, mode, out, status, bounds[c], bounds[c + 1])


#: float32 CSR rows against a dense float32 q (rows it marks EXACT: csr_dense_rows)
csr_kl32_serial = csr_kl32_rows


@pjit
def csr_kl32_parallel(pm, q, q_step, tab, out, status, bounds):
    for c in numba.prange(bounds.shape[0] - 1):
        csr_kl32_rows(pm, q, q_step, tab, out, status, bounds[c], bounds[c + 1])
