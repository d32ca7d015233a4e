"""A differential fuzzer of the surfaces added after ``fuzz_sparse.py``:
the divergences, ``dispatch``/``combine``, ``fastroute.dask``, the command
line and the ``@njit`` kernels.

Run as a script, so that a crash ends only this process
(``test_robustness.py`` runs it in a subprocess)::

    python tests/fuzz_newer.py --seed 0 --calls 400 [--log FILE] [--failures FILE]
        [--surfaces divergence,sparse,moe,dask,cli,kernels] [--quick] [--max-memory GIB]

Each round picks a surface and builds a case, valid or broken on purpose,
and each call is classified

``ok``
    a valid input gave the reference's result;
``error``
    an invalid input was rejected clearly: a ``ValueError``/``TypeError``
    whose message names the public function (as the package's messages do:
    ``"relative_entropy: ..."``), exit status 2 with one line for the CLI;
``wrong``
    a result that differs from the reference, an invalid input accepted, a
    valid one rejected, a declared Dask shape that is not the computed one
    (an unknown, NaN, length is fine), an ``@njit`` kernel that wrote or
    read outside its buffers, ``--workers`` not bounded by the cores;
``other``
    any other exception, or a clear type with a message that does not name
    the function (a foreign message: NumPy's, torch's, Distributed's) or,
    for ``combine``'s weights, does not say what is wrong; a CLI traceback,
    "internal error" or an exit status other than 0 and 2.

The oracles: ``reference.py``'s mpmath divergences (every entry taken as
the exact number it stores) for dense and sparse ``p``
(``reference_formats.dense_of`` reads and checks the sparse formats, as in
``fuzz_sparse.py``, whose matrix builder and corruptions are reused), a
NumPy ``dispatch``/``combine`` over the routing's ``order``/``offsets``,
``fastroute``'s single-machine functions for ``fastroute.dask`` (the same
bits, as documented), ``fastroute.pipeline.tokenize`` for ``read_corpus``.

The ``@njit`` kernels are called with their buffers (and ``x``, ``q``,
``bias``...) cut out of larger arrays whose margins hold a known fill: a
write past a buffer changes a margin (``oob-write``) and a read past it
makes the result depend on the fill, so every such call runs twice with two
fills (``oob-read``). The margins are wider than any size the fuzzer
passes, so these calls do not corrupt the process's heap; a kernel that
writes further than that still can, and then a later call may abort (the
log names the last call).

``--workers``/``--scheduler`` CLI calls run in a forked child each (a failed
``distributed.Client`` can leave the process unable to start another),
with ``LocalCluster`` replaced by a stub that records the requested worker
count and starts nothing. Dask runs on the synchronous scheduler.

The counts go to the last stdout line as JSON, with the counts per surface,
a signature count of the failures (``surface:case:verdict:reason``), the
first failure of each signature and the first failures with their cases
(``--failures FILE`` gets every one). Before each call its description is
written to ``--log`` (flushed), so that the test can name a call that
crashed the process.

The address space is capped (``--max-memory``, 6 GiB): an input that makes
a function allocate without bound (SciPy converting a malformed matrix, a
size not checked first) gets a ``MemoryError`` (``other``) instead of the
machine's memory; the sizes the fuzzer passes on purpose are beyond any
machine's memory, or small.

``--quick`` keeps to the dtypes and code paths the rest of the test suite
compiles anyway (no torch, float16 or bfloat16, C-contiguous arrays, ``q``
broadcast against ``p`` and not the other way, default routing options, no
direct kernel calls but ``gather_row``), so that a quick run costs little
more than its calls.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import math
import os
import pathlib
import resource
import select
import shutil
import sys
import tempfile
import traceback
import warnings
from collections import Counter
from collections.abc import Callable
from typing import Any

import mpmath
import numpy as np
import scipy.sparse as sp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fuzz_sparse import build as build_matrix  # noqa: E402
from fuzz_sparse import corrupt  # noqa: E402
from reference import (  # noqa: E402
    REF_PREC,
    _apply_row_pairs,
    divergence_row_exact,
    divergence_terms_scale,
    kl_logits_row_exact,
    same_values,
)
from reference_formats import Malformed, Unsupported, dense_of  # noqa: E402

import fastroute as fr  # noqa: E402

SURFACES = ("divergence", "sparse", "moe", "dask", "cli", "kernels")
#: how often each surface is picked (a round of the costlier ones makes more calls)
WEIGHTS = {"divergence": 6, "sparse": 4, "moe": 5, "dask": 2, "cli": 1, "kernels": 2}
VERDICTS = ("tried", "ok", "error", "wrong", "other")
DIV_FUNCS = ("relative_entropy", "cross_entropy", "kl_from_logits")
MEMORY = int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))

try:
    import ml_dtypes

    BF16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - a test dependency
    BF16 = None


# --------------------------------------------------------------------------- bookkeeping


class Fuzzer:
    """Runs calls, classifies them, keeps the counts and the failures."""

    def __init__(self, log, quick: bool):
        self.log = log
        self.quick = quick
        self.counts = dict.fromkeys(VERDICTS, 0)
        self.by_surface: dict[str, dict[str, int]] = {}
        self.signatures: Counter = Counter()
        self.failures: list[str] = []
        self.examples: dict[str, str] = {}
        self.all_failures = None  # a file that gets every failure, when asked

    def call(self, surface: str, tag: str, what: str, fn: Callable[[], Any], judge) -> str:
        self.log.write(f"{surface}/{tag}: {what}\n")
        self.log.flush()
        per = self.by_surface.setdefault(surface, dict.fromkeys(VERDICTS, 0))
        self.counts["tried"] += 1
        per["tried"] += 1
        try:
            got, exc = fn(), None
        except Exception as e:  # noqa: BLE001 - classified, not hidden
            got, exc = None, e
        try:
            verdict, why = judge(got, exc)
        except Exception as e:  # noqa: BLE001 - the fuzzer's own bug: made visible
            verdict, why = "other", f"fuzzer: the judge failed: {traceback.format_exc(-3)} {e}"
        self.counts[verdict] += 1
        per[verdict] += 1
        if verdict in ("wrong", "other"):
            key = f"{surface}:{tag}:{verdict}:{why.split(':')[0]}"
            self.signatures[key] += 1
            line = f"{surface}/{tag}: {what} -> {verdict}: {why}"
            if key not in self.examples:
                self.examples[key] = line
            if len(self.failures) < 40:
                self.failures.append(line)
            if self.all_failures is not None:
                self.all_failures.write(f"{key}\t{line}\n")
                self.all_failures.flush()
        return verdict

    def report(self) -> dict:
        return {
            "counts": self.counts,
            "surfaces": self.by_surface,
            "signatures": dict(sorted(self.signatures.items())),
            "examples": self.examples,
            "failures": self.failures,
        }


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:300]}"


def summary(x: Any) -> str:
    try:
        if isinstance(x, np.ndarray):
            return f"array {x.dtype} {x.shape} {np.array2string(x.ravel()[:6], threshold=6)}"
        return repr(x)[:200].replace("\n", " ")
    except Exception:  # noqa: BLE001 - a summary never fails
        return type(x).__name__


def clear(exc: BaseException, names, *, oserror: bool = False, axis: bool = False) -> bool:
    """A clear error: ValueError/TypeError (and OSError for paths) whose
    message names one of ``names`` as the package's messages do
    (``"relative_entropy: ..."``); NumPy's AxisError for an axis out of
    range (as every fastroute function raises it)."""
    if isinstance(exc, np.exceptions.AxisError):
        return axis
    kinds = (ValueError, TypeError, OSError) if oserror else (ValueError, TypeError)
    return isinstance(exc, kinds) and any(f"{n}:" in str(exc) for n in names)


def expect_error(names, mention: str | None = None, **kw):
    """The judge of an invalid input: a clear error (whose message has
    ``mention``, the name of what is wrong, when given)."""

    def judge(got, exc):
        if exc is None:
            return "wrong", f"accepted: {summary(got)}"
        if clear(exc, names, **kw):
            if mention and mention not in str(exc):
                return "other", f"misleading {describe(exc)} (it does not say {mention!r})"
            return "error", ""
        return "other", f"foreign {describe(exc)}"

    return judge


def expect_result(names, check, *, may_reject: bool = False, **kw):
    """The judge of a valid input: ``check(result)`` is None or a problem;
    ``may_reject``: a clear error is fine too (a size beyond the machine,
    an option at the edge of its range, an input either reading is fair)."""

    def judge(got, exc):
        if exc is not None:
            if clear(exc, names, **kw):
                if may_reject:
                    return "error", ""
                return "wrong", f"rejected valid input: {describe(exc)}"
            return "other", f"foreign {describe(exc)}"
        problem = check(got)
        return ("wrong", problem) if problem else ("ok", "")

    return judge


def expect_anything(names, **kw):
    """A clear error or any result (an input with no reference)."""
    return expect_result(names, lambda got: None, may_reject=True, **kw)


def pick(rng, seq):
    return seq[int(rng.integers(len(seq)))]


# --------------------------------------------------------------------------- values


COUNTS = (0.0, 1.0, 2.0, 0.5, 3.0, 7.0, 0.25, 1.0, 5.0)
COUNT_SPECIALS = (0.0, -0.0, 1e-300, 5e-324, 1e-45, 1e300, 1.7e308, 3e38, 65504.0,
                  np.inf, np.nan, -1.0, -np.inf, -0.5)  # fmt: skip
LOGITS = (0.0, 1.0, -1.0, 2.5, -3.0, 0.5, 4.0, -0.25)
LOGIT_SPECIALS = (-0.0, 30.0, -30.0, 709.0, -745.0, 1e-300, 1e30, -1e30, 1e300, -1e300,
                  1e308, -1e308, 1.7976931348623157e308, -1.7976931348623157e308,
                  np.inf, -np.inf, np.nan)  # fmt: skip
HUGE_COUNTS = (1e308, 1.7976931348623157e308, 1.5e308, 1e300, 1e-300, 5e-324, 0.0, 1.0, 3.0)
HUGE_LOGITS = (1e308, -1e308, 1.7976931348623157e308, -1.7976931348623157e308, 1e300, -1e300,
               -1.4982567, 1.0572312, 0.0)  # fmt: skip
INT_COUNTS = (0, 1, 2, 3, 7, 40, 1000)
INT_SPECIALS = (-1, 2**53 + 1, 2**62, 2**63 - 1, -(2**63))
INT_LOGITS = (-3, -1, 0, 1, 2, 5)
INT_LOGIT_SPECIALS = (2**62, -(2**62), 2**63 - 1, -(2**63))


def draw_values(rng, shape, dtype, logits: bool, special_rate: float) -> np.ndarray:
    """Values of ``dtype`` (stored exactly as the array will hold them)."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.random(shape) < 0.6
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        pool = np.array(
            [v for v in (INT_LOGITS if logits else INT_COUNTS) if info.min <= v <= info.max]
        )
        x = rng.choice(pool, shape).astype(np.int64)
        if dtype.kind == "u":
            x = np.abs(x)
        specials = np.array([v for v in (INT_LOGIT_SPECIALS if logits else INT_SPECIALS)
                             if np.iinfo(dtype).min <= v <= np.iinfo(dtype).max])  # fmt: skip
        mask = rng.random(shape) < special_rate
        if specials.size and mask.any():
            x = x.astype(object)
            x[mask] = rng.choice(specials, int(mask.sum()))
        return np.array(x.tolist(), dtype=dtype).reshape(shape)
    if rng.random() < 0.35:  # continuous values
        if logits:
            x = rng.normal(0.0, float(10.0 ** rng.integers(-1, 3)), shape)
        else:
            x = rng.random(shape) ** 3 * float(10.0 ** rng.integers(-3, 4))
    else:
        x = rng.choice(np.array(LOGITS if logits else COUNTS), shape)
    mask = rng.random(shape) < special_rate
    if mask.any():
        x = np.array(x, np.float64)
        x[mask] = rng.choice(
            np.array(LOGIT_SPECIALS if logits else COUNT_SPECIALS), int(mask.sum())
        )
    with np.errstate(all="ignore"):
        return np.asarray(x, np.float64).astype(dtype)


def relayout(rng, a: np.ndarray, kind: str) -> np.ndarray:
    """The same values in another memory layout."""
    if kind == "fortran" and a.ndim >= 2:
        return np.asfortranarray(a)
    if kind == "strided" and a.ndim >= 1:
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1] + 1,), a.dtype)
        big[..., 1::2] = a
        return big[..., 1::2]
    if kind == "reversed" and a.ndim >= 1:
        return np.ascontiguousarray(a[..., ::-1])[..., ::-1]
    if kind == "swapped" and a.dtype.itemsize > 1:
        return a.astype(a.dtype.newbyteorder())
    if kind == "broadcast" and a.ndim >= 2 and a.shape[0] > 0:
        return np.broadcast_to(a[:1], a.shape)
    return a


# --------------------------------------------------------------------------- divergences


