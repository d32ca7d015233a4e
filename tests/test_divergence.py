"""fastroute.relative_entropy / cross_entropy against the exact reference,
the adversarial accuracy cases, the rules and the errors."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
import tracemalloc

import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from reference import (
    assert_close,
    divergence_ref,
    divergence_terms_scale,
    kl_logits_ref,
    snapshot,
)
from strategies import SPARSE_DTYPES, arrays, build_sparse, sparse_matrices

import fastroute as fr
from fastroute import _execute

FUNCS = {"relative_entropy": False, "cross_entropy": True}


def check(func, p, q, axis=-1, base=None, normalize=True):
    """The public function against the exact reference: values, dtype,
    shape, inputs untouched; returns the result."""
    cross = FUNCS[func]
    before = (snapshot(p), snapshot(q))
    try:
        ref = divergence_ref(p, q, axis, base, normalize, cross)
    except ValueError:
        with pytest.raises(ValueError, match="negative entry"):
            getattr(fr, func)(p, q, axis=axis, base=base, normalize=normalize)
        return None
    got = getattr(fr, func)(p, q, axis=axis, base=base, normalize=normalize)
    assert (snapshot(p), snapshot(q)) == before, "input was modified"
    f32 = all(np.asarray(x).dtype.char in "ef" for x in (p, q))
    assert got.dtype == (np.float32 if f32 else np.float64)
    assert got.shape == ref.shape
    scale = None
    if not normalize:  # terms of both signs: the error is relative to their sum
        s = divergence_terms_scale(p, q, axis, False, cross)
        if base is not None:
            s = s / math.log(base)
        scale = np.maximum(s, np.abs(ref))
    assert_close(got, ref, scale)
    return got


@st.composite
def pairs(draw):
    """(p, q, axis): p any shape, q of p's shape, or 1-D along the axis, or
    broadcasting over a leading axis; zeros on either side, NaN/inf/negatives."""
    dtype = draw(st.sampled_from([np.float64, np.float32, np.int64]))
    p = draw(arrays(dtype, max_dims=3))
    axis = draw(st.integers(-p.ndim, p.ndim - 1))
    kind = draw(st.sampled_from(["same", "background", "near", "leading"]))
    qdtype = draw(st.sampled_from([dtype, np.float64]))
    if kind == "background":
        n = p.shape[axis]
        q = draw(arrays(qdtype, shape=(n,)))
        p = np.moveaxis(p, axis, -1)
        axis = -1
    elif kind == "near" and p.dtype.kind == "f":  # a student close to its teacher
        eps = 10.0 ** -draw(st.integers(3, 8))
        with np.errstate(all="ignore"):
            q = (p * (1 + eps * np.cos(np.arange(p.size).reshape(p.shape)))).astype(p.dtype)
    elif kind == "leading" and p.ndim >= 2:  # q broadcasts over another axis
        other = 1 if axis % p.ndim == 0 else 0
        q = draw(arrays(qdtype, shape=p.shape[:other] + (1,) + p.shape[other + 1 :]))
    else:
        q = draw(arrays(qdtype, shape=p.shape))
    return p, q, axis


@pytest.mark.parametrize("func", list(FUNCS))
@given(case=pairs(), normalize=st.booleans(), base=st.sampled_from([None, 2]))
def test_matches_reference(func, case, normalize, base):
    p, q, axis = case
    check(func, p, q, axis, base, normalize)


EPSILONS = [1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8]


def _adversarial_rows(rng):
    n = 50
    base = rng.dirichlet(np.full(n, 0.3))
    rows = []
    for eps in EPSILONS:  # q = p (1 + eps u): D ~ eps**2
        rows.append((base, base * (1 + eps * rng.uniform(-1, 1, n))))
    det = np.full(n, 1e-9)
    det[3] = 1.0
    rows.append((det, det * (1 + 1e-6 * rng.uniform(-1, 1, n))))  # near-deterministic
    rows.append((det, np.roll(det, 1)))
    rows.append((base * 1e-300, base * (1 + 1e-7) * 1e-300))  # tiny counts
    rows.append((base * 1e300, base * 1e300 * (1 - 1e-7)))  # huge counts
    z = base.copy()
    z[::4] = 0.0
    rows.append((z, base))  # zeros in p
    rows.append((base, z))  # zeros in q where p > 0: inf
    rows.append((np.floor(base * 1e6), np.floor(base * 1e6) + 1))  # counts
    return rows


@pytest.mark.parametrize("func", list(FUNCS))
def test_adversarial_rows_float64_contract(func):
    """The accuracy contract, |D - D_exact| <= 1e-12 D_exact + 2e-15 (float64),
    on the rows where the naive sum fails: nearly equal pairs (eps 1e-3 to
    1e-8), near-deterministic rows, tiny and huge counts, zeros on either side."""
    rng = np.random.default_rng(11)
    for p, q in _adversarial_rows(rng):
        check(func, p, q)
        check(func, p[None, :], q[None, :])
        if 1e-30 < p.max() < 1e30:  # representable in float32
            check(func, p.astype(np.float32), q.astype(np.float32))
    # the closest pair (eps = 1e-8, D ~ 1e-17): to about 12 digits, where the
    # naive sum of scipy.stats.entropy is wrong in the first digit
    p, q = _adversarial_rows(np.random.default_rng(11))[5]
    exact = divergence_ref(p, q)
    assert abs(fr.relative_entropy(p, q) - exact) <= 1e-11 * exact


def test_float32_rows_beyond_the_float32_steps():
    """float32 rows the float32-log kernel hands to the float64 kernel (a
    ratio beyond 2**60, q below 2**-100 of its row, sums beyond 2**100, a
    subnormal q) and rows next to them: within the contract, and the same
    bits whatever the neighbours."""
    rng = np.random.default_rng(13)
    p = rng.random((6, 40)).astype(np.float32)
    q = rng.random((6, 40)).astype(np.float32)
    q[0, 3] = 1e-25  # P / Q ~ 1e24
    q[1, 5] = 1e-38  # subnormal-adjacent q under p > 0
    p[2] *= np.float32(3e37)  # row sums beyond 2**100
    q[3, 7] = 1e-44  # a subnormal
    p[4, :20] = 0.0  # zeros in p: Q g(0) = Q, no fallback needed
    for rows in (p, p[::-1]):
        check("relative_entropy", rows, q if rows is p else q[::-1])
    whole = fr.relative_entropy(p, q)
    for r in range(6):
        assert (
            fr.relative_entropy(p[r : r + 1], q[r : r + 1]).tobytes() == whole[r : r + 1].tobytes()
        )


@pytest.mark.filterwarnings("error")
def test_float32_results_beyond_float32_are_inf_without_a_warning():
    p = np.array([3e38, 3e38], np.float32)
    q = np.array([1e-30, 1.0], np.float32)
    for a in (p, p[None], p[None, None]):  # the small-call and the general path
        assert np.all(fr.relative_entropy(a, q, normalize=False) == np.inf)


def test_rules():
    D = fr.relative_entropy
    assert D([1, 1], [1, 1]) == 0.0
    assert D([1, 0], [1, 1]) == pytest.approx(math.log(2), rel=1e-15)
    assert D([1, 1], [1, 0]) == np.inf  # p > 0 where q = 0
    assert D([0, 1], [0, 1]) == 0.0  # p = 0 terms contribute 0
    assert np.isnan(D([np.nan, 1], [1, 1])) and np.isnan(D([1, 1], [np.inf, 1]))
    assert np.isnan(D([0, 0], [1, 1])) and np.isnan(D([1, 1], [0, 0]))  # no distribution
    assert np.isnan(D(np.zeros(0), np.zeros(0)))
    assert D(np.zeros(0), np.zeros(0), normalize=False) == 0.0
    assert D([2.0, 2.0], [1.0, 1.0], normalize=False) == pytest.approx(4 * math.log(2))
    assert fr.cross_entropy([1, 1], [1, 3], base=2) == pytest.approx(
        -0.5 * math.log2(0.25) - 0.5 * math.log2(0.75)
    )
    assert fr.cross_entropy([2.0, 0.0], [0.5, 0.0], normalize=False) == pytest.approx(
        2 * math.log(2)
    )
    # q broadcasts: one background for every row, the same bits as spelled out
    rng = np.random.default_rng(2)
    p = rng.random((40, 9))
    q = rng.random(9)
    a = D(p, q)
    b = D(p, np.broadcast_to(q, p.shape).copy())
    assert a.shape == (40,) and a.tobytes() == b.tobytes()
    assert D(p.T, q[:, None], axis=0).tobytes() == a.tobytes()
    assert D(p.astype(np.float32), q.astype(np.float32)).dtype == np.float32


def test_errors():
    D = fr.relative_entropy
    with pytest.raises(ValueError, match=r"slice 1 \(along axis 1\) has a negative entry"):
        D(np.array([[1.0, 1.0], [1.0, -1.0]]), np.ones(2))
    with pytest.raises(ValueError, match="negative entry in p or q"):
        D(np.ones(2), np.array([1.0, -0.5]))
    with pytest.raises(ValueError, match="do not broadcast"):
        D(np.ones((3, 4)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="same length along axis"):
        D(np.ones((3, 4)), np.ones((3, 1)))
    with pytest.raises(ValueError, match="at least one dimension"):
        D(1.0, 1.0)
    with pytest.raises(TypeError, match="base"):
        D(np.ones(2), np.ones(2), base="e")
    with pytest.raises(TypeError):
        D(np.array(["a", "b"]), np.ones(2))


def test_same_bits_any_thread_count(restore_numba_threads, executor_jobs):
    if restore_numba_threads < 2:
        pytest.fail("needs NUMBA_NUM_THREADS >= 2")
    rng = np.random.default_rng(4)
    rows = _execute.MIN_WORK // 4 // 16 + 5
    p = rng.random((rows, 16)) ** 4
    q = rng.random((rows, 16))
    p[3] = 0.0
    out = {}
    for threads in (1, 2):
        numba.set_num_threads(threads)
        out[threads] = [
            fr.relative_entropy(p, q),
            fr.relative_entropy(p, q[0]),
            fr.cross_entropy(p, q, normalize=False),
        ]
    for a, b in zip(out[1], out[2], strict=True):
        assert a.tobytes() == b.tobytes()
    part = fr.relative_entropy(p[5:40], q[5:40])  # other batches, same bits
    assert part.tobytes() == out[2][0][5:40].tobytes()
    assert any(jobs > 1 for _, jobs in executor_jobs), "no parallel launch"


@pytest.mark.parametrize("n", [1, 8, 32, 33, 100])
def test_float32_same_bits_any_thread_count_batch_and_row(n, restore_numba_threads, executor_jobs):
    """The float32 kernel (tiles of rows up to 32 entries, 16 lanes above):
    the same bits for any thread count, any batch, and a row on its own."""
    if restore_numba_threads < 2:
        pytest.fail("needs NUMBA_NUM_THREADS >= 2")
    rng = np.random.default_rng(n)
    rows = _execute.MIN_WORK // 4 // n + 70
    z = 2 * rng.standard_normal((rows, n))
    p = np.exp(z).astype(np.float32)
    q = np.exp(z + 0.5 * rng.standard_normal(z.shape)).astype(np.float32)
    p[3] = 0.0
    q[4, 0] = 0.0  # +inf where p > 0
    q[5] = p[5]  # D = 0 exactly
    out = {}
    for threads in (1, 2):
        numba.set_num_threads(threads)
        out[threads] = (fr.relative_entropy(p, q), fr.relative_entropy(p, q[0]))
    for a, b in zip(out[1], out[2], strict=True):
        assert a.tobytes() == b.tobytes()
    d = out[2][0]
    assert np.isnan(d[3]) and d[5] == 0.0
    assert d[4] == np.inf if n > 1 else np.isnan(d[4])  # n = 1: q sums to 0
    assert fr.relative_entropy(p[7:90], q[7:90]).tobytes() == d[7:90].tobytes()
    for r in (0, 6, 65, rows - 1):  # one row: the small-call path
        assert fr.relative_entropy(p[r], q[r]).tobytes() == d[r].tobytes()
    assert any(jobs > 1 for _, jobs in executor_jobs), "no parallel launch"


# --------------------------------------------------------------------------- sparse p


def check_sparse(func, p, q, axis, normalize):
    """A sparse ``p`` (and dense or sparse ``q``) against the reference on
    the dense forms (duplicates summed, implicit entries 0)."""
    import scipy.sparse as sp

    pd = p.toarray()
    qd = q.toarray() if sp.issparse(q) else q
    ax = axis % 2
    before = (snapshot(p), snapshot(q))
    try:
        ref = divergence_ref(pd, qd, ax, None, normalize, FUNCS[func])
    except ValueError:
        with pytest.raises(ValueError, match="negative entry"):
            getattr(fr, func)(p, q, axis=axis, normalize=normalize)
        return None
    got = getattr(fr, func)(p, q, axis=axis, normalize=normalize)
    assert (snapshot(p), snapshot(q)) == before, "input was modified"
    f32 = pd.dtype.char in "ef" and np.dtype(qd.dtype).char in "ef"
    assert got.dtype == (np.float32 if f32 else np.float64)
    scale = None
    if not normalize:
        scale = np.maximum(divergence_terms_scale(pd, qd, ax, False, FUNCS[func]), np.abs(ref))
    assert_close(got, ref, scale)
    return got


@st.composite
def sparse_pairs(draw, dtype, index_dtype):
    """(p, q, axis): p sparse (any format, duplicates, explicit zeros, Zipf
    rows, NaN/inf/negatives); q a dense background, dense rows of p's shape,
    or sparse of p's shape."""
    p = draw(sparse_matrices(dtype, index_dtype))
    axis = draw(st.sampled_from([-1, 1, 0]))
    ax = axis % 2
    kind = draw(st.sampled_from(["background", "dense", "sparse"]))
    if kind == "background":
        shape = (p.shape[1],) if ax == 1 else (p.shape[0], 1)
        if ax == 1 and draw(st.booleans()):
            shape = (1, p.shape[1])
        q = draw(arrays(np.dtype(dtype), shape=shape))
    elif kind == "dense":
        q = draw(arrays(np.dtype(dtype), shape=p.shape))
    else:
        q = draw(sparse_matrices(dtype, index_dtype).filter(lambda m: m.shape == p.shape))
    return p, q, axis


