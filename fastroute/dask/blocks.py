"""Sparse matrices as CSR row blocks: co-occurrence counting over a chunked
token stream, and the token-statistics pipeline applied block by block."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..entropy import entropy as _entropy
from ..kernels import counts as KC
from ..tokens import cooccurrence as _cooccurrence
from ..tokens import normalize_rows as _normalize_rows
from ..topk import TopK
from ..topk import top_k as _top_k
from ._base import Limited, as_dask, dask_modules, known_chunks
from .dense import top_k as _dask_top_k

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

        dask, _ = dask_modules()
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

    def persist(self, *, wait: bool = True) -> CSRBlocks:
        """The same matrix with its blocks computed and kept where they were
        computed (on the workers under ``distributed``), so that the stages
        after it do not count again. ``wait``: return once they are."""
        dask, _ = dask_modules()
        blocks = dask.persist(*self.blocks)
        if wait:
            try:
                from distributed import futures_of
                from distributed import wait as _wait
            except ImportError:  # pragma: no cover - the local schedulers compute at once
                pass
            else:
                if futures := futures_of(blocks):  # none under the local schedulers
                    _wait(futures)
        return CSRBlocks(self.shape, self.row_bounds, tuple(blocks), self.dtype, self.index_dtype)

    def _rank_rows(self, k: int, **options: Any) -> Any:
        # fastroute.dask.top_k of these rows, block by block
        return _top_k_rows(self, k, **options)


def _chunk_counts(seg, tail, vocab, window, symmetric, edges, where):
    # pairs whose first position lies in this chunk: those of the chunk and
    # the window after it, minus those within that window alone (a few
    # entries, subtracted in place)
    try:
        c = _cooccurrence(seg, vocab, window=window, symmetric=symmetric)
        t = _cooccurrence(tail, vocab, window=window, symmetric=symmetric)
    except ValueError as exc:
        raise ValueError(f"cooccurrence: tokens {where}: {exc}") from None
    if t.nnz:
        rows = np.repeat(np.arange(vocab), np.diff(t.indptr))
        pos = np.array([
            c.indptr[i] + np.searchsorted(c.indices[c.indptr[i] : c.indptr[i + 1]], j)
            for i, j in zip(rows.tolist(), t.indices.tolist(), strict=True)
        ], np.int64)  # fmt: skip
        c.data[pos] -= t.data
        if not c.data[pos].all():  # pairs seen only within the window
            c.eliminate_zeros()
    return tuple(_rows_of(c, edges[r], edges[r + 1]) for r in range(len(edges) - 1))


def _rows_of(c, lo: int, hi: int):
    # rows lo:hi of a canonical CSR matrix, as views of its arrays
    import scipy.sparse as sp

    a, b = c.indptr[lo], c.indptr[hi]
    out = sp.csr_array((c.data[a:b], c.indices[a:b], c.indptr[lo : hi + 1] - a),
                       shape=(hi - lo, c.shape[1]))  # fmt: skip
    out.has_canonical_format = True
    return out


def _add(*parts):
    # the canonical sum of canonical count blocks of the same rows, merged
    # pairwise by fastroute's kernel (the counts are positive: no zeros)
    import scipy.sparse as sp


    parts = [p for p in parts if p.nnz] or [parts[0]]
    while len(parts) > 1:
        nxt = []
        for a, b in zip(parts[::2], parts[1::2], strict=False):
            it = np.result_type(a.indices.dtype, b.indices.dtype, a.indptr.dtype, b.indptr.dtype)
            dt = np.result_type(a.dtype, b.dtype)
            ip, ix, d = KC.add_canonical(
                a.indptr.astype(np.int64, copy=False), a.indices.astype(it, copy=False),
                a.data.astype(dt, copy=False), b.indptr.astype(np.int64, copy=False),
                b.indices.astype(it, copy=False), b.data.astype(dt, copy=False),
            )  # fmt: skip
            ipt = it if ip[-1] < np.iinfo(it).max else np.int64  # the sum's entries fit
            c = sp.csr_array((d, ix, ip.astype(ipt, copy=False)), shape=a.shape)
            c.has_canonical_format = True
            nxt.append(c)
        if len(parts) % 2:
            nxt.append(parts[-1])
        parts = nxt
    return parts[0]


def _as_dtype(b, dtype):
    return b if b.dtype == dtype else b.astype(dtype)


def _tree_sum(dask, parts, fan_in=4):
    # a fixed tree (the same for any scheduler): integer sums, so any tree
    # gives the same counts
    while len(parts) > 1:
        parts = [
            dask.delayed(Limited(_add))(*parts[i : i + fan_in])
            for i in range(0, len(parts), fan_in)
        ]
    return parts[0]


def _row_edges(vocab: int, nr: int, weights: Any) -> tuple[int, ...]:
    # nr blocks of equal rows, or of about equal weight (empty ones dropped)
    if weights is None:
        return tuple(vocab * r // nr for r in range(nr + 1))
    try:
        w = np.asarray(weights)
    except Exception as exc:  # a ragged list, say
        raise TypeError(
            f"cooccurrence: row_weights must be {vocab} numbers (one per row); cannot convert "
            f"{type(weights).__name__} ({exc})"
        ) from None
    if w.dtype.kind not in "iuf":
        raise TypeError(
            f"cooccurrence: row_weights must be {vocab} real numbers (one per row), got dtype "
            f"{w.dtype}; pass e.g. the tokens' frequencies as an int or float array"
        )
    if w.shape != (vocab,):
        raise ValueError(
            f"cooccurrence: row_weights must be {vocab} numbers (one per row), got shape {w.shape}"
        )
    w = w.astype(np.float64)
    if not (np.isfinite(w).all() and (w >= 0).all()):
        raise ValueError("cooccurrence: row_weights must be finite and >= 0")
    cum = np.cumsum(w)
    total = float(cum[-1]) if vocab else 0.0
    if not total > 0:
        return _row_edges(vocab, nr, None)
    cuts = np.searchsorted(cum, total * np.arange(1, nr) / nr, side="right") + 1
    return tuple(int(e) for e in np.unique(np.concatenate(([0], np.minimum(cuts, vocab), [vocab]))))


def cooccurrence(
    tokens: Any,
    vocab_size: int,
    /,
    *,
    window: int = 2,
    symmetric: bool = True,
    dtype: Any = np.int64,
    row_blocks: int | None = None,
    row_weights: Any = None,
) -> CSRBlocks:
    """Co-occurrence counts of a token stream held as a 1-D Dask array.

    The counts of :func:`fastroute.cooccurrence` (the same parameters and
    the same result, bit for bit, for any chunking): each chunk counts the
    pairs whose first position it holds, reading ``window`` tokens past its
    end, so a pair across a chunk boundary is counted once. The chunks'
    counts are split into ``row_blocks`` row blocks (default: one per
    chunk, at most ``vocab_size``) and summed block by block. The blocks
    hold equal numbers of rows unless ``row_weights`` (one non-negative
    number per row, e.g. each token's frequency: a row holds about ``2 *
    window`` pairs per occurrence) splits them into blocks of about equal
    weight: ids ranked by frequency (as :func:`read_corpus` gives them) put
    most pairs in the first rows, and equal rows would leave one block with
    most of the work. A row's weight never changes the counts.

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
    from .._validate import check_int

    func = "cooccurrence"
    dask, da = dask_modules()
    x = as_dask(tokens, func, "an array of token ids")
    if x.ndim != 1:
        raise ValueError(f"{func}: tokens must be a 1-D array of ids, got {x.ndim} dimensions")
    known_chunks(x, func, "tokens")  # each chunk reads the window after it
    if x.dtype.kind not in "iu":
        if x.shape[0] != 0:
            raise TypeError(f"{func}: tokens must be integers, got dtype {x.dtype}")
        x = da.zeros(0, np.int64)  # no tokens: their dtype does not matter
    # NumPy's own message would not say which argument or what it accepts
    try:
        out = np.dtype(dtype)
    except TypeError:
        raise TypeError(
            f"{func}: dtype must be int32, int64, float32 or float64, got {dtype!r}"
        ) from None
    # the single-machine function checks the arguments and gives the dtypes
    probe = _cooccurrence(np.zeros(0, np.int64), vocab_size, window=window, dtype=out)
    vocab = probe.shape[0]
    n = x.shape[0]
    w = min(int(window), max(n - 1, 1))
    pairs = max(0, n - 1) * w * (2 if symmetric else 1)
    index_dtype = np.dtype(np.int32 if max(vocab, pairs) < 2**31 else np.int64)
    if row_blocks is None:
        nr = x.numblocks[0]
    else:
        nr = check_int(row_blocks, "row_blocks", func, 1)
    nr = max(1, min(nr, vocab))
    edges = _row_edges(vocab, nr, row_weights)
    nr = len(edges) - 1
    pieces = []
    start = 0
    for size in x.chunks[0]:
        end = start + size
        hi = min(end + w, n)
        where = f"{start}:{end} (chunk {len(pieces)})"
        pieces.append(
            dask.delayed(Limited(_chunk_counts), nout=nr)(
                x[start:hi], x[end:hi], vocab, w, bool(symmetric), edges, where
            )
        )
        start = end
    if not pieces:  # an empty stream
        pieces.append(dask.delayed(Limited(_chunk_counts), nout=nr)(
            np.zeros(0, np.int64), np.zeros(0, np.int64), vocab, w, bool(symmetric), edges, "0:0"
        ))  # fmt: skip
    blocks = []
    for r in range(nr):
        total = _tree_sum(dask, [p[r] for p in pieces])
        blocks.append(dask.delayed(_as_dtype)(total, out))
    return CSRBlocks((vocab, vocab), edges, tuple(blocks), out, index_dtype)


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

    dask, _ = dask_modules()
    _check_blocks(C, "normalize_rows")
    probe = _normalize_rows(sp.csr_array(np.ones((1, 1), C.dtype)))
    blocks = tuple(dask.delayed(Limited(_normalize_rows))(b) for b in C.blocks)
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

    dask, da = dask_modules()
    _check_blocks(C, "row_entropy")
    out = _entropy(sp.csr_array(np.ones((1, 1), C.dtype)), base=base, normalize=normalize).dtype
    parts = []
    for r, b in enumerate(C.blocks):
        n = C.row_bounds[r + 1] - C.row_bounds[r]
        h = dask.delayed(Limited(_entropy))(b, base=base, normalize=normalize)
        parts.append(da.from_delayed(h, (n,), dtype=out))
    return da.concatenate(parts) if parts else da.zeros((0,), dtype=out)


