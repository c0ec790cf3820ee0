"""Corpus -> encoded batches -> native index. Document encoding is a pure function over batches of texts."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from tqdm.auto import tqdm

from indexer.corpus import Document, ReadStats, count_documents, read_corpus
from indexer.dense import DenseIndexWriter
from indexer.docstore import DocumentStoreWriter
from indexer.inverted import DEFAULT_BLOCK_SIZE, DEFAULT_DENSE_RATIO, IndexWriter, Manifest
from training.encoders import DenseEncoder, SparseEncoder


def chunked(documents: Iterable[Document], size: int) -> Iterator[list[Document]]:
    iterator = iter(documents)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def build_index(
    corpus: str | Path,
    encoder: SparseEncoder,
    out: str | Path,
    batch_size: int = 32,
    chunk_documents: int = 2048,
    impact_dtype: str = "uint8",
    export_jsonl: str | Path | None = None,
    skip_malformed: bool = False,
    limit: int | None = None,
    progress: bool = True,
    dense_encoder: DenseEncoder | None = None,
    dense_index: str = "flat",
    bm25: bool = False,
    store_documents: bool = False,
    block_size: int = DEFAULT_BLOCK_SIZE,
    dense_ratio: int = DEFAULT_DENSE_RATIO,
    lucene: bool = False,
    lucene_threads: int | None = None,
    document_top_k: int | None = None,
) -> Manifest:
    """Encode every document of ``corpus`` with ``encoder`` and write the index at ``out`` atomically.

    Optional parts, in the same directory and manifest: ``dense_encoder`` also embeds every document into a FAISS
    index (``dense_index``: flat = exact, hnsw = approximate) for dense and hybrid search; ``bm25`` adds a bm25s
    index (the lexical hybrid partner); ``store_documents`` keeps the texts for ``GET /documents/{id}``; ``lucene``
    also builds a Lucene impact index of the same quantized vectors through Pyserini (``lucene/``, for
    ``--backend lucene``). ``block_size`` and ``dense_ratio`` shape the block-max pruning structures.
    ``document_top_k`` statically prunes every document vector to its largest weights (fewer postings, faster
    search, usually some quality lost).
    """
    if document_top_k is not None and document_top_k < 1:
        raise ValueError(f"--document-top-k must be >= 1 (the weights kept per document), got {document_top_k}")
    if not isinstance(encoder, SparseEncoder):
        raise ValueError("the inverted index needs a sparse encoder (splade or inference-free), not a dense one")
    if dense_encoder is not None and not isinstance(dense_encoder, DenseEncoder):
        raise ValueError(f"--dense-encoder must be a dense encoder (mean pooling), got a {dense_encoder.config.kind!r} "
                         "one; pass e.g. all-MiniLM-L6-v2")
    stats = ReadStats()
    documents: Iterable[Document] = read_corpus(corpus, skip_malformed=skip_malformed, stats=stats)
    if limit is not None:
        documents = itertools.islice(documents, limit)
    started = time.perf_counter()
    total = limit if limit is not None else (count_documents(corpus) if progress else None)
    bar = tqdm(desc="encoding documents", unit="doc", disable=not progress, total=total)
    keep_texts = export_jsonl is not None or bm25 or lucene
    if lucene and impact_dtype != "uint8":
        raise ValueError("--lucene indexes integer impacts; build with --impact-dtype uint8 (the default)")
    if lucene:
        from indexer.lucene import check_available

        check_available()  # fail before encoding anything
    with IndexWriter(out, encoder.vocab_size, impact_dtype, keep_texts=keep_texts, block_size=block_size,
                     dense_ratio=dense_ratio) as writer:
        dense = DenseIndexWriter(writer.tmp / "dense", dense_encoder.dim, dense_index) if dense_encoder else None
        store = DocumentStoreWriter(writer.tmp / "documents") if store_documents else None
        dense_s = 0.0
        for chunk in chunked(documents, chunk_documents):
            texts = [d.contents for d in chunk]
            batch = encoder.encode_documents(texts, batch_size=batch_size, progress=bar.update)
            if document_top_k is not None:
                batch = batch.top_k(document_top_k)
            writer.add(batch, [d.id for d in chunk], texts)
            if dense is not None:
                dense_started = time.perf_counter()
                dense.add(dense_encoder.encode_documents(texts, batch_size=batch_size))
                dense_s += time.perf_counter() - dense_started
            if store is not None:
                for d in chunk:
                    store.add(d.id, d.title, d.text)
        bar.close()
        encode_s = time.perf_counter() - started - dense_s

        def extras(tmp: Path) -> dict:
            fields: dict = {}
            if dense is not None:
                fields["dense"] = {**dense.commit(), "encoder_identity": dense_encoder.identity(),
                                   "source": str(dense_encoder.config.extra.get("base_model", "")),
                                   "directory": "dense/encoder", "encode_seconds": round(dense_s, 2)}
                dense_encoder.save(tmp / "dense" / "encoder")
            if bm25:
                from training.bm25 import Bm25

                (tmp / "bm25").mkdir()
                fields["bm25"] = Bm25(writer.ids, list(writer.texts())).save(tmp / "bm25")
            if store is not None:
                store.close()
                fields["documents"] = True
            if lucene:
                from indexer.lucene import build_impact_index

                fields["lucene"] = build_impact_index(tmp / "export.jsonl", tmp / "lucene", threads=lucene_threads)
            return fields

        encoder_info = {
            "kind": encoder.config.kind,
            "identity": encoder.identity(),
            "source": str(encoder.config.extra.get("base_model", "")),
            "directory": "encoder",
        }
        build = {
            "corpus": str(corpus),
            "batch_size": batch_size,
            "max_document_length": encoder.config.max_document_length,
            "document_top_k": document_top_k,
            "dtype": encoder.dtype,
            "device": str(encoder.device),
            "skipped_lines": stats.skipped,
            "encode_seconds": round(encode_s, 2),
            "docs_per_second": round(len(writer.ids) / encode_s, 2) if encode_s > 0 else None,
        }
        manifest = writer.commit(
            encoder_info, build, save_encoder=encoder.save,
            export_jsonl=Path(export_jsonl) if export_jsonl else None, export=lucene,
            tokens=encoder.token_strings() if export_jsonl or lucene else None, extras=extras,
        )
    if stats.skipped:
        print(f"skipped {stats.skipped} malformed line(s); first: {stats.examples[0]}")
    return manifest