def _torch():
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is optional
        return None
    return torch


def as_input(rng, a: np.ndarray, quick: bool):
    """``a`` as the argument passed (a view, a list, a torch tensor, ...):
    ``(argument, the NumPy array it stands for or None if invalid, what)``."""
    r = rng.random()
    torch = None if quick else _torch()
    if r < 0.08 and a.ndim >= 1 and a.size:
        return a.tolist(), np.asarray(a.tolist()), "list"
    if r < 0.11 and a.ndim >= 2 and a.size and a.shape[0] >= 2:
        rows = a.reshape(-1, a.shape[-1]).tolist()
        rows[-1] = rows[-1][:-1]
        return rows, None, "ragged list"
    if r < 0.22 and torch is not None and a.dtype.kind in "fiub" and a.dtype != np.uint64:
        t = torch.from_numpy(np.ascontiguousarray(a))
        what = f"torch {t.dtype}"
        if a.dtype.kind == "f" and rng.random() < 0.3:  # bfloat16 from the float32 values
            t = t.to(torch.float32).to(torch.bfloat16)
            what = "torch bfloat16"
        if t.is_floating_point() and rng.random() < 0.5:
            t = t.clone().requires_grad_(True)
            what += " requires_grad"
        ref = t.detach()
        ref = (ref.to(torch.float32) if ref.dtype == torch.bfloat16 else ref).numpy()
        return t, ref, what
    kind = "c" if quick else pick(rng, ("c", "c", "c", "fortran", "strided", "reversed", "swapped",
                                        "broadcast"))  # fmt: skip
    b = relayout(rng, a, kind)
    return b, b, f"{kind} {b.dtype.str}"


DENSE_DTYPES = (
    "float64",
    "float64",
    "float32",
    "float32",
    "float16",
    "int64",
    "int32",
    "uint8",
    "bool",
)
QUICK_DTYPES = ("float64", "float64", "float32", "int64")


def _is_half_or_single(arg, arr) -> bool:
    torch = _torch() if type(arg).__module__.startswith("torch") else None
    if torch is not None:
        return arg.dtype in (torch.float16, torch.float32, torch.bfloat16)
    return arr is not None and arr.dtype.char in "ef"


def _divergence_shapes(rng, quick: bool):
    ndim = int(rng.choice([1, 1, 2, 2, 2, 3]))
    shape = tuple(int(rng.integers(0 if rng.random() < 0.1 else 1, 5)) for _ in range(ndim))
    shape = shape[:-1] + (int(rng.integers(0 if rng.random() < 0.05 else 1, 9)),)
    qs = pick(
        rng, ("same", "same", "row", "suffix", "ones", "mismatch") + (() if quick else ("extra",))
    )
    if qs == "row":
        qshape = shape[-1:]
    elif qs == "suffix":
        qshape = shape[1:] if len(shape) > 1 else shape
    elif qs == "ones":
        qshape = tuple(1 if i < len(shape) - 1 and rng.random() < 0.6 else d
                       for i, d in enumerate(shape))  # fmt: skip
    elif qs == "mismatch":
        qshape = shape[:-1] + (shape[-1] + 1,)
    elif qs == "extra":
        qshape = (2,) + shape
    else:
        qshape = shape
    if not quick and rng.random() < 0.5:  # p broadcast against q just as well
        shape, qshape = qshape, shape
    return shape, qshape


def _expected_shape(pshape, qshape, axis):
    """(output shape, normalized axis) or the reason the call must fail."""
    try:
        shape = np.broadcast_shapes(pshape, qshape)
    except ValueError:
        return "shapes do not broadcast"
    if len(shape) == 0:
        return "no dimension"
    if not -len(shape) <= axis < len(shape):
        return "axis"
    ax = axis % len(shape)
    a = (1,) * (len(shape) - len(pshape)) + tuple(pshape)
    c = (1,) * (len(shape) - len(qshape)) + tuple(qshape)
    if a[ax] != c[ax]:
        return "lengths differ along the axis"
    return shape[:ax] + shape[ax + 1 :], ax


BASES = (None, None, None, 2, 2.718281828459045, 10, 0.5, 1.5, np.float32(2.0), 1e300, 1e-300,
         1 + 2**-40, 5e-324, 1.7e308)  # fmt: skip
BAD_BASES = (1, 1.0, 0, -2, np.nan, np.inf, -np.inf, "2", True, complex(2))
TEMPERATURES = (1.0, 1.0, 2.0, 0.5, 1e-3, 3, np.float32(0.7), 1e-100, 1e-300, 1e-310, 5e-324,
                1e100, 1e300, 1.7e308)  # fmt: skip
BAD_TEMPERATURES = (0, 0.0, -1.0, -0.0, np.inf, np.nan, "1", True, None)


def _in_base(v, base) -> float:
    """An exact value in nats (an mpf, or an infinity or NaN) divided by
    ``log(base)`` and rounded once (``reference.py`` returns an infinite
    divergence before it divides: for a base below 1 it is ``-inf``)."""
    if base is None:
        return float(v)
    with mpmath.workprec(REF_PREC):
        return float(mpmath.mpf(v) / mpmath.log(mpmath.mpf(float(base))))


def divergence_exact(p, q, axis, base, normalize, cross) -> np.ndarray:
    """``reference.divergence_ref`` with the base applied as ``_in_base`` does."""
    return _apply_row_pairs(
        p, q, axis, lambda a, b: _in_base(divergence_row_exact(a, b, normalize, None, cross), base)
    )


def kl_exact(zp, zq, axis, base, temperature) -> np.ndarray:
    """``reference.kl_logits_ref`` with the base applied as ``_in_base`` does."""
    return _apply_row_pairs(
        zp, zq, axis, lambda a, b: _in_base(kl_logits_row_exact(a, b, temperature, None), base)
    )


def _unit(base) -> float:
    return 1.0 if base is None else 1.0 / abs(math.log(float(base)))


def value_problem(got: np.ndarray, ref: np.ndarray, f32: bool, scale, unit: float) -> str | None:
    """None when every result is within the tolerance of the exact value:
    NaN where it is NaN, the same infinity, else relative to ``scale`` (the
    result, or ``sum |terms|`` for sums of both signs)."""
    g = np.asarray(got, np.float64).ravel()
    r = np.asarray(ref, np.float64).ravel()
    s = np.broadcast_to(np.asarray(scale, np.float64), np.asarray(ref).shape).ravel()
    for i in range(r.size):
        gi, ri = float(g[i]), float(r[i])
        if math.isnan(gi) or math.isnan(ri):
            if math.isnan(gi) != math.isnan(ri):
                return f"value: slice {i} gives {gi!r}, the exact value is {ri!r}"
            continue
        if f32:
            with np.errstate(over="ignore"):
                ri32 = float(np.float32(ri))
            if math.isinf(ri32) and not math.isinf(gi) and abs(gi) >= 3.4028234e38:
                continue  # the largest float32 or inf: both a fair rounding
            ri_cmp = ri32
        else:
            ri_cmp = ri
        if math.isinf(gi) or math.isinf(ri_cmp):
            if gi != ri_cmp:
                return f"value: slice {i} gives {gi!r}, the exact value is {ri!r}"
            continue
        si = float(s[i])
        if not math.isfinite(si):
            si = math.inf
        tol = (2e-5 if f32 else 1e-9) * max(abs(ri), si) + (1e-6 if f32 else 1e-12) * unit
        if f32:
            tol += 1e-44
        if not abs(gi - ri) <= tol:
            return f"value: slice {i} gives {gi!r}, the exact value is {ri!r}"
    return None


def _kl_alternatives(pa, qa, axis, base, t):
    # the exact divergence of the logits as divided in float64 (z / T and
    # z * (1 / T) rounded): an equally fair reading of "z / T" where the
    # division is exact to the last bit only
    out = []
    with np.errstate(all="ignore"):
        for scaled in (
            (np.asarray(pa, np.float64) / t, np.asarray(qa, np.float64) / t),
            (np.asarray(pa, np.float64) * (1.0 / t), np.asarray(qa, np.float64) * (1.0 / t)),
        ):
            fa, fb = scaled
            ok_a = np.isfinite(fa) | np.isinf(np.asarray(pa, np.float64))
            ok_b = np.isfinite(fb) | np.isinf(np.asarray(qa, np.float64))
            if ok_a.all() and ok_b.all():
                out.append(kl_exact(fa, fb, axis, base, 1.0))
    return out


def divergence_round(fz: Fuzzer, rng) -> None:
    func = pick(rng, DIV_FUNCS)
    logits = func == "kl_from_logits"
    dtypes = QUICK_DTYPES if fz.quick else DENSE_DTYPES
    if fz.quick and logits:  # (float32 logits beyond float32's exp range: a kernel of its own)
        dtypes = ("float64", "int64")
    pshape, qshape = _divergence_shapes(rng, fz.quick)
    special = float(pick(rng, (0.0, 0.0, 0.05, 0.3)))
    pd, qd = pick(rng, dtypes), pick(rng, dtypes) if rng.random() < 0.4 else None
    qd = qd or pd
    p0 = draw_values(rng, pshape, pd, logits, special)
    q0 = draw_values(rng, qshape, qd, logits, special)
    if rng.random() < 0.1:  # entries near the float64 limit, all finite
        pool = np.array(HUGE_LOGITS if logits else HUGE_COUNTS)
        p0, q0 = rng.choice(pool, pshape), rng.choice(pool, qshape)
        if rng.random() < 0.5:
            q0 = np.where(rng.random(qshape) < 0.5, q0, rng.choice(pool[-3:], qshape))
    if rng.random() < 0.15 and qshape == pshape and p0.dtype.kind == "f":  # nearly equal rows
        with np.errstate(all="ignore"):
            q0 = (p0 * (1 + 1e-8 * rng.standard_normal(pshape))).astype(p0.dtype)
    p, pa, pwhat = as_input(rng, p0, fz.quick)
    q, qa, qwhat = as_input(rng, q0, fz.quick)
    kw: dict[str, Any] = {}
    bad_option = False
    edge = False
    axis = -1
    if rng.random() < 0.4:
        nd = max(len(pshape), len(qshape))
        axis = int(rng.integers(-nd - 1, nd + 1)) if rng.random() < 0.9 else int(pick(rng, (7, -9)))
        kw["axis"] = axis
    if rng.random() < 0.5:
        if rng.random() < 0.15:
            kw["base"] = pick(rng, BAD_BASES)
            bad_option = True
        else:
            kw["base"] = pick(rng, BASES)
            edge = kw["base"] is not None and abs(float(kw["base"]) - 1) < 1e-9
    if logits:
        if rng.random() < 0.6:
            if rng.random() < 0.15:
                kw["temperature"] = pick(rng, BAD_TEMPERATURES)
                bad_option = True
            else:
                kw["temperature"] = pick(rng, TEMPERATURES)
                t = float(kw["temperature"])
                edge = edge or not 1e-6 <= t <= 1e6  # may be rejected as a range
    elif rng.random() < 0.4:
        kw["normalize"] = False
    huge = None
    if rng.random() < 0.03:  # a broadcast view far beyond memory (no copy of it may be made)
        rows = 2 ** int(rng.integers(33, 41))
        n = max(1, int(np.shape(p0)[-1]) if p0.ndim else 4)
        base_row = draw_values(rng, (n,), pd, logits, 0.0)
        big = np.broadcast_to(base_row, (rows, n))
        if rng.random() < 0.5:
            p, pa, pwhat = big, None, f"broadcast_to {big.shape}"
            q, qa, qwhat = base_row, None, f"{base_row.dtype} {base_row.shape}"
        else:
            p, pa, pwhat = base_row, None, f"{base_row.dtype} {base_row.shape}"
            q, qa, qwhat = big, None, f"broadcast_to {big.shape}"
        huge = f"{rows} rows"
        kw.pop("axis", None)
        bad_option = False
    what = f"{func}(p={pwhat} {np.shape(p0)}, q={qwhat} {np.shape(q0)}, {kw})"
    call = lambda: getattr(fr, func)(p, q, **kw)  # noqa: E731
    names = (func,)
    if huge:
        fz.call("divergence", "huge-broadcast", f"{what} {huge}", call, expect_error(names))
        return
    invalid = None
    if pa is None or qa is None:
        invalid = "ragged"
    elif pa.ndim == 0 or qa.ndim == 0:
        invalid = "0-d"
    elif bad_option:
        invalid = "option"
    else:
        out = _expected_shape(pa.shape, qa.shape, axis)
        if isinstance(out, str):
            invalid = out
    if invalid:
        tag = "invalid-" + invalid.split()[0]
        nd = max(np.ndim(p0), np.ndim(q0))
        axis_bad = not -nd <= axis < nd  # then AxisError is a fair answer too
        fz.call("divergence", tag, what, call, expect_error(names, axis=axis_bad))
        return
    out_shape, ax = out
    f32 = _is_half_or_single(p, pa) and _is_half_or_single(q, qa)
    out_dtype = np.dtype(np.float32 if f32 else np.float64)
    base = kw.get("base")
    try:
        if logits:
            ref = kl_exact(pa, qa, ax, base, float(kw.get("temperature", 1.0)))
        else:
            ref = divergence_exact(
                pa, qa, ax, base, kw.get("normalize", True), func == "cross_entropy"
            )
    except ValueError:  # a negative entry
        fz.call("divergence", "invalid-negative", what, call, expect_error(names))
        return
    if kw.get("normalize", True) or logits:
        scale = np.abs(ref)
    else:
        with np.errstate(all="ignore"):
            scale = np.nan_to_num(
                divergence_terms_scale(
                    pa, qa, axis=ax, normalize=False, cross=func == "cross_entropy"
                ),
                nan=np.inf,
            )
    unit = _unit(base)

    def check(got):
        if not isinstance(got, np.ndarray):
            return f"type: {type(got).__name__} {got!r}, not a NumPy array"
        if got.shape != out_shape:
            return f"shape: {got.shape}, expected {out_shape}"
        if got.dtype != out_dtype and not ("bfloat16" in pwhat + qwhat and got.dtype.kind == "f"):
            return f"dtype: {got.dtype}, expected {out_dtype}"
        problem = value_problem(got, ref, got.dtype == np.float32, scale, unit)
        if problem and logits and float(kw.get("temperature", 1.0)) != 1.0:
            for alt in _kl_alternatives(pa, qa, ax, base, float(kw["temperature"])):
                if value_problem(got, alt, got.dtype == np.float32, np.abs(alt), unit) is None:
                    return None
        return problem

    tag = _divergence_tag(func, pwhat + " " + qwhat, kw, p0, q0, logits)
    # a torch bfloat16 tensor may be read (widened exactly) or rejected clearly
    edge = edge or "bfloat16" in pwhat + qwhat
    fz.call("divergence", tag, what, call, expect_result(names, check, may_reject=edge))


