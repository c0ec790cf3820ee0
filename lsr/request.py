"""One search request, from the edge to every retriever: :class:`SearchRequest`.

The HTTP schema, the CLI and the Python API each build one; :meth:`lsr.engine.Engine.resolve` checks it once against
the engine (the mode and fusion it can serve, the filter against the index's schema, what the backends can do) and
fills in the defaults; the engine hands the resolved request to every retriever it asks, which reads what it needs:
``depth`` (how many hits), ``filter`` (a parsed :class:`~lsr.filters.Clause`), ``pruning``, ``threads``.

Errors are :class:`InvalidRequest`, whose ``loc`` names the field (``("filter", "must", 1, "range", "year")``), so the
HTTP API answers 422 at the right path without checking anything itself.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, replace
from typing import Any

from lsr.errors import InvalidInput
from lsr.fusion import Fusion

PRUNING_METHODS = ("blockmax", "exhaustive")


class InvalidRequest(InvalidInput):
    """A search request that cannot be answered as asked; ``loc`` is the field at fault."""

    def __init__(self, loc: tuple, message: str) -> None:
        self.loc = tuple(loc)
        super().__init__(message)


@dataclass(frozen=True)
class Pruning:
    """How the native sparse kernel finds the top k.

    ``method``: ``blockmax`` (default: block-max pruning that returns exactly the exhaustive top-k) or ``exhaustive``
    (term-at-a-time over every posting; the reference). Approximate knobs, off by default and always reported
    (``exact`` is False): ``alpha`` < 1 skips a block when alpha x its bound < the k-th score; ``query_cut`` > 0 keeps
    only the query's heaviest ``query_cut`` terms.
    """

    method: str = "blockmax"
    alpha: float = 1.0
    query_cut: int = 0

    def __post_init__(self) -> None:
        if self.method not in PRUNING_METHODS:
            raise InvalidRequest(("pruning", "method"), f"pruning must be one of {', '.join(PRUNING_METHODS)}, got "
                                                        f"{self.method!r}")
        if not 0.0 < self.alpha <= 1.0:  # (False for NaN too)
            raise InvalidRequest(("pruning", "alpha"), f"prune alpha must be in (0, 1] (1 = exact), got {self.alpha}")
        if self.query_cut < 0:
            raise InvalidRequest(("pruning", "query_cut"), f"query cut must be >= 0 (0 = keep every query term), got "
                                                           f"{self.query_cut}")
        if self.method == "exhaustive" and not self.exact:
            raise InvalidRequest(("pruning",), "alpha and query_cut are block-max knobs; the exhaustive kernel is "
                                               "always exact")

    @property
    def exact(self) -> bool:
        return self.alpha == 1.0 and self.query_cut == 0


@dataclass(frozen=True)
class Feedback:
    """Pseudo-relevance feedback: a first pass's top ``docs`` documents expand the query, and a second pass searches
    the expanded query (exactly: its top-k is the exact top-k of the expanded query). On each of ``components``
    the request has:

    - ``sparse`` (Rocchio): the documents' stored vectors, each scaled to a maximum of 1, are averaged; the query
      (scaled the same way) gets ``weight`` and the average ``1 - weight``; the ``terms`` strongest terms are kept.
    - ``bm25`` (RM3, as Anserini): P(w|R) = sum over the documents of P(w|D) x the document's share of the first
      pass's scores, from their stored texts analyzed as BM25 reads them; the ``bm25_terms`` strongest, normalized,
      interpolated with the query's own term distribution (``weight`` for the query).

    A hybrid fuses the expanded lists; a component without feedback is as asked."""

    docs: int = 10
    terms: int = 50
    weight: float = 0.5
    bm25_terms: int = 10
    components: tuple[str, ...] = ("sparse", "bm25")

    def __post_init__(self) -> None:
        object.__setattr__(self, "components", tuple(self.components))
        if not self.components or not set(self.components) <= {"sparse", "bm25"}:
            raise InvalidRequest(("feedback", "components"), f"feedback applies to sparse (Rocchio) and bm25 (RM3), "
                                                             f"got {list(self.components)}")
        for name, low, high in (("docs", 1, 1000), ("terms", 1, 100_000), ("bm25_terms", 1, 10_000)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= value <= high:
                raise InvalidRequest(("feedback", name), f"feedback {name} must be an integer in [{low}, {high}], "
                                                         f"got {value!r}")
        if not 0.0 <= self.weight <= 1.0:  # (False for NaN too)
            raise InvalidRequest(("feedback", "weight"), f"feedback weight (the original query's share) must be in "
                                                         f"[0, 1], got {self.weight}")


def check_k(k, loc: str = "k") -> None:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise InvalidRequest((loc,), f"{loc} must be an integer >= 1, got {k!r}")


@dataclass(frozen=True)
class SearchRequest:
    """What one search asks for (the same for every query of a batch).

    ``k`` hits from rank ``offset`` on (a page: ``offset=10, k=10`` is ranks 11-20 of one deeper search); ``mode``
    (sparse, dense, bm25, hybrid; None: the index default) and ``fusion`` (hybrid); ``filter``: the documents it may
    return (:mod:`lsr.filters`: a JSON object, or its text); ``explain``, ``return_documents``, ``return_metadata``:
    what each hit carries; ``pruning``: the native kernel's knobs (None: the engine's); ``feedback``: pseudo-relevance
    feedback (:class:`Feedback`: Rocchio on the sparse side, RM3 on the bm25 side; None: the index default's in its
    default mode, False: none); ``threads``: for a batch.
    """

    k: int = 10
    offset: int = 0
    mode: str | None = None
    fusion: Fusion | None = None
    filter: Any = None
    explain: bool = False
    return_documents: bool = False
    return_metadata: bool = False
    pruning: Pruning | None = None
    feedback: Feedback | bool | None = None  # None: the index default's (in its default mode); False: none
    threads: int | None = None
    components: tuple[str, ...] = ()  # filled in by Engine.resolve: the components asked
    resolved: bool = False

    def __post_init__(self) -> None:
        check_k(self.k)
        if isinstance(self.offset, bool) or not isinstance(self.offset, numbers.Integral) or self.offset < 0:
            raise InvalidRequest(("offset",), f"offset must be an integer >= 0, got {self.offset!r}")
        if self.threads is not None and (not isinstance(self.threads, numbers.Integral) or self.threads < 1):
            raise InvalidRequest(("threads",), f"threads must be an integer >= 1, got {self.threads!r}")
        if self.fusion is not None and self.mode not in (None, "hybrid"):
            raise InvalidRequest(("fusion",), "fusion applies to mode 'hybrid' only")

    @property
    def depth(self) -> int:
        """Hits each retriever returns: the page's end, or the fusion depth when deeper."""
        end = self.k + self.offset
        return max(end, self.fusion.depth) if self.mode == "hybrid" and self.fusion is not None else end

    @property
    def exact_pruning(self) -> bool:
        return self.pruning is None or self.pruning.exact

    def with_(self, **changes) -> SearchRequest:
        return replace(self, **changes)


