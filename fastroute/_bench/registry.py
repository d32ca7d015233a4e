"""The benchmark registry as data: per operation, who is measured and how.

One table, :data:`REGISTRY`, drives the pytest-benchmark suite (``bench/``),
``python -m fastroute bench``, the agreement checks and the tables. Each
:class:`Impl` carries the function that builds its timed callable, so adding
a peer is one entry, and an unknown operation or implementation is an error.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import floors as F
from . import peers as P
from .cases import COOC_WINDOW, OPS, Case, deepseek_bias

__all__ = ["Impl", "Op", "REGISTRY", "ROLES", "impls", "get_impl", "make_callable",
           "missing_requirements", "missing_modules", "install_hint",
           "check_agreement"]  # fmt: skip

#: Roles, in the order of measurement: fastroute first, then the floors
#: (timed before any peer starts its own thread pool), then the peers.
ROLES = ("fastroute", "read_floor", "compute_floor", "peer")

Maker = Callable[[Case, Any], Callable[[], Any]]


def _np(v: Any) -> Any:
    """A result as NumPy arrays (torch tensors, JAX arrays, tuples of them)."""
    if isinstance(v, tuple):
        return tuple(_np(u) for u in v)
    if hasattr(v, "detach"):  # torch
        v = v.detach().cpu()
        if str(v.dtype) == "torch.bfloat16":
            v = v.float()
        return v.numpy()
    if type(v).__module__.startswith(("jax", "jaxlib")):
        return np.asarray(v)
    return v


@dataclass(frozen=True)
class Impl:
    """One implementation measured for an operation.

    ``make(case, x)`` returns the zero-argument callable that is timed (any
    conversion, such as ``torch.from_numpy``, happens in ``make``);
    ``result`` turns what it returns into the operation's comparable form.
    """

    key: str
    label: str
    role: str
    call: str
    make: Maker
    requires: tuple[str, ...] = ()
    result: Callable[[Any], Any] = _np


@dataclass(frozen=True)
class Op:
    """An operation: its implementations and how to compare their results.

    ``compare(case, x, reference, result)`` gets the comparable forms of
    fastroute's and a peer's result and returns ``None`` when they agree,
    else a one-line description of the difference.
    """

    name: str
    impls: tuple[Impl, ...]
    compare: Callable[[Case, Any, Any, Any], str | None]


# --------------------------------------------------------------------------- comparisons


def _same_top_k(case: Case, x: Any, ref: Any, got: Any) -> str | None:
    vals, idx = (np.asarray(a) for a in got)
    if vals.shape != ref[0].shape:
        return f"shape {vals.shape} != fastroute's {ref[0].shape}"
    bad = int(np.count_nonzero(vals != ref[0]))
    if bad:
        return f"{bad} top-k values differ from fastroute"
    if isinstance(x, np.ndarray):  # the indices must point at those values
        wrong = int(np.count_nonzero(np.take_along_axis(x, idx.astype(np.intp), 1) != vals))
        if wrong:
            return f"{wrong} top-k indices do not point at their values"
    return None


def _close_entropies(case: Case, x: Any, ref: Any, got: Any) -> str | None:
    got = np.asarray(got, np.float64)
    if got.shape != ref.shape:
        return f"shape {got.shape} != fastroute's {ref.shape}"
    if np.allclose(got, ref, rtol=1e-3, atol=1e-4):
        return None
    return f"entropies differ from fastroute by up to {float(np.max(np.abs(got - ref))):.3g}"


def _same_csr(case: Case, x: Any, ref: Any, got: Any) -> str | None:
    for name in ("indptr", "indices", "data"):
        a, b = getattr(ref, name), getattr(got, name)
        if a.shape != b.shape or not np.array_equal(a, b):
            return f"the CSR {name} differ from fastroute's"
    return None


def _same_grouping(case: Case, x: Any, ref: Any, got: Any) -> str | None:
    for name, a, b in zip(("order", "offsets"), ref, got, strict=True):
        if not np.array_equal(np.asarray(a), np.asarray(b)):
            return f"{name} differ from fastroute's"
    return None


def _routing_dict(r: Any) -> dict[str, Any]:
    # fastroute's Routing as the comparable form
    d = {"experts": r.experts, "weights": r.weights, "order": r.order, "offsets": r.offsets}
    if r.aux_loss is not None:
        d.update(aux=r.aux_loss, z=r.z_loss, entropy=r.entropy)
    return d


def _peer_routing(v: Any) -> dict[str, Any]:
    v = _np(v)
    d = dict(
        zip(("experts", "weights", "order", "offsets", "aux", "z", "entropy"), v, strict=False)
    )
    for name in ("aux", "z"):
        if name in d:
            d[name] = float(d[name])
    return d


def _same_routing(case: Case, x: Any, ref: Any, got: Any) -> str | None:
    """Experts and weights per token, the grouping (the tokens of each
    expert's segment, and the offsets) and the statistics.

    A token agrees when its weights agree (sorted, to float32 accuracy) and
    its experts are the same set, or differ only among experts with equal
    logits (a tie broken the other way: fastroute takes the lower id, peers
    leave it unspecified; frequent with bfloat16 logits). Up to 1 token in
    1000 may disagree otherwise (a near-tie of float32 scores). Tokens whose
    experts differ are left out of the grouping comparison.
    """
    e_ref, e_got = np.asarray(ref["experts"], np.int64), np.asarray(got["experts"], np.int64)
    if e_ref.shape != e_got.shape:
        return f"experts of shape {e_got.shape} != fastroute's {e_ref.shape}"
    T, k = e_ref.shape
    w_ref = np.sort(np.asarray(ref["weights"], np.float64), 1)
    w_got = np.sort(np.asarray(got["weights"], np.float64), 1)
    values = np.isclose(w_got, w_ref, rtol=1e-4, atol=1e-6).all(1)
    same = (np.sort(e_ref, 1) == np.sort(e_got, 1)).all(1)
    z = np.asarray(x, np.float32)
    tie = np.sort(np.take_along_axis(z, e_ref, 1), 1) == np.sort(np.take_along_axis(z, e_got, 1), 1)
    bad = T - int(np.count_nonzero(values & (same | tie.all(1))))
    if bad > T // 1000:
        return f"the experts or weights of {bad} of {T} tokens differ from fastroute's"
    if "order" in ref and "order" in got and k:
        good = same & values
        tr, tg = np.asarray(ref["order"]) // k, np.asarray(got["order"]) // k
        if not np.array_equal(tr[good[tr]], tg[good[tg]]):
            return "the grouping by expert (order) differs from fastroute's"
        off = np.abs(np.asarray(ref["offsets"], np.int64) - np.asarray(got["offsets"], np.int64))
        if off.max(initial=0) > k * (T - int(np.count_nonzero(good))):
            return "the expert offsets differ from fastroute's"
    moved = (T - int(np.count_nonzero(same))) / max(T, 1)  # aux depends on the chosen experts
    for name, rtol in (("aux", 1e-4 + moved), ("z", 1e-4)):
        if name in ref and name in got and not np.isclose(got[name], ref[name], rtol=rtol):
            return f"{name} loss {got[name]:.6g} != fastroute's {ref[name]:.6g}"
    if "entropy" in ref and "entropy" in got:
        h_ref, h_got = np.asarray(ref["entropy"], np.float64), np.asarray(got["entropy"])
        if not np.allclose(h_got, h_ref, rtol=1e-4, atol=1e-5):
            return "the per-token routing entropies differ from fastroute's"
    return None


def _same_expert_choice(case: Case, x: Any, ref: Any, got: Any) -> str | None:
    t_ref, w_ref = (np.asarray(a) for a in ref)
    t_got, w_got = (np.asarray(a) for a in got)
    if t_ref.shape != t_got.shape:
        return f"tokens of shape {t_got.shape} != fastroute's {t_ref.shape}"
    if not np.allclose(w_got, w_ref, rtol=1e-5, atol=1e-7):
        return "the chosen scores differ from fastroute's"
    bad = int(np.count_nonzero(np.sort(t_ref, 1) != np.sort(t_got, 1)))
    if bad > t_ref.size // 1000:  # near-ties of float32 scores may go either way
        return f"{bad} chosen tokens differ from fastroute's"
    return None


# --------------------------------------------------------------------------- makers


def _fr() -> Any:
    import fastroute

    return fastroute


def _torch_maker(recipe: Callable[[Any, Any, Case], Any]) -> Maker:
    def make(case: Case, x: Any) -> Callable[[], Any]:
        torch = P.torch_module()
        t = P.torch_tensor(torch, x)
        return lambda: recipe(torch, t, case)

    return make


def _jax_maker(build: Callable[[Any, Case], Any]) -> Maker:
    def make(case: Case, x: Any) -> Callable[[], Any]:
        jax = P.jax_module()
        fn = build(jax, case)
        xj = jax.device_put(x)
        jax.block_until_ready(fn(xj))  # compile outside the timed call
        return lambda: jax.block_until_ready(fn(xj))

    return make


def _torch_pair_maker(recipe: Callable[[Any, Any, Any], Any]) -> Maker:
    def make(case: Case, x: Any) -> Callable[[], Any]:
        torch = P.torch_module()
        p, q = P.torch_tensor(torch, x.p), P.torch_tensor(torch, x.q)
        return lambda: recipe(torch, p, q)

    return make


def _jax_pair_maker(build: Callable[[Any], Any]) -> Maker:
    def make(case: Case, x: Any) -> Callable[[], Any]:
        jax = P.jax_module()
        fn = build(jax)
        p, q = jax.device_put(x.p), jax.device_put(x.q)
        jax.block_until_ready(fn(p, q))  # compile outside the timed call
        return lambda: jax.block_until_ready(fn(p, q))

    return make


def _read_pair(*names: str) -> Maker:
    # the read floor over both inputs (of a sparse p: the arrays named)
    def make(case: Case, x: Any) -> Callable[[], Any]:
        arrays = [getattr(x.p, n) for n in names] if names else [x.p]
        return lambda: F.read_floor(*arrays, x.q)

    return make


def _read(*names: str) -> Maker:
    # the read floor over the arrays a kernel reads (a dense input: itself)
    def make(case: Case, x: Any) -> Callable[[], Any]:
        arrays = [getattr(x, n) for n in names] if names else [x]
        return lambda: F.read_floor(*arrays)

    return make


def _impl_fastroute(call: str, make: Maker, result: Callable[[Any], Any] = _np,
                    requires: tuple[str, ...] = ()) -> Impl:  # fmt: skip
    return Impl("fastroute", "fastroute", "fastroute", call, make, requires, result)


_READ = Impl(
    "read_floor", "read floor", "read_floor",
    "parallel fastmath sum over the bytes the kernel reads (numba prange)", _read(),
)  # fmt: skip
_SOFTMAX_FLOOR = Impl(
    "compute_floor", "compute floor", "compute_floor",
    "per row: max, then Σ exp(z - max) with a vectorized float32 exp (numba prange, fastmath)",
    lambda case, x: lambda: F.softmax_floor(x),
)  # fmt: skip
_TORCH = ("torch",)
_JAX = ("jax",)


def _memory(case: Case, x: Any) -> Callable[[], Any]:
    # the bytes dispatch/combine move: read the grouped rows' bytes (dispatch
    # gathers as many as it writes), write the output's
    T, H = case.shape
    words = -(-x.routing.order.size * H * x.data.dtype.itemsize // 8)  # 8-byte words
    read = np.ones(words, np.uint64)
    write = np.empty(-(-int(np.prod(x.out.shape)) * x.out.dtype.itemsize // 8), np.uint64)
    return lambda: F.memory_floor(read, write)


_MEMORY = Impl(
    "read_floor", "memory floor", "read_floor",
    "parallel sum over the bytes read + parallel fill of the bytes written, each once "
    "(numba prange)", _memory,
)  # fmt: skip


def _torch_dispatch(case: Case, x: Any) -> Callable[[], Any]:
    torch = P.torch_module()
    h, out = P.torch_tensor(torch, x.data), P.torch_tensor(torch, x.out)
    rows_of = torch.from_numpy(x.routing.order // case.k)
    return lambda: P.torch_dispatch(torch, h, rows_of, out)


def _torch_combine(buffer: bool) -> Maker:
    def make(case: Case, x: Any) -> Callable[[], Any]:
        torch = P.torch_module()
        r, k = x.routing, case.k
        y, out = P.torch_tensor(torch, x.data), P.torch_tensor(torch, x.out)
        w = torch.from_numpy(np.ascontiguousarray(r.weights.reshape(-1)[r.order])).to(y.dtype)
        if buffer:
            slot = torch.from_numpy(r.order)
            buf = torch.empty((r.weights.size, y.shape[1]), dtype=y.dtype)
            T = case.shape[0]
            return lambda: P.torch_combine_buffer(torch, y, slot, w, buf, T, k)
        token_of = torch.from_numpy(r.order // k)
        return lambda: P.torch_combine_index_add(torch, y, token_of, w, out)

    return make


def _as_f32(a: Any) -> np.ndarray:
    a = np.asarray(a)
    return a.astype(np.float32) if a.dtype.itemsize == 2 else a


def _same_rows(case: Case, x: Any, ref: Any, got: Any) -> str | None:
    ref, got = _as_f32(ref), _as_f32(got)
    if ref.shape != got.shape:
        return f"shape {got.shape}, expected {ref.shape}"
    return None if np.array_equal(ref, got) else "different rows"


def _close_rows(case: Case, x: Any, ref: Any, got: Any) -> str | None:
    # torch accumulates in the rows' dtype (bfloat16: 8 bits), fastroute in float32
    ref, got = _as_f32(ref), _as_f32(got)
    if ref.shape != got.shape:
        return f"shape {got.shape}, expected {ref.shape}"
    tol = 3e-2 if case.dtype == "bfloat16" else 1e-5
    err = float(np.max(np.abs(ref - got) / (np.abs(ref) + 1.0), initial=0.0))
    return None if err <= tol else f"relative difference {err:.3g} > {tol}"


_SCIPY = ("scipy",)


def _route_op(name: str, stats: bool) -> Op:
    def make(case: Case, x: Any) -> Callable[[], Any]:
        fr = _fr()
        return lambda: fr.route(x, case.k, stats=stats)

    peers = [
        Impl(
            "torch.pipeline+stats" if stats else "torch.pipeline",
            "torch pipeline+stats" if stats else "torch pipeline",
            "peer",
            "softmax(dtype=float32) -> topk -> w / w.sum -> argsort(stable=True), offsets by "
            "bincount" + ("; aux loss, z-loss, entr(p).sum(-1)" if stats else ""),
            _torch_maker(
                (lambda torch, t, c: P.torch_route_stats(torch, t, c.k))
                if stats
                else (lambda torch, t, c: P.torch_route(torch, t, c.k))
            ),
            _TORCH,
            _peer_routing,
        )
    ]
    if not stats:
        peers.append(
            Impl(
                "jax.pipeline",
                "JAX pipeline",
                "peer",
                "jax.jit: softmax -> lax.top_k -> w / w.sum -> argsort(stable=True), "
                "offsets by bincount",
                _jax_maker(lambda jax, c: P.jax_route(jax, c.k, c.shape[1])),
                _JAX,
                _peer_routing,
            )  # fmt: skip
        )
    call = f"fastroute.route(x, k, stats={stats})"
    return Op(
        name,
        (_impl_fastroute(call, make, _routing_dict), _READ, _SOFTMAX_FLOOR, *peers),
        _same_routing,
    )


def _build() -> dict[str, Op]:
    ops: dict[str, Op] = {}
    ops["top_k"] = Op(
        "top_k",
        (
            _impl_fastroute("fastroute.top_k(x, k)", lambda c, x: lambda: _fr().top_k(x, c.k)),
            _READ,
            Impl("numpy", "numpy", "peer",
                 "np.argpartition + np.take_along_axis + stable argsort of the k values",
                 lambda c, x: lambda: P.numpy_top_k(x, c.k)),
            Impl("torch.topk", "torch.topk", "peer", "torch.topk(t, k, dim=1)",
                 _torch_maker(lambda torch, t, c: torch.topk(t, c.k, dim=1)), _TORCH),
            Impl("jax.top_k", "jax.lax.top_k", "peer", "jax.jit(lambda x: lax.top_k(x, k))",
                 _jax_maker(lambda jax, c: P.jax_top_k(jax, c.k)), _JAX),
        ),
        _same_top_k,
    )  # fmt: skip
    ops["entropy"] = Op(
        "entropy",
        (
            _impl_fastroute("fastroute.entropy(p)", lambda c, x: lambda: _fr().entropy(x)),
            _READ,
            Impl("compute_floor", "compute floor", "compute_floor",
                 "-Σ p log p over all entries with a vectorized float32 log "
                 "(numba prange, fastmath; rows ignored)",
                 lambda c, x: lambda: F.entropy_floor(x)),
            Impl("scipy.stats", "scipy.stats.entropy", "peer", "scipy.stats.entropy(p, axis=1)",
                 lambda c, x: _scipy_entropy(x), _SCIPY),
            Impl("scipy.entr", "scipy.special.entr", "peer", "scipy.special.entr(p).sum(1)",
                 lambda c, x: _scipy_entr(x), _SCIPY),
            Impl("torch.entr", "torch.special.entr", "peer", "torch.special.entr(t).sum(1)",
                 _torch_maker(lambda torch, t, c: torch.special.entr(t).sum(1)), _TORCH),
            Impl("jax.entr", "JAX entr", "peer", "jax.jit(lambda p: entr(p).sum(1))",
                 _jax_maker(lambda jax, c: P.jax_entropy(jax)), _JAX),
        ),
        _close_entropies,
    )  # fmt: skip
    ops["entropy_from_logits"] = Op(
        "entropy_from_logits",
        (
            _impl_fastroute("fastroute.entropy_from_logits(z)",
                            lambda c, x: lambda: _fr().entropy_from_logits(x)),
            _READ,
            _SOFTMAX_FLOOR,
            Impl("scipy.log_softmax", "scipy log_softmax", "peer",
                 "ls = scipy.special.log_softmax(z, axis=1); -(np.exp(ls) * ls).sum(1)",
                 lambda c, x: lambda: P.scipy_log_softmax_entropy(x), _SCIPY),
            Impl("torch.Categorical", "torch Categorical", "peer",
                 "torch.distributions.Categorical(logits=t).entropy()",
                 _torch_maker(lambda torch, t, c:
                              torch.distributions.Categorical(logits=t).entropy()), _TORCH),
            Impl("jax.softmax", "JAX softmax", "peer",
                 "jax.jit(lambda z: -(softmax(z) * log_softmax(z)).sum(1))",
                 _jax_maker(lambda jax, c: P.jax_entropy_from_logits(jax)), _JAX),
        ),
        _close_entropies,
    )  # fmt: skip
    ops["relative_entropy"] = Op(
        "relative_entropy",
        (
            _impl_fastroute("fastroute.relative_entropy(p, q)",
                            lambda c, x: lambda: _fr().relative_entropy(x.p, x.q)),
            Impl("read_floor", "read floor", "read_floor",
                 "parallel fastmath sum over p and q (numba prange)", _read_pair()),
            Impl("compute_floor", "compute floor", "compute_floor",
                 "Σ p log(p / q) over all pairs with a vectorized float32 log "
                 "(numba prange, fastmath; rows ignored)",
                 lambda c, x: lambda: F.kl_floor(x.p, x.q)),
            Impl("scipy.stats", "scipy.stats.entropy", "peer",
                 "scipy.stats.entropy(p, q, axis=1)",
                 lambda c, x: _scipy_relative_entropy(x), _SCIPY),
            Impl("scipy.rel_entr", "scipy.special.rel_entr", "peer",
                 "scipy.special.rel_entr(p, q).sum(1)",
                 lambda c, x: _scipy_rel_entr(x), _SCIPY),
            Impl("torch.kl_div", "torch kl_div", "peer",
                 'torch.nn.functional.kl_div(q.log(), p, reduction="none").sum(1)',
                 _torch_pair_maker(P.torch_kl_div), _TORCH),
            Impl("jax.rel_entr", "JAX rel_entr", "peer", "jax.jit(lambda p, q: rel_entr(p, q).sum(1))",
                 _jax_pair_maker(P.jax_rel_entr), _JAX),
        ),
        _close_entropies,
    )  # fmt: skip
    ops["kl_from_logits"] = Op(
        "kl_from_logits",
        (
            _impl_fastroute("fastroute.kl_from_logits(z_p, z_q)",
                            lambda c, x: lambda: _fr().kl_from_logits(x.p, x.q)),
            Impl("read_floor", "read floor", "read_floor",
                 "parallel fastmath sum over z_p and z_q (numba prange)", _read_pair()),
            Impl("compute_floor", "compute floor", "compute_floor",
                 "per row of z_p and of z_q: max, then Σ exp(z - max) with a vectorized "
                 "float32 exp (numba prange, fastmath)",
                 lambda c, x: lambda: (F.softmax_floor(x.p), F.softmax_floor(x.q))),
            Impl("scipy.log_softmax", "scipy log_softmax", "peer",
                 "lp, lq = log_softmax(z_p, 1), log_softmax(z_q, 1); (np.exp(lp) * (lp - lq)).sum(1)",
                 lambda c, x: lambda: P.scipy_kl_from_logits(x.p, x.q), _SCIPY),
            Impl("torch.kl_div", "torch log_softmax+kl_div", "peer",
                 "kl_div(log_softmax(z_q, 1), log_softmax(z_p, 1), reduction='none', "
                 "log_target=True).sum(1)",
                 _torch_pair_maker(P.torch_kl_from_logits), _TORCH),
            Impl("jax.log_softmax", "JAX log_softmax", "peer",
                 "jax.jit: (softmax(z_p) * (log_softmax(z_p) - log_softmax(z_q))).sum(1)",
                 _jax_pair_maker(P.jax_kl_from_logits), _JAX),
        ),
        _close_entropies,
    )  # fmt: skip
    ops["csr_top_k"] = Op(
        "csr_top_k",
        (
            _impl_fastroute("fastroute.top_k(A, k, explicit=True)",
                            lambda c, x: lambda: _fr().top_k(x, c.k, explicit=True),
                            requires=_SCIPY),
            Impl("read_floor", "read floor", "read_floor",
                 "parallel fastmath sum over A.data, A.indices and A.indptr",
                 _read("data", "indices", "indptr")),
            Impl("python.argpartition", "Python loop", "peer",
                 "for each row: np.argpartition(-row, k - 1)[:k], then a stable sort of the k",
                 lambda c, x: lambda: P.python_csr_top_k(x, c.k), _SCIPY),
        ),
        _same_top_k,
    )  # fmt: skip
    ops["csr_entropy"] = Op(
        "csr_entropy",
        (
            _impl_fastroute("fastroute.entropy(A)", lambda c, x: lambda: _fr().entropy(x),
                            requires=_SCIPY),
            Impl("read_floor", "read floor", "read_floor",
                 "parallel fastmath sum over A.data and A.indptr", _read("data", "indptr")),
            Impl("compute_floor", "compute floor", "compute_floor",
                 "-Σ x log x over A.data with a vectorized float32 log, and a read of A.indptr",
                 lambda c, x: lambda: F.csr_entropy_floor(x)),
            Impl("scipy.reduceat", "entr + reduceat", "peer",
                 "p = A.data / np.repeat(row sums, row lengths); "
                 "np.add.reduceat(scipy.special.entr(p), A.indptr[:-1])",
                 lambda c, x: lambda: P.scipy_csr_entropy(x), _SCIPY),
        ),
        _close_entropies,
    )  # fmt: skip
    ops["csr_relative_entropy"] = Op(
        "csr_relative_entropy",
        (
            _impl_fastroute("fastroute.relative_entropy(A, q)",
                            lambda c, x: lambda: _fr().relative_entropy(x.p, x.q),
                            requires=_SCIPY),
            Impl("read_floor", "read floor", "read_floor",
                 "parallel fastmath sum over A.data, A.indices, A.indptr and q",
                 _read_pair("data", "indices", "indptr")),
            Impl("compute_floor", "compute floor", "compute_floor",
                 "Σ x log(x / q[j]) over A.data (j its column) with a vectorized float32 log, "
                 "and a read of A.indptr",
                 lambda c, x: lambda: F.csr_kl_floor(x.p, x.q)),
            Impl("scipy.reduceat", "rel_entr + reduceat", "peer",
                 "p = A.data / np.repeat(row sums, row lengths); "
                 "np.add.reduceat(rel_entr(p, q[A.indices] / q.sum()), A.indptr[:-1])",
                 lambda c, x: lambda: P.scipy_csr_relative_entropy(x.p, x.q), _SCIPY),
        ),
        _close_entropies,
    )  # fmt: skip
    ops["cooccurrence"] = Op(
        "cooccurrence",
        (
            _impl_fastroute(f"fastroute.cooccurrence(tokens, V, window={COOC_WINDOW})",
                            lambda c, x: lambda: _fr().cooccurrence(x, c.shape[1],
                                                                    window=COOC_WINDOW),
                            requires=_SCIPY),
            _READ,
            Impl("scipy.coo", "NumPy + coo_matrix", "peer",
                 "pair arrays (np.concatenate of shifted slices, both directions) -> "
                 "coo_matrix((ones, (i, j))) -> tocsr()",
                 lambda c, x: lambda: P.scipy_cooccurrence(x, c.shape[1], COOC_WINDOW), _SCIPY),
        ),
        _same_csr,
    )  # fmt: skip
    ops["route"] = _route_op("route", stats=False)
    ops["route_stats"] = _route_op("route_stats", stats=True)
    ops["route_select"] = Op(
        "route_select",
        (
            _impl_fastroute("the routing kernel alone: experts and weights (no grouping, "
                            "no statistics)", _select_only, _peer_routing),
            _READ,
            _SOFTMAX_FLOOR,
            Impl("torch.select", "torch softmax+topk", "peer",
                 "softmax(dtype=float32) -> topk -> w / w.sum",
                 _torch_maker(lambda torch, t, c: P.torch_route(torch, t, c.k, group=False)),
                 _TORCH, _peer_routing),
        ),
        _same_routing,
    )  # fmt: skip
    ops["deepseek"] = Op(
        "deepseek",
        (
            _impl_fastroute("fastroute.route(x, 8, scoring='sigmoid', bias=b, n_groups=8, "
                            "topk_groups=4, group_score='top2', scale=2.5, stats=False)",
                            _deepseek, _routing_dict),
            _READ,
            _SOFTMAX_FLOOR,
            Impl("torch.deepseek", "torch DeepSeek-V3", "peer",
                 "sigmoid -> + bias -> group top-2 sums -> topk groups -> mask (-inf) -> topk "
                 "-> gather -> w / w.sum * 2.5 -> argsort(stable=True), offsets by bincount",
                 _torch_maker(lambda torch, t, c: P.torch_deepseek(
                     torch, t, c.k,
                     torch.from_numpy(deepseek_bias(c.shape[1]).astype(np.float32)))),
                 _TORCH, _peer_routing),
        ),
        _same_routing,
    )  # fmt: skip
    ops["expert_choice"] = Op(
        "expert_choice",
        (
            _impl_fastroute("fastroute.expert_choice(x, C)",
                            lambda c, x: lambda: _fr().expert_choice(x, c.k),
                            lambda r: (r.tokens, r.weights)),
            _READ,
            _SOFTMAX_FLOOR,
            Impl("torch.expert_choice", "torch softmax+topk(dim=0)", "peer",
                 "softmax(dtype=float32) -> topk(C, dim=0) (each expert's C best tokens)",
                 _torch_maker(lambda torch, t, c: P.torch_expert_choice(torch, t, c.k)), _TORCH),
        ),
        _same_expert_choice,
    )  # fmt: skip
    ops["group_by_expert"] = Op(
        "group_by_expert",
        (
            _impl_fastroute("fastroute.group_by_expert(e, E)",
                            lambda c, x: lambda: _fr().group_by_expert(x, c.experts),
                            lambda g: (g.order, g.offsets)),
            _READ,
            Impl("numpy.argsort", "argsort + bincount", "peer",
                 "np.argsort(e.ravel(), kind='stable'), np.bincount(e.ravel(), minlength=E)",
                 lambda c, x: lambda: P.numpy_group_by_expert(x, c.experts)),
        ),
        _same_grouping,
    )  # fmt: skip
    ops["dispatch"] = Op(
        "dispatch",
        (
            _impl_fastroute(
                "fastroute.dispatch(hidden, routing, out=rows)",
                lambda c, x: lambda: _fr().dispatch(x.data, x.routing, out=x.out),
                lambda d: _np(d.rows),
            ),
            _MEMORY,
            Impl(
                "torch.index_select",
                "torch index_select",
                "peer",
                "torch.index_select(hidden, 0, order // k, out=rows)",
                _torch_dispatch,
                _TORCH,
            ),
        ),
        _same_rows,
    )
    ops["combine"] = Op(
        "combine",
        (
            _impl_fastroute("fastroute.combine(expert_out, routing, out=out)",
                            lambda c, x: lambda: _fr().combine(x.data, x.routing, out=x.out)),
            _MEMORY,
            Impl("torch.index_add_", "torch index_add_", "peer",
                 "out.zero_(); out.index_add_(0, order // k, rows * w[:, None])",
                 _torch_combine(buffer=False), _TORCH),
            Impl("torch.slot_buffer", "torch (T·k, H) buffer + sum", "peer",
                 "buf.zero_(); buf.index_copy_(0, order, rows * w[:, None]); "
                 "buf.view(T, k, H).sum(1)", _torch_combine(buffer=True), _TORCH),
        ),
        _close_rows,
    )  # fmt: skip
    missing = set(OPS) ^ set(ops)
    if missing:  # pragma: no cover - a registry edit gone wrong
        raise RuntimeError(f"registry and OPS disagree on {sorted(missing)}")
    return ops


def _scipy_entropy(x: np.ndarray) -> Callable[[], Any]:
    from scipy.stats import entropy

    return lambda: entropy(x, axis=1)


def _scipy_relative_entropy(x: Any) -> Callable[[], Any]:
    from scipy.stats import entropy

    return lambda: entropy(x.p, x.q, axis=1)


def _scipy_rel_entr(x: Any) -> Callable[[], Any]:
    from scipy.special import rel_entr

    return lambda: rel_entr(x.p, x.q).sum(1)


def _scipy_entr(x: np.ndarray) -> Callable[[], Any]:
    from scipy.special import entr

    return lambda: entr(x).sum(1)


def _select_only(case: Case, x: Any) -> Callable[[], Any]:
    from ..routing import prepare, route_pass

    a, out, bias, config, opts, _, _ = prepare(x, case.k, stats=False)
    return lambda: route_pass(a, out, bias, config, opts)[:2]


def _deepseek(case: Case, x: Any) -> Callable[[], Any]:
    fr = _fr()
    b = deepseek_bias(case.shape[1])
    return lambda: fr.route(
        x, case.k, scoring="sigmoid", bias=b, n_groups=8, topk_groups=4,
        group_score="top2", scale=2.5, stats=False,
    )  # fmt: skip


#: Every operation's implementations and comparison, keyed by operation name.
REGISTRY: dict[str, Op] = _build()


def impls(op: str) -> tuple[Impl, ...]:
    """fastroute, the floors, then the peers of ``op``, in the order of measurement.

    The floors are timed right after fastroute, before any peer has started
    its own thread pool (PyTorch's OpenMP threads may keep spinning for a
    while after a call).
    """
    try:
        return REGISTRY[op].impls
    except KeyError:
        raise ValueError(f"unknown operation {op!r}; expected one of {', '.join(OPS)}") from None


def get_impl(op: str, key: str) -> Impl:
    """The implementation ``key`` of ``op``; ``ValueError`` if there is none."""
    for impl in impls(op):
        if impl.key == key:
            return impl
    keys = ", ".join(i.key for i in impls(op))
    raise ValueError(f"{op} has no implementation {key!r}; expected one of {keys}")


def missing_modules(names: Iterable[str]) -> list[str]:
    """The modules of ``names`` that are not installed (found without
    importing them: importing PyTorch or JAX takes seconds)."""
    out = []
    for m in names:
        try:
            found = importlib.util.find_spec(m) is not None
        except (ImportError, ValueError):  # a parent package missing, or a broken entry
            found = False
        if not found:
            out.append(m)
    return out


def missing_requirements(impl: Impl) -> list[str]:
    """Modules ``impl`` needs that are not installed (checked without importing them)."""
    return missing_modules(impl.requires)


#: What to install for each optional module the benchmark can use.
_PIP = {"scipy": "scipy", "ml_dtypes": "ml_dtypes", "torch": "torch", "jax": "jax",
        "matplotlib": "matplotlib"}  # fmt: skip


def install_hint(modules: Iterable[str]) -> str:
    """``"pip install scipy ml_dtypes"`` for the missing ``modules``."""
    return "pip install " + " ".join(_PIP.get(m, m) for m in modules)


def make_callable(case: Case, impl: Impl, x: Any) -> Callable[[], Any]:
    """The zero-argument callable timing ``impl`` on input ``x`` of ``case``.

    Raises :class:`ModuleNotFoundError` when a peer's library is missing.
    """
    return impl.make(case, x)


def check_agreement(case: Case, impl: Impl, x: Any, reference: Any, result: Any) -> str | None:
    """``None`` when a peer's ``result`` agrees with fastroute's ``reference``
    (both raw return values); else a one-line description naming the peer.
    Floors compute something else and are not compared."""
    if impl.role != "peer":
        return None
    fastroute = impls(case.op)[0]
    diff = REGISTRY[case.op].compare(case, x, fastroute.result(reference), impl.result(result))
    return None if diff is None else f"{impl.label}: {diff}"
