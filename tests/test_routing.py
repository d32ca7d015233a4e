"""fastroute.route / expert_choice / group_by_expert against the NumPy
references of ``reference_routing``, the published recipes, every error and
the determinism rules."""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from reference import snapshot
from reference_routing import (
    assert_choice_valid,
    batch_prioritized_recipe,
    deepseek_v3_recipe,
    expert_choice_ref,
    group_by_expert_ref,
    gshard_recipe,
    mixtral_recipe,
    route_ref,
    switch_recipe,
)

import fastroute as fr
from fastroute import _execute
from fastroute.kernels import BAD_NAN, route_1d

ml_dtypes = pytest.importorskip("ml_dtypes")

# --------------------------------------------------------------------------- helpers

#: logits on a grid of quarters: distinct values are far apart (no near-ties
#: between weights), equal values are exact ties
GRID = st.integers(-24, 24).map(lambda v: v / 4)


def rtol_for(dtype) -> float:
    return 1e-12 if np.dtype(dtype) == np.float64 else 2e-6


@st.composite
def logit_matrices(draw, max_t=10, max_e=20, specials=False, dtype=None):
    T = draw(st.integers(0, max_t))
    E = draw(st.integers(1, max_e))
    dt = dtype or draw(st.sampled_from([np.float32, np.float64]))
    values = GRID if not specials else st.one_of(GRID, st.sampled_from([-np.inf, np.nan]))
    flat = draw(st.lists(values, min_size=T * E, max_size=T * E))
    return np.array(flat, dtype=np.float64).reshape(T, E).astype(dt)


def assert_weights_match(got, ref, dtype):
    """Same expert -> weight mapping per token, within the dtype's tolerance."""
    rtol = rtol_for(dtype)
    for t in range(got.experts.shape[0]):
        g = dict(zip(got.experts[t].tolist(), got.weights[t].tolist(), strict=True))
        r = dict(zip(ref.experts[t].tolist(), ref.weights[t].tolist(), strict=True))
        assert g.keys() == r.keys(), (t, g, r)
        for e in g:
            assert math.isclose(g[e], r[e], rel_tol=rtol, abs_tol=rtol), (t, e, g[e], r[e])


def assert_row_order(r):
    """Each row by weight descending, equal weights by expert id."""
    for t in range(r.experts.shape[0]):
        pairs = list(zip(r.weights[t].tolist(), r.experts[t].tolist(), strict=True))
        assert pairs == sorted(pairs, key=lambda p: (-p[0], p[1])), pairs


def assert_grouping(r, E):
    """counts/offsets/order are the stable grouping of the kept assignments."""
    kept = np.where(r.dropped.reshape(-1), -1, r.experts.reshape(-1))
    order, offsets = group_by_expert_ref(kept, E)
    np.testing.assert_array_equal(r.order, order)
    np.testing.assert_array_equal(r.offsets, offsets)
    np.testing.assert_array_equal(r.counts, np.diff(offsets))
    assert r.order.dtype == np.int64 and r.offsets.dtype == np.int64
    assert r.counts.dtype == np.int64


def assert_stats(r, ref, dtype):
    tol = 1e-11 if np.dtype(dtype) == np.float64 else 2e-5
    for name in ("aux_loss", "z_loss", "imbalance"):
        a, b = getattr(r, name), getattr(ref, name)
        if math.isnan(b) or math.isinf(b):
            assert (math.isnan(a) and math.isnan(b)) or a == b, (name, a, b)
        else:
            assert math.isclose(a, b, rel_tol=tol, abs_tol=tol), (name, a, b)
    np.testing.assert_allclose(r.entropy, ref.entropy, rtol=tol, atol=tol)


def check_route(x, k, **kw):
    r = fr.route(x, k, **kw)
    ref = route_ref(x, k, **kw)
    out = np.float64 if x.dtype == np.float64 else np.float32
    T, E = x.shape
    assert r.experts.shape == (T, k) and r.experts.dtype == np.int32
    assert r.weights.shape == (T, k) and r.weights.dtype == out
    assert r.dropped.shape == (T, k) and r.dropped.dtype == np.bool_
    assert r.entropy.shape == (T,) and r.entropy.dtype == out
    plain = kw.get("bias") is None and kw.get("n_groups") is None
    if plain:  # chosen by the exact logits: the same set, the same order
        np.testing.assert_array_equal(r.experts, ref.experts)
    else:
        assert_choice_valid(r.experts, ref.keys, k, tol=4 * rtol_for(x.dtype))
    assert_weights_match(r, ref, x.dtype)
    assert_row_order(r)
    assert_grouping(r, E)
    if kw.get("capacity_factor") is None:
        assert not r.dropped.any() and r.capacity is None
    else:
        assert r.capacity == ref.capacity
        if plain:
            np.testing.assert_array_equal(r.dropped, ref.dropped)
    assert_stats(r, ref, x.dtype)
    return r


