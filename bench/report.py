"""Render a pytest-benchmark JSON file as the fastroute comparison table (Markdown).

Usage::

    python -m pytest bench --benchmark-enable --benchmark-json=bench.json
    python bench/report.py bench.json                      # print the table
    python bench/report.py bench.json --readme README.md   # rewrite the README section

Per case: fastroute's median time, the speed-up of fastroute over each peer
(``peer median / fastroute median``), and fastroute's time as a multiple of
the memory-read floor; a header line gives the machine, versions, thread
count and date; a second table gives first-call (compile) times when the run
included ``bench/test_bench_compile.py``. ``--readme`` replaces the text between
``<!-- bench-table:start -->`` and ``<!-- bench-table:end -->``; a README
without the markers is left alone and the table is printed instead.

The table layout is shared with ``python -m fastroute bench`` (both render
through ``fastroute/_bench/``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

try:
    from fastroute import _bench as B
except ImportError:  # running from a source tree without installing fastroute
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from fastroute import _bench as B

START = "<!-- bench-table:start -->"
END = "<!-- bench-table:end -->"


class ReportError(Exception):
    """A problem with the input; reported as one line, exit status 1."""


def load(path: Path) -> dict[str, Any]:
    """The parsed pytest-benchmark JSON at ``path``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{path}: no such file (create it with --benchmark-json)") from None
    except (OSError, ValueError) as exc:
        raise ReportError(f"{path}: cannot read a JSON document ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise ReportError(f"{path}: not a pytest-benchmark JSON file (no 'benchmarks' list)")
    return data


def records(data: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Timing records (op, case, impl, median_s, ...) and compile records from the JSON."""
    timings: list[dict[str, Any]] = []
    compiles: list[dict[str, Any]] = []
    for b in data["benchmarks"]:
        info = b.get("extra_info") or {}
        if info.get("role") in ("compile", "analyze"):
            compiles.append(info)
            continue
        if not {"op", "case", "impl"} <= info.keys():
            continue  # not one of ours
        stats = b.get("stats") or {}
        timings.append(
            {
                "op": info["op"],
                "case": info["case"],
                "impl": info["impl"],
                "role": info.get("role"),
                "median_s": stats.get("median"),
                "min_s": stats.get("min"),
                "rounds": stats.get("rounds"),
            }
        )
    return timings, compiles


def environment(data: dict[str, Any]) -> dict[str, Any]:
    """The environment recorded by bench/conftest.py, or what pytest-benchmark knows."""
    mi = data.get("machine_info") or {}
    env = dict(mi.get("fastroute") or {})
    if not env:  # a JSON written without bench/conftest.py
        cpu = mi.get("cpu") or {}
        env = {
            "cpu": cpu.get("brand_raw") or mi.get("processor") or "unknown CPU",
            "cores": cpu.get("count"),
            "python": mi.get("python_version"),
        }
    if data.get("datetime"):
        env["date"] = data["datetime"]
    return env


def render(data: dict[str, Any], stat: str = "median") -> str:
    """The Markdown report: header line, one table per operation, compile table."""
    timings, compiles = records(data)
    if not timings and not compiles:
        raise ReportError("the JSON holds no fastroute benchmark (was it run on bench/?)")
    parts = [B.render_header(environment(data), markdown=True)]
    if timings:
        parts.append(B.render_tables(timings, markdown=True, stat=stat))
    analyze = [c for c in compiles if c.get("role") == "analyze"]
    compiles = [c for c in compiles if c.get("role") != "analyze"]
    if analyze:
        parts.append(B.render_analyze(analyze[-1], markdown=True))
    if compiles:
        order = {op: i for i, op in enumerate(B.OPS)}
        compiles.sort(key=lambda c: order.get(c.get("op", ""), len(order)))
        parts.append(B.render_compile_table(compiles, markdown=True))
    return "\n\n".join(parts)


#: Panels of the plot: a title and the operations it shows.
FAMILIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("top-k (÷ read floor)", ("top_k", "csr_top_k")),
    ("entropies and divergences (÷ compute floor)",
     ("entropy", "entropy_from_logits", "csr_entropy", "relative_entropy", "kl_from_logits",
      "csr_relative_entropy")),
    ("MoE routing (÷ compute floor; grouping ÷ read floor)",
     ("route", "route_stats", "route_select", "deepseek", "expert_choice", "group_by_expert")),
    ("MoE dispatch and combine (÷ memory floor)", ("dispatch", "combine")),
)  # fmt: skip


def floor_multiples(
    timings: list[dict[str, Any]], stat: str = "median"
) -> dict[str, list[tuple[str, dict[str, float]]]]:
    """Per operation, per case: each implementation's time as a multiple of the
    case's compute floor (its read floor where it has none)."""
    field = f"{stat}_s"
    times: dict[tuple[str, str], dict[str, tuple[str, float]]] = {}
    for r in timings:
        if r.get(field):
            times.setdefault((r["op"], r["case"]), {})[r["impl"]] = (r["role"], r[field])
    out: dict[str, list[tuple[str, dict[str, float]]]] = {}
    labels = {i.key: i.label for op in B.OPS for i in B.impls(op)}
    for (op, case), by_impl in times.items():
        floor = by_impl.get("compute_floor", by_impl.get("read_floor"))
        if floor is None:
            continue
        cells = {
            labels.get(key, key): t / floor[1]
            for key, (role, t) in by_impl.items()
            if role in ("fastroute", "peer")
        }
        out.setdefault(op, []).append((case, cells))
    return out


def plot(timings: list[dict[str, Any]], path: Path, stat: str = "median") -> None:
    """Save the floor-multiple chart (one panel per family, log scale) as PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ReportError("--plot needs matplotlib: pip install '.[bench]'") from None
    data = floor_multiples(timings, stat)
    panels = [(t, [op for op in ops if op in data]) for t, ops in FAMILIES]
    panels = [(t, ops) for t, ops in panels if ops]
    if not panels:
        raise ReportError("no timings with a floor to plot")
    rows = [sum(len(data[op]) for op in ops) for _, ops in panels]
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(9, 1.2 + 0.24 * sum(rows) + 0.6 * len(panels)),
        gridspec_kw={"height_ratios": rows}, squeeze=False,
    )  # fmt: skip
    markers = "osD^v<>phX*"
    impl_style: dict[str, tuple[str, str]] = {}
    cmap = plt.get_cmap("tab10")
    for ax, (title, ops) in zip(axes[:, 0], panels, strict=True):
        names, y = [], 0
        for op in ops:
            for case, cells in data[op]:
                for impl, v in cells.items():
                    if impl not in impl_style:
                        n = len(impl_style)
                        impl_style[impl] = (markers[n % len(markers)], cmap(n % 10))
                    m, c = impl_style[impl]
                    big = impl == "fastroute"
                    ax.scatter(v, y, marker=m, color="black" if big else c,
                               s=60 if big else 28, zorder=3 if big else 2,
                               label=impl)  # fmt: skip
                names.append(f"{op} {case}")
                y += 1
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.axvline(1.0, color="grey", lw=0.8)
        ax.grid(axis="x", which="both", alpha=0.3)
        ax.set_title(title, fontsize=9, loc="left")
    handles, labels = [], []
    for ax in axes[:, 0]:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    height = fig.get_figheight()
    legend_rows = -(-len(labels) // 4)
    fig.legend(handles, labels, loc="upper center", ncol=4, fontsize=7, frameon=False)
    axes[-1, 0].set_xlabel(f"time ÷ floor ({stat}; 1 = the floor; left is faster)")
    fig.tight_layout(rect=(0, 0, 1, 1 - (0.2 + 0.16 * legend_rows) / height))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def rewrite_readme(readme: Path, table: str, source: str) -> bool:
    """Replace the marked section of ``readme`` with ``table``; False if no markers."""
    text = readme.read_text(encoding="utf-8")
    start, end = text.find(START), text.find(END)
    if start < 0 or end < 0 or end < start:
        return False
    body = (
        f"{START}\n<!-- generated by bench/report.py from {source}; do not edit by hand -->\n\n"
        f"{table}\n\n"
    )
    new = text[:start] + body + text[end:]
    if new != text:
        readme.write_text(new, encoding="utf-8")
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="bench/report.py",
        description="Render a pytest-benchmark JSON file as fastroute's comparison table.",
    )
    parser.add_argument("json", type=Path, help="file written by --benchmark-json=...")
    parser.add_argument(
        "--readme",
        type=Path,
        metavar="README.md",
        help=f"rewrite the section between {START} and {END} instead of printing",
    )
    parser.add_argument(
        "--stat",
        choices=("median", "min"),
        default="median",
        help="pytest-benchmark statistic to compare (default: median)",
    )
    parser.add_argument(
        "--plot",
        type=Path,
        metavar="PNG",
        help="also save the chart of times as multiples of the floors (needs matplotlib)",
    )
    args = parser.parse_args(argv)
    try:
        data = load(args.json)
        table = render(data, args.stat)
        if args.plot is not None:
            plot(records(data)[0], args.plot, args.stat)
            print(f"report.py: wrote {args.plot}", file=sys.stderr)
    except ReportError as exc:
        print(f"report.py: error: {exc}", file=sys.stderr)
        return 1
    if args.readme is None:
        print(table)
        return 0
    try:
        done = rewrite_readme(args.readme, table, args.json.name)
    except FileNotFoundError:
        print(f"report.py: {args.readme} does not exist; printing the table", file=sys.stderr)
        print(table)
        return 0
    if not done:
        print(
            f"report.py: {args.readme} has no {START} ... {END} markers; printing the table",
            file=sys.stderr,
        )
        print(table)
        return 0
    print(f"report.py: updated the benchmark table in {args.readme}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
