"""fastroute.kernels called from user-written Numba code.

Parallel ``prange`` loops here; plain ``@njit`` callers are the docstring
examples, run as doctests at the end. Each user function compiles (seconds),
so the dtypes are few.
"""

from __future__ import annotations

import doctest
import importlib

import numba
import numpy as np
import pytest
from reference import same_values

import fastroute as fr
from fastroute.kernels import (
    WORK_SIZE,
    combine_row,
    entropy_1d,
    entropy_logits_1d,
    gather_row,
    relative_entropy_1d,
    top_k_1d,
)


@numba.njit(parallel=True)
def batched_top_k(x, k, largest, sort):
    vals = np.empty((x.shape[0], k), x.dtype)
    idxs = np.empty((x.shape[0], k), np.intp)
    for i in numba.prange(x.shape[0]):
        top_k_1d(x[i], k, largest, sort, vals[i], idxs[i])
    return vals, idxs


@numba.njit(parallel=True)
def batched_entropy(p, normalize):
    out = np.empty(p.shape[0])
    for i in numba.prange(p.shape[0]):
        work = np.empty(WORK_SIZE)  # one scratch buffer per iteration
        out[i] = entropy_1d(p[i], normalize, work)
    return out


@numba.njit(parallel=True)
def batched_entropy_logits(z):
    out = np.empty(z.shape[0])
    for i in numba.prange(z.shape[0]):
        out[i] = entropy_logits_1d(z[i], np.empty(WORK_SIZE))
    return out


@numba.njit(parallel=True)
def batched_relative_entropy(p, q, normalize):
    out = np.empty(p.shape[0])
    for i in numba.prange(p.shape[0]):
        out[i] = relative_entropy_1d(p[i], q[i], normalize)
    return out


def _data(dtype, shape=(97, 70), seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        x = (rng.integers(0, 6, shape) * rng.random(shape) ** 4).astype(dtype)
        x[rng.random(shape) < 0.03] = np.nan
        x[rng.random(shape) < 0.05] = 0.0
        x[:, 3] = x[:, 5]  # ties
        return x
    return rng.integers(0, 7, shape).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k", [0, 1, 5, 16, 17, 25, 70])
def test_top_k_1d_in_prange_matches_public_api(dtype, k):
    x = _data(dtype)
    for largest in (True, False):
        v, i = batched_top_k(x, k, largest, True)
        ev, ei = fr.top_k(x, k, mode="largest" if largest else "smallest")
        np.testing.assert_array_equal(i, ei)
        assert same_values(v, ev)
        # sort=False: the same pairs in some order
        v, i = batched_top_k(x, k, largest, False)
        order = np.argsort(i, axis=1, kind="stable")
        eorder = np.argsort(ei, axis=1, kind="stable")
        np.testing.assert_array_equal(
            np.take_along_axis(i, order, 1), np.take_along_axis(ei, eorder, 1)
        )
        assert same_values(np.take_along_axis(v, order, 1), np.take_along_axis(ev, eorder, 1))


@pytest.mark.parametrize("n", [300, 64, 32, 7])  # blocks; float32 / float64 lanes
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_entropy_1d_in_prange_matches_public_api(dtype, n):
    p = _data(dtype, (61, n))  # 300: rows longer than one 256-element block
    p[~np.isfinite(p)] = 0.0
    p[7] = 0.0  # an all-zero row
    for normalize in (True, False):
        got = batched_entropy(p, normalize)
        exp = fr.entropy(p, normalize=normalize)
        # the kernel returns float64; the wrapper narrows float32 input's result
        np.testing.assert_array_equal(got.astype(exp.dtype), exp)
    q = p.copy()
    q[3, 4] = -1.0
    assert np.isnan(batched_entropy(q, True)[3])  # the kernel never raises
    q[3, 4] = np.nan
    assert np.isnan(batched_entropy(q, True)[3])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_relative_entropy_1d_in_prange_matches_public_api(dtype):
    rng = np.random.default_rng(8)
    p = (rng.random((61, 40)) ** 3).astype(dtype)
    q = (p * (1 + 1e-6 * rng.standard_normal(p.shape))).astype(dtype)
    p[2, ::3] = 0.0
    q[4, 5] = 0.0  # +inf unless p[4, 5] is 0
    p[6] = 0.0  # no distribution: NaN
    for normalize in (True, False):
        got = batched_relative_entropy(p, q, normalize)
        exp = fr.relative_entropy(p, q, normalize=normalize)
        np.testing.assert_array_equal(got.astype(exp.dtype), exp)
    q[3, 1] = -1.0
    assert np.isnan(batched_relative_entropy(p, q, True)[3])  # the kernel never raises


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_entropy_logits_1d_in_prange_matches_public_api(dtype):
    rng = np.random.default_rng(3)
    z = (rng.normal(0, 10, (61, 300))).astype(dtype)
    z[2, ::3] = -np.inf
    z[5] = -np.inf
    z[9, 4] = np.nan
    got = batched_entropy_logits(z)
    exp = fr.entropy_from_logits(z)
    np.testing.assert_array_equal(got.astype(exp.dtype), exp)
    assert np.isnan(got[5]) and np.isnan(got[9])


@numba.njit(parallel=True)
def moe_block(hidden, tokens, slot_row, weights, k, scale):
    # a user's fused loop: gather the grouped rows, an "expert" (a scale),
    # then combine each token with fastroute's row forms
    rows = np.empty((tokens.shape[0], hidden.shape[1]), hidden.dtype)
    for r in numba.prange(tokens.shape[0]):
        gather_row(hidden, tokens[r], rows, r)
        rows[r] *= scale
    out = np.empty_like(hidden)
    for t in numba.prange(hidden.shape[0]):
        acc = np.empty(hidden.shape[1], hidden.dtype)
        combine_row(rows, slot_row, weights, t, k, acc)
        out[t] = acc
    return out


def test_gather_and_combine_rows_from_user_code():
    rng = np.random.default_rng(7)
    r = fr.route(rng.standard_normal((300, 8)).astype(np.float32), 2, capacity_factor=1.0)
    hidden = rng.standard_normal((300, 16)).astype(np.float32)
    d = fr.dispatch(hidden, r)
    slot_row = np.full(300 * 2, -1, np.int64)
    slot_row[r.order] = np.arange(r.order.size)
    got = moe_block(hidden, d.tokens, slot_row, r.weights, 2, np.float32(3.0))
    want = fr.combine(d.rows * np.float32(3.0), r)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "module",
    [
        "fastroute.topk",
        "fastroute.entropy",
        "fastroute.divergence",
        "fastroute.kernels",
        "fastroute.kernels.select",
        "fastroute.kernels.entropy",
        "fastroute.kernels.divergence",
        "fastroute.routing",
        "fastroute.kernels.route",
        "fastroute.tokens",
        "fastroute.moe",
    ],
)
def test_docstring_examples(module):
    mod = importlib.import_module(module)
    res = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert res.attempted > 0, f"{module} has no examples"
    assert res.failed == 0


def test_every_public_module_runs_its_examples():
    """Each module defining a public function is in the doctest list above."""
    import fastroute

    listed = set(test_docstring_examples.pytestmark[0].args[1])
    public = {
        getattr(fastroute, name).__module__
        for name in fastroute.__all__
        if callable(getattr(fastroute, name)) and not isinstance(getattr(fastroute, name), type)
    }
    assert public <= listed, f"modules whose examples never run: {sorted(public - listed)}"
