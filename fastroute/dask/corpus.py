"""Text corpora on Dask: shards of UTF-8 files, a vocabulary built in one
distributed pass, and ``analyze``'s pipeline on the counts' row blocks."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..pipeline import (
    DEFAULT_CDS,
    DEFAULT_MEASURE,
    Analysis,
    analyze_counts,
    rank_vocabulary,
    stage,
    words_of,
)  # fmt: skip
from ._base import Limited, dask_modules
from .blocks import CSRBlocks, column_sums, cooccurrence, normalize_rows, related, row_entropy

__all__ = ["Corpus", "Shard", "read_corpus", "read_ids", "analyze"]

#: Bytes of text per shard unless told otherwise: about 5 million words,
#: whose pairs (24 bytes each, 4 per word at window 2) a task holds while
#: counting them.
BLOCKSIZE = 32 * 2**20


@dataclass(frozen=True)
class Shard:
    """Bytes ``start:end`` of a file (cut after a newline when read, so that
    no word is split): one task's share of the corpus."""

    path: str
    start: int
    end: int


@dataclass(frozen=True)
class Corpus:
    """A tokenized corpus: ``ids`` (a 1-D int64 Dask array, one chunk per
    shard, lazy), the ``vocabulary`` (id -> word) and each id's
    ``frequency`` (its occurrences), with the ``shards`` it was read from."""

    ids: Any
    vocabulary: list[str]
    frequency: np.ndarray
    shards: tuple[Shard, ...]


def _path(item: Any, prefix: str, what: str = "a path") -> str:
    """A file name (str, bytes or os.PathLike; bytes decoded as the file
    system does) as a str; anything else is a ``TypeError``."""
    if isinstance(item, (str, bytes, os.PathLike)):
        return os.fsdecode(item)
    raise TypeError(
        f"{prefix}{what} must be a file name (str, bytes or os.PathLike), got {type(item).__name__}"
    )


def expand_paths(
    paths: str | os.PathLike | Sequence[str | os.PathLike], prefix: str = "read_corpus: "
) -> list[str]:
    # each argument a file or a glob pattern (matches sorted); order kept
    if isinstance(paths, (str, bytes, os.PathLike)):
        items = [paths]
    else:
        try:
            items = list(paths)
        except TypeError:
            raise TypeError(
                f"{prefix}paths must be a file name or glob pattern (str, bytes or "
                f"os.PathLike), or a list of them, got {type(paths).__name__}"
            ) from None
    out: list[str] = []
    for i, item in enumerate(items):
        p = _path(item, prefix, f"paths[{i}]")
        if glob.has_magic(p):
            matches = sorted(m for m in glob.glob(p) if os.path.isfile(m))
            if not matches:
                raise FileNotFoundError(f"{prefix}no file matches {p!r}")
            out.extend(matches)
        elif os.path.isdir(p):
            raise IsADirectoryError(f"{prefix}{p} is a directory; pass its files or a glob")
        elif not os.path.isfile(p):
            raise FileNotFoundError(f"{prefix}no such file: {p}")
        else:
            out.append(p)
    if not out:
        raise ValueError(f"{prefix}no files given")
    return out


