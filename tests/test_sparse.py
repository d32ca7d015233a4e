"""fastroute.top_k / entropy / entropy_from_logits on SciPy sparse input.

Contract: ``explicit=False`` results are exactly those of the dense functions
on ``A.toarray()`` (top-k bitwise, entropies within the accuracy rule);
``explicit=True`` ranks the stored entries only; ``format="csr"`` prunes;
malformed CSR arrays raise ``ValueError`` (never crash); the input is never
modified; the parallel drivers give the same bits as the serial ones.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st
from reference import (
    assert_close,
    entropy_from_logits_ref,
    entropy_ref,
    explicit_top_k_ref,
    same_values,
    snapshot,
    top_k_ref,
)
from strategies import SPARSE_DTYPES, build_sparse, sparse_matrices

import fastroute as fr

# --------------------------------------------------------------------------- helpers


def stored_positions(m) -> set:
    """The stored ``(row, col)`` positions of ``m`` (duplicates once)."""
    coo = m.tocoo()
    return set(zip(coo.row.tolist(), coo.col.tolist(), strict=True))


def rows_axis(axis) -> bool:
    return axis in (-1, 1)


def check_sparse_top_k(m, k, axis=-1, mode="largest", explicit=False):
    """``top_k`` of ``m`` against the dense reference (or the explicit one),
    the output rules, and the ``format="csr"`` pruning; returns the TopK."""
    before = snapshot(m)
    res = fr.top_k(m, k, axis=axis, mode=mode, explicit=explicit)
    pruned = fr.top_k(m, k, axis=axis, mode=mode, explicit=explicit, format="csr")
    assert snapshot(m) == before, "input was modified"
    assert isinstance(res, fr.TopK)
    v, i = res
    dense = m.toarray()
    nrows, ncols = dense.shape
    shape = (nrows, k) if rows_axis(axis) else (k, ncols)
    assert v.shape == shape and i.shape == shape
    assert v.dtype == m.dtype and i.dtype == np.intp
    assert v.flags.c_contiguous and i.flags.c_contiguous

    ax = 1 if rows_axis(axis) else 0
    if explicit:
        src = dense if ax == 1 else dense.T
        stored = stored_positions(m)
        if ax == 0:
            stored = {(c, r) for (r, c) in stored}
        ev, ei = explicit_top_k_ref(src, stored, k, mode)
        if ax == 0:
            ev, ei = np.ascontiguousarray(ev.T), np.ascontiguousarray(ei.T)
    else:
        ev, ei = top_k_ref(dense, k, axis=ax, mode=mode)
        # the contract: exactly the dense fastroute result
        dv, di = fr.top_k(dense, k, axis=ax, mode=mode)
        np.testing.assert_array_equal(i, di)
        assert same_values(v, dv)
    np.testing.assert_array_equal(i, ei)
    assert same_values(v, ev), (v, ev)

    # format="csr": the top-k entries kept, canonical, of the input's class
    cls = sp.csr_matrix if isinstance(m, sp.spmatrix) else sp.csr_array
    assert type(pruned) is cls
    assert pruned.shape == m.shape and pruned.dtype == m.dtype
    assert pruned.indptr.shape == (nrows + 1,)
    for r in range(nrows):
        seg = pruned.indices[pruned.indptr[r] : pruned.indptr[r + 1]]
        assert np.all(np.diff(seg) > 0), "pruned rows must be sorted and unique"
    assert np.all(pruned.data != 0), "zero values must not be stored"
    keep = np.zeros(dense.shape, dense.dtype)
    if k:
        if ax == 1:
            rr = np.broadcast_to(np.arange(nrows)[:, None], i.shape)
            ok = i >= 0
            keep[rr[ok], i[ok]] = v[ok]
        else:
            cc = np.broadcast_to(np.arange(ncols)[None, :], i.shape)
            ok = i >= 0
            keep[i[ok], cc[ok]] = v[ok]
    assert same_values(pruned.toarray(), keep)
    return res


@st.composite
def top_k_cases(draw, dtype, index_dtype):
    m = draw(sparse_matrices(dtype, index_dtype))
    axis = draw(st.sampled_from([-1, 1, 0, -2]))
    n = m.shape[1] if rows_axis(axis) else m.shape[0]
    k = draw(st.one_of(st.just(0), st.just(min(1, n)), st.just(n), st.integers(0, n)))
    mode = draw(st.sampled_from(["largest", "smallest"]))
    return m, k, axis, mode


def _ids(pairs):
    return [f"{d}-{i}" for d, i in pairs]


# --------------------------------------------------------------------------- top_k properties


@pytest.mark.parametrize(("dtype", "index_dtype"), SPARSE_DTYPES, ids=_ids(SPARSE_DTYPES))
@given(data=st.data())
def test_top_k_matches_dense(dtype, index_dtype, data):
    m, k, axis, mode = data.draw(top_k_cases(dtype, index_dtype))
    check_sparse_top_k(m, k, axis, mode, explicit=False)


@pytest.mark.parametrize(("dtype", "index_dtype"), SPARSE_DTYPES, ids=_ids(SPARSE_DTYPES))
@given(data=st.data())
def test_top_k_explicit_matches_reference(dtype, index_dtype, data):
    m, k, axis, mode = data.draw(top_k_cases(dtype, index_dtype))
    check_sparse_top_k(m, k, axis, mode, explicit=True)


# --------------------------------------------------------------------------- top_k rules


def _csr(data, indices, indptr, shape, cls=sp.csr_array, index_dtype=np.int32):
    m = cls((np.asarray(data), np.asarray(indices, index_dtype), np.asarray(indptr, index_dtype)),
            shape=shape)  # fmt: skip
    m.indices = np.asarray(indices, index_dtype)
    m.indptr = np.asarray(indptr, index_dtype)
    return m


def test_docstring_example():
    A = sp.csr_array(np.array([[0.0, 0.2, 0.0, 0.7], [0.0, 0.0, 0.0, 0.0]]))
    v, i = check_sparse_top_k(A, 3, explicit=True)
    np.testing.assert_array_equal(i, [[3, 1, -1], [-1, -1, -1]])
    np.testing.assert_array_equal(v, [[0.7, 0.2, 0.0], [0.0, 0.0, 0.0]])
    v, i = check_sparse_top_k(A, 3)
    np.testing.assert_array_equal(i, [[3, 1, 0], [0, 1, 2]])


def test_duplicates_unsorted_zeros_and_negative_zero():
    # row 0: col 2 stored as 1 + -1 (sums to a zero), col 0 twice (2 + 3),
    # col 3 a stored -0.0, col 1 a stored 0; row 1: NaN and -inf unsorted
    A = _csr([1.0, 2.0, -0.0, -1.0, 3.0, 0.0, np.nan, -np.inf, 4.0],
             [2, 0, 3, 2, 0, 1, 3, 0, 1], [0, 6, 9], (2, 5))  # fmt: skip
    assert not np.signbit(A.toarray()[0]).any()
    for mode in ("largest", "smallest"):
        for k in range(6):
            check_sparse_top_k(A, k, mode=mode)
            check_sparse_top_k(A, min(k, 2), axis=0, mode=mode)
            check_sparse_top_k(A, k, mode=mode, explicit=True)
    v, i = fr.top_k(A, 5)
    np.testing.assert_array_equal(i, [[0, 1, 2, 3, 4], [1, 2, 4, 0, 3]])
    np.testing.assert_array_equal(v[0], [5.0, 0, 0, 0, 0])
    assert not np.signbit(v[0]).any(), "a stored -0.0 reads as +0.0, as in toarray"
    v, i = fr.top_k(A, 5, explicit=True)
    np.testing.assert_array_equal(i, [[0, 1, 2, 3, -1], [1, 0, 3, -1, -1]])
    assert not np.signbit(v[0]).any()


def test_ties_go_to_the_lower_column():
    A = _csr([5.0, 1.0, 5.0, 5.0, 1.0], [4, 3, 0, 2, 1], [0, 5], (1, 6))
    v, i = check_sparse_top_k(A, 6)
    np.testing.assert_array_equal(i, [[0, 2, 4, 1, 3, 5]])
    v, i = check_sparse_top_k(A, 6, mode="smallest")
    np.testing.assert_array_equal(i, [[5, 1, 3, 0, 2, 4]])
    v, i = check_sparse_top_k(A, 6, explicit=True)
    np.testing.assert_array_equal(i, [[0, 2, 4, 1, 3, -1]])


@pytest.mark.parametrize("dtype", [np.uint8, np.int64, np.float32])
def test_duplicates_sum_in_the_data_dtype(dtype):
    """Duplicates are summed in the data dtype in storage order, as toarray:
    integers wrap, float32 rounds per addition."""
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    if info is not None:
        vals = [info.max, 1, info.max, 2, 3]
    else:
        vals = [2.0**24, 1.0, 1.0, 1.0, 3.0]
    # (int64 data with int64 indices: a dtype pair the property tests compile anyway)
    idx = np.int64 if np.dtype(dtype) == np.int64 else np.int32
    A = _csr(np.array(vals, dtype), [0, 0, 0, 1, 1], [0, 5], (1, 3), index_dtype=idx)
    for mode in ("largest", "smallest"):
        check_sparse_top_k(A, 3, mode=mode)
        check_sparse_top_k(A, 2, mode=mode, explicit=True)
    assert same_values(fr.top_k(A, 3).values[0], np.sort(A.toarray()[0])[::-1])


def test_bool_duplicates():
    A = _csr(np.array([True, True, False, True]), [1, 1, 0, 2], [0, 3, 4], (2, 3))
    v, i = check_sparse_top_k(A, 3)
    np.testing.assert_array_equal(i, [[1, 0, 2], [2, 0, 1]])
    check_sparse_top_k(A, 2, explicit=True)
    check_sparse_top_k(A, 2, axis=0, mode="smallest")


@pytest.mark.parametrize("fmt", ["lil_array", "dok_array", "bsr_array", "dia_array", "lil_matrix"])
def test_other_formats(fmt):
    rng = np.random.default_rng(5)
    d = rng.integers(-3, 4, (6, 7)).astype(np.float64)
    d[rng.random(d.shape) < 0.5] = 0
    m = getattr(sp, fmt)(d)
    for axis in (-1, 0):
        for k in (0, 2, 6):
            check_sparse_top_k(m, k, axis=axis)
            check_sparse_top_k(m, k, axis=axis, mode="smallest", explicit=True)


@pytest.mark.parametrize(("shape", "k", "axis"), [((0, 3), 2, -1), ((3, 0), 0, -1),
                                                  ((0, 3), 0, 0), ((3, 0), 2, 0), ((0, 0), 0, 1)])  # fmt: skip
def test_empty_shapes(shape, k, axis):
    for explicit in (False, True):
        v, i = check_sparse_top_k(sp.csr_array(shape), k, axis=axis, explicit=explicit)
        assert v.size == 0 and i.size == 0


def test_k_out_of_range_and_bad_arguments():
    A = sp.csr_array(np.eye(3, 4))
    for k, n, axis in ((5, 4, -1), (-1, 4, -1), (4, 3, 0), (4, 3, -2)):
        with pytest.raises(ValueError, match=rf"k={k} is out of range; need 0 <= k <= {n}"):
            fr.top_k(A, k, axis=axis)
    with pytest.raises(np.exceptions.AxisError):
        fr.top_k(A, 1, axis=2)
    with pytest.raises(ValueError, match="format must be"):
        fr.top_k(A, 1, format="csc")
    with pytest.raises(ValueError, match="mode must be"):
        fr.top_k(A, 1, mode="max")
    with pytest.raises(ValueError, match="scipy.sparse input only"):
        fr.top_k(A.toarray(), 1, explicit=True)
    with pytest.raises(ValueError, match="scipy.sparse input only"):
        fr.top_k(A.toarray(), 1, format="csr")


def test_unsupported_sparse_dtype():
    with pytest.raises(TypeError, match="unsupported sparse dtype"):
        fr.top_k(sp.csr_array(np.eye(2, dtype=np.complex128)), 1)


# --------------------------------------------------------------------------- entropy


@st.composite
def entropy_cases(draw, dtype, index_dtype, negative):
    m = draw(sparse_matrices(dtype, index_dtype, negative=negative))
    axis = draw(st.sampled_from([-1, 1, 0, -2]))
    base = draw(st.sampled_from([None, 2, 10.0]))
    return m, axis, base


ENTROPY_DTYPES = list(SPARSE_DTYPES[:3])


@pytest.mark.parametrize(("dtype", "index_dtype"), ENTROPY_DTYPES, ids=_ids(ENTROPY_DTYPES))
@given(data=st.data())
def test_entropy_matches_dense(dtype, index_dtype, data):
    negative = data.draw(st.sampled_from([False, False, False, True]))
    m, axis, base = data.draw(entropy_cases(dtype, index_dtype, negative))
    normalize = data.draw(st.booleans())
    ax = 1 if rows_axis(axis) else 0
    dense = m.toarray()
    before = snapshot(m)
    try:
        ref = entropy_ref(dense, axis=ax, base=base, normalize=normalize)
    except ValueError:
        with pytest.raises(ValueError, match="has a negative entry"):
            fr.entropy(m, axis=axis, base=base, normalize=normalize)
        with pytest.raises(ValueError, match="has a negative entry"):
            fr.entropy(dense, axis=ax, base=base, normalize=normalize)
        assert snapshot(m) == before
        return
    got = fr.entropy(m, axis=axis, base=base, normalize=normalize)
    assert snapshot(m) == before, "input was modified"
    assert got.dtype == (np.float32 if np.dtype(dtype) == np.float32 else np.float64)
    assert got.shape == (dense.shape[1 - ax],)
    assert_close(got, ref)


@pytest.mark.parametrize(("dtype", "index_dtype"), ENTROPY_DTYPES, ids=_ids(ENTROPY_DTYPES))
@given(data=st.data())
def test_entropy_from_logits_matches_dense(dtype, index_dtype, data):
    m, axis, base = data.draw(entropy_cases(dtype, index_dtype, True))
    ax = 1 if rows_axis(axis) else 0
    dense = m.toarray()
    before = snapshot(m)
    got = fr.entropy_from_logits(m, axis=axis, base=base)
    assert snapshot(m) == before, "input was modified"
    assert got.dtype == (np.float32 if np.dtype(dtype) == np.float32 else np.float64)
    assert_close(got, entropy_from_logits_ref(dense, axis=ax, base=base))


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64])
def test_entropy_of_many_empty_rows_between_short_ones(dtype):
    # thousands of consecutive rows with a few entries between them (a
    # large vocabulary's co-occurrence rows): a group of short rows was
    # bounded by its entries only and overran its per-row scratch
    rng = np.random.default_rng(5)
    nrows, filled = 30000, rng.choice(30000, 150, replace=False)
    dense = np.zeros((nrows, 8), dtype)
    for r in filled:
        cols = rng.choice(8, rng.integers(1, 6), replace=False)
        dense[r, cols] = rng.integers(1, 9, cols.size)
    m = sp.csr_array(dense)
    for normalize in (True, False):
        want = entropy_ref(dense, axis=1, base=None, normalize=normalize)
        assert_close(fr.entropy(m, normalize=normalize), want)


def test_entropy_of_many_empty_rows_within_bounds():
    # the same rows with Numba's bounds checks on (an overrun of scratch
    # memory often gives the right numbers and corrupts the heap instead)
    code = textwrap.dedent("""
        import numpy as np, scipy.sparse as sp, fastroute as fr
        dense = np.zeros((20000, 4))
        dense[::200, 1] = 1.0
        dense[::400, 2] = 3.0
        h = fr.entropy(sp.csr_array(dense))
        assert np.isnan(h[1]) and h[0] > 0 and np.isfinite(h[::200]).all()
        # rows of no entries at all (the tile of the short-row kernel is empty)
        assert np.isnan(fr.entropy(np.zeros((5, 0)))).all()
        assert (fr.entropy(np.zeros((5, 0)), normalize=False) == 0).all()
        print("ok")
    """)
    env = {**os.environ, "NUMBA_BOUNDSCHECK": "1", "FASTROUTE_NO_CACHE": "1",
           "NUMBA_NUM_THREADS": "1"}  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_entropy_rules():
    # implicit zeros contribute nothing, duplicates are summed, an empty row
    # is NaN (normalize) or 0 (not normalized); implicit logits are 0
    A = _csr([1.0, 1.0, 2.0, 0.0], [3, 3, 0, 1], [0, 3, 4, 4], (3, 4))
    np.testing.assert_allclose(fr.entropy(A), [np.log(2), np.nan, np.nan])
    np.testing.assert_array_equal(fr.entropy(A, normalize=False)[1:], [0.0, 0.0])
    np.testing.assert_allclose(fr.entropy_from_logits(A)[2], np.log(4))
    # a duplicate pair -1 + 2 sums to a non-negative entry: no error
    B = _csr([-1.0, 2.0, 1.0], [0, 0, 1], [0, 3], (1, 2))
    np.testing.assert_allclose(fr.entropy(B), [np.log(2)])
    C = _csr([1.0, -0.5], [0, 2], [0, 2], (1, 3))
    with pytest.raises(ValueError, match=r"slice 0 \(along axis 1\) has a negative entry"):
        fr.entropy(C)
    with pytest.raises(ValueError, match=r"slice 2 \(along axis 0\) has a negative entry"):
        fr.entropy(C, axis=0)


# --------------------------------------------------------------------------- malformed CSR

# (name, mutation of a valid 3 x 4 CSR with entries [1, 2, 3] in columns [0, 1, 2],
# expected message); the mutation sets attributes after construction
MALFORMED = [
    ("decreasing indptr", "A.indptr = np.array([0, 2, 1, 3], A.indptr.dtype)",
     r"indptr decreases at position 2 \(2 then 1\); it must be non-decreasing"),
    ("short indptr", "A.indptr = A.indptr[:-1].copy()",
     r"indptr has 3 entries, expected 4 \(rows \+ 1\)"),
    ("long indptr", "A.indptr = np.array([0, 1, 2, 3, 3], A.indptr.dtype)",
     r"indptr has 5 entries, expected 4 \(rows \+ 1\)"),
    ("indptr start", "A.indptr = np.array([1, 1, 2, 3], A.indptr.dtype)",
     r"indptr\[0\] must be 0"),
    ("indptr end", "A.indptr = np.array([0, 1, 2, 2], A.indptr.dtype)",
     r"indptr\[-1\] = 2 but there are 3 stored entries; they must be equal"),
    ("indptr end beyond nnz", "A.indptr = np.array([0, 1, 2, 9], A.indptr.dtype)",
     r"indptr\[-1\] = 9 but there are 3 stored entries"),
    ("negative index", "A.indices = np.array([0, -1, 2], A.indices.dtype)",
     r"stored entry 1 has index -1, outside \[0, 4\)"),
    ("index = ncols", "A.indices = np.array([0, 1, 4], A.indices.dtype)",
     r"stored entry 2 has index 4, outside \[0, 4\)"),
    ("huge index", "A.indices = np.array([0, 10**8, 2], A.indices.dtype)",
     r"stored entry 1 has index 100000000, outside \[0, 4\)"),
    ("short data", "A.data = A.data[:2].copy()",
     r"3 indices but 2 data values; they must have the same length"),
    ("short indices", "A.indices = A.indices[:2].copy()",
     r"2 indices but 3 data values; they must have the same length"),
]  # fmt: skip

# the public calls that take a CSR matrix (rows: canonical CSR path)
ROW_CALLS = {
    "top_k": "fr.top_k(A, 1)",
    "top_k explicit": "fr.top_k(A, 2, explicit=True)",
    "top_k csr": "fr.top_k(A, 1, format='csr')",
    "entropy": "fr.entropy(A)",
    "entropy_from_logits": "fr.entropy_from_logits(A)",
    "normalize_rows": "fr.normalize_rows(A)",
    "top_entropy": "fr.top_entropy(A, 1)",
    "related": "fr.related(A, [0], 1)",
}
# the same matrix seen through a transpose: CSR by columns, or its CSC twin by rows
TRANSPOSED_CALLS = {
    "top_k axis=0": "fr.top_k(A, 1, axis=0)",
    "top_k axis=0 csr": "fr.top_k(A, 1, axis=0, format='csr')",
    "entropy axis=0": "fr.entropy(A, axis=0)",
    "entropy_from_logits axis=0": "fr.entropy_from_logits(A, axis=0)",
    "top_k of the CSC twin": "fr.top_k(A, 1)",
    "entropy of the CSC twin": "fr.entropy(A)",
}

_VALID = (
    "A = sp.csr_array((np.array([1.0, 2.0, 3.0]), np.array([0, 1, 2], IDX), "
    "np.array([0, 1, 2, 3], IDX)), shape=(3, 4))\n"
    "A.indices = np.array([0, 1, 2], IDX); A.indptr = np.array([0, 1, 2, 3], IDX)"
)


# the CSC twin (shape 4 x 3, the same arrays): built valid, then mutated the
# same way (scipy's A.T would validate and raise its own error first)
_VALID_CSC = _VALID.replace("sp.csr_array", "sp.csc_array").replace("(3, 4)", "(4, 3)")


def _make_malformed(mutation, index_dtype):
    ns = {"np": np, "sp": sp, "IDX": index_dtype}
    exec(_VALID, ns)  # noqa: S102 - test data
    exec(mutation, ns)  # noqa: S102
    return ns["A"]


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64], ids=str)
@pytest.mark.parametrize(("name", "mutation", "message"), MALFORMED, ids=[c[0] for c in MALFORMED])
@pytest.mark.parametrize("call", list(ROW_CALLS), ids=list(ROW_CALLS))
def test_malformed_csr_is_value_error(name, mutation, message, call, index_dtype):
    """In-process, on the row (canonical CSR) path only: the transposed paths
    are exercised in a subprocess (``test_malformed_never_crashes``)."""
    A = _make_malformed(mutation, index_dtype)
    before = snapshot(A)
    func = {"top_entropy": "entropy"}.get(call.split()[0], call.split()[0])
    with pytest.raises(ValueError, match=rf"{func}: malformed sparse matrix: {message}"):
        eval(ROW_CALLS[call], {"fr": fr, "A": A})  # noqa: S307
    assert snapshot(A) == before


@pytest.mark.parametrize("index_dtype", ["np.int64"])
def test_malformed_never_crashes(index_dtype):
    """Every malformed case through every public call, in a subprocess so that
    a segfault (an unchecked index used by a kernel) fails the test instead of
    killing the test run: the process must exit normally and print the
    expected ValueError for each call."""
    calls = {**ROW_CALLS, **TRANSPOSED_CALLS}
    script = textwrap.dedent(
        f"""
        import sys
        import numpy as np, scipy.sparse as sp, fastroute as fr
        IDX = {index_dtype}
        cases = {[(n, mu) for n, mu, _ in MALFORMED]!r}
        calls = {calls!r}
        for name, mutation in cases:
            for cname, call in calls.items():
                ns = dict(np=np, sp=sp, fr=fr, IDX=IDX)
                exec({_VALID_CSC!r} if "CSC" in cname else {_VALID!r}, ns)
                exec(mutation, ns)
                print("CASE", name, "|", cname, "|", end=" ", flush=True)
                try:
                    eval(call, ns)
                    print("NO ERROR", flush=True)
                except ValueError as e:
                    print("ValueError:", e, flush=True)
                except Exception as e:
                    print("OTHER", type(e).__name__, e, flush=True)
        print("DONE", flush=True)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600
    )
    lines = proc.stdout.splitlines()
    last = lines[-1] if lines else ""
    assert proc.returncode == 0, (
        f"the process died with exit code {proc.returncode} during: {last!r}\n"
        f"stderr tail: {proc.stderr[-2000:]}"
    )
    assert last == "DONE"
    import re

    got = {tuple(s.strip() for s in ln[5:].split("|", 2)) for ln in lines if ln.startswith("CASE")}
    assert len(got) == len(MALFORMED) * len(calls)
    messages = {n: msg for n, _, msg in MALFORMED}
    for name, cname, outcome in got:
        func = calls[cname].split("(")[0].removeprefix("fr.")
        func = {"top_entropy": "entropy"}.get(func, func)
        assert outcome.startswith("ValueError:"), (name, cname, outcome)
        if "CSC" in cname and "index" in name:
            # the CSC twin stores row indices: the bound is its row count
            continue
        if "axis=0" in cname or "CSC" in cname:
            # the same problem seen from the other side: any malformed message
            assert re.search(rf"{func}: malformed sparse matrix: ", outcome), (name, cname)
            continue
        assert re.search(rf"{func}: malformed sparse matrix: {messages[name]}", outcome), (
            name,
            cname,
            outcome,
        )