def entropy_round(fz: Fuzzer, rng) -> None:
    """``entropy`` of counts (dense, or a CSR matrix), unnormalized ones
    with entries near the float64 limit among them: the exact value is
    ``cross_entropy(p, p)``'s (``-sum p log p``, normalized or not)."""
    shape = (int(rng.integers(1, 4)), int(rng.integers(1, 9)))
    dtype = pick(rng, QUICK_DTYPES)
    p0 = np.abs(draw_values(rng, shape, dtype, False, 0.0))
    if rng.random() < 0.4:  # entries near the float64 limit, all finite
        p0 = rng.choice(np.array(HUGE_COUNTS), shape)
    kw: dict[str, Any] = {"normalize": bool(rng.random() < 0.3)}
    if rng.random() < 0.8:
        kw["base"] = pick(rng, BASES)
    axis = int(pick(rng, (-1, 0)))
    if axis == 0:
        kw["axis"] = 0
    if rng.random() < 0.3:
        p, pa, pwhat = sp.csr_array(p0), p0, "csr"
    else:
        p, pa, pwhat = as_input(rng, p0, True)
    what = f"entropy(p={pwhat} {p0.dtype} {shape}, {kw})"
    call = lambda: fr.entropy(p, **kw)  # noqa: E731
    if pa is None:  # a ragged list
        fz.call("divergence", "entropy-invalid", what, call, expect_error(("entropy",)))
        return
    ax = axis % 2
    base = kw.get("base")
    normalize = kw["normalize"]
    pf = np.asarray(pa, np.float64)
    ref = divergence_exact(pf, pf, ax, base, normalize, True)
    with np.errstate(all="ignore"):
        scale = (
            np.abs(ref)
            if normalize
            else np.nan_to_num(
                divergence_terms_scale(pf, pf, axis=ax, normalize=False, cross=True), nan=np.inf
            )
        )
    f32 = np.dtype(pa.dtype).char in "ef"  # float32 logs: float32's accuracy
    out_dtype = np.dtype(np.float32 if f32 else np.float64)

    def check(got):
        if not isinstance(got, np.ndarray):
            return f"type: {type(got).__name__} {got!r}, not a NumPy array"
        if got.shape != (shape[1 - ax],):
            return f"shape: {got.shape}, expected {(shape[1 - ax],)}"
        if got.dtype != out_dtype:
            return f"dtype: {got.dtype}, expected {out_dtype}"
        return value_problem(got, ref, f32, scale, _unit(base))

    tag = "huge-values" if np.abs(pf).max(initial=0) > 1e200 else "valid"
    fz.call("divergence", "entropy-" + tag, what, call, expect_result(("entropy",), check))


def _divergence_tag(func, whats, kw, p0, q0, logits) -> str:
    """What is special about a valid call: an extreme option or value first,
    then the input's form."""
    t = float(kw.get("temperature", 1.0)) if "temperature" in kw else 1.0
    if logits and not 1e-6 <= t <= 1e6:
        return "extreme-temperature"
    with np.errstate(all="ignore"):
        big = any(np.abs(np.asarray(x, np.float64)[np.isfinite(np.asarray(x, np.float64))]).max(initial=0) > 1e200
                  for x in (p0, q0))  # fmt: skip
    if big:
        return "huge-values"
    if "base" in kw and kw["base"] is not None and not 0.1 < float(kw["base"]) < 100:
        return "extreme-base"
    for form in ("bfloat16", "requires_grad", "torch", "list"):
        if form in whats:
            return "torch-" + form if form in ("bfloat16", "requires_grad") else form
    if p0.ndim == 1 and q0.ndim == 1:
        return "1-D"
    return "valid"


# --------------------------------------------------------------------------- sparse p


SPARSE_FORMATS = ("csr", "csc", "coo", "bsr", "dia", "lil", "dok")


def _dense_widened(A):
    """``dense_of(A)`` reading float16 data as float32 (exactly): whether
    the structure is valid does not depend on the data's width."""
    B = A
    half = False
    data = getattr(A, "data", None)
    if isinstance(data, np.ndarray) and data.dtype == np.float16 and A.format not in ("lil", "dok"):
        B = copy.copy(A)
        B.data = data.astype(np.float32)
        half = True
    elif A.format in ("lil", "dok") and getattr(A, "dtype", None) == np.float16:
        B = copy.copy(A)
        B.dtype = np.dtype(np.float32)
        half = True
    return dense_of(B), half


