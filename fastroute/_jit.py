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

__all__ = ["jit", "uidx"]

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