# --------------------------------------------------------------------------- semantics


@given(x=logit_matrices(), data=st.data())
def test_route_softmax_and_sigmoid_match_reference(x, data):
    E = x.shape[1]
    k = data.draw(st.integers(0, E))
    scoring = data.draw(st.sampled_from(["softmax", "sigmoid"]))
    renormalize = data.draw(st.booleans())
    scale = data.draw(st.sampled_from([1.0, 2.5]))
    check_route(x, k, scoring=scoring, renormalize=renormalize, scale=scale)


@given(x=logit_matrices(specials=True), data=st.data())
def test_route_nan_ignore_and_minus_inf(x, data):
    x = x[(x > -np.inf).any(axis=1)]  # a row needs a logit above -inf (NaN is not)
    assume(x.shape[0] > 0)
    k = data.draw(st.integers(0, x.shape[1]))
    check_route(x, k, nan="ignore", scoring=data.draw(st.sampled_from(["softmax", "sigmoid"])))


@given(x=logit_matrices(max_e=24), data=st.data())
def test_route_bias_and_groups_match_reference(x, data):
    T, E = x.shape
    divisors = [d for d in range(1, E + 1) if E % d == 0]
    n_groups = data.draw(st.sampled_from(divisors))
    size = E // n_groups
    topk = data.draw(st.integers(1, n_groups))
    k = data.draw(st.integers(0, topk * size))
    score = data.draw(st.sampled_from(["max", "top2"] if size >= 2 else ["max"]))
    use_bias = data.draw(st.booleans())
    bias = np.array(data.draw(st.lists(GRID, min_size=E, max_size=E))) / 8 if use_bias else None
    check_route(
        x, k, scoring=data.draw(st.sampled_from(["softmax", "sigmoid"])), bias=bias,
        n_groups=n_groups, topk_groups=topk, group_score=score,
        renormalize=data.draw(st.booleans()),
    )  # fmt: skip


@given(x=logit_matrices(max_t=16, max_e=8), data=st.data())
def test_route_capacity_by_position(x, data):
    k = data.draw(st.integers(1, x.shape[1]))
    cf = data.draw(st.sampled_from([0.25, 0.5, 1.0, 1.5]))
    mc = data.draw(st.integers(0, 3))
    check_route(x, k, capacity_factor=cf, min_capacity=mc)


def test_route_exact_ties_go_to_the_lower_expert():
    x = np.array([[1.0, 3.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0, 2.0]], np.float32)
    r = fr.route(x, 3)
    np.testing.assert_array_equal(r.experts, [[1, 2, 3], [0, 1, 2]])
    np.testing.assert_array_equal(r.weights, np.full((2, 3), np.float32(1 / 3)))
    np.testing.assert_array_equal(r.order, [3, 0, 4, 1, 5, 2])
    np.testing.assert_array_equal(r.offsets, [0, 1, 3, 5, 6, 6])


def test_route_without_statistics():
    x = RNG.standard_normal((300, 16)).astype(np.float32)
    full = fr.route(x, 2, capacity_factor=0.5, drop="score")
    bare = fr.route(x, 2, capacity_factor=0.5, drop="score", stats=False)
    assert bare.aux_loss is None and bare.z_loss is None and bare.entropy is None
    for f in ("experts", "weights", "order", "offsets", "dropped"):
        np.testing.assert_array_equal(getattr(bare, f), getattr(full, f))
    assert bare.imbalance == full.imbalance


def test_route_huge_capacity_drops_nothing():
    x = RNG.standard_normal((50, 4)).astype(np.float32)
    for kw in ({"capacity_factor": 1e300}, {"capacity_factor": 1.0, "min_capacity": 10**30}):
        r = fr.route(x, 2, **kw)
        assert not r.dropped.any() and r.capacity >= 50
        np.testing.assert_array_equal(r.order, fr.route(x, 2).order)


