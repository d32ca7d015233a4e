"""Parallel chunks on Python threads: serial, GIL-free kernels run side by side.

The routing kernels are serial ``nogil`` functions over a range of blocks;
``run`` calls one per chunk, the first on the calling thread and the others
on a small private thread pool. Nothing else is compiled for parallelism
(no ``prange`` twin of each kernel, which would double its compile time),
no Numba threading layer is involved (so no launch lock, and nothing that
cannot run after ``fork``), and the chunks never depend on the thread
count for their bits: they only split a fixed sequence of blocks.

The pool is recreated in a forked child (its threads do not survive a
fork). The number of chunks follows ``numba.get_num_threads()`` of the
calling thread, so ``numba.set_num_threads`` and ``NUMBA_NUM_THREADS``
control it as they control every other fastroute kernel.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numba

from . import _jit

__all__ = ["chunks", "run"]

_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_lock = threading.Lock()


def _forget_pool() -> None:
    global _pool, _pool_size
    _pool, _pool_size = None, 0


os.register_at_fork(after_in_child=_forget_pool)


#: Below this many elements of work a call runs in one chunk on the calling
#: thread. Handing a chunk to a pool thread costs about 50 us on a 2-core VM
#: (a futex wake of an idle virtual CPU), more than half of what a routing
#: pass over 2**18 logits takes: with the old bound (``PARALLEL_MIN_WORK``,
#: 2**15) ``route`` of 512 x 64 logits took 255 us on 2 threads and 90 us on
#: one.
MIN_WORK = 1 << 18


def chunks(work: int, blocks: int) -> int:
    """How many chunks to split ``blocks`` blocks of ``work`` elements into:
    1 below ``MIN_WORK`` (or ``PARALLEL_MIN_WORK``, if larger), else one per
    Numba thread (at most one per block)."""
    if work < max(MIN_WORK, _jit.PARALLEL_MIN_WORK) or blocks < 2:
        return 1
    return max(1, min(numba.get_num_threads(), blocks))


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size < workers:
            old = _pool
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fastroute")
            _pool_size = workers
            if old is not None:
                old.shutdown(wait=False)
        return _pool


def run(fn: Callable[..., Any], argsets: Sequence[tuple]) -> list[Any]:
    """``[fn(*a) for a in argsets]``, the calls running concurrently (``fn``
    must release the GIL to gain anything). Exceptions propagate."""
    if len(argsets) == 1:
        return [fn(*argsets[0])]
    pool = _executor(len(argsets) - 1)
    futures = [pool.submit(fn, *a) for a in argsets[1:]]
    try:
        first = fn(*argsets[0])
    finally:
        rest = [f.result() for f in futures]
    return [first, *rest]
