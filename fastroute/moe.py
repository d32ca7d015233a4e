"""MoE dispatch and combine: the memory-bound steps around the expert GEMMs.

``route`` chooses each token's experts and the permutation that groups
them; ``dispatch`` gathers the hidden states into expert-grouped rows (each
expert's segment optionally padded for a blocked GEMM), and ``combine``
sums the expert outputs back into their tokens, weighted, in a fixed order.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ._drivers import n_chunks
from ._jit import parallel_guard
from .kernels import moe as K

__all__ = ["Dispatch", "dispatch", "combine"]

_KINDS = ("float32", "float64", "bfloat16", "float16")


class Dispatch(NamedTuple):
    """Result of :func:`dispatch` (``N`` grouped rows, ``E`` experts).

    rows : (N, H), the dtype and kind (NumPy or torch) of ``hidden``
        Expert ``e``'s rows are ``rows[offsets[e]:offsets[e + 1]]``: its
        kept assignments' tokens in token order, then zero rows up to a
        multiple of ``block_size`` (none without one).
    offsets : (E + 1,) int64
        Segment starts and the total (``expert_first_token_offset``).
    ends : (E,) int32
        Cumulative segment ends, as ``torch._grouped_mm(offs=...)`` takes them.
    counts : (E,) int64
        Rows of each expert that hold a token (before padding).
    tokens : (N,) int64
        The token of each row, -1 for padding rows.
    """

    rows: Any
    offsets: np.ndarray
    ends: np.ndarray
    counts: np.ndarray
    tokens: np.ndarray


def _torch():
    import torch

    return torch


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def _bits(x: Any, name: str, func: str) -> tuple[np.ndarray, str]:
    """A 2-D array of rows as a C-contiguous array the kernels read (float32
    and float64 as they are, bfloat16 and float16 as uint16 bits), and its
    kind. Views, except that other layouts are copied to C order once."""
    if _is_torch(x):
        torch = _torch()
        if x.device.type != "cpu":
            raise TypeError(f"{func}: {name} is on {x.device}; move it to the CPU first")
        x = x.detach()
        kinds = {torch.float32: "float32", torch.float64: "float64",
                 torch.bfloat16: "bfloat16", torch.float16: "float16"}  # fmt: skip
        if x.dtype not in kinds:
            raise TypeError(f"{func}: {name} must be float16, bfloat16, float32 or float64, "
                            f"got {x.dtype}")  # fmt: skip
        kind = kinds[x.dtype]
        if x.dim() == 2 and not x.is_contiguous():
            x = x.contiguous()
        a = (
            x.view(torch.int16).numpy().view(np.uint16)
            if kind in ("bfloat16", "float16")
            else x.numpy()
        )
    else:
        try:
            a = np.asarray(x)
        except Exception as exc:  # pragma: no cover - depends on the foreign object
            raise TypeError(f"{func}: cannot convert {name} to an array ({exc})") from None
        kind = "bfloat16" if a.dtype.name == "bfloat16" else a.dtype.name
        if kind not in _KINDS:
            raise TypeError(
                f"{func}: {name} must be float16, bfloat16, float32 or float64, got "
                f"{a.dtype}; convert it, e.g. {name}.astype(np.float32)"
            )
        if not a.dtype.isnative:
            a = a.astype(a.dtype.newbyteorder("="))
        if kind in ("bfloat16", "float16"):
            a = a.view(np.uint16)
    if a.ndim != 2:
        raise ValueError(f"{func}: {name} must be 2-D (rows, hidden), got shape {a.shape}")
    if not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    return a, kind


def _empty(shape: tuple[int, int], kind: str, like: Any) -> tuple[Any, np.ndarray]:
    # a new array of kind (torch when like is torch) and its bits view
    if _is_torch(like):
        torch = _torch()
        t = torch.empty(shape, dtype=getattr(torch, kind))
        return t, _bits(t, "out", "")[0]
    if kind == "bfloat16":
        import ml_dtypes

        a = np.empty(shape, ml_dtypes.bfloat16)
        return a, a.view(np.uint16)
    a = np.empty(shape, kind)
    return a, (a.view(np.uint16) if kind == "float16" else a)


def _out(out: Any, shape: tuple[int, int], kind: str, inputs: tuple, func: str):
    # a caller's array written in place: the right shape and kind, C order,
    # not overlapping an input
    if _is_torch(out) and (out.device.type != "cpu" or not out.is_contiguous()):
        raise ValueError(f"{func}: out must be a contiguous CPU tensor")
    if not _is_torch(out) and not (isinstance(out, np.ndarray) and out.flags.c_contiguous
                                   and out.flags.writeable):  # fmt: skip
        raise ValueError(f"{func}: out must be a writeable C-contiguous NumPy array or CPU tensor")
    bits, okind = _bits(out, "out", func)
    if okind != kind or tuple(bits.shape) != shape:
        raise ValueError(
            f"{func}: out must be {kind} of shape {shape}, got {okind} of shape {tuple(bits.shape)}"
        )
    for a in inputs:
        if np.shares_memory(bits, a):
            raise ValueError(f"{func}: out overlaps an input; pass a separate array")
    return out, bits


def _layout(routing: Any, T: int, func: str, block_size: int | None, with_tokens: bool):
    """Checked routing arrays and the grouped layout: for each slot
    ``t * k + j`` its row (-1 when dropped), for each row its token (-1 for
    padding; empty unless ``with_tokens``), the padded offsets and the
    counts."""
    try:
        experts, order, offsets = routing.experts, routing.order, routing.offsets
    except AttributeError:
        raise TypeError(
            f"{func}: routing must be the Routing that fastroute.route returned"
        ) from None
    order = np.asarray(order)
    offsets = np.asarray(offsets)
    if np.ndim(experts) != 2 or order.ndim != 1 or offsets.ndim != 1 or offsets.size < 1:
        raise ValueError(f"{func}: routing is malformed (experts, order or offsets shape)")
    Tr, k = np.shape(experts)
    if Tr != T:
        raise ValueError(f"{func}: the routing is for {Tr} tokens, the rows for {T}; pass the "
                         "routing of these tokens")  # fmt: skip
    if order.dtype.kind not in "iu" or offsets.dtype.kind not in "iu":
        raise ValueError(f"{func}: routing.order and routing.offsets must be integer arrays")
    if block_size is None:
        block = 1
    elif isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)):
        raise TypeError(f"{func}: block_size must be an integer, got {block_size!r}")
    elif not 1 <= block_size <= 2**31:
        raise ValueError(f"{func}: block_size must be in [1, 2**31], got {block_size}")
    else:
        block = int(block_size)
    order = order.astype(np.int64, copy=False)
    bad, counts, poff, tokens, slot_row = K.grouped_layout(
        order, offsets.astype(np.int64, copy=False), block, max(k, 1), T * k, with_tokens
    )
    if bad == 1:
        raise ValueError(f"{func}: routing.offsets must rise from 0 to len(order) = {order.size}")
    if bad == 2:
        raise ValueError(f"{func}: {int(poff[-1])} grouped rows do not fit the int32 ends")
    if bad:
        s = int(order[-1 - bad])
        why = "outside [0, T * k)" if not 0 <= s < T * k else "twice"
        raise ValueError(f"{func}: routing.order has slot {s} {why} (T = {T}, k = {k}); "
                         "it is not this batch's routing")  # fmt: skip
    return k, counts, poff, tokens, slot_row


def dispatch(
    hidden: Any, routing: Any, /, *, block_size: int | None = None, out: Any = None
) -> Dispatch:
    """The hidden states grouped by expert for the expert GEMMs.

    Parameters
    ----------
    hidden : (T, H) float32, float64, bfloat16 or float16
        NumPy (``ml_dtypes.bfloat16`` for bfloat16) or a CPU torch tensor.
        Read as raw bits (no conversion); another layout is copied to C order
        once.
    routing : Routing
        ``fastroute.route`` of these T tokens. Dropped assignments
        (capacity) are not dispatched.
    block_size : int, optional
        Pad each expert's segment with zero rows to a multiple of it.
    out : array or tensor, optional
        ``(N, H)`` of ``hidden``'s dtype, written in place (must not overlap
        ``hidden``).

    Returns
    -------
    Dispatch(rows, offsets, ends, counts, tokens)
        ``rows[i] = hidden[tokens[i]]`` (zeros where ``tokens[i] = -1``).
        Each row is a copy of the same bits for any thread count.

    Examples
    --------
    >>> import numpy as np, fastroute as fr
    >>> r = fr.route(np.array([[2.0, 0.0, 1.0], [0.0, 3.0, 1.0]], np.float32), 1)
    >>> d = fr.dispatch(np.array([[1.0, 2.0], [3.0, 4.0]], np.float32), r, block_size=2)
    >>> d.rows.tolist(), d.offsets.tolist(), d.ends.tolist(), d.tokens.tolist()
    ([[1.0, 2.0], [0.0, 0.0], [3.0, 4.0], [0.0, 0.0]], [0, 2, 4, 4], [2, 4, 4], [0, -1, 1, -1])
    """
    func = "dispatch"
    src, kind = _bits(hidden, "hidden", func)
    T, H = src.shape
    k, counts, poff, tokens, _ = _layout(routing, T, func, block_size, True)
    N = int(poff[-1])
    if out is None:
        rows, bits = _empty((N, H), kind, hidden)
    else:
        rows, bits = _out(out, (N, H), kind, (src,), func)
    if N and H:
        with parallel_guard(N * H) as par:
            if par:
                K.gather_parallel(src, tokens, bits, n_chunks(N))
            else:
                K.gather_rows(src, tokens, bits, 0, N)
    return Dispatch(rows, poff, poff[1:].astype(np.int32), counts, tokens)


def combine(
    expert_out: Any, routing: Any, /, *, block_size: int | None = None, out: Any = None
) -> Any:
    """The expert outputs summed back into their tokens.

    ``out[t] = sum_j weights[t, j] * expert_out[row(t, j)]`` over the kept
    slots, ``j = 0 ... k - 1`` in that order, each product and sum rounded
    to float32 (float64 for float64 rows) and the result rounded once to
    the rows' dtype (nearest even), so the result is the same bits for any
    thread count and any split of the batch. Dropped slots contribute
    nothing; a token with no kept slot gets zeros.

    Parameters
    ----------
    expert_out : (N, H) float32, float64, bfloat16 or float16
        In :func:`dispatch`'s row layout (the same ``block_size``); padding
        rows are never read.
    routing : Routing
        The routing ``expert_out`` was dispatched with.
    block_size : int, optional
        The ``block_size`` given to ``dispatch``.
    out : array or tensor, optional
        ``(T, H)`` of ``expert_out``'s dtype, written in place.

    Returns
    -------
    (T, H) array of ``expert_out``'s dtype and kind (NumPy or torch).

    Examples
    --------
    >>> import numpy as np, fastroute as fr
    >>> r = fr.route(np.array([[2.0, 0.0, 1.0], [0.0, 3.0, 3.0]], np.float32), 2)
    >>> d = fr.dispatch(np.eye(2, dtype=np.float32), r)
    >>> fr.combine(d.rows * 10, r).round(2)
    array([[10.,  0.],
           [ 0., 10.]], dtype=float32)
    """
    func = "combine"
    x, kind = _bits(expert_out, "expert_out", func)
    weights = np.asarray(routing.weights) if hasattr(routing, "weights") else None
    if weights is None:
        raise TypeError(f"{func}: routing must be the Routing that fastroute.route returned")
    T = weights.shape[0] if weights.ndim == 2 else -1
    k, _, poff, _, slot_row = _layout(routing, T, func, block_size, False)
    N, H = x.shape
    if N != int(poff[-1]):
        raise ValueError(
            f"{func}: expert_out has {N} rows, the routing's grouped layout {int(poff[-1])}"
            + ("" if block_size else " (pass the block_size given to dispatch)")
        )
    if weights.shape != (T, k):
        raise ValueError(f"{func}: routing.weights must be ({T}, {k})")
    acc_t = np.float64 if kind == "float64" else np.float32
    w = np.ascontiguousarray(weights, acc_t)
    if out is None:
        res, bits = _empty((T, H), kind, expert_out)
    else:
        res, bits = _out(out, (T, H), kind, (x,), func)
    if T and H:
        with parallel_guard(T * H * max(k, 1)) as par:
            nc = n_chunks(T)
            if kind in ("float32", "float64"):
                stream = bits.nbytes >= _STREAM_BYTES
                if par:
                    K.combine_parallel(x, slot_row, w, k, bits, nc, stream)
                else:
                    K.combine_rows(x, slot_row, w, k, bits, np.empty(H, acc_t), 0, T, stream)
            elif kind == "bfloat16":
                if par:
                    K.combine_bf16_parallel(x, slot_row, w, k, bits, nc)
                else:
                    K.combine_rows_bf16(x, slot_row, w, k, bits, np.empty(H, np.float32), 0, T)
            elif par:
                K.combine_f16_parallel(x, slot_row, w, k, bits, _f16(), nc)
            else:
                K.combine_rows_f16(x, slot_row, w, k, bits, np.empty(H, np.float32), _f16(), 0, T)
    return res


#: float32/float64 outputs of at least this many bytes are written with
#: streaming stores, which skip reading each line before writing it (up to
#: 30% faster at 64 MiB and more on this project's benchmark machine); a
#: smaller output would still be in cache for the caller, and a streaming
#: store would evict it.
_STREAM_BYTES = 32 << 20

_F16: list[np.ndarray] = []


def _f16() -> np.ndarray:
    if not _F16:
        _F16.append(K.f16_table())
    return _F16[0]
