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

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .entropy import entropy as _entropy
from .entropy import entropy_from_logits as _entropy_from_logits
from .tokens import cooccurrence as _cooccurrence
from .topk import TopK
from .topk import top_k as _top_k

__all__ = ["CSRBlocks", "cooccurrence", "entropy", "entropy_from_logits", "top_k"]


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


# --- corpus -> counts --------------------------------------------------------------


@dataclass(frozen=True)
class CSRBlocks:
    """A sparse ``(V, V)`` matrix as CSR row blocks, each a Dask delayed
    ``scipy.sparse.csr_array``: block ``r`` holds rows
    ``row_bounds[r]:row_bounds[r + 1]``, canonical, int64 counts until
    :meth:`compute` gives the requested dtype.

    No task holds more than one chunk's pairs or one row block of the
    result."""

    shape: tuple[int, int]
    row_bounds: tuple[int, ...]
    blocks: tuple[Any, ...]
    dtype: np.dtype
    index_dtype: np.dtype

    def compute(self, **kwargs: Any) -> Any:
        """The whole matrix as one canonical ``csr_array`` (``kwargs`` go to
        ``dask.compute``), with the dtypes :func:`fastroute.cooccurrence`
        gives."""
        import scipy.sparse as sp

        dask, _ = _dask()
        parts = dask.compute(*self.blocks, **kwargs)
        nnz = [p.nnz for p in parts]
        indptr = np.zeros(self.shape[0] + 1, self.index_dtype)
        indices = np.empty(sum(nnz), self.index_dtype)
        data = np.empty(sum(nnz), self.dtype)
        at = 0
        for r, p in enumerate(parts):
            lo, hi = self.row_bounds[r], self.row_bounds[r + 1]
            indptr[lo + 1 : hi + 1] = p.indptr[1:] + at
            indices[at : at + p.nnz] = p.indices
            data[at : at + p.nnz] = p.data
            at += p.nnz
        out = sp.csr_array((data, indices, indptr), shape=self.shape)
        out.has_canonical_format = True
        return out


def _chunk_counts(seg, tail, vocab, window, symmetric, edges, where):
    # pairs whose first position lies in this chunk: those of the chunk and
    # the window after it, minus those within that window alone
    try:
        c = _cooccurrence(seg, vocab, window=window, symmetric=False)
        c = (c - _cooccurrence(tail, vocab, window=window, symmetric=False)).tocsr()
    except ValueError as exc:
        raise ValueError(f"cooccurrence: tokens {where}: {exc}") from None
    c.eliminate_zeros()
    if symmetric:
        c = (c + c.T).tocsr()
    c.sort_indices()
    return tuple(c[edges[r] : edges[r + 1]] for r in range(len(edges) - 1))


def _add(*parts):
    out = parts[0]
    for p in parts[1:]:
        out = out + p
    out = out.tocsr()
    out.sum_duplicates()
    return out


def _tree_sum(dask, parts, fan_in=4):
    # a fixed tree (the same for any scheduler): integer sums, so any tree
    # gives the same counts
    while len(parts) > 1:
        parts = [dask.delayed(_add)(*parts[i : i + fan_in]) for i in range(0, len(parts), fan_in)]
    return parts[0]


def cooccurrence(
    tokens: Any,
    vocab_size: int,
    /,
    *,
    window: int = 2,
    symmetric: bool = True,
    dtype: Any = np.int64,
    row_blocks: int | None = None,
) -> CSRBlocks:
    """Co-occurrence counts of a token stream held as a 1-D Dask array.

    The counts of :func:`fastroute.cooccurrence` (the same parameters and
    the same result, bit for bit, for any chunking): each chunk counts the
    pairs whose first position it holds, reading ``window`` tokens past its
    end, so a pair across a chunk boundary is counted once. The chunks'
    counts are split into ``row_blocks`` row blocks (default: one per
    chunk, at most ``vocab_size``) and summed block by block.

    Returns
    -------
    CSRBlocks
        Lazy; ``.compute()`` gives the ``scipy.sparse.csr_array``.

    Examples
    --------
    >>> import dask.array as da, numpy as np, fastroute.dask as frd
    >>> t = da.from_array(np.array([0, 1, 2, 0]), chunks=2)
    >>> frd.cooccurrence(t, 3, window=1).compute().toarray()
    array([[0, 1, 1],
           [1, 0, 1],
           [1, 1, 0]])
    """
    dask, da = _dask()
    x = tokens if isinstance(tokens, da.Array) else da.asarray(tokens)
    if x.ndim != 1:
        raise ValueError(f"cooccurrence: tokens must be 1-D, got {x.ndim} dimensions")
    if x.dtype.kind not in "iu":
        raise TypeError(f"cooccurrence: tokens must be integers, got dtype {x.dtype}")
    # the single-machine function checks the arguments and gives the dtypes
    probe = _cooccurrence(np.zeros(0, np.int64), vocab_size, window=window, dtype=dtype)
    vocab = probe.shape[0]
    n = x.shape[0]
    w = min(int(window), max(n - 1, 1))
    pairs = max(0, n - 1) * w * (2 if symmetric else 1)
    index_dtype = np.dtype(np.int32 if max(vocab, pairs) < 2**31 else np.int64)
    nr = row_blocks if row_blocks is not None else x.numblocks[0]
    if int(nr) < 1:
        raise ValueError(f"cooccurrence: row_blocks must be >= 1, got {row_blocks!r}")
    nr = max(1, min(int(nr), vocab))
    edges = tuple(vocab * r // nr for r in range(nr + 1))
    pieces = []
    start = 0
    for size in x.chunks[0]:
        end = start + size
        hi = min(end + w, n)
        where = f"{start}:{end} (chunk {len(pieces)})"
        pieces.append(
            dask.delayed(_chunk_counts, nout=nr)(
                x[start:hi], x[end:hi], vocab, w, bool(symmetric), edges, where
            )
        )
        start = end
    if not pieces:  # an empty stream
        pieces.append(dask.delayed(_chunk_counts, nout=nr)(
            np.zeros(0, np.int64), np.zeros(0, np.int64), vocab, w, bool(symmetric), edges, "0:0"
        ))  # fmt: skip
    out = np.dtype(dtype)
    blocks = []
    for r in range(nr):
        total = _tree_sum(dask, [p[r] for p in pieces])
        blocks.append(dask.delayed(lambda b, out=out: b.astype(out))(total))
    return CSRBlocks((vocab, vocab), edges, tuple(blocks), out, index_dtype)
