"""One place for Numba options and the thread-safety guard.

Every kernel in fastroute is compiled with the same options:

* ``error_model="numpy"``: division by zero gives inf/NaN instead of raising,
  so kernels never need a Python exception path.
* **no fastmath.** Results must be bit-identical whether a row is processed by
  the serial or the parallel driver and for any thread count. Reassociation or
  FMA contraction would let LLVM round differently in different call sites, so
  reductions are written with explicit lanes instead (see ``kernels/_math.py``).
* ``cache=True``: compiled machine code is written next to the sources (or to
  ``NUMBA_CACHE_DIR``) so a second process starts warm. Parallel kernels are
  cached too; numba's known multi-process cache races (numba#4807, #7518) are
  about concurrent *writes*, which only happen on the very first cold run.
* ``nogil=True``: serial kernels release the GIL, so Python threads really run
  in parallel.

Parallel drivers are launched only while holding a process-wide lock taken with
``blocking=False``. Numba's ``workqueue`` threading layer (the one Numba falls
back to when neither TBB nor OpenMP is usable) aborts the process if two
threads launch parallel regions at once; a caller that finds the lock busy
simply runs the serial twin instead, which gives the same bits. fastroute
never changes the process-wide threading layer.

Fork safety: GNU OpenMP (Numba's ``omp`` layer on a plain pip install)
cannot run in a child forked from a process that has started it; Numba
terminates such a child at its first parallel launch, and a
``multiprocessing`` pool waits for it forever. A fork handler therefore
marks the child of such a process, and every fastroute call in it (and in
its own children) takes the serial twin, which gives the same bits.
Children made by ``spawn`` or ``forkserver`` start clean and run in parallel.
"""

from __future__ import annotations

import os
import threading

import numba
import numpy as np

__all__ = ["jit", "pjit", "parallel_guard", "PARALLEL_MIN_WORK", "_u"]

_CACHE = os.environ.get("FASTROUTE_NO_CACHE", "") == ""

_OPTIONS = dict(cache=_CACHE, error_model="numpy", nogil=True, fastmath=False)


def jit(fn=None, **overrides):
    """``numba.njit`` with fastroute's options (serial, GIL released)."""
    opts = {**_OPTIONS, **overrides}
    if fn is None:
        return lambda f: numba.njit(**opts)(f)
    return numba.njit(**opts)(fn)


def pjit(fn):
    """``numba.njit(parallel=True)`` with fastroute's options."""
    return numba.njit(parallel=True, **_OPTIONS)(fn)


@numba.njit(inline="always")
def _u(i):
    """``i`` as an unsigned index. Numba adds negative-index wraparound code to
    every signed index that is not a plain ``range`` variable (``a[start + i]``),
    and that code stops LLVM from vectorizing the loop; callers guarantee
    ``i >= 0``."""
    return np.uint64(i)


#: Below this many input elements a call takes the serial driver: launching
#: the thread pool costs a few microseconds, more than the work itself.
PARALLEL_MIN_WORK = 1 << 15

_launch_lock = threading.Lock()

#: True in a process forked from one whose threading layer cannot run in a
#: forked child (GNU OpenMP): every call then takes the serial twin.
_serial_after_fork = False


def _after_fork_in_child() -> None:
    global _serial_after_fork
    try:
        layer = numba.threading_layer()
    except ValueError:  # the parent never started a threading layer
        return
    if layer == "omp":
        _serial_after_fork = True


os.register_at_fork(after_in_child=_after_fork_in_child)


class parallel_guard:
    """Context manager: ``with parallel_guard(work) as par:`` gives ``par`` True
    when the parallel driver may be used for this call.

    It is False for small work, when only one Numba thread is configured,
    in a child forked from a process running GNU OpenMP, or when another
    thread of this process is inside a parallel launch.
    """

    __slots__ = ("_held", "_work")

    def __init__(self, work: int) -> None:
        self._work = work
        self._held = False

    def __enter__(self) -> bool:
        if self._work < PARALLEL_MIN_WORK or _serial_after_fork or numba.get_num_threads() < 2:
            return False
        self._held = _launch_lock.acquire(blocking=False)
        return self._held

    def __exit__(self, *exc) -> None:
        if self._held:
            _launch_lock.release()
            self._held = False
