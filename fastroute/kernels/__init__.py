"""Plain ``@njit`` kernels on one 1-D slice, callable from your own Numba code.

They do no argument checking (Numba does no bounds checks): pass valid
arguments as documented. They are safe inside ``prange`` loops as long as each
iteration uses its own output and ``work`` buffers.

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
from .entropy import WORK_SIZE, entropy_1d, entropy_logits_1d
from .moe import combine_row, gather_row
from .route import route_1d
from .select import top_k_1d

__all__ = [
    "top_k_1d", "entropy_1d", "entropy_logits_1d", "relative_entropy_1d", "WORK_SIZE", "route_1d",
    "gather_row", "combine_row",
]  # fmt: skip
