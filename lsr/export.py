"""An index's vectors into the engines users already run: Qdrant sparse vectors, OpenSearch ``rank_features``.

Each live document leaves as one sparse vector. Weights leave as floats: the stored impact divided by the index's
scale (a ``float32`` index gives back the encoder's weights; a ``uint8`` one their 8-bit quantization, within half a
step), or, with ``impacts=True``, as the stored integers. A chunked index (several rows a document) is refused: both
engines hold one vector a document.

- **Qdrant** (:func:`to_qdrant`, ``lsr export --to qdrant --qdrant-url URL|:memory:|DIR``): one collection with a
  named sparse vector ``sparse`` and a payload ``{"doc_id", "title", "text"}`` (texts when the index stores them).
  Point ids are UUIDs derived from the document ids (Qdrant takes integers or UUIDs), so a second export upserts the
  same points.
- **OpenSearch** (:func:`to_opensearch`, ``lsr export --to opensearch --output DIR``): ``mapping.json`` (the index
  body: a ``rank_features`` field, the texts), bulk NDJSON files of at most ``bulk_documents`` documents, tokens as
  keys, and for an inference-free encoder ``query_weights.json`` (token -> weight: what a ``neural_sparse`` query's
  ``query_tokens`` carries for each distinct query token).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from lsr.errors import BackendUnavailable, InvalidInput

SPARSE_FIELD = "sparse_embedding"  # OpenSearch field
QDRANT_VECTOR = "sparse"  # Qdrant named sparse vector
MIN_FEATURE = float(np.finfo(np.float32).tiny)  # the smallest normal float32
POINT_NAMESPACE = uuid.UUID("6f1c3a52-9e0b-4c1e-8a55-2f7d9b4e0c11")  # lsr's namespace for uuid5(doc id)
Progress = Callable[[int], None]


def point_id(doc_id: str) -> str:
    return str(uuid.uuid5(POINT_NAMESPACE, doc_id))


def check_exportable(index) -> None:
    if index.manifest.chunking is not None:
        raise InvalidInput(f"{index.directory} is chunked (--chunk-tokens): Qdrant and OpenSearch hold one vector a "
                           "document; export an index built without --chunk-tokens")
    if index.manifest.scale is None or index.doc_count == 0:
        raise InvalidInput(f"{index.directory} holds no documents: nothing to export")


def live_documents(index, impacts: bool = False, batch: int = 1024) -> Iterator[list[tuple[str, np.ndarray,
                                                                                         np.ndarray, dict | None]]]:
    """The published generation's live documents in batches of (id, token ids, weights, stored document or None)."""
    check_exportable(index)
    snapshot = index.snapshot()
    scale = 1.0 if impacts else float(index.manifest.scale)
    out = []
    for view in snapshot.views:
        segment = view.segment
        vectors = segment.row_vectors()
        texts = segment.texts if index.manifest.documents else None
        for local in range(segment.info.documents):
            if not view.is_live(local):
                continue
            terms, stored = vectors.row(local)
            weights = stored.astype(np.float32) if impacts else (stored / scale).astype(np.float32)
            out.append((str(segment.ids[local]), terms, weights, texts.get(local) if texts is not None else None))
            if len(out) == batch:
                yield out
                out = []
    if out:
        yield out


# -- Qdrant --------------------------------------------------------------------------------------------------------------
def qdrant_client(url: str, timeout: float = 10.0):
    """``:memory:`` (in-process, gone with the process), ``http(s)://host:6333`` (a server), or a folder (Qdrant's
    local mode on disk)."""
    try:
        from qdrant_client import QdrantClient
    except ImportError:
        raise InvalidInput("exporting to Qdrant needs qdrant-client: pip install 'lsr[qdrant]'") from None
    if re.fullmatch(r"[\w.-]+:\d+", url):
        raise InvalidInput(f"--qdrant-url {url}: a server needs its scheme (http://{url}); a folder name of this "
                           "form is refused to avoid the confusion")
    try:
        if url == ":memory:":
            return QdrantClient(":memory:")
        if url.startswith(("http://", "https://")):
            # no version probe: it runs in a background thread and only warns (lsr uses a small, stable part of the
            # API); an unreachable server is named by the first call instead (to_qdrant)
            return QdrantClient(url=url, timeout=int(timeout), check_compatibility=False)
        return QdrantClient(path=url)
    except Exception as exc:  # qdrant-client's own errors (a local folder another process holds, a bad URL)
        raise BackendUnavailable(f"Qdrant at {url} cannot be opened ({type(exc).__name__}: {exc})") from None


def to_qdrant(index, client, collection: str, replace: bool = False, impacts: bool = False,
              progress: Progress | None = None) -> dict:
    """Create ``collection`` (refused if it exists, unless ``replace``) and upsert every live document."""
    from qdrant_client import models

    check_exportable(index)
    try:
        exists = client.collection_exists(collection)
    except Exception as exc:  # the first call reaches the server: connection refused, timeout, auth
        raise BackendUnavailable(f"Qdrant did not answer ({type(exc).__name__}: {exc}); is the server up at the "
                                 "--qdrant-url given?") from None
    if exists:
        if not replace:
            raise InvalidInput(f"Qdrant collection {collection!r} exists; pass --replace to drop and rewrite it, or "
                               "--collection NAME for another")
        client.delete_collection(collection)
    client.create_collection(collection, vectors_config={}, sparse_vectors_config={
        QDRANT_VECTOR: models.SparseVectorParams(index=models.SparseIndexParams(on_disk=False))})
    started, count = time.perf_counter(), 0
    for batch in live_documents(index, impacts=impacts, batch=256):
        points = []
        for doc_id, terms, weights, document in batch:
            payload = {"doc_id": doc_id}
            if document is not None:
                payload.update(title=document.get("title", ""), text=document.get("text", ""))
            points.append(models.PointStruct(id=point_id(doc_id), payload=payload, vector={
                QDRANT_VECTOR: models.SparseVector(indices=terms.tolist(), values=weights.tolist())}))
        client.upsert(collection, points=points, wait=True)
        count += len(points)
        if progress is not None:
            progress(len(points))
    return {"to": "qdrant", "collection": collection, "documents": count,
            "weights": "impacts" if impacts else "float", "seconds": round(time.perf_counter() - started, 2)}


