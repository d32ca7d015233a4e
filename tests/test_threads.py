"""Determinism: the same bits for any thread count, any batch size, any
Python thread; serial and parallel launches on both sides of the executor's
threshold."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest

import fastroute as fr
from fastroute import _execute

N = 64  # row length
W = _execute.MIN_WORK  # the work (elements x cost) at which a call goes parallel


def _par(executor_jobs):
    """For each executor launch: True if it ran in parallel (several jobs)."""
    return [jobs > 1 for _, jobs in executor_jobs]


def _probs(rows, n=N, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    p = (rng.random((rows, n)) ** 6).astype(dtype)
    p[rng.random((rows, n)) < 0.1] = 0.0
    if n > 11:
        p[:, 7] = p[:, 9]  # ties
        p[::5, 11] = np.nan
    return p


def _logits(rows, n=N, dtype=np.float64, seed=1):
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 8, (rows, n)).astype(dtype)
    z[rng.random((rows, n)) < 0.1] = -np.inf
    return z


# name -> (function of the batch returning a tuple of arrays, batch maker, dtype,
# the elements at which it goes parallel: the threshold over the kernel's cost)
CASES = {
    "top_k f64 k=5": (lambda x: fr.top_k(x, 5), _probs, np.float64, W),
    "top_k f64 k=40 unsorted": (
        lambda x: fr.top_k(x, 40, sorted=False, mode="smallest"),
        _probs,
        np.float64,
        W,
    ),
    "top_k f32 k=5 (key kernel)": (lambda x: fr.top_k(x, 5), _probs, np.float32, W),
    "entropy f64": (lambda x: (fr.entropy(np.nan_to_num(x)),), _probs, np.float64, W // 2),
    "entropy f64 unnormalized": (
        lambda x: (fr.entropy(np.nan_to_num(x), normalize=False),),
        _probs,
        np.float64,
        W // 2,
    ),
    "entropy f32": (lambda x: (fr.entropy(np.nan_to_num(x)),), _probs, np.float32, W),
    "entropy f32 unnormalized": (
        lambda x: (fr.entropy(np.nan_to_num(x), normalize=False),),
        _probs,
        np.float32,
        W,
    ),
    "logits f64": (lambda x: (fr.entropy_from_logits(x),), _logits, np.float64, W // 2),
    "logits f32": (lambda x: (fr.entropy_from_logits(x),), _logits, np.float32, W // 2),
}


def _call(case, x):
    fn = CASES[case][0]
    return [np.asarray(a) for a in fn(x)]


def _make(case, rows):
    _, maker, dtype = CASES[case][:3]
    return maker(rows, dtype=dtype)


def _threshold(case):
    return CASES[case][3]


def _same_bits(a_list, b_list):
    return all(
        a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
        for a, b in zip(a_list, b_list, strict=True)
    )


@pytest.mark.parametrize("case", list(CASES))
def test_bits_independent_of_thread_count_and_batch(case, restore_numba_threads, executor_jobs):
    if restore_numba_threads < 2:
        pytest.fail("needs NUMBA_NUM_THREADS >= 2 to exercise the parallel driver")
    big = _make(case, _threshold(case) // N + 37)  # above the threshold: parallel
    small = big[: _threshold(case) // N - 1]  # below: serial

    numba.set_num_threads(1)
    executor_jobs.clear()
    one = _call(case, big)
    assert executor_jobs and not any(_par(executor_jobs)), "one thread must take the serial driver"

    numba.set_num_threads(2)
    executor_jobs.clear()
    two = _call(case, big)
    assert executor_jobs and all(_par(executor_jobs)), "large input with 2 threads must go parallel"
    assert _same_bits(one, two), "result depends on the thread count"

    executor_jobs.clear()
    part = _call(case, small)
    assert not any(_par(executor_jobs)), "below the threshold must go serial"
    assert _same_bits(part, [a[: len(small)] for a in two]), "result depends on the batch size"

    # every row alone gives the bits it had inside the batches
    for r in (0, 1, 5, len(small) - 1, len(big) - 1):
        alone = _call(case, big[r : r + 1])
        assert _same_bits(alone, [a[r : r + 1] for a in two]), f"row {r} differs alone"


BITS_CASES = [(np.float32, n) for n in (12, 63, 64, 65, 300)]
BITS_CASES += [(np.float64, n) for n in (1, 8, 32, 33)]


@pytest.mark.parametrize(
    ("dtype", "n"), BITS_CASES, ids=[f"{d.__name__}-{n}" for d, n in BITS_CASES]
)
def test_entropy_bits_any_threads_batch_and_layout(dtype, n, restore_numba_threads, executor_jobs):
    """The entropy kernels group short rows into SIMD lanes (float32 up to 64
    entries, float64 up to 32) and long rows into blocks; a row's bits must
    not depend on its group, the thread count, the batch or the layout."""
    rows = W // n + 77
    p = np.nan_to_num(_probs(rows, n=n, dtype=dtype, seed=n))
    p[3] = 0.0  # an all-zero row
    p[4, :] = 1e-7
    p[4, 0] = 1.0  # near-deterministic: the exact fallback inside a group
    results = []
    for threads in (1, 2):
        numba.set_num_threads(threads)
        for normalize in (True, False):
            results.append((threads, normalize, fr.entropy(p, normalize=normalize)))
    assert any(_par(executor_jobs)) and not all(_par(executor_jobs))
    for normalize in (True, False):
        a, b = (r for t, nz, r in results if nz == normalize)
        assert a.tobytes() == b.tobytes()
        ref = a
        for lo, hi in ((0, 1), (3, 4), (4, 5), (5, 6), (0, 70), (63, 130), (rows - 3, rows)):
            assert fr.entropy(p[lo:hi], normalize=normalize).tobytes() == ref[lo:hi].tobytes()
        pt = np.asfortranarray(p)  # strided rows
        assert fr.entropy(pt, normalize=normalize).tobytes() == ref.tobytes()
        assert fr.entropy(p.T, axis=0, normalize=normalize).tobytes() == ref.tobytes()


@pytest.mark.parametrize("dtype", [np.float64])
def test_single_long_row_is_one_chunk(dtype, restore_numba_threads, executor_jobs):
    """One row with more work than the threshold: rows are the executor's
    items, so it runs as one chunk, with the same bits on any thread count."""
    p = _probs(2, n=W + 3, dtype=dtype)[:1]
    z = _logits(1, n=W + 3, dtype=dtype)
    results = []
    for threads in (1, 2):
        numba.set_num_threads(threads)
        results.append(
            [
                *fr.top_k(p, 50),
                *fr.top_k(p, 3),
                fr.entropy(np.nan_to_num(p)),
                fr.entropy_from_logits(z),
            ]
        )
    assert executor_jobs and not any(_par(executor_jobs))
    assert _same_bits(results[0], results[1])


def test_around_threshold_exactly(restore_numba_threads, executor_jobs):
    numba.set_num_threads(2)
    x = _probs(_execute.MIN_WORK // N, dtype=np.float64)
    executor_jobs.clear()
    at = fr.top_k(x, 4)
    assert _par(executor_jobs) == [True]
    below = fr.top_k(x[:-1], 4)
    assert not any(_par(executor_jobs)[1:])
    np.testing.assert_array_equal(at.indices[:-1], below.indices)
    assert at.values[:-1].tobytes() == below.values.tobytes()


@pytest.mark.parametrize("half", ["float16", "bfloat16"])
def test_half_floats_in_parallel_batches_match_float32(half, restore_numba_threads, executor_jobs):
    """Half floats are read as bits in every chunk of a parallel batch: the
    results equal the float32 results exactly."""
    import ml_dtypes

    numba.set_num_threads(2)
    dtype = np.float16 if half == "float16" else ml_dtypes.bfloat16
    x16 = np.nan_to_num(_probs(20000, n=96, dtype=np.float32, seed=3)).astype(dtype)
    x32 = x16.astype(np.float32)
    v16, i16 = fr.top_k(x16, 6)
    v32, i32 = fr.top_k(x32, 6)
    np.testing.assert_array_equal(i16, i32)
    assert v16.dtype == x16.dtype and v16.astype(np.float32).tobytes() == v32.tobytes()
    assert fr.entropy(x16).tobytes() == fr.entropy(x32).tobytes()
    assert fr.entropy_from_logits(x16).tobytes() == fr.entropy_from_logits(x32).tobytes()
    main = [jobs for name, jobs in executor_jobs if name != "exact_rows"]  # a few rows
    assert len(main) == 6 and min(main) > 1, executor_jobs


SCRIPT = textwrap.dedent(
    """
    import sys
    from concurrent.futures import ThreadPoolExecutor

    import numba
    import numpy as np

    import fastroute as fr
    from fastroute._execute import MIN_WORK

    rng = np.random.default_rng(0)
    big = rng.random((MIN_WORK // 64 + 100, 64))
    big[:, 3] = big[:, 5]
    big32 = big.astype(np.float32)
    small = big[:50]
    z = rng.normal(0, 5, big.shape)

    def work(i):
        x = (big, big32, small)[i % 3]
        out = [*fr.top_k(x, 1 + i % 7), *fr.top_k(x, 30, mode="smallest")]
        out.append(fr.entropy(x))
        out.append(fr.entropy_from_logits(z if i % 2 else z[:40]))
        return i, out

    # round 1: first calls (compiling) from 8 threads at once
    with ThreadPoolExecutor(8) as ex:
        first = list(ex.map(work, range(16)))
    # round 2: many concurrent calls on warm kernels
    with ThreadPoolExecutor(8) as ex:
        second = list(ex.map(work, range(200)))

    numba.set_num_threads(1)
    expected = {}
    for i, out in first + second:
        if i not in expected:
            expected[i] = work(i)[1]
        for a, b in zip(out, expected[i], strict=True):
            if a.dtype != b.dtype or a.shape != b.shape or a.tobytes() != b.tobytes():
                print("MISMATCH in call", i, file=sys.stderr)
                sys.exit(3)
    # spot-check against NumPy
    v, idx = fr.top_k(big, 3)
    ref = np.argsort(-big, axis=1, kind="stable")[:, :3]
    assert np.array_equal(idx, ref)
    print("THREADS-OK")
    """
)


def test_eight_python_threads_in_subprocess():
    """Eight Python threads calling at once, first calls (compiling) among
    them: every result has the bits of the same call on one thread."""
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NUMBA_NUM_THREADS": "2"},
    )
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-5000:]}"
    )
    assert "THREADS-OK" in proc.stdout
