"""The token-selection pipeline behind ``python -m fastroute analyze``.

text -> token ids -> co-occurrence counts -> conditional distributions
P(j | i) -> entropy of each -> the k most uncertain tokens -> for each, the
tokens most related to it.
"""

from __future__ import annotations

import lzma
import re
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np

__all__ = ["CORPUS", "Analysis", "tokenize", "load_corpus", "analyze_tokens", "analyze_counts"]

#: The embedded default corpus (public domain, see fastroute/data/README.md).
CORPUS = {
    "file": "pride_and_prejudice.txt.xz",
    "title": "Pride and Prejudice",
    "author": "Jane Austen",
    "year": 1813,
    "licence": "public domain",
}

# a word: letters (any script), with inner apostrophes ("don't", "lady's")
_WORD = re.compile(r"[^\W\d_]+(?:['\u2019][^\W\d_]+)*")


def tokenize(text: str) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Lower-cased word tokens of ``text`` as ids.

    Returns ``(ids, vocabulary, frequency)``: ids are ranks by frequency
    (0 = most frequent; equal frequencies in order of first appearance).
    """
    first: dict[str, int] = {}
    words = _WORD.findall(text.lower())
    seq = np.fromiter((first.setdefault(w, len(first)) for w in words), np.int64, len(words))
    vocab0 = list(first)
    freq0 = np.bincount(seq, minlength=len(vocab0))
    order = np.argsort(-freq0, kind="stable")  # new id -> old id
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return rank[seq], [vocab0[i] for i in order], freq0[order]


def load_corpus() -> str:
    """The embedded corpus as text."""
    data = resources.files("fastroute").joinpath("data", CORPUS["file"]).read_bytes()
    return lzma.decompress(data).decode("utf-8")


@dataclass
class Analysis:
    """What ``analyze_*`` found; ``as_dict()`` is the ``--json`` form."""

    source: dict[str, Any]
    vocabulary_size: int
    tokens: int | None
    stored_pairs: int
    params: dict[str, Any]
    top: list[dict[str, Any]]
    timings: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "tokens": self.tokens,
            "vocabulary_size": self.vocabulary_size,
            "stored_pairs": self.stored_pairs,
            "params": self.params,
            "top": self.top,
            "timings_s": self.timings,
        }


def analyze_tokens(
    ids: np.ndarray,
    vocab: list[str],
    *,
    k: int = 20,
    related_k: int = 5,
    window: int = 2,
    measure: str = "pmi",
    min_count: float = 3,
    source: dict[str, Any] | None = None,
    timings: dict[str, float] | None = None,
) -> Analysis:
    """Run the pipeline on a token-id stream (ids index ``vocab``)."""
    from .tokens import cooccurrence

    timings = dict(timings or {})
    t = time.perf_counter()
    C = cooccurrence(ids, len(vocab), window=window)
    timings["cooccurrence"] = time.perf_counter() - t
    freq = np.bincount(ids, minlength=len(vocab))
    out = analyze_counts(
        C, vocab, k=k, related_k=related_k, measure=measure, min_count=min_count,
        frequency=freq, source=source, timings=timings,
    )  # fmt: skip
    out.tokens = int(ids.shape[0])
    out.params["window"] = window
    return out


def analyze_counts(
    C: Any,
    vocab: list[str] | None,
    *,
    k: int = 20,
    related_k: int = 5,
    measure: str = "pmi",
    min_count: float = 3,
    frequency: np.ndarray | None = None,
    source: dict[str, Any] | None = None,
    timings: dict[str, float] | None = None,
) -> Analysis:
    """Run the pipeline on a co-occurrence count matrix ``C``.

    ``frequency`` defaults to the row sums of ``C``; ``vocab`` (optional)
    names rows and columns.
    """
    from .tokens import normalize_rows, related, top_entropy

    timings = dict(timings or {})
    nrows, ncols = C.shape
    k = min(k, nrows)
    related_k = min(related_k, ncols)
    t = time.perf_counter()
    P = normalize_rows(C)
    timings["normalize_rows"] = time.perf_counter() - t
    t = time.perf_counter()
    best = top_entropy(P, k, base=2)
    timings["top_entropy"] = time.perf_counter() - t
    t = time.perf_counter()
    rel = related(C, best.indices, related_k, measure=measure, min_count=min_count,
                  exclude_self=True)  # fmt: skip
    timings["related"] = time.perf_counter() - t
    if frequency is None:
        frequency = np.asarray(C.sum(axis=1)).reshape(-1)

    def name(i: int) -> str:
        return vocab[i] if vocab is not None and i < len(vocab) else f"#{i}"

    top = []
    for rank, (h, i) in enumerate(zip(best.values.tolist(), best.indices.tolist(), strict=True), 1):
        if h != h:  # NaN: an empty row; top_entropy puts these last
            break
        items = [
            {"token": name(j), "id": j, "score": s}
            for s, j in zip(
                rel.values[rank - 1].tolist(), rel.indices[rank - 1].tolist(), strict=True
            )
            if j >= 0
        ]
        freq = frequency[i].item()
        top.append({"rank": rank, "token": name(i), "id": i, "entropy_bits": h,
                    "frequency": freq, "related": items})  # fmt: skip
    params = {"k": k, "related": related_k, "measure": measure, "min_count": min_count}
    return Analysis(
        source=source or {}, vocabulary_size=nrows, tokens=None, stored_pairs=int(C.nnz),
        params=params, top=top, timings=timings,
    )  # fmt: skip
