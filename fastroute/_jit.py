"""One place for Numba options.

Every kernel in fastroute is compiled with the same options:

* ``error_model="numpy"``: division by zero gives inf/NaN instead of raising,
  so kernels never need a Python exception path.
* **no fastmath.** Results must be bit-identical for any chunking and thread
  count. Reassociation or FMA contraction would let LLVM round differently
  in different call sites, so reductions are written with explicit lanes
  instead (see ``kernels/_math.py``).
* ``cache=True``: compiled machine code is written next to the sources (or to
  ``NUMBA_CACHE_DIR``) so a second process starts warm
  (``FASTROUTE_NO_CACHE=1`` turns it off).
* ``nogil=True``: kernels release the GIL, so that the executor
  (``_execute``) runs their chunks side by side on Python threads.

No kernel is compiled with ``parallel=True``: the executor is the library's
only parallel mechanism, so no Numba threading layer is started (nothing to
break after ``fork``, no launch lock between Python threads).
"""

from __future__ import annotations

import os

import numba
import numpy as np
from numba import types
from numba.extending import intrinsic

__all__ = ["jit", "uidx", "f64_bits", "f32_bits", "bits_f64", "bits_f32"]

_CACHE = os.environ.get("FASTROUTE_NO_CACHE", "") == ""

_OPTIONS = dict(cache=_CACHE, error_model="numpy", nogil=True, fastmath=False)


def jit(fn=None, **overrides):
    """``numba.njit`` with fastroute's options (GIL released)."""
    opts = {**_OPTIONS, **overrides}
    if fn is None:
        return lambda f: numba.njit(**opts)(f)
    return numba.njit(**opts)(fn)


@numba.njit(inline="always")
def uidx(i):
    """``i`` as an unsigned index. Numba adds negative-index wraparound code to
    every signed index that is not a plain ``range`` variable (``a[start + i]``),
    and that code stops LLVM from vectorizing the loop; callers guarantee
    ``i >= 0``."""
    return np.uint64(i)


# --- bit casts (LLVM bitcast: no conversion) ---------------------------------


def _bitcast(src, dst, x):
    # typing + codegen of an intrinsic that reinterprets a `src` value's bits
    # as a `dst` value of the same width (LLVM bitcast: no conversion)
    if x != src:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(dst))

    return dst(src), codegen


@intrinsic
def f64_bits(typingctx, x):
    """The IEEE bits of a float64 as an int64 (no conversion)."""
    return _bitcast(types.float64, types.int64, x)


@intrinsic
def f32_bits(typingctx, x):
    """The IEEE bits of a float32 as an int32 (no conversion)."""
    return _bitcast(types.float32, types.int32, x)


@intrinsic
def bits_f64(typingctx, b):
    """The float64 whose IEEE bits are the int64 ``b``."""
    return _bitcast(types.int64, types.float64, b)


@intrinsic
def bits_f32(typingctx, b):
    """The float32 whose IEEE bits are the int32 ``b``."""
    return _bitcast(types.int32, types.float32, b)


if numba.config.DISABLE_JIT:  # plain-Python stand-ins

    def f64_bits(x):  # noqa: F811
        return np.float64(x).view(np.int64)

    def f32_bits(x):  # noqa: F811
        return np.float32(x).view(np.int32)

    def bits_f64(b):  # noqa: F811
        return np.int64(b).view(np.float64)

    def bits_f32(b):  # noqa: F811
        return np.int32(b).view(np.float32)
