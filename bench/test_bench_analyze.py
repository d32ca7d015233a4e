"""End-to-end time of ``python -m fastroute analyze`` on the embedded corpus.

Fresh processes with Numba's cache warm (``fastroute._bench.measure_analyze``).
The pytest-benchmark time is the subprocesses' total wall time and means
nothing; the figures are in ``extra_info``, which ``bench/report.py`` renders.
"""

from __future__ import annotations

from typing import Any

import pytest

from fastroute import _bench as B


def test_analyze_end_to_end(benchmark: Any) -> None:
    """Median wall time of three cold-process runs of ``analyze``."""
    if benchmark.disabled:
        pytest.skip("spawns fresh processes; runs with --benchmark-enable")
    benchmark.group = "analyze (end to end)"
    res = benchmark.pedantic(B.measure_analyze, rounds=1, iterations=1)
    benchmark.extra_info.update(role="analyze", **res)
    assert len(res["runs_s"]) == 3 and res["median_s"] > 0
