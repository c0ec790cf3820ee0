"""Encoding a chunk of documents as an index's build options say: the pure function every writer runs, in this
process or in a Ray actor (:mod:`lsr.indexer.distributed`), so the vectors are the same wherever it runs."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from lsr.index.manifest import Manifest
from lsr.sparse import SparseBatch


def content_hash(title: str, text: str, metadata: Mapping | None = None) -> bytes:
    """16 bytes of blake2b over the stored fields (and the normalized metadata, when any): equal hashes mean an
    unchanged document. A document without metadata hashes as in lsr 0.2, so its replace stays a no-op."""
    payload = f"{title}\x00{text}"
    if metadata:
        payload += "\x00" + json.dumps(metadata, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(payload.encode(), digest_size=16).digest()


@dataclass
class EncodedChunk:
    """What encoding a chunk of documents gives: sparse rows (one a document, or one a chunk of a long one, with
    ``row_doc``/``chunks``), dense embeddings, how many documents were cut at the encoder's window."""

    rows: SparseBatch
    dense: np.ndarray | None = None
    row_doc: np.ndarray | None = None
    chunks: np.ndarray | None = None
    truncated: int = 0


def encode_chunk(encoder, dense_encoder, manifest: Manifest, texts: list[str], batch_size: int,
                 progress=None) -> EncodedChunk:
    """Encode one chunk of texts as the index's build options say (chunking, static pruning, dense part)."""
    chunking = manifest.chunking
    row_doc = chunks = None
    truncated = 0
    if chunking:
        rows, row_doc, chunks = encoder.encode_chunks(texts, chunking["tokens"], chunking["overlap"],
                                                      batch_size=batch_size, progress=progress)
    else:
        rows = encoder.encode_documents(texts, batch_size=batch_size, progress=progress)
        truncated = encoder.count_truncated(texts)
    top_k = manifest.build.get("document_top_k")
    if top_k:
        rows = rows.top_k(top_k)
    dense = dense_encoder.encode_documents(texts, batch_size=batch_size) if dense_encoder is not None else None
    return EncodedChunk(rows=rows, dense=dense, row_doc=row_doc, chunks=chunks, truncated=truncated)
