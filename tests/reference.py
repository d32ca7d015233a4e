"""Slow, obviously-correct reference implementations for the test suite.

Nothing here is clever: every slice is handled by plain Python (a sort with an
explicit key, or an mpmath sum at 200 bits). Speed does not matter; the
functions are only ever called on small test arrays.
"""

from __future__ import annotations

import builtins
import math

import mpmath
import numpy as np

__all__ = [
    "REF_PREC",
    "top_k_ref",
    "entropy_ref",
    "entropy_from_logits_ref",
    "entropy_row_exact",
    "logits_row_exact",
    "as_exact_numbers",
    "same_values",
    "assert_close",
    "explicit_top_k_ref",
    "cooccurrence_ref",
    "normalize_rows_ref",
    "related_ref",
]

#: Working precision (bits) of every mpmath computation here.
REF_PREC = 200


def as_exact_numbers(row: np.ndarray) -> list:
    """The entries of a 1-D array as exact Python numbers.

    Integers and bools become ``int`` (no rounding even for int64/uint64),
    floats become ``float`` (float16/float32 widen exactly).
    """
    if row.dtype.kind in "biu":
        return [int(v) for v in row]
    return [float(v) for v in row]


def _move_last(x: np.ndarray, axis: int) -> np.ndarray:
    return np.moveaxis(x, axis, -1)


# --------------------------------------------------------------------------- top-k


def top_k_ref(x, k: int, axis: int = -1, mode: str = "largest", sorted: bool = True):
    """Reference ``top_k``: returns ``(values, indices)``.

    Each slice along ``axis`` is sorted with the key ``(isnan, ±value, index)``:

    * ``mode="largest"``: numbers by value descending, ``mode="smallest"``:
      ascending. ``-0.0`` and ``+0.0`` compare equal (Python ``-0.0 == 0.0``);
      ``±inf`` are ordinary values. Integers are compared exactly.
    * equal values: the lower index first.
    * NaN (whatever its sign bit) ranks after every number in both modes, so
      it only appears when needed to fill ``k``; NaNs among themselves by index.

    ``values[..., j] = x[..., indices[..., j]]`` keeps the input dtype and bits;
    ``indices`` are ``np.intp``; both are shaped like ``x`` with ``axis``
    replaced by ``k`` and C-contiguous. ``sorted`` is accepted for symmetry and
    ignored: the reference result is always in rank order (an unsorted result
    must hold the same set of pairs).
    """
    del sorted
    a = np.asarray(x)
    if mode not in ("largest", "smallest"):
        raise ValueError(mode)
    sign = -1 if mode == "largest" else 1
    moved = _move_last(a, axis)
    lead = moved.shape[:-1]
    values = np.empty(lead + (k,), a.dtype)
    indices = np.empty(lead + (k,), np.intp)
    for pos in np.ndindex(*lead):
        row = moved[pos]
        nums = as_exact_numbers(row)

        def key(i, nums=nums):
            v = nums[i]
            if v != v:  # NaN: after every number, by index
                return (1, 0, i)
            return (0, sign * v, i)

        order = builtins.sorted(range(len(nums)), key=key)[:k]
        indices[pos] = order
        values[pos] = row[np.asarray(order, np.intp)]
    values = np.ascontiguousarray(np.moveaxis(values, -1, axis))
    indices = np.ascontiguousarray(np.moveaxis(indices, -1, axis))
    return values, indices


