"""fastroute.cooccurrence / normalize_rows / top_entropy / related against
plain-Python references, the documented rules and every error."""

from __future__ import annotations

import math

import mpmath
import numba
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from reference import (
    REF_PREC,
    assert_close,
    cooccurrence_ref,
    entropy_ref,
    normalize_rows_ref,
    related_ref,
    snapshot,
    top_k_ref,
)
from strategies import build_sparse, sparse_matrices, token_streams, zipf_row_lengths

import fastroute as fr

# --------------------------------------------------------------------------- helpers


def assert_canonical(m, cls=sp.csr_array, zeros_ok=False):
    """A canonical CSR of class ``cls``: sorted unique columns, no stored zeros."""
    assert type(m) is cls
    assert m.format == "csr"
    assert m.indptr.shape == (m.shape[0] + 1,)
    assert m.indptr[0] == 0 and np.all(np.diff(m.indptr) >= 0) and m.indptr[-1] == m.nnz
    for r in range(m.shape[0]):
        seg = m.indices[m.indptr[r] : m.indptr[r + 1]]
        assert np.all(np.diff(seg) > 0), f"row {r} not sorted/unique: {seg}"
    if m.nnz:
        assert m.indices.min() >= 0 and m.indices.max() < m.shape[1]
    if not zeros_ok:
        assert np.all(m.data != 0), "stored zeros"


# --------------------------------------------------------------------------- cooccurrence


def check_cooccurrence(tokens, vocab, window=2, symmetric=True, dtype=np.int64):
    before = snapshot(tokens)
    C = fr.cooccurrence(tokens, vocab, window=window, symmetric=symmetric, dtype=dtype)
    assert snapshot(tokens) == before, "tokens were modified"
    assert_canonical(C)
    assert C.shape == (vocab, vocab)
    assert C.dtype == np.dtype(dtype)
    assert C.indices.dtype == np.int32 and C.indptr.dtype == np.int32
    ref = cooccurrence_ref(tokens, vocab, window, symmetric)
    np.testing.assert_array_equal(C.toarray(), ref.astype(dtype))
    return C


@given(stream=token_streams(), window=st.integers(1, 4), symmetric=st.booleans())
def test_cooccurrence_matches_reference(stream, window, symmetric):
    tokens, vocab = stream
    check_cooccurrence(tokens, vocab, window, symmetric)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float32, np.float64], ids=str)
@pytest.mark.parametrize("symmetric", [True, False])
def test_cooccurrence_dtypes(dtype, symmetric):
    tokens = np.array([0, 1, 2, 0, 0, 3, 1, 1, 1, 4, 0])
    for window in (1, 2, 5, 20):
        check_cooccurrence(tokens, 6, window, symmetric, dtype)


def test_cooccurrence_docstring_and_diagonal():
    C = check_cooccurrence(np.array([0, 1, 2, 0]), 3, window=1)
    np.testing.assert_array_equal(C.toarray(), [[0, 1, 1], [1, 0, 1], [1, 1, 0]])
    # a pair i, i counts twice on the diagonal of the symmetric matrix
    C = check_cooccurrence(np.array([2, 2]), 3, window=1)
    assert C[2, 2] == 2 and C.nnz == 1
    C = check_cooccurrence(np.array([2, 2]), 3, window=1, symmetric=False)
    assert C[2, 2] == 1


@pytest.mark.parametrize("tokens", [np.array([], np.int64), np.array([], np.int32),
                                    np.array([3], np.uint8), np.array([0], np.int64), []])  # fmt: skip
@pytest.mark.parametrize("symmetric", [True, False])
def test_cooccurrence_empty_and_single_token(tokens, symmetric):
    C = fr.cooccurrence(tokens, 5, window=3, symmetric=symmetric)
    assert_canonical(C)
    assert C.shape == (5, 5) and C.nnz == 0
    C0 = fr.cooccurrence(np.array([], np.int64), 0)
    assert C0.shape == (0, 0) and C0.nnz == 0


def test_cooccurrence_uint8_full_vocabulary():
    tokens = np.arange(256, dtype=np.uint8).repeat(2)[::-1].copy()
    check_cooccurrence(tokens, 256, window=3)
    check_cooccurrence(tokens, 256, window=1, symmetric=False)


