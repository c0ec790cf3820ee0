"""The dense component: inner product over each segment's unit-norm embeddings, merged across segments. Exact with
the flat kind (FAISS's exhaustive inner product over the memory-mapped matrix), approximate with HNSW (a graph per
segment). Deleted documents are skipped (each segment is asked for k plus its deleted count)."""

from __future__ import annotations

import numpy as np

from lsr.index.dense import faiss
from lsr.results import Ranked
from lsr.retrievers import check_batch


class FaissRetriever:
    component = "dense"
    takes = "dense"

    def __init__(self, snapshot) -> None:
        self.snapshot = snapshot
        manifest = snapshot.index.manifest
        self.kind = manifest.dense["index"]
        self.name = f"faiss/{self.kind}"
        self.exact = self.kind == "flat"
        self.dim = int(manifest.dense["dim"])
        self._faiss = faiss()

    def warm_up(self) -> None:
        probe = np.zeros((1, self.dim), dtype=np.float32)
        probe[0, 0] = 1.0
        self.retrieve(probe, 1)

    def retrieve(self, queries: np.ndarray, k: int, threads: int | None = None) -> list[Ranked]:
        check_batch(queries, k)
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        found: list[list[tuple]] = [[] for _ in range(len(queries))]
        for position, view in enumerate(self.snapshot.views):
            segment = view.segment
            want = min(segment.info.documents, k + view.deleted_count)
            if want == 0 or view.live_documents == 0:
                continue
            if self.kind == "hnsw":
                params = self._faiss.SearchParametersHNSW(efSearch=max(64, want))
                scores, rows = segment.hnsw().search(queries, want, params=params)
            else:
                scores, rows = self._faiss.knn(queries, np.asarray(segment.dense), want,
                                               metric=self._faiss.METRIC_INNER_PRODUCT)
            for q in range(len(queries)):
                kept = 0
                for local, score in zip(rows[q].tolist(), scores[q].tolist()):
                    if local < 0 or not view.is_live(local):
                        continue
                    found[q].append((score, position, local))
                    kept += 1
                    if kept == k:
                        break
        out = []
        for hits in found:
            if len(self.snapshot.views) > 1:
                hits.sort(key=lambda h: (-h[0], h[1], h[2]))
            hits = hits[:k]
            out.append(Ranked(ids=[str(self.snapshot.views[p].segment.ids[local]) for _, p, local in hits],
                              scores=[float(s) for s, _, _ in hits], exact=self.exact))
        return out