def same_values(a: np.ndarray, b: np.ndarray) -> bool:
    """True when ``a`` and ``b`` have equal dtype and shape and hold the same
    values: floats are equal as numbers with the same sign bit (so ``-0.0`` and
    ``+0.0`` differ), or both NaN (any payload, any sign)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.kind != "f":
        return bool(np.array_equal(a, b))
    na, nb = np.isnan(a), np.isnan(b)
    if not np.array_equal(na, nb):
        return False
    ok = ~na
    return bool(
        np.array_equal(a[ok], b[ok]) and np.array_equal(np.signbit(a[ok]), np.signbit(b[ok]))
    )


# --------------------------------------------------------------------------- entropy


def entropy_row_exact(row: np.ndarray, normalize: bool = True, base=None):
    """Exact entropy (an ``mpmath.mpf`` at ``REF_PREC`` bits, or ``nan``/``inf``)
    of one 1-D slice, taking every entry as the exact number it stores.

    Rules:

    * a negative entry (``-inf`` included; ``-0.0`` and ``-nan`` are *not*
      negative) raises ``ValueError``;
    * otherwise a NaN or ``+inf`` anywhere gives NaN;
    * zeros contribute exactly 0 (``0 log 0 = 0``);
    * ``normalize=True``: ``H = sum_i (p_i/S) log(S/p_i)`` with ``S = sum p``,
      i.e. the entropy of ``p/S`` (``scipy.stats.entropy``); an all-zero or
      empty slice gives NaN;
    * ``normalize=False``: ``H = -sum_i p_i log p_i`` of the entries as given;
      an all-zero or empty slice gives 0;
    * ``base``: the result is divided by ``log(base)``.
    """
    nums = as_exact_numbers(np.asarray(row))
    if any(v < 0 for v in nums):  # NaN < 0 is False, -0.0 < 0 is False
        raise ValueError("negative entry")
    if any(v != v or v == math.inf for v in nums):
        return math.nan
    with mpmath.workprec(REF_PREC):
        ps = [mpmath.mpf(v) for v in nums if v != 0]
        if normalize:
            if not ps:
                return math.nan
            s = mpmath.fsum(ps)
            h = mpmath.fsum((p / s) * mpmath.log(s / p) for p in ps)
        else:
            h = mpmath.fsum(-p * mpmath.log(p) for p in ps) if ps else mpmath.mpf(0)
        if base is not None:
            h = h / mpmath.log(mpmath.mpf(float(base)))
        return h


def logits_row_exact(row: np.ndarray, base=None):
    """Exact entropy of ``softmax(row)`` (``mpmath.mpf`` at ``REF_PREC`` bits,
    or ``nan``), taking every entry as the exact number it stores.

    Rules: ``-inf`` is probability 0; an empty slice, an all-``-inf`` slice or
    any NaN or ``+inf`` gives NaN. With ``M`` the largest logit,
    ``q_i = exp(z_i - M)`` and ``W = sum q``:
    ``H = sum_i (q_i/W) * (log W + (M - z_i))`` (every term >= 0, no overflow
    for any finite logits since mpmath has an unbounded exponent).
    """
    nums = as_exact_numbers(np.asarray(row))
    if not nums or any(v != v or v == math.inf for v in nums):
        return math.nan
    finite = [v for v in nums if v != -math.inf]
    if not finite:
        return math.nan
    with mpmath.workprec(REF_PREC):
        zs = [mpmath.mpf(v) for v in finite]
        m = max(zs)
        qs = [mpmath.exp(z - m) for z in zs]
        w = mpmath.fsum(qs)
        logw = mpmath.log(w)
        h = mpmath.fsum((q / w) * (logw + (m - z)) for q, z in zip(qs, zs, strict=True))
        if base is not None:
            h = h / mpmath.log(mpmath.mpf(float(base)))
        return h


def _apply_rows(x, axis, fn):
    a = np.asarray(x)
    moved = _move_last(a, axis)
    lead = moved.shape[:-1]
    out = np.empty(lead, np.float64)
    for pos in np.ndindex(*lead):
        out[pos] = float(fn(moved[pos]))
    return out


def _as_float64_if_int(a: np.ndarray) -> np.ndarray:
    # The kernels accumulate in float64: integers are first converted to
    # float64 (rounding beyond 2**53), so the reference does the same.
    return a.astype(np.float64) if a.dtype.kind in "biu" else a


def entropy_ref(p, axis: int = -1, base=None, normalize: bool = True) -> np.ndarray:
    """Reference ``entropy``: float64 array shaped like ``p`` without ``axis``.

    Every slice is ``entropy_row_exact`` rounded to float64 (see there for the
    zero / NaN / inf / empty rules). Integer input is first converted to
    float64, as the kernels do. A negative entry anywhere raises
    ``ValueError`` naming the first offending slice (C order of the other
    axes), like the public function. The result dtype is always float64: the
    caller checks the float32 rule separately.
    """
    a = _as_float64_if_int(np.asarray(p))
    moved = _move_last(a, axis)
    for pos in np.ndindex(*moved.shape[:-1]):
        if any(v < 0 for v in as_exact_numbers(moved[pos])):
            raise ValueError(f"slice {pos} has a negative entry")
    return _apply_rows(a, axis, lambda r: entropy_row_exact(r, normalize, base))


def entropy_from_logits_ref(z, axis: int = -1, base=None) -> np.ndarray:
    """Reference ``entropy_from_logits``: float64 array shaped like ``z``
    without ``axis``; every slice is ``logits_row_exact`` rounded to float64.
    Integer input is first converted to float64, as the kernels do."""
    a = _as_float64_if_int(np.asarray(z))
    return _apply_rows(a, axis, lambda r: logits_row_exact(r, base))


# --------------------------------------------------------------------------- accuracy rule


def assert_close(got, ref, scale=None) -> None:
    """Accuracy rule of the contract, ``ref`` being the exact results rounded
    to float64 (``entropy_ref`` / ``entropy_from_logits_ref``).

    float64 results: ``|got - ref| <= 1e-12 * scale + 2e-15`` with ``scale``
    defaulting to ``|ref|``; float32 results: within 4 float32 ulp of ``ref``
    (or, when ``scale`` is given for sums with cancellation, 1e-12 * scale).
    NaN exactly where the reference is NaN; infinities equal.
    """
    got = np.asarray(got)
    ref = np.asarray(ref, np.float64)
    assert got.shape == ref.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    ok = ~np.isnan(ref)
    g = got[ok].astype(np.float64)
    r = ref[ok]
    s = np.abs(r) if scale is None else np.asarray(scale, np.float64)[ok]
    if got.dtype == np.float32:
        with np.errstate(over="ignore"):
            r32 = r.astype(np.float32)  # beyond the float32 range: rounds to inf
        inf = np.isinf(r32)
        np.testing.assert_array_equal(g[inf], r32[inf])
    else:
        inf = np.isinf(r)
        np.testing.assert_array_equal(g[inf], r[inf])
    g, r, s = g[~inf], r[~inf], s[~inf]
    if got.dtype == np.float32:
        ulp = np.spacing(np.abs(r).astype(np.float32)).astype(np.float64)
        tol = np.maximum(4 * ulp, 1e-12 * s) if scale is not None else 4 * ulp
    else:
        tol = 1e-12 * s + 2e-15
    err = np.abs(g - r)
    bad = err > tol
    assert not bad.any(), f"got {g[bad]!r}, exact {r[bad]!r}, err {err[bad]!r} > tol {tol[bad]!r}"


# --------------------------------------------------------------------------- sparse


def explicit_top_k_ref(dense: np.ndarray, stored, k: int, mode: str = "largest"):
    """Reference ``top_k(A, k, explicit=True)`` of the rows of ``dense``
    (``A.toarray()``) ranking only the ``stored`` positions (a set of
    ``(row, col)``, duplicates counted once). Order as in ``top_k_ref``;
    rows with fewer than ``k`` stored entries are padded with index -1 and
    value 0. Returns ``(values, indices)``."""
    nrows = dense.shape[0]
    values = np.zeros((nrows, k), dense.dtype)
    indices = np.full((nrows, k), -1, np.intp)
    sign = -1 if mode == "largest" else 1
    for r in range(nrows):
        cols = builtins.sorted(c for (rr, c) in stored if rr == r)
        nums = as_exact_numbers(dense[r, cols]) if cols else []

        def key(t, nums=nums, cols=cols):
            v = nums[t]
            return (1, 0, cols[t]) if v != v else (0, sign * v, cols[t])

        order = builtins.sorted(range(len(cols)), key=key)[:k]
        for j, t in enumerate(order):
            indices[r, j] = cols[t]
            values[r, j] = dense[r, cols[t]]
    return values, indices


def cooccurrence_ref(tokens, vocab_size: int, window: int = 2, symmetric: bool = True):
    """Dense int64 counts by a plain double loop over positions and distances."""
    t = [int(v) for v in np.asarray(tokens)]
    c = np.zeros((vocab_size, vocab_size), np.int64)
    for p in range(len(t)):
        for d in range(1, window + 1):
            if p + d < len(t):
                c[t[p], t[p + d]] += 1
    return c + c.T if symmetric else c


def normalize_rows_ref(dense: np.ndarray) -> np.ndarray:
    """Dense float64 ``P(j | i)``: every row divided by its exact sum
    (``math.fsum``); all-zero rows stay zero. Raises ``ValueError`` naming the
    first row with a negative, NaN or infinite entry."""
    a = np.asarray(dense)
    out = np.zeros(a.shape, np.float64)
    for r in range(a.shape[0]):
        row = as_exact_numbers(a[r])
        if any(not (v >= 0) or v == math.inf for v in row):
            raise ValueError(f"row {r} has a bad entry")
        s = math.fsum(row)
        if s:
            out[r] = [float(mpmath.mpf(v) / mpmath.mpf(s)) if v else 0.0 for v in row]
    return out


def related_ref(
    dense, rows, measure: str = "conditional", min_count=1, exclude_self=False, cds=None
):
    """Reference scores of ``related``: for each requested row a dict
    ``column -> exact score`` (an ``mpmath.mpf`` at ``REF_PREC`` bits) of its
    candidates, from the formulas with sums over all entries of ``dense``:
    ``conditional`` ``c_ij / c_i``, ``pmi`` ``log(c_ij N / (c_i c_j))``,
    ``ppmi`` the pmi candidates with ``c_ij N > c_i c_j`` (PMI > 0, decided
    exactly), ``npmi`` ``pmi / -log(c_ij / N)`` (1 when ``c_ij = N``). With
    ``cds`` the column sums of pmi/ppmi become ``c_j**cds`` and ``N`` their
    sum. Candidates: ``c_ij >= min_count`` and ``c_ij > 0`` (and ``j != i``
    with ``exclude_self``)."""
    from fractions import Fraction

    a = np.asarray(dense)
    vals = [[Fraction(v) for v in as_exact_numbers(row)] for row in a]
    ncols = a.shape[1]
    rsum = [sum(row, Fraction(0)) for row in vals]
    csum = [sum((vals[i][j] for i in range(len(vals))), Fraction(0)) for j in range(ncols)]
    total = sum(rsum, Fraction(0))
    out = []
    with mpmath.workprec(REF_PREC):
        for i in rows:
            d = {}
            for j in range(ncols):
                c = vals[i][j]
                if not (c >= Fraction(min_count) and c > 0) or (exclude_self and j == i):
                    continue
                if measure == "conditional":
                    ratio = c / rsum[i]
                    d[j] = mpmath.mpf(ratio.numerator) / ratio.denominator
                    continue
                if cds is not None:
                    w = [mpmath.mpf(cs.numerator) / cs.denominator for cs in csum]
                    w = [x ** mpmath.mpf(cds) for x in w]
                    pmi = mpmath.log(
                        mpmath.mpf(c.numerator) / c.denominator * sum(w)
                        / (mpmath.mpf(rsum[i].numerator) / rsum[i].denominator * w[j])
                    )  # fmt: skip
                    if measure == "ppmi" and not pmi > 0:
                        continue
                    d[j] = pmi
                    continue
                ratio = c * total / (rsum[i] * csum[j])
                if measure == "ppmi" and not ratio > 1:
                    continue
                pmi = mpmath.log(mpmath.mpf(ratio.numerator) / ratio.denominator)
                if measure == "npmi":
                    pij = c / total
                    pmi = mpmath.mpf(1) if pij == 1 else pmi / -mpmath.log(
                        mpmath.mpf(pij.numerator) / pij.denominator
                    )  # fmt: skip
                d[j] = pmi
            out.append(d)
    return out


def snapshot(x):
    """Everything a call could modify in an array or a sparse matrix (every
    array attribute: bytes, dtype, shape; the cached format flags), read
    without triggering SciPy's lazy checks."""
    if isinstance(x, np.ndarray):
        return (x.dtype.str, x.shape, x.tobytes())
    out = {}
    for name, v in sorted(vars(x).items()):
        if isinstance(v, np.ndarray):
            out[name] = (v.dtype.str, v.shape, v.tobytes())
        elif isinstance(v, tuple) and all(isinstance(t, np.ndarray) for t in v):
            out[name] = tuple((t.dtype.str, t.shape, t.tobytes()) for t in v)
        else:
            out[name] = repr(v)
    return out


