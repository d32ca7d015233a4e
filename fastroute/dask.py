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
from .tokens import normalize_rows as _normalize_rows
from .topk import TopK
from .topk import top_k as _top_k

__all__ = [
    "CSRBlocks", "cooccurrence", "entropy", "entropy_from_logits", "local_cluster", "normalize_rows",
    "route", "row_entropy", "top_entropy", "top_k",
]  # fmt: skip


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


# --- routing -----------------------------------------------------------------------


def _route_block(block, k, options, where):
    from .routing import _route_with_sums

    try:
        r, psum, lse2 = _route_with_sums(block, k, **options)
    except ValueError as exc:  # a token of this chunk; its index is within the chunk
        raise ValueError(f"route: rows {where}: {exc}") from None
    return r, psum.sum(axis=0), float(lse2.sum())


def _assemble(parts, starts, T, k, E, stats):
    # the batch's grouping from the chunks' (a stable counting sort by
    # expert, chunk after chunk, is the same as one over the whole batch)
    # and its statistics from the chunks' sums, in chunk order
    counts = np.zeros(E, np.int64)
    for r, _, _ in parts:
        counts += r.counts
    offsets = np.zeros(E + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    order = np.empty(int(offsets[-1]), np.int64)
    at = offsets[:-1].copy()
    for (r, _, _), t0 in zip(parts, starts, strict=True):
        for e in range(E):
            seg = r.order[r.offsets[e] : r.offsets[e + 1]]
            order[at[e] : at[e] + seg.size] = seg + t0 * k
            at[e] += seg.size
    total = int(offsets[-1])
    imbalance = counts.max() / (total / E) if total else np.nan
    aux = z_loss = np.nan
    if stats and T:
        p = np.zeros(E)
        zs = 0.0
        for _, ps, z in parts:
            p += ps
            zs += z
        if T * k:
            aux = E * float(sum(counts[e] / (T * k) * (p[e] / T) for e in range(E)))
        z_loss = zs / T
    return counts, offsets, order, np.float64(aux), np.float64(z_loss), np.float64(imbalance)


def route(logits: Any, k: int, /, **options: Any):
    """Dropless token-choice routing of a row-chunked ``(T, E)`` Dask array.

    The options and semantics are those of :func:`fastroute.route`; each
    chunk of rows is routed by it, and the batch's grouping and statistics
    are assembled from the chunks. ``experts``, ``weights``, ``counts``,
    ``offsets`` and ``order`` equal the single-machine result bit for bit
    for any chunking; ``aux_loss`` and ``z_loss`` sum the chunks' block sums
    in chunk order (within 1e-12 relative of one call on the whole batch).
    A capacity needs the admission order of the whole batch:
    ``capacity_factor`` is not supported here (a ``ValueError``).

    Returns
    -------
    Routing
        Its fields as Dask arrays (0-d for ``aux_loss``, ``z_loss``,
        ``imbalance``; ``None`` where :func:`fastroute.route` gives None).
        ``dask.compute(*r[:10])`` computes them in one pass.

    Examples
    --------
    >>> import dask, dask.array as da, numpy as np, fastroute.dask as frd
    >>> x = da.from_array(np.array([[2.0, 0.0, 1.0], [0.0, 3.0, 3.0]], np.float32), chunks=(1, 3))
    >>> r = frd.route(x, 2)
    >>> experts, order = dask.compute(r.experts, r.order)
    >>> experts, order
    (array([[0, 2],
           [1, 2]], dtype=int32), array([0, 2, 1, 3]))
    """
    from .routing import Routing

    dask, da = _dask()
    a = _rows(logits, "route")
    if options.get("capacity_factor") is not None:
        raise ValueError(
            "fastroute.dask.route: a capacity needs the admission order of the whole "
            "batch and is not supported on chunks; route dropless, or call "
            "fastroute.route on one machine"
        )
    from .routing import route as _route

    probe = _route(_probe(a), k, **options)  # checks k and the options
    kk = probe.experts.shape[1]
    T, E = a.shape
    stats = probe.entropy is not None
    rows = a.chunks[0]
    starts = tuple(int(s) for s in np.cumsum((0, *rows[:-1])))
    parts = [
        dask.delayed(_route_block)(d, k, options, f"{s}:{s + n} (chunk {c})")
        for c, (d, s, n) in enumerate(zip(a.to_delayed().ravel(), starts, rows, strict=True))
    ]

    def field(name, shape, dtype):
        get = dask.delayed(lambda p, name=name: getattr(p[0], name))
        return da.concatenate(
            [
                da.from_delayed(get(p), shape(n), dtype=dtype)
                for p, n in zip(parts, rows, strict=True)
            ]
        )

    experts = field("experts", lambda n: (n, kk), probe.experts.dtype)
    weights = field("weights", lambda n: (n, kk), probe.weights.dtype)
    ent = field("entropy", lambda n: (n,), probe.entropy.dtype) if stats else None
    glob = dask.delayed(_assemble, nout=6)(parts, starts, T, kk, E, stats)
    total = T * kk
    counts = da.from_delayed(glob[0], (E,), dtype=np.int64)
    offsets = da.from_delayed(glob[1], (E + 1,), dtype=np.int64)
    order = da.from_delayed(glob[2], (total,), dtype=np.int64)
    aux, z_loss, imb = (da.from_delayed(glob[i], (), dtype=np.float64) for i in (3, 4, 5))
    dropped = da.zeros((T, kk), dtype=bool, chunks=(rows, kk))
    if not stats:
        aux = z_loss = None
    return Routing(experts, weights, counts, offsets, order, dropped, aux, z_loss, ent, imb, None)


# --- the token-statistics pipeline on row blocks --------------------------------------


def normalize_rows(C: CSRBlocks, /) -> CSRBlocks:
    """:func:`fastroute.normalize_rows` of each row block (each row is
    divided by its own sum, so the blocks need nothing from each other).

    Examples
    --------
    >>> import dask.array as da, numpy as np, fastroute.dask as frd
    >>> C = frd.cooccurrence(da.from_array(np.array([0, 1, 1, 0]), chunks=2), 2, window=1)
    >>> frd.normalize_rows(C).compute().toarray()
    array([[0. , 1. ],
           [0.5, 0.5]])
    """
    import scipy.sparse as sp

    dask, _ = _dask()
    _check_blocks(C, "normalize_rows")
    probe = _normalize_rows(sp.csr_array(np.ones((1, 1), C.dtype)))
    blocks = tuple(dask.delayed(_normalize_rows)(b) for b in C.blocks)
    return CSRBlocks(C.shape, C.row_bounds, blocks, probe.dtype, C.index_dtype)


def _check_blocks(C: Any, func: str) -> None:
    if not isinstance(C, CSRBlocks):
        raise TypeError(f"{func}: expected CSRBlocks (from fastroute.dask), got {type(C).__name__}")


def row_entropy(C: CSRBlocks, /, *, base: float | None = None, normalize: bool = True):
    """Entropy of every row of ``C`` (:func:`fastroute.entropy` of each row
    block): a 1-D Dask array of ``C.shape[0]``, chunked as the row blocks.

    Examples
    --------
    >>> import dask.array as da, numpy as np, fastroute.dask as frd
    >>> C = frd.cooccurrence(da.from_array(np.array([0, 1, 1, 0]), chunks=2), 2, window=1)
    >>> frd.row_entropy(C, base=2).compute()
    array([0., 1.])
    """
    import scipy.sparse as sp

    dask, da = _dask()
    _check_blocks(C, "row_entropy")
    out = _entropy(sp.csr_array(np.ones((1, 1), C.dtype)), base=base, normalize=normalize).dtype
    parts = []
    for r, b in enumerate(C.blocks):
        n = C.row_bounds[r + 1] - C.row_bounds[r]
        h = dask.delayed(_entropy)(b, base=base, normalize=normalize)
        parts.append(da.from_delayed(h, (n,), dtype=out))
    return da.concatenate(parts) if parts else da.zeros((0,), dtype=out)


def _best_rows(values, rows, k):
    # the k best (value, row) pairs: ties to the lower row, NaN last
    order = np.argsort(rows, kind="stable")
    v, r = values[order], rows[order]
    best = _top_k(v, min(k, v.shape[0]))
    return best.values, r[best.indices]


def _merge_best(k, *parts):
    return _best_rows(
        np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), k
    )


