"""Row-chunked dense arrays: each block is one call of the single-machine
function, and each row's result depends on that row alone."""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np

from ..entropy import entropy as _entropy
from ..entropy import entropy_from_logits as _entropy_from_logits
from ..kernels import group as kg
from ..routing import admit_by_position, capacity, route_partial, route_stats
from ..topk import TopK
from ..topk import top_k as _top_k
from ._base import Limited, as_dask, dask_modules, known_chunks


def _rows(x: Any, func: str):
    """``x`` as a 2-D Dask array whose rows are each in one chunk."""
    a = as_dask(x, func)
    if a.ndim != 2:
        raise ValueError(
            f"{func}: expected a 2-D array of rows, got {a.ndim} dimensions; "
            "reshape it to (rows, n), e.g. x[None, :] for one row"
        )
    known_chunks(a, func, "x", (1,))
    if a.numblocks[1] != 1:
        raise ValueError(
            f"{func}: each row must be in one chunk, but axis 1 is split into "
            f"{a.numblocks[1]} chunks; rechunk first: x.rechunk({{1: -1}})"
        )
    return a


def _probe(a) -> np.ndarray:
    # one row of the block dtype and width: the single-machine function
    # checks dtypes and arguments on it and gives the output dtype
    return np.zeros((1, a.shape[1]), a.dtype)


def entropy(p: Any, /, *, base: float | None = None, normalize: bool = True):
    """Shannon entropy of every row of a row-chunked 2-D Dask array.

    Parameters and semantics are those of :func:`fastroute.entropy` along
    axis 1 (float64 sums, ``0 log 0 = 0``, NaN rules, output float32 for
    float32 input, float64 otherwise).

    Returns
    -------
    dask.array.Array of shape (T,), chunked as ``p``'s rows.

    Examples
    --------
    >>> import dask.array as da, numpy as np, fastroute.dask as frd
    >>> p = da.from_array(np.array([[0.5, 0.5], [1.0, 0.0], [0.25, 0.75]]), chunks=(2, 2))
    >>> frd.entropy(p, base=2).compute().round(4)
    array([1.    , 0.    , 0.8113])
    """
    a = _rows(p, "entropy")
    kw = {"base": base, "normalize": normalize}
    out = _entropy(_probe(a), **kw).dtype
    return a.map_blocks(Limited(_entropy), drop_axis=1, dtype=out, meta=np.empty((0,), out), **kw)


def entropy_from_logits(z: Any, /, *, base: float | None = None):
    """Entropy of ``softmax(z)`` of every row of a row-chunked 2-D Dask array.

    Parameters and semantics are those of
    :func:`fastroute.entropy_from_logits` along axis 1.

    Examples
    --------
    >>> import dask.array as da, numpy as np, fastroute.dask as frd
    >>> z = da.zeros((5, 4), chunks=(2, 4), dtype=np.float32)
    >>> frd.entropy_from_logits(z, base=2).compute()
    array([2., 2., 2., 2., 2.], dtype=float32)
    """
    a = _rows(z, "entropy_from_logits")
    out = _entropy_from_logits(_probe(a), base=base).dtype
    return a.map_blocks(
        Limited(_entropy_from_logits),
        drop_axis=1,
        dtype=out,
        meta=np.empty((0,), out),
        base=base,
    )


def _block_top(b, k: int, offset: int, mode: str, sorted: bool):
    # a block's own top k (of at most its width), indices in the whole axis
    r = _top_k(b, min(k, b.shape[-1]), axis=-1, mode=mode, sorted=sorted)
    return r.values, r.indices + offset if offset else r.indices


def _merge_top(k: int, mode: str, *parts):
    # the top k of the union of candidate sets: ordered by index first, so
    # that ties go to the lower index as they do along the whole axis
    v = np.concatenate([p[0] for p in parts], axis=-1)
    i = np.concatenate([p[1] for p in parts], axis=-1)
    by_index = np.argsort(i, axis=-1, kind="stable")
    v, i = np.take_along_axis(v, by_index, -1), np.take_along_axis(i, by_index, -1)
    best = _top_k(v, min(k, v.shape[-1]), axis=-1, mode=mode)
    return best.values, np.take_along_axis(i, best.indices, -1)


