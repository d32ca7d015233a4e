"""fastroute: Numba kernels for top-k selection, entropies and token routing.

Public API
----------
top_k                 the k largest/smallest entries along an axis (deterministic ties)
entropy               Shannon entropy of probability or count slices
entropy_from_logits   entropy of softmax(logits), stable for any finite logits
relative_entropy      KL divergence D(p || q) of probability or count slices
cross_entropy         cross-entropy H(p, q) of probability or count slices
kl_from_logits        KL divergence of softmax(z_p / T) from softmax(z_q / T)
cooccurrence          sparse co-occurrence counts of a token stream
normalize_rows        conditional distributions P(j | i) of a count matrix
top_entropy           the k rows (tokens) with the highest entropy
related               the k columns most related to given rows (conditional, PMI, PPMI)
route                 MoE token-choice routing: each token's top-k experts, grouped by expert
expert_choice         MoE expert-choice routing: each expert's top-C tokens
group_by_expert       stable grouping of expert assignments (counting sort)
kernels               the plain ``@njit`` kernels, for use inside your own Numba code

top_k, entropy and entropy_from_logits also take 2-D SciPy sparse matrices.

Nothing is compiled at import: each kernel compiles on first use and is
cached on disk for later processes.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from . import kernels
from .divergence import cross_entropy, kl_from_logits, relative_entropy
from .entropy import entropy, entropy_from_logits
from .moe import Dispatch, combine, dispatch
from .routing import ExpertChoice, Grouping, Routing, expert_choice, group_by_expert, route
from .tokens import cooccurrence, normalize_rows, related, top_entropy
from .topk import TopK, top_k

try:
    __version__ = version("fastroute")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "TopK", "top_k", "entropy", "entropy_from_logits", "relative_entropy", "cross_entropy", "kl_from_logits",
    "cooccurrence", "normalize_rows", "top_entropy", "related",
    "Routing", "route", "ExpertChoice", "expert_choice", "Grouping", "group_by_expert",
    "Dispatch", "dispatch", "combine", "kernels", "__version__",
]  # fmt: skip
