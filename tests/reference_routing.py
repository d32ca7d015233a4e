"""Slow NumPy references for the MoE routing functions.

``route_ref`` follows fastroute's documented semantics token by token in
float64 (Python sorts with explicit keys, no vectorized tricks). The
``*_recipe`` functions transcribe the published routing recipes as their
frameworks write them (softmax, top-k, gather, cumsum), in float64, with
ties broken toward the lower index (a stable sort), for comparison with the
corresponding ``fastroute.route`` configuration.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np

__all__ = [
    "logits_as_float64",
    "route_ref",
    "group_by_expert_ref",
    "expert_choice_ref",
    "mixtral_recipe",
    "deepseek_v3_recipe",
    "switch_recipe",
    "gshard_recipe",
    "batch_prioritized_recipe",
    "assert_choice_valid",
]


def logits_as_float64(x) -> tuple[np.ndarray, type, type]:
    """(float64 values, output dtype, compute dtype) of a logits array
    (float16/32/64 or ml_dtypes bfloat16; all widen exactly)."""
    a = np.asarray(x)
    out = np.float64 if a.dtype == np.float64 else np.float32
    return a.astype(np.float64), out, out


def _sigmoid(z: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.where(z >= 0, 1.0 / (1.0 + np.exp(-z)), np.exp(z) / (1.0 + np.exp(z)))


def _softmax(z: np.ndarray) -> np.ndarray:
    m = z.max()
    e = np.exp(z - m)
    return e / e.sum()


def _logsumexp(z: np.ndarray) -> float:
    m = z.max()
    if m == np.inf:
        return math.inf
    return float(m + math.log(np.exp(z - m).sum()))


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def _order(values, ids=None) -> list[int]:
    """Positions sorted by value descending, then by id ascending."""
    ids = range(len(values)) if ids is None else ids
    return [i for _, i in sorted(zip(values, ids, strict=True), key=lambda p: (-p[0], p[1]))]


def route_ref(
    logits,
    k,
    *,
    scoring="softmax",
    renormalize=True,
    bias=None,
    n_groups=None,
    topk_groups=None,
    group_score="max",
    scale=1.0,
    capacity_factor=None,
    min_capacity=0,
    drop="position",
    nan="raise",
):
    """fastroute.route's contract, one token at a time.

    Returns a namespace with every ``Routing`` field plus ``keys`` (T, E):
    the selection keys (float64; -inf for experts of dropped groups), for
    checking choices near ties."""
    x, out, cdt = logits_as_float64(logits)
    T, E = x.shape
    experts = np.zeros((T, k), np.int64)
    weights = np.zeros((T, k), out)
    keys = np.zeros((T, E))
    dist = np.zeros((T, E))
    lse = np.zeros(T)
    ent = np.zeros(T)
    first_score = np.zeros(T)
    for t in range(T):
        z = x[t].copy()
        if np.isnan(z).any():
            if nan == "raise":
                raise ValueError(f"token {t} has a NaN logit")
            z[np.isnan(z)] = -np.inf
        m = z.max()
        if m == -np.inf:
            raise ValueError(f"token {t} has no eligible expert")
        if scoring == "softmax" and m == np.inf:
            raise ValueError(f"token {t} has a +inf logit")
        s = _softmax(z) if scoring == "softmax" else _sigmoid(z)
        if bias is None and n_groups is None:
            key = z.copy()
        else:
            # the kernel adds in the compute dtype
            sc = s.astype(cdt)
            key = (sc + np.asarray(bias).astype(cdt) if bias is not None else sc).astype(np.float64)
        if n_groups is not None:
            gs = E // n_groups
            gscore = []
            for g in range(n_groups):
                part = sorted(key[g * gs : (g + 1) * gs], reverse=True)
                gscore.append(part[0] + part[1] if group_score == "top2" else part[0])
            kept = set(_order(gscore)[:topk_groups])
            for g in range(n_groups):
                if g not in kept:
                    key[g * gs : (g + 1) * gs] = -np.inf
            eligible = [e for e in range(E) if e // gs in kept]
            if not any(z[e] > -np.inf for e in eligible):
                raise ValueError(f"token {t} has no eligible expert")
        keys[t] = key
        chosen = _order(key)[:k]
        if renormalize:
            zc = z[chosen]
            if scoring == "softmax":
                mk = zc.max() if k else 0.0
                w = np.exp(zc - mk) if mk > -np.inf else np.zeros(k)
            else:
                w = s[chosen]
            den = w.sum()
            w = w / den if den > 0 else np.zeros(k)
        else:
            w = s[chosen]
        w = (w * scale).astype(out)
        pos = _order(list(w), chosen)  # by rounded weight, then id
        experts[t] = pos
        weights[t] = [w[chosen.index(e)] for e in pos]
        first_score[t] = s[chosen[0]] if k else 0.0
        lse[t] = _logsumexp(z)
        q = s if scoring == "softmax" else s / s.sum()
        dist[t] = q
        ent[t] = _entropy(q)

    flat = experts.reshape(-1)
    before = np.bincount(flat, minlength=E)
    dropped = np.zeros((T, k), bool)
    cap = None
    if capacity_factor is not None:
        cap = max(math.ceil(capacity_factor * T * k / E), min_capacity)
        if drop == "position":
            perm = list(range(T))
        else:
            perm = _order(list(first_score))
        fill = [0] * E
        for j in range(k):
            for t in perm:
                e = experts[t, j]
                if fill[e] < cap:
                    fill[e] += 1
                else:
                    dropped[t, j] = True
    kept = np.where(dropped.reshape(-1), -1, flat)
    order, offsets = group_by_expert_ref(kept, E)
    counts = np.diff(offsets)
    n = T * k
    aux = E * float((before / n * dist.mean(axis=0)).sum()) if n else math.nan
    total = counts.sum()
    return SimpleNamespace(
        experts=experts,
        weights=weights,
        counts=counts,
        offsets=offsets,
        order=order,
        dropped=dropped,
        aux_loss=aux,
        z_loss=float((lse**2).mean()) if T else math.nan,
        entropy=ent,
        imbalance=float(counts.max() / (total / E)) if total else math.nan,
        capacity=cap,
        keys=keys,
    )


def group_by_expert_ref(experts, num_experts: int, block_size: int | None = None):
    """Stable sort of the flat positions by expert (-1 skipped), padded."""
    flat = np.asarray(experts).reshape(-1)
    order, offsets = [], [0]
    for e in range(num_experts):
        pos = [i for i in range(flat.size) if flat[i] == e]
        if block_size:
            pos += [flat.size] * (-len(pos) % block_size)
        order += pos
        offsets.append(len(order))
    return np.array(order, np.int64), np.array(offsets, np.int64)


def expert_choice_ref(logits, capacity: int, scoring: str = "softmax"):
    """Each expert's ``capacity`` best tokens by score (ties: lower token)."""
    x, out, _ = logits_as_float64(logits)
    T, E = x.shape
    s = np.array([_softmax(r) if scoring == "softmax" else _sigmoid(r) for r in x])
    s = s.reshape(T, E)
    tokens = np.zeros((E, capacity), np.int64)
    weights = np.zeros((E, capacity), out)
    for e in range(E):
        col = s[:, e].astype(out)  # the kernel ranks the rounded scores
        best = _order(list(col))[:capacity]
        tokens[e] = best
        weights[e] = col[best]
    coverage = np.bincount(tokens.reshape(-1), minlength=T).astype(np.int32)
    return SimpleNamespace(tokens=tokens, weights=weights, coverage=coverage, scores=s)


