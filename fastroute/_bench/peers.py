"""Peer recipes: how NumPy, SciPy, PyTorch and JAX users compute the same things.

Each function is the usual way to get the result in that library, written
once here so the benchmarks, the agreement checks and the documentation
(``bench/README.md``) name the same code. PyTorch and JAX are optional and
imported only by the functions that need them.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numba
import numpy as np

__all__ = [
    "numpy_top_k",
    "python_csr_top_k",
    "scipy_csr_entropy",
    "scipy_log_softmax_entropy",
    "scipy_kl_from_logits",
    "scipy_csr_relative_entropy",
    "torch_kl_div",
    "torch_kl_from_logits",
    "jax_rel_entr",
    "jax_kl_from_logits",
    "scipy_cooccurrence",
    "numpy_group_by_expert",
    "torch_module",
    "torch_tensor",
    "torch_route",
    "torch_route_stats",
    "torch_deepseek",
    "torch_expert_choice",
    "jax_module",
    "jax_entropy",
    "jax_entropy_from_logits",
    "jax_top_k",
    "jax_route",
    "torch_dispatch",
    "torch_combine_index_add",
    "torch_combine_buffer",
]

# --------------------------------------------------------------------------- NumPy / SciPy


def numpy_top_k(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The usual NumPy top-k recipe along axis 1, values descending.

    ``np.argpartition`` puts the ``k`` largest last, ``np.take_along_axis``
    gathers them, and a stable ``argsort`` of the negated ``k`` values orders
    them descending. Ties stay in partition order (not index order) and NaN
    counts as largest.
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
        part = np.argpartition(-seg, k - 1)[:k] if m > k else np.arange(m)
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


def scipy_log_softmax_entropy(z: np.ndarray) -> np.ndarray:
    """``-Σ softmax(z) · log_softmax(z)`` per row with ``scipy.special.log_softmax``."""
    from scipy.special import log_softmax

    ls = log_softmax(z, axis=1)
    return -(np.exp(ls) * ls).sum(1)


def scipy_kl_from_logits(zp: np.ndarray, zq: np.ndarray) -> np.ndarray:
    """``Σ softmax(zp) · (log_softmax(zp) - log_softmax(zq))`` per row (SciPy)."""
    from scipy.special import log_softmax

    lp = log_softmax(zp, axis=1)
    return (np.exp(lp) * (lp - log_softmax(zq, axis=1))).sum(1)


def scipy_csr_relative_entropy(A: Any, q: np.ndarray) -> np.ndarray:
    """``D(P_r || Q)`` of the rows of a CSR matrix without empty rows against
    the background ``q``: ``scipy.special.rel_entr`` of the normalized stored
    values and ``q`` at their columns, summed per row with ``np.add.reduceat``
    (entries ``p = 0`` contribute 0, so the stored ones are all there is)."""
    from scipy.special import rel_entr

    starts = A.indptr[:-1]
    sums = np.add.reduceat(A.data, starts)
    p = A.data / np.repeat(sums, np.diff(A.indptr))
    return np.add.reduceat(rel_entr(p, q[A.indices] / q.sum()), starts)


def scipy_cooccurrence(tokens: np.ndarray, vocab: int, window: int) -> Any:
    """The NumPy/SciPy baseline: all pairs as arrays, ``coo_matrix``, ``tocsr()``."""
    import scipy.sparse as sp

    rows = [tokens[:-d] for d in range(1, window + 1)]
    cols = [tokens[d:] for d in range(1, window + 1)]
    i = np.concatenate(rows + cols)
    j = np.concatenate(cols + rows)
    C = sp.coo_matrix((np.ones(i.size, np.int64), (i, j)), shape=(vocab, vocab))
    return C.tocsr()


def numpy_group_by_expert(e: np.ndarray, E: int) -> tuple[np.ndarray, np.ndarray]:
    """The NumPy recipe: a stable argsort of the flat ids, offsets by bincount."""
    flat = e.reshape(-1)
    order = np.argsort(flat, kind="stable")
    offsets = np.zeros(E + 1, np.int64)
    np.cumsum(np.bincount(flat, minlength=E), out=offsets[1:])
    return order, offsets


# --------------------------------------------------------------------------- PyTorch


def torch_module() -> Any:
    """Import torch and give it the same number of threads as Numba."""
    import torch

    n = numba.get_num_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return torch


def torch_tensor(torch: Any, x: np.ndarray) -> Any:
    """``x`` as a CPU tensor sharing its memory (bfloat16: a view of the bits)."""
    if x.dtype.name == "bfloat16":
        return torch.from_numpy(x.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(x)


def _torch_group(torch: Any, e: Any, E: int) -> tuple[Any, Any]:
    # grouping permutation by a stable argsort, segment offsets from bincount
    flat = e.reshape(-1)
    counts = torch.bincount(flat, minlength=E)
    offsets = torch.zeros(E + 1, dtype=torch.int64)
    torch.cumsum(counts, 0, out=offsets[1:])
    return torch.argsort(flat, stable=True), offsets


def torch_route(torch: Any, t: Any, k: int, group: bool = True) -> tuple[Any, ...]:
    """The usual PyTorch router (HF Mixtral/Qwen-MoE) on the CPU: float32
    softmax, topk, renormalize; with ``group``, the grouping permutation by a
    stable ``argsort`` and the expert offsets from ``bincount``."""
    p = torch.softmax(t, dim=-1, dtype=torch.float32)
    w, e = torch.topk(p, k, dim=-1)
    w = w / w.sum(-1, keepdim=True)
    if not group:
        return e, w
    return (e, w, *_torch_group(torch, e, t.shape[1]))


def torch_route_stats(torch: Any, t: Any, k: int) -> tuple[Any, ...]:
    """:func:`torch_route` plus the statistics of Switch/GShard code: the
    load-balancing loss ``E · Σ f_e P_e``, the router z-loss (mean squared
    logsumexp) and each token's routing entropy."""
    z = t.float()
    E = z.shape[1]
    p = torch.softmax(z, dim=-1)
    w, e = torch.topk(p, k, dim=-1)
    w = w / w.sum(-1, keepdim=True)
    order, offsets = _torch_group(torch, e, E)
    f = torch.bincount(e.reshape(-1), minlength=E) / e.numel()
    aux = E * (f * p.mean(0)).sum()
    lse = torch.logsumexp(z, dim=-1)
    entropy = torch.special.entr(p).sum(-1)
    return e, w, order, offsets, aux, (lse * lse).mean(), entropy


