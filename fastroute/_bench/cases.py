"""What the benchmarks measure: cases (operation, shape, k, dtype) and their inputs."""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "OPS",
    "SPARSE_OPS",
    "ROUTE_OPS",
    "MOE_OPS",
    "MoeInput",
    "Case",
    "CASES",
    "PAIR_OPS",
    "Pair",
    "COOC_WINDOW",
    "select_cases",
    "make_input",
    "input_nbytes",
    "zipf_csr",
    "deepseek_bias",
    "case_requirements",
]

#: Operations benchmarked, in display order.
OPS: tuple[str, ...] = (
    "top_k", "entropy", "entropy_from_logits", "relative_entropy", "kl_from_logits",
    "csr_top_k", "csr_entropy", "csr_relative_entropy", "cooccurrence", "route", "route_stats", "route_select", "deepseek", "expert_choice", "group_by_expert",
    "dispatch", "combine",
)  # fmt: skip

#: MoE dispatch and combine (hidden states and a routing).
MOE_OPS = frozenset({"dispatch", "combine"})

#: Operations on sparse input (CSR matrices or token streams).
SPARSE_OPS = frozenset({"csr_top_k", "csr_entropy", "csr_relative_entropy", "cooccurrence"})

#: Operations on a pair of inputs (:class:`Pair`).
PAIR_OPS = frozenset({"relative_entropy", "kl_from_logits", "csr_relative_entropy"})

#: MoE routing operations (router logits; group_by_expert: expert ids).
ROUTE_OPS = frozenset(
    {"route", "route_stats", "route_select", "deepseek", "expert_choice", "group_by_expert"}
)

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
#: The co-occurrence window of the benchmark.
COOC_WINDOW = 2
_EC_EXPERTS = 64  # expert choice: capacity C = T * 2 / E (two experts per token on average)
_MOE_TOKENS = (4096, 65536)
_MOE_HIDDEN = (1024, 4096)
_MOE_EXPERTS = 64


class MoeInput(NamedTuple):
    """The input of dispatch/combine: the rows (hidden states, or expert
    outputs in dispatch's layout), the routing, and a preallocated output."""

    data: Any
    routing: Any
    out: Any


class Pair(NamedTuple):
    """The input of a two-argument operation: ``p`` and ``q`` (or their logits)."""

    p: Any
    q: Any


@dataclass(frozen=True)
class Case:
    """One benchmark case: an operation on a 2-D C-contiguous array, along axis 1.

    ``k`` is the number selected (top_k, routing), the capacity for
    ``expert_choice``; ``experts`` the number of experts of
    ``group_by_expert``; ``quick`` marks the subset of
    ``python -m fastroute bench --quick``.
    """

    op: str
    shape: tuple[int, int]
    k: int | None = None
    dtype: str = "float32"
    quick: bool = False
    experts: int | None = None

    @property
    def shape_str(self) -> str:
        """``"65536x64"``."""
        return "x".join(str(s) for s in self.shape)

    @property
    def label(self) -> str:
        """The case without the operation: ``"65536x64 k=8"``, ``"65536x8 k=2 bfloat16"``."""
        if self.op == "cooccurrence":
            return f"{self.shape[0]} tokens V={self.shape[1]} w={COOC_WINDOW}"
        if self.op == "group_by_expert":
            return f"{self.shape_str} E={self.experts}"
        if self.op in MOE_OPS:
            dt = "" if self.dtype == "float32" else f" {self.dtype}"
            return f"T={self.shape[0]} H={self.shape[1]} E={self.experts} k={self.k}{dt}"
        kname = "C" if self.op == "expert_choice" else "k"
        dt = "" if self.dtype in ("float32", "int32") else f" {self.dtype}"
        return self.shape_str + ("" if self.k is None else f" {kname}={self.k}") + dt

    @property
    def name(self) -> str:
        """Display name, also the pytest-benchmark group: ``"top_k 65536x64 k=8"``."""
        return f"{self.op} {self.label}"

    @property
    def test_id(self) -> str:
        """Unique id within the operation, dtype always included: ``"65536x8-k2-bfloat16"``."""
        parts = [self.shape_str]
        if self.k is not None:
            parts.append(("C" if self.op == "expert_choice" else "k") + str(self.k))
        if self.experts is not None:
            parts.append(f"E{self.experts}")
        parts.append(self.dtype)
        return "-".join(parts)

    @property
    def id(self) -> str:
        """Identifier without spaces, unique over all cases: ``"top_k-65536x64-k8-float32"``."""
        return f"{self.op}-{self.test_id}"


