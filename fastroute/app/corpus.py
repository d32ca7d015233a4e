"""The corpus embedded with the application (``python -m fastroute analyze``
runs on it unless given files)."""

from __future__ import annotations

import lzma
from importlib import resources

__all__ = ["CORPUS", "load_corpus"]

#: The embedded default corpus (public domain, see fastroute/app/data/README.md).
CORPUS = {
    "file": "pride_and_prejudice.txt.xz",
    "title": "Pride and Prejudice",
    "author": "Jane Austen",
    "year": 1813,
    "licence": "public domain",
}


def load_corpus() -> str:
    """The embedded corpus as text."""
    data = resources.files("fastroute.app").joinpath("data", CORPUS["file"]).read_bytes()
    return lzma.decompress(data).decode("utf-8")