def as_request(request: SearchRequest | int, threads: int | None = None) -> SearchRequest:
    """A retriever's argument: a request, or (direct use) just k."""
    if isinstance(request, SearchRequest):
        return request if threads is None or request.threads == threads else replace(request, threads=threads)
    return SearchRequest(k=request, threads=threads)


MODES = ("sparse", "dense", "bm25", "hybrid")


def _located(exc, loc: tuple):
    exc.loc = loc
    return exc


def resolve(request: SearchRequest, engine, state, max_k: int | None = None) -> SearchRequest:
    """``request`` checked against ``engine`` (serving ``state``) and completed: the mode and fusion (defaults
    filled in), the filter parsed against the index's schema, the pruning. The one place a request is validated:
    every error names the field at fault (``loc``)."""
    from lsr.errors import BackendUnavailable, Unavailable
    from lsr.filters import parse

    if request.resolved:
        return request
    if max_k is not None and request.k + request.offset > max_k:
        field = "offset" if request.offset else "k"
        raise InvalidRequest((field,), f"k + offset must be <= {max_k} (the server's max_k, LSR_MAX_K); got "
                                       f"{request.k} + {request.offset}")
    mode = request.mode or engine.default_mode
    if mode not in MODES:
        raise InvalidRequest(("mode",), f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    fusion = request.fusion
    if mode != "hybrid" and fusion is not None:
        raise InvalidRequest(("fusion",), "fusion applies to mode 'hybrid' only")
    try:
        engine.require(mode, fusion, state)
    except BackendUnavailable:
        raise
    except Unavailable as exc:
        raise _located(exc, ("fusion" if request.fusion is not None else "mode",)) from None
    except InvalidInput as exc:
        raise _located(exc, ("fusion",)) from None
    if mode == "hybrid":
        fusion = fusion or engine.default_fusion()
    components = fusion.components if mode == "hybrid" else (mode,)
    if request.explain and "sparse" not in components:
        raise InvalidRequest(("explain",), f"explain lists the sparse tokens behind a score; mode {mode!r} has no "
                                           "sparse component")
    if request.return_documents and not engine.stores_documents():
        raise _located(Unavailable("this index stores no texts; rebuild it with `lsr index ... --store-documents`"),
                       ("return_documents",))
    clause = None
    if request.filter is not None:
        clause = parse(request.filter, engine.schema(), ("filter",))
        for component in components:  # what each retriever declares (lsr.retrievers.Capabilities)
            retriever = state.retrievers[component]
            found = getattr(retriever, "capabilities", None)
            if not getattr(found, "filterable", False):
                why = getattr(found, "why_not_filterable", "it declares no filter support")
                raise _located(Unavailable(f"the {component} component ({retriever.name}) cannot filter: {why}"),
                               ("filter",))
    feedback = request.feedback
    if feedback is None and request.mode is None:  # a mode parameter of the index default
        feedback = getattr(engine, "default_feedback", None)
    if feedback is False or feedback is True:
        if feedback is True:
            raise InvalidRequest(("feedback",), "feedback: give its settings ({\"docs\": 10, ...}), or false for "
                                                "none")
        feedback = None
    request = replace(request, feedback=feedback)
    if request.feedback is not None:
        expanded = [c for c in request.feedback.components if c in components]
        if not expanded:
            raise InvalidRequest(("feedback",), f"feedback expands the sparse (Rocchio) or the bm25 (RM3) query; mode "
                                                f"{mode!r} has neither of {list(request.feedback.components)}")
        if "sparse" in expanded and (engine.index is None or not hasattr(state.retrievers["sparse"], "pruning")):
            raise InvalidRequest(("feedback",), "sparse feedback reads the index's stored vectors and searches them "
                                                "with the native kernel; this engine's sparse component cannot")
        if "bm25" in expanded and (not hasattr(state.retrievers["bm25"], "retrieve_weighted") or
                                   not engine.stores_documents()):
            raise InvalidRequest(("feedback",), "bm25 feedback (RM3) reads the feedback documents' stored texts and "
                                                "searches the index's BM25 part: build with --bm25 --store-documents, "
                                                "or give feedback components [\"sparse\"]")
    pruning = request.pruning
    if pruning is not None and "sparse" in components and not hasattr(state.retrievers["sparse"], "pruning"):
        raise InvalidRequest(("pruning",), f"pruning knobs belong to the native kernel; the sparse component here is "
                                           f"{state.retrievers['sparse'].name}")
    return replace(request, mode=mode, fusion=fusion, filter=clause, pruning=pruning, components=components,
                   resolved=True)