def test_malformed_coo_is_value_error():
    A = sp.coo_array((np.array([1.0, 2.0]), (np.array([0, 1]), np.array([0, 1]))), shape=(2, 2))
    A.coords = (A.coords[0], np.array([0, 5], A.coords[1].dtype))
    with pytest.raises(
        ValueError, match=r"malformed sparse matrix: entry 1 has column index 5, outside \[0, 2\)"
    ):
        fr.top_k(A, 1)


# --------------------------------------------------------------------------- input unchanged


def test_no_function_modifies_the_input():
    """Unsorted rows with duplicates: the functions canonicalize a copy."""
    rng = np.random.default_rng(11)
    rows = rng.integers(0, 6, 40)
    cols = rng.integers(0, 9, 40)
    data = rng.integers(0, 4, 40).astype(np.float64)
    for fmt in ("csr_array", "csr_matrix", "csc_array", "coo_array"):
        for idx, dt in ((np.int32, np.float64), (np.int64, np.int64)):  # compiled pairs
            A = build_sparse(rows, cols, data.astype(dt), (6, 9), fmt, idx)
            before = snapshot(A)
            fr.top_k(A, 3)
            fr.top_k(A, 3, axis=0, explicit=True)
            fr.top_k(A, 3, format="csr")
            fr.top_k(A, 3, axis=0, format="csr")
            fr.entropy(A)
            fr.entropy(A, axis=0, normalize=False)
            fr.entropy_from_logits(A)
            fr.normalize_rows(A)
            fr.top_entropy(A, 2)
            fr.related(A, [0, 3], 2, measure="pmi")
            assert snapshot(A) == before, (fmt, idx)
            if fmt.startswith("cs"):
                assert not A.has_sorted_indices