def qdrant_search(client, collection: str, terms: np.ndarray, weights: np.ndarray, k: int) -> list[tuple[str, float]]:
    from qdrant_client import models

    if len(terms) == 0:
        return []
    answer = client.query_points(collection, query=models.SparseVector(indices=terms.tolist(), values=weights.tolist()),
                                 using=QDRANT_VECTOR, limit=k, with_payload=["doc_id"])
    return [(point.payload["doc_id"], float(point.score)) for point in answer.points]


def compare_with_qdrant(engine, client, collection: str, queries: list[str], k: int = 10) -> dict:
    """The same encoded queries through lsr's exact sparse top-k and through Qdrant, one query at a time: the share
    of lsr's top-k that Qdrant returns (a document tied with lsr's k-th score counts as found: either of two equal
    scores may take the last place), and both latencies."""
    vectors = engine.index.encoder.encode_queries(queries)
    lsr_ms, qdrant_ms, found, wanted = [], [], 0, 0
    for row in range(len(queries)):
        terms, weights = vectors.row(row)
        if len(terms) == 0:
            continue
        started = time.perf_counter()
        exact = engine.search_vectors(vectors.take(np.asarray([row])), k)[0]
        lsr_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        theirs = {doc for doc, _ in qdrant_search(client, collection, terms, weights, k)}
        qdrant_ms.append((time.perf_counter() - started) * 1000)
        if exact.ids:
            kth = exact.scores[-1]
            wanted += len(exact.ids)
            found += sum(doc in theirs or abs(score - kth) <= 1e-5 * max(1.0, abs(kth))
                         for doc, score in zip(exact.ids, exact.scores))
    if not lsr_ms:
        raise InvalidInput("no query has a token the encoder weighs: nothing to compare")
    return {"queries": len(lsr_ms), "k": k, "recall_vs_lsr_exact": found / wanted if wanted else float("nan"),
            "lsr_ms_mean": round(float(np.mean(lsr_ms)), 4), "qdrant_ms_mean": round(float(np.mean(qdrant_ms)), 4),
            "lsr_ms_p50": round(float(np.percentile(lsr_ms, 50)), 4),
            "qdrant_ms_p50": round(float(np.percentile(qdrant_ms, 50)), 4)}


# -- OpenSearch ------------------------------------------------------------------------------------------------------------
def opensearch_mapping(index, with_texts: bool) -> dict:
    properties = {SPARSE_FIELD: {"type": "rank_features"}}
    if with_texts:
        properties.update(title={"type": "text"}, text={"type": "text"})
    encoder = index.manifest.encoder or {}
    return {"mappings": {"_meta": {"lsr_encoder": encoder.get("identity"), "lsr_kind": encoder.get("kind")},
                         "properties": properties}}


def to_opensearch(index, output: str | Path, index_name: str, impacts: bool = False, bulk_documents: int = 5000,
                  progress: Progress | None = None) -> dict:
    """Write ``mapping.json``, ``bulk-NNNNN.ndjson`` and (inference-free) ``query_weights.json`` into ``output``."""
    check_exportable(index)
    if bulk_documents < 1:
        raise InvalidInput("--bulk-documents must be >= 1")
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    for stale in output.glob("bulk-*.ndjson"):
        stale.unlink()
    tokens = index.token_strings()
    with_texts = bool(index.manifest.documents)
    (output / "mapping.json").write_text(json.dumps(opensearch_mapping(index, with_texts), indent=2) + "\n")
    files, count, part, handle = [], 0, 0, None
    try:
        for batch in live_documents(index, impacts=impacts, batch=1024):
            for doc_id, terms, weights, document in batch:
                if handle is None or count % bulk_documents == 0:
                    if handle is not None:
                        handle.close()
                    path = output / f"bulk-{part:05d}.ndjson"
                    files.append(path.name)
                    handle = path.open("w")
                    part += 1
                # float32 weights written with 7 significant digits (what float32 holds), not float64's 17; Lucene's
                # FeatureField refuses subnormal values, which no real weight reaches: left out
                source = {SPARSE_FIELD: {tokens[t]: float(f"{w:.7g}") for t, w in zip(terms.tolist(), weights.tolist())
                                         if w >= MIN_FEATURE}}
                if document is not None:
                    source.update(title=document.get("title", ""), text=document.get("text", ""))
                handle.write(json.dumps({"index": {"_index": index_name, "_id": doc_id}}) + "\n")
                handle.write(json.dumps(source, ensure_ascii=False) + "\n")
                count += 1
            if progress is not None:
                progress(len(batch))
    finally:
        if handle is not None:
            handle.close()
    written = {"to": "opensearch", "index": index_name, "documents": count, "mapping": "mapping.json", "bulk": files,
               "weights": "impacts" if impacts else "float"}
    encoder = index.encoder
    if encoder is not None and hasattr(encoder, "query_weights"):
        table = encoder.query_weights()
        (output / "query_weights.json").write_text(json.dumps(
            {tokens[i]: round(float(table[i]), 6) for i in np.flatnonzero(table > 0)}) + "\n")
        written["query_weights"] = "query_weights.json"
    return written
