"""The search engine behind the HTTP API and `lsr eval`: sparse, dense, BM25 and hybrid over one index directory.

``Engine.open(index)`` loads what the index holds: the inverted index with its sparse encoder (always), the FAISS
index with its dense encoder (``--dense-encoder`` at index time), the bm25s index (``--bm25``) and the stored
texts (``--store-documents``). Modes:

- ``sparse``: exact top-k with the SIMD kernel (queries through the index's own encoder; inference-free queries are
  tokenizer + IDF, no model);
- ``dense``: FAISS inner product over unit-norm embeddings (exact with a flat index);
- ``bm25``: bm25s;
- ``hybrid``: two of the above (``Fusion.components``; default sparse + dense, or sparse + BM25 on an index without
  a dense part), each retrieved to
  ``max(k, Fusion.depth)``, fused over the union of the two lists by convex combination after per-query min-max
  normalization or by reciprocal rank fusion (:mod:`service.fusion`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.dense import DenseIndex
from indexer.docstore import DocumentStore
from indexer.inverted import IndexError_
from service.fusion import convex_fusion, rrf_fusion
from service.searcher import Pruning, Searcher, SearchResult
from training.encoders import DenseEncoder, load_encoder

MODES = ("sparse", "dense", "bm25", "hybrid")
FUSION_METHODS = ("convex", "rrf")


@dataclass(frozen=True)
class Fusion:
    method: str = "convex"
    alpha: float = 0.5  # convex: weight of the first component
    rrf_k: int = 60
    components: tuple[str, str] = ("sparse", "dense")
    depth: int = 100  # each component retrieves max(k, depth) before fusing

    def __post_init__(self) -> None:
        if self.method not in FUSION_METHODS:
            raise ValueError(f"fusion method must be one of {', '.join(FUSION_METHODS)}, got {self.method!r}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"fusion alpha must be in [0, 1], got {self.alpha}")
        if len(self.components) != 2 or len(set(self.components)) != 2 or \
                not set(self.components) <= {"sparse", "dense", "bm25"}:
            raise ValueError(f"fusion components must be two different of sparse, dense, bm25; got {self.components}")
        if self.depth < 1 or self.rrf_k < 0:
            raise ValueError("fusion depth must be >= 1 and rrf_k >= 0")


class UnavailableError(ValueError):
    """A mode or route needs a part this index was built without (dense, BM25, stored texts)."""


class Engine:
    def __init__(self, searcher: Searcher, dense_encoder: DenseEncoder | None = None,
                 dense_index: DenseIndex | None = None, bm25=None, documents: DocumentStore | None = None) -> None:
        self.searcher = searcher
        self.index = searcher.index
        self.dense_encoder = dense_encoder
        self.dense_index = dense_index
        self.bm25 = bm25
        self.documents = documents
        self._rows: dict[str, int] | None = None

    @classmethod
    def open(cls, index_dir: str | Path, encoder: str | Path | None = None, device: str | None = None,
             load: Sequence[str] = ("dense", "bm25", "documents"), pruning: Pruning | None = None,
             backend: str = "native") -> Engine:
        """Open ``index_dir`` and every optional part it holds (restricted to ``load``); the sparse side is searched
        by ``backend`` (``native``: lsr's kernel with ``pruning``; ``lucene``: Pyserini over the ``lucene/`` part)."""
        searcher = Searcher.open(index_dir, encoder=encoder, device=device, pruning=pruning, backend=backend)
        manifest, directory = searcher.index.manifest, Path(index_dir)
        dense_encoder = dense_index = bm25 = documents = None
        if manifest.dense and "dense" in load:
            dense_encoder = load_encoder(directory / manifest.dense["directory"], device=device)
            if dense_encoder.identity() != manifest.dense["encoder_identity"]:
                raise IndexError_(f"{directory}/{manifest.dense['directory']} is not the dense encoder the index was "
                                  "built with (identity differs); rebuild the index")
            dense_index = DenseIndex(directory / "dense", manifest.dense["index"])
            if dense_index.index.ntotal != manifest.doc_count:
                raise IndexError_(f"{directory}: the dense index holds {dense_index.index.ntotal} documents, the "
                                  f"inverted index {manifest.doc_count}; the index is damaged, rebuild it")
        if manifest.bm25 and "bm25" in load:
            from training.bm25 import Bm25

            bm25 = Bm25.load(directory / "bm25")
        if manifest.documents and "documents" in load:
            documents = DocumentStore(directory / "documents")
        return cls(searcher, dense_encoder, dense_index, bm25, documents)

    # -- what is available --------------------------------------------------------------------------------------------
    def modes(self) -> list[str]:
        available = ["sparse"] + (["dense"] if self.dense_index is not None else []) + (
            ["bm25"] if self.bm25 is not None else [])
        return available + (["hybrid"] if len(available) > 1 else [])

    def default_fusion(self) -> Fusion:
        """Convex 0.5 over sparse + dense, or sparse + BM25 when the index has no dense part."""
        return Fusion(components=("sparse", "dense") if self.dense_index is not None or self.bm25 is None
                      else ("sparse", "bm25"))

    def require(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if mode == "dense" and self.dense_index is None:
            raise UnavailableError("this index has no dense part; rebuild it with `lsr index ... --dense-encoder DIR`")
        if mode == "bm25" and self.bm25 is None:
            raise UnavailableError("this index has no BM25 part; rebuild it with `lsr index ... --bm25`")

    def row_of(self, doc_id: str) -> int | None:
        if self._rows is None:
            rows: dict[str, int] = {}
            for segment in self.index.segments:
                base = segment.info.doc_base
                rows.update((str(d), base + i) for i, d in enumerate(segment.ids.tolist()))
            self._rows = rows
        return self._rows.get(doc_id)

    def document(self, doc_id: str) -> dict | None:
        if self.documents is None:
            raise UnavailableError("this index stores no texts; rebuild it with `lsr index ... --store-documents`")
        row = self.row_of(doc_id)
        return None if row is None else self.documents.get(row)

    # -- search -------------------------------------------------------------------------------------------------------
    def search(self, query: str, k: int = 10, mode: str = "sparse", fusion: Fusion | None = None) -> SearchResult:
        return self.search_batch([query], k, mode, fusion)[0]

    def search_batch(self, queries: Sequence[str], k: int = 10, mode: str = "sparse", fusion: Fusion | None = None,
                     threads: int | None = None) -> list[SearchResult]:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.require(mode)
        if mode == "hybrid":
            fusion = fusion or self.default_fusion()
            for component in fusion.components:
                self.require(component)
            depth = max(k, fusion.depth)
            a, b = (self._component(queries, depth, c, threads) for c in fusion.components)
            return [self._fuse(x, y, k, fusion) for x, y in zip(a, b)]
        return self._component(queries, k, mode, threads)

    def _component(self, queries: Sequence[str], k: int, mode: str, threads: int | None) -> list[SearchResult]:
        if mode == "sparse":
            return self.searcher.search_batch(queries, k, threads=threads)
        started = time.perf_counter()
        if mode == "dense":
            vectors = self.dense_encoder.encode_queries(list(queries))
            encode_ms = (time.perf_counter() - started) * 1000 / max(1, len(queries))
            started = time.perf_counter()
            scores, rows = self.dense_index.search(vectors, k)
            score_ms = (time.perf_counter() - started) * 1000 / max(1, len(queries))
            results = []
            for q in range(len(queries)):
                keep = rows[q] >= 0
                found = rows[q][keep].tolist()
                results.append(SearchResult(ids=[self.index.external_id(r) for r in found],
                                            scores=scores[q][keep].astype(np.float64).tolist(), postings=0,
                                            encode_ms=encode_ms, score_ms=score_ms, rows=found))
            return results
        results = []  # bm25
        for query in queries:
            ids, scores = self.bm25.search(query, k)
            keep = scores > 0  # BM25 ranks only documents sharing a term with the query
            ids = [d for d, kept in zip(ids, keep) if kept]
            results.append(SearchResult(ids=ids, scores=scores[keep].astype(np.float64).tolist(), postings=0,
                                        encode_ms=0.0, score_ms=(time.perf_counter() - started) * 1000,
                                        rows=[self.row_of(d) for d in ids]))
            started = time.perf_counter()
        return results

    def _fuse(self, a: SearchResult, b: SearchResult, k: int, fusion: Fusion) -> SearchResult:
        lists = (list(zip(a.ids, a.scores)), list(zip(b.ids, b.scores)))
        fused = (convex_fusion(*lists, alpha=fusion.alpha, k=k) if fusion.method == "convex"
                 else rrf_fusion(*lists, rrf_k=fusion.rrf_k, k=k))
        rows = dict(zip(a.ids, a.rows)) | dict(zip(b.ids, b.rows))
        return SearchResult(ids=[d for d, _ in fused], scores=[s for _, s in fused], postings=a.postings + b.postings,
                            encode_ms=a.encode_ms + b.encode_ms, score_ms=a.score_ms + b.score_ms,
                            rows=[rows[d] for d, _ in fused])

    # -- explanations ---------------------------------------------------------------------------------------------------
    def explain(self, query: str, rows: Sequence[int]) -> list[list[dict]]:
        """For each row: the query tokens the document matches, with query weight x document impact (sparse side)."""
        vector = self.searcher.encoder.encode_queries([query])
        token_ids, weights = vector.row(0)
        keep = weights > 0
        token_ids, weights = token_ids[keep], weights[keep]
        tokens = self.searcher.encoder.tokenizer.convert_ids_to_tokens(token_ids.tolist())
        names = dict(zip(token_ids.tolist(), tokens))
        out = []
        for row in rows:
            out.append([{"token": names[t], "query_weight": qw, "document_weight": dw, "contribution": qw * dw}
                        for t, qw, dw in self.searcher.explain(token_ids, weights, row)])
        return out