# --------------------------------------------------------------------------- divergences


def divergence_row_exact(p_row, q_row, normalize=True, base=None, cross=False):
    """Exact ``D(p || q)`` (or, ``cross``, ``H(p, q) = -sum P log Q``) of two
    1-D slices (an ``mpmath.mpf`` at ``REF_PREC`` bits, or ``nan``/``inf``),
    every entry taken as the exact number it stores.

    Rules: a negative entry in either raises ``ValueError``; otherwise NaN or
    ``+inf`` in either gives NaN; ``normalize=True`` divides both by their
    sums (NaN if either sum is 0, an empty slice included); terms with
    ``p = 0`` are 0; ``p > 0`` with ``q = 0`` gives ``+inf``.
    """
    ps = as_exact_numbers(np.asarray(p_row))
    qs = as_exact_numbers(np.asarray(q_row))
    if any(v < 0 for v in ps + qs):
        raise ValueError("negative entry")
    if any(v != v or v == math.inf for v in ps + qs):
        return math.nan
    with mpmath.workprec(REF_PREC):
        P = [mpmath.mpf(v) for v in ps]
        Q = [mpmath.mpf(v) for v in qs]
        if normalize:
            sp, sq = mpmath.fsum(P), mpmath.fsum(Q)
            if sp == 0 or sq == 0:
                return math.nan
            P = [v / sp for v in P]
            Q = [v / sq for v in Q]
        terms = []
        for a, b in zip(P, Q, strict=True):
            if a == 0:
                continue
            if b == 0:
                return math.inf
            terms.append(-a * mpmath.log(b) if cross else a * mpmath.log(a / b))
        d = mpmath.fsum(terms) if terms else mpmath.mpf(0)
        if base is not None:
            d = d / mpmath.log(mpmath.mpf(float(base)))
        return d


