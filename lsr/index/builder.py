"""Documents -> encoded batches -> an index directory, atomically. Document encoding is a pure function over batches
of texts (the same in one process and, later, in a Ray actor).

Every part is written into a temporary sibling directory (``.NAME.tmp-XXXX``) and the directory is swapped into
place only when complete: a failed or interrupted build leaves any previous index at the path untouched.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from lsr.corpus import Document
from lsr.errors import InvalidIndex, InvalidInput
from lsr.index.dense import DENSE_KINDS, DenseIndexWriter
from lsr.index.documents import DocumentStoreWriter
from lsr.index.manifest import IMPACT_DTYPES, MANIFEST_FILE, Manifest
from lsr.index.segment import DEFAULT_BLOCK_SIZE, DEFAULT_DENSE_RATIO, SegmentWriter
from lsr.sparse import SparseBatch


@dataclass(frozen=True)
class BuildOptions:
    """Build-time choices; every one is recorded in the manifest."""

    impact_dtype: str = "uint8"  # uint8: quantized impacts; float32: unquantized (to measure what quantization costs)
    block_size: int = DEFAULT_BLOCK_SIZE
    dense_ratio: int = DEFAULT_DENSE_RATIO
    document_top_k: int | None = None  # static pruning: keep each document's N largest weights
    batch_size: int = 32  # documents per forward pass
    chunk_documents: int = 2048  # documents encoded (and spooled) at a time
    dense_index: str = "flat"  # flat (exact inner product) or hnsw
    bm25: bool = False
    store_documents: bool = False
    lucene: bool = False
    lucene_threads: int | None = None

    def __post_init__(self) -> None:
        if self.impact_dtype not in IMPACT_DTYPES:
            raise InvalidInput(f"impact dtype {self.impact_dtype!r} is not one of {', '.join(IMPACT_DTYPES)}")
        if self.document_top_k is not None and self.document_top_k < 1:
            raise InvalidInput(f"--document-top-k must be >= 1 (the weights kept per document), got {self.document_top_k}")
        if self.batch_size < 1 or self.chunk_documents < 1:
            raise InvalidInput(f"batch size and chunk size must be >= 1, got {self.batch_size}, {self.chunk_documents}")
        if self.block_size < 1 or self.dense_ratio < 0:
            raise InvalidInput(f"--block-size must be >= 1 and --dense-ratio >= 0, got {self.block_size} and "
                               f"{self.dense_ratio}")
        if self.dense_index not in DENSE_KINDS:
            raise InvalidInput(f"dense index kind {self.dense_index!r} is not one of {', '.join(DENSE_KINDS)}")
        if self.lucene and self.impact_dtype != "uint8":
            raise InvalidInput("--lucene indexes integer impacts; build with --impact-dtype uint8 (the default)")


def chunked(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


class Staging:
    """A temporary sibling of ``target`` that becomes ``target`` on :meth:`publish`; removed on failure.

    ``target`` must be a new path, an empty folder or an existing lsr index (replaced); anything else is refused."""

    def __init__(self, target: Path) -> None:
        if target.exists() and not (target / MANIFEST_FILE).exists() and (
                not target.is_dir() or any(target.iterdir())):
            raise InvalidIndex(f"{target} exists and is not an lsr index; refusing to replace it. Choose another "
                               "path (an existing index there would be replaced atomically)")
        self.target = target
        target.parent.mkdir(parents=True, exist_ok=True)
        self.path = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
        self.path.mkdir()

    def publish(self) -> None:
        """Two renames; if the second fails, the previous index is put back."""
        old = None
        if self.target.exists():
            old = self.target.parent / f".{self.target.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(self.target, old)
        try:
            os.rename(self.path, self.target)
        except BaseException:
            if old is not None:
                os.rename(old, self.target)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def choose_search_defaults(has_dense: bool, has_bm25: bool, has_encoder: bool = True) -> dict:
    """The mode a request without one gets, from the parts the index has (NFCorpus figures in the README):
    sparse + BM25 fused (convex, equal weights) when a BM25 part exists: 0.338 nDCG@10 against 0.311 sparse and
    0.322 BM25, with no query-time model for inference-free encoders; with a dense part too, all three (0.361);
    sparse + dense with a dense part alone; else sparse alone. An index of bare vectors (no encoder to turn a query
    text into a sparse vector) defaults to sparse, searched with vectors."""
    if not has_encoder:
        return {"mode": "sparse"}
    if has_bm25 and has_dense:
        return {"mode": "hybrid", "fusion": {"method": "convex", "components": ["sparse", "dense", "bm25"]}}
    if has_bm25:
        return {"mode": "hybrid", "fusion": {"method": "convex", "components": ["sparse", "bm25"]}}
    if has_dense:
        return {"mode": "hybrid", "fusion": {"method": "convex", "components": ["sparse", "dense"]}}
    return {"mode": "sparse"}


def build_directory(directory: Path, documents: Iterable[Document] | None, encoder, options: BuildOptions,
                    vectors: SparseBatch | None = None, ids: list[str] | None = None, dense_encoder=None,
                    export_jsonl: Path | None = None, source: str = "", progress: Callable[[int], None] | None = None,
                    vocab_size: int | None = None, read_stats=None) -> Manifest:
    """Write a complete index into ``directory`` (an empty staging folder) and return its manifest.

    Either ``documents`` are encoded by ``encoder`` (a sparse encoder), or precomputed ``vectors`` with their
    ``ids`` are indexed as they are (then ``documents``, if given, only feed the texts, BM25 and dense parts).
    """
    if encoder is not None and getattr(encoder, "vocab_size", None) is None:
        raise InvalidInput("the inverted index needs a sparse encoder (splade or inference-free), not a dense one")
    if dense_encoder is not None and not hasattr(dense_encoder, "dim"):
        raise InvalidInput(f"the dense encoder must be a dense encoder (mean pooling), got a "
                           f"{dense_encoder.config.kind!r} one; pass e.g. all-MiniLM-L6-v2")
    if options.lucene:
        from lsr.lucene import check_available

        check_available()  # fail before encoding anything
    vocab = encoder.vocab_size if encoder is not None else vocab_size
    if vocab is None:
        raise InvalidInput("indexing bare vectors needs vocab_size (or an encoder whose vocabulary they use)")
    writer = SegmentWriter(directory / "spool", vocab, options.impact_dtype, options.block_size, options.dense_ratio)
    dense = DenseIndexWriter(directory / "dense", dense_encoder.dim, options.dense_index) if dense_encoder else None
    store = DocumentStoreWriter(directory / "documents") if options.store_documents else None
    texts_spool = (directory / "texts.spool").open("w", encoding="utf-8") \
        if options.bm25 or options.lucene or export_jsonl else None
    needs_texts = dense is not None or store is not None or options.bm25
    if vectors is not None and documents is None and needs_texts:
        raise InvalidInput("the dense, BM25 and stored-text parts need the documents' texts: pass them with the vectors")
    started = time.perf_counter()
    dense_s = 0.0
    seen = 0
    if vectors is not None:
        vectors = vectors.top_k(options.document_top_k) if options.document_top_k else vectors
        for start in range(0, len(vectors), options.chunk_documents):
            rows = list(range(start, min(len(vectors), start + options.chunk_documents)))
            writer.add(vectors.take(rows), ids[start:start + len(rows)])
    for chunk in chunked(documents or (), options.chunk_documents):
        if vectors is not None and [d.id for d in chunk] != ids[seen:seen + len(chunk)]:
            raise InvalidInput("the documents given with the vectors must have the vectors' ids, in the same order")
        seen += len(chunk)
        texts = [d.contents for d in chunk]
        if vectors is None:
            batch = encoder.encode_documents(texts, batch_size=options.batch_size, progress=progress)
            if options.document_top_k is not None:
                batch = batch.top_k(options.document_top_k)
            writer.add(batch, [d.id for d in chunk])
        if dense is not None:
            dense_started = time.perf_counter()
            dense.add(dense_encoder.encode_documents(texts, batch_size=options.batch_size))
            dense_s += time.perf_counter() - dense_started
        if store is not None:
            for d in chunk:
                store.add(d.id, d.title, d.text)
        if texts_spool is not None:
            texts_spool.writelines(json.dumps(text) + "\n" for text in texts)
    encode_s = time.perf_counter() - started - dense_s
    if texts_spool is not None:
        texts_spool.close()
    if not writer.ids:
        raise InvalidInput("no documents to index; check the corpus path (and what --skip-malformed skipped)")
    if vectors is not None and documents is not None and seen != len(writer.ids):
        raise InvalidInput(f"{seen} documents for {len(writer.ids)} vectors: give one document per vector")

    segment, dropped = writer.finish("seg-000000")
    shutil.rmtree(writer.spool)
    segment.save(directory / "segments" / segment.info.name)
    fields: dict = {}
    if dense is not None:
        fields["dense"] = {**dense.commit(), "encoder_identity": dense_encoder.identity(),
                           "source": str(dense_encoder.config.extra.get("base_model", "")),
                           "directory": "dense/encoder", "encode_seconds": round(dense_s, 2)}
        dense_encoder.save(directory / "dense" / "encoder")
    if options.bm25:
        from lsr.index.bm25 import Bm25

        (directory / "bm25").mkdir()
        fields["bm25"] = Bm25(writer.ids, list(spooled_texts(directory))).save(directory / "bm25")
    if store is not None:
        if store.close() != len(writer.ids):
            raise InvalidInput("stored texts and indexed vectors differ in number; give one document per vector")
        fields["documents"] = True
    tokens = encoder.token_strings() if encoder is not None and (options.lucene or export_jsonl) else None
    if options.lucene or export_jsonl:
        from lsr.lucene import write_json_vector_collection

        if options.impact_dtype != "uint8":
            raise InvalidInput("--export-jsonl writes integer impacts for Lucene (Anserini casts weights to int); "
                               "build with --impact-dtype uint8 (the default) to export")
        if tokens is None:
            raise InvalidInput("a JsonVectorCollection names tokens: index with an encoder to export it")
        write_json_vector_collection(segment, tokens, directory / "export.jsonl", spooled_texts(directory))
    if options.lucene:
        from lsr.lucene import build_impact_index

        fields["lucene"] = build_impact_index(directory / "export.jsonl", directory / "lucene",
                                              threads=options.lucene_threads)
    if encoder is not None:
        encoder.save(directory / "encoder")
        encoder_info = {"kind": encoder.config.kind, "identity": encoder.identity(),
                        "source": str(encoder.config.extra.get("base_model", "")), "directory": "encoder"}
    else:
        encoder_info = {"kind": "vectors", "identity": None, "source": "", "directory": None}
    build = {
        "corpus": source,
        "batch_size": options.batch_size,
        "max_document_length": encoder.config.max_document_length if encoder is not None else None,
        "document_top_k": options.document_top_k,
        "dtype": getattr(encoder, "dtype", None),
        "device": str(getattr(encoder, "device", "")) or None,
        "skipped_lines": getattr(read_stats, "skipped", 0),
        "encode_seconds": round(encode_s, 2),
        "docs_per_second": round(len(writer.ids) / encode_s, 2) if encode_s > 0 and vectors is None else None,
    }
    manifest = Manifest(doc_count=len(writer.ids), vocab_size=vocab, impact_dtype=options.impact_dtype,
                        dropped_postings=dropped, encoder=encoder_info, build=build, segments=[segment.info],
                        search_defaults=choose_search_defaults("dense" in fields, "bm25" in fields,
                                                               encoder is not None), **fields)
    if export_jsonl is not None:
        export_jsonl.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(directory / "export.jsonl"), str(export_jsonl))
    elif (directory / "export.jsonl").exists():
        (directory / "export.jsonl").unlink()
    (directory / "texts.spool").unlink(missing_ok=True)
    manifest.save(directory)
    return manifest


def spooled_texts(directory: Path) -> Iterator[str]:
    """The texts spooled while encoding, in document order ("" for documents given as bare vectors)."""
    path = directory / "texts.spool"
    if not path.exists():
        return
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            yield json.loads(line)