def test_route_k_zero_and_k_equal_e():
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    r0 = fr.route(x, 0)
    assert r0.experts.shape == (5, 0) and r0.order.size == 0
    assert math.isnan(r0.aux_loss) and math.isnan(r0.imbalance)
    assert np.isfinite(r0.z_loss) and np.isfinite(r0.entropy).all()
    r4 = fr.route(x, 4)
    np.testing.assert_array_equal(np.sort(r4.experts, axis=1), np.tile(np.arange(4), (5, 1)))
    np.testing.assert_allclose(r4.weights.sum(1), 1.0, rtol=1e-6)
    assert r4.imbalance == 1.0


def test_route_no_tokens():
    r = fr.route(np.empty((0, 6), np.float32), 2)
    assert r.experts.shape == (0, 2) and r.weights.shape == (0, 2)
    np.testing.assert_array_equal(r.counts, np.zeros(6))
    np.testing.assert_array_equal(r.offsets, np.zeros(7))
    assert math.isnan(r.aux_loss) and math.isnan(r.z_loss) and math.isnan(r.imbalance)


def test_route_special_values():
    inf = np.inf
    # fewer finite logits than k: the -inf experts follow, lower id first, weight 0
    r = fr.route(np.array([[-inf, 0.5, -inf, -inf]]), 3)
    np.testing.assert_array_equal(r.experts, [[1, 0, 2]])
    np.testing.assert_array_equal(r.weights, [[1.0, 0.0, 0.0]])
    # sigmoid: +inf is score 1; lse is +inf
    r = fr.route(np.array([[inf, 0.0, -inf]], np.float32), 2, scoring="sigmoid", renormalize=False)
    np.testing.assert_array_equal(r.experts, [[0, 1]])
    np.testing.assert_array_equal(r.weights, [[1.0, 0.5]])
    assert r.z_loss == inf
    # -0.0 and +0.0 tie
    r = fr.route(np.array([[-0.0, 0.0]]), 1)
    np.testing.assert_array_equal(r.experts, [[0]])
    # huge logits do not overflow
    r = fr.route(np.array([[1e30, 1e30 - 1e15, -1e30]], np.float32), 2)
    assert np.isfinite(r.weights).all() and np.isfinite(r.entropy).all()


@pytest.mark.parametrize(
    "row, kw, reason",
    [
        ([0.0, np.nan, 1.0], {}, "NaN"),
        ([-np.inf, -np.inf], {}, "no eligible expert"),
        ([np.nan, np.nan], {"nan": "ignore"}, "no eligible expert"),
        ([np.inf, 0.0], {}, r"\+inf"),
        ([0.0, 1.0, -np.inf, -np.inf], {"n_groups": 2, "topk_groups": 1, "bias": [0, 0, 5, 5]},
         "no eligible expert"),
    ],
)  # fmt: skip
def test_route_invalid_tokens_raise_naming_the_token(row, kw, reason):
    x = np.zeros((3, len(row)))
    x[2] = row
    with pytest.raises(ValueError, match=f"token 2 .*{reason}"):
        fr.route(x, 1, **kw)