def top_entropy(C: CSRBlocks, k: int, /, *, normalize: bool = True, base: float | None = None):
    """The ``k`` rows of ``C`` with the highest entropy, as
    :func:`fastroute.top_entropy` (ties to the lower row, NaN last): each
    row block's best ``k`` rows, then a fixed tree of merges. Returns a
    delayed ``TopK``; ``dask.compute`` it.

    Examples
    --------
    >>> import dask, dask.array as da, numpy as np, fastroute.dask as frd
    >>> C = frd.cooccurrence(da.from_array(np.array([0, 1, 2, 0, 2]), chunks=2), 3, window=1)
    >>> dask.compute(frd.top_entropy(C, 2, base=2))[0].indices
    array([1, 0])
    """
    dask, _ = _dask()
    h = row_entropy(C, base=base, normalize=normalize)
    n = C.shape[0]
    from ._validate import check_int

    kk = check_int(k, "k", "top_entropy", 0, n)
    parts = []
    for r, d in enumerate(h.to_delayed().ravel()):
        lo, hi = C.row_bounds[r], C.row_bounds[r + 1]
        parts.append(dask.delayed(_best_rows)(d, np.arange(lo, hi, dtype=np.intp), kk))
    while len(parts) > 1:
        parts = [dask.delayed(_merge_best)(kk, *parts[i : i + 4]) for i in range(0, len(parts), 4)]
    if not parts:
        return dask.delayed(TopK)(np.empty(0, h.dtype), np.empty(0, np.intp))
    return dask.delayed(lambda p: TopK(p[0], p[1]))(parts[0])
