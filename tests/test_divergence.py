"""fastroute.relative_entropy / cross_entropy against the exact reference,
the adversarial accuracy cases, the rules and the errors."""

from __future__ import annotations

import math

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
from strategies import arrays

import fastroute as fr
from fastroute import _jit

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
    import scipy.sparse as sp

    with pytest.raises(TypeError, match="sparse input is not supported yet"):
        D(sp.csr_array(np.ones((2, 2))), np.ones(2))


def test_same_bits_any_thread_count(restore_numba_threads):
    if restore_numba_threads < 2:
        pytest.fail("needs NUMBA_NUM_THREADS >= 2")
    rng = np.random.default_rng(4)
    rows = 2 * _jit.PARALLEL_MIN_WORK // 16 + 5
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
    with pytest.raises(TypeError, match="temperature must be a number"):
        fr.kl_from_logits(np.zeros(2), np.zeros(2), temperature="1")
    with pytest.raises(ValueError, match="same length along axis"):
        fr.kl_from_logits(np.zeros((2, 3)), np.zeros((2, 1)))


def test_kl_from_logits_same_bits_any_thread_count(restore_numba_threads):
    if restore_numba_threads < 2:
        pytest.fail("needs NUMBA_NUM_THREADS >= 2")
    rng = np.random.default_rng(6)
    rows = 2 * _jit.PARALLEL_MIN_WORK // 16 + 5
    zp = rng.normal(0, 3, (rows, 16))
    zq = zp + 0.1 * rng.standard_normal((rows, 16))
    out = {}
    for threads in (1, 2):
        numba.set_num_threads(threads)
        out[threads] = (fr.kl_from_logits(zp, zq), fr.kl_from_logits(zp, zq[0], temperature=2.0))
    for a, b in zip(out[1], out[2], strict=True):
        assert a.tobytes() == b.tobytes()
    assert fr.kl_from_logits(zp[7:30], zq[7:30]).tobytes() == out[2][0][7:30].tobytes()
