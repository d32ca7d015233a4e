"""The token-selection pipeline (``python -m fastroute analyze`` and
``fastroute.dask.analyze`` run it).

text -> token ids -> co-occurrence counts -> conditional distributions
P(j | i) -> entropy of each (or its relative entropy to the distribution of
all contexts: how specific the token is) -> the k highest -> for each, the
tokens most related to it.

The counts of a text are symmetric: ``j`` is counted as a neighbour of ``i``
when it stands within ``window`` tokens of it on either side, so ``P(j | i)``
is the distribution of a token's neighbours, ``P(neighbour | token)``, not
of the token that follows it. A saved count matrix is taken as it is:
``P(column | row)``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numba.core import event as _event

from ._validate import check_alloc

__all__ = [
    "DEFAULT_MEASURE", "DEFAULT_CDS", "KL_MIN_FREQUENCY", "Analysis", "tokenize",
    "analyze_tokens", "analyze_counts", "stage", "words_of", "rank_vocabulary", "distribution_label",
]  # fmt: skip

#: The relatedness measure of ``analyze`` unless told otherwise: positive PMI
#: with context-distribution smoothing. On text, plain PMI lists are full of
#: words seen two or three times (and of exact ties among them); smoothing
#: the column distribution (Levy, Goldberg & Dagan 2015) ranks those lower
#: and gives pairs such as "his: wife", "by: means", "for: sake".
DEFAULT_MEASURE = "ppmi"
#: The smoothing exponent of ``DEFAULT_MEASURE`` (for "pmi" and "ppmi").
DEFAULT_CDS = 0.75

#: The frequency below which ``by="kl"`` does not rank a token unless told
#: otherwise: a word seen once has a handful of contexts, and so the largest
#: divergences of all ("warwick", "blenheim" on the embedded corpus), which
#: say nothing about the word; from 20 occurrences on the list reads "de",
#: "pounds", "bourgh", "thousand", "william".
KL_MIN_FREQUENCY = 20

# a word: letters (any script), with inner apostrophes ("don't", "lady's")
_WORD = re.compile(r"[^\W\d_]+(?:['\u2019][^\W\d_]+)*")


def tokenize(text: str) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Lower-cased word tokens of ``text`` as ids.

    Returns ``(ids, vocabulary, frequency)``: ids are ranks by frequency
    (0 = most frequent; equal frequencies in code-point order of the word),
    so the ids depend on the words and their counts only, not on where the
    words first appear (:func:`fastroute.dask.read_corpus` gives the same
    ids for a corpus split into any number of files).

    Examples
    --------
    >>> ids, vocab, freq = tokenize("the cat saw the dog")
    >>> ids.tolist(), vocab, freq.tolist()
    ([0, 1, 3, 0, 2], ['the', 'cat', 'dog', 'saw'], [2, 1, 1, 1])
    """
    words = words_of(text)
    first: dict[str, int] = {}
    seq = np.fromiter((first.setdefault(w, len(first)) for w in words), np.int64, len(words))
    vocab, rank, freq = rank_vocabulary(list(first), np.bincount(seq, minlength=len(first)))
    return rank[seq], vocab, freq


def words_of(text: str) -> list[str]:
    """The lower-cased words of ``text``, in order (the tokens of :func:`tokenize`)."""
    return _WORD.findall(text.lower())