def top_entropy(C: CSRBlocks, k: int, /, *, normalize: bool = True, base: float | None = None):
    """The ``k`` rows of ``C`` with the highest entropy, as
    :func:`fastroute.top_entropy` (ties to the lower row, NaN last): each
    row block's best ``k`` rows, then a fixed tree of merges
    (:func:`fastroute.dask.top_k` along the chunked rows). Returns a
    ``TopK`` of two Dask arrays; ``dask.compute`` it.

    Examples
    --------
    >>> import dask, dask.array as da, numpy as np, fastroute.dask as frd
    >>> C = frd.cooccurrence(da.from_array(np.array([0, 1, 2, 0, 2]), chunks=2), 3, window=1)
    >>> dask.compute(frd.top_entropy(C, 2, base=2))[0].indices
    array([1, 0])
    """
    h = row_entropy(C, base=base, normalize=normalize)
    return _dask_top_k(h, k)


# --- sums over the whole matrix, then block-local work ---------------------------------


def _block(b: Any, lo: int, func: str):
    # the checked canonical CSR arrays of the block whose first row is lo
    from .._sparse import as_csr
    from ..tokens import check_weights

    m = as_csr(b, func)
    check_weights(m, func, lo)
    return m


def _column_part(b: Any, ncols: int) -> np.ndarray:
    # exact int64 column sums of an integer block
    return np.asarray(b.sum(axis=0), np.int64).reshape(ncols)


