"""Hypothesis strategies for adversarial arrays.

Values: many ties, NaN (also with the sign bit set), ±inf, ±0.0, subnormals,
the largest finite values, integer extremes. Shapes: empty, 1-D, 2-D, 3-D and
some rows longer than one kernel block (256). Layouts: C, Fortran, transposed,
strided (row and column), negative strides, non-native byte order, read-only.

Every distinct dtype x memory layout is a separate Numba specialization that
takes seconds to compile, so the layout zoo is only drawn for a few dtypes
(``layouts_for``); the other dtypes get C order and non-native byte order
(which the wrappers convert to a native C copy).
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

__all__ = [
    "ALL_DTYPES",
    "FLOAT_DTYPES",
    "INT_DTYPES",
    "LAYOUTS",
    "layouts_for",
    "apply_layout",
    "special_values",
    "elements",
    "shapes",
    "arrays",
    "arrays_and_axis",
    "SPARSE_DTYPES",
    "SPARSE_FORMATS",
    "build_sparse",
    "zipf_row_lengths",
    "sparse_shapes",
    "sparse_entries",
    "sparse_matrices",
    "token_streams",
]

FLOAT_DTYPES = tuple(np.dtype(t) for t in (np.float16, np.float32, np.float64))
INT_DTYPES = tuple(
    np.dtype(t)
    for t in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64)
)
ALL_DTYPES = (np.dtype(np.bool_),) + INT_DTYPES + FLOAT_DTYPES

#: memory layouts ``apply_layout`` knows; every one keeps the logical values
LAYOUTS = (
    "C",  # plain C-contiguous
    "F",  # Fortran order
    "transposed",  # .T of a C array of the reversed shape
    "strided",  # every other element along the last axis (x[..., ::2])
    "strided0",  # every other element along the first axis (x[::2])
    "reversed",  # negative strides along every axis
    "byteswapped",  # non-native byte order (a copy with the same values)
    "readonly",  # C order, writeable=False
)

_CHEAP = ("C", "byteswapped")


def layouts_for(dtype) -> tuple[str, ...]:
    """Layouts worth drawing for ``dtype`` within the compile-time budget.

    float16 is widened to a float32 C copy by the wrappers, so every layout is
    free for it; float64 gets the full zoo, float32 and int32 all but the
    read-only one (its own specialization); the rest C and byte-swapped.
    """
    dtype = np.dtype(dtype)
    if dtype in (np.float64, np.float16):
        return LAYOUTS
    if dtype in (np.float32, np.int32):
        return tuple(lay for lay in LAYOUTS if lay != "readonly")
    return _CHEAP


def _gap_value(dtype):
    # what the unused elements around a strided view hold: a value that would
    # win top-k and change an entropy if a kernel ever read it by mistake
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return np.inf
    if dtype.kind == "b":
        return True
    return np.iinfo(dtype).max


def apply_layout(a: np.ndarray, layout: str) -> np.ndarray:
    """A new array with the same shape and values as ``a`` in ``layout``."""
    a = np.ascontiguousarray(a)
    if layout == "C":
        return a.copy()
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "transposed":
        return np.ascontiguousarray(a.T).T
    if layout in ("strided", "strided0"):
        ax = -1 if layout == "strided" else 0
        shape = list(a.shape)
        shape[ax] = 2 * shape[ax] + 1
        buf = np.full(shape, _gap_value(a.dtype), a.dtype)
        sl = [slice(None)] * a.ndim
        sl[ax] = slice(1, None, 2)
        view = buf[tuple(sl)]
        view[...] = a
        return view
    if layout == "reversed":
        rev = (slice(None, None, -1),) * a.ndim
        return a[rev].copy()[rev]
    if layout == "byteswapped":
        if a.dtype.itemsize == 1:
            return a.copy()
        return a.astype(a.dtype.newbyteorder("S"))
    if layout == "readonly":
        r = a.copy()
        r.flags.writeable = False
        return r
    raise ValueError(layout)


def special_values(dtype, *, negative: bool = True, nonfinite: bool = True) -> list:
    """Adversarial scalars exactly representable in ``dtype``."""
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return [False, True]
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        vals = [0, 1, 2, 3, info.max, info.max - 1, info.min, info.min + 1, -1, -2]
        return sorted({v for v in vals if info.min <= v <= info.max and (negative or v >= 0)})
    fi = np.finfo(dtype)
    pos = [0.0, 0.5, 1.0, 2.0, 3.0, float(fi.max), float(fi.tiny), float(fi.smallest_subnormal)]
    vals = pos + [-0.0]
    if negative:
        vals += [-v for v in pos if v]
    if nonfinite:
        vals += [np.inf, np.nan, -np.nan]
        if negative:
            vals.append(-np.inf)
    return vals


def elements(
    dtype,
    *,
    negative: bool = True,
    nan: bool = True,
    posinf: bool = True,
    neginf: bool | None = None,
    max_magnitude: float | None = None,
) -> st.SearchStrategy:
    """Scalars for ``hnp.arrays``: half adversarial specials and small ties,
    half general values of the dtype's whole range (subnormals included).

    ``negative=False`` gives no negative numbers (``-0.0`` and ``-nan`` are
    still drawn); ``nan``/``posinf``/``neginf`` allow the non-finite values
    (``neginf`` defaults to ``negative``); ``max_magnitude`` caps finite values.
    """
    dtype = np.dtype(dtype)
    neginf = negative if neginf is None else neginf
    if dtype.kind == "b":
        return st.booleans()
    ties = [0, 1, 2] + ([-1] if negative else [])
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        lo = info.min if negative else 0
        hi = info.max
        if max_magnitude is not None:
            lo, hi = max(lo, -int(max_magnitude)), min(hi, int(max_magnitude))
        pool = [v for v in special_values(dtype, negative=negative) if lo <= v <= hi]
        ties = [t for t in ties if lo <= t <= hi]
        return st.one_of(
            st.sampled_from(pool), st.sampled_from(ties), st.integers(lo, hi), st.integers(lo, hi)
        )
    width = 8 * dtype.itemsize
    big = float(np.finfo(dtype).max)
    cap = big if max_magnitude is None else min(big, max_magnitude)
    pool = []
    for v in special_values(dtype, negative=negative):
        if v != v:
            if nan:
                pool.append(v)
        elif v == np.inf:
            if posinf:
                pool.append(v)
        elif v == -np.inf:
            if neginf:
                pool.append(v)
        elif abs(v) <= cap:
            pool.append(v)
    general = st.floats(
        min_value=-cap if negative else 0.0,
        max_value=cap,
        width=width,
        allow_nan=False,
        allow_infinity=False,
        allow_subnormal=True,
    )
    return st.one_of(
        st.sampled_from(pool), st.sampled_from([float(t) for t in ties]), general, general
    )


def shapes(
    *, min_dims: int = 1, max_dims: int = 3, max_side: int = 6, long_rows: bool = True
) -> st.SearchStrategy:
    """Shapes: mostly small non-empty ones, now and then one with 0-sized axes
    and (``long_rows``) one whose last axis has 200..600 elements (longer than
    one 256-element kernel block)."""
    small = hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=1, max_side=max_side)
    empty = hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=0, max_side=3)
    nlead = st.integers(max(0, min_dims - 1), max(0, min(1, max_dims - 1)))
    long = st.tuples(nlead, st.integers(1, 3), st.integers(200, 600)).map(
        lambda t: (t[1],) * t[0] + (t[2],)
    )
    options = [small] * 6 + [empty] + [long if long_rows else small]
    return st.integers(0, len(options) - 1).flatmap(lambda i: options[i])


@st.composite
def arrays(
    draw,
    dtype,
    *,
    shape=None,
    layouts=None,
    min_dims: int = 1,
    max_dims: int = 3,
    long_rows: bool = True,
    **element_kw,
) -> np.ndarray:
    """An array of ``dtype`` with adversarial values in an adversarial layout.

    ``layouts`` defaults to ``layouts_for(dtype)``; ``element_kw`` goes to
    ``elements``. The result may be a view of a larger buffer (strided), in
    non-native byte order or read-only: copy it before comparing.
    """
    dtype = np.dtype(dtype)
    if shape is None:
        shape = draw(shapes(min_dims=min_dims, max_dims=max_dims, long_rows=long_rows))
    a = draw(hnp.arrays(dtype, shape, elements=elements(dtype, **element_kw)))
    layout = draw(st.sampled_from(layouts if layouts is not None else layouts_for(dtype)))
    return apply_layout(a, layout)


@st.composite
def arrays_and_axis(draw, dtype, *, last_axis_only: bool = False, **kw):
    """``(x, axis)`` with ``x`` from ``arrays`` and a valid (possibly negative)
    axis; ``last_axis_only`` draws -1 or ndim - 1 (the rows of a C array, one
    Numba specialization per dtype instead of three)."""
    x = draw(arrays(dtype, **kw))
    if last_axis_only:
        axis = draw(st.sampled_from([-1, x.ndim - 1]))
    else:
        axis = draw(st.integers(-x.ndim, x.ndim - 1))
    return x, axis


# --------------------------------------------------------------------------- sparse matrices

#: (data dtype, index dtype) pairs of the sparse property tests: every pair is
#: its own set of JIT compilations (checks, transpose, top-k, entropy).
SPARSE_DTYPES = (  # each pair compiles the CSR kernels anew: kept to three
    (np.dtype(np.float64), np.dtype(np.int32)),
    (np.dtype(np.float32), np.dtype(np.int32)),
    (np.dtype(np.int64), np.dtype(np.int64)),
)

#: sparse formats drawn by ``sparse_matrices`` (built from the same entries)
SPARSE_FORMATS = ("csr_array", "csr_matrix", "csc_array", "csc_matrix", "coo_array", "coo_matrix")


def _compressed(sp, cls, major, minor, data, n_major, shape, index_dtype):
    """A CSR/CSC matrix storing exactly the given entries in the given order
    within each compressed row/column (unsorted, duplicates and explicit zeros
    kept), with ``index_dtype`` index arrays."""
    order = np.argsort(major, kind="stable")
    counts = np.bincount(major, minlength=n_major) if major.size else np.zeros(n_major, int)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(index_dtype)
    indices = minor[order].astype(index_dtype)
    m = cls((data[order], indices, indptr), shape=shape)
    # SciPy may downcast the index arrays at construction: set them as drawn
    m.indices, m.indptr = indices, indptr
    return m


def build_sparse(rows, cols, data, shape, fmt, index_dtype=np.int32):
    """A SciPy sparse matrix of format ``fmt`` (see ``SPARSE_FORMATS``) storing
    the entries ``(rows[p], cols[p], data[p])`` in this order: duplicates,
    explicit zeros and unsorted indices are all kept."""
    import scipy.sparse as sp

    rows = np.asarray(rows, np.int64)
    cols = np.asarray(cols, np.int64)
    data = np.asarray(data)
    cls = getattr(sp, fmt)
    if fmt.startswith("csr"):
        return _compressed(sp, cls, rows, cols, data, shape[0], shape, index_dtype)
    if fmt.startswith("csc"):
        return _compressed(sp, cls, cols, rows, data, shape[1], shape, index_dtype)
    if fmt.startswith("coo"):
        m = cls((data, (rows.astype(index_dtype), cols.astype(index_dtype))), shape=shape)
        return m
    raise ValueError(fmt)


def zipf_row_lengths(rng, nrows, ncols, long_rows=3, long_frac=0.5):
    """Zipf-shaped row lengths: a few long rows, the others 0..5 entries."""
    lengths = rng.integers(0, 6, nrows)
    lengths[rng.random(nrows) < 0.1] = 0
    if nrows:
        heavy = rng.choice(nrows, min(long_rows, nrows), replace=False)
        lengths[heavy] = np.maximum(
            1, (ncols * long_frac / (1 + np.arange(heavy.size))).astype(int)
        )
    return np.minimum(lengths, 3 * ncols) if ncols else lengths * 0


@st.composite
def sparse_shapes(draw, max_side: int = 7):
    """``(nrows, ncols)``: mostly small, now and then empty (0 x n, n x 0) or
    with one row/column longer than a 256-element kernel block."""
    kind = draw(st.sampled_from(["small"] * 6 + ["empty", "long"]))
    if kind == "small":
        return draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    if kind == "empty":
        return draw(st.sampled_from([(0, 0), (0, 1), (0, 4), (1, 0), (4, 0), (0, 300), (300, 0)]))
    side = draw(st.integers(257, 400))
    return (
        (draw(st.integers(1, 3)), side) if draw(st.booleans()) else (side, draw(st.integers(1, 3)))
    )


@st.composite
def sparse_entries(draw, dtype, shape, **element_kw):
    """``(rows, cols, data)`` of stored entries: uniform or Zipf-shaped rows
    (a few long rows, many with 1-5 entries), with duplicate coordinates and
    ``elements`` values (ties, ±0.0, NaN, ±inf, extremes)."""
    nrows, ncols = shape
    if nrows == 0 or ncols == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, dtype)
    zipf = draw(st.booleans())
    if zipf:
        seed = draw(st.integers(0, 2**32 - 1))
        rng = np.random.default_rng(seed)
        lengths = zipf_row_lengths(rng, nrows, ncols)
        rows = np.repeat(np.arange(nrows), lengths)
        cols = rng.integers(0, ncols, rows.size)
        if draw(st.booleans()):  # many duplicates
            cols = cols % max(1, min(ncols, 3))
        perm = rng.permutation(rows.size)
        rows, cols = rows[perm], cols[perm]
        pool = draw(st.lists(elements(dtype, **element_kw), min_size=1, max_size=12))
        data = np.asarray(pool, dtype=dtype)[rng.integers(0, len(pool), rows.size)]
        return rows, cols, data
    nnz = draw(st.integers(0, min(3 * nrows * ncols, 40)))
    rows = np.asarray(
        draw(st.lists(st.integers(0, nrows - 1), min_size=nnz, max_size=nnz)), np.int64
    )
    cols = np.asarray(
        draw(st.lists(st.integers(0, ncols - 1), min_size=nnz, max_size=nnz)), np.int64
    )
    data = draw(hnp.arrays(dtype, nnz, elements=elements(dtype, **element_kw)))
    return rows, cols, data


@st.composite
def sparse_matrices(draw, dtype, index_dtype=np.int32, formats=SPARSE_FORMATS, **element_kw):
    """A SciPy sparse matrix of ``dtype`` in one of ``formats``: duplicates,
    unsorted indices, explicit zeros and -0.0, NaN, ±inf, empty rows and
    empty shapes (0 x n, n x 0); ``element_kw`` goes to ``elements``."""
    shape = draw(sparse_shapes())
    rows, cols, data = draw(sparse_entries(dtype, shape, **element_kw))
    fmt = draw(st.sampled_from(formats))
    return build_sparse(rows, cols, data, shape, fmt, index_dtype)


@st.composite
def token_streams(draw, max_len: int = 60, max_vocab: int = 12):
    """``(tokens, vocab_size)``: ids in ``[0, vocab_size)``, uniform or
    Zipf-shaped (a few frequent ids), in int32, int64 or uint8."""
    vocab = draw(st.integers(1, max_vocab))
    n = draw(st.integers(0, max_len))
    if draw(st.booleans()):
        ids = draw(st.lists(st.integers(0, vocab - 1), min_size=n, max_size=n))
    else:
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        ids = np.minimum(rng.zipf(1.5, n) - 1, vocab - 1)
    dtype = draw(st.sampled_from([np.int32, np.int64, np.uint8]))
    return np.asarray(ids, dtype=dtype), vocab
