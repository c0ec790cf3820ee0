"""One retriever protocol: every way of answering a query is a :class:`Retriever`.

A retriever answers a *batch* of queries in the form it reads (``takes``): sparse vectors (:class:`~lsr.sparse.
SparseBatch`), dense embeddings (a float32 ``(n, dim)`` array) or the query texts. For each query it returns a
:class:`~lsr.results.Ranked` (ids and scores, best first, and whether that is the exact top-k of its scoring function).
The :class:`~lsr.engine.Engine` encodes each query once per request for all the retrievers it asks, fuses their lists
and explains from the vectors it already has.

Sparse *backends* (the ``sparse`` component of an index) are registered by name: ``native`` (lsr's kernel),
``lucene`` (Pyserini) and ``milvus`` (the index's Milvus collection). A backend may answer more components than
sparse: its retriever's optional ``companions()`` returns them ({component: retriever}), and they replace the index's
own (the ``milvus`` backend answers dense from the same collection). Adding a backend means writing one class with
``open(index, **options)`` and registering it: in :data:`_BACKENDS` (built-in), through the ``lsr.backends``
entry-point group of an installed package (then every process sees it: the CLI's ``--backend`` choices, ``lsr serve``
workers), or with :func:`register_backend` (this process only). The CLI, the HTTP app and evaluation list and open
backends through this registry, unchanged.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from lsr.errors import InvalidInput
from lsr.results import COMPONENTS, Ranked  # noqa: F401  (COMPONENTS: what a retriever answers for)

TAKES = ("sparse", "dense", "text")  # what a retriever reads of an encoded query


@runtime_checkable
class Retriever(Protocol):
    component: str  # one of COMPONENTS
    takes: str  # one of TAKES
    name: str  # e.g. "native/blockmax", "lucene", "faiss/flat", "bm25s", "pyserini-bm25"
    exact: bool  # True when every answer is the exact top-k of the retriever's scoring function
    # Optional ``light = True``: answers in process, with no model, no I/O wait and no other runtime, in a fraction of
    # a millisecond; the HTTP server then answers on its event loop instead of a thread-pool hop.

    def retrieve(self, queries: Any, k: int, threads: int | None = None) -> list[Ranked]:
        """Per query (in order), its top-``k`` hits, best first."""
        ...

    def warm_up(self) -> None:
        """Compile, load and page in whatever the first real query would otherwise wait for."""
        ...


_BACKENDS: dict[str, str | type] = {
    "native": "lsr.retrievers.native:NativeRetriever",
    "lucene": "lsr.retrievers.lucene:LuceneRetriever",
    "milvus": "lsr.retrievers.milvus:MilvusRetriever",
}


BACKEND_GROUP = "lsr.backends"
_discovered = False


def register_backend(name: str, backend: str | type) -> None:
    """Register a sparse backend in this process: a class (or ``"module:Class"``) with
    ``open(index, **options) -> Retriever``. For every process (CLI, server workers), declare it in the
    ``lsr.backends`` entry-point group of your package instead."""
    _BACKENDS[name] = backend


def _discover() -> None:
    global _discovered
    if not _discovered:
        from importlib.metadata import entry_points

        for entry in entry_points(group=BACKEND_GROUP):
            _BACKENDS.setdefault(entry.name, entry.value)
        _discovered = True


def backend_names() -> list[str]:
    _discover()
    return list(_BACKENDS)


def backend_class(name: str) -> type:
    _discover()
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
    import inspect

    opener = backend_class(name).open
    accepted = inspect.signature(opener).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise InvalidInput(f"backend {name!r} takes no option {', '.join(unknown)}; it takes "
                               f"{', '.join(p for p in accepted if p != 'index') or 'none'}")
    return opener(index, **options)


def check_batch(queries: Sequence, k: int) -> None:
    check_k(k)


def check_k(k) -> None:
    import numbers

    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise InvalidInput(f"k must be an integer >= 1, got {k!r}")