def test_canonical_input_keeps_its_flags():
    A = sp.csr_array(np.arange(12.0).reshape(3, 4))
    assert A.has_sorted_indices and A.has_canonical_format
    before = snapshot(A)
    fr.top_k(A, 2)
    fr.top_k(A, 2, axis=0)
    fr.entropy(A)
    fr.normalize_rows(A)
    assert snapshot(A) == before


# --------------------------------------------------------------------------- parallel paths


def zipf_matrix(nrows, ncols, seed, dtype=np.float64, index_dtype=np.int32, fmt="csr_array"):
    """A Zipf-shaped matrix (~60k entries for 3000 x 2000) with unsorted
    indices, duplicates, ties, zeros and a few NaN/inf."""
    rng = np.random.default_rng(seed)
    ranks = rng.permutation(nrows)
    lengths = np.minimum(ncols, (ncols / (1.0 + ranks) ** 0.8).astype(int)) + rng.integers(
        0, 6, nrows
    )
    rows = np.repeat(np.arange(nrows), lengths)
    cols = rng.integers(0, ncols, rows.size)
    data = np.round(rng.exponential(1.0, rows.size), 2)
    data[rng.random(rows.size) < 0.05] = 0.0
    if np.dtype(dtype).kind == "f":
        data[rng.random(rows.size) < 0.001] = np.nan
        data[rng.random(rows.size) < 0.001] = np.inf
        data[rng.random(rows.size) < 0.2] *= -1
    perm = rng.permutation(rows.size)
    return build_sparse(rows[perm], cols[perm], data[perm].astype(dtype), (nrows, ncols), fmt,
                        index_dtype)  # fmt: skip


