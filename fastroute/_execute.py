"""The executor: how every fastroute kernel runs, serially or in parallel.

A kernel is written once, as a serial function over a range of items (rows,
tokens, CSR rows, blocks) that releases the GIL: ``kernel(*args, lo, hi)``.
:func:`run` calls it over ``[0, n)``, in one piece on the calling thread
when the work is small, else split into chunks that the calling thread and
a small private pool of Python threads take in turn. That is the library's
only parallel mechanism:

* nothing is compiled twice for parallelism (a ``prange`` twin of a kernel
  would re-optimize its body, doubling its compile time);
* no Numba threading layer is started, so nothing breaks after ``fork``
  (the pool is recreated in the child), no launch lock is needed and
  concurrent calls from several Python threads simply share the pool;
* each chunk's results depend only on its items, so the bits never depend
  on the thread count or on the split. Kernels that reduce over items
  return one partial per chunk; their callers pass fixed ``bounds`` (a
  split of the data that does not depend on the thread count) and combine
  the partials in chunk order, as the Dask functions do with theirs.

The number of threads follows ``numba.get_num_threads()`` of the calling
thread, so ``numba.set_num_threads`` and ``NUMBA_NUM_THREADS`` control
fastroute as they control Numba's own parallel code (fastroute reads the
count without starting Numba's threading layer: see :func:`threads`).
"""

from __future__ import annotations

import itertools
import math
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numba
import numpy as np
from numba.np.ufunc import parallel as _numba_parallel

from ._dtypes import SINGLE
from .kernels.csr import entry_chunks
from .kernels.entropy import to_float32

__all__ = [
    "MIN_WORK", "chunk_count", "even_bounds", "finish", "min_work", "run", "run_chunks", "run_csr",
    "run_jobs", "threads",
]  # fmt: skip

#: Below this much work (in element-equivalents: a cheap pass over one
#: element is 1) a call runs in one piece on the calling thread. Waking a
#: pool thread costs about 50 us on a 2-core VM (a futex wake of an idle
#: virtual CPU), so a parallel call must have several times that to gain.
MIN_WORK = 1 << 18

#: Chunks per thread: a thread slowed by a noisy neighbour leaves its later
#: chunks to the others.
CHUNKS_PER_THREAD = 4

_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_lock = threading.Lock()


def _forget_pool() -> None:
    global _pool, _pool_size
    _pool, _pool_size = None, 0


os.register_at_fork(after_in_child=_forget_pool)


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


def threads() -> int:
    """The threads a call may use: ``numba.get_num_threads()`` once Numba's
    threading layer is running (``numba.set_num_threads`` starts it), else
    ``NUMBA_NUM_THREADS``. Reading the count through Numba would start its
    threading layer (OpenMP threads that fastroute never uses)."""
    if getattr(_numba_parallel, "_is_initialized", True):
        return numba.get_num_threads()
    return numba.config.NUMBA_NUM_THREADS


def min_work() -> int:
    """:data:`MIN_WORK`, read at call time."""
    return MIN_WORK


def chunk_count(n: int, work: float, per_thread: int = CHUNKS_PER_THREAD) -> int:
    """How many chunks ``n`` items of ``work`` element-equivalents in total
    are split into: 1 below :data:`MIN_WORK` or on one thread, else
    ``per_thread`` per thread (at most one per item)."""
    if work < MIN_WORK or n < 2:
        return 1
    t = threads()
    return 1 if t < 2 else min(n, per_thread * t)


