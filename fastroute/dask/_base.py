"""What every part of fastroute.dask needs: Dask itself and a cluster whose
Numba threads fit the cores."""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np


def dask_modules():
    try:
        import dask
        import dask.array as da
    except ImportError as exc:  # pragma: no cover - exercised without dask
        raise ImportError("fastroute.dask needs Dask: pip install 'fastroute[dask]'") from exc
    return dask, da


def as_dask(x: Any, func: str, what: str = "an array"):
    """``x`` as a Dask array: a Dask array as it is, anything else as
    ``dask.array.asarray`` wraps it (one chunk when small; lazily for the
    array-likes it knows), with a clear error when that fails (a ragged
    list, say)."""
    _, da = dask_modules()
    if isinstance(x, da.Array):
        return x

    def cannot(exc: BaseException) -> TypeError:
        return TypeError(
            f"{func}: cannot convert {type(x).__name__} to {what} ({exc}); "
            "pass a NumPy or Dask array"
        )

    try:
        if type(x).__module__.startswith("torch") and hasattr(x, "detach"):
            # a NumPy view of a CPU tensor, as the single-machine functions
            # take it (no autograd); Dask does not know torch's dtypes
            return da.asarray(np.asarray(x.detach()))
        return da.asarray(x)
    except NotImplementedError:  # object data, which Dask cannot size for its chunks
        pass
    except Exception as exc:  # depends on the foreign object
        raise cannot(exc) from None
    try:
        a = np.asarray(x)
    except Exception as exc:  # pragma: no cover - da.asarray failed first
        raise cannot(exc) from None
    # one chunk, for the single-machine function's dtype check to reject
    # (or to accept, when it is empty)
    return da.from_array(a, chunks=-1)


def known_chunks(a: Any, func: str, name: str, axes: tuple[int, ...] | None = None) -> None:
    """A ``ValueError`` saying how to fix it when the chunk sizes of ``a``
    along ``axes`` (all by default) are unknown (NaN, as after boolean
    indexing): the blocks' places are needed to build the graph."""
    for ax in range(a.ndim) if axes is None else axes:
        if any(math.isnan(c) for c in a.chunks[ax]):
            raise ValueError(
                f"{func}: the chunk sizes of {name} along axis {ax} are unknown (as after "
                f"boolean indexing); compute them first: {name} = {name}.compute_chunk_sizes()"
            )


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
    from .._validate import check_int

    func = "local_cluster"
    n = check_int(n_workers, "n_workers", func, 1)
    threads = check_int(kwargs.pop("threads_per_worker", 1), "threads_per_worker", func, 1)
    cores = os.cpu_count() or 1
    if numba_threads is None:
        nt = max(1, cores // (n * threads))
    else:
        nt = check_int(numba_threads, "numba_threads", func, 1)
    # read by every fastroute task (see Limited): a spawned worker imports
    # the client's __main__, and with it Numba, before the nanny sets `env`,
    # so NUMBA_NUM_THREADS itself would come too late (and Numba refuses a
    # changed NUMBA_NUM_THREADS once its threads run)
    env = {**kwargs.pop("env", {}), THREADS_ENV: str(nt)}
    return LocalCluster(n_workers=n, threads_per_worker=threads, processes=True, env=env, **kwargs)


#: Environment variable of a Dask worker: the Numba threads each fastroute
#: task uses (at most the threads Numba started with).
THREADS_ENV = "FASTROUTE_NUMBA_THREADS"


class Limited:
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
        return (Limited, (self.func,))
