"""BM25 over a document collection, through bm25s (a real BM25 implementation: Lucene's formula).

Used as a teacher, as the hard-negative miner, and as the lexical baseline of `lsr eval --baseline bm25`.
Text analysis: lowercase, English stopwords removed, Snowball English stemming (as BEIR/bm25s reference runs).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class Bm25:
    def __init__(self, ids: Sequence[str], texts: Sequence[str], k1: float = 1.5, b: float = 0.75) -> None:
        import bm25s
        import Stemmer

        if len(ids) != len(texts):
            raise ValueError(f"{len(ids)} ids for {len(texts)} texts")
        if not ids:
            raise ValueError("BM25 needs at least one document")
        self.ids = list(ids)
        self.k1, self.b = k1, b
        self._stemmer = Stemmer.Stemmer("english")
        self._bm25s = bm25s
        self._index = bm25s.BM25(k1=k1, b=b, method="lucene")
        self._index.index(self._tokenize(texts), show_progress=False)

    def _tokenize(self, texts: Sequence[str]):
        return self._bm25s.tokenize(list(texts), stopwords="en", stemmer=self._stemmer, show_progress=False)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every document (in ``ids`` order) for one query."""
        tokens = self._bm25s.tokenize([query], stopwords="en", stemmer=self._stemmer, show_progress=False,
                                      return_ids=False)[0]
        if not tokens:  # only stopwords or punctuation: no document matches
            return np.zeros(len(self.ids), dtype=np.float32)
        return np.asarray(self._index.get_scores(tokens), dtype=np.float32)

    def search(self, query: str, k: int) -> tuple[list[str], np.ndarray]:
        """Top-k document ids and scores, ties to the smaller position (as lsr's kernel)."""
        scores = self.scores(query)
        k = min(k, len(scores))
        top = np.argsort(-scores, kind="stable")[:k]
        return [self.ids[i] for i in top], scores[top]
