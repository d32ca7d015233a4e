"""Accuracy against mpmath (200 bits): entropies and the branch-free log/exp of kernels._math.

Contract: float64 input ``|H - H_exact| <= 1e-12 * H_exact + 2e-15`` on every
row; float32 (and float16) input within 4 float32 ulp of the exact entropy of
the values as stored. ``reference.assert_close`` implements the rule.
"""

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
from reference import REF_PREC, assert_close, entropy_from_logits_ref, entropy_ref
from strategies import elements

import fastroute as fr
from fastroute.kernels import _math

F64_MAX = float(np.finfo(np.float64).max)
F64_TINY = float(np.finfo(np.float64).tiny)
SUB = 5e-324


def _rows_f64():
    rng = np.random.default_rng(2024)
    rows = [
        [1e6, 1.0],
        [1.0, 1e-6],
        [1.0, 1e-12],
        [1.0, 1e-300],
        [1.0, SUB],
        [1.0, 1.0 - 2**-52],
        [1e300, 1e294],
        [1e300, 1.0],
        [1e308, 1e302],
        [1e308, 1e308],
        [F64_MAX, F64_MAX, F64_MAX, 1.0],
        [F64_MAX, 1e-300, SUB],
        [SUB, SUB],
        [SUB, 2 * SUB, F64_TINY],
        [F64_TINY, SUB],
        [1e-300, 1e-310, SUB],
        [1e-300, 1e-300, 1e-310],
        [2.0**-900, 2.0**-1000],
        [2.0**1000, 2.0**999, 1.0],
        [1e6, 1e6, 1.0],
        [float(2**53), 1.0],
        [3.0, 1.0],
        [7.0] * 300 + [1e-3],
        [1.0] * 1000 + [1e-9],
        [1.0] + [1e-20] * 512,
        [1.0] * 1000,
        list(0.5 ** np.arange(1100.0)),
        list(rng.dirichlet(np.ones(257))),
        list(rng.dirichlet(np.full(1000, 0.01))),
        list(rng.random(300) ** 20),
        list(np.exp(rng.normal(0, 30, 513))),
    ]
    return rows


def _rows_f32():
    rng = np.random.default_rng(32)
    f32max = float(np.finfo(np.float32).max)
    s32 = float(np.finfo(np.float32).smallest_subnormal)
    return [
        [1e6, 1.0],
        [1.0, 1e-6],
        [1.0, s32],
        [f32max, f32max],
        [f32max, 1.0],
        [s32, s32],
        [s32, 1e-38],
        [1e-30, 1e-38, s32],
        [3.0, 1.0],
        [1e6, 1e6, 1.0],
        [1.0] * 1000 + [1e-9],
        list(0.5 ** np.arange(160.0)),
        list(rng.dirichlet(np.ones(300))),
        list(rng.dirichlet(np.full(600, 0.01))),
    ]


def _rows_logits():
    rng = np.random.default_rng(7)
    return [
        [0.0, -40.0],
        [0.0, -36.04],
        [0.0, -700.0],
        [0.0, -745.0],
        [0.0, -746.0],
        [0.0, -800.0],
        [0.0, -1e4],
        [1e30, 0.0, -1e30],
        [F64_MAX, -F64_MAX],
        [0.0, -1e-10],
        [0.0, -1e-300],
        [0.0, -SUB],
        [0.0, 0.0, 0.0, -np.inf],
        [50.0, 0.0] * 100,
        [0.0] * 1000,
        list(np.arange(0.0, -1000.0, -1.0)),
        list(rng.normal(0, 30, 300)),
        list(rng.normal(0, 1, 257)),
        list(rng.normal(0, 1e-8, 100)),
    ]


