"""Command line: ``python -m fastroute {info,bench,analyze}`` (also installed as ``fastroute``).

``info``
    Versions, CPU, Numba threads and threading layer, SVML status.
``bench``
    Time fastroute against NumPy/SciPy/PyTorch (those installed) and the
    read and compute floors on this machine, using the same cases and callables as
    the pytest-benchmark suite in ``bench/`` (see ``fastroute/_bench/``).
``analyze``
    The highest-entropy tokens of a text (or a saved count matrix) and the
    tokens most related to each (``fastroute/pipeline.py``).

Importing this module is light: the benchmark registry, SciPy and PyTorch are
imported only when ``bench`` runs.
"""

from __future__ import annotations

import argparse
import glob
import importlib
import json
import math
import os
import stat
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

__all__ = ["main"]

_PROG = "fastroute"
_LAYERS = ("default", "safe", "threadsafe", "forksafe", "workqueue", "omp", "tbb")


class CLIError(Exception):
    """A user error: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line (no usage dump), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = _Parser(
        prog=_PROG,
        description="fastroute: Numba kernels for top-k selection, entropies and token routing.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    info = sub.add_parser(
        "info",
        help="print versions, CPU, threads and threading layer",
        description="Print versions, CPU, Numba thread count and threading layer, and SVML status.",
    )
    info.add_argument("--json", action="store_true", help="machine-readable output")

    bench = sub.add_parser(
        "bench",
        help="compare fastroute with NumPy/SciPy/PyTorch/JAX on this machine",
        description=(
            "Time fastroute against NumPy/SciPy recipes, PyTorch and JAX (if installed), the "
            "read and compute floors, on the same cases as the pytest-benchmark suite. Each "
            "call is warmed up once (compile time excluded); the reported time is the "
            "median over repeats filling about --budget seconds per measurement. "
            "Progress goes to stderr, the table to stdout."
        ),
    )
    bench.add_argument(
        "--quick",
        action="store_true",
        help="a subset of the cases (65536x64, 64x128000, 1x8) with a 0.05 s budget",
    )
    bench.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    bench.add_argument(
        "--cases",
        metavar="PATTERN",
        help=(
            "only cases whose name contains PATTERN (case-insensitive) or matches it as a "
            "glob; comma-separated for several, e.g. 'top_k', '65536x64', 'entropy *'"
        ),
    )
    bench.add_argument(
        "--stat",
        choices=("median", "min"),
        default="median",
        help="statistic shown in the table (default median; min is steadier on a busy machine)",
    )
    bench.add_argument("--list", action="store_true", help="list the selected cases and exit")
    bench.add_argument(
        "--budget",
        type=float,
        metavar="SECONDS",
        help="timing budget per measurement (default 0.2, or 0.05 with --quick)",
    )
    bench.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="Numba (and PyTorch) threads; default: numba.get_num_threads()",
    )
    bench.add_argument(
        "--threading-layer",
        choices=_LAYERS,
        help=(
            "Numba threading layer: the benchmark runs in a child process with "
            "NUMBA_THREADING_LAYER set (default: this process's layer)"
        ),
    )
    bench.add_argument(
        "--compile",
        action="store_true",
        help=(
            "also measure first-call time per function in fresh processes: cold compile "
            "(FASTROUTE_NO_CACHE=1) and with Numba's cache warm (adds about a minute)"
        ),
    )
    analyze = sub.add_parser(
        "analyze",
        help="highest-entropy tokens of a text and their most related tokens",
        description=(
            "Count word co-occurrences within a window of W words on either side of each "
            "word (symmetric counts), take each token's conditional distribution "
            "P(neighbour | token), window ±W, rank tokens by its entropy (bits; or, with "
            "--by kl, by its relative entropy to the distribution of all neighbours: how "
            "specific the token is) and list, for the k highest, the tokens most related "
            "to them. FILE is a UTF-8 text (words are lower-cased; several files or globs "
            "are read as one text) or a .npz count matrix saved by scipy.sparse.save_npz "
            "(then the distribution is P(column | row), the counts as they are); without "
            "FILE: the embedded public-domain corpus (Jane Austen, Pride and Prejudice, "
            "1813). Needs SciPy (pip install scipy)."
        ),
    )
    analyze.add_argument(
        "files", nargs="*", metavar="FILE",
        help=(
            "UTF-8 text files or glob patterns (their words one after the other), or one "
            ".npz count matrix"
        ),
    )  # fmt: skip
    analyze.add_argument(
        "-k", type=int, default=20, metavar="K", help="tokens to report (default 20)"
    )
    analyze.add_argument(
        "--related", type=int, default=5, metavar="R",
        help="related tokens per reported token (default 5)",
    )  # fmt: skip
    analyze.add_argument(
        "--window", type=int, default=2, metavar="W",
        help=(
            "co-occurrence window: the W tokens before and the W after each token are its "
            "neighbours (text input only; default 2)"
        ),
    )  # fmt: skip
    analyze.add_argument(
        "--measure", choices=("conditional", "pmi", "ppmi", "npmi"), default="ppmi",
        help=(
            "relatedness: P(j|i), PMI, positive PMI or normalized PMI (default ppmi, with "
            "--cds 0.75: it ranks words seen only a few times lower than plain PMI does)"
        ),
    )  # fmt: skip
    analyze.add_argument(
        "--cds", type=float, default=None, metavar="ALPHA",
        help=(
            "context-distribution smoothing exponent for pmi/ppmi, in (0, 1] "
            "(default 0.75; 1 turns it off)"
        ),
    )  # fmt: skip
    analyze.add_argument(
        "--min-count", type=float, default=3, metavar="N",
        help="ignore pairs seen fewer than N times when ranking related tokens (default 3)",
    )  # fmt: skip
    analyze.add_argument(
        "--by", choices=("entropy", "kl"), default="entropy",
        help=(
            "rank tokens by the entropy of P(neighbour | token) (most uncertain first, the "
            "default) or by D(P(neighbour | token) || P(neighbour)) (kl: most specific first)"
        ),
    )  # fmt: skip
    analyze.add_argument(
        "--min-frequency", type=float, default=None, metavar="N",
        help=(
            "rank only tokens with frequency >= N (default: all with --by entropy, "
            "20 with --by kl, where words seen a few times have the largest divergences)"
        ),
    )  # fmt: skip
    analyze.add_argument(
        "--vocab", metavar="FILE",
        help="for .npz input: a UTF-8 file with one token per line naming rows/columns",
    )  # fmt: skip
    scale = analyze.add_mutually_exclusive_group()
    scale.add_argument(
        "--workers", type=int, metavar="N",
        help=(
            "count and analyze on Dask with a local cluster of N worker processes, at most "
            "one per usable core (text input; needs fastroute[dask]); the same report as "
            "without it"
        ),
    )  # fmt: skip
    scale.add_argument(
        "--scheduler", metavar="ADDRESS",
        help="as --workers, on an existing Dask cluster (e.g. tcp://host:8786) that sees the files",
    )  # fmt: skip
    analyze.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    restore = _lenient_stdout()
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    finally:
        restore()


def _main(argv: list[str]) -> int:
    try:
        parser = _build_parser()
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if args.command is None:
        parser.print_help()
        return 0
    args.argv = argv
    try:
        if args.command == "info":
            return _cmd_info(args)
        if args.command == "analyze":
            return _cmd_analyze(args)
        from .._bench.command import bench

        return bench(args, CLIError, _PROG)
    except CLIError as exc:
        print(f"{_PROG} {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{_PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `python -m fastroute bench | head`
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the exit flush
        except OSError:
            pass
        return 1
    except Exception:  # not a user error: a bug, shown with its traceback
        import traceback

        traceback.print_exc()
        print(
            f"{_PROG} {args.command}: internal error (a bug in fastroute; please report it "
            "with the traceback above)",
            file=sys.stderr,
        )
        return 1


def _lenient_stdout() -> Callable[[], None]:
    """Let characters that the output's encoding cannot show (a word of the
    text, the "±" of the window) be escaped instead of failing the command;
    returns the function that restores the stream's error handler."""
    out = sys.stdout
    errors = getattr(out, "errors", None)
    if errors != "strict" or not callable(getattr(out, "reconfigure", None)):
        return lambda: None
    try:
        out.reconfigure(errors="backslashreplace")
    except Exception:  # not reconfigurable now (e.g. a detached stream)
        return lambda: None

    def restore() -> None:
        try:
            out.reconfigure(errors=errors)
        except Exception:
            pass

    return restore


