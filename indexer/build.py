"""Corpus -> encoded batches -> native index. Document encoding is a pure function over batches of texts."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from tqdm.auto import tqdm

from indexer.corpus import Document, ReadStats, count_documents, read_corpus
from indexer.inverted import IndexWriter, Manifest
from training.encoders import SparseEncoder


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
) -> Manifest:
    """Encode every document of ``corpus`` with ``encoder`` and write the index at ``out`` atomically."""
    if not isinstance(encoder, SparseEncoder):
        raise ValueError("the inverted index needs a sparse encoder (splade or inference-free), not a dense one")
    stats = ReadStats()
    documents: Iterable[Document] = read_corpus(corpus, skip_malformed=skip_malformed, stats=stats)
    if limit is not None:
        documents = itertools.islice(documents, limit)
    started = time.perf_counter()
    total = limit if limit is not None else (count_documents(corpus) if progress else None)
    bar = tqdm(desc="encoding documents", unit="doc", disable=not progress, total=total)
    with IndexWriter(out, encoder.vocab_size, impact_dtype, keep_texts=export_jsonl is not None) as writer:
        for chunk in chunked(documents, chunk_documents):
            texts = [d.contents for d in chunk]
            batch = encoder.encode_documents(texts, batch_size=batch_size, progress=bar.update)
            writer.add(batch, [d.id for d in chunk], texts)
        bar.close()
        encode_s = time.perf_counter() - started
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
            "dtype": encoder.dtype,
            "device": str(encoder.device),
            "skipped_lines": stats.skipped,
            "encode_seconds": round(encode_s, 2),
            "docs_per_second": round(len(writer.ids) / encode_s, 2) if encode_s > 0 else None,
        }
        manifest = writer.commit(
            encoder_info, build, save_encoder=encoder.save,
            export_jsonl=Path(export_jsonl) if export_jsonl else None,
            tokens=encoder.token_strings() if export_jsonl else None,
        )
    if stats.skipped:
        print(f"skipped {stats.skipped} malformed line(s); first: {stats.examples[0]}")
    return manifest
