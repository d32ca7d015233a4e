"""MoE dispatch and combine: the memory-bound steps around the expert GEMMs.

``route`` chooses each token's experts and the permutation that groups
them; ``dispatch`` gathers the hidden states into expert-grouped rows (each
expert's segment optionally padded for a blocked GEMM), and ``combine``
sums the expert outputs back into their tokens, weighted, in a fixed order.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ._dtypes import HALF, KINDS, float_array, half_array, is_torch, to_float, to_numpy
from ._execute import run
from ._validate import check_alloc, check_int, physical_memory
from .kernels import moe as K

__all__ = ["Dispatch", "dispatch", "combine"]



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


def _bits(x: Any, name: str, func: str) -> tuple[np.ndarray, str]:
    """A 2-D array of rows as the kernels read it (``_dtypes`` kernel
    views: bfloat16 and float16 as their bits) and its kind: a view, in any
    layout (the caller makes it C-contiguous)."""
    if not is_torch(x):
        x = _asarray(x, name, func, "2-D array (rows, hidden)")
    a = float_array(x, func, name, f"{name}.astype(np.float32)")
    if a.ndim != 2:
        raise ValueError(f"{func}: {name} must be 2-D (rows, hidden), got shape {a.shape}")
    return a, KINDS[a.dtype]


def _raw(a: np.ndarray) -> np.ndarray:
    """What a copy or a write goes through: half floats as ``uint16`` bits."""
    return a.view(np.uint16) if a.dtype in HALF else a


def _asarray(x: Any, name: str, func: str, what: str) -> np.ndarray:
    # np.asarray with the function's own message for what NumPy refuses
    # (ragged nested lists, objects that are no arrays)
    try:
        return np.asarray(x)
    except Exception:
        raise ValueError(
            f"{func}: {name} ({type(x).__name__}) is not a rectangular array; pass a {what}"
        ) from None


def _routing_array(routing: Any, field: str, func: str) -> np.ndarray:
    """``routing.<field>`` as a NumPy array (a view where possible)."""
    try:
        x = getattr(routing, field)
    except AttributeError:
        raise TypeError(
            f"{func}: routing must be the Routing that fastroute.route returned"
        ) from None
    if type(x) is np.ndarray:
        return x
    name = f"routing.{field}"
    if is_torch(x):
        a = to_numpy(x, name, func)
        return to_float(a, np.float32) if a.dtype in HALF else a  # exact
    return _asarray(x, name, func, "NumPy array (the Routing that fastroute.route returned)")


def _integer(a: np.ndarray, ndim: int, name: str, func: str) -> None:
    if a.ndim != ndim:
        raise ValueError(
            f"{func}: {name} must be {ndim}-D, got shape {a.shape}; pass the Routing "
            "that fastroute.route returned"
        )
    if a.dtype.kind not in "iu":
        raise TypeError(
            f"{func}: {name} must be an integer array, got dtype {a.dtype}; pass the "
            "Routing that fastroute.route returned"
        )


def _named(experts: np.ndarray, order: np.ndarray, offsets: np.ndarray) -> tuple:
    return (("routing.experts", experts), ("routing.order", order), ("routing.offsets", offsets))


def _overlaps(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether ``a`` and ``b`` share a byte, exactly. Two contiguous arrays
    share memory exactly when their byte ranges overlap (a bounds test,
    O(1)); a strided one goes to NumPy's exact solver (cheap for the 1-D
    and 2-D arrays here)."""
    if not np.may_share_memory(a, b):
        return False
    dense = (a.flags.c_contiguous or a.flags.f_contiguous) and (
        b.flags.c_contiguous or b.flags.f_contiguous
    )
    return dense or np.shares_memory(a, b)


def _empty(shape: tuple[int, int], kind: str, like: Any) -> tuple[Any, np.ndarray]:
    # a new array of kind (torch when like is torch) and its bits view
    if is_torch(like):
        import torch

        t = torch.empty(shape, dtype=getattr(torch, kind))
        return t, _raw(to_numpy(t, "out", ""))
    bits = np.empty(shape, next(d for d, name in KINDS.items() if name == kind))
    return (half_array(bits) if bits.dtype in HALF else bits), _raw(bits)