@pytest.mark.parametrize(("dtype", "index_dtype"), SPARSE_DTYPES, ids=str)
@given(data=st.data())
def test_sparse_matches_dense_reference(dtype, index_dtype, data):
    p, q, axis = data.draw(sparse_pairs(dtype, index_dtype))
    func = data.draw(st.sampled_from(list(FUNCS)))
    check_sparse(func, p, q, axis, data.draw(st.booleans()))


def _as_sparse(dense, fmt="csr_array"):
    r, c = np.nonzero(dense)
    return build_sparse(r, c, dense[r, c], dense.shape, fmt)


@pytest.mark.parametrize("func", list(FUNCS))
def test_sparse_adversarial_float64_contract(func):
    """The float64 contract for sparse p: the adversarial pairs with p's
    zeros implicit, against q dense (the mass of q outside p's pattern comes
    from exact sums) and against q sparse."""
    rng = np.random.default_rng(12)
    rows = _adversarial_rows(rng)
    base = rows[0][0]
    z = base.copy()
    z[::7] = 0.0  # q = p (1 + eps) on p's pattern, a little mass elsewhere
    rows += [(z, z * (1 + 1e-8 * rng.uniform(-1, 1, z.size)) + (z == 0) * 1e-9)]
    for p, q in rows:
        ps = _as_sparse(p[None, :])
        for qq in (q, q[None, :], _as_sparse(q[None, :])):
            check_sparse(func, ps, qq, -1, True)
            check_sparse(func, ps, qq, -1, False)
        check_sparse(func, _as_sparse(p[:, None], "csc_array"), q[:, None], 0, True)


