"""Kernels of the token statistics on CSR matrices: co-occurrence counts
(a counting sort of the pairs of a token stream), the checks and row sums
of weights, their normalisation into conditional distributions, and the
relatedness scores (conditional, PMI, PPMI, NPMI) with their top-k."""

from __future__ import annotations

import math

import numpy as np

from .._jit import jit
from .csr import transpose

#: the per-row cost of a co-occurrence bucket, in stored entries (measured
#: best of 4..64)
COOC_ROW_COST = 16


# --- co-occurrence counts -------------------------------------------------------------


@jit
def pair_counts(tokens, window, symmetric, counts, c, lo, hi):
    # counts[c, i] += pairs with row i that start at positions lo:hi
    n = tokens.shape[0]
    for p in range(lo, hi):
        for d in range(1, window + 1):
            if p + d >= n:
                break
            counts[c, tokens[p]] += 1
            if symmetric:
                counts[c, tokens[p + d]] += 1


@jit
def pair_scatter(tokens, window, symmetric, fill, c, cols, lo, hi):
    # append the columns of those pairs to their rows' buckets
    n = tokens.shape[0]
    for p in range(lo, hi):
        for d in range(1, window + 1):
            if p + d >= n:
                break
            i, j = tokens[p], tokens[p + d]
            cols[fill[c, i]] = j
            fill[c, i] += 1
            if symmetric:
                cols[fill[c, j]] = i
                fill[c, j] += 1


@jit
def bucket_offsets(counts, rowptr):
    # counts (chunks x rows) -> each chunk's first slot in each row's bucket
    nchunks, vocab = counts.shape
    total = np.int64(0)
    for r in range(vocab):
        rowptr[r] = total
        for c in range(nchunks):
            k = counts[c, r]
            counts[c, r] = total
            total += k
    rowptr[vocab] = total


@jit
def distinct_rows(rowptr, cols, rowcnt, uniq, lo, hi):
    # reduce the buckets of rows lo:hi in place to their distinct columns (in
    # order of appearance) and counts, with a dense per-column counter
    vocab = rowptr.shape[0] - 1
    seen = np.full(vocab, -1, np.int64)
    cnt = np.zeros(vocab, np.int64)
    for r in range(lo, hi):
        a, b = rowptr[r], rowptr[r + 1]
        u = a
        for q in range(a, b):  # branch-free: Zipf streams defeat prediction
            j = cols[q]
            new = seen[j] != r
            seen[j] = r
            cnt[j] = cnt[j] * (1 - new) + 1
            cols[u] = j
            u += new
        for q in range(a, u):
            rowcnt[q] = cnt[cols[q]]
        uniq[r] = u - a


@jit
def cooccurrence_finish(rowptr, cols, rowcnt, uniq, symmetric, index_like, data_like):
    # Sort the columns of every row by a counting sort, read straight from
    # the buckets (their distinct entries: rowptr[r] : rowptr[r] + uniq[r]):
    # the transpose has its columns in order. The symmetric matrix is its
    # own transpose, so one sort suffices there and its column counts are
    # its row counts.
    vocab = rowptr.shape[0] - 1
    tptr = np.zeros(vocab + 1, index_like.dtype)
    if symmetric:
        for c in range(vocab):
            tptr[c + 1] = tptr[c] + uniq[c]
    else:
        for r in range(vocab):
            for q in range(rowptr[r], rowptr[r] + uniq[r]):
                tptr[cols[q] + 1] += 1
        for c in range(vocab):
            tptr[c + 1] += tptr[c]
    fill = tptr[:-1].copy()
    tind = np.empty(tptr[vocab], index_like.dtype)
    tdat = np.empty(tptr[vocab], data_like.dtype)
    for r in range(vocab):
        for q in range(rowptr[r], rowptr[r] + uniq[r]):
            c = cols[q]
            t = fill[c]
            fill[c] = t + 1
            tind[t] = r
            tdat[t] = rowcnt[q]
    if symmetric:
        return tptr, tind, tdat
    return transpose(tptr, tind, tdat, vocab)


@jit
def tokens_problem(tokens, vocab):
    """-1 if every id is in [0, vocab), else the first bad position."""
    bad = 0
    for p in range(tokens.shape[0]):
        t = tokens[p]
        bad += 1 if (t < 0 or t >= vocab) else 0
    if bad:
        for p in range(tokens.shape[0]):
            if tokens[p] < 0 or tokens[p] >= vocab:
                return p
    return -1


# --- weights: normalisation and relatedness --------------------------------------------


@jit
def bad_weight(data, lo, hi):
    """-1 if every entry of ``data[lo:hi]`` is finite and >= 0, else the
    first bad position."""
    # blocks are scanned without early exit (a loop LLVM vectorizes); only a
    # block holding a bad entry is searched for it
    for start in range(lo, hi, 4096):
        stop = min(start + 4096, hi)
        bad = 0
        for p in range(start, stop):
            v = data[p]
            bad += 0 if (v >= 0 and v < np.inf) else 1
        if bad:
            for p in range(start, stop):
                v = data[p]
                if not (v >= 0 and v < np.inf):
                    return p
    return -1