# --------------------------------------------------------------------------- info


def _cmd_info(args: argparse.Namespace) -> int:
    import numba

    from .. import _bench as B

    env = B.environment()
    env["threading_layer"] = B.threading_layer(probe=True)
    env["parallel_launch"] = B.parallel_launch_latency()
    env["threading_layer_config"] = numba.config.THREADING_LAYER
    env["numba_max_threads"] = numba.config.NUMBA_NUM_THREADS
    env["cache"] = os.environ.get("FASTROUTE_NO_CACHE", "") == ""
    env["numba_cache_dir"] = os.environ.get("NUMBA_CACHE_DIR") or None
    env["python_executable"] = sys.executable
    if args.json:
        print(json.dumps(env, indent=2))
        return 0

    svml = (
        ("in use" if env["svml"] else "not in use")
        + f" (numba.config.USING_SVML={env['svml']}); fastroute does not need it: its "
        + ("entropy kernels use their own vectorized log/exp (fastroute/kernels/_math.py)")
    )
    cache = "enabled" if env["cache"] else "disabled (FASTROUTE_NO_CACHE is set)"
    if env["numba_cache_dir"]:
        cache += f", NUMBA_CACHE_DIR={env['numba_cache_dir']}"
    rows = [
        ("fastroute", env["fastroute"]),
        ("python", f"{env['python']} ({sys.executable})"),
        ("numpy", env["numpy"]),
        ("numba", env["numba"]),
        ("llvmlite", env["llvmlite"] or "?"),
        ("scipy", env["scipy"] or "not installed"),
        ("torch", env["torch"] or "not installed"),
        ("jax", env["jax"] or "not installed"),
        ("cpu", f"{env['cpu']} ({env['cores']} logical cores, {env['usable_cores']} usable)"),
        (
            "numba threads",
            f"{env['numba_threads']} (of NUMBA_NUM_THREADS={env['numba_max_threads']})",
        ),
        ("threading layer", f"{env['threading_layer']} (config: {env['threading_layer_config']})"),
        ("SVML", svml),
        ("disk cache", cache),
    ]
    launch = env["parallel_launch"]
    if launch:
        rows.insert(
            -2,
            (
                "parallel launch",
                f"{B.fmt_time(launch['parallel_s'])} for a parallel sum of "
                f"{int(launch['elements'])} floats (serial: {B.fmt_time(launch['serial_s'])})",
            ),
        )
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    for warning in B.environment_warnings(env):
        print(f"warning: {warning}.")
    return 0


