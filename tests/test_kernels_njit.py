"""fastroute.kernels called from user-written Numba code.

Parallel ``prange`` loops here; plain ``@njit`` callers are the docstring
examples, run as doctests at the end. Each user function compiles (seconds),
so the dtypes are few.
"""

from __future__ import annotations

import doctest
import importlib
import json
import os
import subprocess
import sys
import textwrap

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


def test_relative_entropy_1d_unnormalized_terms_beyond_float64():
    """Entries near 1e308 whose terms overflow while the sum is finite: the
    kernel gave ``+inf``; it now sums again with scaled terms, as the public
    function does."""
    p = np.array([[1e308, 6e307], [1.5e308, 6e307], [1e308, 1.0]])
    q = np.array([[1.35e307, 1.7e308], [1e307, 1.7e308], [1e-10, 1.0]])
    got = batched_relative_entropy(p, q, False)
    np.testing.assert_array_equal(got, fr.relative_entropy(p, q, normalize=False))
    assert got[0] == pytest.approx(1.3776081756468111e308, rel=1e-15)
    assert got[2] == np.inf  # beyond float64


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


def run_child(code: str, timeout: float = 600):
    # a fresh interpreter: a kernel that writes out of bounds corrupts its
    # process, not the test run's
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
        timeout=timeout, env=dict(os.environ),
    )  # fmt: skip


# Each kernel called from Python (a plain njit call) with one argument out of
# its documented range. Before the checks, each of these read or wrote out of
# bounds (or wrapped an index) without an error; the boundary calls that
# follow them must still work. The dtypes are those the suite compiles anyway.
_BAD_CALLS = """
import json, numpy as np
from fastroute.kernels import (WORK_SIZE, combine_row, entropy_1d, entropy_logits_1d,
    gather_row, relative_entropy_1d, route_1d, top_k_1d)
x = np.arange(10.0)
v, i = np.empty(11), np.empty(11, np.intp)
z = np.arange(8, dtype=np.float32)
e, w, b0 = np.empty(8, np.int32), np.empty(8, np.float32), np.empty(0)
src, out = np.ones((4, 3), np.float32), np.zeros((5, 3), np.float32)
pos, W, acc = np.array([0, 1, 2, -1]), np.ones((2, 2), np.float32), np.empty(3, np.float32)
R = lambda k, **o: route_1d(o.get("z", z), k, False, True, o.get("b", b0), o.get("ng", 0),
                            o.get("tg", 0), o.get("top2", False), 1.0, o.get("e", e), w)
CASES = {
    "top_k_1d k > len": lambda: top_k_1d(x, 11, True, True, v, i),
    "top_k_1d k < 0": lambda: top_k_1d(x, -1, True, True, v, i),
    "top_k_1d short values": lambda: top_k_1d(x, 5, True, True, v[:4], i),
    "top_k_1d short indices": lambda: top_k_1d(x, 5, True, True, v, i[:4]),
    "top_k_1d int8 indices": lambda: top_k_1d(np.arange(300.0), 2, True, True, v,
                                              np.empty(2, np.int8)),
    "entropy_1d short work": lambda: entropy_1d(x, True, np.empty(WORK_SIZE - 1)),
    "entropy_logits_1d short work": lambda: entropy_logits_1d(x, np.empty(3)),
    "relative_entropy_1d q shorter": lambda: relative_entropy_1d(x, x[:3], True),
    "relative_entropy_1d q longer": lambda: relative_entropy_1d(x[:3], x, False),
    "route_1d k > E": lambda: R(9),
    "route_1d k < 0": lambda: R(-1),
    "route_1d short experts": lambda: R(3, e=e[:2]),
    "route_1d bias length": lambda: R(2, b=np.zeros(3)),
    "route_1d groups do not divide": lambda: R(2, ng=3, tg=1),
    "route_1d no eligible group": lambda: R(2, ng=4, tg=0),
    "route_1d k above the eligible": lambda: R(2, ng=8, tg=1),
    "route_1d top2 of one": lambda: R(1, ng=8, tg=2, top2=True),
    "gather_row r past out": lambda: gather_row(src, 0, out, 5),
    "gather_row r negative": lambda: gather_row(src, 0, out, -1),
    "gather_row s past src": lambda: gather_row(src, 4, out, 0),
    "gather_row narrow out": lambda: gather_row(src, 0, np.zeros((5, 2), np.float32), 0),
    "combine_row t past w": lambda: combine_row(src, pos, W, 2, 2, acc),
    "combine_row k past w": lambda: combine_row(src, pos, W, 0, 3, acc),
    "combine_row short pos": lambda: combine_row(src, pos[:3], W, 1, 2, acc),
    "combine_row long acc": lambda: combine_row(src, pos, W, 0, 2, np.empty(4, np.float32)),
    "combine_row pos past x": lambda: combine_row(src, np.array([0, 4, 0, 0]), W, 0, 2, acc),
}
GOOD = {  # the limits themselves are fine
    "top_k_1d k = len, exact buffers": lambda: top_k_1d(x, 10, True, True, v[:10], i[:10]),
    "top_k_1d k = 0, empty buffers": lambda: top_k_1d(x, 0, True, True, v[:0], i[:0]),
    "top_k_1d int8 indices, 128 entries": lambda: top_k_1d(
        np.arange(128.0), 2, True, True, v, np.empty(2, np.int8)),
    "entropy_1d exact work": lambda: entropy_1d(x, True, np.empty(WORK_SIZE)),
    "route_1d k = E": lambda: R(8),
    "route_1d k = 0": lambda: R(0),
    "route_1d k = eligible": lambda: R(4, ng=4, tg=2, top2=True),
    "gather_row last rows": lambda: gather_row(src, 3, out, 4),
    "gather_row padding": lambda: gather_row(src, -1, out, 4),
    "combine_row last token": lambda: combine_row(src, pos, W, 1, 2, acc),
}
def run(call):
    try:
        call()
        return "ok"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
print(json.dumps([{n: run(c) for n, c in CASES.items()}, {n: run(c) for n, c in GOOD.items()}]))
"""


