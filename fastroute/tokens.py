"""Token statistics on sparse matrices: co-occurrence counts, conditional
distributions, entropy-ranked tokens and their most related tokens."""

from __future__ import annotations

import itertools
from typing import Any, Literal

import numpy as np

from ._dtypes import HALF, real_array, to_float
from ._execute import chunk_count, even_bounds, run, run_csr, run_jobs
from ._sparse import CSR, as_csr, canonical_result, counting_sort_ok, is_sparse
from ._validate import check_alloc, check_int, check_real
from .entropy import entropy
from .kernels import counts as KC
from .kernels import csr as K
from .topk import TopK, top_k

__all__ = ["cooccurrence", "normalize_rows", "top_entropy", "related"]

_COUNT_DTYPES = tuple(np.dtype(t) for t in (np.int32, np.int64, np.float32, np.float64))
MEASURES = {"conditional": KC.CONDITIONAL, "pmi": KC.PMI, "ppmi": KC.PPMI, "npmi": KC.NPMI}


def _sparse_module():
    try:
        import scipy.sparse as sp
    except ImportError:  # pragma: no cover - scipy is a test dependency
        raise ImportError("fastroute's sparse functions need SciPy: pip install scipy") from None
    return sp


def _as_matrix(x: Any, func: str) -> CSR:
    """Canonical CSR of a sparse matrix or a 2-D array."""
    if not is_sparse(x):
        a = real_array(x, func)
        if a.ndim != 2:
            raise ValueError(f"{func}: expected a 2-D matrix, got {a.ndim} dimensions")
        if a.dtype in HALF:  # SciPy has no half floats; float32 holds them exactly
            a = to_float(a, np.float32)
        x = _sparse_module().csr_array(a)
    return as_csr(x, func)


def sums_scaled(m: CSR, scale: np.ndarray) -> np.ndarray:
    # float64 row sums of the entries times scale[r] (in parallel when large)
    out = np.empty(m.shape[0])
    run_csr(KC.row_sums, (m.indptr, m.data, scale, out), m.indptr, K.ROW_COST)
    return out


def row_sums_and_scale(m: CSR) -> tuple[np.ndarray, np.ndarray]:
    """float64 row sums and the per-row scale they are sums of: 1, or for a
    row whose sum overflows float64, the power of two ``2**-e`` (exact)
    that brings it back in range."""
    scale = np.ones(m.shape[0])
    sums = sums_scaled(m, scale)
    over = np.isinf(sums)  # the entries are finite: their sum overflowed
    if over.any():
        _, e = np.frexp(np.diff(m.indptr)[over].astype(np.float64))  # row length < 2**e
        scale[over] = np.ldexp(1.0, -(e + 1))  # length * max entry * scale < 2**1023
        sums = sums_scaled(m, scale)
    return sums, scale