def _out(out: Any, shape: tuple[int, int], kind: str, inputs: tuple, func: str):
    # a caller's array written in place: the right shape and kind, C order,
    # sharing no memory with any input
    if is_torch(out):
        if str(out.layout) != "torch.strided" or out.device.type != "cpu" or not out.is_contiguous():
            raise ValueError(f"{func}: out must be a dense, contiguous CPU tensor")
        if out.requires_grad:
            raise ValueError(
                f"{func}: out requires grad, and an in-place write would bypass autograd; "
                "pass a tensor that does not (e.g. torch.empty(...))"
            )
    elif not (isinstance(out, np.ndarray) and out.flags.c_contiguous and out.flags.writeable):
        raise ValueError(f"{func}: out must be a writeable C-contiguous NumPy array or CPU tensor")
    bits, okind = _bits(out, "out", func)
    bits = _raw(bits)
    if okind != kind or tuple(bits.shape) != shape:
        raise ValueError(
            f"{func}: out must be {kind} of shape {shape}, got {okind} of shape {tuple(bits.shape)}"
        )
    for name, a in inputs:
        if _overlaps(bits, a):
            raise ValueError(f"{func}: out shares memory with {name}; pass a separate array")
    return out, bits


def _routing(routing: Any, func: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The routing's ``experts``, ``order`` and ``offsets``, checked to be
    integer arrays of the right number of dimensions."""
    experts = _routing_array(routing, "experts", func)
    order = _routing_array(routing, "order", func)
    offsets = _routing_array(routing, "offsets", func)
    _integer(experts, 2, "routing.experts", func)
    _integer(order, 1, "routing.order", func)
    _integer(offsets, 1, "routing.offsets", func)
    if offsets.size < 1:
        raise ValueError(
            f"{func}: routing.offsets is empty; pass the Routing that fastroute.route returned "
            "(its offsets hold E + 1 segment bounds)"
        )
    return experts, order, offsets


def _layout(
    experts: np.ndarray, order: np.ndarray, offsets: np.ndarray, T: int, func: str,
    block_size: Any, with_tokens: bool, fixed: int, per_row: int,
):  # fmt: skip
    """The grouped layout, checked: ``k``, and for each slot ``t * k + j``
    its row (-1 when dropped), for each row its token (-1 for padding;
    empty unless ``with_tokens``), the padded offsets and the counts.

    ``fixed + per_row * rows`` bytes (Python ints) are what the call will
    allocate, the layout's own arrays included: more than this machine's
    memory is a ``ValueError`` before anything that size is allocated."""
    Tr, k = experts.shape
    if Tr != T:
        raise ValueError(f"{func}: the routing is for {Tr} tokens, the rows for {T}; pass the "
                         "routing of these tokens")  # fmt: skip
    block = 1 if block_size is None else check_int(
        block_size, "block_size", func, 1, 2**31, " (None: no padding)"
    )  # fmt: skip
    fix = "; pass the Routing that fastroute.route returned for these tokens"
    nslots = T * k
    fixed += nslots * 8  # the slot -> row table
    check_alloc(fixed, f"a routing of {T} tokens x k = {k}", func, fix)
    limit = physical_memory()
    max_rows = min(2**31 - 1, (limit - fixed) // per_row if per_row else 2**31 - 1)
    bad, counts, poff, tokens, slot_row = K.grouped_layout(
        order.astype(np.int64, copy=False), offsets.astype(np.int64, copy=False), block,
        max(k, 1), nslots, with_tokens, max_rows,
    )  # fmt: skip
    if bad == 1:
        raise ValueError(f"{func}: routing.offsets must rise from 0 to len(order) = {order.size}")
    if bad == 2:
        N = int(poff[-1])
        if N >= 2**31:
            raise ValueError(f"{func}: {N} grouped rows do not fit the int32 ends"
                             + ("" if block == 1 else "; use a smaller block_size"))  # fmt: skip
        check_alloc(fixed + per_row * N, f"{N} grouped rows", func,
                    "" if block == 1 else "; use a smaller block_size")  # fmt: skip
        raise AssertionError("unreachable: the rows fit")  # pragma: no cover
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
        Pad each expert's segment with zero rows to a multiple of it. A
        layout of more rows than the int32 ``ends`` hold, or larger than
        this machine's memory, is a ``ValueError`` before any allocation.
    out : array or tensor, optional
        ``(N, H)`` of ``hidden``'s dtype, written in place. It must not
        share memory with ``hidden`` or any array of ``routing``
        (``ValueError``; the test is exact: a bounds test for two contiguous
        arrays, ``np.shares_memory`` for a strided one).

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
    view, kind = _bits(hidden, "hidden", func)
    T, H = view.shape
    experts, order, offsets = _routing(routing, func)
    # per grouped row: its token (int64) and, unless written into out, the row
    per_row = 8 + (H * view.itemsize if out is None else 0)
    k, counts, poff, tokens, _ = _layout(
        experts, order, offsets, T, func, block_size, True, 0, per_row
    )  # fmt: skip
    N = int(poff[-1])
    if out is None:
        rows, bits = _empty((N, H), kind, hidden)
    else:
        rows, bits = _out(out, (N, H), kind, (("hidden", view), *_named(experts, order, offsets)),
                          func)  # fmt: skip
    src = _raw(np.ascontiguousarray(view))  # a copy only for another layout
    if N and H:
        run(K.gather_rows, (src, tokens, bits), N, N * H // _COPY_COST)
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
        ``(T, H)`` of ``expert_out``'s dtype, written in place. It must not
        share memory with ``expert_out`` or any array of ``routing``, the
        weights included (``ValueError``; the same exact test as
        :func:`dispatch`'s).

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
    view, kind = _bits(expert_out, "expert_out", func)
    N, H = view.shape
    experts, order, offsets = _routing(routing, func)
    weights = _routing_array(routing, "weights", func)
    if not (weights.dtype.kind in "biuf" or weights.dtype.name == "bfloat16"):
        raise TypeError(
            f"{func}: routing.weights must be real numbers, got dtype {weights.dtype}; pass "
            "the Routing that fastroute.route returned"
        )
    if weights.shape != experts.shape:
        raise ValueError(
            f"{func}: routing.weights has shape {weights.shape}, routing.experts "
            f"{experts.shape}; pass the Routing that fastroute.route returned (both (tokens, k))"
        )
    T = weights.shape[0]
    acc_t = np.float64 if kind == "float64" else np.float32
    # the weights in the sum's precision and, unless written into out, the result
    fixed = weights.size * (8 if kind == "float64" else 4)
    fixed += T * H * view.itemsize if out is None else 0
    k, _, poff, _, slot_row = _layout(
        experts, order, offsets, T, func, block_size, False, fixed, 0
    )  # fmt: skip
    if N != int(poff[-1]):
        raise ValueError(
            f"{func}: expert_out has {N} rows, the routing's grouped layout {int(poff[-1])}"
            + ("" if block_size else " (pass the block_size given to dispatch)")
        )
    if out is None:
        res, bits = _empty((T, H), kind, expert_out)
    else:
        inputs = (("expert_out", view), ("routing.weights", weights),
                  *_named(experts, order, offsets))  # fmt: skip
        res, bits = _out(out, (T, H), kind, inputs, func)
    x = np.ascontiguousarray(view)  # a copy only for another layout
    w = np.ascontiguousarray(weights, acc_t)
    if T and H:
        work = T * H * max(k, 1) // _COPY_COST
        if x.dtype in HALF:
            run(K.combine_rows_half, (x, slot_row, w, k, bits), T, work)
        else:
            stream = bits.nbytes >= _STREAM_BYTES
            run(K.combine_rows, (x, slot_row, w, k, bits, stream), T, work)
    return res


#: elements copied per element-equivalent of the executor's work: a copy
#: is cheaper than the log or exp the threshold is measured in (measured:
#: 64 tokens x k = 8 x H = 1024 run faster on one thread than on the pool)
_COPY_COST = 4

#: float32/float64 outputs of at least this many bytes are written with
#: streaming stores, which skip reading each line before writing it (up to
#: 30% faster at 64 MiB and more on this project's benchmark machine); a
#: smaller output would still be in cache for the caller, and a streaming
#: store would evict it.
_STREAM_BYTES = 32 << 20
