"""fastroute.dask against the single-machine functions: the same bits for
any chunking of the rows and any scheduler."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

import fastroute as fr  # noqa: E402
import fastroute.dask as frd  # noqa: E402

SPECIALS = [0.0, -0.0, 1.0, 0.5, np.inf, -np.inf, np.nan, 1e-30]


@st.composite
def row_matrices(draw, max_t=24, max_n=9):
    T = draw(st.integers(1, max_t))
    n = draw(st.integers(1, max_n))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x = rng.random((T, n))
    if draw(st.booleans()):  # ties
        x = np.round(x * 4) / 4
    if draw(st.booleans()):  # NaN, +-inf, +-0 at random places
        mask = rng.random((T, n)) < 0.2
        x[mask] = rng.choice(SPECIALS, size=int(mask.sum()))
    chunks = draw(st.sampled_from([1, 2, 3, 7]))
    return x.astype(dtype), max(1, -(-T // chunks))


def _same(got, want):
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))  # bits


def _declared(arr, got, what=""):
    # the shape and dtype a Dask array declares are those it computes to (a
    # length Dask does not know is NaN, never a wrong number)
    assert arr.dtype == got.dtype, what
    assert arr.ndim == got.ndim, what
    for d, g in zip(arr.shape, got.shape, strict=True):
        assert np.isnan(d) or d == g, (what, arr.shape, got.shape)


@pytest.mark.parametrize("scheduler", ["synchronous", "threads"])
@given(xc=row_matrices(), base=st.sampled_from([None, 2.0]))
def test_entropy_bit_identical(scheduler, xc, base):
    x, rows = xc
    p = np.abs(x)
    got = frd.entropy(da.from_array(p, chunks=(rows, -1)), base=base)
    _same(got.compute(scheduler=scheduler), fr.entropy(p, base=base))


@given(xc=row_matrices())
def test_entropy_from_logits_bit_identical(xc):
    x, rows = xc
    got = frd.entropy_from_logits(da.from_array(x, chunks=(rows, -1)))
    _same(got.compute(scheduler="threads"), fr.entropy_from_logits(x))


@given(xc=row_matrices(), data=st.data())
def test_top_k_bit_identical(xc, data):
    x, rows = xc
    k = data.draw(st.integers(0, x.shape[1]))
    mode = data.draw(st.sampled_from(["largest", "smallest"]))
    got = frd.top_k(da.from_array(x, chunks=(rows, -1)), k, mode=mode)
    want = fr.top_k(x, k, mode=mode)
    assert (
        got.values.chunks[0]
        == got.indices.chunks[0]
        == da.from_array(x, chunks=(rows, -1)).chunks[0]
    )
    values, indices = da.compute(got.values, got.indices, scheduler="threads")
    _same(values, want.values)
    _same(indices, want.indices)


def test_rows_split_across_chunks_is_an_error():
    x = da.ones((4, 6), chunks=(2, 3))
    for f in (frd.entropy, frd.entropy_from_logits):
        with pytest.raises(ValueError, match=r"rechunk first: x.rechunk\(\{1: -1\}\)"):
            f(x)
    np.testing.assert_array_equal(
        frd.entropy(x.rechunk({1: -1})).compute(), fr.entropy(np.ones((4, 6)))
    )


def test_bad_input_fails_when_built_not_when_computed():
    with pytest.raises(ValueError, match="2-D"):
        frd.entropy(da.ones((3,), chunks=2))
    with pytest.raises(ValueError):
        frd.top_k(da.ones((3, 4), chunks=(2, 4)), 5)  # k > n
    with pytest.raises(TypeError):
        frd.entropy(da.ones((3, 4), chunks=(2, 4), dtype=np.complex128))


def test_numpy_input_and_laziness():
    x = np.random.default_rng(0).random((10, 5)).astype(np.float32)
    r = frd.entropy(x)  # a NumPy array is wrapped in one chunk
    assert isinstance(r, da.Array)
    _same(r.compute(), fr.entropy(x))


# --------------------------------------------------------------------------- co-occurrence


def _same_csr(got, want):
    for f in ("indptr", "indices", "data"):
        a, b = getattr(got, f), getattr(want, f)
        assert a.dtype == b.dtype, f
        np.testing.assert_array_equal(a, b, err_msg=f)
    assert got.shape == want.shape


@given(
    n=st.integers(0, 400),
    vocab=st.integers(1, 40),
    window=st.integers(1, 6),
    chunks=st.sampled_from([1, 2, 3, 7]),
    symmetric=st.booleans(),
    dtype=st.sampled_from([np.int64, np.int32, np.float64]),
    row_blocks=st.sampled_from([None, 1, 3]),
    weights=st.sampled_from([None, "frequency", "random"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_cooccurrence_bit_identical(
    n, vocab, window, chunks, symmetric, dtype, row_blocks, weights, seed
):
    rng = np.random.default_rng(seed)
    t = np.minimum(rng.zipf(1.3, n) - 1, vocab - 1)  # Zipf ids, the last id common
    if n:
        t[0], t[-1] = 0, vocab - 1  # ids at the vocabulary's edges
    size = max(1, -(-n // chunks)) if n else 1
    if chunks == 7 and n > 20:  # chunks shorter than the window too
        size = max(1, window // 2)
    x = da.from_array(t, chunks=size)
    kw = dict(window=window, symmetric=symmetric, dtype=dtype)
    w = {None: None, "frequency": np.bincount(t, minlength=vocab),
         "random": rng.random(vocab) * (rng.random(vocab) < 0.5)}[weights]  # fmt: skip
    got = frd.cooccurrence(x, vocab, row_blocks=row_blocks, row_weights=w, **kw)
    assert got.row_bounds[0] == 0 and got.row_bounds[-1] == vocab
    assert (np.diff(got.row_bounds) > 0).all()
    _same_csr(got.compute(scheduler="threads"), fr.cooccurrence(t, vocab, **kw))


def test_cooccurrence_one_repeated_token():
    # one token repeated: every pair is (0, 0), one entry summed over all chunks
    t = np.zeros(3000, np.int64)
    x = da.from_array(t, chunks=700)
    _same_csr(frd.cooccurrence(x, 2, window=5).compute(), fr.cooccurrence(t, 2, window=5))


def test_cooccurrence_bad_shard_names_it():
    t = np.arange(20) % 5
    t[13] = 9
    x = da.from_array(t, chunks=5)
    with pytest.raises(ValueError, match=r"tokens 10:15 \(chunk 2\).*token id 9"):
        frd.cooccurrence(x, 5, window=1).compute()
    with pytest.raises(TypeError, match="integers"):
        frd.cooccurrence(da.ones(4, chunks=2), 5)
    with pytest.raises(ValueError, match="window"):
        frd.cooccurrence(da.zeros(4, chunks=2, dtype=int), 5, window=0)


def test_cooccurrence_arguments_as_the_single_machine_function():
    t = np.array([0, 1, 2, 0, 1])
    x = da.from_array(t, chunks=2)
    with pytest.raises(ValueError, match=r"cooccurrence: .*unknown.*compute_chunk_sizes\(\)"):
        frd.cooccurrence(x[x >= 0], 3)  # was "cannot convert float NaN to integer"
    with pytest.raises(TypeError, match="cooccurrence: dtype must be int32, int64, float32 or"):
        frd.cooccurrence(x, 3, dtype="bogus")  # was NumPy's "data type 'bogus' not understood"
    _same_csr(frd.cooccurrence(x, 3, dtype="float32").compute(),
              fr.cooccurrence(t, 3, dtype="float32"))  # fmt: skip
    # no tokens: any dtype, as fastroute.cooccurrence accepts them
    for empty in (da.zeros(0, chunks=1), np.zeros(0), np.array([], dtype=object)):
        _same_csr(frd.cooccurrence(empty, 3).compute(), fr.cooccurrence(np.zeros(0), 3))
    for bad in ("3", 2.5, True, np.float64(3.0)):
        with pytest.raises(TypeError, match="cooccurrence: row_blocks must be an integer"):
            frd.cooccurrence(x, 3, row_blocks=bad)
    with pytest.raises(ValueError, match="cooccurrence: row_blocks=0 is out of range"):
        frd.cooccurrence(x, 3, row_blocks=0)
    assert frd.cooccurrence(x, 3, row_blocks=np.int64(2)).row_bounds == (0, 1, 3)
    with pytest.raises(TypeError, match="cooccurrence: cannot convert list"):
        frd.cooccurrence([[0, 1], [2]], 3)
    for bad in ("abc", np.ones(3, complex), [[1], [1, 2]]):
        with pytest.raises(TypeError, match="cooccurrence: row_weights must be 3"):
            frd.cooccurrence(x, 3, row_weights=bad)


# --------------------------------------------------------------------------- routing

ROUTE_OPTIONS = [
    {},
    {"stats": False},
    {"scoring": "sigmoid", "renormalize": False},
    {"scoring": "sigmoid", "bias": np.linspace(-0.5, 0.5, 8), "n_groups": 4, "topk_groups": 2,
     "group_score": "top2", "scale": 2.5},
    {"nan": "ignore"},
    {"capacity_factor": 1.0},
    {"capacity_factor": 0.5, "min_capacity": 3, "stats": False},
    {"capacity_factor": 1.25, "scoring": "sigmoid", "n_groups": 2, "topk_groups": 1},
]  # fmt: skip


@pytest.mark.parametrize("options", ROUTE_OPTIONS, ids=lambda o: ",".join(o) or "default")
@given(
    T=st.integers(1, 300),
    chunks=st.sampled_from([1, 2, 3, 7]),
    k=st.integers(0, 4),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**32 - 1),
)
def test_route_matches_one_call(options, T, chunks, k, dtype, seed):
    rng = np.random.default_rng(seed)
    x = (np.round(rng.standard_normal((T, 8)) * 2) / 2).astype(dtype)  # with ties
    if options.get("nan") == "ignore":
        x[rng.random((T, 8)) < 0.1] = np.nan
        x[:, 0] = 0.0  # every token keeps a finite logit
    want = fr.route(x, k, **options)
    r = frd.route(da.from_array(x, chunks=(max(1, -(-T // chunks)), -1)), k, **options)
    got = dict(zip(r._fields[:10], da.compute(*r[:10], scheduler="threads"), strict=True))
    for f in r._fields[:10]:  # what Dask is told is what a field holds
        if got[f] is not None:
            _declared(getattr(r, f), got[f], f)
    for f in ("experts", "weights", "counts", "offsets", "order", "dropped", "entropy"):
        w, g = getattr(want, f), got[f]
        if w is None:
            assert g is None, f
            continue
        assert g.dtype == w.dtype, f
        np.testing.assert_array_equal(g, w, err_msg=f)
    for f in ("aux_loss", "z_loss"):
        w, g = getattr(want, f), got[f]
        if w is None:
            assert g is None
        else:
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=0, err_msg=f)
    np.testing.assert_equal(got["imbalance"], want.imbalance)
    assert r.capacity == want.capacity


def test_route_capacity_and_bad_input():
    x = da.zeros((10, 4), chunks=(5, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="drop='score'"):
        frd.route(x, 2, capacity_factor=1.25, drop="score")
    with pytest.raises(ValueError, match="capacity_factor"):
        frd.route(x, 2, capacity_factor=-1.0)
    with pytest.raises(ValueError, match="k"):
        frd.route(x, 5)
    y = np.zeros((6, 4), np.float32)
    y[4, 1] = np.nan
    r = frd.route(da.from_array(y, chunks=(3, 4)), 2)
    with pytest.raises(ValueError, match=r"rows 3:6 \(chunk 1\): .*token 1 .*NaN"):
        r.experts.compute()


def test_route_order_holds_the_kept_slots_only():
    # with a capacity, order holds only the kept slots: its length is not
    # known before the graph runs, so Dask must not be told it is T * k
    # (r.order[-3:] was [] while the last kept slots were three)
    z = np.random.default_rng(0).standard_normal((10, 4)).astype(np.float32)
    x = da.from_array(z, chunks=(5, 4))
    want = fr.route(z, 2, capacity_factor=0.5)
    assert want.order.size < 20
    r = frd.route(x, 2, capacity_factor=0.5)
    assert np.isnan(r.order.shape[0])
    with pytest.raises(ValueError, match="unknown"):
        r.order[-3:]  # Dask's own error for an unknown length, never a wrong slice
    np.testing.assert_array_equal(r.order.compute_chunk_sizes()[-3:].compute(), want.order[-3:])
    np.testing.assert_array_equal(r.order.compute(), want.order)
    dropless = frd.route(x, 2)  # every slot kept: the length is known
    assert dropless.order.shape == (20,)
    np.testing.assert_array_equal(dropless.order[-3:].compute(), fr.route(z, 2).order[-3:])


def test_declared_chunks_are_the_computed_ones():
    # every block of every Dask array fastroute.dask returns has the shape
    # and dtype its chunks and dtype declare (or an unknown, NaN, size)
    import scipy.sparse as sp

    def check(arr, what):
        blocks = dask.compute(*arr.to_delayed().ravel(), scheduler="synchronous")
        for idx, b in zip(np.ndindex(*arr.numblocks), blocks, strict=True):
            assert isinstance(b, np.ndarray if arr.ndim else (np.ndarray, np.generic)), what
            want = tuple(arr.chunks[d][i] for d, i in enumerate(idx))
            _declared(arr.blocks[idx], b, f"{what} block {idx} {want}")

    rng = np.random.default_rng(5)
    z = rng.standard_normal((9, 4)).astype(np.float32)
    x = da.from_array(z, chunks=(4, 4))
    for opts in ({}, {"capacity_factor": 0.5}, {"capacity_factor": 1.0, "stats": False}):
        r = frd.route(x, 2, **opts)
        for f in r._fields[:10]:
            if getattr(r, f) is not None:
                check(getattr(r, f), f"route {opts} {f}")
    check(frd.entropy(abs(x)), "entropy")
    check(frd.entropy_from_logits(x), "entropy_from_logits")
    for axis, chunks in ((-1, (4, 4)), (0, (4, 4)), (-1, (4, 3))):
        t = frd.top_k(da.from_array(z, chunks=chunks), 2, axis=axis)
        check(t.values, f"top_k {axis} {chunks}")
        check(t.indices, f"top_k {axis} {chunks}")
    C = frd.cooccurrence(da.from_array(np.array([0, 1, 2, 0, 3, 1, 2]), chunks=3), 4, row_blocks=2)
    check(frd.row_entropy(C), "row_entropy")
    t = frd.top_k(C, 2)
    check(t.values, "sparse top_k")
    check(t.indices, "sparse top_k")
    for B in (C, frd.normalize_rows(C), frd.top_k(C, 2, format="csr")):
        for b in dask.compute(*B.blocks):
            assert isinstance(b, sp.csr_array) and b.dtype == B.dtype


def test_dense_arguments_as_the_single_machine_functions():
    z = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32)
    x = da.from_array(z, chunks=(3, 4))
    rows = x[x[:, 0] > -10]  # the same rows, but Dask does not know how many
    with pytest.raises(ValueError, match=r"route: .*unknown.*compute_chunk_sizes\(\)"):
        frd.route(rows, 2)
    with pytest.raises(ValueError, match=r"entropy: .*axis 1 .*compute_chunk_sizes\(\)"):
        frd.entropy(abs(x)[:, x[0] > -10])
    with pytest.raises(ValueError, match=r"top_k: .*axis 0 .*compute_chunk_sizes\(\)"):
        frd.top_k(rows, 1, axis=0)
    _same(frd.entropy(abs(rows)).compute(), fr.entropy(abs(z)))  # unknown rows are fine here
    for f in (frd.entropy, frd.entropy_from_logits, lambda v: frd.top_k(v, 1)):
        with pytest.raises(TypeError, match="cannot convert list"):
            f([[1.0, 2.0], [3.0]])  # ragged: NumPy's own message named no function
    # no tokens and no experts: the result of fastroute.route, not an error
    want = fr.route(np.zeros((0, 0), np.float32), 0)
    r = frd.route(np.zeros((0, 0), np.float32), 0)
    counts, imbalance = dask.compute(r.counts, r.imbalance)
    assert counts.shape == want.counts.shape and np.isnan(imbalance) and np.isnan(want.imbalance)
    C = frd.cooccurrence(da.from_array(np.array([0, 1, 2]), chunks=2), 3)
    with pytest.raises(TypeError, match="axis must be an integer"):
        frd.top_k(C, 1, axis="1")


def test_torch_tensors_as_the_single_machine_functions_take_them():
    torch = pytest.importorskip("torch")
    t = torch.rand(4, 3, requires_grad=True)  # Dask's own asarray knew no torch dtype
    _same(frd.entropy(t).compute(), fr.entropy(t))
    ids = torch.tensor([0, 1, 2, 0])
    _same_csr(frd.cooccurrence(ids, 3).compute(), fr.cooccurrence(ids.numpy(), 3))


# --------------------------------------------------------------------------- a cluster of processes


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    with frd.local_cluster(2, numba_threads=1, dashboard_address=":0") as cluster:
        # not the default scheduler: a test says where it computes
        with distributed.Client(cluster, set_as_default=False) as c:
            yield c


def test_process_cluster_gives_the_same_bits(client):
    # two worker processes, one Dask thread and one Numba thread each
    import numba

    from fastroute.dask._base import Limited

    # a fastroute task runs with one Numba thread (the worker started with more)
    threads = client.gather([client.submit(Limited(numba.get_num_threads), pure=False)
                             for _ in range(4)])  # fmt: skip
    assert threads == [1, 1, 1, 1]
    with dask.config.set(scheduler=client):
        _cluster_bits(client)


def _cluster_bits(client):
    rng = np.random.default_rng(11)
    t = np.minimum(rng.zipf(1.2, 5000) - 1, 299)
    for chunks in (1, 2, 3, 7):
        x = da.from_array(t, chunks=-(-t.size // chunks))
        got = frd.cooccurrence(x, 300, window=3).compute()
        _same_csr(got, fr.cooccurrence(t, 300, window=3))
    z = rng.standard_normal((4000, 16)).astype(np.float32)
    r = frd.route(da.from_array(z, chunks=(1000, -1)), 2)
    want = fr.route(z, 2)
    experts, order, ent = client.compute([r.experts, r.order, r.entropy], sync=True)
    np.testing.assert_array_equal(experts, want.experts)
    np.testing.assert_array_equal(order, want.order)
    _same(ent, want.entropy)


def test_numba_threads_when_the_client_script_imports_fastroute(tmp_path):
    # a spawned worker imports the client's __main__ (here: fastroute, and so
    # Numba) before the nanny's environment applies; the thread count must
    # hold anyway, and the client must still compile afterwards
    script = tmp_path / "client.py"
    script.write_text(
        "import numba, numpy as np, dask.array as da\n"
        "import fastroute as fr, fastroute.dask as frd\n"
        "from fastroute.dask._base import Limited\n"
        "from distributed import Client\n"
        "if __name__ == '__main__':\n"
        "    fr.top_k(np.random.default_rng(0).random((70000, 4)), 2)  # client threads run\n"
        "    with frd.local_cluster(2, numba_threads=1, dashboard_address=':0') as cl, "
        "Client(cl) as c:\n"
        "        t = c.gather([c.submit(Limited(numba.get_num_threads), pure=False) "
        "for _ in range(4)])\n"
        "        h = frd.entropy(da.ones((8, 3), chunks=(4, 3))).compute()\n"
        "    fr.entropy(np.ones((3, 5), np.float16))  # a new compile in the client\n"
        "    print(t, h.round(3).tolist())\n"
    )
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == f"[1, 1, 1, 1] {[round(float(np.log(3)), 3)] * 8}"


def test_killed_worker_leaves_the_counts_unchanged(client, tmp_path):
    # the first task to read a chunk kills its worker process (os._exit, as
    # an OOM kill would); the nanny restarts it, the scheduler recomputes the
    # lost tasks, and the counts are the same
    marker = str(tmp_path / "killed")

    def kill_once(block, marker):
        import os

        if not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)
        return block

    rng = np.random.default_rng(12)
    t = np.minimum(rng.zipf(1.2, 20000) - 1, 499)
    x = da.from_array(t, chunks=2500).map_blocks(kill_once, marker, meta=np.empty(0, t.dtype))
    # the client passed to this computation, not set for the process with
    # dask.config.set(scheduler=client): Distributed 2024.1.0 to 2026.7.1
    # then hang while closing the cluster after a worker died
    got = frd.cooccurrence(x, 500, window=2).compute(scheduler=client)
    assert (tmp_path / "killed").exists()  # a worker did die
    _same_csr(got, fr.cooccurrence(t, 500, window=2))


# --------------------------------------------------------------------------- the pipeline on row blocks


@given(
    n=st.integers(0, 300),
    vocab=st.integers(1, 30),
    chunks=st.sampled_from([1, 2, 3, 7]),
    row_blocks=st.sampled_from([None, 1, 4]),
    k=st.integers(0, 30),
    seed=st.integers(0, 2**32 - 1),
)
def test_pipeline_on_row_blocks_bit_identical(n, vocab, chunks, row_blocks, k, seed):
    rng = np.random.default_rng(seed)
    t = np.minimum(rng.zipf(1.3, n) - 1, vocab - 1)  # rare ids: empty rows
    x = da.from_array(t, chunks=max(1, -(-n // chunks)) if n else 1)
    C = frd.cooccurrence(x, vocab, row_blocks=row_blocks)
    C1 = fr.cooccurrence(t, vocab)
    P = frd.normalize_rows(C)
    _same_csr(P.compute(scheduler="threads"), fr.normalize_rows(C1))
    _same(frd.row_entropy(C, base=2).compute(), fr.entropy(C1, base=2))  # NaN rows too
    k = min(k, vocab)
    (got,) = dask.compute(frd.top_entropy(P, k))
    want = fr.top_entropy(fr.normalize_rows(C1), k)
    _same(got.values, want.values)
    _same(got.indices, want.indices)


def test_row_weights_balance_the_blocks_and_are_checked():
    t = np.minimum(np.random.default_rng(3).zipf(1.2, 20000) - 1, 999)
    C = frd.cooccurrence(da.from_array(t, chunks=5000), 1000, row_blocks=4,
                         row_weights=np.bincount(t, minlength=1000))  # fmt: skip
    nnz = [b.nnz for b in dask.compute(*C.blocks)]
    equal = frd.cooccurrence(da.from_array(t, chunks=5000), 1000, row_blocks=4)
    nnz_equal = [b.nnz for b in dask.compute(*equal.blocks)]
    assert max(nnz) < max(nnz_equal)  # frequent ids hold most pairs: equal rows are skewed
    for bad in (np.ones(999), -np.ones(1000), np.full(1000, np.nan)):
        with pytest.raises(ValueError, match="row_weights"):
            frd.cooccurrence(da.from_array(t, chunks=5000), 1000, row_weights=bad)


def test_pipeline_errors():
    with pytest.raises(TypeError, match="CSRBlocks"):
        frd.normalize_rows(np.ones((2, 2)))
    C = frd.cooccurrence(da.from_array(np.array([0, 1, 2]), chunks=2), 3)
    with pytest.raises(ValueError, match="k"):
        frd.top_entropy(C, 4)


MEASURES = [("conditional", None), ("pmi", None), ("ppmi", 0.75), ("npmi", None)]


@given(
    n=st.integers(0, 300),
    vocab=st.integers(1, 30),
    chunks=st.sampled_from([1, 2, 3, 7]),
    row_blocks=st.sampled_from([None, 1, 4]),
    measure=st.sampled_from(MEASURES),
    exclude_self=st.booleans(),
    min_count=st.sampled_from([1, 2]),
    data=st.data(),
)
def test_related_on_row_blocks_bit_identical(
    n, vocab, chunks, row_blocks, measure, exclude_self, min_count, data
):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    t = np.minimum(rng.zipf(1.3, n) - 1, vocab - 1)
    C = frd.cooccurrence(da.from_array(t, chunks=max(1, -(-n // chunks)) if n else 1), vocab,
                         row_blocks=row_blocks)  # fmt: skip
    C1 = fr.cooccurrence(t, vocab)
    rows = data.draw(st.lists(st.integers(0, vocab - 1), max_size=8))  # repeats, any order
    k = data.draw(st.integers(0, vocab))
    name, cds = measure
    kw = dict(measure=name, cds=cds, exclude_self=exclude_self, min_count=min_count)
    for A, A1 in ((C, C1), (frd.normalize_rows(C), fr.normalize_rows(C1))):  # int, float
        (got,) = dask.compute(frd.related(A, rows, k, **kw))
        want = fr.related(A1, rows, k, **kw)
        _same(got.values, want.values)
        _same(got.indices, want.indices)
    (got,) = dask.compute(frd.related(C, vocab - 1, k, **kw))  # a scalar row
    want = fr.related(C1, vocab - 1, k, **kw)
    _same(got.values, want.values)
    _same(got.indices, want.indices)


def _blocks_of(A, bounds):
    import scipy.sparse as sp

    A = sp.csr_array(A)
    parts = tuple(dask.delayed(A[bounds[i] : bounds[i + 1]]) for i in range(len(bounds) - 1))
    return frd.CSRBlocks(A.shape, tuple(bounds), parts, A.dtype, A.indices.dtype)


def test_related_wide_matrices_and_overflowing_totals():
    import scipy.sparse as sp

    # columns far outnumber the entries: column sums of the occurring columns
    rng = np.random.default_rng(3)
    flat = rng.choice(12 * 50000, size=120, replace=False).astype(np.int32)  # for any SciPy
    A = sp.csr_array((rng.random(120), np.divmod(flat, 50000)), shape=(12, 50000))
    A.data = np.round(A.data * 5) + 1
    for measure, cds in MEASURES:
        (got,) = dask.compute(frd.related(_blocks_of(A, [0, 5, 12]), range(12), 3,
                                          measure=measure, cds=cds))  # fmt: skip
        want = fr.related(A, np.arange(12), 3, measure=measure, cds=cds)
        _same(got.values, want.values)
        _same(got.indices, want.indices)
    # a total beyond float64: the counts are taken times a power of two
    B = sp.csr_array(np.array([[1e308, 1e308, 0.0], [1e308, 5.0, 1e300], [0.0, 1.0, 2.0]]))
    for measure, cds in MEASURES:
        (got,) = dask.compute(frd.related(_blocks_of(B, [0, 1, 3]), [0, 1, 2], 3,
                                          measure=measure, cds=cds))  # fmt: skip
        want = fr.related(B, [0, 1, 2], 3, measure=measure, cds=cds)
        _same(got.values, want.values)
        _same(got.indices, want.indices)


def test_counts_beyond_int32():
    import scipy.sparse as sp

    # rows whose counts and sums pass 2**31 (a token repeated billions of
    # times); every sum over the blocks stays exact in int64
    big = np.array([[2**31 + 7, 2**33, 0], [0, 1, 2**40], [3, 0, 2**31 - 1]], np.int64)
    C = _blocks_of(big, [0, 2, 3])
    want = sp.csr_array(big)
    (cs,) = dask.compute(frd.column_sums(C))
    _same(cs, np.asarray(want.sum(axis=0), np.float64).ravel())
    for measure, cds in MEASURES:
        (got,) = dask.compute(frd.related(C, [0, 1, 2], 2, measure=measure, cds=cds))
        exp = fr.related(want, [0, 1, 2], 2, measure=measure, cds=cds)
        _same(got.values, exp.values)
    _same(frd.row_entropy(C).compute(), fr.entropy(want))
    _same_csr(frd.normalize_rows(C).compute(), fr.normalize_rows(want))


def test_related_errors_name_the_row():
    import scipy.sparse as sp

    bad = sp.csr_array(np.array([[1.0, 0.0], [0.0, 1.0], [-2.0, 1.0]]))
    (r,) = dask.compute(frd.related(_blocks_of(bad, [0, 2, 3]), [0], 1))  # row 2 not used
    with pytest.raises(ValueError, match="row 2 has the entry -2.0"):
        dask.compute(frd.related(_blocks_of(bad, [0, 2, 3]), [2], 1, measure="pmi"))
    with pytest.raises(ValueError, match="outside"):
        frd.related(_blocks_of(bad, [0, 2, 3]), [3], 1)
    with pytest.raises(ValueError, match="measure"):
        frd.related(_blocks_of(bad, [0, 2, 3]), [0], 1, measure="lift")
    with pytest.raises(TypeError, match="CSRBlocks"):
        frd.related(bad, [0], 1)


@given(
    shape=st.lists(st.integers(1, 9), min_size=1, max_size=3),
    dtype=st.sampled_from([np.float32, np.float64, np.int64, np.bool_]),
    mode=st.sampled_from(["largest", "smallest"]),
    data=st.data(),
)
def test_top_k_along_any_chunked_axis_bit_identical(shape, dtype, mode, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = rng.choice(SPECIALS, size=shape) if dtype != np.int64 else rng.integers(-3, 3, shape)
    x = x.astype(dtype) if dtype != np.bool_ else x > 0.5
    chunks = tuple(data.draw(st.integers(1, s)) for s in shape)
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    k = data.draw(st.integers(0, shape[axis]))
    got = frd.top_k(da.from_array(x, chunks=chunks), k, axis=axis, mode=mode)
    values, indices = dask.compute(got.values, got.indices)
    want = fr.top_k(x, k, axis=axis, mode=mode)
    _same(values, want.values)
    _same(indices, want.indices)


@given(
    n=st.integers(0, 300),
    vocab=st.integers(1, 30),
    row_blocks=st.sampled_from([1, 3, 7]),
    explicit=st.booleans(),
    mode=st.sampled_from(["largest", "smallest"]),
    data=st.data(),
)
def test_sparse_top_k_on_row_blocks_bit_identical(n, vocab, row_blocks, explicit, mode, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    t = np.minimum(rng.zipf(1.3, n) - 1, vocab - 1)
    C = frd.cooccurrence(da.from_array(t, chunks=max(1, n // 2) or 1), vocab, row_blocks=row_blocks)
    C1 = fr.cooccurrence(t, vocab)
    k = data.draw(st.integers(0, vocab))
    got = frd.top_k(C, k, explicit=explicit, mode=mode)
    values, indices = dask.compute(got.values, got.indices)
    want = fr.top_k(C1, k, explicit=explicit, mode=mode)
    _same(values, want.values)
    _same(indices, want.indices)
    pruned = frd.top_k(C, k, explicit=explicit, mode=mode, format="csr").compute()
    _same_csr(pruned, fr.top_k(C1, k, explicit=explicit, mode=mode, format="csr"))


def test_top_k_errors():
    C = frd.cooccurrence(da.from_array(np.array([0, 1, 2]), chunks=2), 3)
    with pytest.raises(ValueError, match="axis=1"):
        frd.top_k(C, 1, axis=0)
    with pytest.raises(ValueError, match="CSRBlocks"):
        frd.top_k(da.zeros((3, 3), chunks=2), 1, explicit=True)
    with pytest.raises(ValueError, match="k"):
        frd.top_k(da.zeros((3, 3), chunks=2), 4, axis=0)
    with pytest.raises(ValueError):
        frd.top_k(da.zeros((), dtype=float), 1)


# --------------------------------------------------------------------------- text corpora

WORDS = ["the", "a", "cat", "Cat", "don't", "élan", "ΟΔΟΣ", "straße", "x", "zebra", "İstanbul"]


@st.composite
def corpora(draw):
    # texts whose lines mix words, punctuation, digits and line endings
    def line():
        ws = draw(st.lists(st.sampled_from(WORDS), max_size=8))
        sep = draw(st.sampled_from([" ", ", ", " 42 ", "_", "--"]))
        return sep.join(ws) + draw(st.sampled_from(["\n", "\r\n", "\n\n"]))

    files = []
    for _ in range(draw(st.sampled_from([1, 2, 3, 7]))):
        text = "".join(line() for _ in range(draw(st.integers(0, 6))))
        if draw(st.booleans()):  # no newline at the end
            text = text.rstrip("\r\n")
        files.append(text)
    return files, draw(st.sampled_from([1, 7, 40, 10**6])), draw(st.booleans())


@given(case=corpora())
def test_read_corpus_any_sharding_gives_the_ids_of_tokenize(tmp_path_factory, case):
    from fastroute.pipeline import tokenize

    texts, blocksize, pattern = case
    d = tmp_path_factory.mktemp("corpus")
    paths = []
    for i, text in enumerate(texts):
        (d / f"{i:02d}.txt").write_bytes(text.encode("utf-8"))
        paths.append(str(d / f"{i:02d}.txt"))
    ids, vocab, freq = tokenize("\n".join(texts))
    c = frd.read_corpus(str(d / "*.txt") if pattern else paths, blocksize=blocksize)
    _same(c.ids.compute(), ids)
    assert c.vocabulary == vocab
    _same(c.frequency, freq)
    if ids.size >= 2:
        _same_csr(frd.cooccurrence(c.ids, len(vocab)).compute(), fr.cooccurrence(ids, len(vocab)))


def test_read_corpus_bad_shards_name_the_file(tmp_path, monkeypatch):
    good = tmp_path / "good.txt"
    good.write_text("some words here\n" * 50)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine words\n" * 20 + b"caf\xe9 latin-1\n")
    with pytest.raises(ValueError, match=r"bad.txt is not UTF-8 text \(invalid .* at byte 223"):
        frd.read_corpus([str(good), str(bad)], blocksize=100)
    with pytest.raises(FileNotFoundError, match="no such file: .*missing.txt"):
        frd.read_corpus([str(good), str(tmp_path / "missing.txt")])
    with pytest.raises(FileNotFoundError, match="no file matches"):
        frd.read_corpus(str(tmp_path / "*.md"))
    with pytest.raises(IsADirectoryError, match="directory"):
        frd.read_corpus(str(tmp_path))
    with pytest.raises(ValueError, match="blocksize"):
        frd.read_corpus(str(good), blocksize=0)
    import builtins

    real_open = builtins.open

    def refuse(path, *a, **kw):  # a shard the worker may not read
        if str(path) == str(good):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *a, **kw)

    monkeypatch.setattr(builtins, "open", refuse)
    with pytest.raises(
        OSError, match=r"cannot read .*good.txt \(shard bytes \d+:\d+\): Permission"
    ):
        frd.read_corpus(str(good), blocksize=400)


def test_read_ids_reads_only_npy_integer_ids(tmp_path):
    import scipy.sparse as sp

    np.save(tmp_path / "ids.npy", np.arange(10, dtype=np.int32))
    full = (tmp_path / "ids.npy").read_bytes()
    sp.save_npz(tmp_path / "counts.npz", sp.csr_array(np.eye(3)))
    np.savez(tmp_path / "two.npz", a=np.arange(3), b=np.arange(2))
    (tmp_path / "empty.npy").write_bytes(b"")
    (tmp_path / "text.npy").write_text("0 1 2 0\n")
    (tmp_path / "short.npy").write_bytes(full[:-8])
    (tmp_path / "head.npy").write_bytes(full[:7])
    np.save(tmp_path / "objects.npy", np.array([1, "a"], dtype=object), allow_pickle=True)
    np.save(tmp_path / "floats.npy", np.ones(3))
    cases = [
        ("counts.npz", "is a zip archive .*expected one .npy file"),
        ("two.npz", "is a zip archive .*expected one .npy file"),
        ("empty.npy", "is empty; expected a .npy file"),
        ("text.npy", "is not a .npy file"),
        ("short.npy", r"is truncated: its header announces 10 ids of int32"),
        ("head.npy", "has a .npy header that cannot be read"),
        ("objects.npy", "holds Python objects .* never loads"),
        ("floats.npy", "holds a 1-D float64 array; need 1-D integer ids"),
    ]  # fmt: skip
    for name, message in cases:  # AttributeError, EOFError, NumPy's "pickled data" before
        with pytest.raises(ValueError, match=f"read_ids: .*{re.escape(name)} {message}"):
            frd.read_ids(tmp_path / name)
    with pytest.raises(FileNotFoundError, match="read_ids: no such file"):
        frd.read_ids(tmp_path / "missing.npy")
    with pytest.raises(IsADirectoryError, match="read_ids: .* is a directory"):
        frd.read_ids(tmp_path)
    with pytest.raises(TypeError, match="read_ids: path must be a file name"):
        frd.read_ids(None)
    for bad in ("3", True, 2.0):
        with pytest.raises(TypeError, match="read_ids: chunks must be an integer"):
            frd.read_ids(tmp_path / "ids.npy", chunks=bad)
    with pytest.raises(ValueError, match="read_ids: chunks=0 is out of range"):
        frd.read_ids(tmp_path / "ids.npy", chunks=0)
    got = frd.read_ids(os.fsencode(tmp_path / "ids.npy"), chunks=4)  # a bytes path
    assert got.chunks == ((4, 4, 2),)
    _same(got.compute(), np.arange(10, dtype=np.int32))


def test_read_corpus_path_arguments(tmp_path):
    (tmp_path / "t.txt").write_text("a b a c\n")
    want = frd.read_corpus(str(tmp_path / "t.txt"))
    for path in (os.fsencode(tmp_path / "t.txt"), [os.fsencode(tmp_path / "t.txt")]):
        got = frd.read_corpus(path)  # bytes, as open() takes them
        assert got.vocabulary == want.vocabulary
        _same(got.ids.compute(), want.ids.compute())
    for bad in (None, 3):  # "'NoneType' object is not iterable" before
        with pytest.raises(TypeError, match="read_corpus: paths must be a file name"):
            frd.read_corpus(bad)
    with pytest.raises(TypeError, match=r"read_corpus: paths\[1\] must be a file name .* None"):
        frd.read_corpus([str(tmp_path / "t.txt"), None])
    with pytest.raises(TypeError, match="analyze: expected a Corpus, got str"):
        frd.analyze(str(tmp_path / "t.txt"))


def test_local_cluster_arguments_checked_before_starting():
    pytest.importorskip("distributed")
    for kw, exc, message in [
        ({"n_workers": "2"}, TypeError, "n_workers must be an integer"),
        ({"n_workers": 0}, ValueError, "n_workers=0 is out of range"),
        ({"n_workers": 1, "threads_per_worker": 0}, ValueError, "threads_per_worker=0"),
        ({"n_workers": 1, "numba_threads": "a"}, TypeError, "numba_threads must be an integer"),
        ({"n_workers": 1, "numba_threads": 0}, ValueError, "numba_threads=0 is out of range"),
    ]:  # fmt: skip
        n = kw.pop("n_workers")
        with pytest.raises(exc, match=f"local_cluster: {message}"):
            frd.local_cluster(n, **kw)


def _cli_json(capsys, *argv):
    import json

    from fastroute.app.cli import main

    code = main(["analyze", *argv, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    res = json.loads(out)
    res.pop("timings_s")
    return res, res.pop("source")


def test_cli_on_a_cluster_gives_the_single_process_report(client, tmp_path, capsys):
    from fastroute.app.corpus import load_corpus

    lines = load_corpus().splitlines(keepends=True)
    for i, (lo, hi) in enumerate([(0, 4000), (4000, 4001), (4001, len(lines))]):
        (tmp_path / f"part{i}.txt").write_text("".join(lines[lo:hi]), encoding="utf-8")
    pattern = str(tmp_path / "part*.txt")
    args = ("-k", "8", "--related", "4")
    want, src = _cli_json(capsys, pattern, *args)
    assert src["kind"] == "text files" and len(src["paths"]) == 3
    got, src = _cli_json(capsys, pattern, *args, "--scheduler", client.scheduler.address)
    assert src["scheduler"] == client.scheduler.address
    assert got == want
    got, _ = _cli_json(capsys, pattern, *args, "--by", "kl", "--measure", "npmi",
                       "--scheduler", client.scheduler.address)  # fmt: skip
    assert got == _cli_json(capsys, pattern, *args, "--by", "kl", "--measure", "npmi")[0]


def test_cli_workers_on_the_embedded_corpus(capsys):
    want, _ = _cli_json(capsys, "-k", "5")
    got, src = _cli_json(capsys, "-k", "5", "--workers", "2")
    assert src["kind"] == "embedded corpus" and src["workers"] == 2
    assert got == want


def test_cli_dask_errors(tmp_path, capsys):
    import scipy.sparse as sp

    from fastroute.app.cli import main

    sp.save_npz(tmp_path / "c.npz", sp.csr_array(np.eye(3)))
    (tmp_path / "t.txt").write_text("a b c\n")
    (tmp_path / "bad.txt").write_bytes(b"ok\n\xff\n")
    cases = [
        ([str(tmp_path / "c.npz"), "--workers", "2"], "apply to text input"),
        ([str(tmp_path / "c.npz"), str(tmp_path / "t.txt")], "one .npz"),
        ([str(tmp_path / "t.txt"), "--workers", "0"], "--workers must be >= 1"),
        ([str(tmp_path / "*.csv")], "no file matches"),
        ([str(tmp_path / "t.txt"), str(tmp_path / "bad.txt"), "--workers", "1"],
         r"bad.txt is not UTF-8 text .* at byte 3"),
    ]  # fmt: skip
    for argv, message in cases:
        assert main(["analyze", *argv]) == 2
        _, err = capsys.readouterr()
        assert re.search(message, err), (argv, err)
