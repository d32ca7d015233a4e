"""The benchmark registry and its tools, shared by ``bench/`` and ``python -m fastroute bench``.

* :mod:`.cases` -- what is measured: :data:`CASES` (operation, shape, ``k``,
  dtype) and their inputs (:func:`make_input`).
* :mod:`.registry` -- who is measured: :data:`REGISTRY`, one entry per
  operation listing fastroute, the read and compute floors and the peers,
  each with the function that builds its timed callable, and how results
  are compared.
* :mod:`.floors` -- the read floor and the compute floor kernels.
* :mod:`.peers` -- the NumPy/SciPy/PyTorch/JAX recipes.
* :mod:`.measure` -- timing, the run over cases, first-call (compile) time,
  the machine description.
* :mod:`.render` -- the tables (Markdown for the README, plain text for the
  terminal).

SciPy, PyTorch and JAX are imported only when a callable that needs them is
built. This package is private: its contents may change between releases.
"""

from __future__ import annotations

from .cases import (
    CASES,
    OPS,
    ROUTE_OPS,
    SPARSE_OPS,
    Case,
    case_requirements,
    input_nbytes,
    make_input,
    select_cases,
)
from .floors import (
    csr_entropy_floor,
    csr_kl_floor,
    entropy_floor,
    kl_floor,
    read_floor,
    softmax_floor,
)
from .measure import (
    LAUNCH_WARN_S,
    Interrupted,
    add_ratios,
    environment,
    environment_warnings,
    first_call_times,
    measure_analyze,
    measure_compile,
    parallel_launch_latency,
    run_cases,
    threading_layer,
    time_callable,
)
from .registry import (
    REGISTRY,
    ROLES,
    Impl,
    Op,
    check_agreement,
    get_impl,
    impls,
    install_hint,
    make_callable,
    missing_modules,
    missing_requirements,
)
from .render import fmt_time, render_analyze, render_compile_table, render_header, render_tables

__all__ = [
    "CASES", "OPS", "ROUTE_OPS", "SPARSE_OPS", "Case", "case_requirements", "input_nbytes",
    "make_input", "Interrupted", "install_hint", "missing_modules",
    "select_cases", "csr_entropy_floor", "entropy_floor", "read_floor", "softmax_floor",
    "kl_floor", "csr_kl_floor",
    "LAUNCH_WARN_S", "add_ratios", "environment", "environment_warnings", "first_call_times",
    "measure_analyze", "measure_compile", "parallel_launch_latency", "run_cases",
    "threading_layer", "time_callable", "REGISTRY", "ROLES", "Impl", "Op", "check_agreement",
    "get_impl", "impls", "make_callable", "missing_requirements", "fmt_time", "render_analyze",
    "render_compile_table", "render_header", "render_tables",
]  # fmt: skip
