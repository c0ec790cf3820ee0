"""The ``lucene`` sparse backend: Pyserini's LuceneImpactSearcher over the index's ``lucene/`` part.

The queries are the ones lsr's encoder produces (same token weights as the native kernel); a pass-through query
encoder hands them to Pyserini. Anserini casts query weights to int, so each query is scaled so that its largest
weight is ``QUERY_WEIGHT_MAX`` (1000) and rounded; scores are scaled back to lsr's units (query weight x impact).
``min_idf`` is set below zero: Pyserini's default (0) silently drops a term present in every document.
"""

from __future__ import annotations

import numpy as np

from indexer.lucene import QUERY_WEIGHT_MAX, start_jvm
from training.encoders import SparseBatch


class _PassThrough:
    """Pyserini's query-encoder protocol: ``encode(query) -> {token: weight}``, here a lookup of pre-encoded
    queries by key (batch_search hands the encoder the strings it was given)."""

    def __init__(self) -> None:
        self.vectors: dict[str, dict[str, int]] = {}

    def encode(self, key: str) -> dict[str, int]:
        return self.vectors[key]


class LuceneBackend:
    def __init__(self, directory, tokens: list[str], scale: float) -> None:
        start_jvm()
        from pyserini.search.lucene import LuceneImpactSearcher

        self.encoder = _PassThrough()
        self.searcher = LuceneImpactSearcher(str(directory), self.encoder, min_idf=-1.0)
        self.tokens = tokens
        self.scale = scale  # the native index's impact scale (impact = stored / scale)

    def _integer_query(self, ids: np.ndarray, weights: np.ndarray) -> tuple[dict[str, int], float]:
        if len(weights) == 0 or weights.max() <= 0:
            return {}, 1.0
        factor = QUERY_WEIGHT_MAX / float(weights.max())
        rounded = np.rint(weights.astype(np.float64) * factor).astype(np.int64)
        return {self.tokens[t]: int(w) for t, w in zip(ids.tolist(), rounded.tolist()) if w > 0}, factor

    def search(self, vectors: SparseBatch, k: int, threads: int = 1) -> list[list[tuple[str, float]]]:
        """Top-k (external id, score in lsr units) of every query."""
        keys, factors = [], []
        for q in range(len(vectors)):
            vector, factor = self._integer_query(*vectors.row(q))
            key = f"q{q}"
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
            self.encoder.vectors.clear()
        return [[(hit.docid, float(hit.score) / factor) for hit in hits.get(key, [])]
                for key, factor in zip(keys, factors)]
