"""Plain ``@njit`` kernels on one 1-D slice, callable from your own Numba code.

Each kernel checks its sizes and indices on entry (a few integer compares
per call, none per element) and raises ``ValueError``, with a fixed message
that names the kernel and the fix, before it would read or write out of
bounds or return a silently wrong answer:

* ``top_k_1d``: ``k`` outside ``0..len(x)``; ``values`` or ``indices``
  shorter than ``k``; an ``indices`` dtype that cannot hold ``len(x) - 1``;
* ``entropy_1d``, ``entropy_logits_1d``: ``work`` shorter than ``WORK_SIZE``;
* ``relative_entropy_1d``: ``p`` and ``q`` of different lengths;
* ``route_1d``: ``k`` outside ``0..len(logits)`` or above the experts of the
  eligible groups; ``experts`` or ``weights`` shorter than ``k``; an
  ``experts`` dtype that cannot hold ``len(logits) - 1``; ``bias`` neither
  empty nor one per expert; ``n_groups > 1`` not dividing ``len(logits)``,
  ``topk_groups < 1``, ``group_top2`` with one expert per group;
* ``gather_row``: ``r`` not a row of ``out``, ``s`` not a row of ``src``
  (``s < 0`` is a padding row), rows of different lengths;
* ``combine_row``: ``t`` not a row of ``w``, ``k`` above ``w.shape[1]``,
  ``pos`` shorter than ``(t + 1) * k``, ``acc`` not of ``x.shape[1]``
  elements, a position at or beyond ``x.shape[0]``.

The values are not checked: NaN, a negative probability or an all-zero row
give NaN (``route_1d``: a status), as each kernel documents. The kernels are
safe inside ``prange`` loops as long as each iteration uses its own output
and ``work`` buffers.

Numba does not carry an exception out of a ``prange`` loop (numba#2811,
numba#9673): the failing iteration's chunk stops, the loop's output is left
partly unwritten, and the call returns without an error (or with a
``SystemError`` whose ``__cause__`` is the ``ValueError``). Nothing is
written out of bounds either way, but inside a ``prange`` loop check the
arguments before the loop (the same few compares) rather than rely on the
error.

top_k_1d(x, k, largest, sort, values, indices)
    top-k of ``x`` into caller-provided ``values``/``indices`` buffers
entropy_1d(p, normalize, work) -> float
    entropy (nats) of probabilities or counts
entropy_logits_1d(z, work) -> float
    entropy (nats) of ``softmax(z)``
relative_entropy_1d(p, q, normalize) -> float
    relative entropy (KL divergence, nats) of two probability or count slices
WORK_SIZE
    length of the float64 ``work`` scratch array the entropy kernels need
route_1d(logits, k, sigmoid, renormalize, bias, n_groups, topk_groups, group_top2,
         scale, experts, weights) -> int
    one token's MoE routing (the rules of ``fastroute.route``) into
    caller-provided ``experts``/``weights``; returns a status (0: routed)
gather_row(src, s, out, r)
    ``out[r] = src[s]`` (zeros for ``s < 0``): one row of ``fastroute.dispatch``
combine_row(x, pos, w, t, k, acc)
    token ``t``'s weighted sum of its rows ``x[pos[t * k + j]]`` into ``acc``:
    one token of ``fastroute.combine``
OK, NEGATIVE, BAD_NAN, BAD_ALL_INF, BAD_POS_INF
    the statuses the kernels return (``route_1d``, ``entropy_status_1d``)

Example
-------
>>> import numba, numpy as np
>>> from fastroute.kernels import entropy_1d, top_k_1d, WORK_SIZE
>>> @numba.njit(parallel=True)
... def most_uncertain_rows(P, k):
...     h = np.empty(P.shape[0])
...     for i in numba.prange(P.shape[0]):
...         h[i] = entropy_1d(P[i], True, np.empty(WORK_SIZE))
...     vals = np.empty(k); idx = np.empty(k, np.intp)
...     top_k_1d(h, k, True, True, vals, idx)
...     return idx
>>> most_uncertain_rows(np.array([[1.0, 0.0], [1.0, 1.0], [3.0, 1.0]]), 2)
array([1, 2])
"""

from .divergence import relative_entropy_1d
from .moe import combine_row, gather_row
from .route import route_1d
from .select import top_k_1d
from .slices import WORK_SIZE, entropy_1d, entropy_logits_1d
from .status import BAD_ALL_INF, BAD_NAN, BAD_POS_INF, NEGATIVE, OK

__all__ = [
    "top_k_1d", "entropy_1d", "entropy_logits_1d", "relative_entropy_1d", "WORK_SIZE", "route_1d",
    "gather_row", "combine_row", "OK", "NEGATIVE", "BAD_NAN", "BAD_ALL_INF", "BAD_POS_INF",
]  # fmt: skip