def torch_deepseek(torch: Any, t: Any, k: int, bias: Any) -> tuple[Any, ...]:
    """DeepSeek-V3's gate transcribed to PyTorch (8 groups, 4 kept, top-2 group
    scores, routed scaling 2.5), then the grouping permutation and offsets."""
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
    return (e, w, *_torch_group(torch, e, E))


def torch_expert_choice(torch: Any, t: Any, capacity: int) -> tuple[Any, Any]:
    """Expert-choice routing (Zhou et al. 2022) in PyTorch: the softmax over
    each token's experts, then each expert's ``capacity`` best tokens."""
    p = torch.softmax(t, dim=-1, dtype=torch.float32)
    w, tok = torch.topk(p, capacity, dim=0)
    return tok.T, w.T


# --------------------------------------------------------------------------- JAX


def jax_module() -> Any:
    """Import JAX on the CPU. With one Numba thread, XLA gets one thread too
    (``XLA_FLAGS`` set before the first import); otherwise XLA uses its
    default pool, one thread per core."""
    if "jax" not in sys.modules:
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
        if numba.get_num_threads() == 1:
            flags = os.environ.get("XLA_FLAGS", "")
            os.environ["XLA_FLAGS"] = (
                f"{flags} --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
            ).strip()
    import jax

    return jax


def jax_entropy(jax: Any) -> Any:
    """``jax.jit(lambda p: entr(p).sum(1))``."""
    from jax.scipy.special import entr

    return jax.jit(lambda p: entr(p).sum(1))


