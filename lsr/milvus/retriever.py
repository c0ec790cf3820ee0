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

A filter is translated into a Milvus boolean expression over the collection's metadata fields
(:mod:`lsr.milvus.expressions`): a real filtered search in Milvus. A batch is split into calls of at most
``MAX_HITS_PER_CALL`` hits, each asking for ids and scores only: asking for no output field returns every field,
vectors included, and 323 queries x 1,000 hits of NFCorpus came back as 468 MB, over gRPC's 256 MB limit.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lsr.errors import BackendUnavailable, InvalidInput, NotWritable, Unavailable
from lsr.milvus.collection import STATE, TOPK_MAX, Mirror, check_mirrorable
from lsr.milvus.expressions import to_expression
from lsr.request import SearchRequest, as_request
from lsr.results import Ranked
from lsr.retrievers import Capabilities
from lsr.sparse import SparseBatch

MAX_HITS_PER_CALL = 100_000  # hits one search call may return (queries x k): about 10 MB of ids and scores
MAX_QUERIES_PER_CALL = 1024  # query vectors one call sends (Milvus takes at most 16,384; small k would reach it)


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
    capabilities = Capabilities(writable=True, filterable=True, mirror=True,
                                options={"uri": "milvus_uri", "collection": "milvus_collection",
                                         "drop_ratio": "milvus_drop_ratio"})

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

    @classmethod
    def prepare_mirror(cls, directory: Path, build: dict, uri: str | None = None, collection: str | None = None,
                       drop_ratio: float = 0.0) -> dict:
        """Before a build that ``lsr index --backend milvus`` mirrors: fail now (a missing extra, a bad URI, a server
        that does not answer, a chunked build), not after encoding; remember the collection a previous build at
        ``directory`` owned, to claim it again."""
        from lsr.milvus.client import connect

        if not uri:
            raise InvalidInput("--backend milvus needs --milvus-uri (a file ending in .db for embedded Milvus Lite, "
                               "or http://host:19530)")
        connect(uri)
        if build.get("chunk_tokens"):
            raise InvalidInput("--backend milvus keeps one vector a document: build without --chunk-tokens (chunked "
                               "indexes are served by the native backend)")
        previous = None
        try:
            previous = json.loads((Path(directory) / STATE).read_text()).get("index_id")
        except (OSError, ValueError):
            pass
        return {"uri": uri, "collection": collection, "index_id": previous}

    @classmethod
    def mirror(cls, index, prepared: dict, progress=None) -> dict:
        """Mirror the built index into its collection (:func:`lsr.milvus.collection.attach`)."""
        from lsr.milvus.collection import attach

        return attach(index, prepared["uri"], prepared["collection"], index_id=prepared["index_id"],
                      progress=progress)

    def check_writable(self) -> None:
        """Writes reach the collection only when the index records it (its writer's listener pushes to it)."""
        directory = Path(self.index.directory)
        if not (directory / STATE).exists():
            raise NotWritable(f"this server searches a Milvus collection the index does not record (no {STATE}): a "
                              f"write would not reach it. Attach the index first: lsr index milvus --index {directory} "
                              "--milvus-uri URI")

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

    def retrieve(self, queries: SparseBatch, request: SearchRequest | int, threads: int | None = None) -> list[Ranked]:
        request = as_request(request, threads)
        k = request.depth
        check_topk(k)
        queries.validate(self.index.vocab_size)
        queries = queries.positive()
        vectors = [dict(zip(t.tolist(), w.astype(np.float64).tolist())) for t, w in (queries.row(q)
                   for q in range(len(queries)))]
        params = {"metric_type": "IP", "params": {"drop_ratio_search": self.drop_ratio}}
        return search(self.mirror, "sparse", vectors, k, params, self.exact, request.filter)


class MilvusDenseRetriever:
    component = "dense"
    takes = "dense"
    name = "milvus/flat"
    exact = True
    capabilities = Capabilities(writable=True, filterable=True)

    def __init__(self, sparse: MilvusRetriever) -> None:
        self.mirror = sparse.mirror
        self.dim = int(sparse.index.manifest.dense["dim"])

    def warm_up(self) -> None:
        self.retrieve(np.ones((1, self.dim), np.float32), 1)

    def retrieve(self, queries: np.ndarray, request: SearchRequest | int, threads: int | None = None) -> list[Ranked]:
        request = as_request(request, threads)
        k = request.depth
        check_topk(k)
        queries = np.asarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise InvalidInput(f"dense queries must be (n, {self.dim}), got {queries.shape}")
        return search(self.mirror, "dense", [row.tolist() for row in queries], k, {"metric_type": "IP"}, True,
                      request.filter)


def check_topk(k: int) -> None:
    if k > TOPK_MAX:
        raise InvalidInput(f"k={k} is above Milvus's limit of {TOPK_MAX} hits a query; ask for fewer")


def search(mirror, field: str, vectors: list, k: int, params: dict, exact: bool, clause=None) -> list[Ranked]:
    """Milvus search calls, each of at most ``MAX_HITS_PER_CALL`` hits, for every query that has a vector (an empty
    sparse query matches nothing), asking for ids and scores only; ``clause`` (a parsed filter) as an expression."""
    asked = [q for q, v in enumerate(vectors) if len(v)]
    out = [Ranked(ids=[], scores=[], exact=exact) for _ in vectors]
    expression = to_expression(clause) if clause is not None else ""
    step = max(1, min(MAX_QUERIES_PER_CALL, MAX_HITS_PER_CALL // k))
    for start in range(0, len(asked), step):
        part = asked[start:start + step]
        try:
            found = mirror.client.search(mirror.collection, data=[vectors[q] for q in part], anns_field=field, limit=k,
                                         search_params=params, output_fields=["id"], filter=expression)
        except Exception as exc:  # noqa: BLE001 - pymilvus raises MilvusException and grpc errors
            raise BackendUnavailable(f"Milvus at {mirror.uri} did not answer a search of {mirror.collection!r}: "
                                     f"{str(exc).strip()[:300]}") from exc
        for q, hits in zip(part, found):
            out[q] = Ranked(ids=[str(hit["id"]) for hit in hits], scores=[float(hit["distance"]) for hit in hits],
                            exact=exact)
    return out