@jit
def row_sums(indptr, data, scale, out, lo, hi):
    """``out[r]``: float64 sum of row r's entries times ``scale[r]``, in
    storage order, for rows ``lo:hi``."""
    for r in range(lo, hi):
        s = 0.0
        c = scale[r]
        for p in range(indptr[r], indptr[r + 1]):
            s += np.float64(data[p]) * c
        out[r] = s


@jit
def col_sums(colpos, data, ncols, scale):
    """float64 sum of the entries times ``scale`` of each column
    ``colpos[p]``, in storage order."""
    out = np.zeros(ncols)
    for p in range(colpos.shape[0]):
        out[colpos[p]] += np.float64(data[p]) * scale
    return out


@jit
def normalize_rows(indptr, data, sums, scale, q, kept, lo, hi):
    # q[p] = data[p] * scale[r] / sums[r] rounded to q's dtype, for rows lo:hi;
    # kept[r]: the row's entries that stay (nonzero data and quotient)
    for r in range(lo, hi):
        s, c = sums[r], scale[r]
        u = 0
        for p in range(indptr[r], indptr[r + 1]):
            v = q.dtype.type(np.float64(data[p]) * c / s)  # NaN for zeros of a zero row
            q[p] = v
            u += 1 if (data[p] != 0 and v != 0) else 0
        kept[r] = u


@jit
def add_canonical(ip_a, ix_a, d_a, ip_b, ix_b, d_b):
    """The sum of two canonical CSR matrices of the same shape (rows
    ``ip_a.shape[0] - 1``): per row, one merge of the two ascending column
    lists, equal columns added. Returns canonical arrays (``indices`` and
    ``data`` as views of buffers sized for both inputs' entries); entries
    summing to zero are kept (the caller's counts are positive). ``ix_a``/``ix_b`` and ``d_a``/``d_b`` share dtypes."""
    n = ip_a.shape[0] - 1
    ip = np.empty(n + 1, ip_a.dtype)
    ix = np.empty(ix_a.shape[0] + ix_b.shape[0], ix_a.dtype)
    d = np.empty(ix.shape[0], d_a.dtype)
    o = 0
    ip[0] = 0
    for r in range(n):
        i, ie = ip_a[r], ip_a[r + 1]
        j, je = ip_b[r], ip_b[r + 1]
        while i < ie and j < je:
            ci, cj = ix_a[i], ix_b[j]
            if ci < cj:
                ix[o] = ci
                d[o] = d_a[i]
                i += 1
            elif cj < ci:
                ix[o] = cj
                d[o] = d_b[j]
                j += 1
            else:
                ix[o] = ci
                d[o] = d_a[i] + d_b[j]
                i += 1
                j += 1
            o += 1
        while i < ie:
            ix[o] = ix_a[i]
            d[o] = d_a[i]
            i += 1
            o += 1
        while j < je:
            ix[o] = ix_b[j]
            d[o] = d_b[j]
            j += 1
            o += 1
        ip[r + 1] = o
    return ip, ix[:o], d[:o]  # views: a copy would cost more than the spare room


@jit
def drop_zeros(indptr, indices, data, q, kept):
    """The CSR arrays without the entries whose data or quotient is zero."""
    nrows = indptr.shape[0] - 1
    optr = np.zeros(nrows + 1, indptr.dtype)
    for r in range(nrows):
        optr[r + 1] = optr[r] + kept[r]
    oind = np.empty(optr[nrows], indices.dtype)
    odat = np.empty(optr[nrows], q.dtype)
    t = 0
    for r in range(nrows):
        for p in range(indptr[r], indptr[r + 1]):
            if data[p] != 0 and q[p] != 0:
                oind[t] = indices[p]
                odat[t] = q[p]
                t += 1
    return optr, oind, odat


#: measure codes of ``related_top``
CONDITIONAL = 0
PMI = 1
PPMI = 2
NPMI = 3

_SPLIT = 134217729.0  # 2**27 + 1: Veltkamp's constant for float64
_EXACT_MAX = 1e290  # below this, a product and its rounding error are finite


@jit(inline="always")
def _two_product(a, b):
    # a * b == hi + lo exactly (Dekker's product with Veltkamp splitting),
    # for |a|, |b| < _EXACT_MAX and no underflow
    hi = a * b
    t = _SPLIT * a
    ah = t - (t - a)
    al = a - ah
    t = _SPLIT * b
    bh = t - (t - b)
    bl = b - bh
    lo = ((ah * bh - hi) + ah * bl + al * bh) + al * bl
    return hi, lo


