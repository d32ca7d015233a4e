"""fastroute on Dask arrays: the single-machine kernels applied block by block.

This is the first part of fastroute's scale-out (dense row-chunked arrays);
install it with ``pip install 'fastroute[dask]'``. Every function here takes
a 2-D array whose rows may be split into any number of chunks along axis 0
but whose reduced axis (axis 1) is one chunk, runs the fastroute function of
the same name on each block, and returns Dask arrays with the same chunks
along axis 0. Each row's result depends on that row alone, so the result is
bit-identical to the single-machine function on the whole array, for any
chunking and any scheduler.

A block is computed by one Dask task, and fastroute's kernels run it with
Numba's threads: under Dask's threaded scheduler (or a worker with several
threads) set ``numba.set_num_threads(1)`` in each worker, or give each
worker one thread, so that Dask threads × Numba threads does not exceed the
cores.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from .entropy import entropy as _entropy
from .entropy import entropy_from_logits as _entropy_from_logits
from .topk import TopK
from .topk import top_k as _top_k

__all__ = ["entropy", "entropy_from_logits", "top_k"]


def _dask():
    try:
        import dask
        import dask.array as da
    except ImportError as exc:  # pragma: no cover - exercised without dask
        raise ImportError("fastroute.dask needs Dask: pip install 'fastroute[dask]'") from exc
    return dask, da


def _rows(x: Any, func: str):
    """``x`` as a 2-D Dask array whose rows are each in one chunk."""
    _, da = _dask()
    a = x if isinstance(x, da.Array) else da.asarray(x)
    if a.ndim != 2:
        raise ValueError(f"{func}: expected a 2-D array of rows, got {a.ndim} dimensions")
    if a.numblocks[1] != 1:
        raise ValueError(
            f"{func}: each row must be in one chunk, but axis 1 is split into "
            f"{a.numblocks[1]} chunks; rechunk first: x.rechunk({{1: -1}})"
        )
    return a


def _probe(a) -> np.ndarray:
    # one row of the block dtype and width: the single-machine function
    # checks dtypes and arguments on it and gives the output dtype
    return np.zeros((1, a.shape[1]), a.dtype)


def entropy(p: Any, /, *, base: float | None = None, normalize: bool = True):
    """Shannon entropy of every row of a row-chunked 2-D Dask array.

    Parameters and semantics are those of :func:`fastroute.entropy` along
    axis 1 (float64 sums, ``0 log 0 = 0``, NaN rules, output float32 for
    float32 input, float64 otherwise).

    Returns
    -------
    dask.array.Array of shape (T,), chunked as ``p``'s rows.

    Examples
    --------
    >>> import dask.array as da, numpy as np, fastroute.dask as frd
    >>> p = da.from_array(np.array([[0.5, 0.5], [1.0, 0.0], [0.25, 0.75]]), chunks=(2, 2))
    >>> frd.entropy(p, base=2).compute().round(4)
    array([1.    , 0.    , 0.8113])
    """
    a = _rows(p, "entropy")
    kw = {"base": base, "normalize": normalize}
    out = _entropy(_probe(a), **kw).dtype
    return a.map_blocks(_entropy, drop_axis=1, dtype=out, meta=np.empty((0,), out), **kw)


def entropy_from_logits(z: Any, /, *, base: float | None = None):
    """Entropy of ``softmax(z)`` of every row of a row-chunked 2-D Dask array.

    Parameters and semantics are those of
    :func:`fastroute.entropy_from_logits` along axis 1.

    Examples
    --------
    >>> import dask.array as da, numpy as np, fastroute.dask as frd
    >>> z = da.zeros((5, 4), chunks=(2, 4), dtype=np.float32)
    >>> frd.entropy_from_logits(z, base=2).compute()
    array([2., 2., 2., 2., 2.], dtype=float32)
    """
    a = _rows(z, "entropy_from_logits")
    out = _entropy_from_logits(_probe(a), base=base).dtype
    return a.map_blocks(
        _entropy_from_logits,
        drop_axis=1,
        dtype=out,
        meta=np.empty((0,), out),
        base=base,
    )


def top_k(
    x: Any,
    k: int,
    /,
    *,
    mode: Literal["largest", "smallest"] = "largest",
    sorted: bool = True,
) -> TopK:
    """The ``k`` best entries of every row of a row-chunked 2-D Dask array.

    Semantics are those of :func:`fastroute.top_k` along axis 1 (ties to
    the lower index, NaN after every number, int64 indices). Each block is
    computed once for both outputs.

    Returns
    -------
    TopK(values, indices), two Dask arrays of shape (T, k).

    Examples
    --------
    >>> import dask.array as da, numpy as np, fastroute.dask as frd
    >>> x = da.from_array(np.array([[1.0, 3.0, 2.0], [5.0, 5.0, 0.0]]), chunks=(1, 3))
    >>> r = frd.top_k(x, 2)
    >>> r.indices.compute()
    array([[1, 2],
           [0, 1]])
    """
    dask, da = _dask()
    a = _rows(x, "top_k")
    probe = _top_k(_probe(a), k, mode=mode, sorted=sorted)
    kk = probe.values.shape[1]
    vt, it = probe.values.dtype, probe.indices.dtype

    def block(b):
        r = _top_k(b, k, mode=mode, sorted=sorted)
        return r.values, r.indices

    parts = [dask.delayed(block, nout=2)(d) for d in a.to_delayed().ravel()]
    rows = a.chunks[0]
    values = da.concatenate(
        [da.from_delayed(p[0], (n, kk), dtype=vt) for p, n in zip(parts, rows, strict=True)]
    )
    indices = da.concatenate(
        [da.from_delayed(p[1], (n, kk), dtype=it) for p, n in zip(parts, rows, strict=True)]
    )
    return TopK(values, indices)
