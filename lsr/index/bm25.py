"""BM25 over a document collection, through bm25s (a real BM25 implementation: Lucene's formula).

The index's BM25 part (``lsr index --bm25``), the `lsr eval --baseline bm25s` baseline, and in training a teacher
and the hard-negative miner.
Text analysis: lowercase, English stopwords removed, Snowball English stemming (as BEIR/bm25s reference runs).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lsr.errors import InvalidIndex, InvalidInput


class Bm25:
    def __init__(self, ids: Sequence[str], texts: Sequence[str], k1: float = 1.5, b: float = 0.75) -> None:
        import bm25s
        import Stemmer

        if len(ids) != len(texts):
            raise InvalidInput(f"{len(ids)} ids for {len(texts)} texts")
        if not ids:
            raise InvalidInput("BM25 needs at least one document")
        self.ids = list(ids)
        self.k1, self.b = k1, b
        self._stemmer = Stemmer.Stemmer("english")
        self._bm25s = bm25s
        self._index = bm25s.BM25(k1=k1, b=b, method="lucene")
        self._index.index(self._tokenize(texts), show_progress=False)

    def save(self, directory: str | Path) -> dict:
        """Write the bm25s index and the id list to ``directory``; returns what the index manifest records."""
        directory = Path(directory)
        self._index.save(str(directory / "bm25s"))
        (directory / "ids.json").write_text(json.dumps(self.ids))
        return {"k1": self.k1, "b": self.b, "analyzer": "bm25s: lowercase, English stopwords, Snowball stemmer",
                "documents": len(self.ids)}

    @classmethod
    def load(cls, directory: str | Path, mmap: bool = True) -> Bm25:
        import bm25s
        import Stemmer

        directory = Path(directory)
        if not (directory / "ids.json").exists():
            raise InvalidIndex(f"{directory} holds no BM25 index (no ids.json); build the index with --bm25")
        self = cls.__new__(cls)
        self.ids = json.loads((directory / "ids.json").read_text())
        self._bm25s = bm25s
        self._stemmer = Stemmer.Stemmer("english")
        self._index = bm25s.BM25.load(str(directory / "bm25s"), mmap=mmap)
        self.k1, self.b = self._index.k1, self._index.b
        return self

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
