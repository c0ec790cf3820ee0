"""One retriever protocol: every way of answering a query is a :class:`Retriever`.

A retriever answers a *batch* of queries in the form it reads (``takes``): sparse vectors (:class:`~lsr.sparse.
SparseBatch`), dense embeddings (a float32 ``(n, dim)`` array) or the query texts. For each query it returns a
:class:`~lsr.results.Ranked` (ids and scores, best first, and whether that is the exact top-k of its scoring function).
The :class:`~lsr.engine.Engine` encodes each query once per request for all the retrievers it asks, fuses their lists
and explains from the vectors it already has.

Sparse *backends* (the ``sparse`` component of an index) are registered by name: ``native`` (lsr's kernel) and
``lucene`` (Pyserini). Adding a backend means writing one class with ``open(index, **options)`` and registering it
here or with :func:`register_backend`; the CLI, the HTTP app and evaluation list and open backends through this
registry, unchanged.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from lsr.errors import InvalidInput
from lsr.results import Ranked

COMPONENTS = ("sparse", "dense", "bm25")  # the index components a retriever can answer for
TAKES = ("sparse", "dense", "text")  # what a retriever reads of an encoded query


@runtime_checkable
class Retriever(Protocol):
    component: str  # one of COMPONENTS
    takes: str  # one of TAKES
    name: str  # e.g. "native/blockmax", "lucene", "faiss/flat", "bm25s", "pyserini-bm25"
    exact: bool  # True when every answer is the exact top-k of the retriever's scoring function

    def retrieve(self, queries: Any, k: int, threads: int | None = None) -> list[Ranked]:
        """Per query (in order), its top-``k`` hits, best first."""
        ...

    def warm_up(self) -> None:
        """Compile, load and page in whatever the first real query would otherwise wait for."""
        ...


_BACKENDS: dict[str, str | type] = {
    "native": "lsr.retrievers.native:NativeRetriever",
    "lucene": "lsr.retrievers.lucene:LuceneRetriever",
}


def register_backend(name: str, backend: str | type) -> None:
    """Register a sparse backend: a class (or ``"module:Class"``) with ``open(index, **options) -> Retriever``."""
    _BACKENDS[name] = backend


def backend_names() -> list[str]:
    return list(_BACKENDS)


def backend_class(name: str) -> type:
    if name not in _BACKENDS:
        raise InvalidInput(f"unknown backend {name!r}; known backends: {', '.join(_BACKENDS)}")
    backend = _BACKENDS[name]
    if isinstance(backend, str):
        module, _, attribute = backend.partition(":")
        backend = getattr(importlib.import_module(module), attribute)
        _BACKENDS[name] = backend
    return backend


def open_backend(name: str, index, **options) -> Retriever:
    """The sparse retriever ``name`` over ``index``; ``options`` go to the backend (e.g. ``pruning`` for native)."""
    return backend_class(name).open(index, **options)


def check_batch(queries: Sequence, k: int) -> None:
    if k < 1:
        raise InvalidInput(f"k must be >= 1, got {k}")