# --------------------------------------------------------------------------- analyze


def _cmd_analyze(args: argparse.Namespace) -> int:
    _check_analyze_args(args)  # every option, before anything is read or started
    npz = args.file is not None
    dask_opts = args.workers is not None or args.scheduler is not None
    _require_analyze(dask_opts)
    from .. import pipeline as A
    from .corpus import CORPUS, load_corpus

    cds = A.DEFAULT_CDS if args.cds is None else args.cds
    opts = dict(k=args.k, related_k=args.related, measure=args.measure, cds=cds,
                min_count=args.min_count, by=args.by,
                min_frequency=args.min_frequency)  # fmt: skip
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if npz:
        result = _analyze_npz(args, opts, timings)
        return _print_analysis(result, args)
    paths = _text_paths(args.files)
    if dask_opts:
        return _print_analysis(_analyze_dask(args, paths, opts, timings), args)
    if not paths:
        text = load_corpus()
        source = {"kind": "embedded corpus", **{k: v for k, v in CORPUS.items() if k != "file"}}
    else:  # the files' words one after the other (a newline ends each)
        text = "\n".join(_read_text(p) for p in paths)
        source = _text_source(paths)
    timings["read"] = time.perf_counter() - t0
    t = time.perf_counter()
    ids, vocab, _ = A.tokenize(text)
    timings["tokenize"] = time.perf_counter() - t
    window = _window(args, ids.size)
    result = A.analyze_tokens(ids, vocab, window=window, source=source, timings=timings,
                              **opts)  # fmt: skip
    return _print_analysis(result, args)


