"""Building an index: a new directory with the manifest, the encoders, an empty generation 0, then every document
added through the :class:`~lsr.index.writer.IndexWriter` and committed as generation 1 (one segment).

A build at a path happens in a temporary sibling directory (``.NAME.tmp-XXXX``) that replaces the path only when
complete: a failed or interrupted build leaves any previous index there untouched.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from lsr.corpus import Document
from lsr.errors import InvalidIndex, InvalidInput
from lsr.index import storage
from lsr.index.dense import DENSE_KINDS
from lsr.index.lexical import ANALYZER
from lsr.index.manifest import IMPACT_DTYPES, MANIFEST_FILE, Manifest
from lsr.index.segment import DEFAULT_BLOCK_SIZE, DEFAULT_BOUND_RATIO, DEFAULT_DENSE_RATIO, check_block_size
from lsr.sparse import SparseBatch

CHUNK_AGGREGATES = ("max", "sum")


@dataclass(frozen=True)
class BuildOptions:
    """Build-time choices; every one is recorded in the manifest and applies to every later segment."""

    impact_dtype: str = "uint8"  # uint8: quantized impacts; float32: unquantized (to measure what quantization costs)
    block_size: int = DEFAULT_BLOCK_SIZE
    dense_ratio: int = DEFAULT_DENSE_RATIO
    bound_ratio: int = DEFAULT_BOUND_RATIO  # terms in >= 1/N of the rows keep a row of block maxima
    document_top_k: int | None = None  # static pruning: keep each document's N largest weights
    batch_size: int = 32  # documents per forward pass
    chunk_documents: int = 2048  # documents encoded (and spooled) at a time
    dense_index: str = "flat"  # flat (exact inner product) or hnsw
    bm25: bool = False
    store_documents: bool = False
    lucene: bool = False
    lucene_threads: int | None = None
    chunk_tokens: int | None = None  # split documents longer than this (tokens, special tokens included)
    chunk_overlap: int = 0  # tokens two consecutive chunks share
    chunk_aggregate: str = "max"  # a document's score: its best chunk (max) or the sum over its chunks
    max_weight: float | None = None  # quantization reference (default: the largest weight of the first documents)

    def __post_init__(self) -> None:
        if self.impact_dtype not in IMPACT_DTYPES:
            raise InvalidInput(f"impact dtype {self.impact_dtype!r} is not one of {', '.join(IMPACT_DTYPES)}")
        if self.document_top_k is not None and self.document_top_k < 1:
            raise InvalidInput(f"--document-top-k must be >= 1 (the weights kept per document), got {self.document_top_k}")
        if self.batch_size < 1 or self.chunk_documents < 1:
            raise InvalidInput(f"batch size and chunk size must be >= 1, got {self.batch_size}, {self.chunk_documents}")
        if self.dense_ratio < 0 or self.bound_ratio < 0:
            raise InvalidInput(f"dense_ratio and bound_ratio must be >= 0 (0: none), got {self.dense_ratio} and "
                               f"{self.bound_ratio}")
        check_block_size(self.block_size)
        if self.dense_index not in DENSE_KINDS:
            raise InvalidInput(f"dense index kind {self.dense_index!r} is not one of {', '.join(DENSE_KINDS)}")
        if self.lucene and self.impact_dtype != "uint8":
            raise InvalidInput("--lucene indexes integer impacts; build with --impact-dtype uint8 (the default)")
        if self.chunk_aggregate not in CHUNK_AGGREGATES:
            raise InvalidInput(f"--chunk-aggregate must be one of {', '.join(CHUNK_AGGREGATES)}")
        if self.chunk_tokens is not None and (self.chunk_tokens < 8 or not 0 <= self.chunk_overlap < self.chunk_tokens):
            raise InvalidInput(f"--chunk-tokens must be >= 8 and --chunk-overlap in [0, chunk tokens), got "
                               f"{self.chunk_tokens} and {self.chunk_overlap}")
        if self.lucene and self.chunk_tokens:
            raise InvalidInput("the Lucene part indexes one vector a document: build it without --chunk-tokens")
        if self.max_weight is not None and not (self.max_weight > 0 and self.max_weight != float("inf")):
            raise InvalidInput(f"max_weight must be a finite number > 0, got {self.max_weight}")


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


def create_directory(directory: Path, encoder, options: BuildOptions, dense_encoder=None, vocab_size: int | None = None,
                     source: str = "") -> Manifest:
    """An empty index in ``directory``: manifest, encoders, generation 0 with no segment."""
    if encoder is not None and getattr(encoder, "vocab_size", None) is None:
        raise InvalidInput("the inverted index needs a sparse encoder (splade or inference-free), not a dense one")
    if dense_encoder is not None and not hasattr(dense_encoder, "dim"):
        raise InvalidInput(f"the dense encoder must be a dense encoder (mean pooling), got a "
                           f"{dense_encoder.config.kind!r} one; pass e.g. all-MiniLM-L6-v2")
    if options.chunk_tokens and encoder is None:
        raise InvalidInput("chunking cuts texts into token windows: it needs an encoder")
    vocab = encoder.vocab_size if encoder is not None else vocab_size
    if vocab is None:
        raise InvalidInput("indexing bare vectors needs vocab_size (or an encoder whose vocabulary they use)")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / storage.SEGMENTS).mkdir(exist_ok=True)
    (directory / storage.GENERATIONS).mkdir(exist_ok=True)
    if encoder is not None:
        encoder.save(directory / "encoder")
        encoder_info = {"kind": encoder.config.kind, "identity": encoder.identity(),
                        "source": str(encoder.config.extra.get("base_model", "")), "directory": "encoder"}
    else:
        encoder_info = {"kind": "vectors", "identity": None, "source": "", "directory": None}
    dense = None
    if dense_encoder is not None:
        dense_encoder.save(directory / "dense-encoder")
        dense = {"index": options.dense_index, "dim": dense_encoder.dim, "encoder_identity": dense_encoder.identity(),
                 "source": str(dense_encoder.config.extra.get("base_model", "")), "directory": "dense-encoder"}
    build = {**asdict(options), "corpus": source,
             "max_document_length": encoder.config.max_document_length if encoder is not None else None,
             "dtype": getattr(encoder, "dtype", None), "device": str(getattr(encoder, "device", "")) or None}
    for key in ("lucene", "lucene_threads", "max_weight", "dense_index", "bm25", "store_documents"):
        build.pop(key)
    manifest = Manifest(vocab_size=vocab, impact_dtype=options.impact_dtype, encoder=encoder_info, build=build,
                        dense=dense, bm25={"k1": 1.5, "b": 0.75, "analyzer": ANALYZER} if options.bm25 else None,
                        documents=options.store_documents,
                        search_defaults=choose_search_defaults(dense is not None, options.bm25, encoder is not None))
    if options.max_weight is not None:
        manifest.max_weight = options.max_weight
        manifest.scale = 255.0 / options.max_weight if options.impact_dtype == "uint8" else 1.0
    elif options.impact_dtype == "float32":
        manifest.max_weight, manifest.scale = None, 1.0
    manifest.save(directory)
    storage.publish(directory, storage.Generation(0, [], 1, 0, "create"))
    return manifest


def build_directory(directory: Path, documents: Iterable[Document] | None, encoder, options: BuildOptions,
                    vectors: SparseBatch | None = None, ids: list[str] | None = None, dense_encoder=None,
                    export_jsonl: Path | None = None, source: str = "", progress: Callable[[int], None] | None = None,
                    vocab_size: int | None = None, encode_with=None) -> Manifest:
    """Write a complete index into ``directory`` (an empty staging folder): generation 1 holds every document."""
    from lsr.index.writer import IndexWriter

    if options.lucene:
        from lsr.lucene import check_available

        check_available()  # fail before encoding anything
    if vectors is not None and documents is None and (dense_encoder is not None or options.bm25 or
                                                      options.store_documents):
        raise InvalidInput("the dense, BM25 and stored-text parts need the documents' texts: pass them with the vectors")
    create_directory(directory, encoder, options, dense_encoder, vocab_size, source)
    with IndexWriter(directory, encoder=encoder, dense_encoder=dense_encoder) as writer:
        if vectors is not None:
            writer.add_vectors(vectors, ids, list(documents) if documents is not None else None)
        else:
            writer.add(documents or (), batch_size=options.batch_size, progress=progress,
                       encode_chunks=encode_with(directory) if encode_with is not None else None)
        summary = writer.commit(operation="build")
        if summary.generation == 0:
            raise InvalidInput("no documents to index; check the corpus path (and what --skip-malformed skipped)")
        manifest = writer.manifest
    if options.lucene or export_jsonl:
        from lsr.lucene import build_impact_index, write_json_vector_collection

        if options.impact_dtype != "uint8":
            raise InvalidInput("--export-jsonl writes integer impacts for Lucene (Anserini casts weights to int); "
                               "build with --impact-dtype uint8 (the default) to export")
        if encoder is None:
            raise InvalidInput("a JsonVectorCollection names tokens: index with an encoder to export it")
        from lsr.index import Index

        snapshot = Index.open(directory, encoder=encoder, parts=("documents",)).snapshot()
        jsonl = directory / "export.jsonl.tmp"
        write_json_vector_collection(snapshot, encoder.token_strings(), jsonl)
        if options.lucene:
            manifest.lucene = {**build_impact_index(jsonl, directory / "lucene", threads=options.lucene_threads),
                               "generation": summary.generation}
            manifest.save(directory)
        if export_jsonl is not None:
            export_jsonl.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(jsonl), str(export_jsonl))
        else:
            jsonl.unlink()
    manifest.build["summary"] = {"documents": summary.added, "truncated_documents": summary.truncated,
                                 "clipped_postings": summary.clipped, "seconds": round(summary.seconds, 2)}
    manifest.save(directory)
    return manifest