@pytest.mark.parametrize(
    "args, kw, exc, match",
    [
        ((np.zeros(4), 1), {}, ValueError, "2-D"),
        ((np.zeros((2, 2, 2)), 1), {}, ValueError, "2-D"),
        ((np.zeros((2, 4), np.int32), 1), {}, TypeError, "float16, bfloat16"),
        ((np.zeros((2, 0)), 0), {}, ValueError, "no experts"),
        ((np.zeros((2, 4), complex), 1), {}, TypeError, "float16, bfloat16"),
        ((np.zeros((2, 4)), 5), {}, ValueError, "k=5"),
        ((np.zeros((2, 4)), -1), {}, ValueError, "k=-1"),
        ((np.zeros((2, 4)), True), {}, TypeError, "bool"),
        ((np.zeros((2, 4)), 1.0), {}, TypeError, "integer"),
        ((np.zeros((2, 4)), 1), {"scoring": "relu"}, ValueError, "scoring"),
        ((np.zeros((2, 4)), 1), {"group_score": "mean"}, ValueError, "group_score"),
        ((np.zeros((2, 4)), 1), {"nan": "skip"}, ValueError, "nan"),
        ((np.zeros((2, 4)), 1), {"drop": "random"}, ValueError, "drop"),
        ((np.zeros((2, 4)), 1), {"bias": np.zeros(3)}, ValueError, r"shape \(4,\)"),
        ((np.zeros((2, 4)), 1), {"bias": [0, 0, np.nan, 0]}, ValueError, "finite"),
        ((np.zeros((2, 4)), 1), {"bias": ["a"] * 4}, TypeError, "real"),
        ((np.zeros((2, 4)), 1), {"n_groups": 3, "topk_groups": 1}, ValueError, "divide"),
        ((np.zeros((2, 4)), 1), {"n_groups": 2}, ValueError, "topk_groups"),
        ((np.zeros((2, 4)), 1), {"topk_groups": 1}, ValueError, "n_groups"),
        ((np.zeros((2, 4)), 1), {"n_groups": 2, "topk_groups": 3}, ValueError, "topk_groups=3"),
        ((np.zeros((2, 4)), 3), {"n_groups": 2, "topk_groups": 1}, ValueError, "fewer than k"),
        ((np.zeros((2, 4)), 1), {"n_groups": 4, "topk_groups": 1, "group_score": "top2"},
         ValueError, "at least 2"),
        ((np.zeros((2, 4)), 1), {"scale": np.inf}, ValueError, "finite"),
        ((np.zeros((2, 4)), 1), {"scale": "2"}, TypeError, "real"),
        ((np.zeros((2, 4)), 1), {"capacity_factor": 0.0}, ValueError, "positive"),
        ((np.zeros((2, 4)), 1), {"capacity_factor": 1.0, "min_capacity": -1}, ValueError,
         "min_capacity"),
    ],
)  # fmt: skip
def test_route_argument_errors(args, kw, exc, match):
    with pytest.raises(exc, match=match):
        fr.route(*args, **kw)


def test_route_does_not_modify_its_inputs():
    x = np.array([[0.0, np.nan, 2.0], [1.0, 1.0, -np.inf]], np.float32)
    bias = np.array([0.1, 0.0, -0.1])
    before = snapshot(x), snapshot(bias)
    fr.route(x, 2, nan="ignore", bias=bias, scoring="sigmoid")
    assert (snapshot(x), snapshot(bias)) == before


# --------------------------------------------------------------------------- recipes

RNG = np.random.default_rng(20261129)


@pytest.mark.parametrize("E, k", [(8, 2), (60, 4), (64, 8)])
def test_mixtral_qwen_recipe(E, k):
    x = RNG.standard_normal((300, E)).astype(np.float32)
    idx, w = mixtral_recipe(x, k)
    r = fr.route(x, k)
    np.testing.assert_array_equal(r.experts, idx)
    np.testing.assert_allclose(r.weights, w, rtol=2e-6)


@pytest.mark.parametrize("dtype, E", [(np.float32, 64), (np.float64, 64), (np.float32, 256)])
def test_deepseek_v3_recipe(dtype, E):
    k = 8
    x = RNG.standard_normal((200, E)).astype(dtype)
    bias = RNG.standard_normal(E) * 0.05
    idx, w = deepseek_v3_recipe(x, k, bias, n_groups=8, topk_groups=4, scale=2.5)
    r = fr.route(x, k, scoring="sigmoid", bias=bias, n_groups=8, topk_groups=4,
                 group_score="top2", scale=2.5)  # fmt: skip
    # the recipe orders a token's experts by biased score, fastroute by weight
    np.testing.assert_array_equal(np.sort(r.experts, 1), np.sort(idx, 1))
    got = np.take_along_axis(r.weights, np.argsort(r.experts, 1), 1)
    want = np.take_along_axis(w, np.argsort(idx, 1), 1)
    np.testing.assert_allclose(got, want, rtol=rtol_for(dtype))


def test_switch_recipe_top1_capacity_by_position():
    x = RNG.standard_normal((256, 8)).astype(np.float32)
    idx, w, dropped = switch_recipe(x, 1.0)
    r = fr.route(x, 1, renormalize=False, capacity_factor=1.0)
    np.testing.assert_array_equal(r.experts, idx)
    np.testing.assert_allclose(r.weights, w, rtol=2e-6)
    np.testing.assert_array_equal(r.dropped, dropped)
    assert r.counts.max() <= r.capacity == 32
    assert r.dropped.any()