# --- the published recipes, as their frameworks write them ------------------------


def _topk(a: np.ndarray, k: int):
    """torch.topk along the last axis, ties to the lower index."""
    idx = np.argsort(-a, axis=-1, kind="stable")[..., :k]
    return np.take_along_axis(a, idx, -1), idx


def mixtral_recipe(logits, k):
    """HF Mixtral / Qwen-MoE: softmax -> top-k -> renormalize."""
    z = np.asarray(logits, np.float64)
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    w, idx = _topk(p, k)
    return idx, w / w.sum(-1, keepdims=True)


def deepseek_v3_recipe(logits, k, bias, n_groups, topk_groups, scale):
    """DeepSeek-V3 gate: sigmoid scores, selection bias, groups scored by the
    sum of their two best biased scores, top groups kept (the others masked
    with -inf), top-k of the biased scores, weights from the unbiased scores,
    renormalized and scaled."""
    z = np.asarray(logits, np.float64)
    T, E = z.shape
    scores = _sigmoid(z)
    choice = scores + bias
    grouped = choice.reshape(T, n_groups, -1)
    group_scores = _topk(grouped, 2)[0].sum(-1)
    _, gidx = _topk(group_scores, topk_groups)
    mask = np.zeros((T, n_groups), bool)
    np.put_along_axis(mask, gidx, True, -1)
    mask = np.repeat(mask, E // n_groups, axis=1)
    _, idx = _topk(np.where(mask, choice, -np.inf), k)
    w = np.take_along_axis(scores, idx, -1)
    return idx, w / w.sum(-1, keepdims=True) * scale


def _position_keep(masks, capacity):
    """GShard/DeepSpeed: slots by cumsum, first choices before second ones."""
    keep, used = [], np.zeros(masks[0].shape[1], np.int64)
    for mask in masks:  # one (T, E) one-hot mask per choice
        loc = np.cumsum(mask, axis=0) - 1 + used
        keep.append((loc < capacity) & (mask == 1))
        used += mask.sum(0)
    return keep


def switch_recipe(logits, capacity_factor):
    """Switch Transformer: top-1 of the softmax, capacity by position."""
    z = np.asarray(logits, np.float64)
    T, E = z.shape
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    w, idx = _topk(p, 1)
    capacity = math.ceil(capacity_factor * T / E)
    mask = np.eye(E, dtype=np.int64)[idx[:, 0]]
    (keep,) = _position_keep([mask], capacity)
    return idx, w, ~keep.any(1)[:, None]


def gshard_recipe(logits, capacity_factor, priority=None):
    """GShard top-2 (normalized gates, capacity by position); with
    ``priority`` the tokens are first sorted by it, descending (Tutel's and
    V-MoE's batch-prioritized routing)."""
    z = np.asarray(logits, np.float64)
    T, E = z.shape
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    w, idx = _topk(p, 2)
    w = w / w.sum(-1, keepdims=True)
    capacity = math.ceil(capacity_factor * T * 2 / E)
    perm = np.arange(T) if priority is None else np.argsort(-priority, kind="stable")
    masks = [np.eye(E, dtype=np.int64)[idx[perm, j]] for j in range(2)]
    keep = _position_keep(masks, capacity)
    dropped = np.zeros((T, 2), bool)
    for j in range(2):
        dropped[perm, j] = ~keep[j].any(1)
    return idx, w, dropped


def batch_prioritized_recipe(logits, capacity_factor):
    z = np.asarray(logits, np.float64)
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return gshard_recipe(logits, capacity_factor, priority=p.max(-1))


def assert_choice_valid(chosen, keys, k, tol):
    """``chosen`` (T, k) are the k best of ``keys`` (T, E) per row, allowing
    exchanges between keys closer than ``tol``."""
    for t in range(keys.shape[0]):
        ref = _order(list(keys[t]))[:k]
        got = list(chosen[t])
        assert len(set(got)) == k, (t, got)
        if set(got) == set(ref):
            continue
        rest = [e for e in range(keys.shape[1]) if e not in got]
        lo = min(keys[t, e] for e in got)
        hi = max((keys[t, e] for e in rest), default=-np.inf)
        assert lo >= hi - tol, (t, got, ref, keys[t])