def _route_cases(op: str) -> list[Case]:
    if op == "group_by_expert":
        return [
            Case(op, (_ROUTER_ROWS, 2), dtype="int32", experts=8),
            Case(op, (_ROUTER_ROWS, 8), dtype="int32", experts=256, quick=True),
        ]
    if op == "deepseek":
        return [Case(op, (_ROUTER_ROWS, 256), 8, dtype=d) for d in ("float32", "bfloat16")]
    if op == "expert_choice":
        cap = _ROUTER_ROWS * 2 // _EC_EXPERTS
        return [Case(op, (_ROUTER_ROWS, _EC_EXPERTS), cap, quick=True)]
    cases = [
        Case(op, (_ROUTER_ROWS, n), k, dtype=d, quick=(n == _QUICK_EXPERTS and d == "float32"))
        for d in ("float32", "bfloat16")
        for n in _ROUTER_EXPERTS
        for k in _ROUTER_K
    ]
    if op in ("route", "route_stats"):
        cases.append(Case(op, _DECODE_SHAPE, _DECODE_K, quick=True))
    return cases


def _moe_cases(op: str) -> list[Case]:
    # the largest (65536 tokens, H = 4096, k = 8: 8.6 GB of float32 rows,
    # twice that with a peer's buffer) does not fit this machine
    return [
        Case(op, (T, H), k, dtype=d, experts=_MOE_EXPERTS, quick=(T, H, k) == (4096, 1024, 8))
        for d in ("float32", "bfloat16")
        for T in _MOE_TOKENS
        for H in _MOE_HIDDEN
        for k in _ROUTER_K
        if T * H * k <= 65536 * 4096 * 2
    ]


def _build_cases() -> tuple[Case, ...]:
    cases: list[Case] = []
    for op in OPS:
        if op in MOE_OPS:
            cases += _moe_cases(op)
            continue
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
                quick = n == _QUICK_EXPERTS and k in (None, max(_ROUTER_K))
                cases.append(Case(op, (_ROUTER_ROWS, n), k, quick=quick))
        cases.append(Case(op, _VOCAB_SHAPE, _VOCAB_K if op == "top_k" else None, quick=True))
        cases.append(Case(op, _TINY_SHAPE, _TINY_K if op == "top_k" else None, quick=True))
    return tuple(cases)


#: Every case, grouped by operation (router shapes, vocabulary shape, one row).
CASES: tuple[Case, ...] = _build_cases()


def select_cases(
    patterns: str | None = None, *, quick: bool = False, cases: Iterable[Case] = CASES
) -> list[Case]:
    """Cases matching any of the comma-separated ``patterns`` (all when ``None``).

    A pattern with ``*``, ``?`` or ``[`` is a case-insensitive glob on
    :attr:`Case.name` or :attr:`Case.id`; otherwise it is a case-insensitive
    substring of either. ``quick`` keeps only the cases marked ``quick``.
    """
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


def case_requirements(case: Case) -> tuple[str, ...]:
    """Optional modules needed to build the input of ``case`` at all (and so
    to time anything on it): SciPy for the sparse operations, ml_dtypes for
    bfloat16. Without them the case is skipped, never a crash."""
    need = []
    if case.op in SPARSE_OPS:
        need.append("scipy")
    if case.dtype == "bfloat16":
        need.append("ml_dtypes")
    return tuple(need)


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


def deepseek_bias(E: int) -> np.ndarray:
    """The fixed selection bias of the DeepSeek-V3 benchmark case."""
    return np.random.default_rng(7).standard_normal(E) * 0.01