def test_kernels_check_sizes_and_indices_before_reading_or_writing():
    proc = run_child(_BAD_CALLS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    bad, good = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(bad) == 26 and len(good) == 10
    for name, got in bad.items():
        assert got.startswith(f"ValueError: {name.split()[0]}: "), (name, got)
    assert good == dict.fromkeys(good, "ok")


def test_readme_example_raises_for_a_bad_k():
    # the README's njit example: top_k_1d runs outside the prange loop, so
    # its error reaches the caller (inside a prange loop Numba drops it)
    @numba.njit(parallel=True)
    def most_uncertain(P, k):
        h = np.empty(P.shape[0])
        for i in numba.prange(P.shape[0]):
            h[i] = entropy_1d(P[i], True, np.empty(WORK_SIZE))
        vals = np.empty(k)
        idx = np.empty(k, np.intp)
        top_k_1d(h, k, True, True, vals, idx)
        return idx

    P = np.array([[1.0, 0.0], [1.0, 1.0], [3.0, 1.0]])
    np.testing.assert_array_equal(most_uncertain(P, 2), [1, 2])
    with pytest.raises(ValueError, match=r"top_k_1d: k is out of range; pass 0 <= k <= len\(x\)"):
        most_uncertain(P, 4)


def _modules_with_examples() -> list[str]:
    """Every fastroute module whose source holds a doctest example
    (discovered, not listed by hand)."""
    import pathlib

    import fastroute

    root = pathlib.Path(fastroute.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        if ">>> " in path.read_text(encoding="utf-8"):
            rel = path.relative_to(root.parent).with_suffix("")
            name = ".".join(rel.parts)
            found.append(name[: -len(".__init__")] if name.endswith(".__init__") else name)
    return found


@pytest.mark.parametrize("module", _modules_with_examples())
def test_docstring_examples(module):
    if module.startswith("fastroute.dask"):
        pytest.importorskip("dask.array")
    mod = importlib.import_module(module)
    res = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert res.attempted > 0, f"{module} has no examples"
    assert res.failed == 0


def test_every_public_function_has_an_example():
    """Each public function's docstring holds an example (run above)."""
    import fastroute

    for name in fastroute.__all__:
        obj = getattr(fastroute, name)
        if callable(obj) and not isinstance(obj, type):
            assert ">>> " in (obj.__doc__ or ""), f"fastroute.{name} has no example"