def cooccurrence(
    tokens: Any,
    vocab_size: int,
    /,
    *,
    window: int = 2,
    symmetric: bool = True,
    dtype: Any = np.int64,
) -> Any:
    """Co-occurrence counts of a token stream as a ``scipy.sparse.csr_array``.

    Entry ``(i, j)`` counts the positions ``p`` with ``tokens[p] == i`` and
    ``tokens[p + d] == j`` for some ``1 <= d <= window`` (``j`` follows ``i``
    within the window). ``symmetric=True`` adds the mirror image, giving
    ``C + C.T`` (so a token pair ``i, i`` counts twice on the diagonal).

    Parameters
    ----------
    tokens : 1-D array_like of integers
        Token ids, each in ``[0, vocab_size)``.
    vocab_size : int
        Number of rows and columns.
    window : int, default 2
        Largest distance counted, ``>= 1`` (a window beyond the stream counts
        the same pairs as ``len(tokens) - 1``).
    symmetric : bool, default True
    dtype : int32, int64, float32 or float64, default int64
        Dtype of the counts.

    Returns
    -------
    scipy.sparse.csr_array
        Shape ``(vocab_size, vocab_size)``, canonical (sorted column indices,
        no duplicates, no stored zeros); int32 indices when they fit.

    Examples
    --------
    >>> import numpy as np
    >>> import fastroute as fr
    >>> fr.cooccurrence(np.array([0, 1, 2, 0]), 3, window=1).toarray()
    array([[0, 1, 1],
           [1, 0, 1],
           [1, 1, 0]])
    """
    func = "cooccurrence"
    _sparse_module()  # a clear ImportError before any work
    try:
        t = np.asarray(tokens)
    except (TypeError, ValueError) as exc:  # a ragged list, say: NumPy's message names no argument
        raise TypeError(
            f"{func}: tokens must be a 1-D array of integer ids; cannot convert "
            f"{type(tokens).__name__} ({exc})"
        ) from None
    if t.ndim != 1:
        raise ValueError(f"{func}: tokens must be a 1-D array of ids, got {t.ndim} dimensions")
    if t.dtype.kind not in "iu":
        if t.size == 0:
            t = t.astype(np.int64)
        else:
            raise TypeError(f"{func}: tokens must be integers, got dtype {t.dtype}")
    if not t.dtype.isnative or t.dtype.itemsize > 8 or t.dtype == np.uint64:
        t = t.astype(np.int64)  # uint64 ids beyond int64 are out of range anyway
    vocab = check_int(vocab_size, "vocab_size", func, 0)
    w = check_int(window, "window", func, 1)
    try:
        out_dtype = np.dtype(dtype)
    except TypeError:  # 'bogus': NumPy's message would name neither argument nor choices
        out_dtype = np.dtype(object)
    if out_dtype not in _COUNT_DTYPES:
        raise TypeError(f"{func}: dtype must be int32, int64, float32 or float64, got {dtype!r}")
    n = t.shape[0]
    w = min(w, max(n - 1, 1))  # a wider window counts the same pairs
    pairs = max(0, n - 1) * w * (2 if symmetric else 1)
    nchunks = chunk_count(n, pairs, per_thread=1)  # vocab_size counters each
    # counters per vocabulary entry, then per pair a column, a count and a value
    check_alloc(8 * (nchunks + 4) * (vocab + 1) + 24 * pairs,
                f"counting {pairs} pairs over vocab_size={vocab}", func,
                "; check vocab_size, or count fewer tokens or a smaller window")  # fmt: skip
    bad = KC.tokens_problem(t, vocab)
    if bad >= 0:
        raise ValueError(
            f"{func}: token id {int(t[bad])} at position {bad} is outside [0, {vocab}); "
            "ids must index the vocabulary"
        )
    index_dtype = np.int32 if max(vocab, pairs) < 2**31 else np.int64
    # The pairs' columns are bucketed by row (a counting sort: each chunk of
    # the stream counts its pairs per row, then writes them at its offsets);
    # each bucket is reduced to its distinct columns with a dense counter,
    # and the distinct entries are put in column order by one more counting
    # sort. The counts are exact integers: the result never depends on the
    # chunking.
    sym = bool(symmetric)
    bounds = even_bounds(n, nchunks)
    counts = np.zeros((nchunks, vocab), np.int64)
    spans = list(itertools.pairwise(bounds))
    run_jobs(KC.pair_counts, [(t, w, sym, counts, c, lo, hi) for c, (lo, hi) in enumerate(spans)])
    rowptr = np.empty(vocab + 1, np.int64)
    KC.bucket_offsets(counts, rowptr)
    cols = np.empty(rowptr[vocab], index_dtype)
    run_jobs(KC.pair_scatter,
             [(t, w, sym, counts, c, cols, lo, hi) for c, (lo, hi) in enumerate(spans)])  # fmt: skip
    rowcnt = np.empty(rowptr[vocab], np.int64)
    uniq = np.empty(vocab, np.int64)
    run_csr(KC.distinct_rows, (rowptr, cols, rowcnt, uniq), rowptr, KC.COOC_ROW_COST)
    like = (np.empty(0, index_dtype), np.empty(0, out_dtype))
    indptr, indices, data = KC.cooccurrence_finish(rowptr, cols, rowcnt, uniq, sym, *like)
    return canonical_result(None, indptr, indices, data, (vocab, vocab))


