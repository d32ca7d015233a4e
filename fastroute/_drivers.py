"""The chunk count of the ``prange`` loops not yet on ``_execute`` (moe,
tokens and the sparse kernels)."""

from __future__ import annotations

import numba


def n_chunks(nrows: int) -> int:
    """Chunks for a parallel launch: enough for load balance on a noisy machine."""
    return max(1, min(nrows, 16 * numba.get_num_threads()))
