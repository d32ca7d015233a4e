"""pytest-benchmark setup for the fastroute benchmark suite.

Run explicitly (the normal test run only collects ``tests/`` and passes
``--benchmark-disable``)::

    python -m pytest bench --benchmark-enable --benchmark-json=bench.json
    python bench/report.py bench.json --readme README.md

Cases, inputs and callables come from the registry in ``fastroute/_bench/``,
which ``python -m fastroute bench`` uses too. A test module sets ``OP`` and
asks for the ``case`` and ``impl`` arguments; :func:`pytest_generate_tests`
parametrizes it with every (case, implementation) pair of that operation,
ids like ``65536x64-k8-float32-numpy`` (unique: dtype, k and E included). Every callable is called once before timing
(compile time and lazy imports excluded) and its result is checked against
fastroute's, so a benchmark never compares different computations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import pytest

from fastroute import _bench as B

_LAUNCH: dict[str, Any] = {}


def pytest_sessionstart(session: pytest.Session) -> None:
    """Measure the parallel-launch latency once before any benchmark runs."""
    _LAUNCH["start"] = B.parallel_launch_latency()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize tests taking ``case`` and ``impl`` over the module's ``OP``."""
    if {"case", "impl"} <= set(metafunc.fixturenames):
        op = metafunc.module.OP
        params, ids = [], []
        for case in B.CASES:
            if case.op != op:
                continue
            for impl in B.impls(op):
                params.append((case, impl))
                ids.append(f"{case.test_id}-{impl.key}")
        metafunc.parametrize(("case", "impl"), params, ids=ids)


def pytest_benchmark_update_machine_info(
    config: pytest.Config, machine_info: dict[str, Any]
) -> None:
    """Add fastroute's environment (versions, threads, layer, CPU) to the JSON."""
    env = B.environment(launch=True)
    env["parallel_launch_start"] = _LAUNCH.get("start")
    machine_info["fastroute"] = env


class _CaseCache:
    """Input and fastroute result of the most recent case only (inputs are large)."""

    def __init__(self) -> None:
        self.key: str | None = None
        self.x: Any = None
        self.reference: Any = None

    def get(self, case: B.Case) -> tuple[Any, Any]:
        if self.key != case.id:
            self.key, self.x, self.reference = None, None, None
            x = B.make_input(case)
            self.reference = B.make_callable(case, B.impls(case.op)[0], x)()
            self.key, self.x = case.id, x
        return self.x, self.reference


@pytest.fixture(scope="session")
def case_cache() -> _CaseCache:
    """Session-wide cache of the current case's input array."""
    return _CaseCache()


@pytest.fixture
def run_case(benchmark: Any, case_cache: _CaseCache) -> Callable[[B.Case, B.Impl], None]:
    """``run_case(case, impl)``: warm up, check against fastroute, then benchmark."""

    def run(case: B.Case, impl: B.Impl) -> None:
        lacking = B.missing_requirements(impl)
        if lacking:
            pytest.skip(f"{impl.label}: {', '.join(lacking)} not installed")
        x, reference = case_cache.get(case)
        fn = B.make_callable(case, impl, x)
        result = fn()  # warm-up: compilation, lazy imports, first touch
        diff = B.check_agreement(case, impl, x, reference, result)
        assert diff is None, f"{case.name}: {diff}"
        benchmark.group = case.name
        benchmark.extra_info.update(
            op=case.op,
            case=case.label,
            shape=list(case.shape),
            k=case.k,
            dtype=case.dtype,
            nbytes=B.input_nbytes(x),
            impl=impl.key,
            label=impl.label,
            role=impl.role,
            call=impl.call,
            numba_threads=numba.get_num_threads(),
        )
        benchmark(fn)

    return run