def _check_rows(rows, dtype, func, **kw):
    for row in rows:
        a = np.asarray(row, np.float64).astype(dtype)
        got = func(a, **kw)
        if func is fr.entropy:
            ref = entropy_ref(a, **kw)
            scale = None
            if kw.get("normalize") is False:
                with np.errstate(all="ignore"):
                    t = np.abs(a.astype(np.float64) * np.log(a.astype(np.float64)))
                scale = np.maximum(np.nansum(t), np.abs(ref))
            assert_close(got, ref, scale)
        else:
            assert_close(got, entropy_from_logits_ref(a, **kw))


# --------------------------------------------------------------------------- fixed rows


@pytest.mark.parametrize("base", [None, 2])
def test_entropy_float64_nasty_rows(base):
    _check_rows(_rows_f64(), np.float64, fr.entropy, base=base)


def test_entropy_float64_nasty_rows_unnormalized():
    rows = [r for r in _rows_f64() if max(r) <= 1e300]
    rows += [[1.0 - 1e-12, 1e-12], [0.5, 0.5], [1.0], [1e-300] * 3, [SUB] * 4, [1e300, 1.0]]
    _check_rows(rows, np.float64, fr.entropy, normalize=False)


def test_entropy_float32_nasty_rows():
    _check_rows(_rows_f32(), np.float32, fr.entropy)
    _check_rows(_rows_f32(), np.float32, fr.entropy, base=10)


def test_entropy_float16_rows():
    s16 = float(np.finfo(np.float16).smallest_subnormal)
    rows = [[65504.0, 1.0], [s16, s16], [1.0, s16], [1000.0, 1.0, 0.5], [1.0] * 300 + [s16]]
    _check_rows(rows, np.float16, fr.entropy)


def test_logits_float64_nasty_rows():
    _check_rows(_rows_logits(), np.float64, fr.entropy_from_logits)
    _check_rows(_rows_logits(), np.float64, fr.entropy_from_logits, base=2)


def test_logits_float32_rows():
    f32max = float(np.finfo(np.float32).max)
    rows = [r for r in _rows_logits() if max(abs(v) for v in r if np.isfinite(v)) < 1e38]
    rows += [[f32max, -f32max], [0.0, -104.0], [0.0, -110.0], [0.0, -16.6]]
    _check_rows(rows, np.float32, fr.entropy_from_logits)


def test_logits_float16_rows():
    rows = [[0.0, -10.0], [65504.0, -65504.0], [0.0, -17.0], [1.0, 2.0, 3.0, -np.inf]]
    _check_rows(rows, np.float16, fr.entropy_from_logits)


def test_batch_of_nasty_rows_float64():
    """The same rows in one 2-D batch (padded with zeros, which contribute 0)."""
    rows = _rows_f64()
    width = max(map(len, rows))
    p = np.zeros((len(rows), width))
    for i, r in enumerate(rows):
        p[i, : len(r)] = r
    assert_close(fr.entropy(p), entropy_ref(p))
    z = np.full((len(rows), width), -np.inf)
    for i, r in enumerate(_rows_logits()):
        z[i, : len(r)] = r
    z = z[: len(_rows_logits())]
    assert_close(fr.entropy_from_logits(z), entropy_from_logits_ref(z))


# --------------------------------------------------------------------------- generated rows


def _rows(dtype, **kw):
    return hnp.arrays(dtype, st.integers(1, 300), elements=elements(dtype, **kw))


@given(
    p=_rows(np.float64, negative=False, nan=False, posinf=False), base=st.sampled_from([None, 2])
)
def test_entropy_float64_generated(p, base):
    assert_close(fr.entropy(p, base=base), entropy_ref(p, base=base))


@given(p=_rows(np.float64, negative=False, nan=False, posinf=False, max_magnitude=1e300))
def test_entropy_float64_generated_unnormalized(p):
    got = fr.entropy(p, normalize=False)
    ref = entropy_ref(p, normalize=False)
    with np.errstate(all="ignore"):
        t = np.abs(p * np.log(p))
    assert_close(got, ref, np.maximum(np.nansum(t), np.abs(ref)))