def _sparse_q(rng, shape, quick):
    """A sparse q of ``shape`` (valid or corrupted): (q, its dense or the
    expectation, what)."""
    dense = draw_values(rng, shape, pick(rng, ("float64", "float32")), False, 0.05)
    dense[rng.random(shape) < 0.4] = 0
    fmt = pick(rng, ("csr", "csc", "coo", "lil", "dok"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        A = getattr(sp, f"{fmt}_array")(dense)
    damage = corrupt(rng, A) if rng.random() < 0.25 else "none"
    return A, f"{type(A).__name__} {dense.dtype} {damage}"


def _wide_indptr(rng, A) -> str:
    """An int64 ``indptr`` with one inner entry far past ``nnz`` (the rest
    valid): the corruption SciPy's own conversions trip over."""
    indptr = np.array(A.indptr, np.int64)
    i = int(rng.integers(1, indptr.size - 1))
    indptr[i] = pick(rng, (10**6, 2**40, 2**62))
    A.indptr = indptr
    return f"indptr[{i}] = {indptr[i]} (int64)"


def sparse_round(fz: Fuzzer, rng) -> None:
    func = pick(rng, ("relative_entropy", "cross_entropy", "relative_entropy", "cross_entropy",
                      "kl_from_logits"))  # fmt: skip
    names = (func,)
    A, desc = build_matrix(rng)
    shape0 = A.shape
    if (
        not fz.quick
        and A.dtype.kind == "f"
        and A.format not in ("lil", "dok")
        and rng.random() < 0.3
    ):
        A.data = A.data.astype(np.float16)  # (values beyond float16 become inf: still exact)
        desc += " as float16"
    if A.format in ("csr", "csc") and A.indptr.size > 2 and rng.random() < 0.03:
        damage = _wide_indptr(rng, A)
    else:
        damage = corrupt(rng, A) if rng.random() < 0.5 else "none"
    half = False
    try:
        (dense, _), half = _dense_widened(A)
        expect = None
    except Malformed:
        expect = "malformed"
    except Unsupported:
        expect = "unsupported"
    except OverflowError:
        expect = "huge"
    if (
        fz.quick
        and expect is None
        and any(
            np.asarray(getattr(A, name, np.zeros(0, np.int32))).dtype not in (np.int32, np.int64)
            for name in ("indices", "indptr")
        )
    ):
        return  # a valid matrix with other index dtypes: kernels the suite does not compile
    axis = int(pick(rng, (-1, -1, 1, 0, 0, 2, -3)))
    kw: dict[str, Any] = {}
    if axis != -1:
        kw["axis"] = axis
    if rng.random() < 0.3:
        kw["base"] = pick(rng, BASES + BAD_BASES[:3])
    if rng.random() < 0.4 and func != "kl_from_logits":
        kw["normalize"] = False
    nrows, ncols = shape0 if len(shape0) == 2 else (0, 0)
    qkind = pick(rng, ("row", "row", "same", "same", "sparse", "column", "wrong", "1-D rows"))
    if fz.quick and qkind == "sparse" and np.dtype(A.dtype) == np.int64:
        qkind = "same"  # (int64 indices against a sparse q: a kernel the suite does not compile)
    q_sparse = None
    if qkind == "sparse":
        qshape = shape0 if rng.random() < 0.9 else (nrows + 1, ncols)
        q, qwhat = _sparse_q(rng, qshape, fz.quick)
        try:
            qdense, _ = dense_of(q)
            q_sparse = "valid"
        except (Malformed, Unsupported, OverflowError):
            qdense, q_sparse = None, "malformed"
    else:
        qshape = {"row": (ncols,), "same": (nrows, ncols), "column": (nrows, 1),
                  "wrong": (ncols + 1,), "1-D rows": (nrows,)}[qkind]  # fmt: skip
        if rng.random() < 0.2:
            qshape = (1,) + qshape if len(qshape) == 1 else qshape
        qd = pick(
            rng, ("float64", "float32") if fz.quick else ("float64", "float32", "float16", "int64")
        )
        qdense = draw_values(rng, qshape, qd, False, float(pick(rng, (0.0, 0.0, 0.1))))
        q, qwhat = qdense, f"{qdense.dtype} {qshape}"
    what = f"{func}(p=#{desc}, {damage}, q={qwhat}, {kw})"
    call = lambda: getattr(fr, func)(A, q, **kw)  # noqa: E731
    tag_base = f"sparse-{'f16' if half else str(np.dtype(A.dtype) if expect is None else 'x')}"
    if func == "kl_from_logits":
        fz.call("sparse", "kl-sparse", what, call, expect_error(names, axis=True))
        return
    if expect in ("malformed", "unsupported") or q_sparse == "malformed":
        dt = getattr(A, "dtype", None)
        tag = f"malformed-{dt}" if expect == "malformed" else f"{expect or 'q-malformed'}"
        fz.call("sparse", tag, what, call, expect_error(names, axis=axis not in (-1, 0, 1)))
        return
    if expect == "huge":
        fz.call("sparse", "huge-shape", what, call, expect_anything(names, axis=True))
        return
    base = kw.get("base")
    if base is not None and (base in BAD_BASES[:3]):
        fz.call(
            "sparse", "invalid-base", what, call, expect_error(names, axis=axis not in (-1, 0, 1))
        )
        return
    if axis not in (-1, 0, 1):
        fz.call("sparse", "invalid-axis", what, call, expect_error(names, axis=True))
        return
    ax = axis % 2
    if q_sparse == "valid":
        if qdense.shape != dense.shape:
            fz.call("sparse", "invalid-q-shape", what, call, expect_error(names))
            return
    else:
        try:
            fits = (
                qdense.ndim <= 2 and np.broadcast_shapes(dense.shape, qdense.shape) == dense.shape
            )
        except ValueError:
            fits = False
        padded = (1,) * (2 - qdense.ndim) + qdense.shape if qdense.ndim <= 2 else None
        if not fits or padded[ax] != dense.shape[ax]:
            fz.call("sparse", "invalid-q-shape", what, call, expect_error(names))
            return
    P = dense.astype(np.float32) if half else dense
    normalize = kw.get("normalize", True)
    try:
        ref = divergence_exact(P, qdense, ax, base, normalize, func == "cross_entropy")
    except ValueError:
        fz.call("sparse", "invalid-negative", what, call, expect_error(names))
        return
    pf32 = half or np.dtype(A.dtype).char in "ef"
    qf32 = np.dtype(qdense.dtype).char in "ef"
    out_dtype = np.dtype(np.float32 if pf32 and qf32 else np.float64)
    if normalize:
        scale = np.abs(ref)
    else:
        with np.errstate(all="ignore"):
            scale = np.nan_to_num(divergence_terms_scale(P, qdense, axis=ax, normalize=False,
                                                         cross=func == "cross_entropy"), nan=np.inf)  # fmt: skip
    out_shape = (dense.shape[1 - ax],)

    def check(got):
        if not isinstance(got, np.ndarray):
            return f"type: {type(got).__name__}, not a NumPy array"
        if got.shape != out_shape or got.dtype != out_dtype:
            return f"shape/dtype: {got.dtype} {got.shape}, expected {out_dtype} {out_shape}"
        return value_problem(got, ref, got.dtype == np.float32, scale, _unit(base))

    fz.call("sparse", tag_base, what, call, expect_result(names, check, may_reject=half))


# --------------------------------------------------------------------------- dispatch / combine


MOE_KINDS = ("float32", "float64", "bfloat16", "float16")


def _kind_dtype(kind: str) -> np.dtype:
    return BF16 if kind == "bfloat16" else np.dtype(kind)


def _layout(order, offsets, k: int, block: int | None):
    """Row of each kept slot, token of each row (-1 padding), offsets, counts."""
    row_of: dict[int, int] = {}
    tokens: list[int] = []
    poff = [0]
    counts = []
    for e in range(len(offsets) - 1):
        seg = [int(s) for s in order[int(offsets[e]) : int(offsets[e + 1])]]
        for s in seg:
            row_of[s] = len(tokens)
            tokens.append(s // max(k, 1))
        counts.append(len(seg))
        tokens += [-1] * ((-len(seg)) % block if block else 0)
        poff.append(len(tokens))
    return row_of, tokens, poff, counts


def _padded_rows(order, offsets, block: int | None) -> int:
    n = 0
    for e in range(len(offsets) - 1):
        c = int(offsets[e + 1]) - int(offsets[e])
        n += c + ((-c) % block if block else 0)
    return n


def _routing_problem(r, T: int) -> str | None:
    """Why this (possibly forged) routing is not a routing of T tokens, or None."""
    try:
        experts = np.asarray(r.experts)
        order = np.asarray(r.order)
        offsets = np.asarray(r.offsets)
    except (AttributeError, ValueError):
        return "not a routing"
    if experts.ndim != 2 or experts.dtype.kind not in "iu":
        return "experts"
    if experts.shape[0] != T:
        return "tokens"
    if order.ndim != 1 or order.dtype.kind not in "iu" or offsets.ndim != 1 or offsets.size < 1:
        return "order/offsets"
    if offsets.dtype.kind not in "iu":
        return "order/offsets"
    k = experts.shape[1]
    off = [int(v) for v in offsets]
    if (
        off[0] != 0
        or off[-1] != order.size
        or any(b < a for a, b in zip(off, off[1:], strict=False))
    ):
        return "offsets"
    slots = [int(v) for v in order]
    if len(set(slots)) != len(slots) or any(not 0 <= s < T * k for s in slots):
        return "slots"
    return None


def _to_numpy_bits(x, kind):
    # rows as NumPy (torch tensors read as they are)
    if type(x).__module__.startswith("torch"):
        torch = _torch()
        if kind in ("bfloat16", "float16"):
            return x.view(torch.int16).numpy().view(np.uint16).view(_kind_dtype(kind))
        return x.numpy()
    return np.asarray(x)


def _same_bits(got, want) -> str | None:
    got = np.asarray(got)
    if got.dtype != want.dtype or got.shape != want.shape:
        return f"shape/dtype: {got.dtype} {got.shape}, expected {want.dtype} {want.shape}"
    g = got.astype(np.float64)
    w = want.astype(np.float64)
    nan = np.isnan(w)
    if not np.array_equal(np.isnan(g), nan):
        return "value: NaN in other places"
    if want.dtype.itemsize == 2:
        gb, wb = got.view(np.uint16), want.view(np.uint16)
    else:
        gb, wb = got.view(f"u{want.dtype.itemsize}"), want.view(f"u{want.dtype.itemsize}")
    bad = np.flatnonzero((gb != wb).ravel() & ~nan.ravel())
    if bad.size:
        i = int(bad[0])
        return f"value: element {i} is {g.ravel()[i]!r}, expected {w.ravel()[i]!r}"
    return None


def dispatch_ref(hidden_np, order, offsets, k, block):
    _, tokens, poff, counts = _layout(order, offsets, k, block)
    rows = np.zeros((len(tokens), hidden_np.shape[1]), hidden_np.dtype)
    for i, t in enumerate(tokens):
        if t >= 0:
            rows[i] = hidden_np[t]
    return rows, np.array(tokens, np.int64), np.array(poff, np.int64), np.array(counts, np.int64)


def combine_ref(x_np, order, offsets, weights, T, k, block):
    row_of, _, _, _ = _layout(order, offsets, k, block)
    acc_t = np.float64 if x_np.dtype == np.float64 else np.float32
    x = x_np.astype(acc_t)
    w = np.asarray(weights).astype(acc_t)
    out = np.zeros((T, x_np.shape[1]), acc_t)
    with np.errstate(all="ignore"):
        for t in range(T):
            acc = np.zeros(x_np.shape[1], acc_t)
            for j in range(k):
                s = t * k + j
                if s in row_of:
                    acc = acc + acc_t(w[t, j]) * x[row_of[s]]
            out[t] = acc
        return out.astype(x_np.dtype)


def _rows_arg(rng, a: np.ndarray, kind: str, quick: bool):
    """``a`` (NumPy, of the kind's dtype) as passed: NumPy or torch."""
    torch = None if quick else _torch()
    if torch is not None and rng.random() < 0.2:
        if kind == "bfloat16":
            t = torch.from_numpy(a.view(np.uint16).view(np.int16).copy()).view(torch.bfloat16)
        else:
            t = torch.from_numpy(np.ascontiguousarray(a))
        return t, "torch"
    return a, "numpy"


def _fresh(x):
    if type(x).__module__.startswith("torch"):
        return x.clone()
    return np.array(x, copy=True)


def moe_round(fz: Fuzzer, rng) -> None:
    T = int(rng.integers(0, 7))
    E = int(rng.integers(1, 6))
    k = int(rng.integers(0, min(E, 3) + 1))
    logits = rng.standard_normal((T, E)).astype(np.float32)
    if rng.random() < 0.3:
        logits = np.round(logits)
    cap = pick(rng, (None, None, 0.5, 1.0, 2.0))
    r = fr.route(logits, k, capacity_factor=cap)
    kind = pick(rng, ("float32", "float64") if fz.quick else MOE_KINDS)
    dt = _kind_dtype(kind)
    H = int(pick(rng, (0, 1, 2, 3, 5, 8)))
    block = pick(rng, (None, None, None, 1, 2, 3, 4))
    vals = rng.standard_normal((T, H)) * float(pick(rng, (1.0, 1e4, 1e-3)))
    if rng.random() < 0.2 and vals.size:
        vals.flat[rng.integers(0, vals.size, 2)] = pick(
            rng, ((np.inf, np.nan), (-np.inf, 0.0), (-0.0, 1e38))
        )
    with np.errstate(all="ignore"):
        hidden_np = vals.astype(dt)
    action = rng.random()
    if action < 0.45:
        _moe_forged(fz, rng, r, T, E, k, hidden_np, kind, block)
    elif action < 0.75:
        _moe_out(fz, rng, r, T, k, hidden_np, kind, block)
    elif action < 0.85:
        _moe_huge_block(fz, rng, r, T, k, kind)
    else:
        _moe_bad_rows(fz, rng, r, T, k, hidden_np, kind, block)


def _judge_dispatch(hidden_np, r, k, block, kind, out=None):
    order, offsets = np.asarray(r.order), np.asarray(r.offsets)
    rows, tokens, poff, counts = dispatch_ref(hidden_np, order, offsets, k, block)

    def check(got):
        if not isinstance(got, fr.Dispatch):
            return f"type: {type(got).__name__}"
        if out is not None and got.rows is not out:
            return "out: the result is not the out= buffer"
        p = _same_bits(_to_numpy_bits(got.rows, kind), rows)
        if p:
            return "rows " + p
        for name, want, dtype in (("offsets", poff, np.int64), ("ends", poff[1:], np.int32),
                                  ("counts", counts, np.int64), ("tokens", tokens, np.int64)):  # fmt: skip
            g = np.asarray(getattr(got, name))
            if g.dtype != dtype or not np.array_equal(g, want):
                return f"value: {name} {summary(g)}, expected {summary(np.asarray(want, dtype))}"
        return None

    return check


def _judge_combine(x_np, r, T, k, block, kind, out=None, weights=None):
    order, offsets = np.asarray(r.order), np.asarray(r.offsets)
    w = np.array(r.weights if weights is None else weights, copy=True)
    want = combine_ref(x_np, order, offsets, w, T, k, block)

    def check(got):
        if out is not None and got is not out:
            return "out: the result is not the out= buffer"
        return _same_bits(_to_numpy_bits(got, kind), want)

    return check


FORGERIES = ("repeat slot", "slot out of range", "offsets not rising", "offsets end", "order float",
             "order 2-D", "experts tokens", "experts ragged", "experts 1-D", "experts out of range",
             "weights strings", "weights numeric strings", "weights 1-D", "weights shape",
             "weights object", "weights complex", "weights int", "weights specials",
             "order int32", "order permuted", "not a routing", "offsets float")  # fmt: skip


def _forge(rng, r, T, E, k, what: str):
    """A forged copy of the routing ``r``: (routing, valid for dispatch, valid for combine)."""
    order = np.array(r.order)
    offsets = np.array(r.offsets)
    experts = np.array(r.experts)
    weights = np.array(r.weights)
    if what == "repeat slot" and order.size >= 2:
        i, j = rng.choice(order.size, 2, replace=False)
        order[i] = order[j]
    elif what == "slot out of range" and order.size:
        order[rng.integers(order.size)] = pick(rng, (-1, T * k, T * k + 5, 2**62, -(2**63), 2**31))
    elif what == "offsets not rising" and offsets.size >= 3:
        i = int(rng.integers(1, offsets.size - 1))
        offsets[i] = offsets[-1] + 1
    elif what == "offsets end":
        offsets[-1] += pick(rng, (1, -1, 2**40))
    elif what == "order float":
        order = order.astype(np.float64)
    elif what == "offsets float":
        offsets = offsets.astype(np.float64)
    elif what == "order 2-D":
        order = order.reshape(1, -1)
    elif what == "experts tokens":
        experts = experts[:-1] if T else np.zeros((1, k), np.int32)
    elif what == "experts ragged" and T >= 1:
        experts = [list(row) for row in experts.tolist()]
        experts[-1] = experts[-1] + [[0]]  # an element that is a sequence
    elif what == "experts 1-D":
        experts = experts.reshape(-1)
    elif what == "experts out of range" and experts.size:
        experts.flat[rng.integers(experts.size)] = pick(rng, (-5, E, E + 3, 2**31 - 1))
    elif what == "weights strings" and weights.size:
        weights = np.full(weights.shape, pick(rng, ("a", "x1", "")))
    elif what == "weights numeric strings" and weights.size:
        weights = weights.astype(str)
    elif what == "weights 1-D":
        weights = weights[:, 0].copy() if weights.shape[1] else weights.reshape(-1)
    elif what == "weights shape":
        weights = np.zeros((T, k + 1), weights.dtype)
    elif what == "weights object" and weights.size:
        weights = weights.astype(object)
        weights.flat[0] = pick(rng, ("a", None, [1.0]))
    elif what == "weights complex" and weights.size:
        weights = weights.astype(np.complex64) + 1j
    elif what == "weights int":
        weights = np.ones(weights.shape, pick(rng, (np.int64, np.int32, np.bool_)))
    elif what == "weights specials" and weights.size:
        weights.flat[rng.integers(weights.size)] = pick(rng, (np.nan, np.inf, -np.inf, -0.0, 3e38))
    elif what == "order int32":
        order = order.astype(np.int32)
    elif what == "order permuted" and offsets.size >= 2:
        e = int(rng.integers(offsets.size - 1))
        seg = order[offsets[e] : offsets[e + 1]]
        order[offsets[e] : offsets[e + 1]] = seg[rng.permutation(seg.size)]
    elif what == "not a routing":
        return (
            pick(rng, (None, (r.experts, r.weights), {"experts": r.experts}, "routing")),
            False,
            False,
        )
    forged = r._replace(order=order, offsets=offsets, experts=experts, weights=weights)
    problem = _routing_problem(forged, T)
    w = np.asarray(weights)
    w_ok = problem is None and w.dtype.kind in "biuf" and w.shape == (T, np.shape(experts)[1])
    return forged, problem is None, problem is None and w_ok


def _moe_forged(fz, rng, r, T, E, k, hidden_np, kind, block):
    what_forged = pick(rng, FORGERIES)
    forged, d_ok, c_ok = _forge(rng, r, T, E, k, what_forged)
    lenient = what_forged in ("experts out of range", "weights int", "weights numeric strings")
    hidden, how = _rows_arg(rng, hidden_np, kind, fz.quick)
    desc = f"T={T} E={E} k={k} {kind} {how} H={hidden_np.shape[1]} block={block} forged={what_forged!r}"
    call = lambda: fr.dispatch(hidden, forged, block_size=block)  # noqa: E731
    tag = "forged-" + what_forged.replace(" ", "-")
    if d_ok:
        judge = expect_result(("dispatch",), _judge_dispatch(hidden_np, forged, k, block, kind),
                              may_reject=lenient)  # fmt: skip
    else:
        judge = expect_error(("dispatch",))
    fz.call("moe", tag, f"dispatch({desc})", call, judge)
    # combine of rows in the forged routing's layout (or of the true one when it has none)
    if d_ok:
        N = _padded_rows(np.asarray(forged.order), np.asarray(forged.offsets), block)
    else:
        N = _padded_rows(r.order, r.offsets, block)
    H = hidden_np.shape[1]
    x_np = (rng.standard_normal((N, H)) * 4).astype(_kind_dtype(kind))
    x, how = _rows_arg(rng, x_np, kind, fz.quick)
    call = lambda: fr.combine(x, forged, block_size=block)  # noqa: E731
    if c_ok:
        check = _judge_combine(x_np, forged, T, k, block, kind)
        judge = expect_result(("combine",), check, may_reject=lenient)
    elif what_forged == "weights complex" or what_forged == "weights numeric strings":
        judge = (
            expect_error(("combine",))
            if what_forged == "weights complex"
            else (expect_anything(("combine",)))
        )
    elif what_forged.startswith("weights") and d_ok:
        judge = expect_error(("combine",), mention="weights")  # the message says what is wrong
    else:
        judge = expect_error(("combine",))
    fz.call("moe", tag, f"combine(N={N}, {desc})", call, judge)


def _overlapping(rng, shape, kind, partner: np.ndarray):
    """An out= array of ``shape`` and ``kind`` sharing memory with
    ``partner`` (which is replaced by a view of the same buffer): (out,
    new partner)."""
    dt = _kind_dtype(kind)
    nbytes_out = int(np.prod(shape)) * dt.itemsize
    nbytes_p = partner.nbytes
    shift = 8 * int(rng.integers(0, 3))
    buf = np.zeros(max(nbytes_out, nbytes_p + shift) + 64, np.uint8)
    p_view = buf[shift : shift + nbytes_p].view(partner.dtype).reshape(partner.shape)
    p_view[...] = partner
    out = buf[:nbytes_out].view(dt).reshape(shape)
    return out, p_view


def _moe_out(fz, rng, r, T, k, hidden_np, kind, block):
    H = hidden_np.shape[1]
    N = _padded_rows(r.order, r.offsets, block)
    dt = _kind_dtype(kind)
    which = pick(rng, ("valid", "valid", "shape", "dtype", "fortran", "readonly", "list",
                       "overlap weights", "overlap weights", "overlap order", "overlap offsets",
                       "overlap rows"))  # fmt: skip
    func = pick(rng, ("dispatch", "combine"))
    if func == "dispatch" and which == "overlap weights":
        which = "overlap order"
    shape = (N, H) if func == "dispatch" else (T, H)
    x_np = hidden_np if func == "dispatch" else (rng.standard_normal((N, H)) * 3).astype(dt)
    routing = r
    rows_arg = x_np
    out: Any
    valid = which == "valid"
    overlap = which.startswith("overlap")
    if which == "valid":
        out = np.empty(shape, dt)
        if not fz.quick and _torch() is not None and rng.random() < 0.25:
            rows_arg, _ = _rows_arg(rng, x_np, kind, False)
            if type(rows_arg).__module__.startswith("torch"):
                torch = _torch()
                out = torch.empty(shape, dtype=getattr(torch, kind))
    elif which == "shape":
        out = np.empty((shape[0] + 1, shape[1]), dt)
    elif which == "dtype":
        out = np.empty(shape, np.float64 if kind != "float64" else np.float32)
    elif which == "fortran":  # (or reversed rows): not C-contiguous unless trivially so
        if shape[0] > 1 and shape[1] >= 1:
            out = np.empty((shape[0], shape[1] + 1), dt, order="F")[:, :-1]
        else:
            out = np.empty(shape, dt)[::-1]
        valid = out.flags.c_contiguous and out.flags.writeable
    elif which == "readonly":
        out = np.empty(shape, dt)
        out.flags.writeable = False
    elif which == "list":
        out = np.zeros(shape).tolist()
    elif which == "overlap weights":
        w = np.ascontiguousarray(r.weights, np.float64 if kind == "float64" else np.float32)
        out, w_view = _overlapping(rng, shape, kind, w)
        routing = r._replace(weights=w_view)
    elif which == "overlap order":
        out, o_view = _overlapping(rng, shape, kind, np.ascontiguousarray(r.order, np.int64))
        routing = r._replace(order=o_view)
    elif which == "overlap offsets":
        out, o_view = _overlapping(rng, shape, kind, np.ascontiguousarray(r.offsets, np.int64))
        routing = r._replace(offsets=o_view)
    else:  # the rows read
        out, x_view = _overlapping(rng, shape, kind, np.ascontiguousarray(x_np))
        rows_arg = x_view
    # the reference from copies of the inputs as they were before the call
    snap = r._replace(order=np.array(routing.order), offsets=np.array(routing.offsets),
                      weights=np.array(routing.weights))  # fmt: skip
    x_snap = np.array(_to_numpy_bits(rows_arg, kind), copy=True)
    desc = f"T={T} k={k} {kind} H={H} block={block} out={which}"
    tag = "out-" + which.replace(" ", "-")
    if func == "dispatch":
        call = lambda: fr.dispatch(rows_arg, routing, block_size=block, out=out)  # noqa: E731
        check = _judge_dispatch(x_snap, snap, k, block, kind, out=out)
    else:
        call = lambda: fr.combine(rows_arg, routing, block_size=block, out=out)  # noqa: E731
        check = _judge_combine(x_snap, snap, T, k, block, kind, out=out)
    if valid:
        judge = expect_result((func,), check)
    elif overlap:
        empty = int(np.prod(shape)) == 0  # nothing is written: no overlap that matters
        judge = (
            expect_result((func,), check, may_reject=True)
            if not empty
            else expect_anything((func,))
        )
    else:
        judge = expect_error((func,))
    fz.call("moe", tag, f"{func}({desc})", call, judge)


def _moe_huge_block(fz, rng, r, T, k, kind):
    """A block_size whose padding is beyond the machine: a clear error,
    checked before anything of that size is allocated (the sizes here fail
    at once if a buffer of them is asked of the system: no zero fill)."""
    order, offsets = np.asarray(r.order), np.asarray(r.offsets)
    nonempty = int(np.count_nonzero(np.diff(offsets)))
    choice = pick(rng, ("rows", "tokens", "bad", "bad"))
    dt = _kind_dtype(kind)
    if choice == "rows" and nonempty >= 1:
        block, H = 2**21, 2**17 // dt.itemsize * 4  # 1 TiB of rows per expert, 16 MiB of tokens
    elif choice == "tokens" and nonempty >= 3:
        block, H = 2**31, 0  # 3 x 16 GiB of row tokens, no row data
    elif choice == "bad":
        block, H = pick(rng, (0, -1, 2**31 + 1, 2**63, 2**70, 2.0, "4", True, np.float64(2))), 2
    else:
        return
    hidden_np = np.zeros((T, H), dt)
    hidden, how = _rows_arg(rng, hidden_np, kind, fz.quick)
    desc = f"T={T} k={k} {kind} {how} H={H} block_size={block!r}"
    call = lambda: fr.dispatch(hidden, r, block_size=block)  # noqa: E731
    if choice == "bad":
        fz.call("moe", "bad-block_size", f"dispatch({desc})", call, expect_error(("dispatch",)))
        return
    N = _padded_rows(order, offsets, block)
    need = N * (H * dt.itemsize + 8)
    assert need > MEMORY, (N, H)
    fz.call("moe", f"huge-block-{choice}", f"dispatch({desc})", call, expect_error(("dispatch",)))


def _moe_bad_rows(fz, rng, r, T, k, hidden_np, kind, block):
    torch = None if fz.quick else _torch()
    which = pick(rng, ("1-D", "3-D", "int", "complex", "object", "ragged", "torch sparse",
                       "torch int", "string"))  # fmt: skip
    H = hidden_np.shape[1]
    if which == "1-D":
        x = hidden_np.reshape(-1)
    elif which == "3-D":
        x = hidden_np.reshape(T, H, 1)
    elif which == "int":
        x = np.zeros((T, H), np.int32)
    elif which == "complex":
        x = np.zeros((T, H), np.complex64)
    elif which == "object":
        x = np.zeros((T, H), object)
    elif which == "ragged":
        x = [[0.0] * H for _ in range(T)] + [[0.0] * (H + 1)]
    elif which == "string":
        x = "hidden"
    elif torch is None:
        return
    elif which == "torch sparse":
        x = torch.zeros((T, max(H, 1))).to_sparse()
    else:
        x = torch.zeros((T, H), dtype=torch.int32)
    func = pick(rng, ("dispatch", "combine"))
    call = (lambda: fr.dispatch(x, r, block_size=block)) if func == "dispatch" else (
        lambda: fr.combine(x, r, block_size=block))  # fmt: skip
    fz.call("moe", "rows-" + which.replace(" ", "-"), f"{func}(rows={which}, T={T} k={k})", call,
            expect_error((func,)))  # fmt: skip


# --------------------------------------------------------------------------- dask


_DASK = []


def _dask():
    if not _DASK:
        import dask
        import dask.array as da

        import fastroute.dask as frd

        dask.config.set(scheduler="synchronous")
        _DASK.extend((dask, da, frd))
    return _DASK


def _partition(rng, n: int) -> tuple[int, ...]:
    if n == 0:
        return (0,)
    cuts = (
        sorted(set(rng.integers(1, n, int(rng.integers(0, min(n, 4)))).tolist())) if n > 1 else []
    )
    bounds = [0, *cuts, n]
    return tuple(b - a for a, b in zip(bounds, bounds[1:], strict=False))


def dask_round(fz: Fuzzer, rng, files) -> None:
    which = pick(rng, ("route", "route", "cooccurrence", "cooccurrence", "read_ids", "read_corpus"))
    {"route": _dask_route, "cooccurrence": _dask_cooccurrence, "read_ids": _dask_read_ids,
     "read_corpus": _dask_read_corpus}[which](fz, rng, files)  # fmt: skip


def _dask_route(fz, rng, files):
    dask, da, frd = _dask()
    T = int(rng.integers(0, 13))
    E = int(rng.integers(1, 7))
    k = int(rng.integers(0, min(E, 3) + 1))
    dtype = pick(rng, (np.float32, np.float64))
    x = rng.standard_normal((T, E)).astype(dtype)
    if rng.random() < 0.3:
        x = np.round(x)
    if rng.random() < 0.05 and x.size:
        x.flat[rng.integers(x.size)] = np.nan
    opts: dict[str, Any] = {}
    if rng.random() < 0.7:
        opts["capacity_factor"] = pick(rng, (0.25, 0.5, 1.0, 1.5, 3.0, 0.0))
        if rng.random() < 0.3:
            opts["min_capacity"] = int(rng.integers(0, 4))
        if rng.random() < 0.1:
            opts["drop"] = "score"
    if not fz.quick and rng.random() < 0.3:
        opts["scoring"] = "sigmoid"
    if not fz.quick and rng.random() < 0.2:
        opts["stats"] = False
    chunks = (_partition(rng, T), (E,))
    if rng.random() < 0.05:
        chunks = (chunks[0], (1,) * E) if E > 1 else chunks
    desc = f"route(T={T} E={E} k={k} {np.dtype(dtype)} chunks={chunks}, {opts})"
    try:
        ref = fr.route(x, k, **opts)
        ref_err = None
    except (ValueError, TypeError) as exc:
        ref, ref_err = None, exc

    def run():
        r = frd.route(da.from_array(x, chunks=chunks), k, **opts)
        lazy = {name: v for name, v in r._asdict().items() if isinstance(v, da.Array)}
        return r, dict(zip(lazy, dask.compute(*lazy.values()), strict=True))

    bad_chunks = len(chunks[1]) > 1
    if ref_err is not None or bad_chunks or (opts.get("drop") == "score"):
        fz.call("dask", "route-invalid", desc, run, expect_error(("route",)))
        return

    def check(got):
        r, done = got
        for name in ref._fields:
            want = getattr(ref, name)
            lazy = getattr(r, name)
            if isinstance(lazy, da.Array):
                declared = lazy.shape
                have = done[name]
                if len(declared) != np.ndim(have) or any(
                    not (isinstance(d, float) and math.isnan(d)) and d != s
                    for d, s in zip(declared, np.shape(have), strict=True)
                ):
                    return f"declared shape: {name} declared {declared}, computed {np.shape(have)}"
            else:
                have = lazy
            if want is None or have is None:
                if (want is None) != (have is None):
                    return f"value: {name} is {summary(have)}, expected {summary(want)}"
                continue
            if name in ("aux_loss", "z_loss"):
                a, b = float(np.asarray(have)), float(want)
                if not (
                    a == b or (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-12 * abs(b)
                ):
                    return f"value: {name} {a!r}, expected {b!r}"
                continue
            h, w = np.asarray(have), np.asarray(want)
            if h.shape != w.shape or not same_values(h, w.astype(h.dtype)) or (
                h.dtype != w.dtype and name != "imbalance"
            ):  # fmt: skip
                return f"value: {name} {summary(h)}, expected {summary(w)}"
        return None

    fz.call("dask", "route-capacity" if "capacity_factor" in opts else "route", desc, run,
            expect_result(("route",), check))  # fmt: skip

    # slicing by the declared shapes: the last slots, the last tokens
    def sliced():
        r = frd.route(da.from_array(x, chunks=chunks), k, **opts)
        out = {}
        for name, sl in (("order", slice(-3, None)), ("order", slice(1, None)),
                         ("experts", slice(-2, None)), ("counts", slice(-1, None))):  # fmt: skip
            a = getattr(r, name)
            if any(isinstance(d, float) and math.isnan(d) for d in a.shape):
                continue  # unknown length: Dask asks to compute it first, as it should
            out[(name, sl.start)] = a[sl].compute()
        return out

    def check_sliced(got):
        for (name, start), have in got.items():
            want = np.asarray(getattr(ref, name))[slice(start, None)]
            if have.shape != want.shape or not np.array_equal(have, want):
                return f"slice: {name}[{start}:] is {summary(have)}, expected {summary(want)}"
        return None

    fz.call("dask", "route-slice" + ("-capacity" if "capacity_factor" in opts else ""),
            desc + " sliced", sliced, expect_result(("route",), check_sliced))  # fmt: skip


def _dask_cooccurrence(fz, rng, files):
    dask, da, frd = _dask()
    n = int(rng.integers(0, 30)) if rng.random() > 0.08 else 0
    V = int(rng.integers(0, 9))
    tdt = pick(rng, (np.int64, np.float64) if fz.quick else (
        np.int64, np.int32, np.uint8, np.int16, np.float64, np.float32))  # fmt: skip
    toks = rng.integers(0, max(V, 1), n) if V else np.zeros(n, np.int64)
    if V == 0 and n:
        V = 1
    if rng.random() < 0.05 and n:
        toks[rng.integers(n)] = pick(rng, (-1, V, V + 7))
    toks = toks.astype(tdt) if np.dtype(tdt).kind != "f" or n == 0 or rng.random() < 0.3 else toks
    kw: dict[str, Any] = {}
    if rng.random() < 0.5:
        kw["window"] = pick(rng, (1, 2, 3, 5, 2**63, 0, -1))
    if rng.random() < 0.3:
        kw["symmetric"] = False
    if rng.random() < 0.4:
        kw["dtype"] = pick(rng, ("int64", np.dtype("int64"), "bogus", np.complex128, np.uint8) + (
            () if fz.quick else (np.int32, np.float32, np.float64)))  # fmt: skip
    bad_extra = False
    if rng.random() < 0.4:
        kw["row_blocks"] = pick(rng, (1, 2, 3, 7, 100, np.int64(2), 0, -1, "3", 2.5, True, None))
        bad_extra = not (kw["row_blocks"] is None or (
            isinstance(kw["row_blocks"], (int, np.integer)) and not isinstance(kw["row_blocks"], bool)
            and kw["row_blocks"] >= 1))  # fmt: skip
    if rng.random() < 0.2:
        choice = pick(rng, ("freq", "freq", "short", "negative", "nan", "strings"))
        w = np.bincount(np.clip(toks.astype(np.int64), 0, max(V - 1, 0)), minlength=V)[:V].astype(
            float
        )
        if choice == "short":
            w = w[:-1] if V else np.ones(1)
        elif choice == "negative" and V:
            w[0] = -1
        elif choice == "nan" and V:
            w[-1] = np.nan
        elif choice == "strings":
            w = w.astype(str)
        kw["row_weights"] = w
        bad_extra = bad_extra or (choice != "freq" and (V > 0 or choice in ("short", "strings")))
    unknown = rng.random() < 0.1
    chunks = _partition(rng, n)
    desc = f"cooccurrence(tokens={toks.dtype}[{n}] chunks={'unknown' if unknown else chunks}, {V}, {kw})"
    ref_kw = {k_: v for k_, v in kw.items() if k_ in ("window", "symmetric", "dtype")}
    try:
        ref = fr.cooccurrence(toks, V, **ref_kw)
        ref_err = None
    except (ValueError, TypeError) as exc:
        ref, ref_err = None, exc

    def run():
        x = da.from_array(toks, chunks=(chunks,))
        if unknown:
            x = x[da.ones_like(x, dtype=bool)]  # the same tokens, chunk sizes unknown
        C = frd.cooccurrence(x, V, **kw)
        return C, C.compute()

    if ref_err is not None or bad_extra:
        tag = "cooc-invalid-" + ("dtype" if "dtype" in kw and ref_err is not None and "dtype" in str(ref_err)
                                 else "extra" if bad_extra else "tokens")  # fmt: skip
        fz.call("dask", tag, desc, run, expect_error(("cooccurrence",)))
        return

    def check(got):
        C, M = got
        if tuple(C.shape) != ref.shape:
            return f"declared shape: {C.shape}, expected {ref.shape}"
        if M.dtype != ref.dtype or M.shape != ref.shape:
            return f"dtype/shape: {M.dtype} {M.shape}, expected {ref.dtype} {ref.shape}"
        if not np.array_equal(M.toarray(), ref.toarray()):
            return "value: counts differ from fastroute.cooccurrence"
        return None

    tag = (
        "cooc-unknown-chunks"
        if unknown
        else ("cooc-empty-float" if toks.dtype.kind == "f" else "cooc")
    )
    fz.call("dask", tag, desc, run, expect_result(("cooccurrence",), check, may_reject=unknown))


def _make_files(root: pathlib.Path) -> dict:
    """The files the read_ids/read_corpus/CLI cases read: name -> (path, what)."""
    rng = np.random.default_rng(12345)
    f = {}
    words = "the cat sat on the mat and the dog sat on the log with a cat".split()
    text = " ".join(words[i] for i in rng.integers(0, len(words), 80))
    (root / "small.txt").write_text(text + "\n" + text[:60] + "\n", encoding="utf-8")
    (root / "two.txt").write_text("a dog\nthe cat saw the dog\n", encoding="utf-8")
    (root / "one_word.txt").write_text("word\n", encoding="utf-8")
    (root / "empty.txt").write_text("", encoding="utf-8")
    (root / "binary.bin").write_bytes(bytes(range(256)) * 4)
    (root / "latin1.txt").write_bytes("caf\xe9 na\xefve words here\n".encode("latin-1"))
    (root / "a_dir").mkdir()
    np.save(root / "ids.npy", rng.integers(0, 9, 37))
    np.save(root / "ids32.npy", rng.integers(0, 5, 11).astype(np.int32))
    np.save(root / "ids_be.npy", rng.integers(0, 5, 6).astype(">i8"))
    np.save(root / "ids_empty.npy", np.zeros(0, np.int64))
    np.save(root / "ids_2d.npy", np.zeros((3, 2), np.int64))
    np.save(root / "ids_float.npy", np.zeros(4))
    np.save(root / "ids_object.npy", np.array([1, "a"], object), allow_pickle=True)
    np.savez(root / "ids.npz", x=np.arange(4))
    (root / "empty.npy").write_bytes(b"")
    (root / "text.npy").write_text("hello world\n")
    (root / "garbage.npy").write_bytes(b"\x93NUMPY\x01\x00" + b"\xff" * 40)
    counts = rng.integers(1, 5, (6, 6)) * (rng.random((6, 6)) < 0.5)
    sp.save_npz(root / "counts.npz", sp.csr_array(counts.astype(np.int64)))
    (root / "vocab6.txt").write_text("\n".join("abcdef") + "\n")
    (root / "vocab3.txt").write_text("a\nb\nc\n")
    np.savez(root / "dense.npz", a=np.ones((3, 3)))
    (root / "text.npz").write_text("not a zip\n")
    sp.save_npz(root / "empty_counts.npz", sp.csr_array((0, 0), dtype=np.int64))
    for p in sorted(root.iterdir()):
        f[p.name] = str(p)
    f["missing"] = str(root / "missing.npy")
    f["missing.txt"] = str(root / "missing.txt")
    f["glob none"] = str(root / "nothing*.txt")
    f["glob txt"] = str(root / "*o*.txt")
    return f


VALID_IDS = {
    "ids.npy": np.int64,
    "ids32.npy": np.int32,
    "ids_be.npy": np.int64,
    "ids_empty.npy": np.int64,
}


def _dask_read_ids(fz, rng, files):
    dask, da, frd = _dask()
    name = pick(rng, ("ids.npy", "ids32.npy", "ids_be.npy", "ids_empty.npy", "ids_2d.npy",
                      "ids_float.npy", "ids_object.npy", "ids.npz", "empty.npy", "text.npy",
                      "garbage.npy", "binary.bin", "a_dir", "missing", "small.txt"))  # fmt: skip
    path: Any = files[name]
    form = pick(rng, ("str", "str", "Path", "bytes", "None", "int"))
    if form == "Path":
        path = pathlib.Path(path)
    elif form == "bytes":
        path = os.fsencode(path)
    elif form == "None":
        path = None
    elif form == "int":
        path = 3
    kw = {}
    if rng.random() < 0.5:
        kw["chunks"] = pick(rng, (1, 2, 3, 10**7, 0, -1, True, 2.5, "3"))
    good_chunks = "chunks" not in kw or (
        isinstance(kw["chunks"], int) and not isinstance(kw["chunks"], bool) and kw["chunks"] >= 1
    )
    desc = f"read_ids({name} as {form}, {kw})"
    run = lambda: frd.read_ids(path, **kw).compute()  # noqa: E731
    if name in VALID_IDS and form in ("str", "Path", "bytes") and good_chunks:
        want = np.load(files[name])

        def check(got):
            if (
                got.shape != want.shape
                or not np.array_equal(got, want)
                or got.dtype.kind not in "iu"
            ):
                return f"value: {summary(got)}, expected {summary(want)}"
            return None

        fz.call("dask", "read_ids", desc, run,
                expect_result(("read_ids",), check, may_reject=form == "bytes"))  # fmt: skip
        return
    tag = "read_ids-" + (name if form in ("str", "Path") else form)
    fz.call("dask", tag, desc, run, expect_error(("read_ids",), oserror=True))


def _dask_read_corpus(fz, rng, files):
    dask, da, frd = _dask()
    from fastroute.pipeline import tokenize

    names = pick(rng, (["small.txt"], ["two.txt", "small.txt"], ["empty.txt"], ["glob txt"],
                       ["binary.bin"], ["latin1.txt"], ["a_dir"], ["missing.txt"], ["glob none"],
                       [None], ["small.txt", None], [], ["one_word.txt"]))  # fmt: skip
    form = pick(rng, ("str", "str", "list", "Path", "bytes", "None", "int"))
    paths = [files[n] if n is not None else None for n in names]
    if form == "None":
        arg: Any = None
    elif form == "int":
        arg = 7
    elif form == "bytes":  # one path, as bytes
        names, paths = names[:1], paths[:1]
        arg = os.fsencode(paths[0]) if paths and paths[0] else b""
    elif form == "Path":
        arg = [pathlib.Path(p) if p else p for p in paths]
    elif form == "str" and len(paths) == 1:
        arg = paths[0]
    else:
        arg = paths
    kw = {}
    if rng.random() < 0.4:
        kw["blocksize"] = pick(rng, (1, 7, 64, 2**70, 0, -1, "10", True, 2.5))
    good_block = "blocksize" not in kw or (
        isinstance(kw["blocksize"], int)
        and not isinstance(kw["blocksize"], bool)
        and kw["blocksize"] >= 1
    )
    desc = f"read_corpus({names} as {form}, {kw})"

    def run():
        c = frd.read_corpus(arg, **kw)
        return c, c.ids.compute()

    valid_files = names and all(n in ("small.txt", "two.txt", "empty.txt", "glob txt", "one_word.txt")
                                for n in names)  # fmt: skip
    if valid_files and form in ("str", "list", "Path", "bytes") and good_block:
        import glob as _glob

        expanded = []
        for p in paths:
            expanded.extend(sorted(_glob.glob(p)) if "*" in p else [p])
        text = "\n".join(pathlib.Path(p).read_text(encoding="utf-8") for p in expanded)
        ids, vocab, _ = tokenize(text)

        def check(got):
            c, got_ids = got
            if list(c.vocabulary) != list(vocab) or not np.array_equal(got_ids, ids):
                return f"value: vocabulary {c.vocabulary[:5]} ids {summary(got_ids)}, expected {vocab[:5]} {summary(ids)}"
            return None

        fz.call("dask", "read_corpus", desc, run,
                expect_result(("read_corpus",), check, may_reject=form == "bytes"))  # fmt: skip
        return
    tag = "read_corpus-" + (
        form if form in ("None", "int", "bytes") else str(names[0]) if names else "none"
    )
    fz.call("dask", tag, desc, run, expect_error(("read_corpus",), oserror=True))


# --------------------------------------------------------------------------- the CLI


class _ClusterRequested(Exception):
    """Raised by the LocalCluster stub: nothing is started."""


def _stub_cluster(*args, **kwargs):
    n = kwargs.get("n_workers", args[0] if args else None)
    raise _ClusterRequested(f"fuzz stub: LocalCluster(n_workers={n!r})")


def _run_cli(argv: list[str]) -> tuple[int, str, str]:
    from fastroute.app import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = cli.main(argv)
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else 1
    return rc, out.getvalue(), err.getvalue()


def _run_cli_forked(argv: list[str], timeout: float = 60.0) -> tuple[int, str, str, list]:
    """``_run_cli`` in a forked child whose LocalCluster is the stub: also
    the worker counts it was asked for."""
    import distributed
    import distributed.deploy
    import distributed.deploy.local

    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        try:
            os.close(rfd)
            asked: list = []

            def stub(*args, **kwargs):
                asked.append(kwargs.get("n_workers", args[0] if args else None))
                return _stub_cluster(*args, **kwargs)

            for m in (distributed, distributed.deploy, distributed.deploy.local):
                m.LocalCluster = stub
            rc, out, err = _run_cli(argv)
            payload = json.dumps([rc, out[-4000:], err[-4000:], asked]).encode()
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            payload = json.dumps([-1, "", f"fuzz child: {describe(exc)}", []]).encode()
        with open(wfd, "wb") as f:
            f.write(payload)
        os._exit(0)
    os.close(wfd)
    chunks = []
    with open(rfd, "rb") as f:
        while True:
            ready, _, _ = select.select([f], [], [], timeout)
            if not ready:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                return -2, "", f"hang: no answer in {timeout} s", []
            b = os.read(f.fileno(), 1 << 16)
            if not b:
                break
            chunks.append(b)
    _, status = os.waitpid(pid, 0)
    if not chunks:
        return -3, "", f"the child died (wait status {status})", []
    rc, out, err, asked = json.loads(b"".join(chunks))
    return rc, out, err, asked


def _cli_error_problem(rc, err) -> tuple[str, str] | None:
    """How a CLI failure breaks the contract (exit 2, one line), or None."""
    if "Traceback" in err or "internal error" in err:
        last = [ln for ln in err.splitlines() if ln.strip()][-2:]
        return "other", f"traceback: exit {rc}: {' | '.join(last)[:300]}"
    if rc != 2:
        return "other", f"exit {rc}: {err.strip()[:300]}"
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("note:")]
    if len(lines) != 1:
        return "other", f"lines: {len(lines)} lines on stderr: {err[:300]!r}"
    return None


def _cli_expect(valid: bool | None):
    """valid True: exit 0; False: exit 2 with one line; None: either."""

    def judge(got, exc):
        if exc is not None:
            return "other", f"escaped {describe(exc)}"
        rc, out, err = got[:3]
        if rc == 0:
            if "Traceback" in err or "internal error" in err:
                return "other", f"traceback: exit 0 with {err[-300:]!r}"
            if valid is False:
                return "wrong", f"accepted: exit 0, {out[:200]!r}"
            if not out.strip():
                return "wrong", "output: exit 0 and nothing on stdout"
            return "ok", ""
        problem = _cli_error_problem(rc, err)
        if problem:
            return problem
        if valid is True:
            return "wrong", f"rejected valid input: {err.strip()[:300]}"
        return "error", ""

    return judge


#: (option, value, valid): single options of ``analyze``; valid "parse": an
#: error of argparse itself (a type or a choice), whatever comes after it
CLI_OPTIONS = (
    ("-k", "3", True), ("-k", "0", False), ("-k", "-2", False), ("-k", "abc", "parse"),
    ("-k", str(10**30), True), ("--related", "0", True), ("--related", "-1", False),
    ("--related", "1e3", "parse"), ("--window", "1", True), ("--window", "0", False),
    ("--window", str(2**70), True), ("--measure", "pmi", True), ("--measure", "bogus", "parse"),
    ("--cds", "0.5", True), ("--cds", "0", False), ("--cds", "2", False), ("--cds", "nan", False),
    ("--min-count", "1", True), ("--min-count", "0", False), ("--min-count", "nan", False),
    ("--min-count", "inf", None), ("--min-count", "-1", False), ("--by", "kl", None),
    ("--by", "bogus", "parse"), ("--min-frequency", "2", True), ("--min-frequency", "-1", False),
    ("--min-frequency", "nan", False), ("--min-frequency", "inf", None), ("--json", None, True),
    ("--vocab", "vocab6.txt", None), ("--bogus-flag", None, "parse"),
)  # fmt: skip

#: (files, valid): the FILE arguments
CLI_FILES = (
    (["small.txt"], True), (["two.txt", "small.txt"], True), (["glob txt"], True),
    (["missing.txt"], False), (["empty.txt"], False), (["one_word.txt"], False),
    (["binary.bin"], False), (["latin1.txt"], False), (["a_dir"], False), (["glob none"], False),
    (["/dev/null"], False), (["counts.npz"], True), (["text.npz"], False), (["dense.npz"], False),
    (["empty_counts.npz"], False), (["counts.npz", "small.txt"], False), (["missing"], False),
)  # fmt: skip

SCHEDULERS = ("", " ", "bogus-address", "tcp://", "tcp://host:notaport", "inproc://", "::::",
              "tls://x", "http://x:1")  # fmt: skip


def cli_round(fz: Fuzzer, rng, files, seen: set) -> None:
    if "valid False" not in seen:  # the first round: a valid text, so that one always runs
        seen.add("valid False")
        argv = ["analyze", files["small.txt"], "-k", "3"]
        fz.call(
            "cli", "cli-analyze-valid", " ".join(argv), lambda: _run_cli(argv), _cli_expect(True)
        )
        return
    kind = rng.random()
    if kind < 0.25:  # --workers / --scheduler, each in a forked child
        f = files["small.txt"]
        if rng.random() < 0.5:
            n = pick(rng, ("0", "-3", "abc", "999", str(10**6), "1", "2"))
            argv = ["analyze", f, "--workers", n]
            valid = None if n in ("1", "2", "999", str(10**6)) else False
        else:
            argv = ["analyze", f, "--scheduler", pick(rng, SCHEDULERS)]
            valid = False
        key = tuple(argv)
        if key in seen:  # each forked case once per run
            return
        seen.add(key)
        cores = os.cpu_count() or 1

        def judge(got, exc):
            if exc is not None:
                return "other", f"escaped {describe(exc)}"
            rc, out, err, asked = got
            if asked:  # it went as far as starting a cluster (the stub)
                if any(a is None or int(a) > cores for a in asked):
                    return (
                        "wrong",
                        f"unbounded: asked for {asked} worker processes on {cores} cores",
                    )
                return "ok", ""
            return _cli_expect(valid)((rc, out, err), None)

        tag = "cli-" + argv[2].lstrip("-") + ("" if argv[2] == "--scheduler" else f"-{argv[3]}")
        fz.call("cli", tag, " ".join(repr(a) for a in argv), lambda: _run_cli_forked(argv), judge)
        return
    fl, fvalid = pick(rng, CLI_FILES)
    paths = [files.get(n, n) for n in fl]
    argv = ["analyze", *paths]
    valid: bool | None = fvalid
    npz = any(p.endswith(".npz") for p in paths)
    chosen: dict[str, Any] = {}  # option -> valid (argparse keeps the last value)
    parse_error = False
    for _ in range(int(pick(rng, (0, 0, 1, 1, 2)))):
        opt, val, ok = pick(rng, CLI_OPTIONS)
        if opt == "--vocab":
            val = files[pick(rng, ("vocab6.txt", "vocab3.txt", "missing.txt"))]
            ok = npz and val.endswith("vocab6.txt")
        if opt == "--cds" and ok:
            argv += ["--measure", "ppmi"]
            chosen["--measure"] = True
        argv += [opt] + ([val] if val is not None else [])
        chosen[opt] = ok
        parse_error = parse_error or ok == "parse"
    for ok in [*chosen.values(), False if parse_error else True]:
        if ok is False or ok == "parse":
            valid = False
        elif ok is None and valid:
            valid = None
    if valid and fz.quick and (f"valid {npz}" in seen):
        return  # one valid analyze run of each input kind per quick run
    if valid:
        seen.add(f"valid {npz}")
    tag = "cli-analyze-" + ("valid" if valid else "invalid" if valid is False else "either")
    fz.call("cli", tag, " ".join(argv), lambda: _run_cli(argv), _cli_expect(valid))


# --------------------------------------------------------------------------- @njit kernels


MARGIN = 2048  # elements each side of a buffer: more than any overrun the fuzzer provokes
FILLS = (7.0, -3.5e10)
IFILLS = (-9, 3)  # (an index read past a buffer stays within the margins)


class Guarded:
    """A 1-D (or 2-D, rows) buffer cut out of a larger array whose margins
    hold a known fill."""

    def __init__(self, n: int, dtype, width: int | None = None):
        self.n, self.width = n, width
        self.dtype = np.dtype(dtype)
        if width is None:
            self.big = np.zeros(n + 2 * MARGIN, dtype)
            self.view = self.big[MARGIN : MARGIN + n]
            self.rows = MARGIN
        else:
            self.rows = max(8, -(-MARGIN // max(width, 1)))
            self.big = np.zeros((n + 2 * self.rows, width), dtype)
            self.view = self.big[self.rows : self.rows + n]

    def fill(self, i: int) -> None:
        v = (IFILLS if self.dtype.kind in "iu" else FILLS)[i]
        self.big[: self.rows] = v
        self.big[self.rows + self.n :] = v

    def intact(self, i: int) -> bool:
        v = (IFILLS if self.dtype.kind in "iu" else FILLS)[i]
        return bool(
            (self.big[: self.rows] == v).all() and (self.big[self.rows + self.n :] == v).all()
        )


def _guarded_call(bufs: dict[str, Guarded], init: Callable[[], None], run: Callable[[], Any]):
    """Run the kernel twice, the margins filled differently: (results and
    buffers of each run, the names of the buffers whose margins changed)."""
    outs = []
    spoiled = []
    for i in (0, 1):
        for g in bufs.values():
            g.fill(i)
        init()
        res = run()
        outs.append((res, {k: np.array(g.view, copy=True) for k, g in bufs.items()}))
        spoiled += [k for k, g in bufs.items() if not g.intact(i) and k not in spoiled]
    return outs, spoiled


def _same_runs(a, b) -> bool:
    (ra, ba), (rb, bb) = a, b
    if not same_values(np.atleast_1d(np.asarray(ra)), np.atleast_1d(np.asarray(rb))):
        return False
    return all(same_values(ba[k], bb[k]) for k in ba)


def kernel_round(fz: Fuzzer, rng) -> None:
    choices = ("gather_row",) if fz.quick else (
        "top_k_1d", "entropy_1d", "entropy_logits_1d", "relative_entropy_1d", "route_1d",
        "gather_row", "combine_row")  # fmt: skip
    name = pick(rng, choices)
    bad = rng.random() < 0.5
    getattr(sys.modules[__name__], f"_k_{name}")(fz, rng, bad)


def _slug(what: str) -> str:
    return what.replace(" > ", " gt ").replace(",", "").replace(" ", "-")


def _kernel_judge(name, expect_fn, valid: bool):
    """The judge of a guarded kernel call: an out-of-bounds access is wrong
    (a write changes a margin; a read makes the two runs differ); a valid
    call must match ``expect_fn(first run)``; an invalid one may raise a
    clear error or do no harm."""

    def judge(got, exc):
        if exc is not None:
            if clear(exc, (name,)):
                return (
                    ("wrong", f"rejected valid input: {describe(exc)}") if valid else ("error", "")
                )
            return "other", f"foreign {describe(exc)}"
        outs, spoiled = got
        if spoiled:
            return "wrong", f"oob-write: past the end of {', '.join(spoiled)}"
        if not _same_runs(outs[0], outs[1]):
            return "wrong", "oob-read: the result depends on memory past the buffers"
        if valid:
            problem = expect_fn(outs[0])
            return ("wrong", problem) if problem else ("ok", "")
        return "ok", ""

    return judge


def _k_top_k_1d(fz, rng, bad):
    from fastroute.kernels import top_k_1d

    n = int(rng.integers(0, 41))
    k = int(rng.integers(0, n + 1))
    nv = k
    what = "valid"
    if bad:
        what = pick(
            rng, ("k > n", "short values", "short indices", "k > n, buffers of n", "negative k")
        )
        if what == "k > n":
            k = n + int(rng.integers(1, 20))
            nv = k
        elif what == "k > n, buffers of n":
            k, nv = n + int(rng.integers(1, 20)), n
        elif what == "negative k":
            k, nv = -int(rng.integers(1, 5)), 0
        elif k >= 1:
            nv = int(rng.integers(0, k))
        else:
            what = "valid"
    largest, sort = bool(rng.random() < 0.7), bool(rng.random() < 0.8)
    x = Guarded(n, np.float64)
    x.view[:] = draw_values(rng, (n,), np.float64, True, 0.1)
    xs = np.array(x.view)
    vals = Guarded(nv if what != "short indices" else k, np.float64)
    idxs = Guarded(nv if what != "short values" else k, np.intp)
    bufs = {"x": x, "values": vals, "indices": idxs}

    def init():
        x.view[:] = xs
        vals.view[:] = 0
        idxs.view[:] = -1

    def run():
        return _guarded_call(
            bufs, init, lambda: top_k_1d(x.view, k, largest, sort, vals.view, idxs.view)
        )

    def expect(first):
        _, b = first
        ev, ei = fr.top_k(xs, k, mode="largest" if largest else "smallest")
        gv, gi = b["values"][:k], b["indices"][:k]
        if not sort:
            o, eo = np.argsort(gi, kind="stable"), np.argsort(ei, kind="stable")
            gv, gi, ev, ei = gv[o], gi[o], ev[eo], ei[eo]
        if not (np.array_equal(gi, ei) and same_values(gv, ev)):
            return f"value: {summary(gi)}, expected {summary(ei)}"
        return None

    fz.call("kernels", "top_k_1d-" + _slug(what), f"top_k_1d(n={n}, k={k}, buffers={nv}, {what})",
            run, _kernel_judge("top_k_1d", expect, what == "valid"))  # fmt: skip


def _k_entropy(fz, rng, bad, name):
    from fastroute import kernels as K

    fn = getattr(K, name)
    n = int(pick(rng, (0, 1, 3, 8, 17, 64, 255, 300)))
    nw = K.WORK_SIZE if not bad else int(pick(rng, (0, 1, 5, 256, K.WORK_SIZE - 1)))
    logits = name == "entropy_logits_1d"
    p = Guarded(n, np.float64)
    p.view[:] = np.abs(draw_values(rng, (n,), np.float64, logits, 0.05)) if not logits else (
        draw_values(rng, (n,), np.float64, True, 0.05))  # fmt: skip
    ps = np.array(p.view)
    work = Guarded(nw, np.float64)
    normalize = bool(rng.random() < 0.7)
    bufs = {"p": p, "work": work}

    def init():
        p.view[:] = ps
        work.view[:] = 0

    call = (lambda: fn(p.view, work.view)) if logits else (lambda: fn(p.view, normalize, work.view))
    run = lambda: _guarded_call(bufs, init, call)  # noqa: E731

    def expect(first):
        got = float(first[0])
        want = float(fr.entropy_from_logits(ps) if logits else fr.entropy(ps, normalize=normalize))
        if not (got == want or (math.isnan(got) and math.isnan(want))):
            return f"value: {got!r}, expected {want!r}"
        return None

    what = "valid" if not bad else "short work"
    fz.call("kernels", f"{name}-{_slug(what)}", f"{name}(n={n}, work={nw})", run,
            _kernel_judge(name, expect, not bad))  # fmt: skip


def _k_entropy_1d(fz, rng, bad):
    _k_entropy(fz, rng, bad, "entropy_1d")


def _k_entropy_logits_1d(fz, rng, bad):
    _k_entropy(fz, rng, bad, "entropy_logits_1d")


def _k_relative_entropy_1d(fz, rng, bad):
    from fastroute.kernels import relative_entropy_1d

    n = int(rng.integers(0, 20))
    nq = n if not bad else int(pick(rng, (0, max(n - 1, 0), n + 3)))
    p, q = Guarded(n, np.float64), Guarded(nq, np.float64)
    ps = np.abs(draw_values(rng, (n,), np.float64, False, 0.0))
    qs = np.abs(draw_values(rng, (nq,), np.float64, False, 0.0))
    if rng.random() < 0.2:  # entries near the float64 limit, all finite; q > 0
        ps, qs = rng.uniform(0.0, 1.79e308, n), rng.uniform(1e307, 1.79e308, nq)
    normalize = bool(rng.random() < 0.7)

    def init():
        p.view[:] = ps
        q.view[:] = qs

    def run():
        return _guarded_call(
            {"p": p, "q": q}, init, lambda: relative_entropy_1d(p.view, q.view, normalize)
        )

    def expect(first):
        got = float(first[0])
        want = float(fr.relative_entropy(ps, qs, normalize=normalize))
        if not (got == want or (math.isnan(got) and math.isnan(want))):
            return f"value: {got!r}, expected {want!r}"
        return None

    what = "valid" if nq == n else "q shorter" if nq < n else "q longer"
    fz.call("kernels", "relative_entropy_1d-" + _slug(what),
            f"relative_entropy_1d(n={n}, len(q)={nq}, normalize={normalize})", run,
            _kernel_judge("relative_entropy_1d", expect, what == "valid"))  # fmt: skip


def _k_route_1d(fz, rng, bad):
    from fastroute.kernels import route_1d

    E = int(rng.integers(1, 12))
    k = int(rng.integers(1, E + 1))
    ne = nw = k
    nb = 0 if rng.random() < 0.6 else E
    what = "valid"
    if bad:
        what = pick(rng, ("k > E", "short experts", "short weights", "short bias"))
        if what == "k > E":
            k = E + int(rng.integers(1, 6))
            ne = nw = k
        elif what == "short experts":
            ne = k - 1
        elif what == "short weights":
            nw = k - 1
        elif what == "short bias":
            nb = int(rng.integers(1, E)) if E > 1 else 0
            if nb == 0:
                what = "valid"
    z = Guarded(E, np.float32)
    zs = rng.standard_normal(E).astype(np.float32)
    bias = Guarded(nb, np.float64)
    bs = rng.standard_normal(nb) * 0.1
    e, w = Guarded(ne, np.int32), Guarded(nw, np.float32)
    sigmoid, renorm = bool(rng.random() < 0.3), bool(rng.random() < 0.8)

    def init():
        z.view[:] = zs
        bias.view[:] = bs
        e.view[:] = -1
        w.view[:] = 0

    call = lambda: route_1d(z.view, k, sigmoid, renorm, bias.view, 0, 0, False, 1.0, e.view, w.view)  # noqa: E731
    run = lambda: _guarded_call({"logits": z, "bias": bias, "experts": e, "weights": w}, init, call)  # noqa: E731

    def expect(first):
        st, b = first
        ref = fr.route(zs[None], k, scoring="sigmoid" if sigmoid else "softmax", renormalize=renorm,
                       bias=bs if nb else None)  # fmt: skip
        if (
            int(st) != 0
            or not np.array_equal(b["experts"], ref.experts[0])
            or not same_values(b["weights"], ref.weights[0])
        ):
            return f"value: status {int(st)} {summary(b['experts'])}, expected {summary(ref.experts[0])}"
        return None

    fz.call("kernels", "route_1d-" + _slug(what),
            f"route_1d(E={E}, k={k}, experts={ne}, weights={nw}, bias={nb}, {what})", run,
            _kernel_judge("route_1d", expect, what == "valid"))  # fmt: skip


def _k_gather_row(fz, rng, bad):
    from fastroute.kernels import gather_row

    T, H = int(rng.integers(1, 6)), int(rng.integers(1, 6))
    N = int(rng.integers(1, 6))
    s = int(rng.integers(-1, T))
    r = int(rng.integers(0, N))
    Ho = H
    what = "valid"
    if bad:
        what = pick(rng, ("source row past the end", "row past the end", "narrower out"))
        if what == "source row past the end":
            s = T + int(rng.integers(0, 3))
        elif what == "row past the end":
            r = N + int(rng.integers(0, 3))
        else:
            Ho = H - 1 if H > 1 else 0
    src = Guarded(T, np.float32, H)
    srcs = rng.standard_normal((T, H)).astype(np.float32)
    out = Guarded(N, np.float32, Ho)

    def init():
        src.view[:] = srcs
        out.view[:] = 0

    def run():
        return _guarded_call(
            {"src": src, "out": out}, init, lambda: gather_row(src.view, s, out.view, r)
        )

    def expect(first):
        got = first[1]["out"]
        want = np.zeros((N, Ho), np.float32)
        if s >= 0:
            want[r] = srcs[s]
        return (
            None if same_values(got, want) else f"value: {summary(got)}, expected {summary(want)}"
        )

    fz.call("kernels", "gather_row-" + _slug(what), f"gather_row(T={T}, H={H}, s={s}, N={N}, r={r}, out width {Ho})",
            run, _kernel_judge("gather_row", expect, what == "valid"))  # fmt: skip


def _k_combine_row(fz, rng, bad):
    from fastroute.kernels import combine_row

    T, k, H = int(rng.integers(1, 5)), int(rng.integers(1, 4)), int(rng.integers(1, 6))
    N = int(rng.integers(1, T * k + 1))
    pos_s = rng.integers(-1, N, T * k).astype(np.int64)
    t = int(rng.integers(0, T))
    nacc, kw = H, k
    what = "valid"
    if bad:
        what = pick(rng, ("row past the end", "token past the end", "short acc", "narrow weights"))
        if what == "row past the end":
            pos_s[t * k + int(rng.integers(k))] = N + int(rng.integers(0, 3))
        elif what == "token past the end":
            t = T + int(rng.integers(0, 2))
        elif what == "short acc":
            nacc = H - 1 if H > 1 else 0
        else:
            kw = k - 1
    x = Guarded(N, np.float32, H)
    xs = rng.standard_normal((N, H)).astype(np.float32)
    pos = Guarded(T * k, np.int64)
    w = Guarded(T, np.float32, kw)
    ws = rng.random((T, kw)).astype(np.float32)
    acc = Guarded(nacc, np.float32)

    def init():
        x.view[:] = xs
        pos.view[:] = pos_s
        w.view[:] = ws
        acc.view[:] = 0

    run = lambda: _guarded_call({"x": x, "pos": pos, "weights": w, "acc": acc}, init,  # noqa: E731
                                lambda: combine_row(x.view, pos.view, w.view, t, k, acc.view))  # fmt: skip

    def expect(first):
        got = first[1]["acc"]
        want = np.zeros(H, np.float32)
        for j in range(k):
            p_ = int(pos_s[t * k + j])
            if p_ >= 0:
                want = want + ws[t, j] * xs[p_]
        return (
            None if same_values(got, want) else f"value: {summary(got)}, expected {summary(want)}"
        )

    fz.call("kernels", "combine_row-" + _slug(what),
            f"combine_row(T={T}, k={k}, H={H}, N={N}, t={t}, acc={nacc}, weights width {kw})", run,
            _kernel_judge("combine_row", expect, what == "valid"))  # fmt: skip


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--calls", type=int, default=400, help="stop after about this many calls")
    ap.add_argument("--log", default=os.devnull)
    ap.add_argument("--surfaces", default=",".join(SURFACES))
    ap.add_argument("--quick", action="store_true", help="the suite's dtypes and paths only")
    ap.add_argument("--failures", default=None, help="write every failure to this file")
    ap.add_argument("--max-memory", type=float, default=6.0, metavar="GIB",
                    help="cap on the address space (a runaway allocation fails here, "
                         "it does not take the machine's memory)")  # fmt: skip
    args = ap.parse_args(argv)
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = int(args.max_memory * 2**30)
    if hard == resource.RLIM_INFINITY or hard > cap:
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    surfaces = [s for s in args.surfaces.split(",") if s]
    unknown = set(surfaces) - set(SURFACES)
    if unknown:
        ap.error(f"unknown surfaces {sorted(unknown)}; choose from {SURFACES}")
    rng = np.random.default_rng(args.seed)
    weights = np.array([WEIGHTS[s] for s in surfaces], float)
    warnings.simplefilter("ignore")
    root = pathlib.Path(tempfile.mkdtemp(prefix="fuzz_newer-"))
    seen: set = set()
    try:
        files = _make_files(root)
        with open(args.log, "w") as log:
            fz = Fuzzer(log, args.quick)
            if args.failures:
                fz.all_failures = open(args.failures, "w")  # noqa: SIM115 - closed with the process
            while fz.counts["tried"] < args.calls:
                s = surfaces[int(rng.choice(len(surfaces), p=weights / weights.sum()))]
                if s == "divergence":
                    (entropy_round if rng.random() < 0.15 else divergence_round)(fz, rng)
                elif s == "sparse":
                    sparse_round(fz, rng)
                elif s == "moe":
                    moe_round(fz, rng)
                elif s == "dask":
                    dask_round(fz, rng, files)
                elif s == "cli":
                    cli_round(fz, rng, files, seen)
                else:
                    kernel_round(fz, rng)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(fz.report()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
