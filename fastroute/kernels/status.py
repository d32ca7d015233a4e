"""The one vocabulary of statuses the kernels leave for each row or token.

A kernel writes ``OK`` or the reason it could not give a result; the
wrappers turn the first non-``OK`` status into a ``ValueError`` with the
message of :data:`fastroute._validate.REASONS`. ``EXACT`` is internal: the
row is computed again by the exact kernel and is never reported.
"""

from __future__ import annotations

__all__ = ["OK", "NEGATIVE", "EXACT", "BAD_NAN", "BAD_ALL_INF", "BAD_POS_INF"]

OK = 0
#: a negative probability or count (entropies, divergences)
NEGATIVE = 1
#: internal: a row a one-pass kernel leaves to the exact one
EXACT = 2
#: a NaN logit (routing, without ``nan="ignore"``)
BAD_NAN = 3
#: no eligible expert with a logit above -inf (routing)
BAD_ALL_INF = 4
#: a +inf logit, for which softmax is undefined (routing)
BAD_POS_INF = 5