@given(p=_rows(np.float32, negative=False, nan=False, posinf=False))
def test_entropy_float32_generated(p):
    assert_close(fr.entropy(p), entropy_ref(p))


@given(z=_rows(np.float64, nan=False, posinf=False, neginf=True), base=st.sampled_from([None, 2]))
def test_logits_float64_generated(z, base):
    assert_close(fr.entropy_from_logits(z, base=base), entropy_from_logits_ref(z, base=base))


@given(z=_rows(np.float32, nan=False, posinf=False, neginf=True))
def test_logits_float32_generated(z):
    assert_close(fr.entropy_from_logits(z), entropy_from_logits_ref(z))


@given(
    m=st.floats(1e-300, 1e300),
    ratio=st.floats(1e-300, 1e-3),
    n=st.integers(1, 300),
)
def test_entropy_near_deterministic_generated(m, ratio, n):
    """One dominant entry and n small ones: H is tiny, only log1p-style
    formulas keep the relative error small."""
    p = np.full(n + 1, m * ratio)
    p[n // 2] = m
    assert_close(fr.entropy(p), entropy_ref(p))
    z = np.zeros(n + 1)
    z[:] = math.log(ratio)
    z[n // 2] = 0.0
    assert_close(fr.entropy_from_logits(z), entropy_from_logits_ref(z))


# --------------------------------------------------------------------------- float32 kernel
# float32 rows take kernels.entropy32: a float32 mantissa log with a runtime
# error bound, the exact float64 kernel for rows the bound rejects. Both
# sides of SHORT_N (transposed lanes / per-row lanes) and of BLOCK.

F32_LENGTHS = [1, 2, 7, 8, 63, 64, 65, 255, 256, 257, 1000]


def _f32_batch(rng, n, rows=40):
    out = []
    for kind in range(rows):
        if kind % 8 == 0:  # softmax of wide logits: many tiny entries
            z = rng.normal(0, 6, n)
            p = np.exp(z - z.max())
        elif kind % 8 == 1:  # near-deterministic: the bound must reject it
            p = np.full(n, 10.0 ** -rng.uniform(3, 9))
            p[rng.integers(n)] = 1.0
        elif kind % 8 == 2:  # counts
            p = np.floor(rng.pareto(1.2, n) * 1000)
        elif kind % 8 == 3:  # huge values (the sum near float32's max)
            p = rng.random(n) * 3e38 / n
        elif kind % 8 == 4:  # tiny normal values
            p = rng.random(n) * 1e-36 + 1.2e-38
        elif kind % 8 == 5:  # zeros and ties
            p = rng.integers(0, 3, n).astype(np.float64)
        elif kind % 8 == 6:  # uniform
            p = np.ones(n)
        else:  # Dirichlet
            p = rng.dirichlet(np.full(n, 0.05))
        out.append(p)
    return np.array(out, np.float64).astype(np.float32)


@pytest.mark.parametrize("n", F32_LENGTHS)
@pytest.mark.parametrize("normalize", [True, False])
def test_entropy_float32_kernel_contract(n, normalize):
    p = _f32_batch(np.random.default_rng(n), n)
    got = fr.entropy(p, normalize=normalize)
    ref = entropy_ref(p, normalize=normalize)
    if normalize:
        assert_close(got, ref)
    else:
        with np.errstate(all="ignore"):
            t = np.abs(p.astype(np.float64) * np.log(p.astype(np.float64)))
        assert_close(got, ref, np.maximum(np.nansum(t, axis=1), np.abs(ref)))


def _csr_f32_rows(rng):
    # rows of every stored length the CSR float32 kernel treats differently:
    # around CSR_TILE_N (tile / one row at a time), runs that fill LANES or TILE,
    # empty rows, a single nonzero (exactly 0), and the kinds of _f32_batch
    lengths = [0, 1, 1, 2, 3, 5, 8, 31, 32, 33, 64, 65, 100, 255, 256, 257, 600]
    lengths += list(rng.integers(0, 40, 150)) + [1] * 70 + [200] * 30
    rows = []
    for i, n in enumerate(lengths):
        rows.append(_f32_batch(rng, n, rows=1)[0] if n else np.zeros(0, np.float32))
        if i % 5 == 0 and n:  # the kinds the first row of a batch does not draw
            rows[-1] = _f32_batch(rng, n, rows=8)[i % 8]
    return rows


@pytest.mark.parametrize("normalize", [True, False])
def test_csr_entropy_float32_kernel_contract(normalize):
    """float32 CSR rows take kernels.entropy32.csr_rows: every row within the
    float32 contract of its stored entries (implicit zeros add nothing), and
    each row's bits independent of which rows share its tile."""
    rng = np.random.default_rng(5)
    rows = _csr_f32_rows(rng)
    order = rng.permutation(len(rows))  # mixed lengths next to each other
    rows = [rows[i] for i in order]
    indptr = np.concatenate([[0], np.cumsum([r.size for r in rows])]).astype(np.int32)
    data = np.concatenate(rows).astype(np.float32)
    ncols = 1000
    indices = np.concatenate([np.sort(rng.choice(ncols, r.size, replace=False)) for r in rows])
    A = sp.csr_array((data, indices.astype(np.int32), indptr), shape=(len(rows), ncols))
    got = fr.entropy(A, normalize=normalize)
    assert got.dtype == np.float32
    for r, v in enumerate(rows):
        ref = entropy_ref(v[None, :], normalize=normalize)
        if normalize:
            assert_close(got[r : r + 1], ref)
        else:
            with np.errstate(all="ignore"):
                t = np.abs(v.astype(np.float64) * np.log(v.astype(np.float64)))
            assert_close(got[r : r + 1], ref, np.maximum(np.nansum(t), np.abs(ref)))
        if normalize and np.count_nonzero(v) == 1:
            assert got[r] == 0.0
    for lo, hi in ((0, 7), (3, 90), (41, len(rows))):  # other tiles, same bits
        part = fr.entropy(A[lo:hi], normalize=normalize)
        assert part.tobytes() == got[lo:hi].tobytes()


@numba.njit
def _log32_all(ix, mant_log):
    for i in range(ix.shape[0]):
        e, f, rest = _math.log32_parts(ix[i])
        mant_log[i] = np.float64(f) + np.float64(rest)


def test_log32_parts_error_bound_exhaustive():
    """Every float32 mantissa in [sqrt(1/2), sqrt(2)): the bound LOG32_REL_ERR
    that kernels.entropy32 relies on holds (float64 log as the reference, whose
    own error, 2**-53 relative, is far below the 2**-24 scale checked)."""
    lo = np.float32(np.sqrt(0.5)).view(np.int32)
    hi = np.float32(np.sqrt(2.0)).view(np.int32)
    ix = np.arange(lo - 2, hi + 2, dtype=np.int32)
    got = np.empty(ix.size)
    _log32_all(ix, got)
    x = ix.view(np.float32).astype(np.float64)
    e = ((ix - 0x3F3504F3) >> 23).astype(np.float64)  # the kernel's split at sqrt(1/2)
    exact = np.log(x) - e * math.log(2.0)
    err = np.abs(got - exact)
    bound = _math.LOG32_REL_ERR * 2.0**-24 * np.abs(exact)
    worst = int(np.argmax(err - bound))
    assert np.all(err <= bound), (x[worst], err[worst] / (2.0**-24 * abs(exact[worst])))


def test_log32_parts_of_zero_and_extremes():
    ix = np.array([0, 1, 0x00800000, 0x7F7FFFFF, 0x3F800000], np.int32)
    got = np.empty(ix.size)
    _log32_all(ix, got)
    assert got[0] == 0.0  # zero: the mantissa part vanishes, 0 * (-127 log 2) = 0
    assert got[4] == 0.0  # log(1) is exact


# --------------------------------------------------------------------------- _math scalars
# The branch-free log/exp are inline Numba functions; they are checked inside
# a vectorizable loop, the way the kernels use them.


@numba.njit
def _elementwise(f, x):
    out = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        out[i] = f(x[i])
    return out


def _log_values(x):
    return _elementwise(_math.log_pos, x)


def _exp_values(x):
    return _elementwise(_math.exp_neg, x)


def _log1p_values(y):
    return _elementwise(_math.log1p_pos, y)


def test_log1p_pos_is_accurate_for_tiny_and_large_arguments():
    y = np.concatenate(
        [[0.0, 5e-324, 1e-300, 1e-17, 1e-16, 2.2e-16, 1e-8], np.geomspace(1e-12, 1e12, 400)]
    )
    got = _log1p_values(y)
    want = np.log1p(y)
    assert got[0] == 0.0
    ulps = np.abs(got - want) / np.spacing(np.maximum(np.abs(want), 5e-324))
    assert ulps.max() <= 2.0, (y[np.argmax(ulps)], ulps.max())


def _ulp_errors(got, exact_fn, x):
    """Error of each ``got[i]`` in ulp of the exact ``exact_fn(x[i])``."""
    errs = np.empty(len(x))
    with mpmath.workprec(REF_PREC):
        for i, (g, v) in enumerate(zip(got.tolist(), x.tolist(), strict=True)):
            e = exact_fn(mpmath.mpf(v))
            ef = float(e)
            if e == 0:
                errs[i] = 0.0 if g == 0.0 else math.inf
                continue
            ulp = np.spacing(abs(ef)) if ef != 0 else SUB
            errs[i] = float(abs(mpmath.mpf(g) - e) / mpmath.mpf(float(ulp)))
    return errs


def _positive_finite_sample():
    rng = np.random.default_rng(11)
    bits = rng.integers(1, 0x7FEFFFFFFFFFFFFF, 12000, dtype=np.int64, endpoint=True)
    sub = rng.integers(1, 1 << 52, 3000, dtype=np.int64)
    special = [
        1.0,
        SUB,
        2 * SUB,
        F64_TINY,
        np.nextafter(F64_TINY, 0),
        F64_MAX,
        0.5,
        2.0,
        1e-300,
        1e300,
    ]
    near1 = 1.0 + np.arange(-200, 201) * 2.0**-52
    pow2 = 2.0 ** np.arange(-1074, 1024, dtype=np.float64)
    sq = []
    for c in (math.sqrt(0.5), math.sqrt(2.0), F64_TINY):
        for d in range(-3, 4):
            sq.append(c + d * np.spacing(c))
    return np.concatenate(
        [bits.view(np.float64), sub.view(np.float64), special, near1, pow2, sq, rng.random(2000)]
    )


def test_log_pos_within_2_ulp():
    x = _positive_finite_sample()
    assert np.all(np.isfinite(x)) and np.all(x > 0)
    got = _log_values(x)
    errs = _ulp_errors(got, mpmath.log, x)
    worst = int(np.argmax(errs))
    print(f"log_pos: max error {errs[worst]:.3f} ulp at x={x[worst]!r}")
    assert errs[worst] <= 2.0, f"log_pos({x[worst]!r}) = {got[worst]!r}: {errs[worst]:.2f} ulp"
    assert got[np.flatnonzero(x == 1.0)[0]] == 0.0


def test_log_pos_of_zero_is_finite_and_very_negative():
    got = _log_values(np.array([0.0, 1.0, 0.0]))
    assert np.isfinite(got[0]) and got[0] == got[2]
    assert abs(got[0] - (-1075 * math.log(2))) < 1.0  # "about -1075 * log 2"
    assert got[0] * 0.0 == 0.0
    assert not np.isnan(got).any()


def test_exp_neg_within_2_ulp():
    rng = np.random.default_rng(12)
    x = np.concatenate(
        [
            -rng.random(12000) * 800.0,
            -rng.random(2000) * 1e-3,
            -(2.0 ** -rng.integers(20, 1075, 1000).astype(np.float64)),
            rng.uniform(-746.0, -700.0, 3000),  # subnormal results and underflow
            -rng.random(1000) * 40.0,
            [0.0, -0.0, -SUB, -1e-300, -1.0, -708.4, -709.78, -745.13, -745.14, -799.999],
        ]
    )
    got = _exp_values(x)
    errs = _ulp_errors(got, mpmath.exp, x)
    worst = int(np.argmax(errs))
    print(f"exp_neg: max error {errs[worst]:.3f} ulp at x={x[worst]!r}")
    assert errs[worst] <= 2.0, f"exp_neg({x[worst]!r}) = {got[worst]!r}: {errs[worst]:.2f} ulp"
    assert got[-10] == 1.0 and got[-9] == 1.0  # exp(±0) is exactly 1


@numba.njit
def _exp32_values(x):
    out = np.empty(x.shape[0], np.float32)
    for i in range(x.shape[0]):
        out[i] = _math.exp_neg32(x[i])
    return out


def test_exp_neg32_within_2_ulp():
    """The float32 exp of the routing kernels, in float32 ulp (subnormals included)."""
    rng = np.random.default_rng(13)
    x = np.concatenate(
        [
            -rng.random(20000) * 110.0,
            -rng.random(2000) * 1e-3,
            rng.uniform(-104.0, -86.0, 3000),  # subnormal results and underflow
            [0.0, -0.0, -1e-30, -1.0, -87.33, -103.27, -103.97, -104.0, -1e4, -np.inf],
        ]
    ).astype(np.float32)
    got = _exp32_values(x)
    worst = 0.0
    with mpmath.workprec(REF_PREC):
        for g, v in zip(got.tolist(), x.tolist(), strict=True):
            e = mpmath.exp(mpmath.mpf(v)) if v > -math.inf else mpmath.mpf(0)
            ulp = max(float(np.spacing(np.float32(float(e)))), 2.0**-149)
            worst = max(worst, float(abs(mpmath.mpf(g) - e) / mpmath.mpf(ulp)))
    assert worst <= 2.0, worst
    assert got[-10] == 1.0 and got[-9] == 1.0
    assert got[-3] == 0.0 and got[-2] == 0.0 and got[-1] == 0.0  # below the threshold


def test_exp_neg_lo_within_its_bound():
    """The float64 exp of float32 logits: within 2**-36 relative (against mpmath)."""
    rng = np.random.default_rng(11)
    x = np.concatenate([-rng.exponential(3.0, 3000), -rng.uniform(0, 745, 3000), [0.0, -1e-300]])
    got = _elementwise(_math.exp_neg_lo, x)
    with mpmath.workdps(40):
        worst = max(
            abs(mpmath.mpf(float(g)) / mpmath.exp(mpmath.mpf(float(v))) - 1)
            for g, v in zip(got, x, strict=True)
            if v > -700  # above the subnormal range of the result
        )
    assert worst <= 2.0**-36, float(worst)


def test_exp_neg_is_exactly_zero_below_threshold():
    lim = _math.EXP_ZERO_BELOW
    x = np.array(
        [np.nextafter(lim, -np.inf), lim - 1.0, -1e4, -1e300, -F64_MAX, -np.inf] + [lim - 0.5] * 300
    )
    got = _exp_values(x)
    assert np.all(got == 0.0)


@given(x=st.floats(min_value=-800.0, max_value=0.0))
def test_exp_neg_generated(x):
    got = _exp_values(np.array([x]))
    assert _ulp_errors(got, mpmath.exp, np.array([x]))[0] <= 2.0


@given(x=st.floats(min_value=0.0, exclude_min=True, max_value=F64_MAX, allow_subnormal=True))
def test_log_pos_generated(x):
    got = _log_values(np.array([x]))
    assert _ulp_errors(got, mpmath.log, np.array([x]))[0] <= 2.0