def _check_analyze_args(args: argparse.Namespace) -> None:
    """Check every option of ``analyze`` (one-line errors) and bound
    ``--workers``; nothing is read, imported or started before this."""
    for name, value, low in (("-k", args.k, 1), ("--related", args.related, 0),
                             ("--window", args.window, 1)):  # fmt: skip
        if value < low:
            raise CLIError(f"{name} must be >= {low}, got {value}")
    if not (math.isfinite(args.min_count) and args.min_count > 0):
        raise CLIError(f"--min-count must be > 0 and finite, got {args.min_count}")
    if args.min_frequency is not None and not (
        math.isfinite(args.min_frequency) and args.min_frequency >= 0
    ):
        raise CLIError(f"--min-frequency must be >= 0 and finite, got {args.min_frequency}")
    if args.cds is not None:
        if args.measure not in ("pmi", "ppmi"):
            raise CLIError(f"--cds applies to --measure pmi or ppmi, not {args.measure}")
        if not 0 < args.cds <= 1:
            raise CLIError(f"--cds must be in (0, 1], got {args.cds}")
    if args.vocab is not None and not args.vocab.strip():
        raise CLIError("--vocab needs a file name (one token per line)")
    for f in args.files:
        if not f.strip():
            raise CLIError("an empty FILE name; pass a text file, a glob or a .npz file")
    for f in args.files:
        if not glob.has_magic(f):  # a glob is expanded to regular files only
            _check_file(f, "a .npz count matrix" if f.lower().endswith(".npz") else "a text file")
    npz = [f for f in args.files if f.lower().endswith(".npz")]
    if npz and len(args.files) > 1:
        raise CLIError("a .npz count matrix is analyzed on its own; pass one .npz file")
    args.file = npz[0] if npz else None
    if args.vocab is not None:
        if not npz:
            raise CLIError("--vocab applies to .npz input only")
        _check_file(args.vocab, "a text file of tokens, one per line")
    dask_opts = args.workers is not None or args.scheduler is not None
    if dask_opts and npz:
        raise CLIError("--workers and --scheduler apply to text input, not to a .npz matrix")
    if args.scheduler is not None:
        _check_scheduler_address(args.scheduler)
    if args.workers is not None:
        if args.workers < 1:
            raise CLIError(f"--workers must be >= 1, got {args.workers}")
        cores = _usable_cores()
        if args.workers > cores:  # each worker is a process: more than the cores only waits
            print(f"note: --workers {args.workers} is more than the {cores} usable "
                  f"core{'s' if cores > 1 else ''}; using {cores}", file=sys.stderr)  # fmt: skip
            args.workers = cores


def _check_file(path: str, what: str) -> None:
    """A one-line error unless ``path`` is a regular file (a directory, a
    FIFO or a device is refused before it is opened: reading a FIFO waits)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise CLIError(f"no such file: {path}") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the name
        raise CLIError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if stat.S_ISDIR(mode):
        raise CLIError(f"{path} is a directory; need {what}")
    if not stat.S_ISREG(mode):
        raise CLIError(f"{path} is not a regular file; need {what}")


def _usable_cores() -> int:
    """Logical cores this process may run on (its CPU affinity)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx", "inproc")


def _check_scheduler_address(address: str) -> None:
    """A Dask scheduler address: ``[protocol://]host:port``, checked by its
    form before Dask is imported (whether it answers is found out later)."""
    example = "e.g. tcp://127.0.0.1:8786"
    a = address.strip()
    if not a:
        raise CLIError(f"--scheduler needs the address of a Dask scheduler ({example})")
    scheme, sep, rest = a.rpartition("://")
    if sep and scheme.lower() not in _SCHEMES:
        raise CLIError(
            f"--scheduler {address!r}: unknown protocol {scheme!r}; use one of "
            f"{', '.join(_SCHEMES)} ({example})"
        )
    if scheme.lower() == "inproc":
        return
    host, colon, port = rest.rpartition(":")
    if not colon or not host or host in ("[", "[]") or not port:
        raise CLIError(f"--scheduler {address!r} is not host:port ({example})")
    if not (port.isdigit() and 0 < int(port) < 65536):
        raise CLIError(
            f"--scheduler {address!r}: the port must be a number from 1 to 65535 ({example})"
        )


