"""First-call time of each fastroute function: cold compile and cache-warm load.

Each measurement runs in fresh subprocesses (``fastroute._bench.measure_compile``):
with ``FASTROUTE_NO_CACHE=1`` (Numba's disk cache off: the cold compile time)
and with the cache warm. The pytest-benchmark time of these tests is the
subprocesses' wall time and means nothing; the numbers are in ``extra_info``
(``cold_s``, ``cached_s``, ``import_s``), which ``bench/report.py`` renders.
"""

from __future__ import annotations

from typing import Any

import pytest

from fastroute import _bench as B


@pytest.mark.parametrize("op", B.OPS)
def test_first_call(benchmark: Any, op: str) -> None:
    """Cold and cache-warm first-call time of ``op`` over all its benchmark cases."""
    if benchmark.disabled:
        pytest.skip("first-call timing spawns fresh processes; runs with --benchmark-enable")
    benchmark.group = "first call (compile)"
    res = benchmark.pedantic(B.measure_compile, args=(op,), rounds=1, iterations=1)
    benchmark.extra_info.update(role="compile", **res)
    assert res["cold_s"] >= 0 and res["cached_s"] >= 0
