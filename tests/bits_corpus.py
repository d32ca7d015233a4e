"""The bits of every public function over a fixed corpus of inputs.

A refactoring that must not change results (issue 28's redesign) records
these hashes before it starts and compares after every step::

    python tests/bits_corpus.py --write tests/bits_corpus.json   # record
    python tests/bits_corpus.py --check tests/bits_corpus.json   # compare

Every case is one call: its name says the function, the input and the
options; its hash covers every array of the result (dtype, shape and bytes;
the arrays of a sparse result; every field of a named tuple) or the type and
message of the error it raises. The inputs are drawn from fixed seeds and
hold the values that pick the kernels' paths: ties, NaN, ``+-inf``, ``+-0``,
empty and long rows, near-deterministic rows, Zipf-shaped sparse rows.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import scipy.sparse as sp

import fastroute as fr

try:
    import ml_dtypes

    BF16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - a test dependency
    BF16 = None

Case = tuple[str, Callable[[], Any]]


# --------------------------------------------------------------------------- hashing


def _arrays(x: Any, name: str = "") -> Iterator[tuple[str, np.ndarray]]:
    if x is None:
        return
    if sp.issparse(x):
        m = x.tocsr() if x.format != "csr" else x
        yield name + ".shape", np.array(m.shape, np.int64)
        for part in ("indptr", "indices", "data"):
            yield f"{name}.{part}", np.asarray(getattr(m, part))
        return
    if hasattr(x, "_fields"):
        for f in x._fields:
            yield from _arrays(getattr(x, f), f"{name}.{f}")
        return
    if hasattr(x, "numpy") and hasattr(x, "detach"):  # a torch tensor
        x = x.detach().numpy()
    if isinstance(x, (tuple, list)):
        for i, v in enumerate(x):
            yield from _arrays(v, f"{name}[{i}]")
        return
    if isinstance(x, (int, float, np.generic)):
        yield name, np.asarray(x)
        return
    yield name, np.asarray(x)


def digest(result: Any) -> str:
    h = hashlib.sha256()
    for name, a in _arrays(result):
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:20]


def run_case(fn: Callable[[], Any]) -> str:
    try:
        return digest(fn())
    except (ValueError, TypeError, np.exceptions.AxisError) as exc:
        return f"{type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------- inputs


def _values(rng, shape, kind: str) -> np.ndarray:
    """float64 values of one flavour: ``probs`` (non-negative, ties, zeros),
    ``logits`` (signed, ties), ``special`` (``probs`` with NaN/inf/-0 and
    huge/tiny entries), ``near`` (near-deterministic rows)."""
    if kind == "logits":
        x = rng.normal(0.0, 3.0, shape)
        x[..., 1::7] = x[..., :1]  # ties
        return x
    x = rng.random(shape) ** 3
    x[rng.random(shape) < 0.2] = 0.0
    x[..., 2::5] = x[..., 1:2]  # ties
    if kind == "special" and x.size:
        flat = x.reshape(-1)
        pick = rng.choice(flat.size, max(1, flat.size // 25), replace=False)
        flat[pick] = rng.choice(np.array([np.nan, np.inf, -0.0, 1e300, 5e-324, 1e-30]), pick.size)
    elif kind == "near":
        x = np.full(shape, 1e-9)
        x[..., :1] = 1.0
    return x


def _cast(x: np.ndarray, dtype) -> np.ndarray:
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        return np.round(np.abs(np.nan_to_num(x, posinf=9.0)) * 7).astype(dtype)
    if dtype == np.bool_:
        return x > 0.3
    with np.errstate(over="ignore"):
        return x.astype(dtype)


FLOATS = ("float64", "float32", "float16")
DENSE = (*FLOATS, "int64", "int32", "uint8", "bool")
SHAPES = ((5, 1), (7, 8), (33, 40), (300, 64), (64, 2000), (3, 0), (1, 5000))


def _dense_inputs(
    seed: int, kinds=("probs", "special", "near")
) -> Iterator[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    for shape in SHAPES:
        for kind in kinds:
            yield f"{kind}{shape}", _values(rng, shape, kind)


def _layouts(a: np.ndarray) -> Iterator[tuple[str, np.ndarray, int]]:
    """``a`` as passed (axis -1), its transpose read along axis 0, a strided
    view and a 3-D reshape."""
    yield "c", a, -1
    yield "T", np.ascontiguousarray(a.T).T if a.ndim == 2 else a, -1
    yield "axis0", np.ascontiguousarray(a.T), 0
    if a.shape[-1] >= 2:
        yield "strided", a[:, ::2], -1
    if a.ndim == 2 and a.shape[0] >= 2 and a.shape[0] % 2 == 0:
        yield "3d", a.reshape(2, a.shape[0] // 2, a.shape[1]), -1


def _zipf_csr(rng, n_rows: int, n_cols: int, dtype, explicit_zeros: bool = False):
    nnz = np.minimum(rng.zipf(1.6, n_rows), n_cols)
    nnz[::7] = 0  # empty rows
    rows = np.repeat(np.arange(n_rows), nnz)
    cols = np.concatenate([rng.choice(n_cols, k, replace=False) for k in nnz]) if nnz.sum() else []
    data = rng.random(rows.size) ** 2 + (0.0 if explicit_zeros else 1e-3)
    if explicit_zeros and data.size:
        data[::5] = 0.0
    if data.size > 3:
        data[1] = data[0]  # ties
    return sp.csr_array((data.astype(dtype), (rows, np.asarray(cols, np.int64))), (n_rows, n_cols))


# --------------------------------------------------------------------------- cases


def topk_cases() -> Iterator[Case]:
    for name, base in _dense_inputs(1, ("probs", "special", "logits")):
        for dt in DENSE if base.size < 10_000 else ("float64", "float32"):
            x = _cast(base, dt)
            n = x.shape[-1]
            for lay, a, axis in _layouts(x):
                if lay not in ("c", "axis0") and dt not in ("float64", "float32"):
                    continue
                length = a.shape[axis]
                for k in sorted({0, 1, min(3, length), length // 2, length}):
                    for mode in ("largest", "smallest"):
                        for srt in (True, False):
                            if not srt and (mode == "smallest" or k == 0):
                                continue
                            yield (f"top_k/{name}/{dt}/{lay}/k={k}/{mode}/sorted={srt}",
                                   lambda a=a, k=k, axis=axis, mode=mode, srt=srt:
                                   fr.top_k(a, k, axis=axis, mode=mode, sorted=srt))  # fmt: skip
            del n
    rng = np.random.default_rng(2)
    for dt in ("float64", "float32", "int64"):  # (SciPy has no float16 matrices)
        m = _zipf_csr(rng, 200, 300, dt, explicit_zeros=True)
        for fmt in ("dense", "csr"):
            for k in (0, 1, 5, 300):
                for mode in ("largest", "smallest"):
                    for explicit in (False, True):
                        yield (f"top_k/csr/{dt}/k={k}/{mode}/explicit={explicit}/{fmt}",
                               lambda m=m, k=k, mode=mode, explicit=explicit, fmt=fmt:
                               fr.top_k(m, k, mode=mode, explicit=explicit, format=fmt))  # fmt: skip
            yield (f"top_k/csc-axis0/{dt}/k=3/{fmt}",
                   lambda m=m, fmt=fmt: fr.top_k(sp.csc_array(m), 3, axis=0, format=fmt))  # fmt: skip


def entropy_cases() -> Iterator[Case]:
    for name, base in _dense_inputs(3):
        for dt in DENSE if base.size < 10_000 else ("float64", "float32", "float16"):
            x = _cast(base, dt)
            for lay, a, axis in _layouts(x):
                if lay not in ("c", "axis0") and dt not in ("float64", "float32"):
                    continue
                for normalize in (True, False):
                    for b in (None, 2.0):
                        if b is not None and lay != "c":
                            continue
                        yield (f"entropy/{name}/{dt}/{lay}/normalize={normalize}/base={b}",
                               lambda a=a, axis=axis, normalize=normalize, b=b:
                               fr.entropy(a, axis=axis, normalize=normalize, base=b))  # fmt: skip
    for name, base in _dense_inputs(4, ("logits",)):
        base = base.copy()
        if base.size:
            base.reshape(-1)[::11] = -np.inf
            base.reshape(-1)[5::97] = 700.0
        for dt in ("float64", "float32", "float16", "int32"):
            x = (
                _cast(base, dt)
                if dt != "int32"
                else np.round(np.nan_to_num(base, neginf=-50)).astype(np.int32)
            )
            for lay, a, axis in _layouts(x):
                if lay not in ("c", "axis0") and dt not in ("float64", "float32"):
                    continue
                for b in (None, 10.0):
                    yield (f"entropy_from_logits/{name}/{dt}/{lay}/base={b}",
                           lambda a=a, axis=axis, b=b: fr.entropy_from_logits(a, axis=axis, base=b))  # fmt: skip
    rng = np.random.default_rng(5)
    for dt in ("float64", "float32", "int64"):
        m = _zipf_csr(rng, 300, 500, dt, explicit_zeros=True)
        for normalize in (True, False):
            yield (f"entropy/csr/{dt}/normalize={normalize}",
                   lambda m=m, normalize=normalize: fr.entropy(m, normalize=normalize))  # fmt: skip
            yield (f"entropy/csr-axis0/{dt}/normalize={normalize}",
                   lambda m=m, normalize=normalize: fr.entropy(m, axis=0, normalize=normalize))  # fmt: skip
        if dt != "int64":
            yield f"entropy_from_logits/csr/{dt}", lambda m=m: fr.entropy_from_logits(m)


def divergence_cases() -> Iterator[Case]:
    rng = np.random.default_rng(6)
    for shape in SHAPES:
        p = _values(rng, shape, "probs")
        q = _values(rng, shape, "probs")
        q[..., ::3] = p[..., ::3] * (1 + 1e-9)  # nearly equal entries
        if p.size:
            p.reshape(-1)[::13] = np.nan if shape[0] == 7 else 0.0
        for dt in ("float64", "float32", "float16", "int64"):
            a, b = _cast(p, dt), _cast(q, dt)
            for func in ("relative_entropy", "cross_entropy"):
                f = getattr(fr, func)
                for normalize in (True, False):
                    yield (f"{func}/{shape}/{dt}/normalize={normalize}",
                           lambda f=f, a=a, b=b, normalize=normalize: f(a, b, normalize=normalize))  # fmt: skip
                yield (f"{func}/{shape}/{dt}/axis0/base=2",
                       lambda f=f, a=a, b=b: f(a.T, b.T, axis=0, base=2.0))  # fmt: skip
                if shape[0] > 1:
                    yield (f"{func}/{shape}/{dt}/broadcast-q",
                           lambda f=f, a=a, b=b: f(a, b[0]))  # fmt: skip
        zp, zq = _values(rng, shape, "logits"), _values(rng, shape, "logits")
        if zp.size:
            zp.reshape(-1)[::17] = -np.inf
        for dt in ("float64", "float32", "float16"):
            a, b = _cast(zp, dt), _cast(zq, dt)
            for t in (1.0, 0.5, 3.0):
                for base in (None, 2.0):
                    yield (f"kl_from_logits/{shape}/{dt}/T={t}/base={base}",
                           lambda a=a, b=b, t=t, base=base:
                           fr.kl_from_logits(a, b, temperature=t, base=base))  # fmt: skip
            yield (
                f"kl_from_logits/{shape}/{dt}/axis0",
                lambda a=a, b=b: fr.kl_from_logits(a.T, b.T, axis=0),
            )
    for dt in ("float64", "float32"):
        P = _zipf_csr(rng, 100, 200, dt)
        Q = _zipf_csr(rng, 100, 200, dt)
        qd = rng.random((100, 200)).astype(dt) + 0.01
        for func in ("relative_entropy", "cross_entropy"):
            f = getattr(fr, func)
            for normalize in (True, False):
                yield (f"{func}/csr-dense/{dt}/normalize={normalize}",
                       lambda f=f, P=P, qd=qd, normalize=normalize: f(P, qd, normalize=normalize))  # fmt: skip
                yield (f"{func}/csr-csr/{dt}/normalize={normalize}",
                       lambda f=f, P=P, Q=Q, normalize=normalize: f(P, Q, normalize=normalize))  # fmt: skip
            yield (
                f"{func}/csc-axis0/{dt}",
                lambda f=f, P=P, qd=qd: f(sp.csc_array(P.T), qd.T, axis=0),
            )


def token_cases() -> Iterator[Case]:
    rng = np.random.default_rng(7)
    tokens = np.minimum(rng.zipf(1.3, 20_000) - 1, 499)
    for window in (1, 2, 5):
        for symmetric in (True, False):
            for dt in ("int64", "int32", "float64"):
                yield (f"cooccurrence/w={window}/sym={symmetric}/{dt}",
                       lambda window=window, symmetric=symmetric, dt=dt:
                       fr.cooccurrence(tokens, 500, window=window, symmetric=symmetric, dtype=dt))  # fmt: skip
    yield "cooccurrence/int32-tokens", lambda: fr.cooccurrence(tokens.astype(np.int32), 500)
    C = fr.cooccurrence(tokens, 500, window=2)
    yield "normalize_rows", lambda: fr.normalize_rows(C)
    yield "normalize_rows/float32", lambda: fr.normalize_rows(C.astype(np.float32))
    P = fr.normalize_rows(C)
    for k in (0, 1, 10, 500):
        for normalize in (True, False):
            yield (f"top_entropy/k={k}/normalize={normalize}",
                   lambda k=k, normalize=normalize: fr.top_entropy(P, k, normalize=normalize))  # fmt: skip
    yield "top_entropy/counts/base2", lambda: fr.top_entropy(C, 5, base=2.0)
    rows = np.array([0, 1, 5, 17, 499, 3])
    for measure in ("conditional", "pmi", "ppmi", "npmi"):
        for exclude in (False, True):
            for min_count in (1, 3):
                yield (f"related/{measure}/exclude={exclude}/min_count={min_count}",
                       lambda measure=measure, exclude=exclude, min_count=min_count:
                       fr.related(C, rows, 7, measure=measure, exclude_self=exclude,
                                  min_count=min_count))  # fmt: skip
        yield (f"related/{measure}/cds",
               lambda measure=measure: fr.related(C, rows, 7, measure=measure, cds=0.75))  # fmt: skip


def routing_cases() -> Iterator[Case]:
    rng = np.random.default_rng(8)
    dtypes = ["float64", "float32", "float16"] + ([BF16] if BF16 is not None else [])
    for T, E in ((1, 4), (37, 8), (512, 64), (4096, 16), (300, 256)):
        z = rng.normal(0, 2, (T, E))
        z[::5, 1] = z[::5, 0]  # ties
        z[3::17] = np.round(z[3::17])
        for dt in dtypes:
            x = z.astype(dt)
            name = f"{T}x{E}/{np.dtype(dt).name}"
            for k in sorted({1, 2, min(8, E)}):
                for scoring in ("softmax", "sigmoid"):
                    for renorm in (True, False):
                        yield (f"route/{name}/k={k}/{scoring}/renorm={renorm}",
                               lambda x=x, k=k, scoring=scoring, renorm=renorm:
                               fr.route(x, k, scoring=scoring, renormalize=renorm))  # fmt: skip
            if np.dtype(dt) != np.float32:
                continue
            bias = rng.normal(0, 0.1, E).astype(np.float32)
            yield (
                f"route/{name}/bias",
                lambda x=x, bias=bias: fr.route(x, 2, scoring="sigmoid", bias=bias),
            )
            yield f"route/{name}/scale", lambda x=x: fr.route(x, 2, scale=2.5, renormalize=False)
            if E % 4 == 0 and E >= 8:
                for gs in ("max", "top2"):
                    yield (f"route/{name}/groups/{gs}",
                           lambda x=x, gs=gs: fr.route(x, 2, n_groups=4, topk_groups=2, group_score=gs,
                                                       scoring="sigmoid"))  # fmt: skip
            for cf in (0.5, 1.0, 1.25):
                for drop in ("position", "score"):
                    yield (f"route/{name}/capacity={cf}/{drop}",
                           lambda x=x, cf=cf, drop=drop:
                           fr.route(x, 2, capacity_factor=cf, drop=drop, min_capacity=1))  # fmt: skip
            yield f"route/{name}/nostats", lambda x=x: fr.route(x, 2, stats=False)
            xn = x.copy()
            xn[-1, 0] = np.nan
            yield f"route/{name}/nan-ignore", lambda xn=xn: fr.route(xn, 2, nan="ignore")
            yield f"route/{name}/nan-raise", lambda xn=xn: fr.route(xn, 2)
            for cap in sorted({1, max(1, T // 4), T}):
                for scoring in ("softmax", "sigmoid"):
                    yield (f"expert_choice/{name}/C={cap}/{scoring}",
                           lambda x=x, cap=cap, scoring=scoring:
                           fr.expert_choice(x, cap, scoring=scoring))  # fmt: skip
    for n, E in ((0, 4), (1000, 8), (50_000, 64)):
        ex = rng.integers(-1, E, n)
        for dt in ("int64", "int32"):
            for bs in (None, 1, 16):
                yield (f"group_by_expert/{n}/{E}/{dt}/bs={bs}",
                       lambda ex=ex, E=E, dt=dt, bs=bs:
                       fr.group_by_expert(ex.astype(dt), E, block_size=bs))  # fmt: skip


def moe_cases() -> Iterator[Case]:
    rng = np.random.default_rng(9)
    dtypes = ["float64", "float32", "float16"] + ([BF16] if BF16 is not None else [])
    for T, E, k, H in ((1, 4, 1, 8), (37, 8, 2, 16), (512, 16, 4, 64), (2048, 64, 8, 32)):
        z = rng.normal(0, 2, (T, E)).astype(np.float32)
        for cf in (None, 1.0):
            r = fr.route(z, k, capacity_factor=cf)
            for dt in dtypes:
                h = rng.normal(0, 1, (T, H)).astype(dt)
                for bs in (None, 8):
                    name = f"{T}x{E}/k={k}/H={H}/{np.dtype(dt).name}/cf={cf}/bs={bs}"
                    yield (f"dispatch/{name}",
                           lambda h=h, r=r, bs=bs: fr.dispatch(h, r, block_size=bs))  # fmt: skip
                    d = fr.dispatch(h, r, block_size=bs)
                    y = (np.asarray(d.rows, np.float32) * 1.5).astype(dt)
                    yield (f"combine/{name}",
                           lambda y=y, r=r, bs=bs: fr.combine(y, r, block_size=bs))  # fmt: skip


def kernel_cases() -> Iterator[Case]:
    from fastroute import kernels as K

    rng = np.random.default_rng(10)
    for n in (0, 1, 7, 40, 300):
        x = _values(rng, (n,), "special")
        for k in sorted({0, min(1, n), n // 2, n}):
            for largest in (True, False):

                def call(x=x, k=k, largest=largest):
                    v, i = np.empty(k), np.empty(k, np.int64)
                    K.top_k_1d(x, k, largest, True, v, i)
                    return v, i

                yield f"kernels.top_k_1d/n={n}/k={k}/largest={largest}", call
        for normalize in (True, False):
            yield (f"kernels.entropy_1d/n={n}/normalize={normalize}",
                   lambda x=x, normalize=normalize: K.entropy_1d(x, normalize, np.empty(K.WORK_SIZE)))  # fmt: skip
        z = _values(rng, (n,), "logits")
        yield (
            f"kernels.entropy_logits_1d/n={n}",
            lambda z=z: K.entropy_logits_1d(z, np.empty(K.WORK_SIZE)),
        )
        q = _values(rng, (n,), "probs")
        for normalize in (True, False):
            yield (f"kernels.relative_entropy_1d/n={n}/normalize={normalize}",
                   lambda x=x, q=q, normalize=normalize: K.relative_entropy_1d(np.abs(x), q, normalize))  # fmt: skip


SECTIONS = {
    "topk": topk_cases,
    "entropy": entropy_cases,
    "divergence": divergence_cases,
    "tokens": token_cases,
    "routing": routing_cases,
    "moe": moe_cases,
    "kernels": kernel_cases,
}


def compute(sections=tuple(SECTIONS)) -> dict[str, str]:
    out: dict[str, str] = {}
    for s in sections:
        for name, fn in SECTIONS[s]():
            if name in out:
                raise RuntimeError(f"duplicate case name {name}")
            out[name] = run_case(fn)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--write", metavar="JSON")
    g.add_argument("--check", metavar="JSON")
    ap.add_argument("--sections", default=",".join(SECTIONS))
    args = ap.parse_args(argv)
    got = compute([s for s in args.sections.split(",") if s])
    if args.write:
        with open(args.write, "w") as f:
            json.dump(got, f, indent=0, sort_keys=True)
        print(f"{len(got)} cases written to {args.write}")
        return 0
    with open(args.check) as f:
        want = json.load(f)
    changed = [n for n in got if n in want and got[n] != want[n]]
    new = [n for n in got if n not in want]
    for n in changed:
        print(f"CHANGED {n}: {want[n]} -> {got[n]}")
    for n in new:
        print(f"NEW {n}: {got[n]}")
    print(f"{len(got)} cases: {len(got) - len(changed) - len(new)} same, {len(changed)} changed, "
          f"{len(new)} new")  # fmt: skip
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