def rank_vocabulary(
    words: list[str], counts: np.ndarray
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Distinct ``words`` with their ``counts`` ranked as :func:`tokenize`
    ranks them (count descending, then the word): ``(vocabulary, rank,
    frequency)`` with ``rank[i]`` the id of ``words[i]``."""
    counts = np.asarray(counts, np.int64)
    by_word = sorted(range(len(words)), key=words.__getitem__)
    order = np.asarray(by_word, np.int64)[np.argsort(-counts[by_word], kind="stable")]
    rank = np.empty(len(words), np.int64)
    rank[order] = np.arange(order.size)
    return [words[i] for i in order], rank, counts[order]


class _CompileClock(_event.Listener):
    """Wall time Numba spends compiling (outermost compilations only: a
    kernel compiling its callees is counted once). Loading from Numba's
    disk cache is not compiling and is not counted."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._depth = 0
        self._t0 = 0.0

    def on_start(self, event: Any) -> None:
        if self._depth == 0:
            self._t0 = time.perf_counter()
        self._depth += 1

    def on_end(self, event: Any) -> None:
        self._depth -= 1
        if self._depth == 0:
            self.seconds += time.perf_counter() - self._t0


@contextmanager
def stage(name: str, timings: dict[str, float]) -> Iterator[None]:
    """Time a pipeline stage into ``timings[name]``, with the time Numba spent
    compiling during it moved to ``timings["compile"]`` (a first run in a
    fresh environment compiles the kernels; later runs load them from the
    cache)."""
    clock = _CompileClock()
    t = time.perf_counter()
    with _event.install_listener("numba:compile", clock):
        yield
    elapsed = time.perf_counter() - t
    timings[name] = elapsed - clock.seconds
    if clock.seconds:
        timings["compile"] = timings.get("compile", 0.0) + clock.seconds


def distribution_label(window: int | None) -> tuple[str, str]:
    """What the conditional distribution of ``analyze`` is, and its context
    distribution: ``("P(neighbour | token), window ±2", "P(neighbour)")``
    for the symmetric counts of a text (``window`` tokens on each side), or
    ``("P(column | row)", "P(column)")`` for a count matrix (``None``)."""
    if window is None:
        return "P(column | row)", "P(column)"
    return f"P(neighbour | token), window ±{window}", "P(neighbour)"


@dataclass
class Analysis:
    """What ``analyze_*`` found; ``as_dict()`` is the ``--json`` form.

    ``params["window"]`` is set for counts of a text (symmetric: neighbours
    on both sides); without it the counts were given as a matrix.
    """

    source: dict[str, Any]
    vocabulary_size: int
    tokens: int | None
    stored_pairs: int
    params: dict[str, Any]
    top: list[dict[str, Any]]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def distribution(self) -> str:
        """The distribution whose entropy ranks the tokens, in words:
        ``"P(neighbour | token), window ±2"`` or ``"P(column | row)"``."""
        return distribution_label(self.params.get("window"))[0]

    @property
    def score(self) -> str:
        """What each reported token's score is: ``"H(P(neighbour | token)) in
        bits"`` or, ranked by ``"kl"``, ``"D(P(neighbour | token) ||
        P(neighbour)) in bits"`` (a matrix: rows and columns)."""
        cond, ctx = distribution_label(self.params.get("window"))
        cond = cond.split(",")[0]
        if self.params.get("by") == "kl":
            return f"D({cond} || {ctx}) in bits"
        return f"H({cond}) in bits"

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "tokens": self.tokens,
            "vocabulary_size": self.vocabulary_size,
            "stored_pairs": self.stored_pairs,
            "distribution": self.distribution,
            "score": self.score,
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
    measure: str = DEFAULT_MEASURE,
    cds: float | None = DEFAULT_CDS,
    min_count: float = 3,
    by: str = "entropy",
    min_frequency: float | None = None,
    source: dict[str, Any] | None = None,
    timings: dict[str, float] | None = None,
) -> Analysis:
    """Run the pipeline on a token-id stream (ids index ``vocab``); the
    ``frequency`` of each reported token is its number of occurrences (see
    :func:`analyze_counts` for the other options).

    The counts are symmetric (:func:`fastroute.cooccurrence` with
    ``symmetric=True``): a token's distribution is that of its neighbours up
    to ``window`` tokens away on either side, ``P(neighbour | token)``.
    """
    from .tokens import cooccurrence

    timings = dict(timings or {})
    with stage("cooccurrence", timings):
        C = cooccurrence(ids, len(vocab), window=window)
    freq = np.bincount(ids, minlength=len(vocab))
    out = analyze_counts(
        C, vocab, k=k, related_k=related_k, measure=measure, cds=cds, min_count=min_count,
        by=by, min_frequency=min_frequency, frequency=freq, frequency_kind="occurrences", source=source, timings=timings,
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
    measure: str = DEFAULT_MEASURE,
    cds: float | None = DEFAULT_CDS,
    min_count: float = 3,
    by: str = "entropy",
    min_frequency: float | None = None,
    frequency: np.ndarray | None = None,
    frequency_kind: str | None = None,
    source: dict[str, Any] | None = None,
    timings: dict[str, float] | None = None,
    ops: Any = None,
) -> Analysis:
    """Run the pipeline on a co-occurrence count matrix ``C``.

    ``by`` ranks the tokens: ``"entropy"`` by the entropy of ``P(. | i)``
    (the most uncertain first), ``"kl"`` by its relative entropy to the
    distribution of all contexts (column sums of ``C``), ``D(P(. | i) ||
    P(.))`` (the most specific first); both in bits. Tokens whose frequency
    is below ``min_frequency`` are not ranked (default: all for
    ``"entropy"``, ``KL_MIN_FREQUENCY`` for ``"kl"``).

    ``frequency`` defaults to the row sums of ``C`` (``frequency_kind``
    names what it is: "row sum" by default); ``vocab`` (optional) names rows
    and columns. ``cds`` applies to ``"pmi"``/``"ppmi"`` only (ignored for
    the other measures); ``None`` or 1 means no smoothing. ``ops`` runs the
    stages on another kind of matrix (``fastroute.dask`` passes row blocks).
    """
    from .topk import top_k

    ops = ops or _OneMachine()
    if by not in ("entropy", "kl"):
        raise ValueError(f"by must be 'entropy' or 'kl', got {by!r}")
    if min_frequency is None:
        min_frequency = KL_MIN_FREQUENCY if by == "kl" else 0

    timings = dict(timings or {})
    nrows, ncols = (int(n) for n in C.shape)
    # the vectors of rows and columns this pipeline holds at once (frequency,
    # scores, row sums and offsets, column sums), checked before any of them
    # is allocated: a saved matrix may declare any shape
    check_alloc(
        8 * (4 * (nrows + 1) + 2 * ncols),
        f"a {nrows:,} x {ncols:,} count matrix",
        "analyze",
        "; pass a matrix whose rows and columns are the vocabulary",
    )
    k = min(k, nrows)
    related_k = min(related_k, ncols)
    if measure not in ("pmi", "ppmi") or cds == 1:
        cds = None
    if frequency is None:
        frequency = ops.row_sums(C)
        frequency_kind = frequency_kind or "row sum"
    with stage("normalize_rows", timings):
        P = ops.normalize_rows(C)
    with stage("top_entropy" if by == "entropy" else "top_kl", timings):
        score = ops.entropy_bits(P) if by == "entropy" else ops.kl_bits(P, C)
        if min_frequency > 0:  # NaN ranks last and ends the list below
            score[np.asarray(frequency) < min_frequency] = np.nan
        best = top_k(score, k)
    with stage("related", timings):
        rel = ops.related(C, best.indices, related_k, measure=measure, min_count=min_count,
                          exclude_self=True, cds=cds)  # fmt: skip

    def name(i: int) -> str:
        return vocab[i] if vocab is not None and i < len(vocab) else f"#{i}"

    top = []
    for rank, (h, i) in enumerate(zip(best.values.tolist(), best.indices.tolist(), strict=True), 1):
        if h != h:  # NaN (an empty row, or too rare): top_k puts these last
            break
        items = [
            {"token": name(j), "id": j, "score": s}
            for s, j in zip(
                rel.values[rank - 1].tolist(), rel.indices[rank - 1].tolist(), strict=True
            )
            if j >= 0
        ]
        freq = frequency[i].item()
        top.append({"rank": rank, "token": name(i), "id": i, f"{by}_bits": h,
                    "frequency": freq, "related": items})  # fmt: skip
    params = {"k": k, "related": related_k, "measure": measure, "cds": cds,
              "min_count": min_count, "by": by, "min_frequency": min_frequency,
              "frequency": frequency_kind or "frequency"}  # fmt: skip
    return Analysis(
        source=source or {}, vocabulary_size=nrows, tokens=None, stored_pairs=ops.nnz(C),
        params=params, top=top, timings=timings,
    )  # fmt: skip


class _OneMachine:
    """The pipeline's stages on one ``scipy.sparse`` matrix (``fastroute.dask``
    has the same on row blocks)."""

    @staticmethod
    def row_sums(C: Any) -> np.ndarray:
        return np.asarray(C.sum(axis=1)).reshape(-1)

    @staticmethod
    def normalize_rows(C: Any) -> Any:
        from .tokens import normalize_rows

        return normalize_rows(C)

    @staticmethod
    def entropy_bits(P: Any) -> np.ndarray:
        from .entropy import entropy

        return entropy(P, axis=1, base=2)

    @staticmethod
    def kl_bits(P: Any, C: Any) -> np.ndarray:
        from .divergence import relative_entropy

        contexts = np.asarray(C.sum(axis=0), np.float64).reshape(-1)
        return relative_entropy(P, contexts, base=2)

    @staticmethod
    def related(C: Any, rows: np.ndarray, k: int, **kw: Any) -> Any:
        from .tokens import related

        return related(C, rows, k, **kw)

    @staticmethod
    def nnz(C: Any) -> int:
        return int(C.nnz)