def divergence_ref(p, q, axis=-1, base=None, normalize=True, cross=False) -> np.ndarray:
    """Reference ``relative_entropy`` (``cross``: ``cross_entropy``): float64,
    the broadcast shape without ``axis``; every slice ``divergence_row_exact``
    rounded to float64. Integers are converted to float64 first, as the
    kernels do; a negative entry raises ``ValueError``."""
    return _apply_row_pairs(
        p, q, axis, lambda a, b: divergence_row_exact(a, b, normalize, base, cross)
    )


def _apply_row_pairs(p, q, axis, fn):
    # fn on every pair of slices of p and q (broadcast; integers as float64)
    a = _as_float64_if_int(np.asarray(p))
    b = _as_float64_if_int(np.asarray(q))
    a, b = np.broadcast_arrays(a, b)
    ma, mb = _move_last(a, axis), _move_last(b, axis)
    out = np.empty(ma.shape[:-1], np.float64)
    for pos in np.ndindex(*ma.shape[:-1]):
        out[pos] = float(fn(ma[pos], mb[pos]))
    return out


def divergence_terms_scale(p, q, axis=-1, normalize=True, cross=False) -> np.ndarray:
    """``sum |term|`` of each slice (float64, NumPy): the scale of the error
    of the unnormalized sums, whose terms have both signs."""
    a = _as_float64_if_int(np.asarray(p)).astype(np.float64)
    b = _as_float64_if_int(np.asarray(q)).astype(np.float64)
    a, b = np.broadcast_arrays(a, b)
    with np.errstate(all="ignore"):
        if normalize:
            a = a / a.sum(axis=axis, keepdims=True)
            b = b / b.sum(axis=axis, keepdims=True)
        t = np.where(a > 0, np.abs(-a * np.log(b) if cross else a * np.log(a / b)), 0.0)
        return np.nansum(t, axis=axis)


