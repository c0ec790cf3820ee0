"""The ``lucene`` sparse backend: Pyserini's LuceneImpactSearcher over the index's ``lucene/`` part; and BM25 through
Pyserini over a corpus (:class:`PyseriniBm25Retriever`, BEIR's reference baseline).

The queries are the ones lsr's encoder produces (same token weights as the native kernel); a pass-through query
encoder hands them to Pyserini. Anserini casts query weights to int, so each query is scaled so that its largest
weight is ``QUERY_WEIGHT_MAX`` (1000) and rounded; scores are scaled back to lsr's units (query weight x impact).
The rounding makes the ranking approximate (recall@10 0.9994 against exact at 1M), so answers say ``exact: false``.
``min_idf`` is set below zero: Pyserini's default (0) silently drops a term present in every document.
The Lucene part is rebuild-only: it is built with the index (``--lucene``) and not updated in place.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import numpy as np

from lsr.corpus import read_corpus
from lsr.errors import Unavailable
from lsr.lucene.java import QUERY_WEIGHT_MAX, start_jvm
from lsr.request import SearchRequest, as_request
from lsr.results import Ranked
from lsr.retrievers import Capabilities
from lsr.retrievers.bm25 import _OneQueryAtATime
from lsr.sparse import SparseBatch

LUCENE_REBUILD_ONLY = ("the Lucene part is rebuild-only: a write would leave it stale. Serve the native backend to take "
                       "writes, then rebuild with `lsr index --lucene`")


class PassThroughEncoder:
    """Pyserini's query-encoder protocol: ``encode(query) -> {token: weight}``, here a lookup of pre-encoded
    queries by key (batch_search hands the encoder the strings it was given)."""

    def __init__(self) -> None:
        self.vectors: dict[str, dict[str, int]] = {}

    def encode(self, key: str) -> dict[str, int]:
        return self.vectors[key]


def integer_query(tokens: list[str], ids: np.ndarray, weights: np.ndarray) -> tuple[dict[str, int], float]:
    """The query as Anserini takes it: ``{token: int weight}`` scaled so the largest weight is 1000; and the factor."""
    if len(weights) == 0 or weights.max() <= 0:
        return {}, 1.0
    factor = QUERY_WEIGHT_MAX / float(weights.max())
    rounded = np.rint(weights.astype(np.float64) * factor).astype(np.int64)
    return {tokens[t]: int(w) for t, w in zip(ids.tolist(), rounded.tolist()) if w > 0}, factor


class LuceneRetriever:
    component = "sparse"
    takes = "sparse"
    name = "lucene"
    exact = False  # integer-rounded query weights
    capabilities = Capabilities(why_not_writable=LUCENE_REBUILD_ONLY,
                                why_not_filterable="Pyserini's LuceneImpactSearcher takes no filter query (it builds "
                                                   "the query from the vector alone); search with the native backend")

    def __init__(self, snapshot, threads: int | None = None) -> None:
        index = snapshot.index
        lucene = index.manifest.lucene
        if not lucene:
            raise Unavailable(f"{index.directory} has no Lucene part; rebuild it with `lsr index ... --lucene` (the "
                              "Lucene part is rebuild-only)")
        if lucene.get("generation") != snapshot.number:
            raise Unavailable(f"the Lucene part of {index.directory} describes generation {lucene.get('generation')}, "
                              f"the index is at generation {snapshot.number} (documents were added, replaced or "
                              "deleted since): the Lucene part is rebuild-only; rebuild it with `lsr index ... "
                              "--lucene`, or search with the native backend")
        start_jvm()
        from pyserini.search.lucene import LuceneImpactSearcher

        self.index = index
        self.snapshot = snapshot
        self.encoder = PassThroughEncoder()
        self.searcher = LuceneImpactSearcher(str(index.directory / lucene["directory"]), self.encoder, min_idf=-1.0)
        self.tokens = index.token_strings()
        self.scale = index.manifest.scale  # impact = stored / scale
        self.threads = threads or 1

    @classmethod
    def open(cls, snapshot, threads: int | None = None) -> LuceneRetriever:
        return cls(snapshot, threads)

    def warm_up(self) -> None:
        from lsr.retrievers.native import frequent_terms

        term = frequent_terms(self.snapshot, 1)[0]
        self.retrieve(SparseBatch.from_rows([(np.array([term], np.int32), np.array([1.0], np.float32))]), 1)

    def retrieve(self, queries: SparseBatch, request: SearchRequest | int, threads: int | None = None) -> list[Ranked]:
        request = as_request(request, threads)
        k = request.depth
        queries.validate(self.index.vocab_size)
        threads = request.threads or self.threads
        keys, factors = [], []
        call = uuid.uuid4().hex  # keys of this call only: concurrent requests share the pass-through encoder
        for q in range(len(queries)):
            vector, factor = integer_query(self.tokens, *queries.row(q))
            key = f"{call}-{q}"
            self.encoder.vectors[key] = vector
            keys.append(key)
            factors.append(factor * self.scale)
        try:
            live = [key for key in keys if self.encoder.vectors[key]]  # a query with no weight left matches nothing
            if len(live) <= 1 or threads == 1:
                hits = {key: self.searcher.search(key, k) for key in live}
            else:
                hits = self.searcher.batch_search(live, live, k=k, threads=threads)
        finally:
            for key in keys:
                self.encoder.vectors.pop(key, None)
        return [Ranked(ids=[hit.docid for hit in hits.get(key, [])],
                       scores=[float(hit.score) / factor for hit in hits.get(key, [])], exact=False)
                for key, factor in zip(keys, factors)]


class PyseriniBm25Retriever(_OneQueryAtATime):
    """BM25 as BEIR reports it: Pyserini's Lucene BM25 (k1 0.9, b 0.4) over a multifield index (title and text as
    separate fields, equal boosts). The Lucene index is built once into ``index_dir`` and reused."""

    name = "pyserini-bm25"

    def __init__(self, index_dir: str | Path) -> None:
        start_jvm()
        from pyserini.search.lucene import LuceneSearcher

        self.searcher = LuceneSearcher(str(index_dir))
        self.searcher.set_bm25(0.9, 0.4)
        self.fields = {"contents": 1.0, "title": 1.0}
        self.index_dir = Path(index_dir)
        self.build_s: float | None = None

    @classmethod
    def for_corpus(cls, corpus: str | Path, index_dir: str | Path | None = None) -> PyseriniBm25Retriever:
        """Open (building it first if needed) the multifield BM25 index of ``corpus`` (default location:
        ``var/lucene-bm25/<corpus folder name>``)."""
        from lsr.lucene.java import build_bm25_index, check_available

        check_available()
        index_dir = Path(index_dir or Path("var/lucene-bm25") / Path(corpus).resolve().name)
        build_s = None
        if not index_dir.exists():
            tmp = index_dir.with_name(index_dir.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            records = ({"id": d.id, "contents": d.text, "title": d.title} for d in read_corpus(corpus))
            build_s = build_bm25_index(records, tmp)
            tmp.rename(index_dir)
        retriever = cls(index_dir)
        retriever.build_s = build_s
        return retriever

    @property
    def doc_count(self) -> int:
        return self.searcher.num_docs

    def _one(self, query: str, k: int) -> Ranked:
        hits = self.searcher.search(query, k=k, fields=self.fields)
        return Ranked(ids=[h.docid for h in hits], scores=[float(h.score) for h in hits])