def test_gshard_recipe_top2_capacity_by_position():
    x = RNG.standard_normal((256, 8)).astype(np.float32)
    idx, w, dropped = gshard_recipe(x, 1.0)
    r = fr.route(x, 2, capacity_factor=1.0)
    np.testing.assert_array_equal(r.experts, idx)
    np.testing.assert_allclose(r.weights, w, rtol=2e-6)
    np.testing.assert_array_equal(r.dropped, dropped)
    assert r.dropped.any()


def test_batch_prioritized_recipe():
    x = RNG.standard_normal((256, 8)).astype(np.float32)
    idx, w, dropped = batch_prioritized_recipe(x, 0.25)
    r = fr.route(x, 2, capacity_factor=0.25, drop="score")
    np.testing.assert_array_equal(r.experts, idx)
    np.testing.assert_array_equal(r.dropped, dropped)
    # for each expert, the first choices it keeps outrank those it drops
    u = np.exp(x - x.max(1, keepdims=True))
    prio = u.max(1) / u.sum(1)  # the top probability
    for e in range(8):
        mine = r.experts[:, 0] == e
        kept, lost = prio[mine & ~r.dropped[:, 0]], prio[mine & r.dropped[:, 0]]
        if kept.size and lost.size:
            assert kept.min() >= lost.max()
    assert r.dropped[:, 0].any()


@pytest.mark.parametrize("scoring", ["softmax", "sigmoid"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, "bfloat16"])
def test_batch_priority_without_score_tile_is_the_same(scoring, dtype):
    # without statistics the priority (the first choice's score) comes from
    # the chosen logit and the exp sum, with statistics from the score tile:
    # the same bits, so the same admissions, also among many equal priorities
    dt = ml_dtypes.bfloat16 if dtype == "bfloat16" else dtype
    x = (np.round(RNG.standard_normal((3000, 16)) * 2) / 2).astype(dt)
    x[::7] = x[3]  # many tokens with exactly the same priority
    kw = dict(scoring=scoring, capacity_factor=0.5, drop="score")
    a, b = fr.route(x, 2, stats=False, **kw), fr.route(x, 2, stats=True, **kw)
    assert a.dropped.any() and not a.dropped.all()
    for f in ("experts", "weights", "dropped", "order", "offsets", "counts"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)


def test_aux_loss_is_one_for_uniform_routing():
    # identical logits: P_e = 1/E; 2 tokens per expert: f_e = 1/E
    x = np.zeros((8, 4), np.float32)
    x[np.arange(8), np.arange(8) % 4] = 1.0
    r = fr.route(x, 1)
    assert r.imbalance == 1.0
    assert math.isclose(r.aux_loss, 1.0, rel_tol=1e-6)


# --------------------------------------------------------------------------- dtypes, layouts


def test_half_and_bfloat16_equal_their_float32_values():
    x32 = RNG.standard_normal((300, 16)).astype(np.float32)
    for dt in (np.float16, ml_dtypes.bfloat16):
        x = x32.astype(dt)
        ref = fr.route(x.astype(np.float32), 4, scoring="sigmoid")
        got = fr.route(x, 4, scoring="sigmoid")
        for f in ("experts", "weights", "order", "entropy"):
            np.testing.assert_array_equal(getattr(got, f), getattr(ref, f))
        assert got.aux_loss == ref.aux_loss and got.z_loss == ref.z_loss


def test_bfloat16_specials_and_no_upcast_copy(monkeypatch):
    x = np.array([[1.0, -np.inf, np.nan, 3.0]], ml_dtypes.bfloat16)
    r = fr.route(x, 2, nan="ignore")
    np.testing.assert_array_equal(r.experts, [[3, 0]])
    # the kernels receive the bfloat16 bits as a view, not a converted copy:
    # on the one-call path of a small batch and on the chunked path
    seen = []
    real = fr.routing.rk.chunk_kernel

    def chunk_kernel(*config):
        kern = real(*config)
        return lambda x, *rest: seen.append(x) or kern(x, *rest)

    monkeypatch.setattr(fr.routing.rk, "chunk_kernel", chunk_kernel)
    y = RNG.standard_normal((4, 8)).astype(ml_dtypes.bfloat16)
    fr.route(y, 2)
    fr.route(y, 2, capacity_factor=2.0)  # a capacity takes the chunked path
    assert len(seen) == 2
    for x in seen:
        assert x.dtype == fr._dtypes.BF16 and np.shares_memory(x, y)


