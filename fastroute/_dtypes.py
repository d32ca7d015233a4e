"""One home for dtypes: how an input reaches the kernels, what they compute
in, and what comes out.

Numba has neither 16-bit float type. A bfloat16 or float16 array (NumPy
float16, ``ml_dtypes.bfloat16``, a torch tensor of either) therefore reaches
the kernels as a zero-copy view of its raw bits with a one-field record
dtype, ``BF16`` or ``F16``. A record is a type of its own in Numba, so the
bits of a half float are never mistaken for a 16-bit integer count; the
kernels read every real value through :func:`widen`, which decodes a half
float exactly to float32 and leaves every other value as it is. A half
float input thus computes what the same call computes on its exactly
widened float32 copy, bit for bit, without making that copy.

Torch CPU tensors of every supported dtype are read through NumPy views
(detached from autograd, never copied unless their memory is not plain
strided CPU memory, which is an error).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import types
from numba.extending import overload

from ._jit import bits_f32, f32_bits, jit

__all__ = [
    "BF16", "F16", "F32", "F64", "HALF", "SINGLE", "FAST_DTYPES",
    "widen", "is_torch", "to_numpy", "kernel_view", "real_array", "float_array",
    "compute_dtype", "half_array", "single_type", "to_float", "narrow", "KINDS",
]  # fmt: skip

#: kernel views of the raw bits of bfloat16 and float16 arrays
BF16 = np.dtype([("bf16", "<u2")])
F16 = np.dtype([("f16", "<u2")])
F32 = np.dtype(np.float32)
F64 = np.dtype(np.float64)
HALF = frozenset((BF16, F16))
#: dtypes computed in float32, results float32 (the kernel views and float16)
SINGLE = frozenset((F32, BF16, F16, np.dtype(np.float16)))
#: dtypes of the lean small-array paths of the public functions
FAST_DTYPES = frozenset((F32, F64))

#: the names of the float kernel dtypes (as ``dispatch``/``combine`` report them)
KINDS = {F32: "float32", F64: "float64", BF16: "bfloat16", F16: "float16"}

_SUPPORTED = frozenset(
    np.dtype(t)
    for t in (
        np.bool_, np.int8, np.int16, np.int32, np.int64,
        np.uint8, np.uint16, np.uint32, np.uint64,
        np.float16, np.float32, np.float64,
    )
)  # fmt: skip
_FLOAT_NAMES = "float16, bfloat16, float32 or float64"


# --- kernels: reading a value ------------------------------------------------


def widen(v):
    """A value as the kernels compute with it: a bfloat16/float16 record
    decoded exactly to float32, anything else unchanged (plain Python
    meaning, used with ``NUMBA_DISABLE_JIT``)."""
    if isinstance(v, np.void):  # a half float record
        bits = np.uint16(v[0])
        if v.dtype == F16:
            return np.float32(bits.view(np.float16))
        return (np.uint32(bits) << np.uint32(16)).view(np.float32)
    return v


def single_type(t) -> bool:
    """Whether the Numba type ``t`` (an array's dtype) computes in float32:
    float32 and the half float records."""
    return t == types.float32 or _half_field(t) is not None


def _half_field(v):
    if isinstance(v, types.Record) and len(v.fields) == 1:
        return next(iter(v.fields))
    return None


@overload(widen)
def _widen_impl(v):
    field = _half_field(v)
    if field == "bf16":
        return lambda v: bits_f32(np.int32(np.int32(v.bf16) << 16))
    if field == "f16":
        return lambda v: _f16_value(v.f16)
    if isinstance(v, (types.Number, types.Boolean)):
        return lambda v: v
    return None


@jit
def _f16_value(h):
    # float16 bits -> float32, exactly (NaN payloads kept), without branches:
    # the exponent is rebiased by 127 - 15; infinities and NaNs get the
    # maximum exponent, zeros and subnormals are renormalized by a float32
    # subtraction (exact)
    h = np.int32(h)
    o = (h & 0x7FFF) << 13
    e = o & 0x0F800000
    o = o + (112 << 23)
    o = o + (112 << 23) if e == 0x0F800000 else o
    tiny = bits_f32(np.int32(o + (1 << 23))) - bits_f32(np.int32(113 << 23))
    v = f32_bits(tiny) if e == 0 else o
    return bits_f32(np.int32(v | ((h & 0x8000) << 16)))


def narrow(v, like):
    """The bits (``uint16``) of the float32 ``v`` rounded to nearest even in
    the half float type of the record array ``like`` (plain Python meaning)."""
    if like.dtype == F16:
        return np.float32(v).astype(np.float16).view(np.uint16)
    b = np.uint32(np.float32(v).view(np.uint32))
    return np.uint16((b + np.uint32(0x7FFF) + ((b >> np.uint32(16)) & np.uint32(1))) >> 16)


@overload(narrow)
def _narrow_impl(v, like):
    field = _half_field(like.dtype)
    if field == "bf16":
        return lambda v, like: _bf16_bits(np.uint32(f32_bits(v)))
    if field == "f16":
        return lambda v, like: _f16_bits(np.uint32(f32_bits(v)))
    return None


@jit
def _bf16_bits(b):
    # float32 bits -> bfloat16 bits, round to nearest even. A NaN stays a
    # NaN here because every NaN a combine can hold has its low 16 bits
    # zero: widened bfloat16 inputs have them zero, and arithmetic keeps an
    # input NaN's payload or makes the default NaN (0x7FC00000 / 0xFFC00000).
    # Branch-free, so that a loop over a row vectorizes.
    return np.uint16(
        (b + np.uint32(0x7FFF) + ((b >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    )


@jit
def _f16_bits(b):
    # float32 bits -> float16 bits, round to nearest even (IEEE binary16)
    sign = np.uint16((b >> np.uint32(16)) & np.uint32(0x8000))
    a = b & np.uint32(0x7FFFFFFF)
    if a > np.uint32(0x7F800000):  # NaN: a quiet NaN
        return sign | np.uint16(0x7E00)
    if a >= np.uint32(0x477FF000):  # rounds to beyond 65504: infinity
        return sign | np.uint16(0x7C00)
    if a < np.uint32(0x38800000):  # below 2**-14: a subnormal (or zero) half
        f = bits_f32(np.int32(a))
        return sign | np.uint16(np.rint(f * np.float32(16777216.0)))
    y = a - np.uint32(0x38000000)  # rebias the exponent, then round 13 bits away
    return sign | np.uint16(
        (y + np.uint32(0xFFF) + ((y >> np.uint32(13)) & np.uint32(1))) >> np.uint32(13)
    )


# --- Python: what an input becomes -------------------------------------------


def is_torch(x: Any) -> bool:
    """Whether ``x`` is a torch tensor (without importing torch)."""
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def to_numpy(x: Any, name: str, func: str) -> np.ndarray:
    """A torch CPU tensor as a NumPy view (detached; bfloat16 and float16 as
    their kernel views, since NumPy has no bfloat16)."""
    import torch

    if x.device.type != "cpu":
        raise TypeError(f"{func}: {name} is on {x.device}; move it to the CPU first ({name}.cpu())")
    if x.layout != torch.strided:  # sparse: no NumPy view of it exists
        raise TypeError(
            f"{func}: {name} is a {x.layout} tensor; pass a dense one ({name}.to_dense())"
        )
    x = x.detach().resolve_conj().resolve_neg()
    if x.dtype == torch.bfloat16:
        return x.view(torch.int16).numpy().view(BF16)
    if x.dtype == torch.float16:
        return x.view(torch.int16).numpy().view(F16)
    if x.is_complex():
        raise TypeError(f"{func}: {name} must be real, got {x.dtype}")
    return x.numpy()


def kernel_view(a: np.ndarray) -> np.ndarray:
    """``a`` as the kernels read it: float16 and ``ml_dtypes.bfloat16`` as
    their record views (no copy), native byte order, everything else as is."""
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    if a.dtype == np.float16:
        return a.view(F16)
    if a.dtype in _SUPPORTED or a.dtype in HALF:
        return a
    if a.dtype.name == "bfloat16":  # ml_dtypes
        return a.view(BF16)
    return a


def _as_array(x: Any, name: str, func: str) -> np.ndarray:
    if type(x) is np.ndarray:
        a = x
    elif is_torch(x):
        a = to_numpy(x, name, func)
    else:
        try:
            a = np.asarray(x)
        except ValueError:  # ragged nested sequences, strings that are no numbers
            raise ValueError(
                f"{func}: cannot make an array of {name}: its rows differ in length or its "
                "elements are not numbers; pass a rectangular array of numbers"
            ) from None
        except Exception as exc:  # depends on the foreign object
            raise TypeError(
                f"{func}: cannot convert {name} ({type(x).__name__}) to an array ({exc}); "
                "pass a NumPy array or a CPU tensor"
            ) from None
    return kernel_view(a)


def real_array(x: Any, func: str, name: str = "input") -> np.ndarray:
    """``x`` as a kernel view of a real array of ndim >= 1: bool, integers,
    float16, bfloat16, float32 or float64."""
    if type(x) is np.ndarray and x.dtype in FAST_DTYPES and x.ndim:
        return x  # the common case costs two checks
    a = _as_array(x, name, func)
    if not (a.dtype in _SUPPORTED or a.dtype in HALF):
        raise TypeError(
            f"{func}: unsupported dtype {_logical(a.dtype)} of {name}; pass a real array of "
            f"bool, int8..int64, uint8..uint64, {_FLOAT_NAMES} (for example x.astype(np.float64))"
        )
    if a.ndim == 0:
        raise ValueError(f"{func}: {name} must have at least one dimension, got a scalar")
    return a


def float_array(x: Any, func: str, name: str, fix: str) -> np.ndarray:
    """``x`` as a kernel view of a float16/bfloat16/float32/float64 array."""
    if type(x) is np.ndarray and x.dtype in FAST_DTYPES:
        return x
    a = _as_array(x, name, func)
    if not (a.dtype in FAST_DTYPES or a.dtype in HALF):
        raise TypeError(
            f"{func}: {name} must be {_FLOAT_NAMES}, got {_logical(a.dtype)}; convert it, "
            f"e.g. {fix}"
        )
    return a


def _logical(dtype: np.dtype) -> str:
    return {BF16: "bfloat16", F16: "float16"}.get(dtype, str(dtype))


def to_float(a: np.ndarray, dtype: Any) -> np.ndarray:
    """A copy of ``a`` as ``dtype`` (float32/float64); half float kernel
    views are decoded exactly (no ml_dtypes needed)."""
    if a.dtype == BF16:
        return (a.view(np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32).astype(dtype)
    if a.dtype == F16:
        return a.view(np.float16).astype(dtype)
    return a.astype(dtype)


def compute_dtype(dtype: np.dtype) -> type:
    """float32 for float32 and half float kernel views, else float64."""
    return np.float32 if dtype in SINGLE else np.float64


def half_array(bits: np.ndarray) -> Any:
    """Kernel-view bits (``BF16``/``F16``) as a user-facing array: NumPy
    float16; bfloat16 as ``ml_dtypes.bfloat16`` when installed, else (only
    reachable from a torch input) a torch bfloat16 tensor."""
    if bits.dtype == F16:
        return bits.view(np.float16)
    try:
        import ml_dtypes
    except ImportError:
        import torch

        return torch.from_numpy(bits.view(np.int16)).view(torch.bfloat16)
    return bits.view(ml_dtypes.bfloat16)
