"""The examples run, on small sizes and without torch."""

from __future__ import annotations

import pathlib
import sys

import ml_dtypes
import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "examples"))

import moe_block as M  # noqa: E402


def _reference_block(hidden, router, experts, k):
    # each token: the k experts of the largest softmax weights (ties to the
    # lower id), renormalized, the sum of weight x expert FFN
    logits = hidden.astype(np.float32) @ router
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    out = np.zeros(hidden.shape, np.float64)
    for t in range(hidden.shape[0]):
        best = np.argsort(-p[t], kind="stable")[:k]
        w = p[t, best] / p[t, best].sum()
        for e, we in zip(best, w, strict=True):
            out[t] += we * M.numpy_ffn(hidden[t : t + 1], experts[e])[0]
    return out


@pytest.mark.parametrize("dtype", [np.float32, ml_dtypes.bfloat16])
def test_moe_block_matches_a_per_token_reference(dtype):
    router, experts = M.make_weights(32, 16, 8, dtype, seed=3)
    hidden = np.random.default_rng(4).standard_normal((50, 32)).astype(np.float32)
    timings: dict[str, float] = {}
    got = M.moe_forward(hidden.astype(dtype), router, experts, 2, ffn=M.numpy_ffn, timings=timings)
    assert got.dtype == np.dtype(dtype) and got.shape == (50, 32)
    assert set(timings) == {"router GEMM", "route", "dispatch", "expert FFNs", "combine"}
    want = _reference_block(hidden.astype(dtype), router, experts, 2)
    tol = 1e-5 if dtype == np.float32 else 3e-2
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=tol, atol=tol)