def normalize_rows(A: Any, /) -> Any:
    """Each row of a count (or weight) matrix divided by its sum: the
    conditional distributions ``P(j | i) = A[i, j] / sum_j A[i, j]``.

    Parameters
    ----------
    A : scipy.sparse matrix or 2-D array_like
        Non-negative, finite entries. Duplicate sparse entries are summed.

    Returns
    -------
    scipy.sparse.csr_array or csr_matrix
        The input's sparse class (``csr_array`` for dense input), canonical,
        without stored zeros: an all-zero row stays empty. float32 for
        float16/float32 input (dense only: float16 sparse data is a
        ``TypeError``), float64 otherwise. Row sums are accumulated in
        float64; a row whose sum would overflow (``[1.7e308, 1.7e308]``) is
        summed and divided scaled by a power of two, which is exact.

    Raises
    ------
    ValueError
        A negative, NaN or infinite entry (the message names its row).

    Examples
    --------
    >>> import numpy as np
    >>> import fastroute as fr
    >>> fr.normalize_rows(np.array([[1, 3], [0, 0]])).toarray()
    array([[0.25, 0.75],
           [0.  , 0.  ]])
    """
    func = "normalize_rows"
    m = _as_matrix(A, func)
    check_weights(m, func)
    sums, scale = row_sums_and_scale(m)
    out_dtype = np.float32 if m.dtype.char in "ef" else np.float64
    q = np.empty(m.data.shape[0], out_dtype)
    kept = np.empty(m.shape[0], np.int64)
    run_csr(KC.normalize_rows, (m.indptr, m.data, sums, scale, q, kept), m.indptr, K.ROW_COST)
    if int(kept.sum()) == q.shape[0]:  # nothing to drop: the same structure
        indptr, indices, data = m.indptr.copy(), m.indices.copy(), q
    else:  # stored zeros, all-zero rows or quotients that underflow
        indptr, indices, data = KC.drop_zeros(m.indptr, m.indices, m.data, q, kept)
    return canonical_result(A, indptr, indices, data, m.shape)


def check_weights(m: CSR, func: str, row0: int = 0) -> None:
    # row0: the id of m's first row in the matrix it is a block of
    n = m.data.shape[0]
    firsts = run(KC.bad_weight, (m.data,), n, n)
    bad = next((int(b) for b in firsts if b >= 0), -1)  # the first in storage order
    if bad >= 0:
        row = row0 + int(np.searchsorted(m.indptr, bad, side="right")) - 1
        raise ValueError(
            f"{func}: row {row} has the entry {m.data[bad].item()!r}; counts and weights "
            "must be finite and >= 0"
        )


def top_entropy(P: Any, k: int, /, *, normalize: bool = True, base: float | None = None) -> TopK:
    """The ``k`` rows of ``P`` with the highest entropy.

    Parameters
    ----------
    P : scipy.sparse matrix or 2-D array_like
        Rows are distributions (or non-negative counts with ``normalize``).
    k : int
        ``0 <= k <= P.shape[0]``.
    normalize, base
        As in :func:`fastroute.entropy`.

    Returns
    -------
    TopK(values, indices)
        ``values``: the entropies, descending (float32 for float16/float32
        input, else float64); ``indices``: the row ids (``np.intp``). Equal
        entropies keep the lower row id first; rows whose entropy is NaN
        (empty rows, NaN entries) come last.

    Examples
    --------
    >>> import numpy as np
    >>> import fastroute as fr
    >>> fr.top_entropy(np.array([[1, 0], [1, 1], [3, 1]]), 2, base=2)
    TopK(values=array([1.        , 0.81127812]), indices=array([1, 2]))
    """
    func = "top_entropy"
    if not is_sparse(P):
        P = np.asarray(P)
        if P.ndim != 2:
            raise ValueError(f"{func}: expected a 2-D matrix, got {P.ndim} dimensions")
    elif len(P.shape) != 2:
        raise ValueError(f"{func}: expected a 2-D matrix, got shape {P.shape}")
    h = entropy(P, axis=1, normalize=normalize, base=base)
    return top_k(h, k)