def top_k(
    x: Any,
    k: int,
    /,
    *,
    axis: int = -1,
    mode: Literal["largest", "smallest"] = "largest",
    sorted: bool = True,
    explicit: bool = False,
    format: Literal["dense", "csr"] = "dense",
) -> Any:
    """The ``k`` best entries along ``axis`` of a Dask array (or of the rows
    of :class:`~fastroute.dask.CSRBlocks`).

    Semantics are those of :func:`fastroute.top_k`, bit for bit (ties to
    the lower index, NaN after every number, ``np.intp`` indices), for any
    chunking. When ``axis`` is one chunk, each block is one call of
    :func:`fastroute.top_k`. When it is split, each block keeps its own best
    ``k`` and a fixed tree of merges (4 at a time) ranks the candidates,
    ordered by index so that ties still go to the lower index; the result
    is then in rank order whatever ``sorted`` says. Each block is computed
    once for both outputs. ``explicit`` and ``format`` apply to
    ``CSRBlocks``, whose rows are ranked block by block.

    Returns
    -------
    TopK(values, indices)
        Two Dask arrays shaped like ``x`` with ``axis`` replaced by ``k``
        (for ``CSRBlocks``: ``(V, k)``, or with ``format="csr"`` the pruned
        matrix as ``CSRBlocks``).

    Examples
    --------
    >>> import dask.array as da, numpy as np, fastroute.dask as frd
    >>> x = da.from_array(np.array([[1.0, 3.0, 2.0], [5.0, 5.0, 0.0]]), chunks=(1, 3))
    >>> frd.top_k(x, 2).indices.compute()
    array([[1, 2],
           [0, 1]])
    >>> y = da.from_array(np.array([4, 9, 1, 9, 7, 9]), chunks=2)  # a chunked axis
    >>> r = frd.top_k(y, 3)
    >>> r.values.compute(), r.indices.compute()
    (array([9, 9, 9]), array([1, 3, 5]))
    """
    if hasattr(x, "row_bounds") and hasattr(x, "_rank_rows"):  # CSRBlocks (blocks.py)
        return x._rank_rows(k, axis=axis, mode=mode, explicit=explicit, format=format)
    dask, da = dask_modules()
    a = as_dask(x, "top_k")
    if explicit or format != "dense":
        raise ValueError("top_k: explicit and format apply to CSRBlocks (sparse row blocks)")
    # the single-machine function checks everything on one slice along axis
    if a.ndim == 0:
        _top_k(np.zeros((), a.dtype), k)  # its error for a scalar
    from .._validate import check_axis

    ax = check_axis(axis, a.ndim)
    known_chunks(a, "top_k", "x", (ax,))
    probe_shape = [1] * a.ndim
    probe_shape[ax] = a.shape[ax]
    probe = _top_k(np.zeros(probe_shape, a.dtype), k, axis=ax, mode=mode, sorted=sorted)
    kk = probe.values.shape[ax]
    vt, it = probe.values.dtype, probe.indices.dtype
    a = da.moveaxis(a, ax, -1)
    widths = a.chunks[-1]
    offsets = np.cumsum((0, *widths[:-1]))
    lead = a.numblocks[:-1]
    blocks = a.to_delayed()
    grid = np.empty(lead, dtype=object)
    for idx in np.ndindex(*lead):
        parts = [
            dask.delayed(Limited(_block_top), nout=2)(
                blocks[(*idx, j)], kk, int(offsets[j]), mode, sorted
            )
            for j in range(len(widths))
        ]
        while len(parts) > 1:
            parts = [
                dask.delayed(Limited(_merge_top), nout=2)(kk, mode, *parts[i : i + 4])
                for i in range(0, len(parts), 4)
            ]
        shape = tuple(a.chunks[d][idx[d]] for d in range(len(lead))) + (kk,)
        grid[idx] = (
            da.from_delayed(parts[0][0], shape, dtype=vt),
            da.from_delayed(parts[0][1], shape, dtype=it),
        )

    def assemble(which):
        if not lead:
            return grid[()][which]
        # one more level of nesting: da.block joins the innermost lists
        # along the last axis, which is one block here
        nested = np.frompyfunc(lambda p: [p[which]], 1, 1)(grid)
        return da.moveaxis(da.block(nested.tolist()), -1, ax)

    return TopK(assemble(0), assemble(1))


