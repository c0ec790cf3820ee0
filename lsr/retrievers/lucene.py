"""The ``lucene`` sparse backend: Pyserini's LuceneImpactSearcher over the index's ``lucene/`` part.

The queries are the ones lsr's encoder produces (same token weights as the native kernel); a pass-through query
encoder hands them to Pyserini. Anserini casts query weights to int, so each query is scaled so that its largest
weight is ``QUERY_WEIGHT_MAX`` (1000) and rounded; scores are scaled back to lsr's units (query weight x impact).
The rounding makes the ranking approximate (recall@10 0.9994 against exact at 1M), so answers say ``exact: false``.
``min_idf`` is set below zero: Pyserini's default (0) silently drops a term present in every document.
The Lucene part is rebuild-only: it is built with the index (``--lucene``) and not updated in place.
"""

from __future__ import annotations

import uuid

import numpy as np

from lsr.errors import Unavailable
from lsr.lucene import QUERY_WEIGHT_MAX, start_jvm
from lsr.results import Ranked
from lsr.retrievers import check_batch
from lsr.sparse import SparseBatch


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

    def retrieve(self, queries: SparseBatch, k: int, threads: int | None = None) -> list[Ranked]:
        check_batch(queries, k)
        queries.validate(self.index.vocab_size)
        threads = threads or self.threads
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