def _require_analyze(dask_opts: bool) -> None:
    """What ``analyze`` strictly needs, imported before any work: SciPy for
    the sparse counts, and Dask with Distributed for ``--workers`` and
    ``--scheduler`` (the ``dask`` extra brings all three)."""
    missing = []
    for module, name in (("scipy.sparse", "SciPy"),) + (
        (("dask.array", "Dask"), ("distributed", "Distributed")) if dask_opts else ()
    ):
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(name)
    if not missing:
        return
    what = missing[0] if len(missing) == 1 else ", ".join(missing[:-1]) + " and " + missing[-1]
    if dask_opts:
        raise CLIError(
            f"--workers and --scheduler need {what}, not installed: pip install 'fastroute[dask]'"
        )
    raise CLIError("analyze needs SciPy, which is not installed: pip install scipy")


def _text_paths(files: list[str]) -> list[str]:
    from ..dask.corpus import expand_paths  # glob patterns expanded; Dask is not needed

    if not files:
        return []
    try:
        return expand_paths(files, "")
    except OSError as exc:
        raise CLIError(str(exc)) from None


def _text_source(paths: list[str]) -> dict[str, Any]:
    if len(paths) == 1:
        return {"kind": "text file", "path": paths[0]}
    return {"kind": "text files", "paths": paths}


def _window(args: argparse.Namespace, n: int) -> int:
    if n < 2:
        what = ", ".join(args.files) or "the corpus"
        raise CLIError(f"{what} has {n} word(s); need at least 2")
    if args.window > n - 1:  # a wider window counts the same pairs
        print(f"note: --window {args.window} is more than the text's {n:,} words allow; "
              f"using {n - 1:,}", file=sys.stderr)  # fmt: skip
        return n - 1
    return args.window


def _analyze_dask(args: argparse.Namespace, paths: list[str], opts: dict[str, Any],
                  timings: dict[str, float]):  # fmt: skip
    import asyncio
    import contextlib
    import tempfile

    from .corpus import CORPUS, load_corpus

    try:
        import dask  # noqa: F401
        from distributed import Client

        import fastroute.dask as frd
    except ImportError:
        raise CLIError(
            "--workers and --scheduler need Dask: pip install 'fastroute[dask]'"
        ) from None
    with contextlib.ExitStack() as stack:
        if args.workers is not None:
            cluster = stack.enter_context(frd.local_cluster(args.workers, dashboard_address=":0"))
            client = stack.enter_context(Client(cluster))
            where = {"workers": args.workers}
        else:
            try:
                client = stack.enter_context(Client(args.scheduler.strip(), timeout="10s"))
            except (OSError, TimeoutError, asyncio.TimeoutError, ValueError) as exc:
                why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise CLIError(
                    f"cannot reach the Dask scheduler at {args.scheduler}: {why}"
                ) from None
            where = {"scheduler": args.scheduler}
        if paths:
            source = {**_text_source(paths), **where}
        else:  # the embedded corpus, as a file the workers read
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="fastroute-"))
            paths = [f"{tmp}/corpus.txt"]
            with open(paths[0], "w", encoding="utf-8") as f:
                f.write(load_corpus())
            source = {"kind": "embedded corpus", **{k: v for k, v in CORPUS.items()
                                                    if k != "file"}, **where}  # fmt: skip
        t = time.perf_counter()
        try:
            corpus = frd.read_corpus(paths)
            timings["read_tokenize"] = time.perf_counter() - t
            window = _window(args, int(corpus.ids.shape[0]))
            result = frd.analyze(corpus, window=window, source=source, timings=timings, **opts)
        except (OSError, ValueError) as exc:
            raise CLIError(str(exc)) from None
        del client
    return result


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise CLIError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise CLIError(f"{path} is a directory, not a text file") from None
    except UnicodeDecodeError as exc:
        raise CLIError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise CLIError(f"cannot read {path}: {exc.strerror}") from None


