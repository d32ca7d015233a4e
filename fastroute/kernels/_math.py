"""Branch-free scalar ``log`` and ``exp`` that LLVM vectorizes inside loops.

PyPI's llvmlite is not built with Intel SVML, so a loop calling ``math.log``
stays a scalar libm call per element (about 17x the memory-read floor in the
entropy kernels). These functions split a float64 into exponent and mantissa
by reinterpreting its bits (an LLVM ``bitcast``, exposed through two tiny
intrinsics), then evaluate a short polynomial. They contain no branches and
no calls, so a loop like ``for i in range(n): out[i] = log_normal(x[i])``
compiles to AVX2/AVX-512 code.

Method (textbook argument reduction; the polynomial coefficients are the
minimax constants published with fdlibm's ``e_log.c``):

* log: ``x = 2**e * z`` with ``z`` in ``[sqrt(1/2), sqrt(2))``; with
  ``f = z - 1`` and ``s = f / (z + 1)``, ``log z = 2 atanh(s) = 2s + s R(s^2)``
  where ``R`` is a degree-7 polynomial in ``s^2`` (``|s| <= 0.1716``, relative
  error of ``R`` below 2**-58). ``2s`` is formed as ``f - s*f`` for better
  rounding, and ``e * log 2`` is added in two parts.
* exp: ``x = k log 2 + r`` with ``|r| <= log(2)/2``; a degree-13 Taylor
  polynomial for ``exp(r)`` (truncation below 2**-60), then a multiplication
  by ``2**k`` built from bits, in two halves so that subnormal results round
  once and very negative ``x`` underflows cleanly to 0.

Accuracy, checked against mpmath in ``tests/test_accuracy.py``: within 2 ulp
over the whole finite positive range, subnormals included.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from .._jit import bits_f32, bits_f64, f64_bits, jit

#: Block length of the entropy kernels' scratch buffers.
BLOCK = 256

_LN2_HI = 6.93147180369123816490e-01  # upper bits of log(2): e * _LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.4426950408889634
_SQRT_HALF_BITS = 0x3FE6A09E667F3BCD  # bits of sqrt(1/2)
_EXP_MASK = np.int64(-4503599627370496)  # 0xFFF0000000000000 as int64
_TWO52 = 4503599627370496.0
_TINY = 2.2250738585072014e-308  # smallest normal float64
_ROUND_MAGIC = 6755399441055744.0  # 1.5 * 2**52: adding it rounds to an integer

# minimax coefficients of R(s^2) ~ sum_j 2 s^(2j) / (2j + 1), as published in fdlibm
_LG1 = 6.666666666666735130e-01
_LG2 = 3.999999999940941908e-01
_LG3 = 2.857142874366239149e-01
_LG4 = 2.222219843214978396e-01
_LG5 = 1.818357216161805012e-01
_LG6 = 1.531383769920937332e-01
_LG7 = 1.479819860511658591e-01

#: exp_neg returns exactly 0.0 below this argument.
EXP_ZERO_BELOW = -800.0


@intrinsic
def fma(typingctx, a, b, c):
    """``a * b + c`` with one rounding (LLVM's ``llvm.fma``): the same bits in
    every compiled body, vector or scalar, unlike a contraction left to the
    optimizer. One instruction on x86-64 with FMA; float32 or float64."""
    if not (a == b == c and isinstance(a, types.Float)):
        return None

    def codegen(context, builder, signature, args):
        ty = context.get_value_type(signature.return_type)
        fn = builder.module.declare_intrinsic("llvm.fma", [ty], ir.FunctionType(ty, [ty] * 3))
        return builder.call(fn, args)

    return a(a, b, c), codegen


if numba.config.DISABLE_JIT:  # plain-Python stand-ins (NUMBA_DISABLE_JIT=1 runs)

    def fma(a, b, c):  # noqa: F811
        exact = Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))
        return type(a)(float(exact))  # float32: rounded twice (the no-JIT runs only)


@jit(inline="always")
def _log_split(ix, shift):
    # log of the float with bits ix (a positive normal number), minus shift*log2
    t = ix - _SQRT_HALF_BITS
    e = np.float64(t >> 52) - shift
    z = bits_f64(ix - (t & _EXP_MASK))
    f = z - 1.0
    s = f / (z + 1.0)
    s2 = s * s
    r = s2 * (
        _LG1 + s2 * (_LG2 + s2 * (_LG3 + s2 * (_LG4 + s2 * (_LG5 + s2 * (_LG6 + s2 * _LG7)))))
    )
    logz = (f - s * f) + s * r
    return e * _LN2_HI + (logz + e * _LN2_LO)


@jit(inline="always")
def log_normal(x):
    """``log(x)`` for a positive normal float64. Branch-free.

    A subnormal or zero ``x`` gives a finite wrong value between about -745
    and -708: use it only where such entries carry negligible weight.
    """
    return _log_split(f64_bits(x), 0.0)


@jit(inline="always")
def log_pos(x):
    """``log(x)`` for any finite ``x >= 0``, subnormals included. Branch-free.

    ``x == 0`` gives a finite large negative number (about -1075 log 2);
    callers multiply it by zero.
    """
    sub = x < _TINY
    y = x * _TWO52 if sub else x
    return _log_split(f64_bits(y), 52.0 if sub else 0.0)


@jit(inline="always")
def log1p_pos(y):
    """``log(1 + y)`` for finite ``y >= 0``, accurate also for tiny ``y``.

    ``u = 1 + y`` is rounded; ``(u - 1) - y`` is that rounding error exactly,
    and dividing it by ``u`` corrects ``log(u)`` to first order (the classic
    log1p identity). No libm call.
    """
    u = 1.0 + y
    if u == 1.0:
        return y
    return log_normal(u) - ((u - 1.0) - y) / u


@jit(inline="always")
def exp_neg(x):
    """``exp(x)`` for ``x <= 0`` (not NaN); exactly 0.0 below ``EXP_ZERO_BELOW``,
    ``-inf`` included. Branch-free."""
    v = x if x > EXP_ZERO_BELOW else EXP_ZERO_BELOW
    k = (v * _INV_LN2 + _ROUND_MAGIC) - _ROUND_MAGIC  # nearest integer, as float
    r = (v - k * _LN2_HI) - k * _LN2_LO  # |r| <= 0.3466
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
    p = (p * r * r + r) + 1.0
    ki = np.int64(k)
    k1 = ki >> 1
    return p * bits_f64((k1 + 1023) << 52) * bits_f64((ki - k1 + 1023) << 52)


@jit(inline="always")
def exp_neg_lo(x):
    """``exp(x)`` for float64 ``x <= 0`` (not NaN) to about ``2**-36``
    relative: for results rounded to float32 (4 ulp = ``2**-22``). The
    reduction of ``exp_neg`` with a degree-9 Taylor polynomial on explicit
    FMAs (truncation below ``0.347**10 / 10! < 2**-37``). Exactly 0.0 below
    ``EXP_ZERO_BELOW``; branch-free."""
    v = x if x > EXP_ZERO_BELOW else EXP_ZERO_BELOW
    k = (v * _INV_LN2 + _ROUND_MAGIC) - _ROUND_MAGIC
    r = (v - k * _LN2_HI) - k * _LN2_LO
    p = fma(1.0 / 362880.0, r, 1.0 / 40320.0)
    p = fma(p, r, 1.0 / 5040.0)
    p = fma(p, r, 1.0 / 720.0)
    p = fma(p, r, 1.0 / 120.0)
    p = fma(p, r, 1.0 / 24.0)
    p = fma(p, r, 1.0 / 6.0)
    p = fma(p, r, 0.5)
    p = fma(p * r, r, r) + 1.0
    ki = np.int64(k)
    k1 = ki >> 1
    return p * bits_f64((k1 + 1023) << 52) * bits_f64((ki - k1 + 1023) << 52)


# float32 exp: the same reduction in float32 arithmetic (twice the SIMD lanes)
_F = np.float32
_LN2_HI32 = _F(0.693359375)  # 8 significant bits: k * _LN2_HI32 is exact
_LN2_LO32 = _F(-2.12194440e-4)
_INV_LN2_32 = _F(1.44269504)
_MAGIC32 = _F(12582912.0)  # 1.5 * 2**23
#: exp_neg32 returns exactly 0 below this argument (exp is below half the
#: smallest float32 subnormal there)
EXP32_ZERO_BELOW = _F(-104.0)
_C32 = tuple(_F(1.0 / math.factorial(n)) for n in range(8))


@jit(inline="always")
def exp_neg32(x):
    """``exp(x)`` in float32 for float32 ``x <= 0`` (not NaN); exactly 0 below
    ``EXP32_ZERO_BELOW``, ``-inf`` included. Branch-free; within 2 ulp."""
    v = x if x > EXP32_ZERO_BELOW else EXP32_ZERO_BELOW
    k = (v * _INV_LN2_32 + _MAGIC32) - _MAGIC32
    r = (v - k * _LN2_HI32) - k * _LN2_LO32  # |r| <= 0.347
    p = _C32[7]
    p = p * r + _C32[6]
    p = p * r + _C32[5]
    p = p * r + _C32[4]
    p = p * r + _C32[3]
    p = p * r + _C32[2]
    p = (p * r * r + r) + _C32[0]
    ki = np.int32(k)
    k1 = ki >> 1
    return p * bits_f32(np.int32((k1 + 127) << 23)) * bits_f32(np.int32((ki - k1 + 127) << 23))


# float32 log of a mantissa: log(1 + f) = f - f**2/2 + f**3 P(f) for
# f in [sqrt(1/2) - 1, sqrt(2) - 1), P of degree 8 with the minimax
# coefficients published with Cephes' logf.c (S. L. Moshier)
LOG32_P = tuple(
    _F(c)
    for c in (
        7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1,
        1.4249322787e-1, -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1,
        3.3333331174e-1,
    )
)  # fmt: skip
SQRT_HALF_BITS32 = np.int32(0x3F3504F3)
EXP_MASK32 = np.int32(-8388608)  # 0xFF800000 as int32
#: |(f + rest) - log(m)| <= LOG32_REL_ERR * 2**-24 * |log(m)| for every float32
#: (checked exhaustively over all mantissas in tests/test_accuracy.py; the
#: largest error found is 0.4452)
LOG32_REL_ERR = 0.45


@jit(inline="always")
def log32_parts(ix):
    """``log`` of the positive normal float32 with bits ``ix`` as three parts:
    ``(e, f, rest)`` with ``log x ~= e * log(2) + (f + rest)``.

    ``x = 2**e * m`` with ``m`` in ``[sqrt(1/2), sqrt(2))``; ``f = m - 1`` is
    exact and ``rest`` (float32, about ``-f**2/2``) is the rest of
    ``log(m)``. Adding ``f + rest`` in float64 gives ``log m`` within
    ``LOG32_REL_ERR`` float32 ulp-units of ``|log m|``. Zero (bits 0) gives
    ``e = -127``, ``f = rest = 0``. Branch-free float32 with explicit FMAs.
    """
    t = np.int32(ix - SQRT_HALF_BITS32)
    e = t >> 23
    f = bits_f32(np.int32(ix - (t & EXP_MASK32))) - _F(1.0)
    p = LOG32_P[0]
    p = fma(p, f, LOG32_P[1])
    p = fma(p, f, LOG32_P[2])
    p = fma(p, f, LOG32_P[3])
    p = fma(p, f, LOG32_P[4])
    p = fma(p, f, LOG32_P[5])
    p = fma(p, f, LOG32_P[6])
    p = fma(p, f, LOG32_P[7])
    p = fma(p, f, LOG32_P[8])
    f2 = f * f
    return e, f, fma(f2 * f, p, _F(-0.5) * f2)
