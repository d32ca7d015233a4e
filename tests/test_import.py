"""``import fastroute`` is cheap: nothing is compiled, no heavy module is imported
(its time is measured by ``bench/first_call.py``, not asserted here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

PROBE = textwrap.dedent(
    """
    import json, sys, time
    t0 = time.perf_counter()
    import fastroute
    t1 = time.perf_counter()
    import numba
    from numba.core.dispatcher import Dispatcher

    dispatchers, compiled = [], []
    for name, mod in list(sys.modules.items()):
        if not (name == "fastroute" or name.startswith("fastroute.")):
            continue
        for attr, obj in list(vars(mod).items()):
            if isinstance(obj, Dispatcher):
                qual = f"{name}.{attr}"
                dispatchers.append(qual)
                if obj.signatures or obj.overloads:
                    compiled.append(qual)
    kernels = fastroute.kernels  # the lazy attribute works and compiles nothing either
    for attr in ("top_k_1d", "entropy_1d", "entropy_logits_1d"):
        if getattr(kernels, attr).signatures:
            compiled.append("fastroute.kernels." + attr)
    print(json.dumps({
        "import_s": t1 - t0,
        "dispatchers": sorted(set(dispatchers)),
        "compiled": compiled,
        "modules": sorted(m for m in sys.modules if m.startswith("fastroute")),
        "heavy": sorted(m for m in ("torch", "mpmath", "hypothesis", "pytest") if m in sys.modules),
    }))
    """
)


def _probe():
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_DISABLE_JIT")}
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_compiles_nothing():
    info = _probe()
    # the probe really looked at the kernels and the drivers
    assert any(d.startswith("fastroute.kernels.") for d in info["dispatchers"]), info
    assert info["compiled"] == [], f"compiled at import: {info['compiled']}"
    assert info["heavy"] == [], f"import pulled in {info['heavy']}"


CACHE_PROBE = textwrap.dedent(
    """
    import json
    import numpy as np
    from numba.core.dispatcher import Dispatcher
    import fastroute as fr
    from fastroute import _execute
    from fastroute.kernels import select

    chunks = []
    run_jobs = _execute._launch
    def spy(kernel, jobs):
        chunks.append(len(jobs))
        return run_jobs(kernel, jobs)
    _execute._launch = spy

    x = np.random.default_rng(0).random((_execute.MIN_WORK // 32 + 1, 32))
    fr.top_k(x[:4], 3)  # serial
    fr.top_k(x, 3)  # in chunks on the pool's threads
    stats = {}
    for name, d in vars(select).items():  # every kernel this process used
        if isinstance(d, Dispatcher) and d.signatures:
            stats[name] = [sum(d.stats.cache_hits.values()), sum(d.stats.cache_misses.values())]
    print(json.dumps({"kernels": stats, "chunks": chunks}))
    """
)


def test_second_process_starts_warm(tmp_path):
    """Every kernel, also one run in parallel chunks, is loaded from the
    on-disk cache by a second process instead of being compiled again."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path), "NUMBA_NUM_THREADS": "2"}
    runs = []
    for _ in range(2):
        proc = subprocess.run(
            [sys.executable, "-c", CACHE_PROBE],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs.append((json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr))
    (first, err1), (second, _) = runs
    assert max(first["chunks"]) > 1 and max(second["chunks"]) > 1, "no parallel call"
    assert first["kernels"] and all(miss for _, miss in first["kernels"].values()), first
    assert "Cannot cache" not in err1, err1[-3000:]
    not_cached = {k: v for k, v in second["kernels"].items() if v[1] or not v[0]}
    assert not not_cached, f"compiled again in a warm process (hits, misses): {not_cached}"