@jit(inline="always")
def _greater_product(a, b, c, d):
    """``a * b > c * d`` decided exactly (error-free products compared
    lexicographically: rounding is monotonic, so different rounded products
    order the exact ones)."""
    if max(a, b, c, d) >= _EXACT_MAX:
        return a * b > c * d
    h1, l1 = _two_product(a, b)
    h2, l2 = _two_product(c, d)
    return h1 > h2 or (h1 == h2 and l1 > l2)


@jit(inline="always")
def _score(v, r, measure, sums, cw):
    # the reported score of entry value v (already scaled) in row r, whose
    # column weight is cw
    rsum, _, _, _, cwsum, total = sums
    if measure == CONDITIONAL:
        return v / rsum[r]
    num = v * cwsum
    den = rsum[r] * cw
    if num < np.inf and 0.0 < den < np.inf:  # one rounding: independence gives 0 exactly
        pmi = math.log(num / den)
    else:
        pmi = math.log(v / rsum[r]) + math.log(cwsum / cw)
    if measure != NPMI:
        return pmi
    if v >= total:  # the only pair there is: perfect co-occurrence
        return 1.0
    return pmi / -math.log(v / total)


@jit(inline="always")
def _ahead(a, b, va, vb, wa, wb, sa, sb, measure):
    """Entry a ranks strictly before entry b of the same row: by the exact
    order of the score (conditional: the counts; PMI and PPMI: the ratios
    count / column weight, compared by exact cross-multiplication; NPMI: the
    computed scores)."""
    if measure == CONDITIONAL:
        return va > vb
    if measure == NPMI:
        return sa > sb
    return _greater_product(va, wb, vb, wa)


@jit
def related_top(indptr, indices, data, rows, k, opts, sums):
    """The ``k`` best candidate columns of each requested row.

    ``opts = (measure, min_count, exclude_self)``; ``sums = (rsum, scale,
    colpos, cw, cwsum, total)``: entry ``p`` of row ``r`` counts ``data[p] *
    scale[r]`` (``rsum``, ``cw``, ``cwsum``, ``total`` are sums of those),
    its column weight is ``cw[colpos[p]]`` (the column sum, or its
    ``cds``-th power). Rows must be canonical (columns ascending). Returns
    (values (n, k) float64, indices (n, k) int64), padded with NaN and -1.
    Exact ties keep the lower column (a stable merge sort on rows whose
    columns ascend).
    """
    measure, min_count, exclude_self = opts
    rsum, scale, colpos, cw, _, _ = sums
    n = rows.shape[0]
    vals = np.full((n, k), np.nan)
    idx = np.full((n, k), -1, np.int64)
    longest = 0
    for t in range(n):
        longest = max(longest, indptr[rows[t] + 1] - indptr[rows[t]])
    pos = np.empty(longest, np.int64)
    one = np.empty(longest, np.int64)
    two = np.empty(longest, np.int64)
    v = np.empty(longest)
    w = np.empty(longest)
    sc = np.empty(longest)
    for t in range(n):
        r = rows[t]
        m = 0
        for p in range(indptr[r], indptr[r + 1]):
            x = data[p]
            if not (x >= min_count and x > 0) or (exclude_self and indices[p] == r):
                continue
            vv = np.float64(x) * scale[r]
            ww = 1.0 if measure == CONDITIONAL else cw[colpos[p]]
            s = _score(vv, r, measure, sums, ww)
            if measure == PPMI and not s > 0.0:
                continue
            pos[m] = p
            v[m] = vv
            w[m] = ww
            sc[m] = s
            m += 1
        # bottom-up stable merge sort of the candidate slots 0..m-1
        src, buf = one[:m], two[:m]
        for i in range(m):
            src[i] = i
        width = 1
        while width < m:
            for lo in range(0, m, 2 * width):
                mid = min(lo + width, m)
                hi = min(lo + 2 * width, m)
                i, j, o = lo, mid, lo
                while i < mid and j < hi:
                    a, b = src[j], src[i]
                    if _ahead(a, b, v[a], v[b], w[a], w[b], sc[a], sc[b], measure):
                        buf[o] = a
                        j += 1
                    else:
                        buf[o] = b
                        i += 1
                    o += 1
                while i < mid:
                    buf[o] = src[i]
                    i += 1
                    o += 1
                while j < hi:
                    buf[o] = src[j]
                    j += 1
                    o += 1
            src, buf = buf, src
            width *= 2
        for j in range(min(k, m)):
            a = src[j]
            vals[t, j] = sc[a]
            idx[t, j] = indices[pos[a]]
    return vals, idx


__all__ = [
    "COOC_ROW_COST", "CONDITIONAL", "PMI", "PPMI", "NPMI", "pair_counts", "bucket_offsets",
    "pair_scatter", "distinct_rows", "cooccurrence_finish", "tokens_problem", "bad_weight",
    "row_sums", "col_sums", "normalize_rows", "drop_zeros", "add_canonical", "related_top",
]  # fmt: skip
