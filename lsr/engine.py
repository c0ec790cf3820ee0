"""The engine behind the HTTP API, `lsr eval` and the Python API: encode each query once, ask the retrievers of the
requested components, fuse, and explain from the vectors it already has.

``Engine(index)`` (or ``Engine.open(path)``) serves what the index holds: the ``sparse`` component through a
registered backend (``native``: lsr's kernel, default; ``lucene``: Pyserini over the index's Lucene part), the
``dense`` component (FAISS) when the index has a dense part, the ``bm25`` component (bm25s) when it has a BM25 part.
Modes: ``sparse``, ``dense``, ``bm25``, or ``hybrid`` (a :class:`~lsr.fusion.Fusion` of two or three components). A
request without a mode gets the index's default (``manifest.search_defaults``). ``Engine.baseline`` wraps a corpus-level
BM25 (bm25s or Pyserini) so `lsr eval --baseline` runs through the same code.

Every search is one :class:`~lsr.request.SearchRequest` (k, offset, mode, fusion, filter, what hits carry, pruning),
resolved once (:meth:`Engine.resolve`) and handed to every retriever asked; ``search(query, k, mode, ...)`` builds one
from its arguments.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from lsr.errors import InvalidInput, NotWritable, Unavailable
from lsr.fusion import Fusion
from lsr.index import PARTS, Index, choose_search_defaults
from lsr.index.metadata import Schema
from lsr.request import MODES, SearchRequest, resolve
from lsr.results import COMPONENTS, Contribution, Ranked, SearchResult
from lsr.retrievers import Capabilities, Retriever, capabilities, open_backend
from lsr.sparse import SparseBatch

__all__ = ["MODES", "Engine", "SearchRequest"]
_PART_FOR = {"dense": "--dense-encoder DIR (dense_encoder=...)", "bm25": "--bm25 (bm25=True)"}


class EncodedQueries:
    """A batch of queries and, computed once on first use, each form a retriever reads."""

    def __init__(self, texts: Sequence[str] | None, engine: Engine, sparse: SparseBatch | None = None) -> None:
        self.texts = list(texts) if texts is not None else None
        self._engine = engine
        self._sparse = sparse
        self._dense: np.ndarray | None = None
        self.encode_ms = 0.0

    def __len__(self) -> int:
        return len(self.texts) if self.texts is not None else len(self._sparse)

    def get(self, takes: str):
        if takes == "text":
            if self.texts is None:
                raise InvalidInput("this retriever reads query texts; search with texts, not vectors")
            return self.texts
        if takes == "sparse":
            if self._sparse is None:
                self._sparse = self._timed(lambda: self._engine.sparse_encoder().encode_queries(self.texts))
            return self._sparse
        if self._dense is None:
            if self.texts is None:
                raise InvalidInput("the dense component reads query texts; search with texts, not vectors")
            self._dense = self._timed(lambda: self._engine.dense_encoder().encode_queries(self.texts))
        return self._dense

    def _timed(self, encode):
        started = time.perf_counter()
        value = encode()
        self.encode_ms += (time.perf_counter() - started) * 1000
        return value


class State:
    """What one request reads: a snapshot of the index (one generation) and the retrievers over it."""

    def __init__(self, snapshot, retrievers: dict[str, Retriever]) -> None:
        self.snapshot = snapshot
        self.retrievers = retrievers


class Engine:
    def __init__(self, index: Index | None = None, retrievers: Mapping[str, Retriever] | None = None, *,
                 backend: str = "native", search_defaults: dict | None = None, **backend_options) -> None:
        """Serve ``index`` (sparse through ``backend``, opened with ``backend_options``; dense and BM25 when it has
        them), or exactly the given ``retrievers`` ({component: retriever}), which override the index's. A write
        committed through ``index`` (or published by another process, after :meth:`refresh`) is served from the next
        request on; a request in flight finishes on the generation it started with."""
        self.index = index
        self.backend = backend
        self._backend_options = backend_options
        self._given = dict(retrievers or {})
        self._lock = threading.Lock()
        self._state = self._build(index.snapshot() if index is not None else None)
        self.retrievers  # noqa: B018  (fail now on an engine with nothing to search)
        defaults = search_defaults or (index.manifest.search_defaults if index is not None else None)
        if defaults is None:
            defaults = (choose_search_defaults("dense" in self.retrievers, "bm25" in self.retrievers)
                        if "sparse" in self.retrievers and (index is None or index.encoder is not None)
                        else {"mode": next(iter(self.retrievers))})
        self.default_mode, self._default_fusion = self._parse_defaults(defaults)
        self.default_feedback = self._parse_feedback(defaults.get("feedback"))

    def _build(self, snapshot) -> State:
        from lsr.retrievers.bm25 import LexicalRetriever
        from lsr.retrievers.dense import FaissRetriever

        found: dict[str, Retriever] = {}
        if snapshot is not None:
            if "sparse" not in self._given:
                found["sparse"] = open_backend(self.backend, snapshot, **self._backend_options)
            companions = getattr(found.get("sparse"), "companions", None)
            if companions is not None:  # components the backend answers too (Milvus: dense from its collection)
                found.update({c: r for c, r in companions().items() if self.index.has(c)})
            if self.index.has("dense") and "dense" not in found:
                found["dense"] = FaissRetriever(snapshot)
            if self.index.has("bm25"):
                found["bm25"] = LexicalRetriever(snapshot)
        found.update(self._given)
        if not found:
            raise InvalidInput("an engine needs an index or at least one retriever")
        return State(snapshot, {c: found[c] for c in COMPONENTS if c in found})

    def state(self) -> State:
        """The state to answer a request with: rebuilt when the index handle moved to another generation."""
        state = self._state
        if self.index is not None and self.index.snapshot() is not state.snapshot:
            with self._lock:
                if self.index.snapshot() is not self._state.snapshot:
                    self._state = self._build(self.index.snapshot())
                state = self._state
        return state

    def refresh(self) -> bool:
        """Serve the index's published generation if it changed (another process committed); True if it did."""
        changed = self.index.refresh() if self.index is not None else False
        self.state()
        return changed

    @property
    def retrievers(self) -> dict[str, Retriever]:
        return self.state().retrievers

    @property
    def generation(self) -> int | None:
        snapshot = self.state().snapshot
        return snapshot.number if snapshot is not None else None

    @classmethod
    def open(cls, path: str | Path, encoder=None, device: str | None = None, parts: Sequence[str] = PARTS,
             backend: str = "native", mmap: bool = True, **backend_options) -> Engine:
        """Open an index directory with the parts in ``parts`` and serve it."""
        return cls(Index.open(path, encoder=encoder, device=device, parts=parts, mmap=mmap), backend=backend,
                   **backend_options)

    @classmethod
    def baseline(cls, name: str, corpus: str | Path) -> Engine:
        """A BM25 baseline over a whole corpus: ``bm25`` (Pyserini/Lucene, k1 0.9, b 0.4, multifield, BEIR's
        reference) or ``bm25s`` (k1 1.5, b 0.75, stemmed)."""
        if name == "bm25":
            from lsr.lucene.retriever import PyseriniBm25Retriever

            retriever = PyseriniBm25Retriever.for_corpus(corpus)
        elif name == "bm25s":
            from lsr.corpus import read_corpus
            from lsr.index.bm25 import Bm25
            from lsr.retrievers.bm25 import Bm25sRetriever

            documents = list(read_corpus(corpus))
            retriever = Bm25sRetriever(Bm25([d.id for d in documents], [d.contents for d in documents]))
        else:
            raise InvalidInput(f"unknown baseline {name!r}; known: bm25, bm25s")
        return cls(retrievers={"bm25": retriever}, search_defaults={"mode": "bm25"})

    # -- what is available ----------------------------------------------------------------------------------------
    def components(self) -> list[str]:
        return list(self.retrievers)

    def modes(self) -> list[str]:
        return self.components() + (["hybrid"] if len(self.retrievers) > 1 else [])

    def default_fusion(self) -> Fusion:
        """The fusion of a hybrid request that names none: the index default when it is hybrid, else convex over
        every component the engine has."""
        if self._default_fusion is not None:
            return self._default_fusion
        return Fusion(components=tuple(self.retrievers))

    @property
    def exact(self) -> bool:
        return all(r.exact for r in self.retrievers.values())

    @property
    def capabilities(self) -> Capabilities:
        """What the sparse backend can do (writes, in-process answers, filters)."""
        return capabilities(self.retrievers.get("sparse"))

    def check_writable(self) -> None:
        """Raise :class:`NotWritable` (naming what to do instead) unless writes to the index are served."""
        if self.index is None:
            raise NotWritable("this engine serves no index to write to")
        sparse = self.retrievers.get("sparse")
        found = capabilities(sparse)
        if sparse is not None and not found.writable:
            raise NotWritable(f"the {self.backend} backend does not take writes: {found.why_not_writable}")
        check = getattr(sparse, "check_writable", None)
        if check is not None:
            check()

    def schema(self) -> Schema:
        """The metadata schema of the index (no fields when it has none)."""
        if self.index is None:
            return Schema()
        return self.index.schema or Schema()

    def stores_documents(self) -> bool:
        return self.index is not None and bool(self.index.manifest.documents)

    def resolve(self, request: SearchRequest, state: State | None = None, max_k: int | None = None) -> SearchRequest:
        """``request`` checked once and completed with this engine's defaults (:func:`lsr.request.resolve`)."""
        return resolve(request, self, state or self.state(), max_k)

    def light(self, request: SearchRequest) -> bool:
        """Whether a resolved request costs less than a thread-pool hop: every retriever it asks is light (in
        process, no model, no I/O wait) and the sparse query needs no model (inference-free)."""
        retrievers = self.retrievers
        if request.feedback is not None:  # a vector read a feedback document, a second pass
            return False
        if not all(capabilities(retrievers.get(c)).light for c in request.components):
            return False
        if "sparse" in request.components:
            encoder = self.index.encoder if self.index is not None else None
            return encoder is not None and not encoder.needs_model_for_queries
        return True

    def require(self, mode: str, fusion: Fusion | None = None, state: State | None = None) -> None:
        """Raise :class:`InvalidInput` / :class:`Unavailable` (naming the fix) unless ``mode`` can be served."""
        retrievers = (state or self.state()).retrievers
        if mode not in MODES:
            raise InvalidInput(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if mode == "hybrid" and len(retrievers) < 2:
            raise Unavailable("hybrid fuses two or three components; this index has only " + ", ".join(retrievers)
                              + "; add a part with `lsr index ... --bm25` or `--dense-encoder DIR`")
        for component in (fusion or self.default_fusion()).components if mode == "hybrid" else (mode,):
            if component not in retrievers:
                hint = _PART_FOR.get(component)
                raise Unavailable(f"this index has no {component} part" +
                                  (f"; rebuild it with `lsr index ... {hint}`" if hint else ""))

    def sparse_encoder(self):
        if self.index is None or self.index.encoder is None:
            raise Unavailable("this engine has no sparse encoder; search with vectors")
        return self.index.encoder

    def dense_encoder(self):
        if self.index is None or self.index.dense_encoder is None:
            raise Unavailable("this index has no dense encoder; rebuild it with `lsr index ... --dense-encoder DIR`")
        return self.index.dense_encoder

    def warm_up(self) -> None:
        """Compile every kernel variant, load the models and page the index in, before the first request."""
        for retriever in self.retrievers.values():
            retriever.warm_up()
        text_ok = "sparse" not in self.retrievers or (self.index is not None and self.index.encoder is not None)
        for mode in self.modes():
            if text_ok or mode in ("dense", "bm25"):
                self.search("warm up", 1, mode)
        if text_ok:
            self.search_batch(["warm up", "second query"], 1, self.default_mode)
        if text_ok and self.schema().fields and self.capabilities.filterable:  # the filtered paths, compiled
            try:
                self.search("warm up", 1, filter={"exists": {"field": next(iter(self.schema().fields))}})
            except Unavailable:  # a component of the default mode that cannot filter: filtered requests get 422
                pass

    # -- search -------------------------------------------------------------------------------------------------------
    def search(self, query: str | SparseBatch, k: int = 10, mode: str | None = None, fusion: Fusion | None = None,
               *, request: SearchRequest | None = None, **options) -> SearchResult:
        """Top-``k`` for one query: a text, or a one-row :class:`SparseBatch` (then the sparse component alone).
        ``options`` are the other :class:`~lsr.request.SearchRequest` fields (``offset``, ``filter``, ``explain``,
        ``return_documents``, ``return_metadata``, ``pruning``); or pass a whole ``request``."""
        if isinstance(query, SparseBatch):
            if len(query) != 1 or mode not in (None, "sparse") or fusion is not None:
                raise InvalidInput("a SparseBatch query is one vector searched by the sparse component; use "
                                   "search_vectors for several")
            return self.search_vectors(query, k, request=request, **options)[0]
        return self.search_batch([query], k, mode, fusion, request=request, **options)[0]

    def search_batch(self, queries: Sequence[str], k: int = 10, mode: str | None = None, fusion: Fusion | None = None,
                     *, request: SearchRequest | None = None, **options) -> list[SearchResult]:
        """Top-``k`` for each query of a batch, answered together (multi-threaded across queries: ``threads``)."""
        if isinstance(queries, str):
            raise InvalidInput("search_batch takes a list of queries; use search() for one")
        if not isinstance(queries, (list, tuple)) or not all(isinstance(q, str) for q in queries):
            raise InvalidInput("queries must be a list of strings")
        request = request or SearchRequest(k=k, mode=mode, fusion=fusion, **options)
        return self.run(request, EncodedQueries(queries, self))

    def search_vectors(self, vectors: SparseBatch, k: int = 10, *, request: SearchRequest | None = None,
                       **options) -> list[SearchResult]:
        """Top-``k`` for already-encoded sparse queries (token ids + weights), sparse component only."""
        if options.pop("mode", "sparse") not in (None, "sparse"):
            raise InvalidInput("search_vectors searches sparse vectors with the sparse component: mode must be sparse")
        request = request or SearchRequest(k=k, mode="sparse", **options)
        if request.mode not in (None, "sparse"):
            raise InvalidInput("search_vectors searches the sparse component only")
        if request.mode is None:
            request = replace(request, mode="sparse")
        return self.run(request, EncodedQueries(None, self, sparse=vectors))

    def run(self, request: SearchRequest, encoded: EncodedQueries, state: State | None = None) -> list[SearchResult]:
        """Answer ``request`` for every query of ``encoded`` from one generation (``state``, default: the current)."""
        state = state or self.state()  # one generation for the whole request
        request = self.resolve(request, state)
        if len(encoded) == 0:
            return []
        components = request.components
        started = time.perf_counter()
        answers: dict[str, list[Ranked]] = {}
        for component in components:
            retriever = state.retrievers[component]
            answers[component] = retriever.retrieve(encoded.get(retriever.takes), request)
        original = None
        feedback = request.feedback
        expansions: list[dict] = [{} for _ in range(len(encoded))]
        if feedback is not None and "sparse" in components and "sparse" in feedback.components:
            original = encoded.get("sparse")  # a second, exact pass with the expanded sparse queries
            first = answers["sparse"]
            if request.depth < feedback.docs:
                first = state.retrievers["sparse"].retrieve(original, replace(
                    request, k=feedback.docs, offset=0, mode="sparse", fusion=None, components=("sparse",)))
            expanded = self._rocchio(original, first, feedback, state.snapshot)
            answers["sparse"] = state.retrievers["sparse"].retrieve(expanded, request)
            tokens = self.index.token_strings()
            for q in range(len(encoded)):
                asked = set(original.row(q)[0].tolist())
                ids, weights = expanded.row(q)
                expansions[q]["sparse"] = [{"term": tokens[t], "weight": float(w), "added": t not in asked}
                                           for t, w in sorted(zip(ids.tolist(), weights.tolist()), key=lambda x: -x[1])]
        if feedback is not None and "bm25" in components and "bm25" in feedback.components:
            lexical = state.retrievers["bm25"]
            first = answers["bm25"]
            if request.depth < feedback.docs:
                first = lexical.retrieve(encoded.get("text"), replace(
                    request, k=feedback.docs, offset=0, mode="bm25", fusion=None, components=("bm25",)))
            analyzed = lexical.analyze(encoded.get("text"))
            weighted = self._rm3(analyzed, first, feedback, state.snapshot, lexical)
            answers["bm25"] = lexical.retrieve_weighted(weighted, request)
            for q, (terms, asked) in enumerate(zip(weighted, analyzed)):
                asked = set(asked)
                expansions[q]["bm25"] = [{"term": t, "weight": float(w), "added": t not in asked}
                                         for t, w in sorted(terms, key=lambda x: -x[1])]
        fused_lists = self._fused(request, answers, len(encoded))
        retrieve_ms = ((time.perf_counter() - started) * 1000 - encoded.encode_ms) / len(encoded)
        encode_ms = encoded.encode_ms / len(encoded)
        sparse = (expanded if original is not None else encoded.get("sparse")) if request.explain else None
        out = []
        for q, (per, ids, scores) in enumerate(fused_lists):
            titles = texts = explanations = chunks = metadata = None
            if "sparse" in per and per["sparse"].chunks is not None:
                best = dict(zip(per["sparse"].ids, per["sparse"].chunks))
                chunks = [_chunk(best.get(doc)) for doc in ids]
            if request.return_documents:
                records = [state.snapshot.document(doc) for doc in ids]
                titles = [r["title"] if r is not None else None for r in records]
                texts = [r["text"] if r is not None else None for r in records]
            if request.return_metadata:
                metadata = [state.snapshot.metadata(doc) or {} for doc in ids]
            if request.explain:
                token_ids, weights = sparse.row(q)
                asked = set(original.row(q)[0].tolist()) if original is not None else None
                explanations = [self.explain_vector(token_ids, weights, doc, state.snapshot, asked) for doc in ids]
            out.append(SearchResult(ids=ids, scores=scores, mode=request.mode, components=tuple(components),
                                    exact=all(per[c].exact for c in components), encode_ms=encode_ms,
                                    retrieve_ms=retrieve_ms, postings=sum(per[c].postings for c in components),
                                    generation=state.snapshot.number if state.snapshot is not None else None,
                                    titles=titles, texts=texts, explanations=explanations, chunks=chunks,
                                    metadata=metadata, offset=request.offset, per_component=per,
                                    expansion=expansions[q] or None))
        return out

    @staticmethod
    def _fused(request: SearchRequest, answers: dict[str, list[Ranked]], n: int) -> list[tuple]:
        """Per query: (each component's answer, the page's ids, its scores)."""
        first, end = request.offset, request.offset + request.k
        out = []
        for q in range(n):
            per = {c: answers[c][q] for c in request.components}
            if request.mode == "hybrid":
                fused = request.fusion.fuse([list(zip(per[c].ids, per[c].scores)) for c in request.components], end)
                out.append((per, [doc for doc, _ in fused[first:]], [score for _, score in fused[first:]]))
            else:
                ranked = per[request.mode]
                out.append((per, ranked.ids[first:end], ranked.scores[first:end]))
        return out

    def _rocchio(self, queries: SparseBatch, first: list[Ranked], feedback, snapshot) -> SparseBatch:
        """Per query: weight x q / max(q) + (1 - weight) x mean over its top documents of d / max(d), the strongest
        ``feedback.terms`` terms, scaled back to the query's maximum (:class:`lsr.request.Feedback`)."""
        vocab = self.index.vocab_size
        scale = self.index.manifest.scale or 1.0
        rows = []
        for q, ranked in enumerate(first):
            ids, weights = queries.row(q)
            top = float(weights.max()) if len(weights) else 1.0
            vector = np.zeros(vocab, dtype=np.float64)
            vector[ids] = feedback.weight * weights / top
            centroid = np.zeros(vocab, dtype=np.float64)
            used = 0
            for doc in ranked.ids[:feedback.docs]:
                found = snapshot.find(doc)
                if found is None:
                    continue
                view, local = found
                doc_rows, forward = view.segment.doc_rows(), view.segment.forward()
                stored = np.zeros(vocab, dtype=np.float64)
                for row in range(doc_rows[local], doc_rows[local + 1]):  # (a chunked document: its chunks' max)
                    tokens, impacts = forward.row(row)
                    np.maximum.at(stored, tokens, impacts.astype(np.float64) / scale)
                if stored.max() > 0:
                    centroid += stored / stored.max()
                    used += 1
            if used:
                vector += (1.0 - feedback.weight) * centroid / used
            keep = np.argsort(-vector, kind="stable")[:feedback.terms]
            keep = np.sort(keep[vector[keep] > 0]).astype(np.int32)
            rows.append((keep, (vector[keep] * top).astype(np.float32)))
        return SparseBatch.from_rows(rows)

    @staticmethod
    def _rm3(analyzed_queries: Sequence[list[str]], first: list[Ranked], feedback, snapshot, lexical
             ) -> list[list[tuple[str, float]]]:
        """Per query (its terms as BM25 reads them), RM3's weighted terms (:class:`lsr.request.Feedback`): the query's
        own distribution x weight + the top documents' relevance model (its ``bm25_terms`` strongest, normalized) x
        (1 - weight)."""
        from collections import Counter

        out = []
        for query_terms, ranked in zip(analyzed_queries, first):
            own = Counter(query_terms)
            total = sum(own.values())
            ids, scores = ranked.ids[:feedback.docs], ranked.scores[:feedback.docs]
            mass = sum(scores)
            model: Counter = Counter()
            records = [snapshot.document(doc) for doc in ids]
            analyzed = lexical.analyze([f"{r.get('title') or ''} {r.get('text') or ''}" if r else "" for r in records])
            for terms, score in zip(analyzed, scores):
                if not terms or mass <= 0:
                    continue
                share = score / mass
                for term, count in Counter(terms).items():
                    model[term] += share * count / len(terms)
            top = model.most_common(feedback.bm25_terms)
            top_mass = sum(w for _, w in top)
            mixed: dict[str, float] = {}
            for term, count in own.items():
                mixed[term] = feedback.weight * count / total
            for term, weight in top:
                mixed[term] = mixed.get(term, 0.0) + (1 - feedback.weight) * weight / top_mass
            out.append([(term, weight) for term, weight in mixed.items() if weight > 0] or
                       [(term, 1.0) for term in query_terms])
        return out

    # -- explanations and documents -----------------------------------------------------------------------------------
    def explain_vector(self, token_ids: np.ndarray, weights: np.ndarray, doc_id: str,
                       snapshot=None, asked: set[int] | None = None) -> list[Contribution]:
        """The query tokens ``doc_id`` holds: query weight x document impact (dequantized, as scored), largest
        contribution first; the contributions add up to the document's sparse score. In a chunked index: the
        tokens of its best chunk (``max``), or summed over its chunks (``sum``)."""
        if self.index is None:
            raise Unavailable("explanations read the index's sparse postings; this engine has no index")
        snapshot = snapshot or self.state().snapshot
        found = snapshot.find(doc_id)
        if found is None:
            return []
        view, local = found
        segment = view.segment
        keep = weights > 0
        token_ids, weights = token_ids[keep], weights[keep]
        rows = segment.doc_rows()
        stored_rows = [segment.stored_row(row, token_ids) for row in range(rows[local], rows[local + 1])]
        if self.index.manifest.chunking and self.index.manifest.chunking["aggregate"] == "sum":
            stored = np.sum(stored_rows, axis=0)
        else:  # the best chunk (ties: the first, as the kernel breaks them)
            stored = max(stored_rows, key=lambda values: float(np.dot(values, weights)))
        scale = self.index.manifest.scale or 1.0
        tokens = self.index.token_strings()
        parts = []
        for token, weight, impact in zip(token_ids.tolist(), weights.tolist(), stored.tolist()):
            if impact > 0:
                document_weight = impact / scale
                parts.append(Contribution(token=tokens[token], query_weight=float(weight),
                                          document_weight=document_weight, contribution=float(weight) * document_weight,
                                          feedback=asked is not None and token not in asked))
        parts.sort(key=lambda c: -c.contribution)
        return parts

    def document(self, doc_id: str) -> dict | None:
        if self.index is None:
            raise Unavailable("this engine has no index, so no stored texts")
        if not self.index.manifest.documents:
            raise Unavailable("this index stores no texts; rebuild it with `lsr index ... --store-documents` "
                              "(store_documents=True)")
        return self.state().snapshot.document(doc_id)

    # -- defaults ---------------------------------------------------------------------------------------------------
    def _parse_feedback(self, spec):
        """The index default's pseudo-relevance feedback (``search_defaults.feedback``), for the sides it can serve."""
        if not spec:
            return None
        from lsr.request import Feedback

        feedback = Feedback(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()})
        components = set(self.default_fusion().components if self.default_mode == "hybrid" else (self.default_mode,))
        sides = tuple(c for c in feedback.components if c in components and c in self.retrievers and
                      (c != "bm25" or self.stores_documents()))
        return replace(feedback, components=sides) if sides else None

    def _parse_defaults(self, defaults: dict) -> tuple[str, Fusion | None]:
        mode = defaults.get("mode", "sparse")
        fusion = Fusion.from_dict(defaults["fusion"]) if defaults.get("fusion") else None
        if mode == "hybrid":
            available = [c for c in (fusion.components if fusion else ()) if c in self.retrievers]
            if len(available) < 2:  # the index default needs a part this engine did not load
                mode, fusion = next(iter(self.retrievers)), None
            elif len(available) < len(fusion.components):
                fusion = Fusion(method=fusion.method, components=tuple(available), rrf_k=fusion.rrf_k,
                                depth=fusion.depth)
        elif mode not in self.retrievers:
            mode = next(iter(self.retrievers))
        return mode, fusion


def _chunk(chunk: tuple[int, int, int] | None) -> dict | None:
    return None if chunk is None else {"number": chunk[0], "start": chunk[1], "end": chunk[2]}