@pytest.mark.parametrize(
    ("tokens", "vocab", "message"),
    [
        (np.array([0, 1, 5], np.int64), 5, r"token id 5 at position 2 is outside \[0, 5\)"),
        (np.array([0, -1, 2], np.int32), 5, r"token id -1 at position 1 is outside \[0, 5\)"),
        (np.array([7, 1], np.uint8), 3, r"token id 7 at position 0 is outside \[0, 3\)"),
        (np.array([0], np.int64), 0, r"token id 0 at position 0 is outside \[0, 0\)"),
        (np.array([2**40, 0], np.int64), 3, r"token id 1099511627776 at position 0"),
    ],
)
def test_cooccurrence_bad_ids(tokens, vocab, message):
    with pytest.raises(ValueError, match=rf"cooccurrence: {message}"):
        fr.cooccurrence(tokens, vocab)


def test_cooccurrence_bad_arguments():
    t = np.array([0, 1, 2])
    for w in (0, -1):
        with pytest.raises(ValueError, match=rf"window={w} is out of range; need 1 <= window"):
            fr.cooccurrence(t, 3, window=w)
    with pytest.raises(TypeError, match="window must be an integer"):
        fr.cooccurrence(t, 3, window=1.5)
    with pytest.raises(ValueError, match="vocab_size=-1 is out of range; need 0 <= vocab_size"):
        fr.cooccurrence(t, -1)
    with pytest.raises(ValueError, match="tokens must be a 1-D array"):
        fr.cooccurrence(t.reshape(1, 3), 3)
    with pytest.raises(TypeError, match="tokens must be integers"):
        fr.cooccurrence(t.astype(float), 3)
    with pytest.raises(TypeError, match="dtype must be int32, int64, float32 or float64"):
        fr.cooccurrence(t, 3, dtype=np.int16)
    # not a dtype at all, a ragged stream: fastroute's message, not NumPy's
    with pytest.raises(TypeError, match=r"cooccurrence: dtype must be .* got 'bogus'"):
        fr.cooccurrence(t, 3, dtype="bogus")
    with pytest.raises(TypeError, match="cooccurrence: tokens must be a 1-D array of integer ids"):
        fr.cooccurrence([[0, 1], [2]], 3)


def _zipf_tokens(n, vocab, seed):
    rng = np.random.default_rng(seed)
    return np.minimum(rng.zipf(1.3, n) - 1, vocab - 1).astype(np.int64)


def _cooccurrence_fast_ref(tokens, vocab, window, symmetric):
    c = np.zeros((vocab, vocab), np.int64)
    for d in range(1, window + 1):
        np.add.at(c, (tokens[:-d], tokens[d:]), 1)
    return c + c.T if symmetric else c


@pytest.mark.parametrize("symmetric", [True, False])
def test_cooccurrence_parallel_path_matches_reference(
    symmetric, restore_numba_threads, executor_jobs, small_parallel_work
):
    tokens = _zipf_tokens(40_000, 500, seed=1)
    ref = _cooccurrence_fast_ref(tokens, 500, 2, symmetric)
    # the loop reference agrees with the vectorized one on a prefix
    np.testing.assert_array_equal(
        cooccurrence_ref(tokens[:3000], 500, 2, symmetric),
        _cooccurrence_fast_ref(tokens[:3000], 500, 2, symmetric),
    )
    results = []
    for threads in sorted({1, 2, min(restore_numba_threads, 8)}):
        if threads > restore_numba_threads:
            continue
        numba.set_num_threads(threads)
        C = fr.cooccurrence(tokens, 500, window=2, symmetric=symmetric)
        assert_canonical(C)
        np.testing.assert_array_equal(C.toarray(), ref)
        results.append(C)
    if restore_numba_threads >= 2:
        parallel = {name for name, jobs in executor_jobs if jobs > 1}
        assert {"pair_counts", "pair_scatter", "distinct_rows"} <= parallel
    for C in results[1:]:
        for name in ("indptr", "indices", "data"):
            a, b = getattr(results[0], name), getattr(C, name)
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes()


# --------------------------------------------------------------------------- normalize_rows


