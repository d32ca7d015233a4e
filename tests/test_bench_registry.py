"""The benchmark registry cannot rot: every case runs once, at a tiny shape,
through fastroute, both floors and every installed peer, and the peers agree
with fastroute; the floor kernels compute what they claim."""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest

from fastroute import _bench as B


def _tiny(case: B.Case) -> B.Case:
    """The case at a shape small enough for the normal test run."""
    rows, cols = case.shape
    if case.op == "cooccurrence":
        return dataclasses.replace(case, shape=(3000, 400))
    if case.op in B.SPARSE_OPS:
        return dataclasses.replace(case, shape=(300, 80))
    small = dataclasses.replace(case, shape=(min(rows, 3 if cols > 10_000 else 300), cols))
    if case.op == "expert_choice":
        small = dataclasses.replace(small, k=small.shape[0] * 2 // cols)
    return small


_TINY = [_tiny(c) for c in B.CASES]


@pytest.mark.parametrize("case", _TINY, ids=[c.id for c in _TINY])
def test_every_case_runs_and_agrees(case: B.Case) -> None:
    x = B.make_input(case)
    reference = None
    ran = []
    for impl in B.impls(case.op):
        if B.missing_requirements(impl):
            continue
        result = B.make_callable(case, impl, x)()
        if impl.role == "fastroute":
            reference = result
        diff = B.check_agreement(case, impl, x, reference, result)
        assert diff is None, diff
        ran.append(impl.role)
    assert ran[:2] == ["fastroute", "read_floor"]
    has_compute = any(i.role == "compute_floor" for i in B.impls(case.op))
    assert ("compute_floor" in ran) == has_compute


def test_every_operation_has_cases_and_the_registry_rejects_unknown_names() -> None:
    assert set(B.OPS) == set(B.REGISTRY) == {c.op for c in B.CASES}
    assert len({c.id for c in B.CASES}) == len(B.CASES)
    for op in B.OPS:
        keys = [i.key for i in B.impls(op)]
        assert len(set(keys)) == len(keys)
        assert all(i.role in B.ROLES for i in B.impls(op))
    with pytest.raises(ValueError, match="unknown operation"):
        B.impls("entropy_of_everything")
    with pytest.raises(ValueError, match="no implementation"):
        B.get_impl("top_k", "cupy")


def test_a_wrong_peer_is_caught() -> None:
    """The agreement check fails on a recipe that computes something else."""
    case = _tiny(next(c for c in B.CASES if c.op == "route" and c.k == 2))
    x = B.make_input(case)
    fastroute = B.impls("route")[0]
    ref = B.make_callable(case, fastroute, x)()
    import fastroute as fr

    wrong = fr.route(x, case.k, renormalize=False, stats=False)
    peer = dataclasses.replace(fastroute, role="peer", label="wrong")
    assert "weights" in B.check_agreement(case, peer, x, ref, wrong)
    shuffled = wrong._replace(weights=ref.weights, order=ref.order[::-1].copy())
    assert "order" in B.check_agreement(case, peer, x, ref, shuffled)


@pytest.mark.parametrize("shape", [(5000, 8), (300, 64), (40, 256), (3, 40_000), (1, 8)])
def test_floor_kernels_compute_what_they_claim(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(list(shape))
    z = (2 * rng.standard_normal(shape)).astype(np.float32)
    p = np.exp(z - z.max(1, keepdims=True))
    p = (p / p.sum(1, keepdims=True)).astype(np.float32)
    p64, z64 = p.astype(np.float64), z.astype(np.float64)
    want = -(p64 * np.log(p64)).sum()
    assert abs(B.entropy_floor(p) - want) <= 1e-5 * want
    sums = np.exp(z64 - z64.max(1, keepdims=True)).sum(1)
    np.testing.assert_allclose(B.softmax_floor(z), sums, rtol=1e-5)
    import ml_dtypes

    zb = z.astype(ml_dtypes.bfloat16)
    zb64 = zb.astype(np.float64)
    np.testing.assert_allclose(
        B.softmax_floor(zb), np.exp(zb64 - zb64.max(1, keepdims=True)).sum(1), rtol=1e-5
    )
    assert B.read_floor(p) == pytest.approx(p64.sum(), rel=1e-5)


def test_csr_floors_read_the_whole_matrix() -> None:
    case = _tiny(next(c for c in B.CASES if c.op == "csr_entropy"))
    A = B.make_input(case)
    d = A.data.astype(np.float64)
    h, s = B.csr_entropy_floor(A)
    assert h == pytest.approx(-(d * np.log(d)).sum(), rel=1e-5)
    assert s == A.indptr.sum()
    assert B.input_nbytes(A) == A.data.nbytes + A.indices.nbytes + A.indptr.nbytes
    sums = B.read_floor(A.data, A.indices, A.indptr)
    assert sums[1] == A.indices.sum() and sums[2] == A.indptr.sum()


def test_divergence_floors_compute_what_they_claim() -> None:
    case = _tiny(next(c for c in B.CASES if c.op == "relative_entropy" and c.shape[1] == 64))
    x = B.make_input(case)
    p, q = x.p.astype(np.float64), x.q.astype(np.float64)
    want = (p * np.log(p / q)).sum()
    assert B.kl_floor(x.p, x.q) == pytest.approx(want, rel=1e-4)
    assert B.input_nbytes(x) == x.p.nbytes + x.q.nbytes
    case = _tiny(next(c for c in B.CASES if c.op == "csr_relative_entropy"))
    A, bg = B.make_input(case)
    d, g = A.data.astype(np.float64), bg[A.indices].astype(np.float64)
    s, r = B.csr_kl_floor(A, bg)
    assert s == pytest.approx((d * np.log(d / g)).sum(), rel=1e-4)
    assert r == A.indptr.sum()
    with pytest.raises(TypeError, match="float32"):
        B.kl_floor(p, q)


def test_floors_reject_other_dtypes() -> None:
    with pytest.raises(TypeError, match="float32"):
        B.entropy_floor(np.ones((2, 3)))
    with pytest.raises(TypeError, match="float32 or bfloat16"):
        B.softmax_floor(np.ones((2, 3)))


def test_ratios_use_the_chosen_statistic() -> None:
    rec = [
        {"op": "top_k", "case": "c", "impl": "fastroute", "role": "fastroute",
         "median_s": 2.0, "min_s": 1.0},
        {"op": "top_k", "case": "c", "impl": "read_floor", "role": "read_floor",
         "median_s": 1.0, "min_s": 0.25},
        {"op": "top_k", "case": "c", "impl": "numpy", "role": "peer",
         "median_s": 8.0, "min_s": 2.0},
    ]  # fmt: skip
    B.add_ratios(rec, "min")
    assert rec[0]["read_floor_ratio"] == 4.0 and rec[2]["speedup"] == 2.0
    assert "÷ compute floor" in B.render_tables(rec, stat="min")
    table = B.render_tables(rec, stat="min")
    assert "| c | 1 s | 2.00× | n/a | n/a | 4.00× | — |" in table
    B.add_ratios(rec, "median")
    assert rec[0]["read_floor_ratio"] == 2.0 and rec[2]["speedup"] == 4.0


_OPTIONAL = {"scipy": ("scipy", "scipy.sparse"), "ml_dtypes": ("ml_dtypes",)}
_KINDS = {(c.op, c.dtype): c for c in _TINY}  # one case of each operation and dtype


@pytest.mark.parametrize("case", list(_KINDS.values()), ids=[c.id for c in _KINDS.values()])
def test_a_case_builds_its_input_with_only_what_it_declares(case: B.Case, monkeypatch) -> None:
    """``case_requirements`` names every optional module an input needs: with
    the others blocked the input still builds, so the bench can skip exactly
    the cases whose module is missing (issue 27 item 13)."""
    needs = B.case_requirements(case)
    for module, names in _OPTIONAL.items():
        if module not in needs:
            for name in names:
                monkeypatch.setitem(sys.modules, name, None)
    B.make_input(case)


def test_missing_modules_and_install_hint(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ml_dtypes", None)
    assert B.missing_modules(["numpy", "ml_dtypes", "no_such_module_xyz", "no_such.sub"]) == [
        "ml_dtypes", "no_such_module_xyz", "no_such.sub"
    ]  # fmt: skip
    assert B.install_hint(["scipy", "ml_dtypes"]) == "pip install scipy ml_dtypes"
    bf16 = [c for c in B.CASES if c.dtype == "bfloat16"]
    assert bf16 and all("ml_dtypes" in B.case_requirements(c) for c in bf16)
    sparse = [c for c in B.CASES if c.op in B.SPARSE_OPS]
    assert sparse and all(B.case_requirements(c) == ("scipy",) for c in sparse)
