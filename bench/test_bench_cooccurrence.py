"""Benchmarks: fastroute's cooccurrence against its NumPy/SciPy baseline and the read floor.

Cases and callables: ``fastroute/_bench/``; parametrization and timing:
``bench/conftest.py``.
"""

from __future__ import annotations

from collections.abc import Callable

from fastroute._bench import Case, Impl

OP = "cooccurrence"


def test_cooccurrence(run_case: Callable[[Case, Impl], None], case: Case, impl: Impl) -> None:
    """Time one implementation on one case (after a checked warm-up call)."""
    run_case(case, impl)