def check_normalize_rows(A):
    before = snapshot(A)
    dense = A.toarray() if sp.issparse(A) else np.asarray(A)
    try:
        ref = normalize_rows_ref(dense)
    except ValueError:
        bad = [r for r in range(dense.shape[0])
               if np.any(~(dense[r] >= 0)) or np.any(dense[r] == np.inf)]  # fmt: skip
        with pytest.raises(ValueError, match=rf"normalize_rows: row {bad[0]} has the entry"):
            fr.normalize_rows(A)
        assert snapshot(A) == before
        return None
    P = fr.normalize_rows(A)
    assert snapshot(A) == before, "input was modified"
    cls = sp.csr_matrix if isinstance(A, sp.spmatrix) else sp.csr_array
    # (stored zeros from an underflowing quotient are tolerated here and
    # tested in test_normalize_rows_never_stores_zeros)
    assert_canonical(P, cls, zeros_ok=True)
    assert P.shape == dense.shape
    f32 = dense.dtype in (np.float32, np.float16)
    assert P.dtype == (np.float32 if f32 else np.float64)
    got = P.toarray()
    # the stored entries are exactly the nonzero quotients (a nonzero entry
    # whose quotient underflows to 0 is not stored)
    stored = np.zeros(dense.shape, bool)
    coo = P.tocoo()
    stored[coo.row, coo.col] = True
    np.testing.assert_array_equal(stored, ref.astype(P.dtype) != 0)
    np.testing.assert_array_equal(got != 0, ref.astype(P.dtype) != 0)
    rtol = 4 * 2.0**-24 if f32 else 8 * 2.0**-53
    np.testing.assert_allclose(got, ref.astype(P.dtype), rtol=rtol, atol=0)
    return P


NORMALIZE_DTYPES = [np.float64, np.float32, np.int64]


@pytest.mark.parametrize("dtype", NORMALIZE_DTYPES, ids=str)
@given(data=st.data())
def test_normalize_rows_matches_reference(dtype, data):
    bad = data.draw(st.sampled_from([False, False, False, True]))
    kw = {} if bad else {"negative": False, "nan": False, "posinf": False}
    if np.dtype(dtype).kind == "i":
        kw = {"max_magnitude": 1000} if bad else {"negative": False, "max_magnitude": 1000}
    elif not bad:
        kw["max_magnitude"] = 1e300
    A = data.draw(sparse_matrices(dtype, np.int32, **kw))
    if data.draw(st.booleans()):
        A = A.toarray()
    check_normalize_rows(A)


def test_normalize_rows_rules():
    P = check_normalize_rows(np.array([[1, 3], [0, 0]]))
    np.testing.assert_array_equal(P.toarray(), [[0.25, 0.75], [0.0, 0.0]])
    assert P.indptr.tolist() == [0, 2, 2]
    # duplicates summed (to a zero, too), stored zeros and -0.0 dropped, unsorted
    A = build_sparse([0, 0, 0, 0, 1, 1, 2], [3, 1, 3, 0, 2, 2, 1],
                     [1.0, 2.0, 1.0, -0.0, 1.0, -1.0, 0.0], (3, 4), "csr_matrix")  # fmt: skip
    P = check_normalize_rows(A)
    np.testing.assert_array_equal(P.toarray(), [[0, 0.5, 0, 0.5], [0, 0, 0, 0], [0, 0, 0, 0]])
    assert P.nnz == 2
    P = check_normalize_rows(sp.csr_array(np.array([[1, 1, 2]], np.float32)))
    assert P.dtype == np.float32
    check_normalize_rows(sp.csr_array((0, 3)))
    check_normalize_rows(np.zeros((2, 0)))
    check_normalize_rows(sp.coo_array(np.array([[True, False], [True, True]])))


