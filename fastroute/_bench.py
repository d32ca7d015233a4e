"""The one benchmark registry, shared by ``bench/`` and ``python -m fastroute bench``.

Both front ends (pytest-benchmark in ``bench/test_*.py`` and the timing loop of
the command line) take their cases, inputs and callables from here, so they
measure exactly the same calls.

* :data:`CASES` -- what is measured: operation, shape, ``k``, dtype.
* :func:`impls` -- who is measured for an operation: fastroute, the peers
  (NumPy/SciPy recipes, PyTorch when installed) and the memory-read floor.
* :func:`make_input` / :func:`make_callable` -- the input array of a case and a
  zero-argument callable running one implementation on it. Conversions (for
  example ``torch.from_numpy``) happen here, outside the timed call.
* :func:`first_call_times` -- compile / cache-load time of the fastroute
  functions, measured in fresh subprocesses.
* :func:`render_tables` -- the comparison table (Markdown or plain text),
  used by ``bench/report.py`` and the command line.

SciPy and PyTorch are imported only when a callable that needs them is built.
This module is private: its contents may change between releases.
"""

from __future__ import annotations

import datetime as _dt
import gc
import importlib.util
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numba
import numpy as np

from ._jit import PARALLEL_MIN_WORK as _PAR_MIN

__all__ = [
    "OPS",
    "CASES",
    "Case",
    "Impl",
    "impls",
    "missing_requirements",
    "select_cases",
    "make_input",
    "make_callable",
    "summarize",
    "check_agreement",
    "read_floor",
    "numpy_top_k",
    "time_callable",
    "first_call_times",
    "measure_compile",
    "environment",
    "environment_warnings",
    "parallel_launch_latency",
    "threading_layer",
    "cpu_model",
    "usable_cores",
    "fmt_time",
    "LAUNCH_WARN_S",
    "render_tables",
    "render_header",
    "render_compile_table",
    "measure_analyze",
    "render_analyze",
    "zipf_csr",
]

#: Operations benchmarked, in display order.
OPS: tuple[str, ...] = (
    "top_k", "entropy", "entropy_from_logits", "csr_top_k", "csr_entropy", "cooccurrence",
    "route", "route_select", "deepseek", "group_by_expert",
)  # fmt: skip

#: Operations on sparse input (CSR matrices or token streams).
SPARSE_OPS = frozenset({"csr_top_k", "csr_entropy", "cooccurrence"})

#: MoE routing operations (router logits; group_by_expert: expert ids).
ROUTE_OPS = frozenset({"route", "route_select", "deepseek", "group_by_expert"})

_ITEMSIZE = {"bfloat16": 2}


