"""Benchmarks: fastroute's csr_top_k against its NumPy/SciPy baseline and the read floor.

Cases and callables: ``fastroute/_bench/``; parametrization and timing:
``bench/conftest.py``.
"""

from __future__ import annotations

from collections.abc import Callable

from fastroute._bench import Case, Impl

OP = "csr_top_k"


def test_csr_top_k(run_case: Callable[[Case, Impl], None], case: Case, impl: Impl) -> None:
    """Time one implementation on one case (after a checked warm-up call)."""
    run_case(case, impl)