def jax_entropy_from_logits(jax: Any) -> Any:
    """``jax.jit`` of ``-(softmax(z) * log_softmax(z)).sum(1)``."""
    nn = jax.nn
    return jax.jit(lambda z: -(nn.softmax(z, axis=1) * nn.log_softmax(z, axis=1)).sum(1))


def torch_kl_div(torch: Any, p: Any, q: Any) -> Any:
    """``kl_div(q.log(), p, reduction="none").sum(1)``: D(p || q) per row."""
    return torch.nn.functional.kl_div(q.log(), p, reduction="none").sum(1)


def torch_kl_from_logits(torch: Any, zp: Any, zq: Any) -> Any:
    """``log_softmax`` of both, then ``kl_div(..., log_target=True)`` summed per row."""
    F = torch.nn.functional
    lp, lq = F.log_softmax(zp, dim=1), F.log_softmax(zq, dim=1)
    return F.kl_div(lq, lp, reduction="none", log_target=True).sum(1)


def jax_rel_entr(jax: Any) -> Any:
    """``jax.jit(lambda p, q: rel_entr(p, q).sum(1))``."""
    from jax.scipy.special import rel_entr

    return jax.jit(lambda p, q: rel_entr(p, q).sum(1))


def jax_kl_from_logits(jax: Any) -> Any:
    """``jax.jit`` of ``(softmax(zp) * (log_softmax(zp) - log_softmax(zq))).sum(1)``."""
    nn = jax.nn

    def kl(zp: Any, zq: Any) -> Any:
        lp = nn.log_softmax(zp, axis=1)
        return (nn.softmax(zp, axis=1) * (lp - nn.log_softmax(zq, axis=1))).sum(1)

    return jax.jit(kl)


def jax_top_k(jax: Any, k: int) -> Any:
    """``jax.jit(lambda x: jax.lax.top_k(x, k))``."""
    return jax.jit(lambda x: jax.lax.top_k(x, k))


def jax_route(jax: Any, k: int, E: int) -> Any:
    """The router pipeline under ``jax.jit``: float32 softmax, ``lax.top_k``,
    renormalize, stable argsort of the expert ids, offsets from ``bincount``."""
    jnp = jax.numpy

    def route(z: Any) -> tuple[Any, ...]:
        p = jax.nn.softmax(z.astype(jnp.float32), axis=-1)
        w, e = jax.lax.top_k(p, k)
        w = w / w.sum(-1, keepdims=True)
        flat = e.reshape(-1)
        counts = jnp.bincount(flat, length=E)
        offsets = jnp.concatenate([jnp.zeros(1, counts.dtype), jnp.cumsum(counts)])
        return e, w, jnp.argsort(flat, stable=True), offsets

    return jax.jit(route)


# --------------------------------------------------------------------------- MoE dispatch / combine


def torch_dispatch(torch: Any, h: Any, rows_of: Any, out: Any) -> Any:
    """The gather of every CPU MoE block: ``index_select`` of the hidden
    states by ``order // k`` (into a preallocated buffer)."""
    return torch.index_select(h, 0, rows_of, out=out)


def torch_combine_index_add(torch: Any, y: Any, token_of: Any, w: Any, out: Any) -> Any:
    """HF transformers' combine: a zeroed ``(T, H)`` and ``index_add_`` of the
    weighted expert rows (accumulated in the rows' dtype)."""
    out.zero_()
    return out.index_add_(0, token_of, y * w[:, None])


def torch_combine_buffer(torch: Any, y: Any, slot: Any, w: Any, buf: Any, T: int, k: int) -> Any:
    """The deterministic variant (HF PR #43362, vLLM/SGLang CPU): the weighted
    rows into a zeroed ``(T * k, H)`` slot buffer, then a sum over ``k``."""
    buf.zero_()
    buf.index_copy_(0, slot, y * w[:, None])
    return buf.view(T, k, -1).sum(1)