def test_torch_tensors():
    torch = pytest.importorskip("torch")
    x = torch.randn(50, 16)
    ref = fr.route(x.numpy(), 2)
    for t in (x, x.to(torch.bfloat16), x.to(torch.float16)):
        got = fr.route(t, 2)
        want = fr.route(t.float().numpy(), 2)
        np.testing.assert_array_equal(got.experts, want.experts)
        np.testing.assert_array_equal(got.weights, want.weights)
    np.testing.assert_array_equal(fr.route(x, 2).weights, ref.weights)
    # a sparse tensor has no NumPy view: fastroute's message, not torch's
    with pytest.raises(TypeError, match="route: logits is a torch.sparse_coo tensor; pass a dense"):
        fr.route(x.to_sparse(), 2)


@pytest.mark.parametrize("layout", ["transposed", "strided", "byteswapped"])
def test_route_any_layout(layout):
    x = RNG.standard_normal((40, 12))
    a = {
        "transposed": np.asfortranarray(x),
        "strided": np.repeat(x, 2, axis=1)[:, ::2],
        "byteswapped": x.astype(x.dtype.newbyteorder()),
    }[layout]
    r, ref = fr.route(a, 3), fr.route(x, 3)
    np.testing.assert_array_equal(r.experts, ref.experts)
    np.testing.assert_array_equal(r.weights, ref.weights)