#: the CSR row kernels the executor runs in parallel chunks on a large matrix
PARALLEL_KERNELS = (
    "topk_dense_rows",
    "topk_explicit_rows",
    "entropy_rows",
    "csr_rows",
    "logits_rows",
    "check_rows",
)


@pytest.mark.parametrize("index_dtype", [np.int32], ids=str)  # int64: serial tests only
def test_large_zipf_matches_dense(index_dtype, executor_jobs, small_parallel_work):
    A = zipf_matrix(3000, 2000, seed=7, index_dtype=index_dtype)
    dense = A.toarray()
    for axis in (-1, 0):
        ax = axis % 2
        for k, mode in ((5, "largest"), (40, "smallest")):
            v, i = fr.top_k(A, k, axis=axis, mode=mode)
            dv, di = fr.top_k(dense, k, axis=ax, mode=mode)
            np.testing.assert_array_equal(i, di)
            assert same_values(v, dv)
    ev, ei = fr.top_k(A, 7, explicit=True)
    for r in range(0, 3000, 97):  # the explicit rule row by row on a sample
        seg = slice(A.indptr[r], A.indptr[r + 1])
        cols = A.indices[seg]
        stored = {(0, int(c)) for c in cols}
        rv, ri = explicit_top_k_ref(dense[r : r + 1], stored, 7)
        np.testing.assert_array_equal(ei[r : r + 1], ri)
        assert same_values(ev[r : r + 1], rv)
    clean = np.abs(np.nan_to_num(dense, posinf=0.0))
    Ac = sp.csr_array(clean)
    h = fr.entropy(Ac)
    hd = fr.entropy(clean)
    np.testing.assert_allclose(h, hd, rtol=2e-12, atol=4e-15)
    c32 = np.minimum(clean, 1e30).astype(np.float32)  # within float32's range
    h32 = fr.entropy(sp.csr_array(c32))  # the float32-log kernel
    assert_close(h32, entropy_ref(c32))
    hz = fr.entropy_from_logits(A)
    hzd = fr.entropy_from_logits(dense)
    assert np.array_equal(np.isnan(hz), np.isnan(hzd))
    np.testing.assert_allclose(hz, hzd, rtol=2e-12, atol=4e-15)
    if numba.config.NUMBA_NUM_THREADS >= 2:
        assert set(PARALLEL_KERNELS) <= {name for name, jobs in executor_jobs if jobs > 1}


