"""Benchmarks: fastroute's combine against PyTorch and the memory floor.

Cases and callables: ``fastroute/_bench/``; parametrization and timing:
``bench/conftest.py``. One pytest-benchmark group per case.
"""

from __future__ import annotations

from collections.abc import Callable

from fastroute._bench import Case, Impl

OP = "combine"


def test_combine(run_case: Callable[[Case, Impl], None], case: Case, impl: Impl) -> None:
    """Time one implementation on one case (after a checked warm-up call)."""
    run_case(case, impl)
