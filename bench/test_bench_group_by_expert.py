"""Benchmarks: fastroute's group_by_expert against its peers and the read floor.

Cases and callables: ``fastroute/_bench/``; parametrization and timing:
``bench/conftest.py``. One pytest-benchmark group per case.
"""

from __future__ import annotations

from collections.abc import Callable

from fastroute._bench import Case, Impl

OP = "group_by_expert"


def test_group_by_expert(run_case: Callable[[Case, Impl], None], case: Case, impl: Impl) -> None:
    """Time one implementation on one case (after a checked warm-up call)."""
    run_case(case, impl)