def _pmi_sums(m: CSR):
    """Row sums, column sums and total of the counts for PMI, and the per-row
    scales and per-entry column slots they belong to.

    PMI does not change when every count is scaled: if the total overflows
    float64, all counts are taken times one power of two (exact, except for
    counts below about 1e-290 next to a total beyond 1e308). Column sums are
    kept for the columns that occur when the columns far outnumber the stored
    entries (memory scales with the entries, not with the columns)."""
    nrows, ncols = m.shape
    nnz = m.indices.shape[0]
    scale = np.ones(nrows)
    rsum = sums_scaled(m, scale)
    total = float(rsum.sum())
    if total == np.inf:
        _, e = np.frexp(float(max(nnz, 1)))
        scale[:] = np.ldexp(1.0, -(int(e) + 1))
        rsum = sums_scaled(m, scale)
        total = float(rsum.sum())
    if counting_sort_ok(ncols, nnz, nrows):
        colpos, ncs = m.indices, ncols
    else:
        uniq, colpos = np.unique(m.indices, return_inverse=True)
        colpos, ncs = colpos.astype(np.int64), uniq.shape[0]
    csum = KC.col_sums(colpos, m.data, ncs, float(scale[0]) if nrows else 1.0)
    return rsum, scale, colpos, csum, total


