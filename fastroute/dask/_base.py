"""What every part of fastroute.dask needs: Dask itself and a cluster whose
Numba threads fit the cores."""

from __future__ import annotations

import os
from typing import Any


def _dask():
    try:
        import dask
        import dask.array as da
    except ImportError as exc:  # pragma: no cover - exercised without dask
        raise ImportError("fastroute.dask needs Dask: pip install 'fastroute[dask]'") from exc
    return dask, da


def local_cluster(n_workers: int, /, *, numba_threads: int | None = None, **kwargs: Any):
    """A ``distributed.LocalCluster`` of ``n_workers`` processes, one Dask
    thread each, whose fastroute tasks use ``numba_threads`` Numba threads
    (default: the machine's cores divided among the workers, so workers ×
    threads never exceeds the cores; Distributed's nanny limits OpenMP and
    MKL threads but not Numba's). The count is passed as
    ``FASTROUTE_NUMBA_THREADS`` in the workers' environment and set by each
    task for its thread; on a cluster started otherwise, set that variable
    (or ``NUMBA_NUM_THREADS`` before the worker starts) in the workers. ``kwargs`` go to ``LocalCluster`` (``threads_per_worker`` too,
    then multiply it in); the compiled kernels come from Numba's disk cache
    once per worker process.

    Examples
    --------
    >>> import fastroute.dask as frd
    >>> from distributed import Client
    >>> with frd.local_cluster(2) as cluster, Client(cluster) as client:  # doctest: +SKIP
    ...     counts = frd.cooccurrence(tokens, vocab).compute()
    """

    try:
        from distributed import LocalCluster
    except ImportError as exc:  # pragma: no cover - exercised without distributed
        raise ImportError(
            "fastroute.dask.local_cluster needs Distributed: pip install 'fastroute[dask]'"
        ) from exc
    n = int(n_workers)
    if n < 1:
        raise ValueError(f"local_cluster: n_workers must be >= 1, got {n_workers!r}")
    threads = kwargs.pop("threads_per_worker", 1)
    cores = os.cpu_count() or 1
    nt = numba_threads if numba_threads is not None else max(1, cores // (n * threads))
    # read by every fastroute task (see _Limited): a spawned worker imports
    # the client's __main__, and with it Numba, before the nanny sets `env`,
    # so NUMBA_NUM_THREADS itself would come too late (and Numba refuses a
    # changed NUMBA_NUM_THREADS once its threads run)
    env = {**kwargs.pop("env", {}), THREADS_ENV: str(int(nt))}
    return LocalCluster(n_workers=n, threads_per_worker=threads, processes=True, env=env, **kwargs)


#: Environment variable of a Dask worker: the Numba threads each fastroute
#: task uses (at most the threads Numba started with).
THREADS_ENV = "FASTROUTE_NUMBA_THREADS"


class _Limited:
    """``func`` run with the worker's Numba thread count (``THREADS_ENV``),
    set for the task's thread (Numba's count is per thread). Pickles by
    reference; Dask names the task after ``func``."""

    def __init__(self, func: Any) -> None:
        self.func = func
        self.__name__ = getattr(func, "__name__", "task")  # what Dask names the task

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        limit = os.environ.get(THREADS_ENV)
        if limit:
            import numba

            numba.set_num_threads(max(1, min(int(limit), numba.config.NUMBA_NUM_THREADS)))
        return self.func(*args, **kwargs)

    def __reduce__(self):
        return (_Limited, (self.func,))
