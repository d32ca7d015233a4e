"""Benchmarks: fastroute.top_k against the NumPy recipe, torch.topk, jax.lax.top_k and the read floor.

Cases and callables: ``fastroute/_bench/``; parametrization and timing:
``bench/conftest.py``. One pytest-benchmark group per case.
"""

from __future__ import annotations

from collections.abc import Callable

from fastroute._bench import Case, Impl

OP = "top_k"


def test_top_k(run_case: Callable[[Case, Impl], None], case: Case, impl: Impl) -> None:
    """Time one implementation on one case (after a checked warm-up call)."""
    run_case(case, impl)
