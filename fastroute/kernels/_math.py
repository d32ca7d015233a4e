"""Branch-free ``log`` and ``exp`` over small float64 blocks, written so LLVM
vectorizes them.

PyPI's llvmlite is not built with Intel SVML, so a loop calling ``math.log``
stays a scalar libm call per element (about 17x the memory-read floor in the
entropy kernels). These routines split a float64 into exponent and mantissa
through an int64 *view of a block buffer* (Numba cannot bit-cast a scalar),
then evaluate a short series. Every loop body is straight-line code with
selects instead of branches.

Accuracy (checked against mpmath in ``tests/test_math.py``): both functions
are within 2 ulp over the whole finite positive range, subnormals included.

Inputs must be prepared by the caller:

* ``log_block``: ``x[i] >= 0`` and finite. ``x[i] == 0`` gives a finite, large
  negative number (about ``-1075 * log 2``); callers multiply it by zero.
* ``exp_block``: ``x[i] <= 0`` and not NaN; anything below ``EXP_ZERO_BELOW``
  gives exactly 0.0 (``-inf`` included).
"""

from __future__ import annotations

import numpy as np

from .._jit import jit

#: Number of float64 elements the block routines work on at a time.
BLOCK = 256

_LN2_HI = 6.93147180369123816490e-01  # upper bits of log(2), exact in k * _LN2_HI
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.4426950408889634
_SQRT_HALF_BITS = 0x3FE6A09E667F3BCD  # bits of sqrt(0.5)
_EXP_MASK = np.int64(-4503599627370496)  # 0xFFF0000000000000 as int64
_TWO52 = 4503599627370496.0
_TINY = 2.2250738585072014e-308  # smallest normal float64
_ROUND_MAGIC = 6755399441055744.0  # 1.5 * 2**52: adding it rounds to an integer

#: exp_block returns exactly 0.0 below this argument.
EXP_ZERO_BELOW = -800.0


@jit(inline="always")
def log_block(x, out, tmp, n):
    """``out[:n] = log(x[:n])`` for finite ``x >= 0``; ``tmp`` is scratch.

    ``x``, ``out`` and ``tmp`` are contiguous float64 arrays of at least ``n``
    elements; ``x`` is not modified.
    """
    # lift subnormals into the normal range (x * 2**52), remember the shift
    for i in range(n):
        v = x[i]
        sub = v < _TINY
        tmp[i] = v * _TWO52 if sub else v
        out[i] = -52.0 if sub else 0.0
    _log_normal(tmp, out, n, True)


@jit(inline="always")
def log_block_normal(x, out, n):
    """``out[:n] = log(x[:n])`` for normal positive ``x``, in place of ``x``.

    ``x`` is overwritten. A subnormal or zero ``x[i]`` gives a finite wrong
    value (between about -745 and -708): use it only where such entries are
    multiplied by a negligible weight.
    """
    _log_normal(x, out, n, False)


@jit(inline="always")
def _log_normal(tmp, out, n, shifted):
    # out[i] = log(tmp[i]) (+ out[i] if shifted); tmp is clobbered.
    # 1. split into 2**e * z with z in [sqrt(1/2), sqrt(2))
    bits = tmp.view(np.int64)
    for i in range(n):
        ix = bits[i]
        t = ix - _SQRT_HALF_BITS
        e = t >> 52
        bits[i] = ix - (t & _EXP_MASK)
        out[i] = np.float64(e) + out[i] if shifted else np.float64(e)
    # 2. log z = 2 atanh(s), s = (z - 1) / (z + 1), |s| <= 0.1716
    for i in range(n):
        z = tmp[i]
        f = z - 1.0
        s = f / (z + 1.0)
        s2 = s * s
        # 2 * sum_{j>=1} s^(2j) / (2j + 1), ten terms: truncation < 2**-60
        r = 2.0 / 21.0
        r = r * s2 + 2.0 / 19.0
        r = r * s2 + 2.0 / 17.0
        r = r * s2 + 2.0 / 15.0
        r = r * s2 + 2.0 / 13.0
        r = r * s2 + 2.0 / 11.0
        r = r * s2 + 2.0 / 9.0
        r = r * s2 + 2.0 / 7.0
        r = r * s2 + 2.0 / 5.0
        r = r * s2 + 2.0 / 3.0
        r = r * s2
        # log z = 2s + s*r, with 2s = f - s*f  (exact identity, better rounding)
        logz = (f - s * f) + s * r
        e = out[i]
        out[i] = e * _LN2_HI + (logz + e * _LN2_LO)


@jit(inline="always")
def exp_block(x, out, tmp, n):
    """``out[:n] = exp(x[:n])`` for ``x <= 0`` (not NaN); ``tmp`` is scratch."""
    for i in range(n):
        v = x[i]
        v = v if v > EXP_ZERO_BELOW else EXP_ZERO_BELOW
        k = (v * _INV_LN2 + _ROUND_MAGIC) - _ROUND_MAGIC  # nearest integer, as float
        r = (v - k * _LN2_HI) - k * _LN2_LO  # |r| <= 0.3466
        # Taylor series of exp(r) to r**13: truncation < 2**-60
        p = 1.0 / 6227020800.0
        p = p * r + 1.0 / 479001600.0
        p = p * r + 1.0 / 39916800.0
        p = p * r + 1.0 / 3628800.0
        p = p * r + 1.0 / 362880.0
        p = p * r + 1.0 / 40320.0
        p = p * r + 1.0 / 5040.0
        p = p * r + 1.0 / 720.0
        p = p * r + 1.0 / 120.0
        p = p * r + 1.0 / 24.0
        p = p * r + 1.0 / 6.0
        p = p * r + 0.5
        p = p * r * r + r
        out[i] = p + 1.0
        tmp[i] = k
    # scale by 2**k in two halves so that subnormal results round only once
    # at the end and k down to -1154 underflows cleanly to zero
    bits = tmp.view(np.int64)
    for i in range(n):
        k = np.int64(tmp[i])
        k1 = k >> 1
        bits[i] = (k1 + 1023) << 52
        out[i] = out[i] * tmp[i]
        bits[i] = (k - k1 + 1023) << 52
        out[i] = out[i] * tmp[i]