# --- routing -----------------------------------------------------------------------


def _route_block(block, k, options, where):
    # a chunk routed dropless, with its partial sums (fastroute.routing.Partial)
    try:
        p = route_partial(block, k, **options)
    except ValueError as exc:  # a token of this chunk; its index is within the chunk
        raise ValueError(f"route: rows {where}: {exc}") from None
    return p._replace(hist=p.hist.sum(axis=0))


def _admit(cap: int, T: int, *parts) -> list[tuple]:
    # admission by position over the batch, from the chunks' histograms
    run, kept, c_eff = admit_by_position(np.stack([p.hist for p in parts]), cap, T)
    return [(run[c], kept[c], c_eff) for c in range(len(parts))]


def _admit_chunk(part, admission) -> tuple:
    # the chunk's dropped slots and its kept slots grouped by expert, by the
    # kernel fastroute.route scatters with
    run, kept, c_eff = admission
    experts = part.routing.experts
    n, k = experts.shape
    start = np.cumsum(kept) - kept
    order = np.empty(int(kept.sum()), np.int64)
    dropped = np.empty((n, k), np.bool_)
    kg.scatter_capacity(experts, run.copy(), c_eff, start, 0, n, order, dropped)
    return dropped, order, kept


def _assemble(parts, starts, T, k, E, stats, admitted=None):
    # the batch's grouping from the chunks' (a stable counting sort by
    # expert, chunk after chunk, is the same as one over the whole batch)
    # and its statistics from the chunks' partial sums, as fastroute.route
    # makes them (the load share is taken before dropping)
    segs = [[] for _ in range(E)]
    for c, (p, t0) in enumerate(zip(parts, starts, strict=True)):
        r = p.routing
        if admitted is None:
            order, offsets = r.order, r.offsets
        else:
            _, order, kept = admitted[c]
            offsets = np.concatenate(([0], np.cumsum(kept)))
        for e in range(E):
            segs[e].append(order[offsets[e] : offsets[e + 1]] + t0 * k)
    counts = np.array([sum(s.size for s in segs[e]) for e in range(E)], np.int64)
    offsets = np.zeros(E + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    order = np.concatenate([x for e in range(E) for x in segs[e]] or [np.zeros(0, np.int64)])
    hist = np.stack([p.hist for p in parts]) if parts else np.zeros((0, k, E), np.int64)
    empty = np.zeros((0, E))
    psum = np.concatenate([p.psum for p in parts]) if stats and parts else empty
    lse2 = np.concatenate([p.lse2 for p in parts]) if stats and parts else empty[:, 0]
    _, aux, z_loss = kg.summarize(hist, psum, lse2, T)
    cmax = int(counts.max()) if E else 0
    _, aux, z_loss, imbalance = route_stats(None, stats, None, aux, z_loss, cmax, int(offsets[-1]), E)
    return (counts, offsets, order.astype(np.int64, copy=False), np.float64(aux),
            np.float64(z_loss), np.float64(imbalance))  # fmt: skip


def route(logits: Any, k: int, /, **options: Any):
    """Token-choice routing of a row-chunked ``(T, E)`` Dask array.

    The options and semantics are those of :func:`fastroute.route`; each
    chunk of rows is routed by it (dropless), and the batch's grouping and
    statistics are assembled from the chunks. ``experts``, ``weights``,
    ``dropped``, ``counts``, ``offsets``, ``order``, ``imbalance`` and
    ``capacity`` equal the single-machine result bit for bit for any
    chunking; ``aux_loss`` and ``z_loss`` sum the chunks' block sums in
    chunk order (within 1e-12 relative of one call on the whole batch).
    With a ``capacity_factor``, admission by position (the default) comes
    from each chunk's per-choice expert counts: an assignment's place in
    its expert's queue is the count of earlier choices over the batch, of
    its choice in earlier chunks, then its rank in its chunk.
    ``drop="score"`` ranks the whole batch by score and is not supported
    here (a ``ValueError``).

    Returns
    -------
    Routing
        Its fields as Dask arrays (0-d for ``aux_loss``, ``z_loss``,
        ``imbalance``; ``None`` where :func:`fastroute.route` gives None).
        ``dask.compute(*r[:10])`` computes them in one pass. Dropless,
        ``order`` has ``T * k`` slots; with a ``capacity_factor`` it holds
        the kept slots only, whose number the graph cannot know before it
        runs: its length is NaN (unknown to Dask), so that it is computed
        whole, or sized first with ``r.order.compute_chunk_sizes()`` before
        it is sliced (its length is also ``offsets[-1]``).

    Examples
    --------
    >>> import dask, dask.array as da, numpy as np, fastroute.dask as frd
    >>> x = da.from_array(np.array([[2.0, 0.0, 1.0], [0.0, 3.0, 3.0]], np.float32), chunks=(1, 3))
    >>> r = frd.route(x, 2)
    >>> experts, order = dask.compute(r.experts, r.order)
    >>> experts, order
    (array([[0, 2],
           [1, 2]], dtype=int32), array([0, 2, 1, 3]))
    """
    from ..routing import Routing

    dask, da = dask_modules()
    a = _rows(logits, "route")
    from ..routing import route as _route

    known_chunks(a, "route", "logits")  # T sets the capacity and the slots' numbers
    # checks k and the options (on no token when there are none: E may be 0)
    probe = _route(_probe(a)[: min(a.shape[0], 1)], k, **options)
    if options.get("capacity_factor") is not None and options.get("drop", "position") != "position":
        raise ValueError(
            "fastroute.dask.route: drop='score' ranks every token of the batch by its "
            "score and is not supported on chunks; use drop='position', or "
            "fastroute.route on one machine"
        )
    kk = probe.experts.shape[1]
    T, E = a.shape
    cap = None
    if options.get("capacity_factor") is not None:  # checked by the probe
        cap = capacity(float(options["capacity_factor"]), int(options.get("min_capacity", 0)),
                       T, kk, E)  # fmt: skip
    dropless = {o: v for o, v in options.items() if o not in ("capacity_factor", "drop")}
    stats = probe.entropy is not None
    rows = a.chunks[0]
    starts = tuple(int(s) for s in np.cumsum((0, *rows[:-1])))
    parts = [
        dask.delayed(Limited(_route_block))(d, k, dropless, f"{s}:{s + n} (chunk {c})")
        for c, (d, s, n) in enumerate(zip(a.to_delayed().ravel(), starts, rows, strict=True))
    ]
    admitted = None
    if cap is not None:
        adm = dask.delayed(_admit, nout=len(parts))(cap, T, *parts)
        admitted = [dask.delayed(_admit_chunk, nout=3)(p, adm[c]) for c, p in enumerate(parts)]

    def field(name, shape, dtype):
        get = dask.delayed(lambda p, name=name: getattr(p.routing, name))
        return da.concatenate(
            [
                da.from_delayed(get(p), shape(n), dtype=dtype)
                for p, n in zip(parts, rows, strict=True)
            ]
        )

    experts = field("experts", lambda n: (n, kk), probe.experts.dtype)
    weights = field("weights", lambda n: (n, kk), probe.weights.dtype)
    ent = field("entropy", lambda n: (n,), probe.entropy.dtype) if stats else None
    glob = dask.delayed(_assemble, nout=6)(parts, starts, T, kk, E, stats, admitted)
    # dropless, every slot is kept; with a capacity, how many are is known
    # only once the chunks are routed: a length of NaN (Dask's unknown size)
    total = T * kk if cap is None else math.nan
    counts = da.from_delayed(glob[0], (E,), dtype=np.int64)
    offsets = da.from_delayed(glob[1], (E + 1,), dtype=np.int64)
    order = da.from_delayed(glob[2], (total,), dtype=np.int64)
    aux, z_loss, imb = (da.from_delayed(glob[i], (), dtype=np.float64) for i in (3, 4, 5))
    if admitted is None:
        dropped = da.zeros((T, kk), dtype=bool, chunks=(rows, kk))
    else:
        dropped = da.concatenate([da.from_delayed(d[0], (n, kk), dtype=bool)
                                  for d, n in zip(admitted, rows, strict=True)])  # fmt: skip
    if not stats:
        aux = z_loss = None
    return Routing(experts, weights, counts, offsets, order, dropped, aux, z_loss, ent, imb, cap)
