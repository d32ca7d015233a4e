"""Test configuration: a source-keyed Numba cache and Hypothesis profiles.

Numba cache
    Numba's on-disk cache checks only the timestamp of the file that defines a
    jitted function, not of the files it calls: after an edit to
    ``fastroute/kernels/_math.py`` the cached entries of the kernels that
    call it would still run the *old* code. Unless ``NUMBA_CACHE_DIR`` is set
    already, the suite therefore uses a cache directory keyed on a hash of
    the jitted modules (``_jit``, ``kernels/*``) under the
    system temp dir. It is set before Numba
    is imported and inherited by the subprocess tests.

Hypothesis profiles (``HYPOTHESIS_PROFILE=ci|dev``, default ``ci``)
    ci   few examples, derandomized (the same examples on every run), no deadline
         (the first call of a kernel JIT-compiles for seconds).
    dev  many more random examples; failures print a reproduction blob.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pathlib
import sys
import tempfile


def _source_keyed_cache_dir() -> str | None:
    spec = importlib.util.find_spec("fastroute")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = pathlib.Path(next(iter(spec.submodule_search_locations)))
    h = hashlib.sha256()
    # the compiled code behind the public API: options, drivers, kernels
    files = [root / "_jit.py", *sorted((root / "kernels").rglob("*.py"))]
    files.append(root / "_bench" / "floors.py")  # the benchmark floors use kernels/_math.py
    for f in files:
        if f.exists():
            h.update(str(f.relative_to(root)).encode())
            h.update(f.read_bytes())
    return os.path.join(tempfile.gettempdir(), "fastroute-test-numba-cache", h.hexdigest()[:16])


if not os.environ.get("NUMBA_CACHE_DIR"):
    _dir = _source_keyed_cache_dir()
    if _dir is not None:
        os.environ["NUMBA_CACHE_DIR"] = _dir
        if "numba" in sys.modules:  # imported by a plugin already: update its config
            sys.modules["numba"].config.CACHE_DIR = _dir

# the parallel path needs >= 2 threads to be exercised at all
os.environ.setdefault("NUMBA_NUM_THREADS", str(max(2, os.cpu_count() or 1)))

import numba  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "ci",
    max_examples=40,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev",
    max_examples=400,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def restore_numba_threads():
    """Give the test a free hand with ``numba.set_num_threads``; restored afterwards."""
    before = numba.get_num_threads()
    yield numba.config.NUMBA_NUM_THREADS
    numba.set_num_threads(before)


@pytest.fixture
def executor_jobs(monkeypatch):
    """Records every launch of fastroute's executor as ``(kernel name,
    number of jobs)``: more than one job ran in parallel on the pool."""
    from fastroute import _execute

    seen: list[tuple[str, int]] = []
    real = _execute._launch

    def spy(kernel, jobs):
        seen.append((getattr(kernel, "__name__", repr(kernel)), len(jobs)))
        return real(kernel, jobs)

    monkeypatch.setattr(_execute, "_launch", spy)
    return seen


@pytest.fixture
def small_parallel_work(monkeypatch):
    """The executor's parallel threshold lowered to 1,024 element-equivalents,
    so that small inputs exercise the parallel path."""
    from fastroute import _execute

    monkeypatch.setattr(_execute, "MIN_WORK", 1 << 10)
    return 1 << 10
