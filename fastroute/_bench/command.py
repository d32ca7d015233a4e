"""``python -m fastroute bench``: select, run and print the benchmark cases."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Any, TextIO

__all__ = ["bench"]


def _progress(stream: TextIO, text: str) -> None:
    stream.write(text)
    stream.flush()


def _in_child(args: argparse.Namespace) -> int:
    """Run this bench command again in a child process with the requested
    threading layer: Numba picks its layer once per process, and fastroute
    never changes it in the caller's process."""
    import subprocess

    env = dict(os.environ, NUMBA_THREADING_LAYER=args.threading_layer, _FASTROUTE_BENCH_CHILD="1")
    return subprocess.run([sys.executable, "-m", "fastroute", *args.argv], env=env).returncode


def bench(args: argparse.Namespace, error: type[Exception], prog: str) -> int:
    """``python -m fastroute bench``: ``error`` is the command line's user
    error, ``prog`` its name."""
    import numba

    from .. import _bench as B

    if args.threads is not None:
        limit = numba.config.NUMBA_NUM_THREADS
        if not 1 <= args.threads <= limit:
            raise error(
                f"--threads must be between 1 and {limit} (NUMBA_NUM_THREADS), got {args.threads}"
            )
    if args.budget is not None and not (math.isfinite(args.budget) and args.budget > 0):
        raise error(f"--budget must be a positive, finite number of seconds, got {args.budget}")
    if args.cases is not None and not args.cases.strip(" ,"):
        raise error("--cases needs a pattern, e.g. 'top_k' or '65536x64' (--list shows them)")
    cases = B.select_cases(args.cases, quick=args.quick)
    if not cases:
        scope = "the --quick subset" if args.quick else "the cases"
        raise error(f"no case in {scope} matches {args.cases!r} (use --list to see them)")
    lacking = {c.name: B.missing_modules(B.case_requirements(c)) for c in cases}
    if args.list:
        for c in cases:
            need = f"  [needs {', '.join(lacking[c.name])}]" if lacking[c.name] else ""
            print(c.name + ("  [quick]" if c.quick else "") + need)
        return 0
    _check_requirements(cases, lacking, B, error)
    if args.threading_layer is not None:
        if os.environ.get("_FASTROUTE_BENCH_CHILD") != "1":
            return _in_child(args)
        layer = B.threading_layer(probe=True)
        if layer.startswith("unavailable"):
            raise error(f"threading layer {args.threading_layer!r} is {layer}")
    if args.threads is not None:
        numba.set_num_threads(args.threads)

    budget = args.budget if args.budget is not None else (0.05 if args.quick else 0.2)
    err = sys.stderr
    t_start = time.perf_counter()
    launch_start = B.parallel_launch_latency()
    try:
        results, notes = B.run_cases(cases, budget=budget, stat=args.stat, progress=err)
    except B.Interrupted as stop:  # show what was measured, then stop as Ctrl-C does
        _progress(err, "\n")
        _print(args, B, stop.results, stop.notes, None, [], budget, launch_start, t_start)
        print(f"{prog} bench: interrupted", file=err)
        return 130
    analyze_result: dict[str, Any] | None = None
    if not args.quick and not args.cases:
        if B.missing_modules(["scipy"]):
            notes.append("analyze end to end: skipped (it needs SciPy: pip install scipy)")
        else:
            _progress(err, "[analyze] embedded corpus, 4 fresh processes ...")
            t0 = time.perf_counter()
            try:
                analyze_result = B.measure_analyze()
            except Exception as exc:
                notes.append(f"analyze end to end: {exc}")
            _progress(err, f" {time.perf_counter() - t0:.1f} s\n")
    compile_results: list[dict[str, Any]] = []
    if args.compile:
        ops = [op for op in B.OPS if any(c.op == op and not lacking[c.name] for c in cases)]
        for j, op in enumerate(ops, 1):
            _progress(err, f"[compile {j}/{len(ops)}] {op}: 3 fresh processes ...")
            t0 = time.perf_counter()
            try:
                compile_results.append(B.measure_compile(op))
            except Exception as exc:
                notes.append(f"first-call time of {op}: {exc}")
            _progress(err, f" {time.perf_counter() - t0:.1f} s\n")
    _print(args, B, results, notes, analyze_result, compile_results, budget, launch_start,
           t_start)  # fmt: skip
    fastroute_failed = any(r.get("error") for r in results if r["role"] == "fastroute")
    return 1 if fastroute_failed else 0


def _check_requirements(cases: list[Any], lacking: dict[str, list[str]], B: Any,
                        error: type[Exception]) -> None:  # fmt: skip
    """Before anything is timed: an error when no selected case can run (each
    needs a module that is not installed), else a note naming those skipped."""
    missing = sorted({m for c in cases for m in lacking[c.name]})
    if not missing:
        return
    hint = B.install_hint(missing)
    n = sum(1 for c in cases if lacking[c.name])
    if n == len(cases):
        raise error(f"the selected cases need {', '.join(missing)}, not installed: {hint}")
    print(f"note: {', '.join(missing)} not installed: skipping {n} of the {len(cases)} "
          f"cases ({hint} to run them)", file=sys.stderr)  # fmt: skip


def _print(args: argparse.Namespace, B: Any, results: list[dict[str, Any]],
           notes: list[str], analyze_result: dict[str, Any] | None,
           compile_results: list[dict[str, Any]], budget: float,
           launch_start: Any, t_start: float) -> None:  # fmt: skip
    env = B.environment(launch=True)
    env["parallel_launch_start"] = launch_start
    settings = {
        "quick": bool(args.quick),
        "cases": args.cases,
        "budget_s": budget,
        "stat": args.stat,
        "timer": "time.perf_counter; median and min of repeats after one warm-up call",
        "elapsed_s": time.perf_counter() - t_start,
    }
    if args.json:
        out = {
            "environment": env,
            "settings": settings,
            "results": results,
            "compile": compile_results,
            "analyze": analyze_result,
            "notes": notes,
        }
        print(json.dumps(out, indent=2))
        return
    print(B.render_header(env, markdown=False))
    print()
    print(B.render_tables(results, markdown=False, peer_times=True, stat=args.stat))
    if analyze_result:
        print()
        print(B.render_analyze(analyze_result, markdown=False))
    if compile_results:
        print()
        print(B.render_compile_table(compile_results, markdown=False))
    print()
    print(
        f"Timing: {args.stat} per call over repeats of about {budget:g} s per measurement, "
        f"after a warm-up call; total {settings['elapsed_s']:.0f} s."
    )
    for note in notes:
        print(f"note: {note}")