# --------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("E, k", [(8, 2), (64, 8)])
def test_route_bits_do_not_depend_on_threads_or_batch_split(
    restore_numba_threads, executor_jobs, E, k
):
    T = max(6000, _execute.MIN_WORK // E + 1000)  # large enough for parallel chunks
    x = RNG.standard_normal((T, E)).astype(np.float32)
    runs = {}
    for threads in (1, 2):
        numba.set_num_threads(threads)
        executor_jobs.clear()
        runs[threads] = fr.route(x, k, capacity_factor=1.0)
        # the routing pass: one chunk per thread
        assert max(jobs for _, jobs in executor_jobs) == threads
    a, b = runs[1], runs[2]
    for f in ("experts", "weights", "order", "offsets", "dropped", "entropy"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    assert (a.aux_loss, a.z_loss, a.imbalance) == (b.aux_loss, b.z_loss, b.imbalance)
    # without capacity, a token's routing never depends on the others
    whole = fr.route(x, k)
    for lo, hi in ((0, 1), (1, 777), (777, 6000)):
        part = fr.route(x[lo:hi], k)
        np.testing.assert_array_equal(part.experts, whole.experts[lo:hi])
        np.testing.assert_array_equal(part.weights, whole.weights[lo:hi])
        np.testing.assert_array_equal(part.entropy, whole.entropy[lo:hi])


def test_route_parallel_path_runs(restore_numba_threads, executor_jobs):
    numba.set_num_threads(2)  # conftest guarantees NUMBA_NUM_THREADS >= 2
    x = RNG.standard_normal((4096, 64)).astype(np.float32)
    check = fr.route(x, 2)
    assert executor_jobs[0][1] == 2, "a 4096 x 64 batch with 2 threads must run in two chunks"
    np.testing.assert_array_equal(check.experts, mixtral_recipe(x, 2)[0])


# --------------------------------------------------------------------------- group_by_expert


@given(data=st.data())
def test_group_by_expert_matches_reference(data):
    E = data.draw(st.integers(0, 6))
    shape = data.draw(st.sampled_from([(0,), (7,), (5, 2), (3, 2, 2)]))
    dtype = data.draw(st.sampled_from([np.int8, np.int16, np.int32, np.int64, np.uint8]))
    lo = -1 if np.dtype(dtype).kind == "i" else 0
    n = math.prod(shape)
    if E == 0 and lo == 0:
        n, shape = 0, (0,)  # unsigned ids and no experts: only empty input is valid
    pool = st.integers(lo, max(lo, E - 1))
    ids = np.array(data.draw(st.lists(pool, min_size=n, max_size=n)), np.int64)
    ids = ids.reshape(shape).astype(dtype)
    bs = data.draw(st.sampled_from([None, 1, 3]))
    g = fr.group_by_expert(ids, E, block_size=bs)
    assert isinstance(g, fr.Grouping)
    order, offsets, counts = g
    ro, roff = group_by_expert_ref(ids, E, bs)
    np.testing.assert_array_equal(order, ro)
    np.testing.assert_array_equal(offsets, roff)
    flat = ids.reshape(-1).astype(np.int64)
    np.testing.assert_array_equal(counts, np.bincount(flat[flat >= 0], minlength=E)[:E])
    assert order.dtype == counts.dtype == offsets.dtype == np.int64


def test_group_by_expert_large_parallel():
    ids = RNG.integers(-1, 256, size=(65536, 8)).astype(np.int32)
    order, offsets, counts = fr.group_by_expert(ids, 256, block_size=16)
    flat = ids.reshape(-1)
    np.testing.assert_array_equal(counts, np.bincount(flat[flat >= 0], minlength=256))
    for e in (0, 17, 255):
        seg = order[offsets[e] : offsets[e + 1]]
        real = np.flatnonzero(flat == e)
        np.testing.assert_array_equal(seg[: real.size], real)
        assert (seg[real.size :] == flat.size).all() and seg.size % 16 == 0


@pytest.mark.parametrize(
    "ids, E, kw, exc, match",
    [
        ([0, 3], 3, {}, ValueError, r"experts\[1\] = 3"),
        ([0, -2], 3, {}, ValueError, r"experts\[1\] = -2"),
        (np.array([0, 300], np.uint16), 3, {}, ValueError, r"experts\[1\] = 300"),
        ([0.0, 1.0], 3, {}, TypeError, "integer"),
        ([True, False], 3, {}, TypeError, "integer"),
        ([0], -1, {}, ValueError, "num_experts"),
        ([0], 2, {"block_size": 0}, ValueError, "block_size"),
    ],
)
def test_group_by_expert_errors(ids, E, kw, exc, match):
    with pytest.raises(exc, match=match):
        fr.group_by_expert(np.asarray(ids), E, **kw)


# --------------------------------------------------------------------------- expert choice


@given(x=logit_matrices(max_t=12, max_e=6), data=st.data())
def test_expert_choice_matches_reference(x, data):
    T, E = x.shape
    C = data.draw(st.integers(0, T))
    scoring = data.draw(st.sampled_from(["softmax", "sigmoid"]))
    got = fr.expert_choice(x, C, scoring=scoring)
    ref = expert_choice_ref(x, C, scoring)
    assert got.tokens.shape == (E, C) and got.tokens.dtype == np.int64
    assert got.coverage.dtype == np.int32
    rtol = rtol_for(x.dtype)
    assert_choice_valid(got.tokens, ref.scores.T, C, tol=4 * rtol)
    np.testing.assert_allclose(got.weights, ref.scores.T[np.arange(E)[:, None], got.tokens],
                               rtol=rtol, atol=rtol)  # fmt: skip
    for e in range(E):  # ranked by weight, ties to the lower token
        pairs = list(zip(got.weights[e].tolist(), got.tokens[e].tolist(), strict=True))
        assert pairs == sorted(pairs, key=lambda p: (-p[0], p[1]))
    np.testing.assert_array_equal(got.coverage, np.bincount(got.tokens.ravel(), minlength=T))


@given(
    T=st.integers(1, 3000),
    E=st.integers(1, 3),
    kind=st.sampled_from(["uniform", "ties", "ascending", "descending", "zeros"]),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**32 - 1),
    data=st.data(),
)
def test_top_tokens_threshold_filter_is_exact(T, E, kind, dtype, seed, data):
    # the expert-choice kernel's sampled threshold only changes its speed:
    # the result is exactly a stable sort of each expert's scores
    from fastroute.kernels import choice as rk

    rng = np.random.default_rng(seed)
    s = rng.random((E, T))
    if kind == "ties":
        s = np.round(s * 8) / 8
    elif kind == "ascending":  # the sample (spread runs) misjudges the threshold
        s = np.sort(s, axis=1)
    elif kind == "descending":
        s = np.sort(s, axis=1)[:, ::-1].copy()
    elif kind == "zeros":
        s[:, rng.random(T) < 0.9] = 0.0
    s = s.astype(dtype)
    C = data.draw(st.sampled_from([0, 1, T // 3, T - 1, T]).filter(lambda c: 0 <= c <= T))
    tokens = np.full((E, C), -1, np.intp)
    weights = np.full((E, C), np.nan, dtype)
    rk.top_tokens(s, C, 0, E, tokens, weights)
    for e in range(E):
        ref = np.lexsort((np.arange(T), -s[e].astype(np.float64)))[:C]
        np.testing.assert_array_equal(tokens[e], ref)
        np.testing.assert_array_equal(weights[e], s[e, ref])


def test_expert_choice_prefix_of_full_ranking():
    # the C best tokens are the first C of every token ranked
    x = np.random.default_rng(5).standard_normal((4000, 6)).astype(np.float32)
    full = fr.expert_choice(x, 4000)
    for C in (1, 37, 1000, 3999):
        ec = fr.expert_choice(x, C)
        np.testing.assert_array_equal(ec.tokens, full.tokens[:, :C])
        np.testing.assert_array_equal(ec.weights, full.weights[:, :C])


def test_expert_choice_without_experts():
    ec = fr.expert_choice(np.zeros((3, 0), np.float32), 2)
    assert ec.tokens.shape == (0, 2) and ec.weights.shape == (0, 2)
    np.testing.assert_array_equal(ec.coverage, [0, 0, 0])


def test_expert_choice_errors_and_ties():
    x = np.zeros((4, 2), np.float32)
    ec = fr.expert_choice(x, 2)
    np.testing.assert_array_equal(ec.tokens, [[0, 1], [0, 1]])
    np.testing.assert_array_equal(ec.coverage, [2, 2, 0, 0])
    with pytest.raises(ValueError, match="capacity=5"):
        fr.expert_choice(x, 5)
    x[1, 0] = np.nan
    with pytest.raises(ValueError, match="token 1 .*NaN"):
        fr.expert_choice(x, 1)


# --------------------------------------------------------------------------- njit kernel


@numba.njit
def _route_rows(x, k, sigmoid, renorm, bias, ng, tg, top2, scale):
    e = np.empty((x.shape[0], k), np.int32)
    w = np.empty((x.shape[0], k), x.dtype)
    st = np.empty(x.shape[0], np.int64)
    for t in range(x.shape[0]):
        st[t] = route_1d(x[t], k, sigmoid, renorm, bias, ng, tg, top2, scale, e[t], w[t])
    return e, w, st


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_route_1d_inside_njit_equals_route(dtype):
    x = RNG.standard_normal((50, 16)).astype(dtype)
    bias = RNG.standard_normal(16) * 0.1
    for kw in (
        {},
        {"scoring": "sigmoid", "renormalize": False, "scale": 2.0},
        {"scoring": "sigmoid", "bias": bias, "n_groups": 4, "topk_groups": 2,
         "group_score": "top2"},
    ):  # fmt: skip
        r = fr.route(x, 3, **kw)
        b = kw.get("bias", np.empty(0))
        e, w, st = _route_rows(
            x, 3, kw.get("scoring") == "sigmoid", kw.get("renormalize", True), b,
            kw.get("n_groups", 0), kw.get("topk_groups", 0), kw.get("group_score") == "top2",
            kw.get("scale", 1.0),
        )  # fmt: skip
        assert (st == 0).all()
        np.testing.assert_array_equal(e, r.experts)
        np.testing.assert_array_equal(w, r.weights)
    bad = x.copy()
    bad[0, 3] = np.nan
    assert _route_rows(bad, 3, False, True, np.empty(0), 0, 0, False, 1.0)[2][0] == BAD_NAN


def test_route_from_many_threads_at_once(restore_numba_threads):
    """Routing calls from several Python threads at once share the chunk pool
    and give the bits of a call on its own."""
    from concurrent.futures import ThreadPoolExecutor

    numba.set_num_threads(2)
    x = RNG.standard_normal((5000, 64)).astype(np.float32)
    want = fr.route(x, 4, capacity_factor=1.0)
    with ThreadPoolExecutor(4) as ex:
        got = list(ex.map(lambda _: fr.route(x, 4, capacity_factor=1.0), range(8)))
    for g in got:
        for f in ("experts", "weights", "order", "offsets", "dropped", "entropy"):
            np.testing.assert_array_equal(getattr(g, f), getattr(want, f))
        assert (g.aux_loss, g.z_loss) == (want.aux_loss, want.z_loss)
