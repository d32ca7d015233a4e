"""The registry of fastroute's dense operations, for the generic tests.

Each ``Op`` says how to call the operation on a batch of rows, how to make
such a batch, the slow NumPy reference of the call and its tolerance, and
how a half float call relates to the same call on the exactly widened
float32 input. ``test_ops.py`` runs every generic property over every
entry; the per-operation test files keep the edge cases of their own
operation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from reference import divergence_ref, entropy_from_logits_ref, entropy_ref, kl_logits_ref, top_k_ref

import fastroute as fr

N = 40  # entries per row: a short-row kernel for most operations


def probs(rows: int, dtype: Any = np.float32, seed: int = 0) -> np.ndarray:
    """Probability-like rows: zeros, ties, a wide range of magnitudes."""
    rng = np.random.default_rng(seed)
    p = rng.random((rows, N)) ** 6
    p[rng.random((rows, N)) < 0.1] = 0.0
    p[:, 7] = p[:, 9]  # ties
    return p.astype(dtype)


def logits(rows: int, dtype: Any = np.float32, seed: int = 1) -> np.ndarray:
    """Logit rows: a normal spread, some ``-inf``, ties."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 4.0, (rows, N))
    z[rng.random((rows, N)) < 0.05] = -np.inf
    z[:, 3] = z[:, 5]
    return z.astype(dtype)


def _q(x: Any) -> Any:
    # a second operand made from each row alone (its entries rotated by one)
    return np.roll(x, 1, axis=1) if isinstance(x, np.ndarray) else x.roll(1, 1)


def _moe(h: Any) -> tuple:
    # route each row by its own first 16 entries, then dispatch and combine
    # the rows themselves (scaled by 2 on the way: an exact change)
    z = np.asarray(h[:, :16], dtype=np.float32) if isinstance(h, np.ndarray) else h[:, :16].float()
    r = fr.route(z, 2)
    d = fr.dispatch(h, r, block_size=4)
    return (fr.combine(d.rows, r, block_size=4),)


@dataclass(frozen=True)
class Op:
    name: str
    call: Callable[[Any], tuple]  # batch -> tuple of row-aligned arrays
    make: Callable[..., np.ndarray]  # (rows, dtype) -> batch
    reference: Callable[[np.ndarray], tuple] | None  # float64 batch -> float64 results
    rtol: float  # of the reference test, for float32 input
    #: the float32 call's results as the half float call must give them
    #: (None: the same bits)
    as_half: Callable[[tuple, Any], tuple] | None = None
    #: rows of the generic tests' batches (enough for parallel chunks when
    #: the executor's threshold is lowered)
    rows: int = 70
    #: whether the results are row-aligned (a row alone gives its bits)
    rowwise: bool = True


def _values_as(half: tuple, dtype: Any) -> tuple:
    return tuple(np.asarray(a).astype(dtype) if np.asarray(a).dtype.kind == "f" else a for a in half)


OPS = [
    Op("top_k", lambda x: tuple(fr.top_k(x, 5)), probs,
       lambda x: tuple(top_k_ref(x, 5)), 0.0, _values_as),
    Op("top_k smallest unsorted", lambda x: tuple(fr.top_k(x, 30, mode="smallest", sorted=False)),
       probs, None, 0.0, _values_as),
    Op("entropy", lambda x: (fr.entropy(x),), probs, lambda x: (entropy_ref(x),), 4 * 2**-24),
    Op("entropy unnormalized base 2", lambda x: (fr.entropy(x, normalize=False, base=2),), probs,
       lambda x: (entropy_ref(x, normalize=False, base=2),), 4 * 2**-24),
    Op("entropy_from_logits", lambda x: (fr.entropy_from_logits(x),), logits,
       lambda x: (entropy_from_logits_ref(x),), 4 * 2**-24),
    Op("relative_entropy", lambda x: (fr.relative_entropy(x, _q(x)),), probs,
       lambda x: (divergence_ref(x, np.roll(x, 1, axis=1)),), 1e-5),
    Op("relative_entropy unnormalized", lambda x: (fr.relative_entropy(x, _q(x), normalize=False),),
       probs, lambda x: (divergence_ref(x, np.roll(x, 1, axis=1), normalize=False),), 1e-5),
    Op("cross_entropy", lambda x: (fr.cross_entropy(x, _q(x)),), probs,
       lambda x: (divergence_ref(x, np.roll(x, 1, axis=1), cross=True),), 1e-5),
    Op("kl_from_logits", lambda x: (fr.kl_from_logits(x, _q(x)),), logits,
       lambda x: (kl_logits_ref(x, np.roll(x, 1, axis=1)),), 1e-5),
    Op("route", lambda z: tuple(fr.route(z, 3, stats=False))[:2], logits, None, 0.0, rows=600),
    Op("route sigmoid groups", lambda z: tuple(
        fr.route(z, 2, scoring="sigmoid", n_groups=4, topk_groups=2, stats=False))[:2],
       logits, None, 0.0, rows=600),
    Op("expert_choice", lambda z: tuple(fr.expert_choice(z, 50))[:3], logits, None, 0.0,
       rows=600, rowwise=False),
    Op("dispatch + combine", _moe, logits, None, 0.0, _values_as),
]  # fmt: skip

BY_NAME = {op.name: op for op in OPS}
