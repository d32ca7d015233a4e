"""What every part of fastroute.dask needs: Dask itself and a cluster whose
Numba threads fit the cores."""

from __future__ import annotations

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
    thread each, whose Numba thread count is set before Numba starts in the
    worker (``NUMBA_NUM_THREADS``; Distributed's nanny limits OpenMP and MKL
    threads but not Numba's). ``numba_threads`` defaults to the machine's
    cores divided among the workers, so workers × threads never exceeds the
    cores. ``kwargs`` go to ``LocalCluster`` (``threads_per_worker`` too,
    then multiply it in); the compiled kernels come from Numba's disk cache
    once per worker process.

    Examples
    --------
    >>> import fastroute.dask as frd
    >>> from distributed import Client
    >>> with frd.local_cluster(2) as cluster, Client(cluster) as client:  # doctest: +SKIP
    ...     counts = frd.cooccurrence(tokens, vocab).compute()
    """
    import os

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
    env = {**kwargs.pop("env", {}), "NUMBA_NUM_THREADS": str(int(nt))}
    return LocalCluster(n_workers=n, threads_per_worker=threads, processes=True, env=env, **kwargs)