def test_bad_weight_parallel_names_the_first_bad_row(
    restore_numba_threads, executor_jobs, small_parallel_work
):
    """Large data is checked in parallel chunks; the error still names the
    row of the first bad entry, whichever chunk finds one first."""
    numba.set_num_threads(2)
    n = 64 * small_parallel_work
    data = np.ones(n)
    for pos, bad in ((n - 5, -1.0), (n // 2 + 3, np.nan), (n // 3, np.inf)):
        data[pos] = bad
        A = sp.csr_array((data, np.zeros(n, np.int32), np.arange(n + 1)), shape=(n, 1))
        with pytest.raises(ValueError, match=f"row {pos} has the entry"):
            fr.normalize_rows(A)
    assert ("bad_weight", 8) in executor_jobs, "the parallel check must have run"


@pytest.mark.parametrize(
    "A",
    [np.array([[5e-324, 4.0]]), np.array([[1e-45, 100.0], [1.0, 0.0]], np.float32)],
    ids=["float64", "float32"],
)
def test_normalize_rows_never_stores_zeros(A):
    """A quotient that underflows to 0 must not be stored ("stored zeros
    dropped", canonical CSR without zero values)."""
    P = fr.normalize_rows(A)
    np.testing.assert_array_equal(P.toarray()[0], [0.0, 1.0])
    assert np.all(P.data != 0), f"stored zeros: data={P.data!r}, indices={P.indices!r}"
    assert P.nnz == int(np.count_nonzero(P.toarray()))


@pytest.mark.parametrize("bad", [-1.0, np.nan, np.inf, -np.inf])
def test_normalize_rows_bad_entries_name_the_row(bad):
    A = np.ones((4, 3))
    A[2, 1] = bad
    A[3, 0] = bad
    with pytest.raises(ValueError, match=r"normalize_rows: row 2 has the entry"):
        fr.normalize_rows(A)
    with pytest.raises(ValueError, match=r"normalize_rows: row 2 has the entry"):
        fr.normalize_rows(sp.csc_array(A))
    with pytest.raises(ValueError, match="expected a 2-D matrix"):
        fr.normalize_rows(np.ones(3))


# --------------------------------------------------------------------------- top_entropy


@given(data=st.data())
def test_top_entropy_is_top_k_of_entropy(data):
    A = data.draw(sparse_matrices(np.float64, np.int32, negative=False))
    if data.draw(st.booleans()):
        A = A.toarray()
    n = A.shape[0]
    k = data.draw(st.integers(0, n))
    normalize = data.draw(st.booleans())
    base = data.draw(st.sampled_from([None, 2]))
    before = snapshot(A)
    v, i = fr.top_entropy(A, k, normalize=normalize, base=base)
    assert snapshot(A) == before
    dense = A.toarray() if sp.issparse(A) else np.asarray(A)
    h_ref = entropy_ref(dense, axis=1, normalize=normalize, base=base)
    rv, _ = top_k_ref(h_ref, k)
    assert_close(v, rv)  # the k largest entropies, to the accuracy contract
    assert_close(v, h_ref[i])  # and the rows that have them
    assert len(set(i.tolist())) == k
    assert v.dtype == np.float64 and i.dtype == np.intp and v.shape == (k,)
    # the documented order on its own values: descending, ties -> lower row, NaN last
    for j in range(k - 1):
        a, b = v[j], v[j + 1]
        if np.isnan(a):
            assert np.isnan(b) and i[j] < i[j + 1]
        elif not np.isnan(b):
            assert a > b or (a == b and i[j] < i[j + 1])


def test_top_entropy_rules():
    v, i = fr.top_entropy(np.array([[1, 0], [1, 1], [3, 1]]), 2, base=2)
    np.testing.assert_array_equal(i, [1, 2])
    np.testing.assert_allclose(v, [1.0, 0.8112781244591328], rtol=1e-15)
    # ties -> lower row; empty (NaN) rows last, by row
    P = sp.csr_array(np.array([[0, 0], [2, 2], [0, 0], [5, 5], [1, 0]], np.float32))
    v, i = fr.top_entropy(P, 5)
    np.testing.assert_array_equal(i, [1, 3, 4, 0, 2])
    assert v.dtype == np.float32 and np.isnan(v[3:]).all()
    with pytest.raises(ValueError, match=r"0 <= k <= 5"):
        fr.top_entropy(P, 6)
    with pytest.raises(ValueError, match="expected a 2-D matrix"):
        fr.top_entropy(np.ones(3), 1)
    with pytest.raises(ValueError, match="negative entry"):
        fr.top_entropy(np.array([[1.0, -1.0]]), 1)


# --------------------------------------------------------------------------- related


def _score_tol(ref: float, total: float) -> float:
    # pmi = log(c_ij / c_i) + log(N / c_j): two terms of magnitude <= log(N)
    return 1e-12 * abs(ref) + 8 * 2.0**-53 * (2 * abs(math.log(max(total, 2.0))) + 1)


def _exact_order(ref: dict) -> list[int]:
    """Columns by exact score, descending; equal scores -> lower column
    (scores within 1e-25 count as equal: irrational cds scores of equal
    mathematical value may differ in the reference's last bits)."""
    import functools

    def cmp(a, b):
        sa, sb = ref[a], ref[b]
        if abs(sa - sb) <= 1e-25 * max(1, abs(sa)):
            return a - b
        return -1 if sa > sb else 1

    return sorted(ref, key=functools.cmp_to_key(cmp))


def check_related(C, rows, k, measure="conditional", min_count=1, exclude_self=False, cds=None):
    """``related`` against the exact reference scores: scores within rounding,
    indices exactly the reference's order (equal scores -> lower column, the
    order decided exactly), padding with -1/NaN."""
    before = snapshot(C)
    res = fr.related(C, rows, k, measure=measure, min_count=min_count,
                     exclude_self=exclude_self, cds=cds)  # fmt: skip
    assert snapshot(C) == before, "input was modified"
    assert isinstance(res, fr.TopK)
    v, i = res
    scalar = np.ndim(rows) == 0
    rows_list = [int(rows)] if scalar else [int(r) for r in np.asarray(rows).reshape(-1)]
    shape = (k,) if scalar else (len(rows_list), k)
    assert v.shape == shape and i.shape == shape
    assert v.dtype == np.float64 and i.dtype == np.intp
    v2, i2 = v.reshape(len(rows_list), k), i.reshape(len(rows_list), k)
    dense = C.toarray() if sp.issparse(C) else np.asarray(C)
    total = float(dense.sum())
    refs = related_ref(dense, rows_list, measure, min_count, exclude_self, cds)
    # ppmi: a pair with PMI exactly 0 is no candidate; its computed score may
    # round to +-1 ulp, which this property test tolerates (see
    # test_ppmi_excludes_exactly_independent_pairs for the strict rule)
    zero = [{}] * len(rows_list)
    if measure == "ppmi":
        pmi = related_ref(dense, rows_list, "pmi", min_count, exclude_self, cds)
        zero = [{c: s for c, s in d.items() if s == 0} for d in pmi]
    with mpmath.workprec(REF_PREC):
        for t, ref in enumerate(refs):
            vals, idx = v2[t], i2[t]
            order = _exact_order(ref)
            n = min(k, len(ref))
            m = int(np.sum(idx >= 0))
            assert np.all(idx[:m] >= 0) and np.all(idx[m:] == -1), idx
            assert np.isnan(vals[m:]).all()
            assert n <= m <= min(k, len(ref) + len(zero[t])), (m, n, ref, zero[t])
            assert len(set(idx[:m].tolist())) == m
            np.testing.assert_array_equal(idx[:n], order[:n])  # the exact order
            for j in range(n):
                c = int(idx[j])
                assert c in ref, (c, ref)
                exact = float(ref[c])
                assert abs(vals[j] - exact) <= _score_tol(exact, total), (vals[j], exact)
                # rank j holds a column whose exact score is the j-th best
                want = float(ref[order[j]])
                assert abs(exact - want) <= 2 * _score_tol(want, total), (j, c, order[j])
            for j in range(n, m):  # only the exactly-independent extras
                assert int(idx[j]) in zero[t] and abs(vals[j]) <= _score_tol(0.0, total)
    return res


@st.composite
def count_matrices(draw, max_side=7):
    """Small non-negative integer count matrices (sparse or dense) with Zipf
    rows, empty rows and columns, duplicates and stored zeros."""
    nrows = draw(st.integers(1, max_side))
    ncols = draw(st.integers(1, max_side))
    if draw(st.booleans()):
        seed = draw(st.integers(0, 2**32 - 1))
        rng = np.random.default_rng(seed)
        lengths = zipf_row_lengths(rng, nrows, ncols, long_rows=2, long_frac=1.0)
        r = np.repeat(np.arange(nrows), lengths)
        c = rng.integers(0, ncols, r.size)
        d = rng.integers(0, 6, r.size)
    else:
        nnz = draw(st.integers(0, 3 * nrows * ncols))
        r = np.asarray(draw(st.lists(st.integers(0, nrows - 1), min_size=nnz, max_size=nnz)))
        c = np.asarray(draw(st.lists(st.integers(0, ncols - 1), min_size=nnz, max_size=nnz)))
        d = draw(hnp.arrays(np.int64, nnz, elements=st.integers(0, 20)))
    fmt = draw(st.sampled_from(["csr_array", "csr_matrix", "coo_array", "dense"]))
    m = build_sparse(r, c, d.astype(np.int64), (nrows, ncols), "coo_array")
    if fmt == "dense":
        return m.toarray()
    return build_sparse(r, c, d.astype(np.int64), (nrows, ncols), fmt)


@given(data=st.data())
def test_related_matches_reference(data):
    C = data.draw(count_matrices())
    nrows, ncols = C.shape
    if data.draw(st.booleans()):
        rows = data.draw(st.integers(0, nrows - 1))
    else:
        rows = data.draw(st.lists(st.integers(0, nrows - 1), max_size=4))
    k = data.draw(st.one_of(st.just(ncols), st.integers(0, ncols)))
    measure = data.draw(st.sampled_from(["conditional", "pmi", "ppmi", "npmi"]))
    min_count = data.draw(st.sampled_from([1, 1, 2, 1.5, 0.5, 3]))
    exclude_self = data.draw(st.booleans())
    cds = data.draw(st.sampled_from([None, 0.75, 0.5])) if measure in ("pmi", "ppmi") else None
    check_related(C, rows, k, measure, min_count, exclude_self, cds)


def test_pmi_ties_are_exact_for_huge_counts():
    """Columns with mathematically equal PMI keep the lower column first even
    when c_ij * N passes 2**53 and the rounded scores differ by an ulp."""
    C = [[850773601, 637324725, 511625343, 0], [0, 0, 0, 5056378869]]
    v, i = fr.related(C, 0, 3, measure="pmi")
    np.testing.assert_array_equal(i, [0, 1, 2])  # all three scores are log(N / c_0)
    assert np.ptp(v) <= 4e-16 * abs(v[0])
    check_related(np.array(C), [0, 1], 4, "pmi")
    check_related(np.array(C), [0, 1], 4, "npmi")


@pytest.mark.parametrize("seed", range(6))
def test_related_exact_order_with_counts_up_to_1e11(seed):
    """Random count tables with counts up to 1e11 and many exact PMI ties
    (columns seen with equal counts and equal column sums), checked against
    the exact reference (Fractions), all four measures and cds."""
    rng = np.random.default_rng(seed)
    nrows, ncols = 6, 9
    base = rng.integers(1, 10**11, ncols)
    C = np.zeros((nrows, ncols), np.int64)
    for r in range(nrows):  # row r: each column j proportional to base[j] or zero
        keep = rng.random(ncols) < 0.7
        C[r, keep] = rng.choice([1, 2, 3], keep.sum()) * (base[keep] // 3)
    C[:, 1] = C[:, 0]  # two columns with identical counts everywhere: exact ties
    C[:, 5] = C[:, 4] * 2
    rows = list(range(nrows))
    for measure, cds in (("conditional", None), ("pmi", None), ("ppmi", None),
                         ("npmi", None), ("pmi", 0.75)):  # fmt: skip
        check_related(sp.csr_array(C), rows, ncols, measure, 1, False, cds)


def test_related_docstring_example():
    C = np.array([[0, 3, 1], [3, 0, 0], [1, 0, 2]])
    v, i = check_related(C, [0, 2], 2)
    np.testing.assert_array_equal(i, [[1, 2], [2, 0]])
    np.testing.assert_allclose(v, [[0.75, 0.25], [2 / 3, 1 / 3]], rtol=1e-15)
    v, i = check_related(C, 2, 3, exclude_self=True)
    np.testing.assert_array_equal(i, [0, -1, -1])
    assert v[0] == 1 / 3 and np.isnan(v[1:]).all()


def test_related_rules():
    C = sp.csr_array(np.array([[4, 2, 2, 1, 0], [2, 0, 0, 0, 6], [2, 0, 0, 1, 1]], np.float64))
    # ties -> lower column; min_count; padding
    v, i = check_related(C, [0, 1], 5)
    np.testing.assert_array_equal(i, [[0, 1, 2, 3, -1], [4, 0, -1, -1, -1]])
    v, i = check_related(C, [0], 5, min_count=2)
    np.testing.assert_array_equal(i, [[0, 1, 2, -1, -1]])
    v, i = check_related(C, 0, 2, min_count=2.5)
    np.testing.assert_array_equal(i, [0, -1])
    # pmi / ppmi with sums over all entries (before min_count)
    for measure in ("pmi", "ppmi"):
        for min_count in (1, 2):
            check_related(C, [0, 1, 2], 5, measure=measure, min_count=min_count)
            check_related(C, [2, 0], 3, measure=measure, exclude_self=True)
    v, i = fr.related(C, 1, 2, measure="pmi")
    N, ci = 21.0, 8.0
    np.testing.assert_allclose(v, [math.log(6 * N / (ci * 7)), math.log(2 * N / (ci * 8))],
                               rtol=1e-14)  # fmt: skip
    # empty rows list
    v, i = fr.related(C, [], 3)
    assert v.shape == (0, 3) and i.shape == (0, 3)
    v, i = fr.related(C, np.array([], np.int64), 0)
    assert v.shape == (0, 0)


def test_ppmi_excludes_exactly_independent_pairs():
    """PMI = log(c_ij N / (c_i c_j)) is exactly 0 for every pair of a rank-one
    (independent) count matrix: "ppmi" must return no candidate at all, and
    "pmi" scores of 0 (within rounding)."""
    for C in (np.array([[1, 9]]), np.array([[1, 2], [3, 6]]), np.array([[2, 6, 2]])):
        v, i = fr.related(C, list(range(C.shape[0])), C.shape[1], measure="pmi")
        assert np.all(np.abs(v) < 1e-15)
        v, i = fr.related(C, list(range(C.shape[0])), C.shape[1], measure="ppmi")
        np.testing.assert_array_equal(i, -1, err_msg=f"PMI is exactly 0 in {C.tolist()}: {v}")
        assert np.isnan(v).all()


def test_related_errors():
    C = np.array([[1, 2], [3, 4]])
    with pytest.raises(ValueError, match=r"row id 2 is outside \[0, 2\)"):
        fr.related(C, [0, 2], 1)
    with pytest.raises(ValueError, match=r"row id -1 is outside \[0, 2\)"):
        fr.related(C, -1, 1)
    with pytest.raises(ValueError, match=r"k=3 is out of range; need 0 <= k <= 2"):
        fr.related(C, 0, 3)
    with pytest.raises(ValueError, match=r"k=-1 is out of range"):
        fr.related(C, 0, -1)
    with pytest.raises(ValueError, match="measure must be one of"):
        fr.related(C, 0, 1, measure="jaccard")
    with pytest.raises(ValueError, match="cds applies to measure='pmi' or 'ppmi'"):
        fr.related(C, 0, 1, cds=0.75)
    for bad in (0, 1.5, -0.75, float("nan")):
        with pytest.raises(ValueError, match=r"cds must be in \(0, 1\]"):
            fr.related(C, 0, 1, measure="pmi", cds=bad)
    with pytest.raises(TypeError, match="cds must be a real number"):
        fr.related(C, 0, 1, measure="ppmi", cds="0.75")
    for mc in (0, -1, 0.0):
        with pytest.raises(ValueError, match="min_count must be > 0"):
            fr.related(C, 0, 1, min_count=mc)
    with pytest.raises(TypeError, match="min_count must be a real number"):
        fr.related(C, 0, 1, min_count=True)
    with pytest.raises(TypeError, match="rows must be integer row ids"):
        fr.related(C, [0.5], 1)
    with pytest.raises(ValueError, match="rows must be an integer or a 1-D array"):
        fr.related(C, [[0]], 1)
    with pytest.raises(ValueError, match=r"related: row 1 has the entry"):
        fr.related(np.array([[1.0, 2.0], [np.nan, 1.0]]), 0, 1)
    with pytest.raises(ValueError, match=r"related: row 0 has the entry"):
        fr.related(np.array([[1, -2], [1, 1]]), 1, 1)


# --------------------------------------------------------------------------- large / threads


def test_token_pipeline_large_same_bits_for_any_thread_count(restore_numba_threads):
    """cooccurrence -> normalize_rows -> top_entropy -> related on a Zipf
    stream big enough for the parallel kernels: bit-identical for 1 and 2
    threads, and related equal to the reference on a sample of rows."""
    tokens = _zipf_tokens(40_000, 2000, seed=5)

    def run():
        C = fr.cooccurrence(tokens, 2000, window=3)
        P = fr.normalize_rows(C)
        te = fr.top_entropy(P, 50)
        rel = fr.related(C, te.indices, 10, measure="ppmi", min_count=2, exclude_self=True)
        pruned = fr.top_k(P, 5, format="csr")
        return C, [C.indptr, C.indices, C.data, P.indptr, P.indices, P.data, *te, *rel,
                   pruned.indptr, pruned.indices, pruned.data]  # fmt: skip

    numba.set_num_threads(1)
    C, one = run()
    if restore_numba_threads >= 2:
        numba.set_num_threads(2)
        _, two = run()
        for a, b in zip(one, two, strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    dense = _cooccurrence_fast_ref(tokens, 2000, 3, True)
    np.testing.assert_array_equal(C.toarray(), dense)
    # related on a sample of rows against the formulas (NumPy, integer ties exact)
    csum = dense.sum(axis=0)
    total = float(dense.sum())
    rows = [0, 1, 2, 17, 333, 1999]
    v, i = fr.related(C, rows, 10, min_count=2, exclude_self=True)
    pv, pi = fr.related(C, rows, 10, measure="pmi")
    for t, r in enumerate(rows):
        row = dense[r]
        cand = [c for c in range(2000) if row[c] >= 2 and c != r]
        order = sorted(cand, key=lambda c, row=row: (-row[c], c))[:10]
        n = len(order)
        np.testing.assert_array_equal(i[t, :n], order)
        assert np.all(i[t, n:] == -1) and np.isnan(v[t, n:]).all()
        np.testing.assert_allclose(v[t, :n], row[order] / row.sum(), rtol=1e-15)
        cand = [c for c in range(2000) if row[c] > 0]
        pmi = {c: math.log(row[c] * total / (row.sum() * csum[c])) for c in cand}
        n = min(10, len(cand))
        best = sorted(pmi.values(), reverse=True)[:n]
        np.testing.assert_allclose(pv[t, :n], best, rtol=1e-12, atol=1e-13)
        for j in range(n):
            assert abs(pmi[int(pi[t, j])] - best[j]) <= 1e-12


def test_normalize_rows_parallel_path_same_bits(
    restore_numba_threads, executor_jobs, small_parallel_work
):
    """A large matrix takes the row-sum and quotient kernels in parallel
    chunks with 2 threads; the bits equal the serial ones (1 thread) and the
    reference."""
    rng = np.random.default_rng(3)
    # 5% of the entries stored, placed by hand: scipy.sparse.random_array names
    # its seed argument differently across the supported SciPy releases
    flat = rng.choice(3000 * 500, size=75_000, replace=False).astype(np.int32)
    C = sp.csr_array((rng.random(flat.size), np.divmod(flat, 500)), shape=(3000, 500))
    C.data = np.ceil(C.data * 7)
    C.data[::97] = 0.0  # stored zeros: dropped from the result
    numba.set_num_threads(2)
    two = fr.normalize_rows(C)
    parallel = {name for name, jobs in executor_jobs if jobs > 1}
    assert {"normalize_rows", "row_sums"} <= parallel
    numba.set_num_threads(1)
    one = fr.normalize_rows(C)
    for name in ("indptr", "indices", "data"):
        np.testing.assert_array_equal(getattr(one, name), getattr(two, name))
    assert two.nnz == C.nnz - np.count_nonzero(C.data == 0)
    dense = C.toarray()
    np.testing.assert_array_equal(two.toarray(), normalize_rows_ref(dense))
    assert not np.shares_memory(two.indices, C.indices)
