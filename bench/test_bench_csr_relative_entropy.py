"""Benchmarks: fastroute.relative_entropy of CSR rows against a dense background, against a SciPy recipe and the floors.

Cases and callables: ``fastroute/_bench/``; parametrization and timing:
``bench/conftest.py``. One pytest-benchmark group per case.
"""

from __future__ import annotations

from collections.abc import Callable

from fastroute._bench import Case, Impl

OP = "csr_relative_entropy"


def test_csr_relative_entropy(
    run_case: Callable[[Case, Impl], None], case: Case, impl: Impl
) -> None:
    """Time one implementation on one case (after a checked warm-up call)."""
    run_case(case, impl)