def even_bounds(n: int, chunks: int) -> list[int]:
    """``chunks + 1`` bounds splitting ``[0, n)`` into near-equal ranges."""
    return [(c * n) // chunks for c in range(chunks + 1)]


#: float64 scratch buffers a kernel takes after ``lo, hi``: their sizes,
#: or a function of the chunk's item count giving them
Scratch = tuple[int, ...] | Callable[[int], tuple[int, ...]]


def run(
    kernel: Callable[..., Any], args: tuple, n: int, work: float, scratch: Scratch = ()
) -> list[Any]:
    """``kernel(*args, lo, hi, *buffers)`` over ``[0, n)``: in one call when
    the work is small, else in :func:`chunk_count` near-equal chunks run
    side by side (for kernels whose items are independent: rows, tokens).
    ``buffers``: fresh float64 scratch of the sizes ``scratch`` gives, one
    set per chunk. Returns the chunks' results in order."""
    if n > 0:
        return run_chunks(kernel, args, even_bounds(n, chunk_count(n, work)), scratch)
    return []


def run_csr(
    kernel: Callable[..., Any],
    args: tuple,
    indptr: np.ndarray,
    row_cost: int,
    scratch: Scratch = (),
) -> list[Any]:
    """``kernel(*args, lo, hi, *buffers)`` over the rows of a CSR matrix
    with row pointers ``indptr``, in chunks of near-equal work (stored
    entries plus ``row_cost`` per row), so that a few long rows do not
    leave the other threads idle."""
    nrows = indptr.shape[0] - 1
    if nrows <= 0:
        return []
    chunks = chunk_count(nrows, int(indptr[-1]) + row_cost * nrows)
    if chunks == 1:
        return run_chunks(kernel, args, [0, nrows], scratch)
    return run_chunks(kernel, args, entry_chunks(indptr, chunks, row_cost).tolist(), scratch)


def run_chunks(
    kernel: Callable[..., Any], args: tuple, bounds: Sequence[int], scratch: Scratch = ()
) -> list[Any]:
    """``[kernel(*args, bounds[c], bounds[c + 1], *buffers) for c in chunks]``
    by :func:`run_jobs`: the chunks' results in order."""
    jobs = []
    for lo, hi in itertools.pairwise(bounds):
        sizes = scratch(hi - lo) if callable(scratch) else scratch
        jobs.append((*args, lo, hi, *(np.empty(s) for s in sizes)))
    return run_jobs(kernel, jobs)


def run_jobs(kernel: Callable[..., Any], jobs: Sequence[tuple]) -> list[Any]:
    """``[kernel(*job) for job in jobs]``, the calls running side by side on
    the calling thread and the pool (each thread takes the next job when it
    is free). Results come back in job order; the first exception
    propagates."""
    return _launch(kernel, jobs)


def _launch(kernel: Callable[..., Any], jobs: Sequence[tuple]) -> list[Any]:
    # every launch of every kernel comes here, looked up at call time: the
    # one place fastroute goes parallel, and the tests' one spy
    nj = len(jobs)
    if nj <= 1:
        return [kernel(*jobs[0])] if nj == 1 else []
    results: list[Any] = [None] * nj
    claim = itertools.count()

    def work() -> None:
        while (j := next(claim)) < nj:
            results[j] = kernel(*jobs[j])

    helpers = min(nj, threads()) - 1
    futures = [_executor(helpers).submit(work) for _ in range(helpers)] if helpers > 0 else []
    try:
        work()
    finally:
        for f in futures:
            if not f.cancel():  # a helper that never started has nothing to do
                f.result()
    return results


def finish(out64: np.ndarray, dtype: np.dtype, base: float | None) -> np.ndarray:
    """The float64 results ``out64`` in ``base`` (``None``: nats, as they
    are), rounded once to float32 for float16/float32 input (beyond
    float32: ``+-inf``, without NumPy's warning)."""
    if base is not None:
        with np.errstate(over="ignore"):  # beyond float64: inf, the rounded value
            out64 /= math.log(base)
    if dtype in SINGLE and out64.dtype != np.float32:
        out32 = np.empty(out64.shape, np.float32)
        to_float32(out64.reshape(-1), out32.reshape(-1))  # |H| > float32 max -> +-inf
        return out32
    return out64