def _csr_nnz(case: Case) -> int:
    # the stored entries of a case's CSR input, scaled with its shape
    # (the registry's smoke test builds tiny cases)
    return max(1, _CSR_NNZ * case.shape[0] // _CSR_SHAPE[0])


def make_input(case: Case, seed: int = 0) -> Any:
    """The input of ``case``: C-contiguous, ``case.dtype``, deterministic.

    * ``top_k``: standard normal values (router logits; ties are rare).
    * ``entropy``: ``softmax`` of normal logits with scale 2, rows sum to 1,
      so every peer works on the same normalized probabilities.
    * ``entropy_from_logits``: normal logits with scale 2.
    * ``relative_entropy`` / ``kl_from_logits``: a :class:`Pair` of those
      probabilities / logits and of the same logits plus ``N(0, 0.5^2)``
      noise (a student near its teacher).
    * ``csr_relative_entropy``: a :class:`Pair` of :func:`zipf_csr` and a
      dense background (each column's number of stored entries plus
      uniform(0, 1)).
    * ``csr_top_k``/``csr_entropy``: :func:`zipf_csr` (float32 counts-like
      values; entropy normalizes them).
    * ``cooccurrence``: Zipf(1.3) token ids modulo the vocabulary, int32.
    * routing: standard normal logits (float32 or ml_dtypes bfloat16);
      ``group_by_expert``: uniform expert ids, int32.
    """
    if case.op == "cooccurrence":  # Zipf(1.3)-distributed token ids
        rng = np.random.default_rng([seed, *case.shape])
        return ((rng.zipf(1.3, case.shape[0]) - 1) % case.shape[1]).astype(np.int32)
    if case.op == "csr_relative_entropy":  # rows against a background (column sums)
        A = zipf_csr(case.shape, _csr_nnz(case), seed, case.dtype)
        rng = np.random.default_rng([seed, *case.shape, 1])
        bg = np.bincount(A.indices, minlength=case.shape[1]) + rng.random(case.shape[1])
        return Pair(A, bg.astype(case.dtype))
    if case.op in SPARSE_OPS:
        return zipf_csr(case.shape, _csr_nnz(case), seed, case.dtype)
    if case.op == "group_by_expert":  # uniform expert ids
        rng = np.random.default_rng([seed, *case.shape, case.experts or 0])
        return rng.integers(0, case.experts, case.shape, dtype=np.int32)
    if case.op in MOE_OPS:  # a dropless routing of normal logits, normal hidden states
        return _moe_input(case, seed)
    rng = np.random.default_rng([seed, *case.shape, case.k or 0])
    z = rng.standard_normal(case.shape, dtype=np.float32)
    if case.op in ROUTE_OPS:  # standard normal router logits
        if case.dtype == "bfloat16":
            import ml_dtypes

            return z.astype(ml_dtypes.bfloat16)
        return z.astype(case.dtype, copy=False)
    dt = np.dtype(case.dtype)
    if case.op == "top_k":
        return z.astype(dt, copy=False)
    z *= 2.0
    if case.op == "entropy_from_logits":
        return z.astype(dt, copy=False)
    if case.op in PAIR_OPS:  # a student near its teacher: logits perturbed by N(0, 0.5^2)
        z2 = z + np.float32(0.5) * rng.standard_normal(case.shape, dtype=np.float32)
        if case.op == "kl_from_logits":
            return Pair(z.astype(dt, copy=False), z2.astype(dt, copy=False))
        return Pair(_softmax_rows(z).astype(dt, copy=False), _softmax_rows(z2).astype(dt))
    return _softmax_rows(z).astype(dt, copy=False)


def _moe_input(case: Case, seed: int) -> MoeInput:
    import fastroute as fr

    T, H = case.shape
    rng = np.random.default_rng([seed, T, H, case.k or 0])
    r = fr.route(rng.standard_normal((T, case.experts), dtype=np.float32), case.k)
    dt: Any = np.dtype(case.dtype) if case.dtype != "bfloat16" else _bf16()
    hidden = rng.standard_normal((T, H), dtype=np.float32).astype(dt)
    if case.op == "dispatch":
        return MoeInput(hidden, r, np.empty((r.order.size, H), dt))
    rows = fr.dispatch(hidden, r).rows  # stand-in expert outputs, in dispatch's layout
    return MoeInput(rows, r, np.empty((T, H), dt))


def _bf16() -> Any:
    import ml_dtypes

    return ml_dtypes.bfloat16


def _softmax_rows(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def input_nbytes(x: Any) -> int:
    """Bytes of an input as built by :func:`make_input` (CSR: data, indices
    and indptr; a :class:`Pair`: both)."""
    if isinstance(x, Pair):
        return input_nbytes(x.p) + input_nbytes(x.q)
    if isinstance(x, MoeInput):
        return int(x.data.nbytes)
    if hasattr(x, "indptr"):
        return int(x.data.nbytes + x.indices.nbytes + x.indptr.nbytes)
    return int(math.prod(x.shape) * x.dtype.itemsize)
