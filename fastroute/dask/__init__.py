"""fastroute on Dask arrays: the single-machine kernels applied block by block.

Install it with ``pip install 'fastroute[dask]'``. Every function here takes
a 2-D array whose rows may be split into any number of chunks along axis 0
but whose reduced axis (axis 1) is one chunk, runs the fastroute function of
the same name on each block, and returns Dask arrays with the same chunks
along axis 0. Each row's result depends on that row alone, so the result is
bit-identical to the single-machine function on the whole array, for any
chunking and any scheduler.

A block is computed by one Dask task, and fastroute's kernels run it with
Numba's threads: under Dask's threaded scheduler (or a worker with several
threads) set ``numba.set_num_threads(1)`` in each worker, or give each
worker one thread, so that Dask threads × Numba threads does not exceed the
cores.
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
