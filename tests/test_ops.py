"""Generic properties of every dense operation in the registry (``ops.py``):
the reference, half floats, torch tensors, thread counts with the parallel
launch asserted, a row alone, and inputs left unmodified."""

from __future__ import annotations

import ml_dtypes
import numba
import numpy as np
import pytest
from ops import OPS

from fastroute._dtypes import is_torch, to_numpy

IDS = [op.name for op in OPS]
HALVES = {"bfloat16": ml_dtypes.bfloat16, "float16": np.float16}


def _np(a):
    """A result as a NumPy array of its raw bytes' dtype (torch included)."""
    a = to_numpy(a, "result", "test") if is_torch(a) else np.asarray(a)
    return a


def _bits(results) -> list[bytes]:
    return [(_np(a).dtype.itemsize, _np(a).shape, _np(a).tobytes()) for a in results]


CHECKED = [op for op in OPS if op.reference is not None]  # the others: in their own files


@pytest.mark.parametrize("op", CHECKED, ids=[op.name for op in CHECKED])
def test_matches_reference(op):
    x = op.make(12, np.float32)
    got = op.call(x)
    want = op.reference(x.astype(np.float64))
    for g, w in zip(got, want, strict=True):
        g, w = np.asarray(g, np.float64), np.asarray(w, np.float64)
        np.testing.assert_allclose(g, w, rtol=op.rtol, atol=op.rtol * 1e-3, equal_nan=True)


@pytest.mark.parametrize("half", list(HALVES))
@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_half_floats_are_their_float32_widening(op, half):
    """A bfloat16/float16 input gives the bits of the same call on its
    exactly widened float32 copy (values that keep the input dtype: that
    call's values, which are exact in it)."""
    dtype = HALVES[half]
    x = op.make(op.rows, np.float32).astype(dtype)
    got = op.call(x)
    want = op.call(x.astype(np.float32))
    if op.as_half is not None:
        want = op.as_half(want, dtype)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape
        assert g.tobytes() == w.tobytes()


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_torch_tensors(op):
    """torch CPU tensors (requires_grad, bfloat16) give the NumPy bits."""
    torch = pytest.importorskip("torch")  # optional: not among the test extras
    x = op.make(op.rows, np.float32)
    t = torch.from_numpy(x).requires_grad_()
    assert _bits(op.call(t)) == _bits(op.call(x))
    b = torch.from_numpy(x).to(torch.bfloat16)
    assert _bits(op.call(b)) == _bits(op.call(b.float().numpy().astype(ml_dtypes.bfloat16)))


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_threads_and_batches(op, restore_numba_threads, small_parallel_work, executor_jobs):
    """The same bits on 1 and 2 threads, with the 2-thread call asserted to
    have launched parallel jobs; every row alone gives its bits in the
    batch; the input is not modified."""
    x = op.make(op.rows, np.float32)
    before = x.copy()
    numba.set_num_threads(1)
    one = op.call(x)
    numba.set_num_threads(2)
    executor_jobs.clear()
    two = op.call(x)
    assert any(jobs > 1 for _, jobs in executor_jobs), executor_jobs
    assert _bits(one) == _bits(two)
    for r in (0, 1, op.rows // 2, op.rows - 1) if op.rowwise else ():
        alone = op.call(x[r : r + 1])
        assert _bits(alone) == _bits([np.asarray(a)[r : r + 1] for a in two]), r
    assert x.tobytes() == before.tobytes()


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_layouts(op):
    """Strided and read-only batches give the C-order bits (Fortran order and
    the other layouts: in each operation's own tests, which compile them anyway)."""
    x = op.make(op.rows, np.float32)
    want = _bits(op.call(x))
    wide = np.zeros((op.rows, 2 * x.shape[1]), x.dtype)
    wide[:, ::2] = x
    ro = x.copy()
    ro.flags.writeable = False
    for v in (wide[:, ::2], ro):
        assert _bits(op.call(v)) == want
