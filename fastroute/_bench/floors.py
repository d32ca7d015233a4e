"""Lower bounds for the benchmark tables: the read floor and the compute floor.

Neither is a peer: both skip everything that makes a result correct (NaN
rules, exactness, row bookkeeping) and keep only work that any
implementation must do.

* **Read floor** -- a parallel, vectorized sum over the bytes the kernel
  reads. Nothing row-wise can stream its input faster.
* **Compute floor** -- for the compute-bound operations, the least exp/log
  work: one float32 ``log`` per entry for an entropy (``-Σ x log x``), one
  float32 ``exp`` per logit and a row maximum for anything built on a
  softmax. The ``log`` and ``exp`` below are branch-free polynomials (no
  special values, about 1e-7 relative error on the inputs used here), so
  LLVM vectorizes them; the loops run with ``fastmath=True``.

Small inputs (below ``PARALLEL_MIN_WORK``) take serial twins, so the 1-row
floors are the bare cost of one Numba call.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from .._jit import bits_f32, f32_bits
from ..kernels._math import EXP_MASK32 as _MANT_MASK32  # sign and exponent bits
from ..kernels._math import LOG32_P as _LP  # Cephes' log(1 + f) coefficients
from ..kernels._math import SQRT_HALF_BITS32

#: Below this many elements a floor runs its serial twin (a ``prange``
#: launch costs a few microseconds).
PARALLEL_MIN_WORK = 1 << 15

__all__ = [
    "read_floor",
    "entropy_floor",
    "csr_entropy_floor",
    "kl_floor",
    "csr_kl_floor",
    "softmax_floor",
    "log32",
    "exp32",
]

_F = np.float32
_LN2_32 = _F(0.6931471805599453)
_LN2_HI32 = _F(0.693359375)
_LN2_LO32 = _F(-2.12194440e-4)
_INV_LN2_32 = _F(1.44269504)
_EXP_LOW = _F(-87.0)  # exp32 clamps here, so 2**k stays a normal number
_E = tuple(_F(1.0 / c) for c in (720.0, 120.0, 24.0, 6.0, 2.0))


@numba.njit(inline="always", fastmath=True)
def log32(x):  # pragma: no cover - compiled
    """float32 ``log`` of a positive normal float32, no special values."""
    ix = f32_bits(x)
    t = np.int32(ix - SQRT_HALF_BITS32)
    e = _F(t >> 23)
    f = bits_f32(np.int32(ix - (t & _MANT_MASK32))) - _F(1.0)
    p = _LP[0]
    p = p * f + _LP[1]
    p = p * f + _LP[2]
    p = p * f + _LP[3]
    p = p * f + _LP[4]
    p = p * f + _LP[5]
    p = p * f + _LP[6]
    p = p * f + _LP[7]
    p = p * f + _LP[8]
    f2 = f * f
    return e * _LN2_32 + (f - _F(0.5) * f2 + f2 * f * p)


@numba.njit(inline="always", fastmath=True)
def exp32(x):  # pragma: no cover - compiled
    """float32 ``exp`` of a float32 ``x <= 0``, clamped below at -87."""
    v = max(x, _EXP_LOW)
    k = np.floor(v * _INV_LN2_32 + _F(0.5))
    r = (v - k * _LN2_HI32) - k * _LN2_LO32
    p = _E[0]
    p = p * r + _E[1]
    p = p * r + _E[2]
    p = p * r + _E[3]
    p = p * r + _E[4]
    p = (p * r * r + r) + _F(1.0)
    return p * bits_f32(np.int32((np.int32(k) + 127) << 23))


# --------------------------------------------------------------------------- read floor


@numba.njit(parallel=True, fastmath=True, cache=True)
def _sum_parallel(flat, zero):  # pragma: no cover - compiled
    s = zero
    for i in numba.prange(flat.shape[0]):
        s += flat[i]
    return s


@numba.njit(fastmath=True, cache=True)
def _sum_serial(flat, zero):  # pragma: no cover - compiled
    s = zero
    for i in range(flat.shape[0]):
        s += flat[i]
    return s


def _parallel(n: int) -> bool:
    return n >= PARALLEL_MIN_WORK and numba.get_num_threads() > 1


def read_floor(*arrays: np.ndarray) -> Any:
    """Sum every element of each array (viewed flat), vectorized and in parallel.

    This reads the same bytes as any kernel over the arrays and does the
    least possible work per byte. bfloat16 arrays are read as their 16-bit
    patterns. Returns the sums (one per array; a lone value for one array).
    """
    sums = []
    for a in arrays:
        flat = np.ascontiguousarray(a).reshape(-1)
        if flat.dtype.kind == "V" or flat.dtype.name == "bfloat16":
            flat = flat.view(np.uint16)
        zero = flat.dtype.type(0)
        fn = _sum_parallel if _parallel(flat.shape[0]) else _sum_serial
        sums.append(fn(flat, zero))
    return sums[0] if len(sums) == 1 else tuple(sums)


@numba.njit(parallel=True, cache=True)
def _fill_parallel(flat, nchunks):  # pragma: no cover - compiled
    n = flat.shape[0]
    for c in numba.prange(nchunks):
        flat[n * c // nchunks : n * (c + 1) // nchunks] = 0


def memory_floor(read: np.ndarray, write: np.ndarray) -> Any:
    """Read every element of ``read`` (as :func:`read_floor`) and write every
    element of ``write`` (a parallel fill): the bytes a gather or a weighted
    sum of rows must move, each streamed once (pass 8-byte words)."""
    s = read_floor(read)
    _fill_parallel(write.reshape(-1), max(1, numba.get_num_threads()))
    return s


# --------------------------------------------------------------------------- compute floors


@numba.njit(inline="always", fastmath=True)
def _xlogx_body(flat):  # pragma: no cover - compiled
    s = _F(0.0)
    for i in range(flat.shape[0]):
        x = flat[i]
        s += x * log32(x)
    return s


@numba.njit(parallel=True, fastmath=True, cache=True)
def _xlogx_parallel(flat, nchunks):  # pragma: no cover - compiled
    n = flat.shape[0]
    part = np.zeros(nchunks, np.float32)
    for c in numba.prange(nchunks):
        part[c] = _xlogx_body(flat[c * n // nchunks : (c + 1) * n // nchunks])
    return -part.sum()


@numba.njit(fastmath=True, cache=True)
def _xlogx_serial(flat):  # pragma: no cover - compiled
    return -_xlogx_body(flat)


def _xlogx(flat: np.ndarray) -> np.float32:
    if _parallel(flat.shape[0]):
        return _xlogx_parallel(flat, 64 * numba.get_num_threads())
    return _xlogx_serial(flat)


def entropy_floor(p: np.ndarray) -> np.float32:
    """``-Σ p log p`` over every entry of a float32 array: one log per entry.

    Row boundaries are ignored (the per-row sums any real kernel keeps are
    extra work), so this is a lower bound at every row length.
    """
    if p.dtype != np.float32:
        raise TypeError(f"the entropy compute floor is float32 only, got {p.dtype}")
    return _xlogx(np.ascontiguousarray(p).reshape(-1))


def csr_entropy_floor(A: Any) -> tuple[np.float32, Any]:
    """``-Σ x log x`` over the stored entries of a float32 CSR matrix, plus a
    read of ``indptr`` (the row boundaries a row-wise kernel must read)."""
    if A.data.dtype != np.float32:
        raise TypeError(f"the entropy compute floor is float32 only, got {A.data.dtype}")
    return _xlogx(A.data), read_floor(A.indptr)


@numba.njit(inline="always", fastmath=True)
def _kl_body(p, q):  # pragma: no cover - compiled
    s = _F(0.0)
    for i in range(p.shape[0]):
        s += p[i] * log32(p[i] / q[i])
    return s


@numba.njit(parallel=True, fastmath=True, cache=True)
def _kl_parallel(p, q, nchunks):  # pragma: no cover - compiled
    n = p.shape[0]
    part = np.zeros(nchunks, np.float32)
    for c in numba.prange(nchunks):
        lo, hi = c * n // nchunks, (c + 1) * n // nchunks
        part[c] = _kl_body(p[lo:hi], q[lo:hi])
    return part.sum()


@numba.njit(fastmath=True, cache=True)
def _kl_serial(p, q):  # pragma: no cover - compiled
    return _kl_body(p, q)


def _kl(p: np.ndarray, q: np.ndarray) -> np.float32:
    if _parallel(p.shape[0]):
        return _kl_parallel(p, q, 64 * numba.get_num_threads())
    return _kl_serial(p, q)


def kl_floor(p: np.ndarray, q: np.ndarray) -> np.float32:
    """``Σ p log(p / q)`` over every pair of entries of two float32 arrays of
    one shape: one division and one log per pair, rows ignored."""
    if p.dtype != np.float32 or q.dtype != np.float32:
        raise TypeError(f"the divergence compute floor is float32 only, got {p.dtype}")
    return _kl(np.ascontiguousarray(p).reshape(-1), np.ascontiguousarray(q).reshape(-1))


@numba.njit(inline="always", fastmath=True)
def _csr_kl_body(x, idx, q):  # pragma: no cover - compiled
    s = _F(0.0)
    for i in range(x.shape[0]):
        s += x[i] * log32(x[i] / q[idx[i]])
    return s


@numba.njit(parallel=True, fastmath=True, cache=True)
def _csr_kl_parallel(x, idx, q, nchunks):  # pragma: no cover - compiled
    n = x.shape[0]
    part = np.zeros(nchunks, np.float32)
    for c in numba.prange(nchunks):
        lo, hi = c * n // nchunks, (c + 1) * n // nchunks
        part[c] = _csr_kl_body(x[lo:hi], idx[lo:hi], q)
    return part.sum()


@numba.njit(fastmath=True, cache=True)
def _csr_kl_serial(x, idx, q):  # pragma: no cover - compiled
    return _csr_kl_body(x, idx, q)


def csr_kl_floor(A: Any, q: np.ndarray) -> tuple[np.float32, Any]:
    """``Σ x log(x / q_j)`` over the stored entries ``x`` (column ``j``) of a
    float32 CSR matrix against a dense background ``q``: a gather, one
    division and one log per entry; and a read of ``indptr``."""
    if A.data.dtype != np.float32 or q.dtype != np.float32:
        raise TypeError(f"the divergence compute floor is float32 only, got {A.data.dtype}")
    if _parallel(A.data.shape[0]):
        s = _csr_kl_parallel(A.data, A.indices, q, 64 * numba.get_num_threads())
    else:
        s = _csr_kl_serial(A.data, A.indices, q)
    return s, read_floor(A.indptr)


@numba.njit(inline="always", fastmath=True)
def _max(r):  # pragma: no cover - compiled
    # eight running maxima, so LLVM turns the loop into vector max instructions
    # (a single running max of Python's max() stays scalar)
    n = r.shape[0]
    m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = r[0]
    nb = n // 8 * 8
    for j in range(0, nb, 8):
        m0, m1, m2, m3 = max(m0, r[j]), max(m1, r[j + 1]), max(m2, r[j + 2]), max(m3, r[j + 3])
        m4, m5, m6, m7 = max(m4, r[j + 4]), max(m5, r[j + 5]), max(m6, r[j + 6]), max(m7, r[j + 7])
    m = max(max(max(m0, m1), max(m2, m3)), max(max(m4, m5), max(m6, m7)))
    for j in range(nb, n):
        m = max(m, r[j])
    return m


@numba.njit(inline="always", fastmath=True)
def _sum_exp(r, m):  # pragma: no cover - compiled
    s = _F(0.0)
    for j in range(r.shape[0]):
        s += exp32(r[j] - m)
    return s


@numba.njit(inline="always", fastmath=True)
def _softmax_row(z, i, out):  # pragma: no cover - compiled
    r = z[i]
    out[i] = _sum_exp(r, _max(r))


@numba.njit(inline="always", fastmath=True)
def _bf16(b):  # pragma: no cover - compiled
    # bfloat16 -> float32 is a 16-bit shift of the pattern
    return bits_f32(np.int32(np.int32(b) << 16))


@numba.njit(inline="always", fastmath=True)
def _softmax_row_bf16(bits, i, out, row):  # pragma: no cover - compiled
    r = bits[i]
    for j in range(r.shape[0]):
        row[j] = _bf16(r[j])
    out[i] = _sum_exp(row, _max(row))


@numba.njit(parallel=True, fastmath=True, cache=True)
def _softmax_parallel(z, out):  # pragma: no cover - compiled
    for i in numba.prange(z.shape[0]):
        _softmax_row(z, i, out)


@numba.njit(fastmath=True, cache=True)
def _softmax_serial(z, out):  # pragma: no cover - compiled
    for i in range(z.shape[0]):
        _softmax_row(z, i, out)


@numba.njit(parallel=True, fastmath=True, cache=True)
def _softmax_bf16_parallel(bits, out, nchunks):  # pragma: no cover - compiled
    n = bits.shape[0]
    for c in numba.prange(nchunks):
        row = np.empty(bits.shape[1], np.float32)  # the row decoded once
        for i in range(c * n // nchunks, (c + 1) * n // nchunks):
            _softmax_row_bf16(bits, i, out, row)


@numba.njit(fastmath=True, cache=True)
def _softmax_bf16_serial(bits, out):  # pragma: no cover - compiled
    row = np.empty(bits.shape[1], np.float32)
    for i in range(bits.shape[0]):
        _softmax_row_bf16(bits, i, out, row)


def softmax_floor(z: np.ndarray) -> np.ndarray:
    """Per row of a 2-D float32 or bfloat16 array: ``Σ_j exp(z_j - max z)``.

    The least work of anything built on a softmax (entropy from logits,
    routing): a row maximum and one exp per logit. Returns float32 sums.
    """
    if z.dtype.name not in ("float32", "bfloat16"):
        raise TypeError(f"the softmax compute floor takes float32 or bfloat16, got {z.dtype}")
    out = np.empty(z.shape[0], np.float32)
    par = _parallel(z.size)
    if z.dtype == np.float32:
        (_softmax_parallel if par else _softmax_serial)(np.ascontiguousarray(z), out)
    else:  # bfloat16: its bit patterns
        bits = np.ascontiguousarray(z).view(np.uint16)
        if par:
            _softmax_bf16_parallel(bits, out, min(z.shape[0], 64 * numba.get_num_threads()))
        else:
            _softmax_bf16_serial(bits, out)
    return out