def _int_sum(*parts: np.ndarray) -> np.ndarray:
    out = parts[0].copy()
    for p in parts[1:]:
        out += p
    return out


def column_sums(C: CSRBlocks, /):
    """Column sums of integer counts as a delayed float64 vector, equal to
    ``np.asarray(C1.sum(axis=0), np.float64).ravel()`` of the assembled
    matrix (the blocks' sums are added exactly, in int64). A
    ``TypeError`` for float blocks, whose sums depend on the order.

    Examples
    --------
    >>> import dask, dask.array as da, numpy as np, fastroute.dask as frd
    >>> C = frd.cooccurrence(da.from_array(np.array([0, 1, 1, 0]), chunks=2), 2, window=1)
    >>> dask.compute(frd.column_sums(C))[0]
    array([2., 4.])
    """
    dask, _ = dask_modules()
    _check_blocks(C, "column_sums")
    if np.dtype(C.dtype).kind not in "iu":
        raise TypeError(f"column_sums: needs integer counts, got {C.dtype} blocks")
    parts = [dask.delayed(_column_part)(b, C.shape[1]) for b in C.blocks]
    while len(parts) > 1:
        parts = [dask.delayed(_int_sum)(*parts[i : i + 4]) for i in range(0, len(parts), 4)]
    return dask.delayed(lambda s: s.astype(np.float64))(parts[0])


