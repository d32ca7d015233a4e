"""Argument checks and layout normalisation shared by the public wrappers.

Every error message says what was wrong and how to fix it.
"""

from __future__ import annotations

import functools
import math
import operator
import os
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.lib.array_utils import normalize_axis_index

from .kernels.status import BAD_ALL_INF, BAD_NAN, BAD_POS_INF, EXACT, NEGATIVE, OK

#: what a status of ``kernels.status`` means, after "slice ... " or "token ..."
REASONS = {
    NEGATIVE: "has a negative entry{what}; probabilities and counts must be >= 0",
    BAD_NAN: "has a NaN logit (pass nan='ignore' to treat NaN as -inf)",
    BAD_ALL_INF: "has no eligible expert with a logit above -inf",
    BAD_POS_INF: "has a +inf logit, for which softmax is undefined",
}


def raise_status(status: np.ndarray, func: str, where: Callable[[int], str], what: str = "") -> None:
    """Nothing when every reported status is ``OK`` (``EXACT`` rows are
    internal), else a ``ValueError`` for the first row or token that is
    not: ``where(i)`` names it ("slice (2, 3) (along axis 1)", "token 7"),
    ``what`` qualifies a negative entry (" in p or q")."""
    bad = np.flatnonzero((status != OK) & (status != EXACT))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{func}: {where(i)} {REASONS[int(status[i])].format(what=what)}")


def check_int(v: Any, name: str, func: str, lo: int, hi: int | None = None, why: str = "") -> int:
    """``v`` as a Python int in ``[lo, hi]`` (no upper bound when ``hi`` is
    None); bools and non-integers are a ``TypeError``."""
    if isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{func}: {name} must be an integer, got a bool")
    try:
        v = operator.index(v)
    except TypeError:
        raise TypeError(
            f"{func}: {name} must be an integer, got {type(v).__name__} {v!r}"
        ) from None
    if v < lo or (hi is not None and v > hi):
        need = f"{lo} <= {name}" + (f" <= {hi}" if hi is not None else "")
        raise ValueError(f"{func}: {name}={v} is out of range; need {need}{why}")
    return v


def check_real(v: Any, name: str, func: str, finite: bool = True, what: str = "") -> float:
    """``v`` as a Python float: a real number (bools and other types are a
    ``TypeError``), finite unless ``finite=False`` (an int beyond float64
    is then ``inf``); ``what`` qualifies the message (" in (0, 1]")."""
    if type(v) is float and (math.isfinite(v) or not finite):
        return v
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"{func}: {name} must be a real number{what}, got {type(v).__name__}")
    try:
        f = float(v)
    except OverflowError:  # an int beyond float64
        f = math.inf if v > 0 else -math.inf
    if finite and not math.isfinite(f):
        raise ValueError(f"{func}: {name} must be finite, got {v!r}")
    return f


def check_choice(v: Any, name: str, options: tuple[str, ...], func: str) -> str:
    """``v`` if it is one of ``options``, else a ``ValueError`` naming them."""
    if v not in options:
        opts = " or ".join(repr(o) for o in options)
        raise ValueError(f"{func}: {name} must be {opts}, got {v!r}")
    return v


@functools.lru_cache(maxsize=1)
def physical_memory() -> int:
    """Bytes of physical memory (2**62 when the system does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):  # pragma: no cover - not POSIX
        return 2**62


def check_alloc(nbytes: int, what: str, func: str, fix: str = "") -> None:
    """``ValueError`` before allocating when ``nbytes`` (a Python int, so
    the size computation cannot overflow) is more than the machine's
    physical memory: a size that no machine could hold is an argument
    error, not a ``MemoryError`` halfway through the work."""
    limit = physical_memory()
    if nbytes > limit:
        raise ValueError(
            f"{func}: {what} would need {nbytes / 2**30:.3g} GiB, more than this "
            f"machine's {limit / 2**30:.3g} GiB of memory{fix}"
        )


def check_k(k: Any, n: int, func: str) -> int:
    return check_int(k, "k", func, 0, n, " (the length along axis)")


def check_axis(axis: Any, ndim: int) -> int:
    if isinstance(axis, (bool, np.bool_)):
        raise TypeError("axis must be an integer, got a bool")
    try:
        axis = operator.index(axis)
    except TypeError:
        raise TypeError(f"axis must be an integer, got {type(axis).__name__}") from None
    if not -ndim <= axis < ndim:  # before NumPy sees it: 2**70 is no C long
        raise np.exceptions.AxisError(axis, ndim)
    return normalize_axis_index(axis, ndim)


def check_base(base: Any, func: str) -> float | None:
    if base is None:
        return None
    b = check_real(base, "base", func, finite=False, what=" or None")
    if not (b > 0.0 and b != 1.0 and np.isfinite(b)):
        raise ValueError(f"{func}: base must be positive, finite and not 1, got {base!r}")
    return b


def rows_view(a: np.ndarray, axis: int) -> list[np.ndarray]:
    """2-D views (rows along ``axis``) covering ``a`` in C order of the other axes.

    Usually one view; several only when the leading axes cannot be merged
    without a copy (exotic strides), never a copy of the data.
    """
    if a.ndim == 1:
        return [a[np.newaxis, :]]
    if axis != a.ndim - 1:
        a = np.moveaxis(a, axis, -1)
    if a.ndim == 2:
        return [a]
    n = a.shape[-1]
    try:
        return [a.reshape(-1, n, copy=False)]
    except ValueError:
        return [v for sub in a for v in rows_view(sub, sub.ndim - 1)]


def unravel_row(row: int, lead_shape: tuple[int, ...]) -> tuple[int, ...] | int:
    """Index of a flattened row in the leading (non-reduced) shape."""
    if len(lead_shape) <= 1:
        return row
    return tuple(int(i) for i in np.unravel_index(row, lead_shape))