def _shards(paths: list[str], blocksize: int) -> tuple[Shard, ...]:
    out = []
    for p in paths:
        size = os.path.getsize(p)
        n = max(1, -(-size // blocksize))
        out.extend(Shard(p, size * i // n, size * (i + 1) // n) for i in range(n))
    return tuple(out)


def _cut(f: Any, pos: int) -> int:
    # the first offset >= pos that starts a line (or the end of the file)
    if pos == 0:
        return 0
    f.seek(pos - 1)
    at = pos - 1
    while True:
        buf = f.read(1 << 16)
        if not buf:
            return at
        nl = buf.find(b"\n")
        if nl >= 0:
            return at + nl + 1
        at += len(buf)


def _read_shard(shard: Shard) -> str:
    path = shard.path
    try:
        with open(path, "rb") as f:
            lo, hi = _cut(f, shard.start), _cut(f, shard.end)
            f.seek(lo)
            raw = f.read(max(0, hi - lo))
    except OSError as exc:
        raise OSError(
            f"read_corpus: cannot read {path} (shard bytes {shard.start}:{shard.end}): "
            f"{exc.strerror or exc}"
        ) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"read_corpus: {path} is not UTF-8 text ({exc.reason} at byte {lo + exc.start}; "
            f"shard bytes {shard.start}:{shard.end})"
        ) from None


def _tokenize_shard(shard: Shard):
    # the shard's words as local ids (in order of first appearance) and the
    # local vocabulary with counts
    words = words_of(_read_shard(shard))
    first: dict[str, int] = {}
    local = np.fromiter((first.setdefault(w, len(first)) for w in words), np.int64, len(words))
    return list(first), np.bincount(local, minlength=len(first)), local


def _word_counts(part) -> tuple[dict[str, int], int]:
    words, counts, local = part
    return dict(zip(words, counts.tolist(), strict=True)), int(local.shape[0])


def _merge_counts(*parts: tuple[dict[str, int], int]) -> tuple[dict[str, int], int]:
    total, n = dict(parts[0][0]), parts[0][1]
    for counts, m in parts[1:]:
        for w, c in counts.items():
            total[w] = total.get(w, 0) + c
        n += m
    return total, n


def _global_ids(part, lookup: dict[str, int]) -> np.ndarray:
    words, _, local = part
    remap = np.fromiter((lookup[w] for w in words), np.int64, len(words))
    return remap[local]


def read_corpus(
    paths: str | os.PathLike | Sequence[str | os.PathLike], /, *, blocksize: int = BLOCKSIZE
) -> Corpus:
    """Tokenize UTF-8 text files on Dask, with a vocabulary built in one
    distributed pass.

    The corpus is the files' words one after the other, in the order given
    (a glob's matches sorted by name): words as :func:`fastroute.pipeline.tokenize`
    finds them (lower-cased letters with inner apostrophes), ids ranked by
    frequency, equal frequencies by the word, so any sharding of the same
    files gives the same ids, and those of ``tokenize`` on the files'
    texts joined by newlines. Each file is cut into shards of about
    ``blocksize`` bytes at line ends (a file without newlines is one
    shard). One pass tokenizes every shard and keeps its words as local
    ids on the workers (``dask.persist``) while the word counts are merged
    in a tree; ``ids`` then maps each shard to the global ids, lazily.

    Returns
    -------
    Corpus
        ``ids`` chunked one shard per chunk, ready for
        :func:`fastroute.dask.cooccurrence`.

    Raises
    ------
    FileNotFoundError, IsADirectoryError
        A path that is not a file, or a glob matching none (at once).
    ValueError, OSError
        A shard that is not UTF-8 or cannot be read (when the pass runs;
        the message names the file and the bytes).

    Examples
    --------
    >>> import pathlib, tempfile, fastroute.dask as frd
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "a.txt").write_text("the cat saw\\nthe dog")
    >>> _ = (d / "b.txt").write_text("a dog")
    >>> c = frd.read_corpus(str(d / "*.txt"))
    >>> c.vocabulary, c.ids.compute().tolist()
    (['dog', 'the', 'a', 'cat', 'saw'], [1, 3, 4, 1, 0, 2, 0])
    """
    dask, da = dask_modules()
    if isinstance(blocksize, bool) or not isinstance(blocksize, (int, np.integer)):
        raise TypeError(f"read_corpus: blocksize must be an integer, got {blocksize!r}")
    if blocksize < 1:
        raise ValueError(f"read_corpus: blocksize must be >= 1 byte, got {blocksize}")
    shards = _shards(expand_paths(paths), int(blocksize))
    (parts,) = dask.persist([dask.delayed(_tokenize_shard)(s) for s in shards])
    counts = [dask.delayed(_word_counts)(p) for p in parts]
    sizes = [dask.delayed(lambda c: c[1])(c) for c in counts]
    while len(counts) > 1:
        counts = [dask.delayed(_merge_counts)(*counts[i : i + 4]) for i in range(0, len(counts), 4)]
    (total, _), sizes = dask.compute(counts[0], sizes)
    words = list(total)
    vocab, rank, freq = rank_vocabulary(words, np.fromiter(total.values(), np.int64, len(words)))
    lookup = dask.delayed(dict(zip(vocab, range(len(vocab)), strict=True)), pure=True)
    chunks = [
        da.from_delayed(dask.delayed(_global_ids)(p, lookup), (n,), dtype=np.int64)
        for p, n in zip(parts, sizes, strict=True)
    ]
    del rank
    return Corpus(da.concatenate(chunks), vocab, freq, shards)


def _ids_slice(path: str, start: int, stop: int) -> np.ndarray:
    return np.array(np.load(path, mmap_mode="r", allow_pickle=False)[start:stop])


#: The first bytes of a zip archive (``np.savez``) and of a ``.npy`` file.
_ZIP_MAGIC = b"PK\x03\x04"
_NPY_MAGIC = b"\x93NUMPY"


def _npy_header(p: str, func: str = "read_ids") -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype a ``.npy`` file declares, read from its header
    alone (never a pickle), after checking that the file holds all of the
    data the header announces; a clear error for anything else."""
    fix = "save the ids with np.save(path, ids) (a 1-D integer array)"
    try:
        f = open(p, "rb")
    except FileNotFoundError:
        raise FileNotFoundError(f"{func}: no such file: {p}") from None
    except IsADirectoryError:
        raise IsADirectoryError(f"{func}: {p} is a directory; pass a .npy file") from None
    except OSError as exc:
        raise OSError(f"{func}: cannot read {p}: {exc.strerror or exc}") from None
    with f:
        magic = f.read(len(_NPY_MAGIC))
        if not magic:
            raise ValueError(f"{func}: {p} is empty; expected a .npy file; {fix}")
        if magic.startswith(_ZIP_MAGIC):
            raise ValueError(
                f"{func}: {p} is a zip archive (an .npz of several arrays?); expected one "
                f".npy file: save the ids array alone with np.save(path, ids)"
            )
        if magic != _NPY_MAGIC:
            raise ValueError(
                f"{func}: {p} is not a .npy file (it does not start with NumPy's header); {fix}"
            )
        f.seek(0)
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            elif version in ((2, 0), (3, 0)):
                # 3.0 differs from 2.0 only by a UTF-8 header, which NumPy
                # writes for field names beyond latin-1 (never for ids); any
                # header of integer ids is ASCII and reads the same
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unknown format version {version[0]}.{version[1]}")
        except (ValueError, SyntaxError, EOFError) as exc:  # a damaged or foreign header
            raise ValueError(
                f"{func}: {p} has a .npy header that cannot be read ({exc}); {fix}"
            ) from None
        start = f.tell()
    if dtype.hasobject:
        raise ValueError(
            f"{func}: {p} holds Python objects (a pickled {dtype} array), which fastroute never "
            f"loads; {fix}"
        )
    if len(shape) != 1 or dtype.kind not in "iu":
        raise ValueError(f"{func}: {p} holds a {len(shape)}-D {dtype} array; need 1-D integer ids")
    need = start + shape[0] * dtype.itemsize
    have = os.path.getsize(p)
    if have < need:
        raise ValueError(
            f"{func}: {p} is truncated: its header announces {shape[0]} ids of {dtype} "
            f"({need} bytes with the header), but it has {have} bytes; save it again"
        )
    return shape, dtype


def read_ids(path: str | os.PathLike, /, *, chunks: int = 10_000_000):
    """A token-id stream saved with ``np.save`` as a 1-D Dask array whose
    chunks each worker reads from the file itself (memory-mapped, a chunk at
    a time), so the client never loads the file and no data passes through
    the scheduler. The workers must see ``path``.

    Only the header is read here (never a pickle): a file that is not a
    ``.npy`` of 1-D integers (an ``.npz`` archive, text, an empty or
    truncated file, an object array) is a ``ValueError`` naming it.

    Examples
    --------
    >>> import pathlib, tempfile, numpy as np, fastroute.dask as frd
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "ids.npy"
    >>> np.save(f, np.array([0, 1, 2, 0], np.int32))
    >>> x = frd.read_ids(f, chunks=3)
    >>> x.chunks, frd.cooccurrence(x, 3, window=1).compute().toarray()
    (((3, 1),), array([[0, 1, 1],
           [1, 0, 1],
           [1, 1, 0]]))
    """
    from .._validate import check_int

    dask, da = dask_modules()
    step = check_int(chunks, "chunks", "read_ids", 1, why=" (ids per chunk)")
    p = _path(path, "read_ids: ", "path")
    (n,), dtype = _npy_header(p)  # the header alone: no data, never a pickle
    parts = [
        da.from_delayed(
            dask.delayed(_ids_slice)(p, s, min(s + step, n)), (min(step, n - s),), dtype=dtype
        )  # fmt: skip
        for s in range(0, n, step)
    ]
    return da.concatenate(parts) if parts else da.zeros((0,), dtype=dtype)


class _RowBlocks:
    """``analyze``'s stages on CSR row blocks (see ``fastroute.pipeline._OneMachine``)."""

    @staticmethod
    def row_sums(C: CSRBlocks) -> np.ndarray:
        dask, _ = dask_modules()
        parts = dask.compute(
            *(dask.delayed(lambda b: np.asarray(b.sum(axis=1)))(b) for b in C.blocks)
        )
        return np.concatenate([p.reshape(-1) for p in parts])

    @staticmethod
    def normalize_rows(C: CSRBlocks) -> CSRBlocks:
        return normalize_rows(C)

    @staticmethod
    def entropy_bits(P: CSRBlocks) -> np.ndarray:
        return row_entropy(P, base=2).compute()

    @staticmethod
    def kl_bits(P: CSRBlocks, C: CSRBlocks) -> np.ndarray:
        from ..divergence import relative_entropy

        dask, da = dask_modules()
        contexts = column_sums(C)
        parts = [
            da.from_delayed(
                dask.delayed(Limited(relative_entropy))(b, contexts, base=2),
                (P.row_bounds[r + 1] - P.row_bounds[r],), dtype=np.float64,
            )
            for r, b in enumerate(P.blocks)
        ]  # fmt: skip
        return da.concatenate(parts).compute()

    @staticmethod
    def related(C: CSRBlocks, rows: np.ndarray, k: int, **kw: Any) -> Any:
        dask, _ = dask_modules()
        return dask.compute(related(C, rows, k, **kw))[0]

    @staticmethod
    def nnz(C: CSRBlocks) -> int:
        dask, _ = dask_modules()
        return int(sum(dask.compute(*(dask.delayed(lambda b: b.nnz)(b) for b in C.blocks))))


def analyze(
    corpus: Corpus,
    /,
    *,
    window: int = 2,
    k: int = 20,
    related_k: int = 5,
    measure: str = DEFAULT_MEASURE,
    cds: float | None = DEFAULT_CDS,
    min_count: float = 3,
    by: str = "entropy",
    min_frequency: float | None = None,
    row_blocks: int | None = None,
    source: dict[str, Any] | None = None,
    timings: dict[str, float] | None = None,
) -> Analysis:
    """``python -m fastroute analyze``'s pipeline on a corpus read by
    :func:`read_corpus`: the same report as
    :func:`fastroute.pipeline.analyze_tokens` on the same words (the same
    tokens, scores and order), with every stage on the counts' row blocks.
    The counts are computed once and kept on the workers
    (``CSRBlocks.persist``); the entropies (one float per vocabulary entry)
    come back to rank the tokens.

    Examples
    --------
    >>> import pathlib, tempfile, fastroute.dask as frd
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "t.txt"
    >>> _ = f.write_text("a b a c a b a c b b")
    >>> r = frd.analyze(frd.read_corpus(str(f)), k=1, related_k=1, min_count=1)
    >>> r.top[0]["token"], [x["token"] for x in r.top[0]["related"]]
    ('a', ['b'])
    """
    if not isinstance(corpus, Corpus):
        raise TypeError(
            f"analyze: expected a Corpus, got {type(corpus).__name__}; read the text files "
            "with fastroute.dask.read_corpus(paths) first"
        )
    timings = dict(timings or {})
    with stage("cooccurrence", timings):
        C = cooccurrence(corpus.ids, len(corpus.vocabulary), window=window, row_blocks=row_blocks,
                         row_weights=corpus.frequency).persist()  # fmt: skip
    out = analyze_counts(
        C, corpus.vocabulary, k=k, related_k=related_k, measure=measure, cds=cds,
        min_count=min_count, by=by, min_frequency=min_frequency, frequency=corpus.frequency,
        frequency_kind="occurrences", source=source, timings=timings, ops=_RowBlocks(),
    )  # fmt: skip
    out.tokens = int(corpus.ids.shape[0])
    out.params["window"] = window
    return out