def test_sparse_rules_and_errors():
    import scipy.sparse as sp

    D = fr.relative_entropy
    p = sp.csr_array(np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [2.0, 2.0, 0.0]]))
    q = np.array([1.0, 1.0, 2.0])
    got = D(p, q)
    assert got[0] == pytest.approx(0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.5))
    assert np.isnan(got[1])  # an empty row is no distribution
    assert D(p, np.array([1.0, 1.0, 0.0]))[0] == np.inf  # an implicit 0 of q under p > 0
    assert D(p, sp.csr_array(np.array([[1.0, 0, 0]] * 3)))[0] == np.inf
    assert D(p, q, normalize=False)[1] == 0.0
    with pytest.raises(ValueError, match=r"slice 2 \(along axis 1\) has a negative entry"):
        D(sp.csr_array(np.array([[1.0, 0], [0, 1.0], [-1.0, 0]])), np.ones(2))
    with pytest.raises(ValueError, match="negative entry in p or q"):
        D(p, np.array([1.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match="does not broadcast"):
        D(p, np.ones((2, 3)))
    with pytest.raises(ValueError, match="same length along axis"):
        D(p, np.ones((3, 1)))
    with pytest.raises(ValueError, match="same shape"):
        D(p, sp.csr_array(np.ones((2, 3))))
    with pytest.raises(TypeError, match="q is sparse but p is dense"):
        D(np.ones((3, 3)), p)
    with pytest.raises(TypeError, match="logits must be dense"):
        fr.kl_from_logits(p, np.ones(3))


def test_sparse_same_bits_any_thread_count(
    restore_numba_threads, executor_jobs, small_parallel_work
):
    import scipy.sparse as sp

    if restore_numba_threads < 2:
        pytest.fail("needs NUMBA_NUM_THREADS >= 2")
    rng = np.random.default_rng(8)
    p = sp.random(4000, 300, density=0.05, random_state=1, format="csr", dtype=np.float64)
    assert p.nnz + 8 * p.shape[0] > small_parallel_work  # runs in parallel
    q = rng.random(300)
    qs = sp.random(4000, 300, density=0.3, random_state=2, format="csr", dtype=np.float64)
    out = {}
    for threads in (1, 2):
        numba.set_num_threads(threads)
        out[threads] = [D_ for D_ in (fr.relative_entropy(p, q), fr.relative_entropy(p, qs))]
    for a, b in zip(out[1], out[2], strict=True):
        assert a.tobytes() == b.tobytes()
    part = fr.relative_entropy(p[100:900], q)  # other batches, same bits
    assert part.tobytes() == out[2][0][100:900].tobytes()
    assert any(jobs > 1 for _, jobs in executor_jobs), "no parallel launch"


# --------------------------------------------------------------------------- from logits


def check_logits(zp, zq, axis=-1, base=None, temperature=1.0):
    before = (snapshot(zp), snapshot(zq))
    ref = kl_logits_ref(zp, zq, axis, base, temperature)
    got = fr.kl_from_logits(zp, zq, axis=axis, base=base, temperature=temperature)
    assert (snapshot(zp), snapshot(zq)) == before, "input was modified"
    f32 = all(np.asarray(x).dtype.char in "ef" for x in (zp, zq))
    assert got.dtype == (np.float32 if f32 else np.float64)
    assert_close(got, ref)
    return got


@st.composite
def logit_pairs(draw):
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    zp = draw(arrays(dtype, max_dims=2, negative=True))
    axis = draw(st.integers(-zp.ndim, zp.ndim - 1))
    kind = draw(st.sampled_from(["same", "near", "shifted"]))
    if kind == "near":  # a student close to its teacher
        eps = 10.0 ** -draw(st.integers(2, 8))
        with np.errstate(all="ignore"):
            zq = (zp + eps * np.sin(np.arange(zp.size).reshape(zp.shape))).astype(dtype)
    elif kind == "shifted":  # the same distribution: D = 0
        with np.errstate(all="ignore"):
            zq = (zp - 37.0).astype(dtype)
    else:
        zq = draw(arrays(dtype, shape=zp.shape, negative=True))
    return zp, zq, axis


@given(case=logit_pairs(), base=st.sampled_from([None, 2]), t=st.sampled_from([1.0, 0.5, 3.0]))
def test_kl_from_logits_matches_reference(case, base, t):
    zp, zq, axis = case
    check_logits(zp, zq, axis, base, t)


def test_kl_from_logits_adversarial_float64_contract():
    """Nearly equal logits (eps 1e-2 to 1e-8: D ~ eps**2), logits up to
    +-1e30, -inf on either side, temperatures."""
    rng = np.random.default_rng(21)
    z = rng.normal(0, 4, 64)
    for eps in [1e-2, 1e-4, 1e-6, 1e-8]:
        check_logits(z, z + eps * rng.standard_normal(64))
        check_logits(z, z + eps * rng.standard_normal(64), temperature=2.5)
    check_logits(np.array([1e30, 0.0, -1e30]), np.array([0.0, 1e30, -1e30]))
    check_logits(np.array([1e30, 1e30 * (1 - 1e-12), -1e30]), np.array([1e30, 1e30, 0.0]))
    w = z.copy()
    w[::3] = -np.inf
    check_logits(w, z)  # p = 0 where z_p = -inf
    assert fr.kl_from_logits(z, w) == np.inf  # q = 0 where p > 0
    check_logits(z, z - 1e6)  # a shift: D is 0 up to the rounding of z - 1e6
    assert fr.kl_from_logits(z, z) == 0.0
    assert np.isnan(fr.kl_from_logits(np.full(3, -np.inf), np.zeros(3)))
    assert np.isnan(fr.kl_from_logits(np.array([0.0, np.nan]), np.zeros(2)))
    assert np.isnan(fr.kl_from_logits(np.zeros(0), np.zeros(0)))


def test_kl_from_logits_errors():
    with pytest.raises(ValueError, match="temperature must be positive"):
        fr.kl_from_logits(np.zeros(2), np.zeros(2), temperature=0.0)
    with pytest.raises(ValueError, match="temperature must be positive"):
        fr.kl_from_logits(np.zeros(2), np.zeros(2), temperature=np.inf)
    with pytest.raises(TypeError, match="temperature must be a real number"):
        fr.kl_from_logits(np.zeros(2), np.zeros(2), temperature="1")
    with pytest.raises(ValueError, match="same length along axis"):
        fr.kl_from_logits(np.zeros((2, 3)), np.zeros((2, 1)))


def test_kl_from_logits_same_bits_any_thread_count(restore_numba_threads, executor_jobs):
    if restore_numba_threads < 2:
        pytest.fail("needs NUMBA_NUM_THREADS >= 2")
    rng = np.random.default_rng(6)
    rows = _execute.MIN_WORK // 4 // 16 + 5
    zp = rng.normal(0, 3, (rows, 16))
    zq = zp + 0.1 * rng.standard_normal((rows, 16))
    out = {}
    for threads in (1, 2):
        numba.set_num_threads(threads)
        out[threads] = (fr.kl_from_logits(zp, zq), fr.kl_from_logits(zp, zq[0], temperature=2.0))
    for a, b in zip(out[1], out[2], strict=True):
        assert a.tobytes() == b.tobytes()
    assert fr.kl_from_logits(zp[7:30], zq[7:30]).tobytes() == out[2][0][7:30].tobytes()
    assert any(jobs > 1 for _, jobs in executor_jobs), "no parallel launch"


@pytest.mark.parametrize("n", [1, 8, 32, 33, 100])
def test_kl_from_logits_same_bits_any_batch_and_row(n, restore_numba_threads, executor_jobs):
    """Tiles of rows (up to 32 logits) and the 16-lane row path: the same bits
    for any thread count, any batch and a row on its own; -inf logits on
    either side."""
    if restore_numba_threads < 2:
        pytest.fail("needs NUMBA_NUM_THREADS >= 2")
    rng = np.random.default_rng(n + 100)
    rows = _execute.MIN_WORK // 4 // n + 70
    zp = (2 * rng.standard_normal((rows, n))).astype(np.float32)
    zq = (zp + 0.5 * rng.standard_normal(zp.shape)).astype(np.float32)
    zp[3, 0] = -np.inf
    zq[4, 0] = -np.inf  # q = 0 where p > 0: +inf (n > 1)
    out = {}
    for threads in (1, 2):
        numba.set_num_threads(threads)
        out[threads] = (fr.kl_from_logits(zp, zq), fr.kl_from_logits(zp, zq[0], temperature=2.0))
    for a, b in zip(out[1], out[2], strict=True):
        assert a.tobytes() == b.tobytes()
    d = out[2][0]
    assert d[4] == np.inf if n > 1 else np.isnan(d[4])
    assert fr.kl_from_logits(zp[9:77], zq[9:77]).tobytes() == d[9:77].tobytes()
    for r in (0, 3, 65, rows - 1):
        assert fr.kl_from_logits(zp[r], zq[r]).tobytes() == d[r].tobytes()
    check_logits(zp[:40], zq[:40])
    assert any(jobs > 1 for _, jobs in executor_jobs), "no parallel launch"


# --------------------------------------------------------------------------- issue 27
# No crash, no silent wrong answer: malformed sparse input, tiny and huge
# temperatures, logits near the float64 limit, sums beyond float64 in nats,
# broadcast views, conversions before checks, one result type.


def _run_child(code: str, timeout: float = 600) -> subprocess.CompletedProcess:
    # a call that crashed the process before the fix runs in a child
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, timeout=timeout, env=dict(os.environ),
    )  # fmt: skip


def test_cross_entropy_of_malformed_sparse_is_the_error_of_relative_entropy():
    """A CSR with ``indptr = [0, 1000000, 2, 3, 3]`` (float32 or float16 data,
    as p or as q): ``cross_entropy`` checked it after SciPy's own ``astype``
    had read it (a segfault or "double free or corruption"); now both
    functions give the same clear error, checked before anything reads it."""
    proc = _run_child(
        """
        import numpy as np, scipy.sparse as sp, fastroute as fr

        def forged(dtype):
            a = sp.csr_array(np.ones((4, 3), np.float32))
            a.indptr = np.array([0, 1000000, 2, 3, 3], a.indptr.dtype)
            a.indices = np.array([0, 1, 2], a.indices.dtype)
            a.data = np.ones(3, dtype)
            return a

        good = sp.csr_array(np.ones((4, 3), np.float32))
        for dtype in ("float32", "float16"):
            for side in ("p", "q"):
                for func in ("relative_entropy", "cross_entropy"):
                    args = (forged(dtype), np.ones(3, np.float32)) if side == "p" else (
                        good, forged(dtype))
                    try:
                        getattr(fr, func)(*args)
                        print(dtype, side, "no error", flush=True)
                    except Exception as e:
                        print(dtype, side, type(e).__name__, str(e).replace(func, "FUNC"),
                              flush=True)
        """
    )
    assert proc.returncode == 0, f"the child died ({proc.returncode}): {proc.stderr[-2000:]}"
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 8, proc.stdout
    for rel, cross in zip(lines[::2], lines[1::2], strict=True):
        assert rel == cross, (rel, cross)
        if rel.startswith("float32"):
            assert "ValueError FUNC: malformed sparse matrix: indptr decreases" in rel
        else:
            assert "TypeError FUNC: float16 sparse data is not supported" in rel


def test_kl_from_logits_temperature_range():
    """``T`` below 2**-1022 made ``1 / T`` overflow (``[nan, nan]`` for
    ``kl_from_logits(z, z, temperature=1e-310)``): a ValueError stating the
    range; from 2**-1022 on the exact divergence."""
    z = np.array([[0.5, 1.0], [2.0, -1.0]])
    for t in (1e-310, 5e-324, 2.0**-1023, -1.0, np.nan, 10**400):
        with pytest.raises(ValueError, match=r"temperature must be .* at least 2\*\*-1022"):
            fr.kl_from_logits(z, z, temperature=t)
    tmin = 2.0**-1022
    assert np.all(fr.kl_from_logits(z, z, temperature=tmin) == 0.0)
    check_logits(np.array([0.0, 1e-310]), np.array([1e-310, 0.0]), temperature=tmin)
    check_logits(np.array([0.0, 5e-324]), np.array([5e-324, 0.0]), temperature=tmin)
    for x in (1.0, 4.0):  # D = x / T: 4.49e307, then beyond float64
        check_logits(np.array([x, 0.0]), np.array([0.0, x]), temperature=tmin)


#: (z_p, z_q, temperature, base) where the kernels gave NaN, +inf or a wrong
#: number: spans beyond float64, tiny and huge temperatures, a tiny P with a
#: huge log-ratio, and results finite in ``base`` but beyond float64 in nats
EXTREME_LOGITS = [
    ([1e308, -1e308], [-1e308, 1e308], 1.0, None),  # exact: +inf
    ([1e308, 1e308], [1e308, -1e308], 1.0, None),  # exact: 1e308 - log 2
    ([-1.4982567, 1.0572312], [-1e308, 1e308], 1.0, None),  # exact: about 1.44e307
    ([1e308, -1e308], [-1e308, 1e308], 1.0, 1e300),  # finite in base 1e300
    ([1e308, -1e308], [1e308, -7e307], 1e308, None),  # a span beyond float64, T as large
    ([1e308, -1e308, 0.0], [1e308, -7e307, 1.0], 1.7976931348623157e308, 2.0),
    ([1e10, 0.0], [0.0, 1e10], 1e-300, 1e300),  # z / T beyond float64
    ([0.0, -7.45e-298], [0.0, -1e10], 1e-300, None),  # a tiny P, a huge log-ratio
    ([1e308, 0.0], [-1e308, 0.0], 1.0, None),  # exact: 1e308
    ([1e308, 1e308, 1.0], [1e308, -1e308, 1e308], 1.0, 1e300),
    ([1e308, -1e308], [-1e308, 1e308], 1.0, 1e-300),  # a base below 1: negative
]


@pytest.mark.parametrize(("zp", "zq", "t", "base"), EXTREME_LOGITS)
def test_kl_from_logits_extreme_logits(zp, zq, t, base):
    """No overflow for any finite logits: the exact divergence (mpmath),
    also as a row of a batch of short (tile) and long (16-lane) rows."""
    zp, zq = np.array(zp), np.array(zq)
    got = check_logits(zp, zq, base=base, temperature=t)
    assert not np.isnan(got)
    for n in (8, 40):  # the row padded with -inf logits (probability 0)
        pad = np.full(n - zp.size, -np.inf)
        a = np.stack([np.r_[zp, pad], np.r_[zp, pad] * 0.5])
        b = np.stack([np.r_[zq, pad], np.r_[zq, pad] * 0.5])
        batch = fr.kl_from_logits(a, b, temperature=t, base=base)
        assert batch[0] == got
        assert_close(batch, kl_logits_ref(a, b, -1, base, t))


def test_kl_from_logits_issue_values():
    rows = fr.kl_from_logits(
        np.array([[1e308, -1e308], [1e308, 1e308], [-1.4982567, 1.0572312]]),
        np.array([[-1e308, 1e308], [1e308, -1e308], [-1e308, 1e308]]),
    )
    assert rows[0] == np.inf
    assert rows[1] == 1e308 - math.log(2)  # 1e308 to the last bit
    assert rows[2] == pytest.approx(1.4411733471713445e307, rel=1e-14)


_EXTREME = [0.0, 1.0, -1.0, 1e308, -1e308, 1.7976931348623157e308, -1.7976931348623157e308,
            1e300, -1e300, 5e-324, -1e-300, -np.inf]  # fmt: skip


@st.composite
def extreme_logit_pairs(draw):
    """Rows of logits near the float64 limit, subnormal, -inf and ordinary,
    with temperatures from 2**-1022 to the float64 maximum."""
    rows = draw(st.integers(1, 3))
    n = draw(st.sampled_from([1, 2, 3, 5, 33]))
    value = st.one_of(st.sampled_from(_EXTREME), st.floats(-30, 30))
    zp = np.array(draw(st.lists(value, min_size=rows * n, max_size=rows * n))).reshape(rows, n)
    kind = draw(st.sampled_from(["mirror", "other", "near", "one"]))
    if kind == "mirror":  # differences of the logits beyond float64
        zq = np.where(zp == -np.inf, -np.inf, -zp)
    elif kind == "near":  # nearly equal: the digits must survive
        with np.errstate(over="ignore"):
            zq = zp * (1 + 1e-9 * np.cos(np.arange(zp.size)).reshape(zp.shape))
        zq[np.isinf(zq) & np.isfinite(zp)] = zp[np.isinf(zq) & np.isfinite(zp)]
    elif kind == "one":  # one logit changed
        zq = zp.copy()
        zq[:, draw(st.integers(0, n - 1))] = draw(value)
    else:
        zq = np.array(draw(st.lists(value, min_size=rows * n, max_size=rows * n))).reshape(rows, n)
    t = draw(st.sampled_from([1.0, 2.0**-1022, 1e-300, 0.3, 1e300, 1.5 * 2.0**1000,
                              1.7976931348623157e308]))  # fmt: skip
    base = draw(st.sampled_from([None, 2, 1e300]))
    return zp, zq, t, base


@given(case=extreme_logit_pairs())
def test_kl_from_logits_extreme_matches_mpmath(case):
    zp, zq, t, base = case
    check_logits(zp, zq, base=base, temperature=t)


def test_kl_from_logits_careful_rows_same_bits_any_thread_count(
    restore_numba_threads, executor_jobs
):
    """Rows the fast kernels hand to the careful path (logits near the float64
    limit) among ordinary ones: exact, and the same bits for any thread
    count, any batch and a row on its own."""
    if restore_numba_threads < 2:
        pytest.fail("needs NUMBA_NUM_THREADS >= 2")
    rng = np.random.default_rng(27)
    for n in (8, 40):
        rows = _execute.MIN_WORK // 4 // n + 70
        zp = rng.normal(0, 3, (rows, n))
        zq = zp + 0.1 * rng.standard_normal((rows, n))
        bad = rng.choice(rows, 40, replace=False)
        zp[bad, 0] = 1e308
        zq[bad[::2], 1] = -1e308
        zq[bad[1::2], 0] = -1.7e308
        out = {}
        for threads in (1, 2):
            numba.set_num_threads(threads)
            out[threads] = fr.kl_from_logits(zp, zq)
        assert out[1].tobytes() == out[2].tobytes()
        assert fr.kl_from_logits(zp[5:300], zq[5:300]).tobytes() == out[2][5:300].tobytes()
        for r in bad[:4].tolist():
            assert fr.kl_from_logits(zp[r], zq[r]).tobytes() == out[2][r].tobytes()
        assert_close(out[2][bad], kl_logits_ref(zp[bad], zq[bad]))
    assert any(jobs > 1 for _, jobs in executor_jobs), "no parallel launch"


@pytest.mark.parametrize("func", list(FUNCS))
@pytest.mark.parametrize("form", ["dense", "sparse p", "sparse p and q", "columns"])
def test_unnormalized_sums_beyond_float64(func, form):
    """Entries near 1e308: terms beyond float64 made the sum in nats +-inf or
    NaN (inf - inf) where the divergence is finite, or finite in ``base``
    (``relative_entropy(..., normalize=False, base=1e300)``). Now the exact
    value rounded: +-inf only when it is beyond float64 in that base."""
    import scipy.sparse as sp

    p = np.array([[1e308, 0.0, 1.0], [1e308, 6e307, 0.0], [1.5e308, 6e307, 6e307], [2.0, 0.0, 1.0]])
    q = np.array([[1e-10, 1.0, 1.0], [1e-10, 1.7e308, 1.0], [1e307, 1.7e308, 1.7e308],
                  [1.0, 1.0, 1.0]])  # fmt: skip
    for base in (None, 1e300, 10.0):
        ref = divergence_ref(p, q, -1, base, False, FUNCS[func])
        f = getattr(fr, func)
        if form == "dense":
            got = f(p, q, normalize=False, base=base)
        elif form == "sparse p":
            got = f(sp.csr_array(p), q, normalize=False, base=base)
        elif form == "sparse p and q":
            got = f(sp.csr_array(p), sp.csr_array(q), normalize=False, base=base)
        else:
            got = f(sp.csc_array(p.T), q.T, axis=0, normalize=False, base=base)
        assert_close(got, ref)


def _peak_kib(fn):
    fn()  # compiled, warm
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**10
    finally:
        tracemalloc.stop()


def test_broadcast_views_are_read_in_place():
    """A ``p`` or ``q`` that is one slice repeated (``np.broadcast_to``) was
    copied in full (``np.broadcast_to(np.ones(4), (2**32, 4))``: 128 GiB);
    now it is read with a zero stride. The results are the bits of the
    spelled-out copies. (Sizes below the parallel threshold: one compiled
    kernel for the zero-stride rows, not two.)"""
    import scipy.sparse as sp

    rng = np.random.default_rng(3)
    rows, n = 48, 512  # a copy: 192 KiB; the result: 384 bytes
    assert 4 * rows * n < _execute.MIN_WORK
    row, other = rng.random(n), rng.random((rows, n))
    wide = np.broadcast_to(row, (rows, n))
    calls = [
        (fr.relative_entropy, wide, other),
        (fr.cross_entropy, wide, other),
        (fr.kl_from_logits, other, wide),
        (fr.relative_entropy, wide, row[::-1].copy()),
    ]
    for f, a, b in calls:
        assert _peak_kib(lambda f=f, a=a, b=b: f(a, b)) < 64, f.__name__
        assert f(a, b).tobytes() == f(np.array(a), np.array(b)).tobytes()
    ps = sp.csr_array(np.where(other < 0.01, other, 0.0))
    assert _peak_kib(lambda: fr.relative_entropy(ps, wide)) < 64
    assert fr.relative_entropy(ps, wide).tobytes() == fr.relative_entropy(ps, row).tobytes()


def test_sizes_are_checked_before_allocating():
    """A result or copies beyond the machine's memory: a ValueError before
    anything is allocated (it was a MemoryError, or an allocation and
    zero-fill up to the machine's memory)."""
    proc = _run_child(
        """
        import numpy as np, fastroute as fr
        huge = np.broadcast_to(np.ones(4), (2**40, 4))
        for call in (lambda: fr.relative_entropy(huge, np.ones(4)),
                     lambda: fr.cross_entropy(huge, np.ones(4)),
                     lambda: fr.relative_entropy(huge, np.ones(4), normalize=False),
                     lambda: fr.kl_from_logits(np.zeros(4), huge),
                     lambda: fr.kl_from_logits(np.zeros((2**20, 4)),
                                               np.broadcast_to(np.zeros(4), (2**22, 2**20, 4)))):
            try:
                call()
                print("no error")
            except Exception as e:
                print(type(e).__name__, e)
        """,
        timeout=300,
    )
    assert proc.returncode == 0, f"the child died ({proc.returncode}): {proc.stderr[-2000:]}"
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 5, proc.stdout
    for line in lines:
        assert line.startswith("ValueError") and "would need" in line, line
        assert "of memory; pass fewer slices at a time" in line, line


def test_cross_entropy_checks_before_converting():
    """torch ``requires_grad`` and bfloat16 tensors (accepted, as by
    ``relative_entropy``; bfloat16 gives the bits of its float32 widening)
    and ragged lists: the errors of the divergences, naming the function
    and the fix, not torch's or NumPy's."""
    torch = pytest.importorskip("torch")
    p = torch.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
    q = torch.tensor([1.0, 1.0, 2.0], requires_grad=True)
    want = fr.cross_entropy(p.detach().numpy(), q.detach().numpy())
    assert fr.cross_entropy(p, q).tobytes() == want.tobytes()
    for func in ("cross_entropy", "relative_entropy", "kl_from_logits"):
        f = getattr(fr, func)
        pb, qb = p.to(torch.bfloat16), q.to(torch.bfloat16)
        want = f(pb.detach().float().numpy(), q.detach().numpy())
        assert f(pb, q).tobytes() == want.tobytes()
        want = f(p.detach().numpy(), qb.detach().float().numpy())
        assert f(p, qb).tobytes() == want.tobytes()
        with pytest.raises(
            ValueError, match=rf"^{func}: cannot make an array of p: its rows differ"
        ):
            f([[1.0, 2.0], [1.0]], [1.0, 1.0])


@pytest.mark.parametrize(
    ("p", "q"),
    [
        (np.array([1.0, 3.0]), np.array([1.0, 1.0])),  # the small-call path
        (np.array([1, 3]), np.array([1, 1])),  # integers: the general path
        (np.array([1.0, 3.0], np.float32), np.array([1.0, 1.0], np.float32)),
        ([1.0, 3.0], [1.0, 1.0]),
    ],
    ids=["float64", "int", "float32", "list"],
)
def test_one_result_type_for_1d_input(p, q):
    """A 1-D pair gives a 0-d array, as ``relative_entropy`` and ``entropy``
    do (``cross_entropy`` gave a NumPy scalar on one path)."""
    for kw in ({}, {"base": 2}, {"normalize": False}):
        got = fr.cross_entropy(p, q, **kw)
        like = fr.relative_entropy(p, q, **kw)
        assert type(got) is np.ndarray and got.shape == () and type(like) is np.ndarray
        assert got.dtype == like.dtype
