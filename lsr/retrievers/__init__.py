"""One retriever protocol: every way of answering a query is a :class:`Retriever`.

A retriever answers a *batch* of queries in the form it reads (``takes``): sparse vectors (:class:`~lsr.sparse.
SparseBatch`), dense embeddings (a float32 ``(n, dim)`` array) or the query texts, for one
:class:`~lsr.request.SearchRequest` (resolved by the engine: it reads ``depth``, ``filter``, ``pruning``, ``threads``;
direct callers may pass just k). For each query it returns a :class:`~lsr.results.Ranked` (ids and scores, best first,
and whether that is the exact top-k of its scoring function). The :class:`~lsr.engine.Engine` encodes each query once
per request for all the retrievers it asks, fuses their lists and explains from the vectors it already has.

Every retriever declares what it can do in ``capabilities`` (:class:`Capabilities`): whether it takes writes (the
index's writer keeps it in step), answers in process ("light": the HTTP server then answers on its event loop),
applies a filter exactly, and which options its ``open`` takes from the server settings and CLI flags. Callers read
these; none branches on a backend's name.

Sparse *backends* (the ``sparse`` component of an index) are registered by name: ``native`` (lsr's kernel),
``lucene`` (Pyserini) and ``milvus`` (the index's Milvus collection). A backend may answer more components than
sparse: its retriever's optional ``companions()`` returns them ({component: retriever}), and they replace the index's
own (the ``milvus`` backend answers dense from the same collection). Adding a backend means writing one class with
``open(snapshot, **options)`` and ``capabilities``, and registering it: in :data:`_BACKENDS` (built-in), through the
``lsr.backends`` entry-point group of an installed package (then every process sees it: the CLI's ``--backend``
choices, ``lsr serve`` workers), or with :func:`register_backend` (this process only).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from lsr.errors import InvalidInput
from lsr.plugins import Registry
from lsr.request import SearchRequest
from lsr.results import COMPONENTS, Ranked  # noqa: F401  (COMPONENTS: what a retriever answers for)

TAKES = ("sparse", "dense", "text")  # what a retriever reads of an encoded query


@dataclass(frozen=True)
class Capabilities:
    """What a retriever (or a backend's retrievers) can do; read by the engine, the HTTP app and the CLI.

    ``writable``: the index takes writes while this backend serves it (its writer keeps the backend in step);
    ``light``: answers in process, with no model, no I/O wait and no other runtime, in a fraction of a millisecond;
    ``filterable``: applies ``request.filter`` exactly; ``mirror``: keeps its own copy of an index's documents, made
    by ``lsr index --backend NAME`` (the class then has ``prepare_mirror`` and ``mirror``); ``options``: ``open``
    keyword -> the setting (``LSR_*``) and flag (``--kebab-case``) that feeds it; ``why_not_*`` say what to do
    instead where one is False."""

    writable: bool = False
    light: bool = False
    filterable: bool = False
    mirror: bool = False  # holds a copy of an index (``lsr index --backend NAME``): has prepare_mirror and mirror
    options: Mapping[str, str] = field(default_factory=dict)
    why_not_writable: str = "this backend does not take writes"
    why_not_filterable: str = "this backend cannot filter"


NO_CAPABILITIES = Capabilities()


def capabilities(retriever) -> Capabilities:
    return getattr(retriever, "capabilities", NO_CAPABILITIES)


@runtime_checkable
class Retriever(Protocol):
    component: str  # one of COMPONENTS
    takes: str  # one of TAKES
    name: str  # e.g. "native/blockmax", "lucene", "faiss/flat", "bm25s", "pyserini-bm25"
    exact: bool  # True when every answer is the exact top-k of the retriever's scoring function

    def retrieve(self, queries: Any, request: SearchRequest | int) -> list[Ranked]:
        """Per query (in order), its top-``request.depth`` hits, best first (kept by ``request.filter``)."""
        ...

    def warm_up(self) -> None:
        """Compile, load and page in whatever the first real query would otherwise wait for."""
        ...


BACKEND_GROUP = "lsr.backends"
_BACKENDS = Registry(BACKEND_GROUP, {
    "native": "lsr.retrievers.native:NativeRetriever",
    "lucene": "lsr.lucene.retriever:LuceneRetriever",
    "milvus": "lsr.milvus.retriever:MilvusRetriever",
})


def register_backend(name: str, backend: str | type) -> None:
    """Register a sparse backend in this process: a class (or ``"module:Class"``) with
    ``open(snapshot, **options) -> Retriever``. For every process (CLI, server workers), declare it in the
    ``lsr.backends`` entry-point group of your package instead."""
    _BACKENDS.register(name, backend)


def backend_names() -> list[str]:
    return _BACKENDS.names()


def backend_class(name: str) -> type:
    if name not in _BACKENDS:
        raise InvalidInput(f"unknown backend {name!r}; known backends: {', '.join(_BACKENDS.names())}")
    return _BACKENDS.get(name)


def backend_capabilities(name: str) -> Capabilities:
    return capabilities(backend_class(name))


def backend_options(name: str, source: Any, extra: Mapping[str, Any] | None = None) -> dict:
    """The options backend ``name`` declares (:attr:`Capabilities.options`), read from ``source`` (settings or parsed
    flags: attributes named as the declared settings) and ``extra`` (``--backend-option KEY=VALUE``, a plugin's own);
    values left unset (None) are not passed."""
    out = {}
    for keyword, setting in backend_capabilities(name).options.items():
        value = getattr(source, setting, None)
        if value is not None:
            out[keyword] = value
    out.update(extra or {})
    return out


def open_backend(name: str, index, **options) -> Retriever:
    """The sparse retriever ``name`` over ``index``; ``options`` go to the backend's ``open``."""
    import inspect

    opener = backend_class(name).open
    accepted = inspect.signature(opener).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise InvalidInput(f"backend {name!r} takes no option {', '.join(unknown)}; it takes "
                               f"{', '.join(p for p in accepted if p != 'index') or 'none'}")
    return opener(index, **options)

