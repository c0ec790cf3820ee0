"""The ``milvus`` backend: the index's Milvus collection (:mod:`lsr.milvus`) answers the sparse component, and the
dense one when the collection holds embeddings.

Queries are lsr's encoded queries (the same vectors the native kernel takes); the collection holds the index's
impacts divided by its scale, so scores are in lsr's units. Exact by default (``drop_ratio_search`` 0: no query term
is dropped); ``drop_ratio`` > 0 is Milvus's approximate search and answers say ``exact: false``. Hybrid search fuses
the Milvus sparse and dense lists with lsr's own fusion (min-max convex or RRF), not Milvus's ``hybrid_search``: its
``WeightedRanker`` normalizes scores with an arctan, not per-query min-max, so the same weights would mean another
ranking than every other backend gives; lsr's fusion keeps one meaning for ``--weights`` across backends.

The collection answers whatever it holds now: with a Milvus server, every worker and every process sees one state
(Strong consistency); it has no generations, so a search is not pinned to one (``generation`` in an answer is the
native index's).
"""

from __future__ import annotations

import numpy as np

from lsr.errors import BackendUnavailable, InvalidInput, Unavailable
from lsr.milvus import TOPK_MAX, Mirror, check_mirrorable
from lsr.results import Ranked
from lsr.retrievers import check_batch
from lsr.sparse import SparseBatch


class _Collection:
    def __init__(self, snapshot, uri: str | None, collection: str | None, timeout: float) -> None:
        index = snapshot.index
        check_mirrorable(index.manifest, index.directory)
        mirror = Mirror.load(index.directory, uri=uri, collection=collection, timeout=timeout)
        if mirror is None:
            raise Unavailable(f"{index.directory} has no Milvus collection; create one with `lsr index milvus --index "
                              f"{index.directory} --milvus-uri URI` (or build with `lsr index ... --backend milvus "
                              "--milvus-uri URI`)")
        self.mirror = mirror
        self.described = mirror.check(index.manifest)
        mirror.ensure_loaded()


class MilvusRetriever:
    component = "sparse"
    takes = "sparse"
    name = "milvus"

    def __init__(self, snapshot, uri: str | None = None, collection: str | None = None, drop_ratio: float = 0.0,
                 timeout: float = 5.0) -> None:
        if not 0.0 <= float(drop_ratio) < 1.0:
            raise InvalidInput(f"drop_ratio must be in [0, 1), got {drop_ratio!r} (0: exact)")
        self.snapshot = snapshot
        self.index = snapshot.index
        self.drop_ratio = float(drop_ratio)
        self.exact = self.drop_ratio == 0.0
        self.collection = _Collection(snapshot, uri, collection, timeout)
        self.mirror = self.collection.mirror
        if self.drop_ratio and self.mirror.uri.startswith("/"):
            raise InvalidInput(f"drop_ratio {self.drop_ratio}: Milvus Lite ({self.mirror.uri}) searches sparse vectors "
                               "exactly only (drop_ratio_search 0); an approximate search needs a Milvus server URI")

    @classmethod
    def open(cls, snapshot, uri: str | None = None, collection: str | None = None, drop_ratio: float = 0.0,
             timeout: float = 5.0) -> MilvusRetriever:
        return cls(snapshot, uri, collection, drop_ratio, timeout)

    def companions(self) -> dict:
        """The other components this backend answers: dense, when the collection holds embeddings."""
        if self.mirror.has_dense(self.collection.described):
            return {"dense": MilvusDenseRetriever(self)}
        return {}

    def warm_up(self) -> None:
        from lsr.retrievers.native import frequent_terms

        if self.snapshot.doc_count:
            term = frequent_terms(self.snapshot, 1)[0]
            self.retrieve(SparseBatch.from_rows([(np.array([term], np.int32), np.array([1.0], np.float32))]), 1)

    def retrieve(self, queries: SparseBatch, k: int, threads: int | None = None) -> list[Ranked]:
        check_batch(queries, k)
        check_topk(k)
        queries.validate(self.index.vocab_size)
        queries = queries.positive()
        vectors = [dict(zip(t.tolist(), w.astype(np.float64).tolist())) for t, w in (queries.row(q)
                   for q in range(len(queries)))]
        params = {"metric_type": "IP", "params": {"drop_ratio_search": self.drop_ratio}}
        return search(self.mirror, "sparse", vectors, k, params, self.exact)


class MilvusDenseRetriever:
    component = "dense"
    takes = "dense"
    name = "milvus/flat"
    exact = True

    def __init__(self, sparse: MilvusRetriever) -> None:
        self.mirror = sparse.mirror
        self.dim = int(sparse.index.manifest.dense["dim"])

    def warm_up(self) -> None:
        self.retrieve(np.ones((1, self.dim), np.float32), 1)

    def retrieve(self, queries: np.ndarray, k: int, threads: int | None = None) -> list[Ranked]:
        check_batch(queries, k)
        check_topk(k)
        queries = np.asarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise InvalidInput(f"dense queries must be (n, {self.dim}), got {queries.shape}")
        return search(self.mirror, "dense", [row.tolist() for row in queries], k, {"metric_type": "IP"}, True)


def check_topk(k: int) -> None:
    if k > TOPK_MAX:
        raise InvalidInput(f"k={k} is above Milvus's limit of {TOPK_MAX} hits a query; ask for fewer")


def search(mirror, field: str, vectors: list, k: int, params: dict, exact: bool) -> list[Ranked]:
    """One Milvus search call for every query that has a vector (an empty sparse query matches nothing)."""
    asked = [q for q, v in enumerate(vectors) if len(v)]
    out = [Ranked(ids=[], scores=[], exact=exact) for _ in vectors]
    if not asked:
        return out
    try:
        found = mirror.client.search(mirror.collection, data=[vectors[q] for q in asked], anns_field=field, limit=k,
                                     search_params=params, output_fields=[])
    except Exception as exc:  # noqa: BLE001 - pymilvus raises MilvusException and grpc errors
        raise BackendUnavailable(f"Milvus at {mirror.uri} did not answer a search of {mirror.collection!r}: "
                          f"{str(exc).strip()[:300]}") from exc
    for q, hits in zip(asked, found):
        out[q] = Ranked(ids=[str(hit["id"]) for hit in hits], scores=[float(hit["distance"]) for hit in hits],
                        exact=exact)
    return out