def related(
    C: Any,
    rows: Any,
    k: int,
    /,
    *,
    measure: Literal["conditional", "pmi", "ppmi", "npmi"] = "conditional",
    min_count: float = 1,
    exclude_self: bool = False,
    cds: float | None = None,
) -> TopK:
    """The ``k`` columns most related to each requested row of a count matrix.

    Parameters
    ----------
    C : scipy.sparse matrix or 2-D array_like
        Non-negative, finite co-occurrence counts (or weights), e.g. from
        :func:`cooccurrence`.
    rows : int or 1-D array_like of int
        Row ids, each in ``[0, C.shape[0])``.
    k : int
        ``0 <= k <= C.shape[1]``.
    measure : {"conditional", "pmi", "ppmi", "npmi"}
        ``"conditional"``: ``P(j | i) = c_ij / c_i``. ``"pmi"``:
        ``log(c_ij N / (c_i c_j))`` with row sums ``c_i``, column sums ``c_j``
        and total ``N``. ``"ppmi"``: as ``"pmi"``, keeping only positive
        scores (a pair with PMI <= 0 is no candidate). ``"npmi"``: PMI
        divided by ``-log(c_ij / N)`` (Bouma 2009), in ``[-1, 1]``: 1 for
        pairs that always occur together, 0 for independence; it damps the
        large PMI of rare pairs.
    min_count : float, default 1
        Entries with ``c_ij < min_count`` are no candidates (zero entries
        never are).
    exclude_self : bool, default False
        Drop the column equal to the row id (a token is not related to itself).
    cds : float in (0, 1], optional
        Context-distribution smoothing for ``"pmi"``/``"ppmi"`` (Levy,
        Goldberg & Dagan 2015; 0.75 is the usual value): the column sums
        are raised to the power ``cds``, ``log(c_ij S / (c_i c_j**cds))``
        with ``S = sum_j c_j**cds``, which lowers the scores of rare
        columns.

    Returns
    -------
    TopK(values, indices)
        Shape ``(len(rows), k)`` (``(k,)`` for a scalar ``rows``): float64
        scores, descending, equal scores keep the lower column first; rows
        with fewer than ``k`` candidates are padded with index ``-1`` and
        score NaN. The order is decided exactly, not on the rounded
        scores: within a row, conditional scores rank by ``c_ij`` and PMI
        and PPMI by the ratio ``c_ij / c_j`` (``c_ij / c_j**cds``), compared
        by exact cross-multiplication of the float64 counts and column sums
        (exact for counts below 1e290), so columns whose scores are equal
        mathematically keep the lower column first even where their
        rounded scores differ by an ulp; NPMI ranks by its computed score.
        Sums are taken over all entries, before ``min_count``; where they
        would overflow float64, over the counts scaled by a power
        of two (per row for ``"conditional"``, over the whole matrix for PMI,
        which scaling does not change).

    Examples
    --------
    >>> import numpy as np
    >>> import fastroute as fr
    >>> C = np.array([[0, 3, 1], [3, 0, 0], [1, 0, 2]])
    >>> fr.related(C, [0, 2], 2)
    TopK(values=array([[0.75      , 0.25      ],
           [0.66666667, 0.33333333]]), indices=array([[1, 2],
           [2, 0]]))
    """
    func = "related"
    if measure not in MEASURES:
        raise ValueError(f"{func}: measure must be one of {sorted(MEASURES)}, got {measure!r}")
    check_real(min_count, "min_count", func, finite=False)
    if not min_count > 0:
        raise ValueError(f"{func}: min_count must be > 0, got {min_count!r}")
    if cds is not None:
        if measure not in ("pmi", "ppmi"):
            raise ValueError(f"{func}: cds applies to measure='pmi' or 'ppmi', not {measure!r}")
        check_real(cds, "cds", func, finite=False, what=" in (0, 1]")
        if not 0 < cds <= 1:
            raise ValueError(f"{func}: cds must be in (0, 1] (0.75 is usual), got {cds!r}")
    m = _as_matrix(C, func)
    check_weights(m, func)
    nrows, ncols = m.shape
    r = np.asarray(rows)
    scalar = r.ndim == 0
    if r.dtype.kind not in "iu" and not (r.size == 0 and r.dtype.kind == "f"):
        raise TypeError(f"{func}: rows must be integer row ids, got dtype {r.dtype}")
    if r.ndim > 1:
        raise ValueError(f"{func}: rows must be an integer or a 1-D array of integers")
    r = r.reshape(-1).astype(np.int64)
    if r.size and (int(r.min()) < 0 or int(r.max()) >= nrows):
        bad = int(r[(r < 0) | (r >= nrows)][0])
        raise ValueError(f"{func}: row id {bad} is outside [0, {nrows})")
    k = check_int(k, "k", func, 0, ncols, " (columns)")
    # the candidates of every requested row, ranked exactly, the top k kept
    longest = int(np.diff(m.indptr)[r].max()) if r.size else 0
    check_alloc(40 * longest + 16 * r.size * k, f"ranking {r.size} rows", func)
    if measure == "conditional":
        rsum, scale = row_sums_and_scale(m)
        sums = (rsum, scale, m.indices, rsum[:0], 0.0, 0.0)
    else:
        rsum, scale, colpos, csum, total = _pmi_sums(m)
        if cds is None:
            sums = (rsum, scale, colpos, csum, total, total)
        else:
            cw = np.power(csum, float(cds))
            sums = (rsum, scale, colpos, cw, float(cw.sum()), total)
    opts = (MEASURES[measure], float(min_count), bool(exclude_self))
    values, idx = KC.related_top(m.indptr, m.indices, m.data, r, k, opts, sums)
    idx = idx.astype(np.intp, copy=False)
    if scalar:
        return TopK(values[0], idx[0])
    return TopK(values, idx)
