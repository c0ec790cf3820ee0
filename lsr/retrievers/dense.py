"""The dense component: FAISS inner product over unit-norm embeddings (exact with a flat index, approximate with
HNSW)."""

from __future__ import annotations

import numpy as np

from lsr.index import Index
from lsr.results import Ranked
from lsr.retrievers import check_batch


class FaissRetriever:
    component = "dense"
    takes = "dense"

    def __init__(self, index: Index) -> None:
        self.dense = index.dense
        self.name = f"faiss/{self.dense.kind}"
        self.exact = self.dense.kind == "flat"
        self.ids = np.concatenate([np.asarray(s.ids) for s in index.segments]) if index.segments else np.array([])
        self.dim = int(self.dense.index.d)

    def warm_up(self) -> None:
        probe = np.zeros((1, self.dim), dtype=np.float32)
        probe[0, 0] = 1.0
        self.retrieve(probe, 1)

    def retrieve(self, queries: np.ndarray, k: int, threads: int | None = None) -> list[Ranked]:
        check_batch(queries, k)
        scores, rows = self.dense.search(queries, k)
        out = []
        for q in range(len(queries)):
            keep = rows[q] >= 0
            out.append(Ranked(ids=self.ids[rows[q][keep]].tolist(), scores=scores[q][keep].astype(np.float64).tolist(),
                              exact=self.exact))
        return out
