"""fastroute on Dask: the single-machine kernels applied block by block.

Install it with ``pip install 'fastroute[dask]'``. Every result is
bit-identical to the single-machine function of the same name on the same
data, for any chunking, sharding, scheduler and number of workers (the
routing statistics within 1e-12).

* Text and ids: :func:`read_corpus` (UTF-8 files, vocabulary in one
  distributed pass), :func:`read_ids` (a saved id stream).
* Counts as CSR row blocks (:class:`CSRBlocks`): :func:`cooccurrence`, then
  :func:`normalize_rows`, :func:`row_entropy`, :func:`top_entropy`,
  :func:`related`, :func:`column_sums`, :func:`top_k`; :func:`analyze` runs
  ``python -m fastroute analyze``'s pipeline on them.
* Dense arrays chunked by rows: :func:`entropy`,
  :func:`entropy_from_logits`, :func:`top_k` (also along a chunked axis),
  :func:`route`.

A block is computed by one Dask task with fastroute's Numba threads: give
each worker one Dask thread and cores / workers Numba threads, as
:func:`local_cluster` does.
"""

from ._base import local_cluster
from .blocks import (
    CSRBlocks,
    column_sums,
    cooccurrence,
    normalize_rows,
    related,
    row_entropy,
    top_entropy,
)  # fmt: skip
from .corpus import Corpus, Shard, analyze, read_corpus, read_ids
from .dense import entropy, entropy_from_logits, route, top_k

__all__ = [
    "CSRBlocks", "Corpus", "Shard", "analyze", "read_corpus", "read_ids", "column_sums", "cooccurrence", "entropy", "entropy_from_logits", "local_cluster", "normalize_rows",
    "related", "route", "row_entropy", "top_entropy", "top_k",
]  # fmt: skip
