"""Mixture-of-Experts routing: ``route``, ``expert_choice``, ``group_by_expert``."""

from __future__ import annotations

import functools
import itertools
import math
from typing import Any, Literal, NamedTuple

import numpy as np

from ._dtypes import compute_dtype, float_array
from ._execute import chunk_count, even_bounds, run_jobs, threads
from ._validate import check_alloc, check_choice, check_real, physical_memory, raise_status
from ._validate import check_int as _int
from .kernels import choice as kc
from .kernels import group as kg
from .kernels import route as rk

__all__ = ["Routing", "ExpertChoice", "route", "expert_choice", "group_by_expert"]


@functools.lru_cache(maxsize=256)
def block_tokens(E: int) -> int:
    """Tokens per block of the routing kernels: at most 256, and at most
    16384 padded logits (a block is routed as tiles of up to 128 tokens,
    ``kernels.route.lanes``, that stay in cache). Statistics are
    summed per block, so this (a function of E alone) fixes their order of
    summation, whatever the thread count."""
    return max(1, min(256, 16384 // (-(-E // 16) * 16 or 16)))


class Routing(NamedTuple):
    """Result of :func:`route` (T tokens, E experts, k choices per token).

    experts : (T, k) int32
        Chosen experts of each token, by weight descending, ties to the lower id.
    weights : (T, k) float32 (float64 for float64 logits)
        Their routing weights.
    counts : (E,) int64
        Assignments each expert keeps (after dropping).
    offsets : (E + 1,) int64
        ``order[offsets[e]:offsets[e + 1]]`` are expert ``e``'s assignments.
    order : (counts.sum(),) int64
        Kept slots ``t * k + j`` grouped by expert, tokens ascending within an
        expert: ``order // k`` are the tokens to gather for a grouped GEMM.
    dropped : (T, k) bool
        Assignments dropped for capacity (all False without a capacity).
    aux_loss : float or None
        Load-balancing loss ``E * sum_e f_e * P_e`` (Switch/GShard): ``f_e``
        the share of assignments to ``e`` before dropping, ``P_e`` the mean
        score distribution (softmax, or sigmoid scores normalised per token).
    z_loss : float or None
        Mean over tokens of ``logsumexp(logits) ** 2``.
    entropy : (T,) float32 (float64 for float64 logits) or None
        Entropy (nats) of each token's score distribution over all experts,
        accumulated in float64 and rounded once (the rule of
        ``entropy_from_logits``).
    imbalance : float
        ``max(counts) / mean(counts)`` (1.0 is perfect balance).
    capacity : int or None
        Assignments an expert may keep, None when dropless.
    """

    experts: np.ndarray
    weights: np.ndarray
    counts: np.ndarray
    offsets: np.ndarray
    order: np.ndarray
    dropped: np.ndarray
    aux_loss: float | None
    z_loss: float | None
    entropy: np.ndarray | None
    imbalance: float
    capacity: int | None


class Grouping(NamedTuple):
    """Result of :func:`group_by_expert` (unpacks as ``order, offsets, counts``).

    Attributes
    ----------
    order : (offsets[-1],) int64
        Flat positions of the assignments, grouped by expert, ascending within
        an expert, then the padding sentinels of that expert.
    offsets : (E + 1,) int64
        Expert ``e``'s segment is ``order[offsets[e]:offsets[e + 1]]``.
    counts : (E,) int64
        Assignments per expert (padding not counted).
    """

    order: np.ndarray
    offsets: np.ndarray
    counts: np.ndarray


class ExpertChoice(NamedTuple):
    """Result of :func:`expert_choice` (E experts, capacity C, T tokens).

    tokens : (E, C) int64
        Tokens each expert picked, by score descending, ties to the lower token.
    weights : (E, C) float32 (float64 for float64 logits)
        Their scores.
    coverage : (T,) int32
        How many experts picked each token.
    """

    tokens: np.ndarray
    weights: np.ndarray
    coverage: np.ndarray


# --- argument checks -----------------------------------------------------------


def _as_logits(x: Any, func: str) -> tuple[np.ndarray, type]:
    """(T, E) logits as the C-contiguous kernel view the kernels read
    (bfloat16 and float16 as their bits), and the output float dtype; other
    layouts are copied to C order once."""
    a = float_array(x, func, "logits", "logits.astype(np.float32)")
    if a.ndim != 2:
        raise ValueError(
            f"{func}: logits must be 2-D (tokens, experts), got shape {a.shape}; "
            "for one token pass logits[None, :]"
        )
    if not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    return a, compute_dtype(a.dtype)


def _bias(bias: Any, E: int, dtype: type) -> np.ndarray:
    """The bias in the compute dtype, where it must be finite (1e300 is not
    a float32)."""
    b = np.asarray(bias)
    if b.dtype.kind not in "iuf":
        raise TypeError(f"route: bias must be a real array, got dtype {b.dtype}")
    if b.shape != (E,):
        raise ValueError(f"route: bias must have shape ({E},) (one per expert), got {b.shape}")
    with np.errstate(over="ignore"):
        b = np.ascontiguousarray(b.astype(np.float64).astype(dtype))
    if not np.isfinite(b).all():
        e = int(np.flatnonzero(~np.isfinite(b))[0])
        raise ValueError(
            f"route: bias[{e}] = {np.asarray(bias)[e].item()!r} is not a finite "
            f"{np.dtype(dtype).name}; the bias must be finite in the compute precision"
        )
    return b


_NO_BIAS = {np.float32: np.empty(0, np.float32), np.float64: np.empty(0, np.float64)}

def _raise_status(status: np.ndarray, func: str) -> None:
    raise_status(status, func, lambda t: f"token {t}")


def _chunks(n: int, E: int) -> int:
    # one chunk per thread (each a Python call on the pool: few and large),
    # of >= 4096 ids, and a bounded histogram (chunks x E)
    if n <= 4096:
        return 1
    c = min(-(-n // 4096), threads(), max(1, (1 << 22) // max(E, 1)))
    return max(1, c)


# --- route ---------------------------------------------------------------------


def route(
    logits: Any,
    k: int,
    /,
    *,
    scoring: Literal["softmax", "sigmoid"] = "softmax",
    renormalize: bool = True,
    bias: Any = None,
    n_groups: int | None = None,
    topk_groups: int | None = None,
    group_score: Literal["max", "top2"] = "max",
    scale: float = 1.0,
    capacity_factor: float | None = None,
    min_capacity: int = 0,
    drop: Literal["position", "score"] = "position",
    nan: Literal["raise", "ignore"] = "raise",
    stats: bool = True,
) -> Routing:
    """Route each token to its top-``k`` experts (token choice).

    Parameters
    ----------
    logits : (T, E) array
        Router logits: float32, float64, float16, or bfloat16 (an
        ``ml_dtypes.bfloat16`` array or a torch CPU tensor), read as they
        are (no upcast copy; a non-C-contiguous array is copied once).
    k : int
        Experts per token, ``0 <= k <= E``.
    scoring : {"softmax", "sigmoid"}
        Softmax over all E experts, or an independent sigmoid per expert.
    renormalize : bool, default True
        Weights of the chosen experts divided by their sum (for softmax:
        a softmax over the chosen logits). False: the raw scores.
    bias : (E,) array, optional
        Selection-only bias (DeepSeek-V3): added to the scores to choose the
        experts; the weights come from the unbiased scores.
    n_groups, topk_groups : int, optional
        Group-limited routing: the experts form ``n_groups`` equal contiguous
        groups and only the ``topk_groups`` best groups are eligible.
    group_score : {"max", "top2"}
        A group's score: its best (biased) score, or the sum of its two best.
    scale : float, default 1.0
        Multiplies the final weights (DeepSeek's routed scaling factor).
    capacity_factor : float, optional
        None: dropless. Otherwise an expert keeps at most
        ``C = max(ceil(capacity_factor * T * k / E), min_capacity)``
        assignments; the others are dropped.
    min_capacity : int, default 0
        Lower bound of ``C``.
    drop : {"position", "score"}
        Which assignments an expert keeps when over capacity. Assignments are
        admitted choice by choice (every token's first choice before any
        second choice); within a choice, ``"position"`` takes tokens in order
        (GShard, Switch, DeepSpeed) and ``"score"`` by the score of their first
        choice, highest first, ties to the lower token (batch-prioritized
        routing, V-MoE/Tutel).
    nan : {"raise", "ignore"}
        A token with a NaN logit raises ``ValueError``, or (``"ignore"``) its
        NaN logits count as ``-inf``.
    stats : bool, default True
        Compute ``aux_loss``, ``z_loss`` and ``entropy`` (one more pass over
        every token's scores); False leaves them None.

    Returns
    -------
    Routing
        See :class:`Routing` for every field.

    Notes
    -----
    Scores and weights are computed in float32 (float64 for float64
    logits; every sum in float64) and weights are rounded once to the
    output dtype. Without bias and groups the experts are chosen by their
    logits (the exact order of the scores); with them, by ``score + bias``
    in that precision. Each row is then ordered by its output
    weight, descending, ties to the lower expert id. ``-inf`` logits are
    score 0 and may be chosen when fewer than ``k`` experts are finite;
    under sigmoid ``+inf`` is score 1. A token with a NaN logit, with
    ``+inf`` under softmax, or without an eligible finite logit raises
    ``ValueError`` naming it. Experts of groups that are not kept behave as
    ``-inf`` (never as 0). Results are the same bits for any thread count and
    without a capacity for any split of the batch.

    Examples
    --------
    >>> import numpy as np, fastroute as fr
    >>> r = fr.route(np.array([[2.0, 0.0, 1.0], [0.0, 3.0, 3.0]], np.float32), 2)
    >>> r.experts
    array([[0, 2],
           [1, 2]], dtype=int32)
    >>> r.weights.round(3)
    array([[0.731, 0.269],
           [0.5  , 0.5  ]], dtype=float32)
    >>> r.order, r.offsets
    (array([0, 2, 1, 3]), array([0, 1, 2, 4]))
    """
    return _execute(*prepare(
        logits, k, scoring=scoring, renormalize=renormalize, bias=bias, n_groups=n_groups,
        topk_groups=topk_groups, group_score=group_score, scale=scale,
        capacity_factor=capacity_factor, min_capacity=min_capacity, drop=drop, nan=nan,
        stats=stats,
    )).routing  # fmt: skip


def prepare(
    logits: Any, k: int, /, *, scoring: str = "softmax", renormalize: bool = True,
    bias: Any = None, n_groups: int | None = None, topk_groups: int | None = None,
    group_score: str = "max", scale: float = 1.0, capacity_factor: float | None = None,
    min_capacity: int = 0, drop: str = "position", nan: str = "raise", stats: bool = True,
) -> tuple:  # fmt: skip
    """The checked arguments of a ``route`` call, as ``_execute`` takes them."""
    func = "route"
    a, out = _as_logits(logits, func)
    T, E = a.shape
    if E == 0 and T:
        raise ValueError("route: the logits have no experts (shape (T, 0))")
    k = _int(k, "k", func, 0, E)
    sigmoid = check_choice(scoring, "scoring", ("softmax", "sigmoid"), func) == "sigmoid"
    top2 = check_choice(group_score, "group_score", ("max", "top2"), func) == "top2"
    nan_ignore = check_choice(nan, "nan", ("raise", "ignore"), func) == "ignore"
    check_choice(drop, "drop", ("position", "score"), func)
    # scores (and score + bias) are computed in the output precision
    b = _NO_BIAS[out] if bias is None else _bias(bias, E, out)
    ng, tg = _groups(n_groups, topk_groups, E, k, top2)
    scale = check_real(scale, "scale", func)
    cap = None
    mc = _int(min_capacity, "min_capacity", func, 0)
    if capacity_factor is not None:
        cf = check_real(capacity_factor, "capacity_factor", func)
        if cf <= 0:
            raise ValueError(f"route: capacity_factor must be positive, got {capacity_factor!r}")
        cap = capacity(cf, mc, T, k, E)

    want_prio = cap is not None and drop == "score"
    config = (sigmoid, bool(renormalize), bias is not None, ng > 1, bool(stats), want_prio)
    opts = (k, max(ng, 1), tg, top2, scale, nan_ignore)
    return a, out, b, config, opts, cap, drop


def capacity(capacity_factor: float, min_capacity: int, T: int, k: int, E: int) -> int:
    """The slots each expert keeps: ``ceil(capacity_factor * T * k / E)``,
    at least ``min_capacity`` (the one formula, for ``route`` and Dask)."""
    c = capacity_factor * T * k / E if E else 0.0
    return max(math.ceil(c) if c < 2.0**62 else 2**62, min_capacity)


class Partial(NamedTuple):
    """A routing with the partial sums its batch-level results come from:
    ``hist[c, j, e]``, the ``j``-th choices of expert ``e`` among the tokens
    of chunk ``c``, and the per-block sums of the score distributions
    (``psum[b, e]``) and of the squared logsumexp (``lse2[b]``; both empty
    without statistics)."""

    routing: Routing
    hist: np.ndarray
    psum: np.ndarray
    lse2: np.ndarray


def route_partial(logits: Any, k: int, /, **options: Any) -> Partial:
    """``route(logits, k, **options)`` with its partial sums (``Partial``),
    for callers that assemble one batch from several routed chunks
    (``fastroute.dask``): :func:`admit_by_position`, ``scatter_capacity``
    and ``kernels.group.summarize`` then give the batch's results from them."""
    return _execute(*prepare(logits, k, **options))


def admit_by_position(hist: np.ndarray, cap: int, T: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Admission by position from the chunks' histograms ``hist[c, j, e]``:
    every first choice before any second choice, tokens in order. Returns
    ``(run, kept, c_eff)``: ``run[c, j, e]``, the admission rank of chunk
    ``c``'s first ``j``-th choice of ``e`` (the kept earlier choices, then
    the same choice in earlier chunks); ``kept[c, e]``, the slots of ``e``
    chunk ``c`` keeps; and the capacity in effect (no expert gets more
    than ``T``)."""
    c_eff = min(cap, T)
    per_choice = hist.sum(axis=0)
    before = np.cumsum(per_choice, axis=0) - per_choice
    run = np.minimum(before, c_eff) + (np.cumsum(hist, axis=0) - hist)
    kept = np.clip(c_eff - run, 0, hist).sum(axis=1)
    return run, kept, c_eff


def _execute(a, out, b, config, opts, cap, drop) -> Partial:
    """A validated ``route`` call, with its partial sums."""
    T, E = a.shape
    stats = config[4]
    bt = block_tokens(E)
    if cap is None and T and chunk_count(-(-T // bt), a.size, per_thread=1) == 1:
        return _route_serial(a, out, b, config, opts, bt)
    experts, weights, ent, lse2, psum, prio, hist, bounds = route_pass(a, out, b, config, opts)
    _, aux, z_loss = kg.summarize(hist, psum, lse2, T)
    tok = [(lo * bt, min(hi * bt, T)) for lo, hi in bounds]
    dropped, counts, offsets, order = _admit_and_group(experts, hist, prio, tok, cap, drop)
    cmax = int(counts.max()) if E else 0
    ent, aux, z_loss, imbalance = route_stats(out, stats, ent, aux, z_loss, cmax, int(offsets[-1]), E)
    r = Routing(experts, weights, counts, offsets, order, dropped, aux, z_loss, ent, imbalance, cap)
    return Partial(r, hist, psum, lse2)


def route_stats(out, stats, ent, aux, z_loss, cmax, total, E):
    """The statistics as ``route`` reports them, and the imbalance."""
    imbalance = cmax / (total / E) if total else math.nan
    if not stats:
        return None, None, None, imbalance
    if out is np.float32:  # summed in float64, rounded once (as entropy_from_logits)
        ent = ent.astype(np.float32)
    return ent, aux, z_loss, imbalance


def _route_serial(a, out, b, config, opts, bt):
    """A dropless ``route`` on one thread (one driver call and one finishing
    call); returns what ``_execute`` returns."""
    T, E = a.shape
    k = opts[0]
    stats = config[4]
    nb = -(-T // bt)
    experts, weights, status, ent, lse2, psum, prio, kopts = _driver_io(a, out, config, opts, bt)
    hist = np.zeros((1, k, E), np.int64)
    routed = (experts, weights, status, ent, lse2, psum, prio, hist[0])
    rk.chunk_kernel(*config)(a, b, kopts, routed, 0, nb)
    counts = np.empty(E, np.int64)
    offsets = np.empty(E + 1, np.int64)
    order = np.empty(T * k, np.int64)
    bad, aux, z_loss, most = kg.finish_serial(
        experts, status, hist, psum, lse2, counts, offsets, order
    )
    if bad >= 0:
        _raise_status(status, "route")
    ent, aux, z_loss, imbalance = route_stats(out, stats, ent, aux, z_loss, most, T * k, E)
    dropped = np.zeros((T, k), np.bool_)
    r = Routing(
        experts, weights, counts, offsets, order, dropped, aux, z_loss, ent, imbalance, None
    )
    return Partial(r, hist, psum, lse2)


def _driver_io(a, out, config, opts, bt):
    """The outputs a routing driver fills (``experts, weights, status, ent,
    lse2, psum, prio``; the per-token and per-block statistics empty when not
    asked for) and its options tuple."""
    T, E = a.shape
    k = opts[0]
    stats, want_prio = config[4], config[5]
    nb = -(-T // bt)
    kopts = (*opts, bt, out is np.float32, min(rk.lanes(E, bt), max(T, 1)))
    return (
        np.empty((T, k), np.int32),
        np.empty((T, k), out),
        np.empty(T, np.int8),
        np.empty(T if stats else 0),
        np.empty(nb if stats else 0),
        np.empty((nb if stats else 0, E)),
        np.empty(T if want_prio else 0),
        kopts,
    )


def _admit_and_group(experts, hist, prio, tok, cap, drop):
    """``(dropped, counts, offsets, order)``: the assignments grouped by expert
    (a counting sort whose histogram the routing pass counted per chunk),
    admitted under the capacity ``cap`` (None: dropless) in the same pass."""
    T, k = experts.shape
    nch, _, E = hist.shape
    dropped = np.zeros((T, k), np.bool_) if cap is None else np.empty((T, k), np.bool_)
    if cap is None:
        kept = hist.sum(axis=1)
    elif drop == "position":
        run, kept, c_eff = admit_by_position(hist, cap, T)
    else:
        kept = np.zeros((nch, E), np.int64)
        chunk_of = np.repeat(np.arange(nch), [hi - lo for lo, hi in tok])
        perm = kc.score_order(prio)
        kg.admit_by_score(experts, perm, min(cap, T), E, dropped, chunk_of, kept)
    counts = kept.sum(axis=0)
    offsets = np.zeros(E + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    start = offsets[:-1] + (np.cumsum(kept, axis=0) - kept)  # (nch, E)
    order = np.empty(int(offsets[-1]), np.int64)
    if cap is None:
        jobs = [(experts, start[c], *tok[c], order) for c in range(nch)]
        run_jobs(kg.scatter_all, jobs)
    elif drop == "position":
        jobs = [(experts, run[c], c_eff, start[c], *tok[c], order, dropped) for c in range(nch)]
        run_jobs(kg.scatter_capacity, jobs)
    else:
        jobs = [(experts, dropped, start[c], *tok[c], order) for c in range(nch)]
        run_jobs(kg.scatter_kept, jobs)
    return dropped, counts, offsets, order


def route_pass(a: np.ndarray, out: type, bias: np.ndarray, config: tuple, opts: tuple):
    """Run the routing driver of ``config`` (see ``kernels.route.chunk_kernel``)
    over the logits ``a`` in chunks of blocks; ``opts = (k, n_groups,
    topk_groups, top2, scale, nan_ignore)``. Raises for the first invalid
    token. Returns ``(experts, weights, ent, lse2, psum, prio, hist,
    bounds)``, ``bounds`` the chunks' block ranges."""
    T, E = a.shape
    k = opts[0]
    bt = block_tokens(E)
    nb = -(-T // bt)
    experts, weights, status, ent, lse2, psum, prio, kopts = _driver_io(a, out, config, opts, bt)
    nch = chunk_count(nb, a.size, per_thread=1)
    bounds = [(c * nb // nch, (c + 1) * nb // nch) for c in range(nch)]
    hist = np.zeros((nch, k, E), np.int64)
    outs = [(experts, weights, status, ent, lse2, psum, prio, hist[c]) for c in range(nch)]
    kern = rk.chunk_kernel(*config)
    run_jobs(kern, [(a, bias, kopts, outs[c], *bounds[c]) for c in range(nch)])
    if T and status.any():
        _raise_status(status, "route")
    return experts, weights, ent, lse2, psum, prio, hist, bounds


def _groups(n_groups: Any, topk_groups: Any, E: int, k: int, top2: bool) -> tuple[int, int]:
    func = "route"
    if n_groups is None:
        if topk_groups is not None:
            raise ValueError("route: topk_groups needs n_groups")
        return 0, 0
    ng = _int(n_groups, "n_groups", func, 1)
    if E % ng:
        raise ValueError(f"route: n_groups={ng} does not divide the number of experts E={E}")
    if topk_groups is None:
        raise ValueError("route: n_groups needs topk_groups (how many groups stay eligible)")
    tg = _int(topk_groups, "topk_groups", func, 1, ng)
    size = E // ng
    if tg * size < k:
        raise ValueError(
            f"route: topk_groups={tg} groups of {size} experts hold fewer than k={k} experts"
        )
    if top2 and size < 2:
        raise ValueError("route: group_score='top2' needs at least 2 experts per group")
    return ng, tg


# --- grouping ------------------------------------------------------------------


def _group(ids: np.ndarray, E: int, block_size: int, sentinel: int):
    n = ids.shape[0]
    nchunks = _chunks(n, E)
    if chunk_count(n, n) == 1 or nchunks == 1:
        ok, order, offsets, counts = kg.group_serial(ids, E, block_size, sentinel, nchunks)
    else:  # each chunk's histogram, the layout, then each chunk's scatter
        hist = np.zeros((nchunks, E), np.int64)
        spans = list(itertools.pairwise(even_bounds(n, nchunks)))
        ok = all(run_jobs(kg.histogram, [(ids, E, lo, hi, hist, c)
                                        for c, (lo, hi) in enumerate(spans)]))  # fmt: skip
        if ok:
            counts, offsets, order = kg.layout(hist, block_size, sentinel)
            run_jobs(
                kg.scatter_ids, [(ids, lo, hi, hist, c, order) for c, (lo, hi) in enumerate(spans)]
            )
    if not ok:
        _raise_bad_id(ids, E)
    return order, offsets, counts


def _raise_bad_id(ids: np.ndarray, E: int) -> None:
    bad = np.flatnonzero((ids < -1) | (ids >= E))[0]
    raise ValueError(
        f"group_by_expert: experts[{bad}] = {ids[bad]} is not an expert id; "
        f"need -1 (skip) or 0 <= id < num_experts={E}"
    )


def group_by_expert(
    experts: Any, num_experts: int, /, *, block_size: int | None = None
) -> Grouping:
    """Group assignments by expert: a stable counting sort.

    Parameters
    ----------
    experts : integer array, any shape
        Expert id of each assignment (flattened in C order); ``-1`` means
        "skip this one".
    num_experts : int
        Number of experts E; ids must be in ``[0, E)`` or ``-1``.
    block_size : int, optional
        Pad each expert's segment to a multiple of ``block_size`` with the
        sentinel ``experts.size`` (the layout of block-sparse / grouped GEMM
        kernels).

    Returns
    -------
    Grouping
        ``order`` (offsets[-1],) int64: flat positions of the assignments,
        grouped by expert, ascending within an expert, then the padding
        sentinels of that expert; ``offsets`` (E + 1,) int64: expert ``e``'s
        segment is ``order[offsets[e]:offsets[e + 1]]``; ``counts`` (E,)
        int64: assignments per expert, padding not counted.

    Raises
    ------
    TypeError
        ``experts`` not integer.
    ValueError
        An id outside ``[-1, E)``; bad ``num_experts`` or ``block_size``
        (``1 <= block_size <= 2**62``), or a result (per-expert counters, the
        padded order) larger than the machine's memory.

    Examples
    --------
    >>> import numpy as np, fastroute as fr
    >>> g = fr.group_by_expert(np.array([[1, 0], [1, -1]]), 3)
    >>> g.order, g.offsets, g.counts
    (array([1, 0, 2]), array([0, 1, 3, 3]), array([1, 2, 0]))
    >>> order, offsets, counts = fr.group_by_expert(np.array([[1, 0], [1, -1]]), 3, block_size=2)
    >>> order, offsets
    (array([1, 4, 0, 2]), array([0, 2, 4, 4]))
    """
    func = "group_by_expert"
    E = _int(num_experts, "num_experts", func, 0)
    bs = 1 if block_size is None else _int(block_size, "block_size", func, 1, 2**62)
    a = np.asarray(experts)
    if a.dtype.kind not in "iu":
        raise TypeError(
            f"{func}: experts must be an integer array, got dtype {a.dtype}; "
            "for example experts.astype(np.int32)"
        )
    ids = a.reshape(-1)
    if ids.dtype not in (np.int32, np.int64) or not ids.dtype.isnative:
        # check before the cast to int64 (it would wrap large unsigned ids)
        if ids.size and (int(ids.min()) < -1 or int(ids.max()) >= E):
            _raise_bad_id(ids, E)
        ids = ids.astype(np.int64)
    ids = np.ascontiguousarray(ids)
    n = ids.size
    # per-expert counters (histogram, counts, offsets) and the padded result
    check_alloc(8 * 3 * (E + 1), f"num_experts={E}", func, "; pass the real number of experts")
    if n + min(E, n) * (bs - 1) > physical_memory() // 8:  # maybe too much padding: count
        if n and (int(ids.min()) < -1 or int(ids.max()) >= E):
            _raise_bad_id(ids, E)
        counts = np.bincount(ids[ids >= 0], minlength=E)
        padded = int((-(-counts // bs)).sum()) * bs
        check_alloc(8 * padded, f"padding to block_size={bs}", func, "; use a smaller block_size")
    return Grouping(*_group(ids, E, bs, n))


# --- expert choice -------------------------------------------------------------


def expert_choice(
    logits: Any,
    capacity: int,
    /,
    *,
    scoring: Literal["softmax", "sigmoid"] = "softmax",
    nan: Literal["raise", "ignore"] = "raise",
) -> ExpertChoice:
    """Expert-choice routing (Zhou et al. 2022): each expert picks its
    ``capacity`` best tokens.

    Parameters
    ----------
    logits : (T, E) array
        Router logits, dtypes as for :func:`route`.
    capacity : int
        Tokens per expert, ``0 <= capacity <= T``.
    scoring : {"softmax", "sigmoid"}
        Token-expert scores: softmax over each token's experts, or sigmoid.
    nan : {"raise", "ignore"}
        As for :func:`route`.

    Returns
    -------
    ExpertChoice(tokens, weights, coverage)
        ``tokens[e]`` by score descending, ties to the lower token index;
        ``weights`` are those scores (float32, or float64 for float64
        logits), the values that are ranked.

    Examples
    --------
    >>> import numpy as np, fastroute as fr
    >>> ec = fr.expert_choice(np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]]), 1)
    >>> ec.tokens, ec.coverage
    (array([[1],
           [2]]), array([0, 1, 1], dtype=int32))
    """
    func = "expert_choice"
    a, out = _as_logits(logits, func)
    T, E = a.shape
    C = _int(capacity, "capacity", func, 0, T)
    sigmoid = check_choice(scoring, "scoring", ("softmax", "sigmoid"), func) == "sigmoid"
    nan_ignore = check_choice(nan, "nan", ("raise", "ignore"), func) == "ignore"
    if E == 0:  # no experts: nothing to score
        return ExpertChoice(
            np.empty((0, C), np.int64), np.empty((0, C), out), np.zeros(T, np.int32)
        )
    scores = np.empty((E, T), out)
    status = np.empty(T, np.int8)
    bt = block_tokens(E)
    nb = -(-T // bt)
    if T:
        kern = kc.scores_kernel(sigmoid)
        nch = chunk_count(nb, a.size, per_thread=1)
        jobs = [
            (a, nan_ignore, bt, rk.lanes(E, bt), scores, status, c * nb // nch, (c + 1) * nb // nch)
            for c in range(nch)
        ]
        run_jobs(kern, jobs)
        if status.any():
            _raise_status(status, func)
    tokens = np.empty((E, C), np.intp)
    weights = np.empty((E, C), out)
    if tokens.size:  # the scores hold no NaN: a token with one raised above
        nch = chunk_count(E, scores.size, per_thread=1)
        jobs = [(scores, C, c * E // nch, (c + 1) * E // nch, tokens, weights) for c in range(nch)]
        run_jobs(kc.top_tokens, jobs)
    coverage = np.bincount(tokens.reshape(-1), minlength=T).astype(np.int32)
    return ExpertChoice(tokens.astype(np.int64, copy=False), weights, coverage)
