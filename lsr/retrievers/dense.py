"""The dense component: inner product over each segment's unit-norm embeddings, merged across segments. Exact with
the flat kind (FAISS's exhaustive inner product over the memory-mapped matrix), approximate with HNSW (a graph per
segment). Deleted documents are skipped (each segment is asked for k plus its deleted count)."""

from __future__ import annotations

import numpy as np

from lsr.index.dense import faiss
from lsr.index.selection import select
from lsr.request import SearchRequest, as_request
from lsr.results import Ranked
from lsr.retrievers import Capabilities

FILTER_CHUNK = 16384  # kept rows gathered at a time for a filtered flat search


class FaissRetriever:
    component = "dense"
    takes = "dense"
    capabilities = Capabilities(writable=True, filterable=True)

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

    def retrieve(self, queries: np.ndarray, request: SearchRequest | int, threads: int | None = None) -> list[Ranked]:
        request = as_request(request, threads)
        k = request.depth
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        found: list[list[tuple]] = [[] for _ in range(len(queries))]
        for position, view in enumerate(self.snapshot.views):
            segment = view.segment
            if request.filter is not None:
                self._filtered(queries, k, position, select(view, request.filter), found)
                continue
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
        return self._merged(found, k, request.filter is not None)

    def _filtered(self, queries: np.ndarray, k: int, position: int, selection, found: list[list[tuple]]) -> None:
        """Exact inner products over the rows the filter keeps, gathered a chunk at a time (any kind: an HNSW
        graph searched under a filter is exact here, over the kept rows)."""
        kept = selection.doc_rows()
        dense = self.snapshot.views[position].segment.dense
        for start in range(0, len(kept), FILTER_CHUNK):
            rows = kept[start:start + FILTER_CHUNK]
            scores, at = self._faiss.knn(queries, np.ascontiguousarray(dense[rows]), min(k, len(rows)),
                                         metric=self._faiss.METRIC_INNER_PRODUCT)
            for q in range(len(queries)):
                found[q].extend((score, position, int(rows[i])) for i, score in zip(at[q].tolist(), scores[q].tolist())
                                if i >= 0)

    def _merged(self, found: list[list[tuple]], k: int, filtered: bool) -> list[Ranked]:
        out = []
        for hits in found:
            if len(self.snapshot.views) > 1 or filtered:
                hits.sort(key=lambda h: (-h[0], h[1], h[2]))
            hits = hits[:k]
            out.append(Ranked(ids=[str(self.snapshot.views[p].segment.ids[local]) for _, p, local in hits],
                              scores=[float(s) for s, _, _ in hits], exact=self.exact or filtered))
        return out