def test_same_bits_for_any_thread_count(restore_numba_threads, small_parallel_work):
    if restore_numba_threads < 2:
        pytest.skip("needs NUMBA_NUM_THREADS >= 2")
    A = zipf_matrix(3000, 2000, seed=3)
    Af = zipf_matrix(3000, 2000, seed=4, dtype=np.float32)
    As = sp.csr_array(np.abs(np.nan_to_num(A.toarray(), posinf=0.0)))

    def run():
        out = []
        for m in (A, Af):
            for axis in (-1, 0):
                out += list(fr.top_k(m, 6, axis=axis))
                out += list(fr.top_k(m, 6, axis=axis, explicit=True, mode="smallest"))
                p = fr.top_k(m, 6, axis=axis, format="csr")
                out += [p.indptr, p.indices, p.data]
            out.append(fr.entropy_from_logits(m))
        out += [fr.entropy(As), fr.entropy(As, axis=0, normalize=False)]
        As32 = As.astype(np.float32)
        out += [fr.entropy(As32), fr.entropy(As32, axis=0, normalize=False)]
        return out

    numba.set_num_threads(1)
    one = run()
    numba.set_num_threads(2)
    two = run()
    assert len(one) == len(two)
    for a, b in zip(one, two, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes()


def test_pruned_csr_parallel_path_same_bits(
    restore_numba_threads, executor_jobs, small_parallel_work
):
    """format="csr" on a Zipf matrix large enough for the parallel conversion:
    the same arrays with 1 and 2 threads, and exactly the top-k entries of
    each row in column order."""
    from fastroute._bench.cases import zipf_csr

    A = zipf_csr((6000, 900), 60_000, seed=4)
    A.data[::7] *= -1.0  # negatives rank below the implicit zeros
    numba.set_num_threads(2)
    two = fr.top_k(A, 8, format="csr")
    parallel = {name for name, jobs in executor_jobs if jobs > 1}
    assert {"kept_counts", "kept_pairs"} <= parallel, "the conversion must run in chunks"
    numba.set_num_threads(1)
    one = fr.top_k(A, 8, format="csr")
    for name in ("indptr", "indices", "data"):
        np.testing.assert_array_equal(getattr(one, name), getattr(two, name))
    v, i = top_k_ref(A.toarray(), 8)
    keep = np.zeros(A.shape, A.dtype)
    rr = np.broadcast_to(np.arange(A.shape[0])[:, None], i.shape)
    keep[rr, i] = v
    np.testing.assert_array_equal(two.toarray(), keep)
    assert two.has_canonical_format and np.all(two.data != 0)
