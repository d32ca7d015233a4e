"""A differential fuzzer of every public function that takes sparse input.

Run as a script, so that a crash ends only this process (``test_fuzz.py``
runs it in a subprocess)::

    python tests/fuzz_sparse.py --seed 0 --matrices 200 [--log FILE]

Each round builds a random valid matrix of one SciPy format (CSR, CSC, COO,
BSR, DIA, LIL, DOK; array and matrix classes; int32/int64 indices), corrupts
it at random (or not), and calls ``top_k`` (rows, columns, ``explicit``,
``format="csr"``), ``entropy`` (rows, columns), ``entropy_from_logits``,
``normalize_rows``, ``top_entropy`` and ``related``. The oracle is
``reference_formats.dense_of``: for a malformed matrix every call must raise
``ValueError``/``TypeError``; for a valid one each call must agree with the
same function on the dense matrix (or on its canonical CSR), errors
included. Every call is classified ``ok`` / ``error`` (the clear error
expected) / ``wrong`` (a result where an error was due, or a different
result) / ``other`` (another exception type); a crash kills the process.
The counts go to stdout as JSON; the first failures with their cases too.
Before each call its description is written to ``--log`` (flushed), so
the test can name the call that crashed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from reference import same_values  # noqa: E402
from reference_formats import Malformed, Unsupported, dense_of  # noqa: E402

import fastroute as fr  # noqa: E402

FORMATS = ("csr", "csc", "coo", "bsr", "dia", "lil", "dok")
#: (data, index) dtype pairs the rest of the suite compiles anyway; DIA, LIL
#: and DOK have no index arrays (fastroute's CSR of them has int32 indices)
PAIRS = ((np.float64, np.int32), (np.float32, np.int32), (np.int64, np.int64))
VALUES = (0.0, -0.0, 1.0, 2.0, 2.0, 0.5, 3.0, 7.0, -1.0, np.nan, np.inf, 1e300)
HUGE = (-1, -2, 2**31, 2**31 - 1, 2**62, 2**63 - 1, 10**6)


def build(rng: np.random.Generator):
    """A valid matrix: ``(A, description)``."""
    fmt = FORMATS[rng.integers(len(FORMATS))]
    dtype, itype = PAIRS[rng.integers(2 if fmt in ("dia", "lil", "dok") else 3)]
    cls = getattr(sp, f"{fmt}_{'array' if rng.random() < 0.6 else 'matrix'}")
    if fmt == "bsr":
        R, C = int(rng.integers(1, 3)), int(rng.integers(1, 3))
        shape = (R * int(rng.integers(0, 4)), C * int(rng.integers(0, 4)))
    else:
        shape = (int(rng.integers(0, 6)), int(rng.integers(0, 7)))
    nnz = int(rng.integers(0, 2 * shape[0] * shape[1] + 1))
    row = rng.integers(0, max(shape[0], 1), nnz)
    col = rng.integers(0, max(shape[1], 1), nnz)
    pool = np.array(VALUES if rng.random() < 0.3 else VALUES[2:8])
    if np.dtype(dtype).kind != "f":
        pool = np.array([0, 1, 2, 3, 7, 40])
    data = rng.choice(pool, nnz).astype(dtype)
    if not (shape[0] and shape[1]):
        row = col = np.zeros(0, np.int64)
        data = data[:0]
    if fmt in ("csr", "csc", "coo"):
        from strategies import build_sparse

        A = build_sparse(row, col, data, shape, f"{fmt}_{cls.__name__.split('_')[1]}", itype)
    else:
        dense = np.zeros(shape, dtype)
        with np.errstate(invalid="ignore"):
            np.add.at(dense, (row, col), data)
        A = cls(dense, blocksize=(R, C)) if fmt == "bsr" else cls(dense)
        if fmt == "bsr" and A.indices.dtype != itype:
            A.indices, A.indptr = A.indices.astype(itype), A.indptr.astype(itype)
    return A, f"{cls.__name__} {shape} {np.dtype(dtype).name}/{np.dtype(itype).name} nnz={nnz}"


def _int_mutant(rng, a: np.ndarray, n: int):
    """A corrupted copy of an index array (``n``: its natural bound)."""
    a = np.array(a)
    kind = rng.integers(9)
    if kind <= 3 and a.size:  # one value out of its range
        a[rng.integers(a.size)] = (
            rng.choice([*HUGE, n, n + 1])
            if a.dtype == np.int64
            else (rng.choice([-1, n, n + 1, 2**31 - 1]))
        )
        return a, "value"
    if kind == 4:
        return a[:-1], "truncated"
    if kind == 5:
        return np.append(a, a[-1:] if a.size else [0]).astype(a.dtype), "extended"
    if kind == 6:
        return a.astype(np.float64), "float dtype"
    if kind == 7:
        return a[::-1].copy(), "reversed"
    big = np.array(a, np.uint64)
    if big.size:
        big[0] = 2**63 + 5
    return big, "uint64 beyond int64"


def corrupt(rng, A):
    """Corrupt ``A`` in place (its arrays are replaced): a description."""
    fmt = A.format
    nrows, ncols = A.shape
    kind = rng.integers(-3, 10)
    if kind <= 0:
        return "none"
    if kind == 1:  # the shape
        # (beyond 2**31 columns fastroute takes int64 indices: new compilations
        # unless the data are int64 already)
        choice = rng.integers(6 if A.dtype == np.int64 else 5)
        new = [
            (-nrows - 1, ncols),
            (nrows, -3),
            (nrows + 1, ncols),
            (nrows, max(ncols - 1, 0)),
            (nrows, 2**62),
            (nrows, 2**31 + 5),
        ][choice]
        A._shape = new
        return f"shape {new}"
    if kind == 2:  # the data
        choice = rng.integers(5)
        if fmt in ("lil", "dok"):
            A.dtype = np.dtype([np.complex128, np.float16, object, np.int8, np.float32][choice])
            return f"dtype {A.dtype}"
        d = np.asarray(A.data)
        new = [
            d[:-1],
            np.append(d, d[-1:] if d.size else [1]).astype(d.dtype),
            d.astype(np.float16),
            d.astype(np.complex128),
            d.astype(object),
        ][choice]
        if fmt == "bsr" and choice < 2:
            new = d[:-1] if choice == 0 else np.concatenate([d, d[-1:] if d.size else d])
        if fmt == "dia" and choice < 2:
            new = d[:, :-1] if choice == 0 else np.concatenate([d, d[-1:]]) if d.size else d
        A.data = new
        return f"data {['truncated', 'extended', 'float16', 'complex', 'object'][choice]}"
    if fmt in ("csr", "csc", "bsr"):
        name = ["indptr", "indices"][rng.integers(2)]
        n = {"indptr": A.indices.shape[0], "indices": ncols if fmt == "csr" else nrows}[name]
        new, what = _int_mutant(rng, getattr(A, name), n)
        setattr(A, name, new)
        return f"{name} {what}"
    if fmt == "coo":
        i = int(rng.integers(2))
        new, what = _int_mutant(rng, A.coords[i], A.shape[i])
        A.coords = (new, A.coords[1]) if i == 0 else (A.coords[0], new)
        return f"coords[{i}] {what}"
    if fmt == "dia":
        choice = rng.integers(4)
        off = np.array(A.offsets, np.int64)
        if choice == 0 and off.size:
            off[-1] = off[0]
            A.offsets = off
            return "duplicate offsets"
        if choice == 1 and off.size:
            off[0] = rng.choice([2**62, -(2**62), 2**63 - 1, -(2**63)])
            A.offsets = off
            return "huge offset"
        if choice == 2:
            A.offsets = off[:-1]
            return "offsets truncated"
        A.offsets = off.astype(np.float64)
        return "float offsets"
    if fmt == "lil":
        if nrows == 0:
            A.rows = A.rows[:0]  # still fine
            return "none (empty)"
        r = int(rng.integers(nrows))
        choice = rng.integers(5)
        if choice == 0:
            A.rows[r] = [*A.rows[r], 0]
            return "a column without a value"
        if choice == 1:
            A.rows[r] = [int(rng.choice([-1, ncols, 2**40]))]
            A.data[r] = [1.0]
            return "column out of range"
        if choice == 2:
            A.rows[r] = [0.5]
            A.data[r] = [1.0]
            return "float column"
        if choice == 3:
            A.rows = A.rows[:-1]
            return "rows truncated"
        A.data[r] = "ab"
        return "data not a list of numbers"
    # dok: write past the dict-like interface
    key = [(-1, 0), (nrows, 0), (0, ncols), ("a", 0), (0,), (0.5, 1), (0, 2**63 + 1)][
        rng.integers(7)
    ]
    A._dict[key] = 1.0
    return f"key {key!r}"


def _dense_call(name, dense, A0, args, kw):
    """The oracle call: the same function on the dense matrix (tokens
    functions: on its canonical CSR, with the fuzzed matrix's index dtype)."""
    if name in ("normalize_rows", "top_entropy", "related"):
        c = sp.csr_array(dense)
        wide = getattr(A0, "indices", np.empty(0, np.int32)).dtype == np.int64
        itype = np.int64 if wide or max(dense.shape) >= 2**31 else np.int32
        c.indices, c.indptr = c.indices.astype(itype), c.indptr.astype(itype)
        return getattr(fr, name)(c, *args, **kw)
    return getattr(fr, name)(dense, *args, **kw)


def _as_arrays(out):
    if sp.issparse(out):
        return [out.toarray()]
    if isinstance(out, tuple):
        return [np.asarray(v) for v in out]
    return [np.asarray(out)]


def _agree(name, got, ref) -> bool:
    g, r = _as_arrays(got), _as_arrays(ref)
    if len(g) != len(r):
        return False
    for a, b in zip(g, r, strict=False):
        if a.shape != b.shape:
            return False
        if name.startswith("entropy") or name == "top_entropy" and a.dtype.kind == "f":
            tol = 1e-5 if a.dtype == np.float32 else 1e-10
            if not np.allclose(a, b, rtol=tol, atol=tol, equal_nan=True):
                return False
        elif not same_values(a, b.astype(a.dtype) if a.dtype != b.dtype else b):
            return False
    return True


def _explicit_ok(got, dense, stored, k) -> bool:
    vals, idx = got
    for r in range(dense.shape[0]):
        n = sum(1 for (rr, _) in stored if rr == r)
        m = int((idx[r] >= 0).sum())
        if m != min(k, n) or (idx[r, m:] != -1).any():
            return False
        for j in range(m):
            if (r, int(idx[r, j])) not in stored:
                return False
            if not same_values(vals[r, j : j + 1], dense[r, idx[r, j] : idx[r, j] + 1]):
                return False
    return True


def calls(rng, shape):
    nrows, ncols = shape
    k = int(rng.integers(0, ncols + 1)) if ncols >= 0 else 1
    kc = int(rng.integers(0, nrows + 1)) if nrows >= 0 else 1
    rows = rng.integers(0, nrows, int(rng.integers(1, 4))) if nrows > 0 else np.zeros(0, int)
    kr = int(rng.integers(0, ncols + 1)) if ncols >= 0 else 1
    return [
        ("top_k", (k,), {}),
        ("top_k", (kc,), {"axis": 0}),
        ("top_k", (k,), {"format": "csr"}),
        ("top_k", (k,), {"explicit": True}),
        ("entropy", (), {}),
        ("entropy", (), {"axis": 0}),
        ("entropy_from_logits", (), {}),
        ("normalize_rows", (), {}),
        ("top_entropy", (kc,), {}),
        ("related", (rows, kr), {"measure": "conditional"}),
        ("related", (rows, kr), {"measure": "pmi"}),
    ]


def _dense_top_k_csr(dense, k):
    v, i = fr.top_k(dense, k)
    out = np.zeros_like(dense)
    np.put_along_axis(out, i, v, axis=1)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--matrices", type=int, default=100)
    ap.add_argument("--log", default=os.devnull)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    counts = dict.fromkeys(("tried", "ok", "error", "wrong", "other"), 0)
    failures = []
    warnings.simplefilter("ignore")
    with open(args.log, "w") as log:
        for m in range(args.matrices):
            A, desc = build(rng)
            shape0 = A.shape
            damage = corrupt(rng, A)
            try:
                dense, stored = dense_of(A)
                expect = None
            except Malformed:
                expect = "malformed"
            except Unsupported:
                expect = "unsupported"
            except OverflowError:  # a huge valid shape: errors and results both fine
                expect = "huge"
            for name, a, kw in calls(rng, shape0):
                case = f"#{m} {desc}, {damage}: {name}{a}{kw}"
                log.write(case + "\n")
                log.flush()
                counts["tried"] += 1
                try:
                    got = getattr(fr, name)(A, *a, **kw)
                    err = None
                except (ValueError, TypeError) as exc:
                    got, err = None, exc
                    if "more than this machine's" in str(exc):  # a stated size limit
                        counts["error"] += 1
                        continue
                except Exception as exc:  # noqa: BLE001 - classified, not hidden
                    counts["other"] += 1
                    failures.append(f"{case} -> {type(exc).__name__}: {exc}")
                    continue
                if expect in ("malformed", "unsupported"):
                    verdict = "error" if err is not None else "wrong"
                elif expect == "huge":
                    verdict = "error" if err is not None else "ok"
                else:
                    try:
                        if kw.get("format") == "csr":
                            ref = _dense_top_k_csr(dense, *a)
                        elif kw.get("explicit"):
                            fr.top_k(dense, *a)  # the same argument errors
                            ref = "explicit"
                        else:
                            ref = _dense_call(name, dense, A, a, kw)
                        ref_err = None
                    except (ValueError, TypeError) as exc:
                        ref, ref_err = None, exc
                    if ref_err is not None or err is not None:
                        same = ref_err is not None and err is not None
                        verdict = "error" if same else "wrong"
                    elif isinstance(ref, str):  # "explicit"
                        verdict = "ok" if _explicit_ok(got, dense, stored, *a) else "wrong"
                    elif kw.get("format") == "csr":
                        verdict = "ok" if same_values(got.toarray(), ref) else "wrong"
                    else:
                        verdict = "ok" if _agree(name, got, ref) else "wrong"
                counts[verdict] += 1
                if verdict == "wrong":
                    failures.append(
                        f"{case} -> {'error ' + repr(err) if err else 'a result'} "
                        f"(expected {expect or 'the dense result'})"
                    )
    print(json.dumps({"counts": counts, "failures": failures[:20]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
