"""Rendering: the comparison tables (Markdown or plain text) and the header line."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .cases import OPS
from .measure import environment_warnings, fmt_time
from .registry import REGISTRY

__all__ = ["fmt_time", "render_header", "render_tables", "render_compile_table", "render_analyze"]


def _fmt_ratio(r: float) -> str:
    return f"{r:.2f}×" if r < 10 else f"{r:.1f}×" if r < 100 else f"{r:.0f}×"


def render_header(env: Mapping[str, Any], *, markdown: bool = True) -> str:
    """One line: machine, versions, thread count and date; then any warnings."""
    cores = env.get("cores")
    usable = env.get("usable_cores")
    core_s = f"{cores} cores" if usable in (None, cores) else f"{cores} cores ({usable} usable)"
    vers = [f"Python {env.get('python')}"]
    for key, name in (
        ("numpy", "NumPy"),
        ("numba", "Numba"),
        ("scipy", "SciPy"),
        ("torch", "PyTorch"),
        ("jax", "JAX"),
    ):
        vers.append(f"{name} {env[key]}" if env.get(key) else f"{name} not installed")
    threads = f"{env.get('numba_threads')} threads"
    extra = []
    if env.get("threading_layer"):
        extra.append(f"numba {env['threading_layer']}")
    if env.get("torch_threads") is not None:
        extra.append(f"torch {env['torch_threads']}")
    if extra:
        threads += f" ({', '.join(extra)})"
    date = str(env.get("date", ""))[:10]
    fr = f"fastroute {env['fastroute']} · " if env.get("fastroute") else ""
    line = f"{fr}{env.get('cpu')}, {core_s} · {', '.join(vers)} · {threads} · {date}"
    lines = [f"_{line}_" if markdown else line]
    for w in environment_warnings(env):
        w = w[0].upper() + w[1:]
        lines.append(f"> **Warning:** {w}." if markdown else f"warning: {w}.")
    return ("\n\n" if markdown else "\n").join(lines)


def _table(rows: list[list[str]], align: list[str], markdown: bool) -> list[str]:
    if markdown:
        out = ["| " + " | ".join(rows[0]) + " |"]
        out.append("|" + "|".join(":--" if a == "<" else "--:" for a in align) + "|")
        out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
        return out
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]

    def line(r: list[str]) -> str:
        cells = [
            c.ljust(w) if a == "<" else c.rjust(w) for c, w, a in zip(r, widths, align, strict=True)
        ]
        return "  ".join(cells).rstrip()

    return [line(rows[0]), "  ".join("-" * w for w in widths), *map(line, rows[1:])]


def _has_role(op: str, role: str) -> bool:
    return op in REGISTRY and any(i.role == role for i in REGISTRY[op].impls)


def render_tables(
    results: Sequence[Mapping[str, Any]],
    *,
    markdown: bool = True,
    peer_times: bool = False,
    stat: str = "median",
) -> str:
    """Comparison tables, one per operation, every cell from the ``stat`` times.

    ``results`` are records with keys ``op``, ``case`` (:attr:`Case.label`),
    ``impl`` (:attr:`Impl.key`), ``role``, ``median_s``/``min_s`` and
    optionally ``error``. Cells: fastroute's time; per peer
    ``peer / fastroute`` (above 1: fastroute is faster); fastroute's time as
    a multiple of the read floor and, for compute-bound operations, of the
    compute floor (``—`` where an operation has none).
    """
    if stat not in ("median", "min"):
        raise ValueError(f"stat must be 'median' or 'min', got {stat!r}")
    field = f"{stat}_s"
    by_key: dict[tuple[str, str, str], Mapping[str, Any]] = {}
    case_order: dict[str, list[str]] = {}
    for r in results:
        by_key[(r["op"], r["case"], r["impl"])] = r
        labels = case_order.setdefault(r["op"], [])
        if r["case"] not in labels:
            labels.append(r["case"])

    def time_of(op: str, case: str, impl: str) -> float | None:
        r = by_key.get((op, case, impl))
        if r is None or r.get("error") or r.get(field) is None:
            return None
        return float(r[field])

    def ratio(num: float | None, den: float | None) -> str:
        return "n/a" if num is None or den is None else _fmt_ratio(num / den)

    blocks = []
    for op in [o for o in OPS if o in case_order] + [o for o in case_order if o not in OPS]:
        peers = [i for i in REGISTRY[op].impls if i.role == "peer"] if op in REGISTRY else []
        compute = _has_role(op, "compute_floor")
        header = ["case", "fastroute"] + [f"vs {p.label}" for p in peers]
        header += ["÷ read floor", "÷ compute floor"]
        rows = [header]
        for case in case_order[op]:
            fr = time_of(op, case, "fastroute")
            row = [case, fmt_time(fr)]
            for p in peers:
                t = time_of(op, case, p.key)
                if t is None or fr is None:
                    err = by_key.get((op, case, p.key), {}).get("error")
                    row.append("error" if err else "n/a")
                    continue
                cell = _fmt_ratio(t / fr)
                row.append(f"{cell} ({fmt_time(t)})" if peer_times else cell)
            row.append(ratio(fr, time_of(op, case, "read_floor")))
            row.append(ratio(fr, time_of(op, case, "compute_floor")) if compute else "—")
            rows.append(row)
        title = f"**{op}**" if markdown else op
        blocks.append(
            "\n".join([title, "", *_table(rows, ["<"] + [">"] * (len(header) - 1), markdown)])
        )
    legend = (
        f"fastroute: {stat} time per call; every ratio uses the {stat} too. vs X: X's "
        "time / fastroute's time (above 1: fastroute is faster). ÷ read floor: "
        "fastroute's time / the time to stream its input once. ÷ compute floor: "
        "fastroute's time / the least exp or log work the operation needs (one "
        "vectorized float32 log per entry for an entropy, a row max and one exp "
        "per logit for anything built on a softmax; — for operations that are "
        "bound by reading). 1.00 would be optimal. n/a: not installed or not run."
    )
    return "\n\n".join(blocks + [legend])


def render_compile_table(
    compile_results: Sequence[Mapping[str, Any]], *, markdown: bool = True
) -> str:
    """First-call table: cold compile (no cache) and cache-warm first call per function."""
    if not compile_results:
        return ""
    rows = [["function", "cold compile (no cache)", "first call, cache warm"]]
    for c in compile_results:
        rows.append([c["op"], fmt_time(c.get("cold_s")), fmt_time(c.get("cached_s"))])
    imports = [c["import_s"] for c in compile_results if c.get("import_s") is not None]
    lines = _table(rows, ["<", ">", ">"], markdown)
    note = (
        "Per function: first call minus second call, summed over all its benchmark "
        "cases (every code path the shapes exercise), in fresh processes; cold: "
        "FASTROUTE_NO_CACHE=1."
    )
    if imports:
        note += (
            f" `import fastroute`: {fmt_time(min(imports))}."
            if markdown
            else (f" import fastroute: {fmt_time(min(imports))}.")
        )
    title = "**first call (compile time)**" if markdown else "first call (compile time)"
    return "\n".join([title, "", *lines, "", note])


def render_analyze(res: Mapping[str, Any] | None, *, markdown: bool = True) -> str:
    """One line on the end-to-end ``analyze`` time."""
    if not res:
        return ""
    stages = ", ".join(f"{k} {fmt_time(v)}" for k, v in res.get("stages_s", {}).items())
    line = (
        f"analyze on the embedded corpus, end to end (fresh process, warm Numba cache): "
        f"median {fmt_time(res['median_s'])} over {len(res['runs_s'])} runs "
        f"(min {fmt_time(res['min_s'])}; in-process stages: {stages})"
    )
    return f"**analyze**\n\n{line}." if markdown else f"analyze\n\n{line}."
