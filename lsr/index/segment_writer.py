"""Writing a segment: encoded rows and the per-document parts go in batch by batch (spooled to disk, so memory
holds one batch), then :meth:`SegmentWriter.write` lays the folder out (:mod:`lsr.index.segment`).

A merge is the same writer fed with the live documents of the segments it replaces, read back from them
(:meth:`SegmentWriter.add_from`): stored impacts are copied as they are (every segment shares the index's scale, so
nothing is quantized twice), dense rows, texts and BM25 postings are copied too; nothing is re-encoded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lsr.errors import InvalidInput
from lsr.index import files, lexical
from lsr.index.documents import DocumentStoreWriter
from lsr.index.manifest import IMPACT_DTYPES, SegmentInfo
from lsr.index.metadata import write_columns
from lsr.index.segment import DEFAULT_BOUND_RATIO, CompactBuilder, Segment, check_block_size, quantize
from lsr.index.storage import SEGMENTS
from lsr.sparse import SparseBatch


@dataclass
class Batch:
    """One batch of documents for a new segment. ``rows`` are the sparse vectors: one a document, or one a chunk
    (``row_doc`` then maps each row to its document in the batch, and ``chunks`` gives its number and characters)."""

    ids: list[str]
    hashes: np.ndarray  # uint8 (n, 16)
    rows: SparseBatch
    row_doc: np.ndarray | None = None
    chunks: np.ndarray | None = None
    titles: list[str] | None = None
    texts: list[str] | None = None
    dense: np.ndarray | None = None
    analyzed: list[list[str]] | None = None  # BM25 analysis of each document
    truncated: int = 0
    stored: bool = False  # rows hold stored impacts already (a merge), not weights to quantize
    metadata: list[dict] | None = None  # normalized metadata, one a document (lsr.index.metadata)


class SegmentWriter:
    def __init__(self, spool: Path, vocab_size: int, impact_dtype: str, block_size: int, dense_ratio: int,
                 dense_kind: str | None = None, lexical_part: bool = False, store_texts: bool = False,
                 chunked: bool = False, bound_ratio: int = DEFAULT_BOUND_RATIO) -> None:
        if impact_dtype not in IMPACT_DTYPES:
            raise InvalidInput(f"impact dtype {impact_dtype!r} is not one of {', '.join(IMPACT_DTYPES)}")
        self.spool = spool
        files.mkdir(spool)
        check_block_size(block_size)
        self.vocab_size, self.impact_dtype = vocab_size, impact_dtype
        self.block_size, self.dense_ratio, self.bound_ratio = block_size, dense_ratio, bound_ratio
        self.dense_kind, self.lexical_part, self.chunked = dense_kind, lexical_part, chunked
        self.texts = DocumentStoreWriter(spool / "documents") if store_texts else None
        self.ids: list[str] = []
        self.rows = 0
        self.chunks = 0
        self.max_weight = 0.0
        self.carried_clipped = 0  # merges: the clipped postings of the segments merged (their deleted rows too)
        self.truncated = 0
        self.stored = None  # whether the batches carry stored impacts (merges) or weights (new documents)
        self.schema = None  # the index's metadata schema (lsr.index.metadata.Schema): the columns written
        self._with_metadata = False

    @property
    def documents(self) -> int:
        return len(self.ids)

    def add(self, batch: Batch) -> None:
        n = len(batch.ids)
        if self.stored is None:
            self.stored = batch.stored
        if self.stored != batch.stored:
            raise InvalidInput("a segment is written from new documents or from merged ones, not both")
        if len(batch.hashes) != n or (batch.row_doc is None and len(batch.rows) != n):
            raise InvalidInput(f"{len(batch.rows)} vectors for {n} documents")
        if self.chunked != (batch.row_doc is not None):
            raise InvalidInput("a chunked index takes chunked batches (and an unchunked one, one row a document)")
        batch.rows.validate(self.vocab_size)
        c = f"{self.chunks:06d}"
        row_doc = batch.row_doc if batch.row_doc is not None else np.arange(n)
        arrays = {"indptr": batch.rows.indptr, "indices": batch.rows.indices, "weights": batch.rows.weights,
                  "hashes": np.asarray(batch.hashes, dtype=np.uint8), "row_doc": np.asarray(row_doc) + len(self.ids)}
        if batch.chunks is not None:
            arrays["chunks"] = np.asarray(batch.chunks, dtype=np.int32)
        if self.dense_kind is not None:
            if batch.dense is None or len(batch.dense) != n or not np.isfinite(batch.dense).all():
                raise InvalidInput("the dense part needs one finite embedding a document (NaN/Inf: check --dtype)")
            arrays["dense"] = np.ascontiguousarray(batch.dense, dtype=np.float32)
        for name, array in arrays.items():
            files.save_array(self.spool / f"{c}-{name}.npy", array)
        if self.lexical_part:
            part = batch.analyzed if isinstance(batch.analyzed, lexical.LexicalSegment) else \
                lexical.LexicalSegment.build(batch.analyzed or [[] for _ in range(n)])
            part.save(self.spool / f"{c}-lexical")
        if self.texts is not None:
            for doc_id, title, text in zip(batch.ids, batch.titles or [""] * n, batch.texts or [""] * n):
                self.texts.add(doc_id, title, text)
        records = batch.metadata if batch.metadata is not None else [{}] * n
        if len(records) != n:
            raise InvalidInput(f"{len(records)} metadata records for {n} documents")
        self._with_metadata |= any(records)
        files.write_text(self.spool / f"{c}-metadata.json", json.dumps(records, separators=(",", ":")))
        self.chunks += 1
        self.ids.extend(batch.ids)
        self.rows += len(batch.rows)
        self.truncated += batch.truncated
        if batch.rows.nnz and not batch.stored:
            self.max_weight = max(self.max_weight, float(batch.rows.weights.max()))

    def add_from(self, segment: Segment, keep: np.ndarray) -> None:
        """Copy the documents ``keep`` (local numbers, increasing) of an existing segment: a merge."""
        keep = np.asarray(keep, dtype=np.int64)
        doc_rows = segment.doc_rows()
        rows = np.concatenate([np.arange(doc_rows[d], doc_rows[d + 1]) for d in keep]) if len(keep) else \
            np.zeros(0, dtype=np.int64)
        vectors = segment.row_vectors().take(rows)
        row_doc = np.repeat(np.arange(len(keep)), doc_rows[keep + 1] - doc_rows[keep]) if self.chunked else None
        records = [segment.texts.get(int(d)) for d in keep] if self.texts is not None else None
        fields = self.schema.fields if self.schema is not None else None
        self.add(Batch(
            metadata=segment.metadata.records(keep.tolist(), fields, stored=True),
            ids=[str(i) for i in np.asarray(segment.ids)[keep]], hashes=np.asarray(segment.hashes)[keep],
            rows=vectors, row_doc=row_doc, stored=True,
            chunks=np.asarray(segment.chunks)[rows] if self.chunked else None,
            titles=[r["title"] for r in records] if records else None,
            texts=[r["text"] for r in records] if records else None,
            dense=np.asarray(segment.dense)[keep] if self.dense_kind is not None else None,
            analyzed=lexical.select(segment.lexical, keep) if self.lexical_part else None))
        self.max_weight = max(self.max_weight, segment.info.max_weight)
        self.carried_clipped += segment.info.clipped_postings

    def _spooled(self, name: str) -> list[np.ndarray]:
        return [np.load(self.spool / f"{c:06d}-{name}.npy") for c in range(self.chunks)]

    def write(self, directory: Path, name: str, scale: float) -> SegmentInfo:
        """Lay the segment out in ``directory`` (an empty folder) with impacts ``round(w * scale)``; return its info."""
        if not self.ids:
            raise InvalidInput("a segment needs at least one document")
        files.mkdir(directory)
        total, clipped = 0, self.carried_clipped  # (a merge keeps its sources' count: stored 255s cannot tell)
        impact_dtype = np.uint8 if self.impact_dtype == "uint8" else np.float32
        layout = CompactBuilder(self.vocab_size, self.rows, self.block_size, self.dense_ratio, self.bound_ratio)
        for fill in (False, True):  # two passes over the spooled batches: count, then lay out (one batch in memory)
            if fill:
                layout.plan(impact_dtype)
            for c in range(self.chunks):
                indptr, indices, weights = (np.load(self.spool / f"{c:06d}-{n}.npy", mmap_mode="r")
                                            for n in ("indptr", "indices", "weights"))
                if self.stored or self.impact_dtype == "float32":
                    impacts = np.asarray(weights).astype(impact_dtype)
                else:
                    impacts, cut = quantize(np.asarray(weights), scale, self.impact_dtype)
                    if not fill:
                        clipped += cut
                indptr, indices = np.asarray(indptr), np.asarray(indices)
                if fill:
                    layout.fill(indptr, indices, impacts)
                else:
                    layout.count(indptr, indices, impacts)
                    total += len(indices)
                del indptr, indices, weights, impacts
            if not fill:
                postings = layout.postings
        save = layout.finish()
        del layout
        save.update({"ids": np.asarray(self.ids, dtype=str), "hashes": np.concatenate(self._spooled("hashes"))})
        if self.chunked:
            save["row_doc"] = np.concatenate(self._spooled("row_doc")).astype(np.int32)
            save["chunks"] = np.concatenate(self._spooled("chunks")).astype(np.int32)
        if self.dense_kind is not None:
            save["dense"] = np.concatenate(self._spooled("dense"))
        for key, array in save.items():
            files.save_array(directory / f"{key}.npy", array)
        if self.dense_kind == "hnsw":
            _write_hnsw(save["dense"], directory / "hnsw.index")
        if self.lexical_part:
            parts = [lexical.LexicalSegment.load(self.spool / f"{c:06d}-lexical", mmap=False) for c in range(self.chunks)]
            lexical.concatenate(parts).save(directory / "lexical")
        if self.texts is not None:
            self.texts.close()
            files.move(self.spool / "documents", directory / "documents")
        if self._with_metadata:
            records = [r for c in range(self.chunks)
                       for r in json.loads((self.spool / f"{c:06d}-metadata.json").read_text())]
            write_columns(directory, self.schema.fields, records)
        info = SegmentInfo(name=name, documents=len(self.ids), rows=self.rows, postings=postings,
                           max_weight=self.max_weight, block_size=self.block_size, dense_ratio=self.dense_ratio,
                           bound_ratio=self.bound_ratio,
                           dropped_postings=total - postings, clipped_postings=clipped,
                           truncated_documents=self.truncated)
        info.save(directory)
        files.remove(self.spool, missing_ok=True)
        return info


def write_segment(pending: SegmentWriter, directory: Path, name: str, scale: float) -> SegmentInfo:
    """Lay ``pending`` out as ``segments/name``, durably: written in a temporary folder, every file fsynced, then
    renamed into place and the folder fsynced. A failure removes the temporary folder; a crash leaves it for the
    next writer to remove. Returns the segment's info."""
    tmp = directory / SEGMENTS / f".tmp-{name}"
    try:
        info = pending.write(tmp, name, scale)
        files.fsync_tree(tmp)
        files.rename(tmp, directory / SEGMENTS / name)
    except Exception:
        files.remove(tmp, missing_ok=True)
        raise
    files.fsync_directory(directory / SEGMENTS)
    return info


def _write_hnsw(vectors: np.ndarray, path: Path) -> None:
    from lsr.index.dense import faiss as load_faiss

    faiss = load_faiss()
    index = faiss.IndexHNSWFlat(vectors.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 80
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    files.write_bytes(path, b"")  # (told to the file layer; faiss writes the file itself)
    faiss.write_index(index, str(path))