# --------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    """One benchmark case: an operation on a 2-D C-contiguous array, along axis 1.

    ``quick`` marks the subset run by ``python -m fastroute bench --quick``.
    """

    op: str
    shape: tuple[int, int]
    k: int | None = None
    dtype: str = "float32"
    quick: bool = False
    experts: int | None = None  # group_by_expert: the number of experts

    @property
    def shape_str(self) -> str:
        """``"65536x64"``."""
        return "x".join(str(s) for s in self.shape)

    @property
    def label(self) -> str:
        """The case without the operation: ``"65536x64 k=8"``."""
        if self.op == "cooccurrence":
            return f"{self.shape[0]} tokens V={self.shape[1]} w={_COOC_WINDOW}"
        if self.op == "group_by_expert":
            return f"{self.shape_str} E={self.experts}"
        dt = "" if self.dtype in ("float32", "int32") else f" {self.dtype}"
        return self.shape_str + ("" if self.k is None else f" k={self.k}") + dt

    @property
    def name(self) -> str:
        """Display name, also the pytest-benchmark group: ``"top_k 65536x64 k=8"``."""
        return f"{self.op} {self.label}"

    @property
    def id(self) -> str:
        """Identifier without spaces: ``"top_k-65536x64-k8"``."""
        tail = "" if self.k is None else f"-k{self.k}"
        if self.experts is not None:
            tail += f"-E{self.experts}"
        if self.dtype not in ("float32", "int32"):
            tail += f"-{self.dtype}"
        return f"{self.op}-{self.shape_str}" + tail

    @property
    def nbytes(self) -> int:
        """Size of the input in bytes (CSR: data and indices; tokens: int32 ids)."""
        if self.op == "cooccurrence":
            return self.shape[0] * 4
        if self.op in SPARSE_OPS:
            return _CSR_NNZ * (np.dtype(self.dtype).itemsize + 4)
        size = _ITEMSIZE.get(self.dtype) or np.dtype(self.dtype).itemsize
        return math.prod(self.shape) * size


_ROUTER_ROWS = 65536
_ROUTER_EXPERTS = (8, 64, 256)
_ROUTER_K = (2, 8)
_VOCAB_SHAPE = (64, 128000)
_VOCAB_K = 50
_TINY_SHAPE = (1, 8)
_TINY_K = 2
_DECODE_SHAPE = (1, 64)  # one token of a 64-expert router
_DECODE_K = 2
_QUICK_EXPERTS = 64
_CSR_SHAPE = (200_000, 50_000)
_CSR_NNZ = 4_000_000
_CSR_K = 8
_COOC_SHAPE = (1_000_000, 50_000)  # tokens, vocabulary
_COOC_WINDOW = 2


def _route_cases(op: str) -> list[Case]:
    if op == "group_by_expert":
        return [
            Case(op, (_ROUTER_ROWS, 2), dtype="int32", experts=8),
            Case(op, (_ROUTER_ROWS, 8), dtype="int32", experts=256, quick=True),
        ]
    if op == "deepseek":
        return [Case(op, (_ROUTER_ROWS, 256), 8, dtype=d) for d in ("float32", "bfloat16")]
    cases = [
        Case(op, (_ROUTER_ROWS, n), k, dtype=d, quick=(n == _QUICK_EXPERTS and d == "float32"))
        for d in ("float32", "bfloat16")
        for n in _ROUTER_EXPERTS
        for k in _ROUTER_K
    ]
    if op == "route":
        cases.append(Case(op, _DECODE_SHAPE, _DECODE_K, quick=True))
    return cases


def _build_cases() -> tuple[Case, ...]:
    cases: list[Case] = []
    for op in OPS:
        if op in ROUTE_OPS:
            cases += _route_cases(op)
            continue
        if op in SPARSE_OPS:
            if op == "cooccurrence":
                cases.append(Case(op, _COOC_SHAPE, None, dtype="int32"))
            else:
                cases.append(Case(op, _CSR_SHAPE, _CSR_K if op == "csr_top_k" else None))
            continue
        ks: Sequence[int | None] = _ROUTER_K if op == "top_k" else (None,)
        for n in _ROUTER_EXPERTS:
            for k in ks:
                if k is not None and k > n:
                    continue
                quick = n == _QUICK_EXPERTS and k in (None, max(_ROUTER_K))
                cases.append(Case(op, (_ROUTER_ROWS, n), k, quick=quick))
        cases.append(Case(op, _VOCAB_SHAPE, _VOCAB_K if op == "top_k" else None, quick=True))
        cases.append(Case(op, _TINY_SHAPE, _TINY_K if op == "top_k" else None, quick=True))
    return tuple(cases)


#: Every case, grouped by operation (router shapes, vocabulary shape, 1x8).
CASES: tuple[Case, ...] = _build_cases()


def select_cases(
    patterns: str | None = None, *, quick: bool = False, cases: Iterable[Case] = CASES
) -> list[Case]:
    """Cases matching any of the comma-separated ``patterns`` (all when ``None``).

    A pattern with ``*``, ``?`` or ``[`` is a case-insensitive glob on
    :attr:`Case.name` or :attr:`Case.id`; otherwise it is a case-insensitive
    substring of either. ``quick`` keeps only the cases marked ``quick``.
    """
    import fnmatch

    chosen = [c for c in cases if c.quick or not quick]
    if not patterns:
        return chosen
    pats = [p.strip().lower() for p in patterns.split(",") if p.strip()]

    def match(c: Case) -> bool:
        names = (c.name.lower(), c.id.lower())
        for p in pats:
            if any(ch in p for ch in "*?["):
                if any(fnmatch.fnmatchcase(s, p) for s in names):
                    return True
            elif any(p in s for s in names):
                return True
        return False

    return [c for c in chosen if match(c)]


# --------------------------------------------------------------------------- implementations


@dataclass(frozen=True)
class Impl:
    """One implementation measured for an operation.

    ``role`` is ``"fastroute"``, ``"peer"`` or ``"floor"``; ``requires`` lists
    the modules that must be importable; ``call`` is the benchmarked call.
    """

    key: str
    label: str
    role: str
    requires: tuple[str, ...]
    call: str


_FASTROUTE = {
    "top_k": Impl("fastroute", "fastroute", "fastroute", (), "fastroute.top_k(x, k)"),
    "entropy": Impl("fastroute", "fastroute", "fastroute", (), "fastroute.entropy(p)"),
    "entropy_from_logits": Impl(
        "fastroute", "fastroute", "fastroute", (), "fastroute.entropy_from_logits(z)"
    ),
    "csr_top_k": Impl(
        "fastroute", "fastroute", "fastroute", ("scipy",), "fastroute.top_k(A, k, explicit=True)"
    ),
    "csr_entropy": Impl("fastroute", "fastroute", "fastroute", ("scipy",), "fastroute.entropy(A)"),
    "cooccurrence": Impl(
        "fastroute",
        "fastroute",
        "fastroute",
        ("scipy",),
        "fastroute.cooccurrence(tokens, V, window=2)",
    ),  # fmt: skip
    "route": Impl("fastroute", "fastroute", "fastroute", (), "fastroute.route(x, k)"),
    "route_select": Impl(
        "fastroute", "fastroute", "fastroute", (),
        "the routing kernel alone: experts and weights (no grouping, no statistics)",
    ),
    "deepseek": Impl(
        "fastroute", "fastroute", "fastroute", (),
        "fastroute.route(x, 8, scoring='sigmoid', bias=b, n_groups=8, topk_groups=4, "
        "group_score='top2', scale=2.5, stats=False)",
    ),
    "group_by_expert": Impl(
        "fastroute", "fastroute", "fastroute", (), "fastroute.group_by_expert(e, E)"
    ),
}  # fmt: skip

_FLOOR = Impl(
    "floor",
    "read floor",
    "floor",
    (),
    "parallel fastmath streaming sum over the input bytes (numba prange)",
)

_PEERS: dict[str, tuple[Impl, ...]] = {
    "top_k": (
        Impl(
            "numpy",
            "numpy",
            "peer",
            (),
            "np.argpartition + np.take_along_axis + stable argsort of the k values",
        ),
        Impl("torch.topk", "torch.topk", "peer", ("torch",), "torch.topk(t, k, dim=1)"),
    ),
    "entropy": (
        Impl(
            "scipy.stats",
            "scipy.stats.entropy",
            "peer",
            ("scipy",),
            "scipy.stats.entropy(p, axis=1)",
        ),
        Impl(
            "scipy.entr",
            "scipy.special.entr",
            "peer",
            ("scipy",),
            "scipy.special.entr(p).sum(1)",
        ),
        Impl(
            "torch.entr",
            "torch.special.entr",
            "peer",
            ("torch",),
            "torch.special.entr(t).sum(1)",
        ),
    ),
    "entropy_from_logits": (
        Impl(
            "scipy.log_softmax",
            "scipy log_softmax",
            "peer",
            ("scipy",),
            "ls = scipy.special.log_softmax(z, axis=1); -(np.exp(ls) * ls).sum(1)",
        ),
        Impl(
            "torch.Categorical",
            "torch Categorical",
            "peer",
            ("torch",),
            "torch.distributions.Categorical(logits=t).entropy()",
        ),
    ),
    "csr_top_k": (
        Impl(
            "python.argpartition",
            "Python loop",
            "peer",
            ("scipy",),
            "for each row: np.argpartition(-row, k - 1)[:k], then a stable sort of the k",
        ),
    ),
    "csr_entropy": (
        Impl(
            "scipy.reduceat",
            "entr + reduceat",
            "peer",
            ("scipy",),
            "p = A.data / np.repeat(row sums, row lengths); "
            "np.add.reduceat(scipy.special.entr(p), A.indptr[:-1])",
        ),
    ),
    "route": (
        Impl(
            "torch.pipeline",
            "torch pipeline",
            "peer",
            ("torch",),
            "softmax(dtype=float32) -> topk -> w / w.sum -> bincount -> argsort(stable=True)",
        ),
    ),
    "route_select": (
        Impl(
            "torch.select",
            "torch softmax+topk",
            "peer",
            ("torch",),
            "softmax(dtype=float32) -> topk -> w / w.sum",
        ),
    ),
    "deepseek": (
        Impl(
            "torch.deepseek",
            "torch DeepSeek-V3",
            "peer",
            ("torch",),
            "sigmoid -> + bias -> group top-2 sums -> topk groups -> mask (-inf) -> topk "
            "-> gather -> w / w.sum * 2.5 -> bincount -> argsort(stable=True)",
        ),
    ),
    "group_by_expert": (
        Impl(
            "numpy.argsort",
            "argsort + bincount",
            "peer",
            (),
            "np.argsort(e.ravel(), kind='stable'), np.bincount(e.ravel(), minlength=E)",
        ),
    ),
    "cooccurrence": (
        Impl(
            "scipy.coo",
            "NumPy + coo_matrix",
            "peer",
            ("scipy",),
            "pair arrays (np.concatenate of shifted slices, both directions) -> "
            "coo_matrix((ones, (i, j))) -> tocsr()",
        ),
    ),
}


def impls(op: str) -> tuple[Impl, ...]:
    """fastroute, the read floor, then the peers, for operation ``op``.

    This is also the order of measurement: the floor is timed right after
    fastroute, before any peer has started its own thread pool (PyTorch's
    OpenMP threads may keep spinning for a while after a call).
    """
    if op not in _PEERS:
        raise ValueError(f"unknown operation {op!r}; expected one of {', '.join(OPS)}")
    return (_FASTROUTE[op], _FLOOR, *_PEERS[op])


def missing_requirements(impl: Impl) -> list[str]:
    """Modules ``impl`` needs that are not installed (checked without importing them)."""
    return [m for m in impl.requires if importlib.util.find_spec(m) is None]


# --------------------------------------------------------------------------- inputs


def zipf_csr(shape: tuple[int, int], nnz: int, seed: int = 0, dtype: Any = np.float32) -> Any:
    """A canonical ``csr_array`` with Zipf-shaped rows, deterministic.

    Row ``r`` (0-based) holds ``min(ncols, max(1, floor(a / (r + 1))))``
    entries, ``a`` chosen so that the total is about ``nnz``: the first rows
    are (nearly) full, most rows hold 1-5 entries, like a co-occurrence
    matrix with frequency-ranked token ids. Columns of a row are distinct
    (an arithmetic progression modulo ``ncols`` with a random start and a
    stride coprime to it); values uniform in (0, 1].
    """
    import scipy.sparse as sp

    nrows, ncols = shape
    inv = 1.0 / np.arange(1, nrows + 1)

    def total(a: float) -> int:
        return int(np.minimum(ncols, np.maximum(1, np.floor(a * inv))).sum())

    lo, hi = 0.0, float(nnz)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if total(mid) < nnz else (lo, mid)
    lengths = np.minimum(ncols, np.maximum(1, np.floor(hi * inv))).astype(np.int64)
    rng = np.random.default_rng([seed, nrows, ncols, nnz])
    indptr = np.zeros(nrows + 1, np.int64)
    np.cumsum(lengths, out=indptr[1:])
    row = np.repeat(np.arange(nrows), lengths)
    j = np.arange(indptr[-1]) - indptr[row]
    start = rng.integers(0, ncols, nrows)
    stride = 7919  # a prime: coprime to ncols unless it divides it
    if ncols % stride == 0:
        stride = 1
    indices = ((start[row] + j * stride) % ncols).astype(np.int32)
    data = (1.0 - rng.random(indptr[-1])).astype(dtype)
    A = sp.csr_array((data, indices, indptr.astype(np.int32)), shape=shape)
    A.sort_indices()
    return A


def make_input(case: Case, seed: int = 0) -> Any:
    """The input array of ``case``: C-contiguous, ``case.dtype``, deterministic.

    * ``top_k``: standard normal values (router logits; ties are rare).
    * ``entropy``: ``softmax`` of normal logits with scale 2, rows sum to 1,
      so every peer works on the same normalized probabilities.
    * ``entropy_from_logits``: normal logits with scale 2.
    * ``csr_top_k``/``csr_entropy``: :func:`zipf_csr` (float32 counts-like
      values; entropy normalizes them).
    * ``cooccurrence``: Zipf(1.3) token ids modulo the vocabulary, int32.
    * routing: standard normal logits (float32 or ml_dtypes bfloat16);
      ``group_by_expert``: uniform expert ids, int32.
    """
    if case.op == "cooccurrence":  # Zipf(1.3)-distributed token ids
        rng = np.random.default_rng([seed, *case.shape])
        return ((rng.zipf(1.3, case.shape[0]) - 1) % case.shape[1]).astype(np.int32)
    if case.op in SPARSE_OPS:
        return zipf_csr(case.shape, _CSR_NNZ, seed, case.dtype)
    if case.op == "group_by_expert":  # uniform expert ids
        rng = np.random.default_rng([seed, *case.shape, case.experts or 0])
        return rng.integers(0, case.experts, case.shape, dtype=np.int32)
    if case.op in ROUTE_OPS:  # standard normal router logits
        rng = np.random.default_rng([seed, *case.shape, case.k or 0])
        z = rng.standard_normal(case.shape, dtype=np.float32)
        if case.dtype == "bfloat16":
            import ml_dtypes

            return z.astype(ml_dtypes.bfloat16)
        return z.astype(case.dtype, copy=False)
    rng = np.random.default_rng([seed, *case.shape, case.k or 0])
    dt = np.dtype(case.dtype)
    z = rng.standard_normal(case.shape, dtype=np.float32)
    if case.op == "top_k":
        return z.astype(dt, copy=False)
    z *= 2.0
    if case.op == "entropy_from_logits":
        return z.astype(dt, copy=False)
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z.astype(dt, copy=False)


# --------------------------------------------------------------------------- read floor
# (below _PAR_MIN elements the floor runs serially, like fastroute's own drivers)


@numba.njit(parallel=True, fastmath=True, cache=True)
def _sum_parallel(flat, zero):  # pragma: no cover - compiled
    s = zero
    for i in numba.prange(flat.shape[0]):
        s += flat[i]
    return s


@numba.njit(fastmath=True, cache=True)
def _sum_serial(flat, zero):  # pragma: no cover - compiled
    s = zero
    for i in range(flat.shape[0]):
        s += flat[i]
    return s


def read_floor(a: np.ndarray) -> Any:
    """Sum every element of ``a`` (viewed flat) with a parallel, vectorized loop.

    This reads the same bytes as any row-wise kernel over ``a`` and does the
    least possible work per byte, so no row-wise kernel can be faster. Small
    arrays (below fastroute's ``PARALLEL_MIN_WORK``) use the serial twin, as
    fastroute does, so the 1x8 floor is the bare cost of a Numba call.
    """
    flat = a.reshape(-1)
    zero = flat.dtype.type(0)
    if flat.shape[0] >= _PAR_MIN and numba.get_num_threads() > 1:
        return _sum_parallel(flat, zero)
    return _sum_serial(flat, zero)


# --------------------------------------------------------------------------- callables


def numpy_top_k(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The usual NumPy top-k recipe along axis 1, values descending.

    ``np.argpartition`` puts the ``k`` largest last, ``np.take_along_axis``
    gathers them, and a stable ``argsort`` of the negated ``k`` values orders
    them descending. Order semantics match ``fastroute.top_k`` except for ties
    (kept in partition order, not index order) and NaN (selected as largest).
    """
    n = x.shape[1]
    part = np.argpartition(x, n - k, axis=1)[:, n - k :]
    vals = np.take_along_axis(x, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(vals, order, axis=1), np.take_along_axis(part, order, axis=1)


def python_csr_top_k(A: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The common per-row loop: top-k stored entries of each CSR row.

    ``np.argpartition`` on the negated row when it holds more than ``k``
    entries, then a stable sort of the chosen ones; padding (value 0, index
    -1) as ``fastroute.top_k(A, k, explicit=True)``.
    """
    n = A.shape[0]
    vals = np.zeros((n, k), A.dtype)
    idxs = np.full((n, k), -1, np.intp)
    data, indices, indptr = A.data, A.indices, A.indptr
    for r in range(n):
        seg = data[indptr[r] : indptr[r + 1]]
        m = seg.shape[0]
        if m > k:
            part = np.argpartition(-seg, k - 1)[:k]
        else:
            part = np.arange(m)
        order = part[np.argsort(-seg[part], kind="stable")]
        vals[r, : order.size] = seg[order]
        idxs[r, : order.size] = indices[indptr[r] + order]
    return vals, idxs


def scipy_csr_entropy(A: Any) -> np.ndarray:
    """Row entropies of a CSR matrix without empty rows: ``scipy.special.entr``
    of the normalized values, summed per row with ``np.add.reduceat``."""
    from scipy.special import entr

    starts = A.indptr[:-1]
    sums = np.add.reduceat(A.data, starts)
    p = A.data / np.repeat(sums, np.diff(A.indptr))
    return np.add.reduceat(entr(p), starts)


def scipy_cooccurrence(tokens: np.ndarray, vocab: int, window: int) -> Any:
    """The NumPy/SciPy baseline: all pairs as arrays, ``coo_matrix``, ``tocsr()``."""
    import scipy.sparse as sp

    rows = [tokens[:-d] for d in range(1, window + 1)]
    cols = [tokens[d:] for d in range(1, window + 1)]
    i = np.concatenate(rows + cols)
    j = np.concatenate(cols + rows)
    C = sp.coo_matrix((np.ones(i.size, np.int64), (i, j)), shape=(vocab, vocab))
    return C.tocsr()


def deepseek_bias(E: int) -> np.ndarray:
    """The fixed selection bias of the DeepSeek-V3 benchmark case."""
    return np.random.default_rng(7).standard_normal(E) * 0.01


def numpy_group_by_expert(e: np.ndarray, E: int) -> tuple[np.ndarray, np.ndarray]:
    """The NumPy recipe: a stable argsort of the flat ids, offsets by bincount."""
    flat = e.reshape(-1)
    order = np.argsort(flat, kind="stable")
    offsets = np.zeros(E + 1, np.int64)
    np.cumsum(np.bincount(flat, minlength=E), out=offsets[1:])
    return order, offsets


def torch_route(torch: Any, t: Any, k: int, group: bool) -> tuple[Any, ...]:
    """The usual PyTorch router (HF Mixtral/Qwen-MoE) on the CPU: float32
    softmax, topk, renormalize; with ``group``, counts by ``bincount`` and the
    grouping permutation by a stable ``argsort``."""
    p = torch.softmax(t, dim=-1, dtype=torch.float32)
    w, e = torch.topk(p, k, dim=-1)
    w = w / w.sum(-1, keepdim=True)
    if not group:
        return e, w
    flat = e.reshape(-1)
    counts = torch.bincount(flat, minlength=t.shape[1])
    return e, w, counts, torch.argsort(flat, stable=True)


def torch_deepseek(torch: Any, t: Any, k: int, bias: Any) -> tuple[Any, ...]:
    """DeepSeek-V3's gate transcribed to PyTorch (8 groups, 4 kept, top-2 group
    scores, routed scaling 2.5), then counts and the grouping permutation."""
    scores = t.float().sigmoid()
    choice = scores + bias
    T, E = choice.shape
    group_scores = choice.view(T, 8, -1).topk(2, dim=-1)[0].sum(-1)
    group_idx = group_scores.topk(4, dim=-1, sorted=False)[1]
    mask = torch.zeros_like(group_scores).scatter_(1, group_idx, 1)
    mask = mask.unsqueeze(-1).expand(T, 8, E // 8).reshape(T, E)
    e = choice.masked_fill(~mask.bool(), float("-inf")).topk(k, dim=-1)[1]
    w = scores.gather(1, e)
    w = w / w.sum(-1, keepdim=True) * 2.5
    flat = e.reshape(-1)
    return e, w, torch.bincount(flat, minlength=E), torch.argsort(flat, stable=True)


def _torch() -> Any:
    """Import torch and give it the same number of threads as Numba."""
    import torch

    n = numba.get_num_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return torch


def make_callable(case: Case, impl: Impl, x: np.ndarray) -> Callable[[], Any]:
    """A zero-argument callable running ``impl`` on input ``x`` of ``case``.

    Any conversion (``torch.from_numpy``, which shares memory) is done here,
    once, so the callable times only the computation. Raises
    :class:`ModuleNotFoundError` when a peer's library is not installed.
    """
    op, k = case.op, case.k
    if impl.role == "floor":
        if op == "csr_top_k":  # the values and their column indices
            return lambda: (read_floor(x.data), read_floor(x.indices))
        if op == "csr_entropy":  # the values and the row boundaries
            return lambda: (read_floor(x.data), read_floor(x.indptr))
        if case.dtype == "bfloat16":  # the same bytes, read as integers
            bits = x.view(np.uint16)
            return lambda: read_floor(bits)
        return lambda: read_floor(x)
    if impl.role == "fastroute":
        import fastroute as fr

        if op == "csr_top_k":
            return lambda: fr.top_k(x, k, explicit=True)
        if op == "csr_entropy":
            return lambda: fr.entropy(x)
        if op == "cooccurrence":
            return lambda: fr.cooccurrence(x, case.shape[1], window=_COOC_WINDOW)
        if op == "top_k":
            return lambda: fr.top_k(x, k)
        if op == "entropy":
            return lambda: fr.entropy(x)
        if op == "route":
            return lambda: fr.route(x, k)
        if op == "route_select":
            from .routing import select_only

            return lambda: select_only(x, k)
        if op == "deepseek":
            b = deepseek_bias(case.shape[1])
            return lambda: fr.route(
                x, k, scoring="sigmoid", bias=b, n_groups=8, topk_groups=4,
                group_score="top2", scale=2.5, stats=False,
            )  # fmt: skip
        if op == "group_by_expert":
            return lambda: fr.group_by_expert(x, case.experts)
        return lambda: fr.entropy_from_logits(x)

    key = impl.key
    if key == "python.argpartition":
        return lambda: python_csr_top_k(x, k)
    if key == "scipy.reduceat":
        return lambda: scipy_csr_entropy(x)
    if key == "scipy.coo":
        return lambda: scipy_cooccurrence(x, case.shape[1], _COOC_WINDOW)
    if key == "numpy":
        return lambda: numpy_top_k(x, k)
    if key == "numpy.argsort":
        return lambda: numpy_group_by_expert(x, case.experts)
    if key == "scipy.stats":
        from scipy.stats import entropy as sp_entropy

        return lambda: sp_entropy(x, axis=1)
    if key == "scipy.entr":
        from scipy.special import entr

        return lambda: entr(x).sum(1)
    if key == "scipy.log_softmax":
        from scipy.special import log_softmax

        def recipe() -> np.ndarray:
            ls = log_softmax(x, axis=1)
            return -(np.exp(ls) * ls).sum(1)

        return recipe
    if key.startswith("torch."):
        torch = _torch()
        if case.dtype == "bfloat16":
            t = torch.from_numpy(x.view(np.int16)).view(torch.bfloat16)
        else:
            t = torch.from_numpy(x)
        if key == "torch.pipeline":
            return lambda: torch_route(torch, t, k, group=True)
        if key == "torch.select":
            return lambda: torch_route(torch, t, k, group=False)
        if key == "torch.deepseek":
            b = torch.from_numpy(deepseek_bias(case.shape[1]).astype(np.float32))
            return lambda: torch_deepseek(torch, t, k, b)
        if key == "torch.topk":
            return lambda: torch.topk(t, k, dim=1, largest=True, sorted=True)
        if key == "torch.entr":
            return lambda: torch.special.entr(t).sum(1)
        if key == "torch.Categorical":
            cat = torch.distributions.Categorical
            return lambda: cat(logits=t).entropy()
    raise ValueError(f"no callable for {impl.key!r} in case {case.name!r}")


def summarize(case: Case, result: Any) -> np.ndarray:
    """The comparable part of a result: top-k values, or the entropies (float64)."""
    if case.op in ("top_k", "csr_top_k"):
        result = result[0]
    if case.op == "group_by_expert":
        result = np.concatenate([np.asarray(result[0]), np.asarray(result[1])])
    elif case.op in ROUTE_OPS:  # each token's weights, sorted
        w = result.weights if hasattr(result, "weights") else result[1]
        if hasattr(w, "detach"):
            w = w.detach().cpu().numpy()
        return -np.sort(-np.asarray(w, dtype=np.float64), axis=1)
    if case.op == "cooccurrence":  # structure and counts, exactly
        result = np.concatenate([result.indptr, result.indices, result.data])
    if hasattr(result, "detach"):
        result = result.detach().cpu().numpy()
    return np.asarray(result, dtype=np.float64)


def check_agreement(case: Case, impl: Impl, reference: Any, result: Any) -> str | None:
    """``None`` when ``result`` of a peer agrees with fastroute's ``reference``.

    Top-k values must be equal (ties do not change values); entropies must
    agree to float32 accuracy. Otherwise a one-line description of the
    difference, so a benchmark never compares different computations.
    """
    if impl.role != "peer":
        return None
    ref, got = summarize(case, reference), summarize(case, result)
    if ref.shape != got.shape:
        return f"{impl.label}: shape {got.shape} != fastroute's {ref.shape}"
    if case.op in ("route", "route_select", "deepseek"):
        # routing weights to float32 accuracy; a token whose choice differs at
        # a near-tie (unordered in torch) may differ, 1 in 1000 at most
        rows = ~np.isclose(got, ref, rtol=1e-4, atol=1e-6).all(axis=1)
        bad = int(np.count_nonzero(rows))
        if bad <= got.shape[0] // 1000:
            return None
        return f"{impl.label}: the weights of {bad} tokens differ from fastroute"
    if case.op in ("top_k", "csr_top_k", "cooccurrence", "group_by_expert"):
        bad = int(np.count_nonzero(ref != got))
        what = "counts" if case.op == "cooccurrence" else "top-k values"
        return None if bad == 0 else f"{impl.label}: {bad} {what} differ from fastroute"
    rtol, atol = (1e-3, 1e-4) if np.dtype(case.dtype).itemsize <= 4 else (1e-9, 1e-12)
    if np.allclose(got, ref, rtol=rtol, atol=atol):
        return None
    worst = float(np.max(np.abs(got - ref)))
    return f"{impl.label}: entropies differ from fastroute by up to {worst:.3g}"


# --------------------------------------------------------------------------- timing


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
        x = make_input(case)
        fn = make_callable(case, _FASTROUTE[op], x)
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
            read_floor(np.ones(max(_PAR_MIN, 1), np.float32))
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
    x = np.ones(_PAR_MIN, np.float32)
    zero = np.float32(0)
    par = time_callable(lambda: _sum_parallel(x, zero), budget=budget)["median_s"]
    ser = time_callable(lambda: _sum_serial(x, zero), budget=budget)["median_s"]
    return {"parallel_s": par, "serial_s": ser, "elements": float(_PAR_MIN)}


#: A parallel launch slower than this is reported as suspicious.
LAUNCH_WARN_S = 1e-3


def environment(*, launch: bool = False) -> dict[str, Any]:
    """Machine, versions and threading settings, as a JSON-able dict.

    Versions come from package metadata, so SciPy and PyTorch are not imported.
    ``launch=True`` also measures :func:`parallel_launch_latency` (about 0.1 s).
    """
    import fastroute

    torch_threads = None
    if "torch" in sys.modules:
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


# --------------------------------------------------------------------------- rendering


def fmt_time(s: float | None) -> str:
    """``1.23 ms``-style duration with 3 significant digits."""
    if s is None or not math.isfinite(s):
        return "n/a"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if s >= scale:
            v = s / scale
            return f"{v:.3g} {unit}" if v < 100 else f"{v:.0f} {unit}"
    return f"{s * 1e9:.0f} ns"


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


def render_tables(
    results: Sequence[Mapping[str, Any]],
    *,
    markdown: bool = True,
    peer_times: bool = False,
    stat: str = "median",
) -> str:
    """Comparison tables, one per operation.

    ``results`` are records with keys ``op``, ``case`` (:attr:`Case.label`),
    ``impl`` (:attr:`Impl.key`), ``median_s`` (or ``min_s`` with
    ``stat="min"``) and optionally ``error``. Cells: fastroute's time; per
    peer ``peer / fastroute`` (above 1: fastroute is faster); and fastroute's
    time as a multiple of the read floor.
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

    blocks = []
    for op in [o for o in OPS if o in case_order] + [o for o in case_order if o not in OPS]:
        peers = [i for i in impls(op) if i.role == "peer"] if op in OPS else []
        header = ["case", "fastroute"] + [f"vs {p.label}" for p in peers] + ["÷ read floor"]
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
            fl = time_of(op, case, "floor")
            row.append("n/a" if fl is None or fr is None else _fmt_ratio(fr / fl))
            rows.append(row)
        title = f"**{op}**" if markdown else op
        blocks.append(
            "\n".join([title, "", *_table(rows, ["<"] + [">"] * (len(header) - 1), markdown)])
        )
    legend = (
        f"fastroute: {stat} time per call. vs X: X's time / fastroute's time "
        "(above 1: fastroute is faster). ÷ read floor: fastroute's time / the "
        "time to stream the input once (1.00 would be optimal). n/a: not "
        "installed or not run."
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
