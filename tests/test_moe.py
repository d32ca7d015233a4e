"""dispatch and combine against a slow NumPy reference: the same bits, for
every dtype, capacity, padding and thread count."""

from __future__ import annotations

import ml_dtypes
import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastroute as fr
from fastroute import moe as fr_moe

BF16 = np.dtype(ml_dtypes.bfloat16)
DTYPES = [np.dtype(np.float32), np.dtype(np.float64), BF16, np.dtype(np.float16)]


def layout_ref(r, block_size):
    """Row of each kept slot, token of each row (-1 padding), offsets."""
    k = r.experts.shape[1]
    row_of, tokens, offsets = {}, [], [0]
    for e in range(len(r.counts)):
        seg = r.order[r.offsets[e] : r.offsets[e + 1]]
        for s in seg:
            row_of[int(s)] = len(tokens)
            tokens.append(int(s) // k)
        pad = (-len(seg)) % block_size if block_size else 0
        tokens += [-1] * pad
        offsets.append(len(tokens))
    return row_of, np.array(tokens, np.int64), np.array(offsets, np.int64)


def dispatch_ref(hidden, r, block_size):
    _, tokens, offsets = layout_ref(r, block_size)
    rows = np.zeros((tokens.size, hidden.shape[1]), hidden.dtype)
    for i, t in enumerate(tokens):
        if t >= 0:
            rows[i] = hidden[t]
    return rows, tokens, offsets


def combine_ref(x, r, block_size):
    row_of, _, _ = layout_ref(r, block_size)
    T, k = r.experts.shape
    acc_t = np.float64 if x.dtype == np.float64 else np.float32
    x32 = x.astype(acc_t)
    out = np.zeros((T, x.shape[1]), acc_t)
    with np.errstate(all="ignore"):
        for t in range(T):
            acc = np.zeros(x.shape[1], acc_t)
            for j in range(k):
                s = t * k + j
                if s in row_of:  # kept
                    acc = acc + acc_t(r.weights[t, j]) * x32[row_of[s]]
            out[t] = acc
        return out.astype(x.dtype)


def _same(got, want):
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape
    if want.dtype.itemsize == 2:  # NaN payloads aside, the same bits
        g, w = got.astype(np.float32), want.astype(np.float32)
        nan = np.isnan(w)
        assert (np.isnan(g) == nan).all()
        np.testing.assert_array_equal(got.view(np.uint16)[~nan], want.view(np.uint16)[~nan])
    else:
        np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))