@dataclass(frozen=True)
class _Sums:
    """What PMI needs of the whole matrix, laid out as
    ``fastroute.tokens._pmi_sums`` lays it out (so the scores are the same
    bits): the row sums over the counts times ``scale``, their total, and
    whether the column sums are kept for the occurring columns only."""

    rsum: np.ndarray
    total: float
    scale: float
    nnz: int
    compact: bool


def _row_part(b: Any, lo: int, func: str, scale: float = 1.0):
    from ..tokens import sums_scaled

    m = _block(b, lo, func)
    return sums_scaled(m, np.full(m.shape[0], scale)), m.indices.shape[0]


def _first_sums(ncols: int, *parts) -> _Sums:
    from .._sparse import counting_sort_ok

    rsum = np.concatenate([p[0] for p in parts])
    nnz = sum(p[1] for p in parts)
    total, scale = float(rsum.sum()), 1.0
    if total == np.inf:  # float counts only: all are taken times a power of two
        _, e = np.frexp(float(max(nnz, 1)))
        scale = float(np.ldexp(1.0, -(int(e) + 1)))
    return _Sums(rsum, total, scale, nnz, not counting_sort_ok(ncols, nnz, rsum.shape[0]))


def _rescaled_part(b: Any, lo: int, g: _Sums, func: str) -> np.ndarray:
    if g.scale == 1.0:  # the first pass's sums
        return g.rsum[lo : lo + b.shape[0]]
    return _row_part(b, lo, func, g.scale)[0]


def _final_sums(g: _Sums, *parts: np.ndarray) -> _Sums:
    if g.scale == 1.0:
        return g
    rsum = np.concatenate(parts)
    return _Sums(rsum, float(rsum.sum()), g.scale, g.nnz, g.compact)


def _columns_of(b: Any, g: _Sums) -> np.ndarray:
    return np.unique(b.indices) if g.compact else np.zeros(0, np.int64)


def _union(g: _Sums, *cols: np.ndarray) -> np.ndarray | None:
    return np.unique(np.concatenate(cols)).astype(np.int64) if g.compact else None


def _colpos(m: Any, uniq: np.ndarray | None) -> np.ndarray:
    return m.indices if uniq is None else np.searchsorted(uniq, m.indices).astype(np.int64)


def _chain_columns(acc, b, lo: int, g: _Sums, ncols: int, func: str) -> np.ndarray:
    # the column sums so far plus this block's entries in storage order: a
    # chain over the blocks adds in the order of the single-machine kernel
    m = _block(b, lo, func)
    out = np.zeros(ncols) if acc is None else acc.copy()
    np.add.at(out, m.indices, m.data.astype(np.float64) * g.scale)
    return out


def _weights(csum: np.ndarray, uniq: np.ndarray | None, g: _Sums, cds: float | None):
    cw = csum if uniq is None else csum[uniq]
    if cds is None:
        return cw, g.total
    cw = np.power(cw, float(cds))
    return cw, float(cw.sum())


def _related_part(b, lo: int, n: int, g, uniq, weights, rows, k: int, opts, func: str):
    from ..tokens import row_sums_and_scale

    m = _block(b, lo, func)
    hi = lo + m.shape[0]
    indptr = np.empty(n + 1, m.indptr.dtype)  # the block's rows at their place in C
    indptr[: lo + 1] = 0
    indptr[lo + 1 : hi + 1] = m.indptr[1:]
    indptr[hi + 1 :] = m.indptr[-1]
    if opts[0] == KC.CONDITIONAL:  # each row's own sum
        rsum, scale = np.ones(n), np.ones(n)
        rsum[lo:hi], scale[lo:hi] = row_sums_and_scale(m)
        sums = (rsum, scale, m.indices, rsum[:0], 0.0, 0.0)
    else:
        cw, cwsum = weights
        sums = (g.rsum, np.full(n, g.scale), _colpos(m, uniq), cw, cwsum, g.total)
    return KC.related_top(indptr, m.indices, m.data, rows, k, opts, sums)


def _gather(n: int, k: int, scalar: bool, *parts):
    values = np.full((n, k), np.nan)
    indices = np.full((n, k), -1, np.intp)
    for at, (v, i) in parts:
        values[at], indices[at] = v, i
    return TopK(values[0], indices[0]) if scalar else TopK(values, indices)