def kl_logits_row_exact(zp_row, zq_row, temperature=1.0, base=None):
    """Exact ``D(softmax(zp / T) || softmax(zq / T))`` (``mpmath.mpf`` at
    ``REF_PREC`` bits, or ``nan``/``inf``), every logit taken as the exact
    number it stores. ``-inf`` is probability 0; NaN or ``+inf`` in either,
    an empty slice or an all-``-inf`` one give NaN; ``p > 0`` with ``q = 0``
    gives ``+inf``."""
    a = as_exact_numbers(np.asarray(zp_row))
    b = as_exact_numbers(np.asarray(zq_row))
    if not a or any(v != v or v == math.inf for v in a + b):
        return math.nan
    if all(v == -math.inf for v in a) or all(v == -math.inf for v in b):
        return math.nan
    with mpmath.workprec(REF_PREC):
        t = mpmath.mpf(float(temperature))
        x = [None if v == -math.inf else mpmath.mpf(v) / t for v in a]
        y = [None if v == -math.inf else mpmath.mpf(v) / t for v in b]
        mx = max(v for v in x if v is not None)
        my = max(v for v in y if v is not None)
        wx = mpmath.fsum(mpmath.exp(v - mx) for v in x if v is not None)
        wy = mpmath.fsum(mpmath.exp(v - my) for v in y if v is not None)
        terms = []
        for u, v in zip(x, y, strict=True):
            if u is None:
                continue
            if v is None:
                return math.inf
            log_p = u - mx - mpmath.log(wx)
            log_q = v - my - mpmath.log(wy)
            terms.append(mpmath.exp(log_p) * (log_p - log_q))
        d = mpmath.fsum(terms)
        if base is not None:
            d = d / mpmath.log(mpmath.mpf(float(base)))
        return d


def kl_logits_ref(zp, zq, axis=-1, base=None, temperature=1.0) -> np.ndarray:
    """Reference ``kl_from_logits``: float64, the broadcast shape without
    ``axis``; every slice ``kl_logits_row_exact`` rounded to float64."""
    return _apply_row_pairs(zp, zq, axis, lambda a, b: kl_logits_row_exact(a, b, temperature, base))