def _analyze_npz(args: argparse.Namespace, opts: dict[str, Any], timings: dict[str, float]):
    from .. import pipeline as A

    t = time.perf_counter()
    try:
        import scipy.sparse as sp
    except ImportError:
        raise CLIError(".npz input needs SciPy: pip install scipy") from None
    try:
        C = sp.load_npz(args.file)
    except FileNotFoundError:
        raise CLIError(f"no such file: {args.file}") from None
    except Exception as exc:
        raise CLIError(f"cannot read a sparse matrix from {args.file}: {exc}") from None
    if len(C.shape) != 2:
        raise CLIError(f"{args.file} holds a {len(C.shape)}-D array; need a 2-D count matrix")
    vocab = None
    if args.vocab:
        vocab = _read_text(args.vocab).splitlines()
        if len(vocab) != max(C.shape):
            raise CLIError(
                f"{args.vocab} names {len(vocab)} tokens but the matrix is {C.shape[0]} x "
                f"{C.shape[1]}; need exactly one line per row/column ({max(C.shape)} lines)"
            )
    if C.shape[0] == 0 or C.shape[1] == 0:
        raise CLIError(f"{args.file} holds an empty {C.shape[0]} x {C.shape[1]} matrix")
    timings["read"] = time.perf_counter() - t
    source = {"kind": "count matrix", "path": args.file, "vocab": args.vocab}
    try:
        return A.analyze_counts(C, vocab, source=source, timings=timings, **opts)
    except (TypeError, ValueError) as exc:
        raise CLIError(f"{args.file}: {exc}") from None


def _print_analysis(result: Any, args: argparse.Namespace) -> int:
    from ..pipeline import distribution_label

    p = result.params
    for flag, asked, used, what in (("-k", args.k, p["k"], "token types"),
                                    ("--related", args.related, p["related"], "columns")):  # fmt: skip
        if asked > used:  # said on stderr, so --json output stays clean
            print(f"note: {flag} {asked} is more than the {used:,} {what}; using {used:,}",
                  file=sys.stderr)  # fmt: skip
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
        return 0
    src = result.source
    if src.get("kind") == "embedded corpus":
        what = f"{src['title']} ({src['author']}, {src['year']}, {src['licence']})"
    else:
        what = src.get("path") or f"{len(src.get('paths', ()))} files"
    size = f"{result.tokens:,} tokens, " if result.tokens is not None else ""
    print(f"{what}: {size}{result.vocabulary_size:,} types, {result.stored_pairs:,} stored pairs")
    kl = p["by"] == "kl"
    rare = f", frequency >= {p['min_frequency']:g}" if p["min_frequency"] > 0 else ""
    # what is counted, truthfully: a text's counts are symmetric (neighbours
    # on both sides within the window), a matrix's are taken as they are
    cond, ctx = distribution_label(p.get("window"))
    cond, _, window = cond.partition(", ")
    window = f"{window}, " if window else ""
    if kl:
        what = f"most specific tokens: D({cond} || {ctx}) ({window}bits{rare})"
    else:
        what = f"highest-entropy tokens of {cond} ({window}entropy in bits{rare})"
    print(f"{len(result.top)} {what}; related by {_measure_name(p)} "
          f"(min count {p['min_count']:g})")  # fmt: skip
    print()
    width = max([5] + [len(row["token"]) for row in result.top])
    fname = {"occurrences": "count", "row sum": "row sum"}.get(p.get("frequency"), "freq")
    key = f"{p['by']}_bits"
    print(
        f"{'rank':>4}  {'token':<{width}}  {'D bits' if kl else 'H bits':>7}  {fname:>8}  related"
    )
    for row in result.top:
        rel = ", ".join(f"{r['token']} {r['score']:.2f}" for r in row["related"]) or "-"
        freq = row["frequency"]
        freq_s = f"{freq:,}" if isinstance(freq, int) else f"{freq:,.6g}"
        print(f"{row['rank']:>4}  {row['token']:<{width}}  {row[key]:7.3f}  {freq_s:>8}  {rel}")
    print()
    times = dict(result.timings)
    compiled = times.pop("compile", 0.0)
    stages = ", ".join(f"{k} {1e3 * v:.1f} ms" for k, v in times.items())
    total = sum(times.values()) + compiled
    line = f"time: {stages}; total {total:.2f} s"
    if compiled:
        line += (
            f", of which {compiled:.1f} s compiling kernels on first use (a later run "
            "loads them from Numba's cache)"
        )
    print(line)
    if fname != "freq":
        what = "occurrences in the text" if fname == "count" else "row sums of the count matrix"
        print(f"{fname}: {what}")
    return 0


def _measure_name(p: dict[str, Any]) -> str:
    m = {"conditional": "P(j | i)", "pmi": "PMI", "ppmi": "positive PMI",
         "npmi": "normalized PMI"}[p["measure"]]  # fmt: skip
    if p.get("cds"):
        m += f" with context-distribution smoothing {p['cds']:g}"
    return m