def related(
    C: CSRBlocks,
    rows: Any,
    k: int,
    /,
    *,
    measure: str = "conditional",
    min_count: float = 1,
    exclude_self: bool = False,
    cds: float | None = None,
):
    """:func:`fastroute.related` of the assembled matrix, on its row blocks.

    The parameters, semantics and result are those of
    :func:`fastroute.related`, bit for bit: PMI's row sums, total and column
    sums come from one reduction over the blocks (the column sums of
    integer counts are added exactly; float counts are added block after
    block in storage order, as one machine adds them, which makes that pass
    sequential), then each row block ranks its requested rows. The column
    sums of integer counts are the same bits as one machine's float64 sums
    while the total count is below 2**53. Returns a delayed ``TopK``.

    Examples
    --------
    >>> import dask, dask.array as da, numpy as np, fastroute.dask as frd
    >>> t = da.from_array(np.array([0, 1, 0, 2, 0, 1]), chunks=3)
    >>> C = frd.cooccurrence(t, 3, window=1, row_blocks=2)
    >>> (r,) = dask.compute(frd.related(C, [0, 1], 2))
    >>> r.indices
    array([[ 1,  2],
           [ 0, -1]])
    """
    import scipy.sparse as sp

    from ..tokens import MEASURES
    from ..tokens import related as _related

    dask, _ = dask_modules()
    func = "related"
    _check_blocks(C, func)
    nrows, ncols = C.shape
    # the single-machine function checks every argument on an empty matrix
    probe = _related(sp.csr_array(C.shape, dtype=C.dtype), rows, k, measure=measure,
                     min_count=min_count, exclude_self=exclude_self, cds=cds)  # fmt: skip
    scalar = probe.values.ndim == 1
    r = np.asarray(rows).reshape(-1).astype(np.int64)
    kk = probe.values.shape[-1]
    opts = (MEASURES[measure], float(min_count), bool(exclude_self))
    bounds = C.row_bounds
    g = uniq = weights = None
    if opts[0] != KC.CONDITIONAL:
        first = [
            dask.delayed(Limited(_row_part))(b, bounds[i], func) for i, b in enumerate(C.blocks)
        ]
        g1 = dask.delayed(_first_sums)(ncols, *first)
        again = [dask.delayed(Limited(_rescaled_part))(b, bounds[i], g1, func) for i, b in enumerate(C.blocks)]  # fmt: skip
        g = dask.delayed(_final_sums)(g1, *again)
        uniq = dask.delayed(_union)(g1, *(dask.delayed(_columns_of)(b, g1) for b in C.blocks))
        if np.dtype(C.dtype).kind in "iu":
            csum = column_sums(C)
        else:
            csum = None
            for i, b in enumerate(C.blocks):
                csum = dask.delayed(Limited(_chain_columns))(csum, b, bounds[i], g1, ncols, func)
        weights = dask.delayed(_weights)(csum, uniq, g, None if cds is None else float(cds))
    parts = []
    block_of = np.searchsorted(np.asarray(bounds), r, side="right") - 1
    for i, b in enumerate(C.blocks):
        at = np.flatnonzero(block_of == i)
        if at.size:
            part = dask.delayed(Limited(_related_part))(
                b, bounds[i], nrows, g, uniq, weights, r[at], kk, opts, func
            )
            parts.append(dask.delayed(lambda p, at=at: (at, p))(part))
    return dask.delayed(_gather)(r.size, kk, scalar, *parts)


def _top_rows_part(b, k, mode, explicit, format):
    return _top_k(b, k, axis=1, mode=mode, explicit=explicit, format=format)


def _top_k_rows(C: CSRBlocks, k: int, *, axis, mode, explicit, format):
    """``fastroute.top_k`` of each row block (see ``fastroute.dask.top_k``)."""
    import scipy.sparse as sp

    from .._validate import check_axis

    dask, da = dask_modules()
    if check_axis(axis, 2) != 1:
        raise ValueError(
            f"top_k: CSRBlocks are ranked along their rows (axis=1 or -1), got axis={axis!r}"
        )
    probe = _top_k(sp.csr_array((1, C.shape[1]), dtype=C.dtype), k, mode=mode,
                   explicit=explicit, format=format)  # fmt: skip
    parts = [dask.delayed(Limited(_top_rows_part))(b, k, mode, explicit, format) for b in C.blocks]
    if format == "csr":
        return CSRBlocks(C.shape, C.row_bounds, tuple(parts), probe.dtype, C.index_dtype)
    kk = probe.values.shape[1]
    sizes = np.diff(C.row_bounds)
    out = []
    for which, dtype in ((0, probe.values.dtype), (1, probe.indices.dtype)):
        out.append(da.concatenate([
            da.from_delayed(dask.delayed(lambda r, w=which: r[w])(p), (int(n), kk), dtype=dtype)
            for p, n in zip(parts, sizes, strict=True)
        ]))  # fmt: skip
    return TopK(*out)