@st.composite
def cases(draw):
    T = draw(st.integers(1, 40))
    E = draw(st.integers(1, 9))
    k = draw(st.integers(0, min(E, 4)))
    H = draw(st.sampled_from([1, 3, 8, 33]))
    dtype = draw(st.sampled_from(DTYPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    logits = rng.standard_normal((T, E)).astype(np.float32)
    if draw(st.booleans()):
        logits = np.round(logits)  # ties
    cap = draw(st.sampled_from([None, 0.5, 1.0]))
    r = fr.route(logits, k, capacity_factor=cap)
    hidden = rng.standard_normal((T, H)) * draw(st.sampled_from([1.0, 1e4]))
    if draw(st.booleans()):  # specials
        hidden.flat[rng.integers(0, hidden.size, 3)] = [np.inf, -np.inf, np.nan]
    block = draw(st.sampled_from([None, 1, 4]))
    return r, hidden.astype(dtype), block


@given(case=cases())
def test_dispatch_and_combine_match_the_reference(case):
    r, hidden, block = case
    before = hidden.copy()
    d = fr.dispatch(hidden, r, block_size=block)
    rows, tokens, offsets = dispatch_ref(hidden, r, block)
    _same(d.rows, rows)
    np.testing.assert_array_equal(d.tokens, tokens)
    np.testing.assert_array_equal(d.offsets, offsets)
    assert d.ends.dtype == np.int32 and (d.ends == offsets[1:]).all()
    np.testing.assert_array_equal(d.counts, r.counts)
    # an expert FFN stand-in: any function of the rows
    y = (d.rows.astype(np.float64) * 1.5 - 0.25).astype(hidden.dtype)
    _same(fr.combine(y, r, block_size=block), combine_ref(y, r, block))
    _same(hidden, before)  # inputs never modified


@given(
    H=st.sampled_from([1, 5, 16, 33, 100]),
    shift=st.integers(0, 17),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**32 - 1),
)
def test_streaming_stores_write_the_same_bits(H, shift, dtype, seed):
    # combine writes float outputs of _STREAM_BYTES or more with streaming
    # stores for each row's 64-byte aligned middle and plain stores for its
    # ends; force that path on small rows starting at any alignment
    rng = np.random.default_rng(seed)
    r = fr.route(rng.standard_normal((30, 6)).astype(np.float32), 2, capacity_factor=0.7)
    y = rng.standard_normal((int(r.offsets[-1]), H)).astype(dtype)
    buf = np.full(30 * H + shift + 3, 7.0, dtype)
    out = buf[shift : shift + 30 * H].reshape(30, H)  # rows at any alignment
    saved = fr_moe._STREAM_BYTES
    fr_moe._STREAM_BYTES = 0
    try:
        fr.combine(y, r, out=out)
    finally:
        fr_moe._STREAM_BYTES = saved
    _same(out, combine_ref(y, r, None))
    assert (buf[:shift] == 7).all() and (buf[shift + 30 * H :] == 7).all()  # nothing else written


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_same_bits_for_any_thread_count_and_batch_split(
    dtype, restore_numba_threads, executor_jobs
):
    # large enough for the parallel path (several chunks of rows and tokens)
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((5000, 16)).astype(np.float32)
    hidden = rng.standard_normal((5000, 64)).astype(dtype)
    r = fr.route(logits, 4, capacity_factor=1.0)
    outs = []
    kernels = {"gather_rows", "combine_rows", "combine_rows_half"}
    for threads in (1, 2):
        numba.set_num_threads(threads)
        executor_jobs.clear()
        d = fr.dispatch(hidden, r, block_size=8)
        _same(d.rows, dispatch_ref(hidden, r, 8)[0])
        outs.append(fr.combine(d.rows, r, block_size=8))
        jobs = [n for name, n in executor_jobs if name in kernels]
        assert len(jobs) == 2 and all((n > 1) == (threads == 2) for n in jobs)
    _same(outs[0], outs[1])
    _same(outs[0], combine_ref(d.rows, r, 8))
    y = fr.dispatch(hidden, r := fr.route(logits, 4)).rows
    full = fr.combine(y, r)
    # the first 2000 tokens alone: their rows of the combined output
    r2 = fr.route(logits[:2000], 4)
    y2 = fr.dispatch(hidden[:2000], r2).rows
    _same(fr.combine(y2, r2), full[:2000])


def test_out_is_written_in_place_and_checked():
    rng = np.random.default_rng(2)
    r = fr.route(rng.standard_normal((50, 8)).astype(np.float32), 2)
    hidden = rng.standard_normal((50, 16)).astype(np.float32)
    buf = np.empty((100, 16), np.float32)
    d = fr.dispatch(hidden, r, out=buf)
    assert d.rows is buf
    res = np.empty((50, 16), np.float32)
    assert fr.combine(buf, r, out=res) is res
    _same(res, combine_ref(buf, r, None))
    with pytest.raises(ValueError, match="shape"):
        fr.dispatch(hidden, r, out=np.empty((99, 16), np.float32))
    with pytest.raises(ValueError, match="float32"):
        fr.dispatch(hidden, r, out=np.empty((100, 16), np.float64))
    with pytest.raises(ValueError, match="out shares memory with expert_out"):
        fr.combine(buf, r, out=buf[:50])
    with pytest.raises(ValueError, match="C-contiguous"):
        fr.combine(buf, r, out=np.empty((16, 50), np.float32).T)


def test_bad_input():
    rng = np.random.default_rng(3)
    r = fr.route(rng.standard_normal((10, 4)).astype(np.float32), 2)
    h = np.ones((10, 3), np.float32)
    with pytest.raises(ValueError, match="10 tokens, the rows for 9"):
        fr.dispatch(h[:9], r)
    with pytest.raises(TypeError, match="int32"):
        fr.dispatch(h.astype(np.int32), r)
    with pytest.raises(ValueError, match="2-D"):
        fr.dispatch(h[0], r)
    with pytest.raises(TypeError, match="Routing"):
        fr.dispatch(h, "routing")
    with pytest.raises(ValueError, match="block_size"):
        fr.dispatch(h, r, block_size=0)
    with pytest.raises(ValueError, match="block_size"):
        fr.dispatch(h, r, block_size=2**31 + 1)
    with pytest.raises(ValueError, match="do not fit the int32 ends"):  # nothing allocated
        fr.combine(np.ones((20, 3), np.float32), r, block_size=2**31)
    with pytest.raises(ValueError, match="rows, the routing's grouped layout"):
        fr.combine(np.ones((19, 3), np.float32), r)
    bad = r._replace(order=r.order + 100)
    with pytest.raises(ValueError, match="outside"):
        fr.dispatch(h, bad)
    order = r.order.copy()
    order[5] = order[2]  # not a permutation: one slot twice, one never
    with pytest.raises(ValueError, match=f"slot {order[2]} twice"):
        fr.combine(np.ones((20, 3), np.float32), r._replace(order=order))
    with pytest.raises(ValueError, match="outside"):
        fr.dispatch(h, r._replace(order=r.order.astype(np.uint64) + np.uint64(2**63)))
    bad = r._replace(offsets=r.offsets[::-1].copy())
    with pytest.raises(ValueError, match="offsets"):
        fr.combine(np.ones((20, 3), np.float32), bad)
    # non-contiguous rows are copied once and give the same result
    hh = np.ones((10, 6), np.float32)[:, ::2]
    _same(fr.dispatch(hh, r).rows, fr.dispatch(np.ascontiguousarray(hh), r).rows)


def test_torch_tensors_in_and_out():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    r = fr.route(rng.standard_normal((30, 8)).astype(np.float32), 2)
    h = torch.randn(30, 16, dtype=torch.bfloat16)
    d = fr.dispatch(h, r)
    assert isinstance(d.rows, torch.Tensor) and d.rows.dtype == torch.bfloat16
    ref = dispatch_ref(h.view(torch.int16).numpy().view(BF16), r, None)[0]
    _same(d.rows.view(torch.int16).numpy().view(BF16), ref)
    out = torch.empty(30, 16, dtype=torch.bfloat16)
    assert fr.combine(d.rows, r, out=out) is out
    want = combine_ref(ref, r, None)
    _same(out.view(torch.int16).numpy().view(BF16), want)


def test_negative_zero_sums_are_positive_zero():
    # a sum starts from +0: w * (-0) + ... gives +0, as the reference does
    r = fr.route(np.array([[1.0, 0.0], [0.0, 1.0]], np.float32), 1)
    for dtype in DTYPES:
        rows = np.array([[-0.0, 1.0], [-0.0, -0.0]]).astype(dtype)
        got = fr.combine(rows, r)
        want = combine_ref(rows, r, None)
        _same(got, want)
        assert not np.signbit(np.asarray(got, np.float32)[:, 0]).any()


def _routing_4x3():
    # 4 tokens, 3 experts, k = 2: 8 kept slots, no padding
    rng = np.random.default_rng(5)
    return fr.route(rng.standard_normal((4, 3)).astype(np.float32), 2)


def test_out_sharing_memory_with_any_input_is_an_error():
    r = _routing_4x3()
    # combine into routing.weights itself (H = k): the sums read weights that
    # were already overwritten (the results grew 2, 4, 8, ... before)
    w = r.weights.copy()
    with pytest.raises(ValueError, match="combine: out shares memory with routing.weights"):
        fr.combine(np.ones((8, 2), np.float32), r._replace(weights=w), out=w)
    # weights that combine converts (float64 -> float32): still an input
    buf = np.zeros(16, np.float32)
    w64 = buf.view(np.float64)[:8].reshape(4, 2)
    w64[:] = r.weights
    with pytest.raises(ValueError, match="combine: out shares memory with routing.weights"):
        fr.combine(np.ones((8, 2), np.float32), r._replace(weights=w64), out=buf[:8].reshape(4, 2))
    # the integer arrays of the routing, for both functions
    for field in ("order", "offsets", "experts"):
        arr = np.asarray(getattr(r, field))
        buf = np.zeros(max(arr.nbytes // 4, 40), np.float32)
        view = buf[: arr.nbytes // 4].view(arr.dtype).reshape(arr.shape)
        view[...] = arr
        forged = r._replace(**{field: view})
        with pytest.raises(ValueError, match=f"dispatch: out shares memory with routing.{field}"):
            fr.dispatch(np.ones((4, 5), np.float32), forged, out=buf[:40].reshape(8, 5))
        with pytest.raises(ValueError, match=f"combine: out shares memory with routing.{field}"):
            fr.combine(np.ones((8, 10), np.float32), forged, out=buf[:40].reshape(4, 10))
    # hidden read through a strided view whose bytes lie inside out's range
    buf = np.zeros((8, 5), np.float32)
    with pytest.raises(ValueError, match="dispatch: out shares memory with hidden"):
        fr.dispatch(buf[::2], r, out=buf)


def test_out_between_the_elements_of_a_strided_input_is_allowed():
    # the test is exact: out may lie inside a strided input's byte range
    # without sharing a byte with it, and is then written correctly
    r = fr.route(np.array([[2.0, 0.0, 1.0]], np.float32), 2)
    W = np.zeros((1, 10), np.float32)
    weights = W[:, ::9]  # W[0, 0] and W[0, 9]
    weights[...] = r.weights
    x = np.arange(16, dtype=np.float32).reshape(2, 8)
    out = W[0, 1:9].reshape(1, 8)  # between them
    assert np.may_share_memory(out, weights) and not np.shares_memory(out, weights)
    got = fr.combine(x, r._replace(weights=weights), out=out)
    assert got is out
    _same(out, combine_ref(x, r, None))


def test_sizes_beyond_memory_are_errors_before_allocating():
    r = _routing_4x3()
    hidden = np.ones((4, 2**20), np.float32)  # 16 MiB
    # 3 experts padded to 2**26 rows each, of 4 MiB: 768 TiB
    with pytest.raises(ValueError, match=r"dispatch: 201326592 grouped rows would need .* GiB, "
                                         r"more than this machine's .*; use a smaller block_size"):
        fr.dispatch(hidden, r, block_size=2**26)
    # a routing forged with a broadcast (no memory) k or T
    wide = r._replace(experts=np.broadcast_to(np.int32(0), (4, 2**40)),
                      weights=np.broadcast_to(np.float32(0), (4, 2**40)))  # fmt: skip
    with pytest.raises(ValueError, match=r"dispatch: a routing of 4 tokens x k = 1099511627776 "
                                         r"would need"):  # fmt: skip
        fr.dispatch(hidden, wide)
    with pytest.raises(ValueError, match=r"combine: a routing of 4 tokens x k = 1099511627776 "
                                         r"would need"):  # fmt: skip
        fr.combine(np.ones((8, 2), np.float32), wide)
    tall = r._replace(experts=np.broadcast_to(np.int32(0), (2**40, 2)),
                      weights=np.broadcast_to(np.float32(0), (2**40, 2)))  # fmt: skip
    with pytest.raises(ValueError, match=r"combine: a routing of 1099511627776 tokens x k = 2 "
                                         r"would need"):  # fmt: skip
        fr.combine(np.ones((8, 2), np.float32), tall)


def _bad_inputs():
    # (function, arguments, exception, message): each used to give a foreign
    # message, or no error at all
    r = _routing_4x3()
    h, y = np.ones((4, 5), np.float32), np.ones((8, 5), np.float32)
    cases = [
        ("combine", (y, r._replace(weights=r.weights.astype(str))), TypeError,
         "routing.weights must be real numbers, got dtype <U"),
        ("combine", (y, r._replace(weights=r.weights.astype(complex))), TypeError,
         "routing.weights must be real numbers, got dtype complex128"),
        ("combine", (y, r._replace(weights=None)), TypeError,
         "routing.weights must be real numbers, got dtype object"),
        ("combine", (y, r._replace(weights=r.weights.ravel())), ValueError,
         r"routing.weights has shape \(8,\), routing.experts \(4, 2\)"),
        ("combine", (y, r._replace(weights=r.weights[:3])), ValueError,
         r"routing.weights has shape \(3, 2\), routing.experts \(4, 2\)"),
        ("dispatch", (h, r._replace(experts=[[0, 1], [1], [0, 1], [1, 2]])), ValueError,
         r"routing.experts \(list\) is not a rectangular array"),
        ("dispatch", (h, r._replace(order=[[0], [1, 2]])), ValueError,
         r"routing.order \(list\) is not a rectangular array"),
        ("dispatch", (h, r._replace(experts=r.experts[..., None])), ValueError,
         r"routing.experts must be 2-D, got shape \(4, 2, 1\)"),
        ("dispatch", (h, r._replace(order=r.order.reshape(2, 4))), ValueError,
         "routing.order must be 1-D"),
        ("dispatch", (h, r._replace(offsets=np.empty(0, np.int64))), ValueError,
         "routing.offsets is empty"),
        ("dispatch", (h, r._replace(order=r.order.astype(float))), TypeError,
         "routing.order must be an integer array, got dtype float64"),
        ("combine", (y, r._replace(experts=r.experts.astype(str))), TypeError,
         "routing.experts must be an integer array"),
        ("dispatch", ([[1.0], [2.0, 3.0]], r), ValueError,
         r"hidden \(list\) is not a rectangular array; pass a 2-D array"),
    ]  # fmt: skip
    return cases


@pytest.mark.parametrize("case", _bad_inputs(), ids=lambda c: c[3][:40])
def test_bad_input_gets_the_functions_own_message(case):
    func, args, exc, match = case
    with pytest.raises(exc, match=match) as info:
        getattr(fr, func)(*args)
    assert str(info.value).startswith(f"{func}: ")
    assert "; pass " in str(info.value)  # and says how to fix it


def test_torch_tensors_that_are_not_plain_cpu_arrays():
    torch = pytest.importorskip("torch")
    r = _routing_4x3()
    h = torch.ones(4, 5)
    y = fr.dispatch(h, r).rows
    want = fr.combine(y, r)
    for func, args, name in (
        (fr.dispatch, (h.to_sparse(), r), "hidden"),
        (fr.combine, (y.to_sparse(), r), "expert_out"),
        (fr.combine, (y, r._replace(weights=torch.tensor(r.weights).to_sparse())),
         "routing.weights"),
        (fr.dispatch, (h, r._replace(order=torch.tensor(r.order).to_sparse())), "routing.order"),
    ):  # fmt: skip
        with pytest.raises(TypeError, match=rf"is a torch.sparse_coo tensor; pass a dense one "
                                            rf"\({name}.to_dense\(\)\)"):  # fmt: skip
            func(*args)
    with pytest.raises(TypeError, match=r"dispatch: hidden is on meta; move it to the CPU"):
        fr.dispatch(torch.empty(4, 5, device="meta"), r)
    with pytest.raises(ValueError, match="dispatch: out requires grad"):
        fr.dispatch(h, r, out=torch.zeros(8, 5, requires_grad=True))
    for sparse in (torch.zeros(4, 5).to_sparse(), torch.zeros(4, 5).to_sparse_csr()):
        with pytest.raises(ValueError, match="combine: out must be a dense, contiguous CPU tensor"):
            fr.combine(y, r, out=sparse)
    # inputs that need grad are read (not differentiated), as the other functions do
    wg = torch.tensor(r.weights, requires_grad=True)
    assert torch.equal(fr.combine(y, r._replace(weights=wg)), want)
    yg = y.clone().requires_grad_(True)
    assert torch.equal(fr.combine(yg, r), want)
    # weights as a torch bfloat16 tensor: widened exactly
    wb = torch.tensor(r.weights).bfloat16()
    got = fr.combine(y, r._replace(weights=wb))
    assert torch.equal(got, fr.combine(y, r._replace(weights=wb.float().numpy())))
