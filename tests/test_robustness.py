"""Bad input never crashes, hangs or answers wrongly; fork is safe.

* the sparse fuzzer (``fuzz_sparse.py``) in a child process: a quick run
  here, a long one behind ``-m slow``;
* the fuzzer of the newer surfaces (``fuzz_newer.py``: divergences,
  dispatch/combine, ``fastroute.dask``, the CLI, the ``@njit`` kernels) the
  same way;
* every reproducer of the fuzzing run that found these defects, as a
  regression test (the ones that used to crash the process run in a child);
* ``fork``, ``forkserver`` and ``spawn`` workers after a parallel call,
  under every threading layer this machine has.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import ml_dtypes
import numpy as np
import pytest
import scipy.sparse as sp

import fastroute as fr

HERE = pathlib.Path(__file__).parent


def run_child(code: str, timeout: float = 600, env: dict | None = None):
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
        timeout=timeout, env={**os.environ, **(env or {})},
    )  # fmt: skip


# --------------------------------------------------------------------------- the fuzzer


def _fuzz(seed: int, matrices: int, tmp_path) -> dict:
    log = tmp_path / f"fuzz-{seed}.log"
    proc = subprocess.run(
        [sys.executable, str(HERE / "fuzz_sparse.py"), "--seed", str(seed),
         "--matrices", str(matrices), "--log", str(log)],
        capture_output=True, text=True, timeout=3000,
    )  # fmt: skip
    last = log.read_text().splitlines()[-1:] if log.exists() else []
    assert proc.returncode == 0, (
        f"the fuzzer died (status {proc.returncode}) in: {last}\n{proc.stderr[-3000:]}"
    )
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"\nfuzz seed {seed}: {report['counts']}")
    return report


def _check_report(report: dict, matrices: int) -> None:
    c = report["counts"]
    assert c["wrong"] == 0 and c["other"] == 0, "\n".join(report["failures"])
    assert c["tried"] == 11 * matrices
    assert c["ok"] + c["error"] == c["tried"]
    # not vacuous: both valid results and rejected matrices occur
    assert c["ok"] > c["tried"] // 5 and c["error"] > c["tried"] // 5, c


def test_fuzz_sparse_quick(tmp_path):
    report = _fuzz(seed=0, matrices=150, tmp_path=tmp_path)
    _check_report(report, 150)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fuzz_sparse_long(seed, tmp_path):
    report = _fuzz(seed=seed, matrices=2000, tmp_path=tmp_path)
    _check_report(report, 2000)


NEWER_SURFACES = ("divergence", "sparse", "moe", "dask", "cli", "kernels")


def _fuzz_newer(seed: int, calls: int, tmp_path, *options: str) -> dict:
    """``fuzz_newer.py`` in a child process: its report, after checking
    that the child finished (a crash names the call it died in)."""
    log = tmp_path / f"fuzz-newer-{seed}.log"
    proc = subprocess.run(
        [sys.executable, str(HERE / "fuzz_newer.py"), "--seed", str(seed), "--calls", str(calls),
         "--log", str(log), *options],
        capture_output=True, text=True, timeout=7200,
    )  # fmt: skip
    last = log.read_text().splitlines()[-1:] if log.exists() else []
    assert proc.returncode == 0, (
        f"the fuzzer died (status {proc.returncode}) in: {last}\n{proc.stderr[-3000:]}"
    )
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"\nfuzz_newer seed {seed}: {report['counts']}")
    return report


def _check_newer(report: dict, calls: int) -> None:
    c = report["counts"]
    failures = "\n".join([*report["examples"].values(), "first failures:", *report["failures"]])
    assert c["wrong"] == 0 and c["other"] == 0, f"{report['signatures']}\n{failures}"
    assert calls <= c["tried"] <= calls + 2 and c["ok"] + c["error"] == c["tried"], c
    # not vacuous: every surface ran and gave valid results, and bad input was rejected
    assert set(report["surfaces"]) == set(NEWER_SURFACES), report["surfaces"]
    assert all(s["ok"] > 0 for s in report["surfaces"].values()), report["surfaces"]
    assert c["ok"] > c["tried"] // 5 and c["error"] > c["tried"] // 5, c


def test_fuzz_newer_quick(tmp_path):
    """The divergences (dense and sparse p), dispatch/combine with forged
    routings and out= buffers, fastroute.dask, the CLI's files and options,
    an @njit kernel with bad sizes: no crash, wrong answer or foreign error
    (``fuzz_newer.py``; the dtypes the rest of the suite compiles)."""
    report = _fuzz_newer(0, 300, tmp_path, "--quick")
    _check_newer(report, 300)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fuzz_newer_long(seed, tmp_path):
    """Every dtype and input kind (torch, float16, bfloat16), every @njit
    kernel: 3 x 8000 calls."""
    report = _fuzz_newer(seed, 8000, tmp_path)
    _check_newer(report, 8000)


# --------------------------------------------------------------------------- crashes


def test_malformed_other_formats_raise_in_a_child():
    """Each of these crashed the process inside SciPy's ``tocsr()`` or was
    silently accepted; each must now raise a ValueError naming the problem."""
    proc = run_child(
        """
        import numpy as np, scipy.sparse as sp, fastroute as fr

        def bsr():
            return sp.bsr_array((np.ones((2, 2, 2)), np.array([0, 1]), np.array([0, 1, 2])),
                                shape=(4, 4), blocksize=(2, 2))
        cases = []
        A = bsr(); A.indptr = np.array([0, 1, 100000]); cases.append(("bsr indptr", A))
        A = bsr(); A.indices = np.array([0, 500]); cases.append(("bsr indices", A))
        A = sp.coo_array(np.eye(3)); A.coords = (A.coords[0], np.array([0, 1, 9]))
        cases.append(("coo col", A))
        A = sp.coo_array(np.eye(3)); A.data = A.data[:2]; cases.append(("coo data", A))
        A = sp.dia_array(np.eye(3) + np.eye(3, k=1)); A.offsets = np.array([0, 0])
        cases.append(("dia offsets", A))
        A = sp.lil_array(np.eye(3)); A.rows[1] = [7]; cases.append(("lil col", A))
        A = sp.dok_array(np.eye(3)); A._dict[(5, 0)] = 1.0; cases.append(("dok key", A))
        for name, A in cases:
            for call in (lambda: fr.top_k(A, 1, axis=0), lambda: fr.entropy(A),
                         lambda: fr.normalize_rows(A), lambda: fr.related(A, [0], 1)):
                try:
                    call()
                except ValueError as exc:
                    assert "malformed sparse matrix" in str(exc), (name, exc)
                else:
                    raise AssertionError(f"{name}: no error")
        print("ok")
        """
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


@pytest.mark.parametrize(
    "fmt, damage, message",
    [
        ("bsr", lambda A: setattr(A, "indptr", np.array([0, 1, 100000])), "indptr"),
        ("bsr", lambda A: setattr(A, "indices", np.array([0, 500])), "block column index 500"),
        ("coo", lambda A: setattr(A, "data", A.data[:2]), "same length"),
        ("coo", lambda A: setattr(A, "coords", (A.coords[0] - 1, A.coords[1])), "row index -1"),
        ("dia", lambda A: setattr(A, "offsets", np.r_[A.offsets[1:], A.offsets[1]]), "duplicate"),
        ("dia", lambda A: setattr(A, "data", A.data[:, None]), "DIA data has shape"),
        ("lil", lambda A: A.rows.__setitem__(0, [0, 1, 2]), "LIL row 0 has 3 column indices"),
        ("lil", lambda A: A.rows.__setitem__(0, [4, 1]), "column index 4"),
        ("dok", lambda A: A._dict.__setitem__((0, -1), 2.0), "column index -1"),
        ("dok", lambda A: A._dict.__setitem__(("a", 0), 2.0), "DOK row indices must be"),
        ("dok", lambda A: A._dict.__setitem__((0,), 2.0), "integer pairs"),
    ],
)
def test_malformed_other_formats_messages(fmt, damage, message):
    A = getattr(sp, f"{fmt}_array")(np.arange(16.0).reshape(4, 4) % 3)
    if fmt == "bsr":
        A = sp.bsr_array((np.ones((2, 2, 2)), np.array([0, 1]), np.array([0, 1, 2])),
                         shape=(4, 4), blocksize=(2, 2))  # fmt: skip
    damage(A)
    with pytest.raises(ValueError, match="malformed sparse matrix") as info:
        fr.top_k(A, 1)
    assert message in str(info.value)


def test_group_by_expert_huge_block_size():
    # used to overflow the padded offsets (int64) and crash
    proc = run_child(
        """
        import numpy as np, fastroute as fr
        for bs in (2**62, 2**40):
            try:
                fr.group_by_expert(np.array([0, 1, 2, 3]), 4, block_size=bs)
            except ValueError as exc:
                assert "block_size" in str(exc), exc
            else:
                raise AssertionError(bs)
        print("ok")
        """
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
    with pytest.raises(ValueError, match=r"block_size=\d+ is out of range"):
        fr.group_by_expert(np.array([0]), 4, block_size=2**63)
    # all skipped: nothing to pad, whatever the block size
    order, offsets, _ = fr.group_by_expert(np.array([-1, -1]), 3, block_size=2**62)
    assert order.size == 0 and offsets.tolist() == [0, 0, 0, 0]
    order, offsets, counts = fr.group_by_expert(np.array([2, 0, 2]), 3, block_size=4)
    assert counts.tolist() == [1, 0, 2]
    assert offsets.tolist() == [0, 4, 4, 8]
    assert order.tolist() == [1, 3, 3, 3, 0, 2, 3, 3]


# --------------------------------------------------------------------------- wrong answers


@pytest.mark.parametrize("fn", ["route", "expert_choice"])
@pytest.mark.parametrize("kind", ["float16", "bfloat16"])
def test_byte_swapped_half_logits(fn, kind):
    x = np.array([[0.5, 2.0, 1.0, -1.0], [3.0, -2.0, 0.25, 1.5]], np.float32)
    dt = np.dtype(np.float16) if kind == "float16" else np.dtype(ml_dtypes.bfloat16)
    native = x.astype(dt)
    swapped = native.astype(dt.newbyteorder(">" if sys.byteorder == "little" else "<"))
    assert not swapped.dtype.isnative and np.array_equal(swapped.astype(np.float32), x)
    if fn == "route":
        a, b = fr.route(native, 2), fr.route(swapped, 2)
        assert np.array_equal(a.experts, b.experts) and np.array_equal(a.weights, b.weights)
        assert a.experts.tolist() == [[1, 2], [0, 3]]
    else:
        a, b = fr.expert_choice(native, 1), fr.expert_choice(swapped, 1)
        assert np.array_equal(a.tokens, b.tokens) and np.array_equal(a.weights, b.weights)


@pytest.mark.parametrize("shape", [(3, -3), (-3, 3), (3, 2.5), (3,)])
def test_bad_sparse_shape(shape):
    A = sp.csr_array(np.eye(3))
    A._shape = shape
    with pytest.raises(ValueError, match="shape"):
        fr.entropy(A)
    with pytest.raises(ValueError, match="shape"):
        fr.top_k(A, 1)


def test_row_sums_that_overflow():
    P = fr.normalize_rows(np.array([[1.7e308, 1.7e308], [1.0, 3.0], [1e-320, 1e-320]]))
    assert P.toarray().tolist() == [[0.5, 0.5], [0.25, 0.75], [0.5, 0.5]]
    big = np.array([[1.7e308, 1.7e308, 0.0], [1.0, 1.0, 2.0]])
    r = fr.related(big, [0, 1], 2)
    assert r.values.tolist() == [[0.5, 0.5], [0.5, 0.25]]
    assert r.indices.tolist() == [[0, 1], [2, 0]]
    # PMI is unchanged when every count is scaled by one power of two
    small = big * 2.0**-900
    for measure in ("pmi", "ppmi"):
        a = fr.related(big, [0, 1], 3, measure=measure)
        b = fr.related(small, [0, 1], 3, measure=measure, min_count=2.0**-1000)
        assert np.array_equal(a.indices, b.indices)
        np.testing.assert_allclose(a.values, b.values, rtol=1e-12, atol=1e-12)
        assert np.isnan(a.values[a.indices < 0]).all()
        assert np.isfinite(a.values[a.indices >= 0]).all()
    h = fr.top_entropy(big, 2, base=2)
    assert h.values.tolist() == [1.5, 1.0]


def test_float16_sparse_is_rejected_dense_is_widened():
    A = sp.csr_array(np.ones((2, 2), np.float32))
    A.data = A.data.astype(np.float16)
    B = sp.coo_array(np.ones((2, 2), np.float32))
    B.data = B.data.astype(np.float16)  # SciPy's own tocsr() fails on this one
    calls = [(fr.top_k, (1,), {}), (fr.top_k, (1,), {"format": "csr"}), (fr.entropy, (), {}),
             (fr.normalize_rows, (), {})]  # fmt: skip
    for M in (A, B):
        for fn, args, kw in calls:
            with pytest.raises(TypeError, match="float16 sparse data is not supported"):
                fn(M, *args, **kw)
    P = fr.normalize_rows(np.array([[1, 3]], np.float16))
    assert P.dtype == np.float32 and P.toarray().tolist() == [[0.25, 0.75]]


def test_bias_checked_in_the_compute_dtype():
    x = np.zeros((1, 4), np.float32)
    with pytest.raises(ValueError, match=r"bias\[2\] = .* not a finite float32"):
        fr.route(x, 2, bias=np.array([0, 0, 1e300, 0]))
    # float64 logits: 1e300 is finite, so expert 2 is chosen (weights tie: lower id first)
    r = fr.route(x.astype(np.float64), 2, bias=np.array([0, 0, 1e300, 0]))
    assert r.experts[0].tolist() == [0, 2] and r.weights[0].tolist() == [0.5, 0.5]


# --------------------------------------------------------------------------- error types


def test_sizes_beyond_the_machine_are_value_errors():
    ids = np.array([0, 1, 2, 3])
    for E in (2 * 10**9, 10**12, 2**63, 2**70):
        with pytest.raises(ValueError, match="num_experts"):
            fr.group_by_expert(ids, E)
    with pytest.raises(ValueError, match="block_size"):
        fr.group_by_expert(ids, 4, block_size=2**40)
    for vocab in (2 * 10**9, 10**12, 2**63):
        with pytest.raises(ValueError, match="vocab_size"):
            fr.cooccurrence(np.array([0, 1]), vocab)
    with pytest.raises(np.exceptions.AxisError):
        fr.top_k(np.ones(3), 1, axis=2**70)
    with pytest.raises(np.exceptions.AxisError):
        fr.entropy(np.ones(3), axis=-(2**70))


def test_wide_windows_count_the_text():
    t = np.array([0, 1, 2, 1])
    want = fr.cooccurrence(t, 3, window=3).toarray()
    for w in (4, 2**63, 10**30):
        assert np.array_equal(fr.cooccurrence(t, 3, window=w).toarray(), want)


def test_min_capacity_checked_without_capacity():
    x = np.zeros((2, 4), np.float32)
    with pytest.raises(ValueError, match="min_capacity"):
        fr.route(x, 2, min_capacity=-1)
    with pytest.raises(TypeError, match="min_capacity"):
        fr.route(x, 2, min_capacity="x")


def test_many_columns_memory_scales_with_entries():
    """2**31 columns and three entries: unsorted rows and PMI must not
    allocate per column (that would be 16 GB)."""
    proc = run_child(
        """
        import resource, numpy as np, scipy.sparse as sp, fastroute as fr
        n = 2**31
        A = sp.csr_array((np.array([1.0, 2.0, 3.0]), np.array([5, 1, 2**31 - 1]),
                          np.array([0, 3, 3])), shape=(2, n))
        v, i = fr.top_k(A, 2, explicit=True)
        assert i.tolist() == [[2**31 - 1, 1], [-1, -1]], i
        P = fr.normalize_rows(A)
        assert P.indices.tolist() == [1, 5, 2**31 - 1]
        r = fr.related(A, 0, 2, measure="pmi")  # all PMI 0 here: ties, lower column first
        assert r.indices.tolist() == [1, 5] and r.values.tolist() == [0.0, 0.0], r
        C = sp.coo_array((np.ones(2), (np.array([1, 0]), np.array([n - 1, 3]))), shape=(2, n))
        assert fr.entropy(C).tolist() == [0.0, 0.0]
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        """
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert int(proc.stdout.split()[-1]) < 2 * 2**20  # peak RSS in KiB: below 2 GiB


# --------------------------------------------------------------------------- fork safety


def test_workers_after_a_parallel_call():
    """A parallel call, then a pool of each start method (fork, forkserver,
    spawn) mapping fastroute calls: the children finish with the parent's
    bits, the parent keeps its parallel path, and no Numba threading layer
    was ever started (``_fork_child.py``): fastroute's parallelism is its
    own pool of Python threads, which a forked child recreates."""
    proc = subprocess.run(
        [sys.executable, str(HERE / "_fork_child.py")], capture_output=True, text=True,
        timeout=900, env={**os.environ, "NUMBA_NUM_THREADS": "2"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    lines = proc.stdout.split()
    assert lines[0] == "no-threading-layer" and lines[-1] == "ok", proc.stdout
