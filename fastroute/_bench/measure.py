"""Measuring: timing loop, the run over cases, first-call (compile) time,
the end-to-end ``analyze`` time and the machine description."""

from __future__ import annotations

import datetime as _dt
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TextIO

import numba
import numpy as np

from . import floors as F
from .cases import CASES, Case, case_requirements, input_nbytes, make_input
from .registry import (
    check_agreement,
    impls,
    install_hint,
    make_callable,
    missing_modules,
    missing_requirements,
)

__all__ = [
    "time_callable",
    "run_cases",
    "Interrupted",
    "add_ratios",
    "first_call_times",
    "measure_compile",
    "measure_analyze",
    "environment",
    "environment_warnings",
    "parallel_launch_latency",
    "threading_layer",
    "cpu_model",
    "usable_cores",
    "LAUNCH_WARN_S",
    "fmt_time",
]


def time_callable(
    fn: Callable[[], Any],
    *,
    budget: float = 0.2,
    min_repeats: int = 3,
    max_repeats: int = 2000,
    min_repeat_time: float = 1e-3,
) -> dict[str, Any]:
    """Time ``fn`` with ``time.perf_counter`` after one warm-up call.

    Each repeat runs ``number`` calls back to back, ``number`` chosen so a
    repeat lasts at least ``min_repeat_time``; the number of repeats is chosen
    so all repeats together take about ``budget`` seconds (at least
    ``min_repeats``). The garbage collector is off while timing.

    Returns ``{"median_s", "min_s", "repeats", "number", "result"}`` (per-call
    times; ``result`` is the warm-up call's return value).
    """
    result = fn()  # warm-up: compilation, first-touch of buffers, lazy imports
    t0 = time.perf_counter()
    fn()
    est = max(time.perf_counter() - t0, 1e-9)
    number = max(1, math.ceil(min_repeat_time / est))
    repeats = int(min(max_repeats, max(min_repeats, budget // (est * number))))
    times = []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            times.append((time.perf_counter() - t0) / number)
    finally:
        if gc_was_enabled:
            gc.enable()
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "repeats": repeats,
        "number": number,
        "result": result,
    }


def _record(case: Case, impl: Any, x: Any) -> dict[str, Any]:
    return {
        "op": case.op,
        "case": case.label,
        "id": case.id,
        "shape": list(case.shape),
        "k": case.k,
        "dtype": case.dtype,
        "nbytes": None if x is None else input_nbytes(x),
        "impl": impl.key,
        "label": impl.label,
        "role": impl.role,
        "call": impl.call,
    }


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run_cases`: carries the ``results`` and ``notes``
    of the cases measured before it, so that they can still be shown."""

    def __init__(self, results: list[dict[str, Any]], notes: list[str]) -> None:
        super().__init__("interrupted")
        self.results = results
        self.notes = notes


def _module_of(exc: ImportError) -> str:
    return exc.name or (str(exc).split("'")[1] if "'" in str(exc) else str(exc))


def _skip_note(lacking: str, names: list[str]) -> str:
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    what = "case" if len(names) == 1 else "cases"
    return (
        f"{lacking} not installed: skipped {len(names)} {what} ({shown}); to run "
        f"{'it' if len(names) == 1 else 'them'}: {install_hint(lacking.split(', '))}"
    )


def run_cases(
    cases: Sequence[Case],
    *,
    budget: float = 0.2,
    stat: str = "median",
    progress: TextIO | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Time every installed implementation of every case; the command line's loop.

    Per case: build the input once, then for each implementation of the
    registry (fastroute, the floors, the peers) a warm-up call, the timing
    (:func:`time_callable`) and, for peers, the agreement check against
    fastroute's result. Returns the records (see :func:`add_ratios`, applied
    with ``stat``) and notes (failures, disagreements, missing libraries).

    A case whose input needs a missing module (:func:`case_requirements`:
    SciPy, ml_dtypes) is skipped, and so is a peer whose library is missing;
    each is named in a note. A case that fails in any other way is recorded
    as an error and the run goes on: nothing measured is lost. Ctrl-C raises
    :class:`Interrupted`, which holds the records so far.
    """
    results: list[dict[str, Any]] = []
    notes: list[str] = []
    missing: dict[str, list[str]] = {}  # peers skipped, by missing module
    skipped: dict[str, list[str]] = {}  # cases skipped, by missing module
    i = 0
    try:
        for i, case in enumerate(cases, 1):
            if progress is not None:
                progress.write(f"[{i}/{len(cases)}] {case.name} ...")
                progress.flush()
            t_case = time.perf_counter()
            status = _run_case(case, budget, results, notes, missing, skipped)
            if progress is not None:
                progress.write(f" {status or f'{time.perf_counter() - t_case:.1f} s'}\n")
                progress.flush()
    except KeyboardInterrupt:
        where = f"case {i} of {len(cases)} ({cases[i - 1].name})" if i else "the first case"
        notes.append(f"interrupted during {where}: the results are those of the cases before it")
        _finish(results, notes, missing, skipped, stat)
        raise Interrupted(results, notes) from None
    _finish(results, notes, missing, skipped, stat)
    return results, notes


def _finish(results: list[dict[str, Any]], notes: list[str], missing: dict[str, list[str]],
            skipped: dict[str, list[str]], stat: str) -> None:  # fmt: skip
    for lacking, names in skipped.items():
        notes.append(_skip_note(lacking, names))
    for lacking, labels in missing.items():
        notes.append(
            f"{lacking} not installed: skipped {', '.join(labels)} "
            f"({install_hint(lacking.split(', '))})"
        )
    add_ratios(results, stat)


def _run_case(case: Case, budget: float, results: list[dict[str, Any]], notes: list[str],
              missing: dict[str, list[str]], skipped: dict[str, list[str]]) -> str | None:  # fmt: skip
    """Measure one case into ``results``; a short status when it was skipped."""
    lacking = missing_modules(case_requirements(case))
    try:
        x = None if lacking else make_input(case)
    except ImportError as exc:  # installed but not importable, or a module not declared
        lacking = [_module_of(exc)]
    except Exception as exc:  # the input could not be built: an error of this case only
        rec = _record(case, impls(case.op)[0], None)
        rec["error"] = f"building the input failed: {type(exc).__name__}: {exc}"
        notes.append(f"{case.name}: {rec['error']}")
        results.append(rec)
        return "error"
    if lacking:
        skipped.setdefault(", ".join(lacking), []).append(case.name)
        return f"skipped ({', '.join(lacking)} not installed)"
    reference: Any = None
    for impl in impls(case.op):
        lacking = missing_requirements(impl)
        rec = _record(case, impl, x)
        if not lacking:
            try:
                m = time_callable(make_callable(case, impl, x), budget=budget)
            except ImportError as exc:
                if impl.role == "fastroute":
                    rec["error"] = f"{type(exc).__name__}: {exc}"
                    notes.append(f"{case.name}: {impl.label} failed: {rec['error']}")
                    results.append(rec)
                    continue
                lacking = [_module_of(exc)]
            except Exception as exc:
                rec["error"] = f"{type(exc).__name__}: {exc}"
                notes.append(f"{case.name}: {impl.label} failed: {rec['error']}")
                results.append(rec)
                continue
            else:
                result = m.pop("result")
                if impl.role == "fastroute":
                    reference = result
                elif reference is not None:
                    diff = check_agreement(case, impl, x, reference, result)
                    if diff:
                        rec["mismatch"] = diff
                        notes.append(f"{case.name}: {diff}")
                rec.update(m)
                results.append(rec)
                continue
        labels = missing.setdefault(", ".join(lacking), [])
        if impl.label not in labels:
            labels.append(impl.label)
    return None


def add_ratios(results: list[dict[str, Any]], stat: str = "median") -> None:
    """Add the ratios of the tables to the records, all from the ``stat`` times.

    Peers get ``speedup`` (peer / fastroute: above 1, fastroute is faster);
    fastroute gets ``read_floor_ratio`` and ``compute_floor_ratio``
    (fastroute / floor: 1.00 would be optimal). ``stat`` is recorded as
    ``ratio_stat``.
    """
    if stat not in ("median", "min"):
        raise ValueError(f"stat must be 'median' or 'min', got {stat!r}")
    field = f"{stat}_s"
    by_role: dict[tuple[str, str, str], float] = {}
    for r in results:
        if r.get(field) is not None and not r.get("error"):
            by_role.setdefault((r["op"], r["case"], r["role"]), r[field])
    for r in results:
        if r.get(field) is None or r.get("error"):
            continue
        fr = by_role.get((r["op"], r["case"], "fastroute"))
        if fr is None:
            continue
        r["ratio_stat"] = stat
        if r["role"] == "peer":
            r["speedup"] = r[field] / fr
        elif r["role"] == "fastroute":
            for role in ("read_floor", "compute_floor"):
                floor = by_role.get((r["op"], r["case"], role))
                if floor:
                    r[f"{role}_ratio"] = fr / floor


# --------------------------------------------------------------------------- compile time

_PROBE = r"""
import json, sys, time
t0 = time.perf_counter()
import fastroute
import_s = time.perf_counter() - t0
from fastroute._bench import first_call_times
out = first_call_times(sys.argv[1])
out["import_s"] = import_s
print("FASTROUTE-PROBE " + json.dumps(out))
"""


def first_call_times(op: str) -> dict[str, Any]:
    """First-call overhead of fastroute's ``op`` over the cases of the registry.

    Runs in a *fresh* process (see :func:`measure_compile`). For each case of
    ``op``, in registry order: the time of the first call minus the time of a
    second call on the same input; the sum is the time spent compiling (or
    loading from Numba's cache) every code path the benchmark exercises.
    """
    paths = []
    for case in (c for c in CASES if c.op == op):
        if missing_modules(case_requirements(case)):  # skipped, as by run_cases
            continue
        x = make_input(case)
        fn = make_callable(case, impls(op)[0], x)
        t0 = time.perf_counter()
        fn()
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        fn()
        steady = time.perf_counter() - t0
        paths.append({"case": case.name, "first_s": first, "steady_s": steady})
    total = sum(max(0.0, p["first_s"] - p["steady_s"]) for p in paths)
    return {"op": op, "total_s": total, "paths": paths}


def _run_probe(op: str, no_cache: bool, timeout: float) -> dict[str, Any]:
    env = dict(os.environ)
    if no_cache:
        env["FASTROUTE_NO_CACHE"] = "1"
    else:
        env.pop("FASTROUTE_NO_CACHE", None)
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, op],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("FASTROUTE-PROBE "):
            return json.loads(line.split(" ", 1)[1])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    raise RuntimeError(f"first-call probe for {op} failed (exit {proc.returncode}): {tail}")


def measure_compile(op: str, *, timeout: float = 600.0) -> dict[str, Any]:
    """Cold-compile and cache-warm first-call time of fastroute's ``op``.

    Three fresh subprocesses: ``FASTROUTE_NO_CACHE=1`` (Numba's disk cache
    neither read nor written: the cold compile time), then one with the cache
    enabled to make sure it is populated, then the measured cache-warm run.

    Returns ``{"op", "cold_s", "cached_s", "import_s", "cold", "cached"}`` where
    ``cold``/``cached`` hold the per-case breakdown.
    """
    cold = _run_probe(op, True, timeout)
    _run_probe(op, False, timeout)  # populate the cache if it is stale or missing
    cached = _run_probe(op, False, timeout)
    return {
        "op": op,
        "cold_s": cold["total_s"],
        "cached_s": cached["total_s"],
        "import_s": cached["import_s"],
        "cold": cold["paths"],
        "cached": cached["paths"],
    }


# --------------------------------------------------------------------------- analyze


def measure_analyze(*, runs: int = 3, timeout: float = 900.0) -> dict[str, Any]:
    """Wall time of ``python -m fastroute analyze --json`` on the embedded corpus,
    each run a fresh process with Numba's cache warm (one untimed run first
    fills it). Returns ``{"op": "analyze", "runs_s", "median_s", "min_s",
    "stages_s"}`` (``stages_s``: the stage timings the last run reported).
    """
    cmd = [sys.executable, "-m", "fastroute", "analyze", "--json"]
    env = dict(os.environ)
    env.pop("FASTROUTE_NO_CACHE", None)

    def once() -> tuple[float, dict[str, Any]]:
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"fastroute analyze failed (exit {proc.returncode}): {tail}")
        return wall, json.loads(proc.stdout)

    once()  # fills the cache if it is cold
    walls, out = [], {}
    for _ in range(runs):
        wall, out = once()
        walls.append(wall)
    return {
        "op": "analyze",
        "runs_s": walls,
        "median_s": float(np.median(walls)),
        "min_s": min(walls),
        "stages_s": out.get("timings_s", {}),
    }


# --------------------------------------------------------------------------- environment


def _dist_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def cpu_model() -> str:
    """CPU model name from ``/proc/cpuinfo`` (falls back to :mod:`platform`)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware", "cpu model"):
                    if value.strip():
                        return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def usable_cores() -> int:
    """Logical cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def threading_layer(probe: bool = False) -> str:
    """Numba's threading layer, or ``"not yet chosen (config: ...)"``.

    Numba picks the layer at the first parallel launch; with ``probe=True`` a
    tiny parallel function is run first so the answer is definite.
    """
    if probe:
        try:
            F.read_floor(np.ones(max(F.PARALLEL_MIN_WORK, 1), np.float32))
        except Exception as exc:  # pragma: no cover - broken threading layer
            first = (str(exc).strip().splitlines() or [""])[0]
            return f"unavailable ({type(exc).__name__}: {first})"
    try:
        return numba.threading_layer()
    except ValueError:
        return f"not yet chosen (config: {numba.config.THREADING_LAYER})"


def parallel_launch_latency(budget: float = 0.05) -> dict[str, float] | None:
    """Median time of a parallel and a serial sum of ``PARALLEL_MIN_WORK`` float32.

    The parallel time is essentially the cost of one Numba parallel launch
    (waking the worker threads and joining them): tens of microseconds on a
    healthy machine. ``None`` with a single Numba thread.
    """
    if numba.get_num_threads() < 2:
        return None
    x = np.ones(F.PARALLEL_MIN_WORK, np.float32)
    zero = np.float32(0)
    par = time_callable(lambda: F._sum_parallel(x, zero), budget=budget)["median_s"]
    ser = time_callable(lambda: F._sum_serial(x, zero), budget=budget)["median_s"]
    return {"parallel_s": par, "serial_s": ser, "elements": float(F.PARALLEL_MIN_WORK)}


#: A parallel launch slower than this is reported as suspicious.
LAUNCH_WARN_S = 1e-3


def environment(*, launch: bool = False) -> dict[str, Any]:
    """Machine, versions and threading settings, as a JSON-able dict.

    Versions come from package metadata, so SciPy and PyTorch are not imported.
    ``launch=True`` also measures :func:`parallel_launch_latency` (about 0.1 s).
    """
    import fastroute

    torch_threads = None
    if sys.modules.get("torch") is not None:  # imported by a peer (None: blocked)
        torch_threads = sys.modules["torch"].get_num_threads()
    env: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "python": platform.python_version(),
        "fastroute": fastroute.__version__,
        "numpy": np.__version__,
        "numba": numba.__version__,
        "llvmlite": _dist_version("llvmlite"),
        "scipy": _dist_version("scipy"),
        "torch": _dist_version("torch"),
        "jax": _dist_version("jax"),
        "numba_threads": numba.get_num_threads(),
        "torch_threads": torch_threads,
        "threading_layer": threading_layer(),
        "svml": bool(numba.config.USING_SVML),
        "env": {
            k: os.environ[k]
            for k in (
                "NUMBA_NUM_THREADS",
                "NUMBA_THREADING_LAYER",
                "NUMBA_CACHE_DIR",
                "OMP_NUM_THREADS",
                "OMP_WAIT_POLICY",
                "GOMP_SPINCOUNT",
                "FASTROUTE_NO_CACHE",
            )
            if k in os.environ
        },
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if launch:
        env["parallel_launch"] = parallel_launch_latency()
        env["threading_layer"] = threading_layer()
    return env


def environment_warnings(env: Mapping[str, Any]) -> list[str]:
    """Conditions under which the timings are suspect, one sentence each."""
    out = []
    slow = []
    for key, when in (("parallel_launch_start", "start"), ("parallel_launch", "end")):
        launch = env.get(key)
        if launch and launch.get("parallel_s", 0.0) > LAUNCH_WARN_S:
            slow.append((when, launch))
    if slow:
        worst = max(launch["parallel_s"] for _, launch in slow)
        launch = slow[0][1]
        whens = " and ".join(when for when, _ in slow)
        where = f"at the {whens} of the run " if "parallel_launch_start" in env else ""
        out.append(
            f"{where}one Numba parallel launch took up to "
            f"{fmt_time(worst)} (a serial sum of the same {int(launch['elements'])} "
            f"floats: {fmt_time(launch['serial_s'])}; normally tens of µs): another "
            "process was probably busy on a core, so multi-threaded timings include "
            "scheduler time slices and are not trustworthy"
        )
    return out


def fmt_time(s: float | None) -> str:
    """``1.23 ms``-style duration with 3 significant digits."""
    if s is None or not math.isfinite(s):
        return "n/a"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if s >= scale:
            v = s / scale
            return f"{v:.3g} {unit}" if v < 100 else f"{v:.0f} {unit}"
    return f"{s * 1e9:.0f} ns"
