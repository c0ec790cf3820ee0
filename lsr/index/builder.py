"""Building an index, the writer's fast path: a new directory with the manifest, the encoders, an empty generation
0, then every document added through the :class:`~lsr.index.writer.IndexWriter` and committed as generation 1 (one
segment). :func:`build` and :func:`create` are what :meth:`lsr.index.Index.build` and :meth:`~lsr.index.Index.create`
run; :func:`copy_generation` is :meth:`~lsr.index.Index.save`.

A build at a path happens in a temporary sibling directory (``.NAME.tmp-XXXX``) that replaces the path only when
complete: a failed or interrupted build leaves any previous index there untouched. A Lucene part (``lucene=True``) is
built by the ``lucene`` commit listener when the build commits (:mod:`lsr.index.listeners`).
"""

from __future__ import annotations

import dataclasses
import itertools
import shutil
import tempfile
import threading
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from lsr.corpus import Document, ReadStats, documents_from, read_corpus
from lsr.errors import InvalidIndex, InvalidInput
from lsr.index import files, storage
from lsr.index.dense import DENSE_KINDS
from lsr.index.jsonl import write_json_vector_collection
from lsr.index.lexical import ANALYZER
from lsr.index.manifest import IMPACT_DTYPES, INDEX_FORMAT_VERSION, MANIFEST_FILE, Manifest
from lsr.index.metadata import Schema
from lsr.index.segment import DEFAULT_BLOCK_SIZE, DEFAULT_BOUND_RATIO, DEFAULT_DENSE_RATIO, check_block_size
from lsr.index.snapshot import open_snapshot
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
        files.mkdir(target.parent)
        self.path = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
        files.mkdir(self.path, exist_ok=False)

    def publish(self) -> None:
        """Every file durable (the encoders and copies too), then two renames; if the second fails, the previous
        index is put back."""
        files.fsync_tree(self.path)
        old = None
        if self.target.exists():
            old = self.target.parent / f".{self.target.name}.old-{uuid.uuid4().hex[:8]}"
            files.rename(self.target, old)
        try:
            files.rename(self.path, self.target)
        except BaseException:
            if old is not None:
                files.rename(old, self.target)
            raise
        files.fsync_directory(self.target.parent)
        if old is not None:
            try:
                files.remove(old)
            except OSError:  # the new index is in place; the old one's folder is left to remove by hand
                pass

    def discard(self) -> None:
        try:
            files.remove(self.path, missing_ok=True)
        except OSError:
            pass


def create_directory(directory: Path, encoder, options: BuildOptions, dense_encoder=None, vocab_size: int | None = None,
                     source: str = "", schema: Schema | None = None, empty: bool = False,
                     search_defaults: dict | None = None) -> Manifest:
    """An empty index in ``directory``: manifest (with the metadata ``schema``, when declared), encoders, generation 0
    with no segment. ``empty``: created to be filled write by write (:func:`empty_index_scale` sets its scale)."""
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
    files.mkdir(directory)
    files.mkdir(directory / storage.SEGMENTS)
    files.mkdir(directory / storage.GENERATIONS)
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
                        search_defaults=search_defaults or choose_search_defaults(dense is not None, options.bm25,
                                                                                  encoder is not None),
                        metadata=schema.to_manifest() if schema is not None and (schema.fields or
                                                                                  schema.unknown != "error") else None)
    max_weight = options.max_weight
    if options.impact_dtype == "uint8":
        if empty:
            max_weight, manifest.build["scale_from"] = empty_index_scale(encoder, options)
            if max_weight is None:
                manifest.build["first_write_headroom"] = FIRST_WRITE_HEADROOM
        elif max_weight is not None:
            manifest.build["scale_from"] = "declared"
    if options.impact_dtype == "float32":
        manifest.max_weight, manifest.scale = options.max_weight, 1.0
    elif max_weight is not None:
        manifest.max_weight, manifest.scale = max_weight, 255.0 / max_weight
    manifest.save(directory)
    storage.publish(directory, storage.Generation(0, [], 1, 0, "create"))
    return manifest


def build_directory(directory: Path, documents: Iterable[Document] | None, encoder, options: BuildOptions,
                    vectors: SparseBatch | None = None, ids: list[str] | None = None, dense_encoder=None,
                    export_jsonl: Path | None = None, source: str = "", progress: Callable[[int], None] | None = None,
                    vocab_size: int | None = None, encode_with=None, schema: Schema | None = None) -> Manifest:
    """Write a complete index into ``directory`` (an empty staging folder): generation 1 holds every document."""
    from lsr.index.writer import IndexWriter

    if vectors is not None and documents is None and (dense_encoder is not None or options.bm25 or
                                                      options.store_documents):
        raise InvalidInput("the dense, BM25 and stored-text parts need the documents' texts: pass them with the vectors")
    if export_jsonl and options.impact_dtype != "uint8":
        raise InvalidInput("--export-jsonl writes integer impacts for Lucene (Anserini casts weights to int); build "
                           "with --impact-dtype uint8 (the default) to export")
    if (options.lucene or export_jsonl) and encoder is None:
        raise InvalidInput("a JsonVectorCollection names tokens: index with an encoder to export it")
    create_directory(directory, encoder, options, dense_encoder, vocab_size, source, schema)
    listeners = {"lucene": {"build": True, "threads": options.lucene_threads}} if options.lucene else {}
    with IndexWriter(directory, encoder=encoder, dense_encoder=dense_encoder, listener_options=listeners) as writer:
        if vectors is not None:
            writer.add_vectors(vectors, ids, list(documents) if documents is not None else None)
        else:
            writer.add(documents or (), batch_size=options.batch_size, progress=progress,
                       encode_chunks=encode_with(directory) if encode_with is not None else None)
        summary = writer.commit(operation="build")
        if summary.generation == 0:
            raise InvalidInput("no documents to index; check the corpus path (and what --skip-malformed skipped)")
    manifest = Manifest.load(directory)  # (a listener may have recorded its part)
    if export_jsonl:
        snapshot = open_snapshot(directory)
        try:
            export_jsonl.parent.mkdir(parents=True, exist_ok=True)
            write_json_vector_collection(snapshot, encoder.token_strings(), export_jsonl)
        finally:
            snapshot.release()
    manifest.build["summary"] = {"documents": summary.added, "truncated_documents": summary.truncated,
                                 "clipped_postings": summary.clipped, "seconds": round(summary.seconds, 2)}
    manifest.save(directory)
    return manifest


@dataclass
class Built:
    """A directory that :func:`build` or :func:`create` wrote, with the encoders it used."""

    directory: Path
    encoder: object
    dense_encoder: object
    scratch: bool  # a private folder of an in-memory index (removed with its handle)
    stats: ReadStats


def build(encoder=None, *, ids: Iterable | None = None, texts: Iterable[str] | None = None,
          titles: Iterable[str] | None = None, documents: Iterable[Document | Mapping] | None = None,
          metadata: Iterable[Mapping | None] | None = None, corpus: str | Path | None = None, vectors=None,
          vocab_size: int | None = None, path: str | Path | None = None, dense_encoder=None, progress: bool = False,
          skip_malformed: bool = False, limit: int | None = None, export_jsonl: str | Path | None = None,
          progress_callback=None, encode_with=None, schema=None, unknown_fields: str = "error", **options) -> Built:
    """Encode documents and build an index: in a private folder (an in-memory index), or at ``path`` (written
    atomically).

    Documents come as parallel ``ids``/``texts`` (/``titles``, ``metadata``) lists, as ``documents`` (an iterable of
    ``{"id", "title", "text", "metadata"}`` mappings), or from ``corpus`` (a BEIR folder, a JSONL file or an
    ir_datasets id: each line's ``metadata`` object is kept); or give precomputed ``vectors``
    (:class:`~lsr.sparse.SparseBatch`, a SciPy sparse matrix, a NumPy array, or a list of ``{token id: weight}``)
    with ``ids`` (and the texts too, for the dense, BM25 and stored-text parts). ``schema``: the metadata fields and
    their types (``{"year": "integer"}``, ``["year:integer"]``, a :class:`~lsr.index.metadata.Schema`; default:
    inferred from the first documents); ``unknown_fields``: ``error`` or ``ignore`` a field the schema lacks.
    ``encoder`` defaults to the shipped one when documents are to be encoded. ``options`` are :class:`BuildOptions`
    fields (``bm25``, ``store_documents``, ``impact_dtype``, ``chunk_tokens``, ``lucene``, ...). ``encode_with``:
    encode elsewhere, e.g. on a Ray cluster: a callable that takes the index folder being built (its encoders saved
    there) and returns an ``encode_chunks`` for :meth:`IndexWriter.add <lsr.index.writer.IndexWriter.add>`.
    """
    build_options = _options(options)
    if build_options.lucene and path is None:
        raise InvalidInput("a Lucene part lives on disk: build with path=... to add one")
    schema = _schema(schema, unknown_fields)
    stats = ReadStats()
    docs, batch, ids = _sources(encoder, ids, texts, titles, documents, metadata, corpus, vectors, skip_malformed,
                                limit, stats)
    if batch is None and encoder is None:
        from lsr.encoders import load_encoder

        encoder = load_encoder()
    bar = None
    if progress and progress_callback is None:
        from tqdm.auto import tqdm

        bar = tqdm(desc="encoding documents", unit="doc", total=limit)
        progress_callback = bar.update

    def write(directory: Path) -> None:
        build_directory(directory, docs, encoder, build_options, vectors=batch, ids=ids, dense_encoder=dense_encoder,
                        export_jsonl=Path(export_jsonl) if export_jsonl else None,
                        source=str(corpus) if corpus is not None else "python", vocab_size=vocab_size,
                        progress=progress_callback, encode_with=encode_with, schema=schema)
        if bar is not None:
            bar.close()

    directory, scratch = _written(path, write)
    return Built(directory, encoder, dense_encoder, scratch, stats)


def create(encoder=None, *, path: str | Path | None = None, dense_encoder=None, vocab_size: int | None = None,
           schema=None, unknown_fields: str = "error", search_defaults: dict | None = None, **options) -> Built:
    """An empty index (generation 0), to fill through its writer; in a private folder unless ``path``.
    ``search_defaults``: its default mode and fusion (``{"mode": "hybrid", "fusion": {...}}``; default: from its
    parts)."""
    build_options = _options(options)
    if encoder is None and vocab_size is None:
        from lsr.encoders import load_encoder

        encoder = load_encoder()
    directory, scratch = _written(path, lambda folder: create_directory(
        folder, encoder, build_options, dense_encoder, vocab_size, "python", _schema(schema, unknown_fields),
        empty=True, search_defaults=search_defaults))
    return Built(directory, encoder, dense_encoder, scratch, ReadStats())


CALIBRATED_HEADROOM = 1.25  # x the encoder's calibrated maximum: no weight of NFCorpus clipped, nDCG@10 unchanged
FIRST_WRITE_HEADROOM = 2.0  # x the first write's maximum: a first write of one weak document clipped 3% of postings


def empty_index_scale(encoder, options: BuildOptions) -> tuple[float | None, str]:
    """What sets the uint8 scale of an index created empty, which has no first documents to take it from
    (``research/empty_collection_scale.py``, NFCorpus, in the README): a declared ``max_weight``; else the encoder's
    calibrated maximum (``extra.calibrated_max_weight`` of its config: the largest weight over a calibration corpus)
    x 1.25; else the first write's largest weight x 2. (A bulk build takes its first 2,048 documents' maximum.) The
    headroom is cheap: 255 levels over 2x the range changed no NFCorpus nDCG@10 by more than 0.001, where one weak
    first document, without it, clipped 3.15 % of the postings and lost 0.006."""
    if options.max_weight is not None:
        return options.max_weight, "declared"
    calibrated = (getattr(getattr(encoder, "config", None), "extra", None) or {}).get("calibrated_max_weight")
    if isinstance(calibrated, (int, float)) and 0 < calibrated < float("inf"):
        return float(calibrated) * CALIBRATED_HEADROOM, f"the encoder's calibrated maximum x {CALIBRATED_HEADROOM:g}"
    return None, f"the first write's maximum x {FIRST_WRITE_HEADROOM:g}"


def _written(path: str | Path | None, write: Callable[[Path], object]) -> tuple[Path, bool]:
    """Run ``write(folder)`` into a staging sibling of ``path`` published when it returns, or into a private folder
    (an in-memory index: ``scratch`` True); whatever fails leaves nothing behind."""
    target = Path(path) if path is not None else None
    staging = Staging(target) if target is not None else None
    directory = staging.path if staging is not None else Path(tempfile.mkdtemp(prefix="lsr-index-"))
    try:
        write(directory)
        if staging is not None:
            staging.publish()
            directory = target
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True) if staging is None else staging.discard()
        raise
    return directory, staging is None


def copy_generation(directory: Path, manifest: Manifest, snapshot, target: Path, link: bool = False,
                    before_publish: Callable[[Path], object] | None = None) -> Path:
    """Write ``snapshot`` (a generation of ``directory``) to ``target`` atomically: its segments and parts, its
    encoders, its manifest. ``link``: hard-link the segment files and encoders (immutable once written) where the
    filesystem allows; the Lucene part, which Lucene may rewrite, is always copied. ``before_publish(folder)`` runs on
    the complete staging folder before it becomes ``target`` (a snapshot writes its checksum manifest there)."""
    if target.resolve() == directory.resolve():
        return target
    staging = Staging(target)
    try:
        for name in ("segments", "generations"):
            files.mkdir(staging.path / name)
        for view in snapshot.views:
            files.copy(view.segment.directory, staging.path / "segments" / view.segment.name, skip="del-*", link=link)
        for entry in snapshot.generation.segments:
            if entry.deletes:
                files.copy(directory / "segments" / entry.name / entry.deletes,
                           staging.path / "segments" / entry.name / entry.deletes, link=link)
        for folder in ("encoder", "dense-encoder", "lucene"):
            if (directory / folder).is_dir():
                files.copy(directory / folder, staging.path / folder, link=link and folder != "lucene")
        if any(not view.segment.legacy for view in snapshot.views):  # (a writer may have written one since open)
            manifest = dataclasses.replace(manifest, format_version=INDEX_FORMAT_VERSION)
        manifest.save(staging.path)
        generation = storage.Generation(snapshot.number, list(snapshot.generation.segments),
                                        snapshot.generation.next_segment, snapshot.doc_count, f"saved from {directory}")
        storage.publish(staging.path, generation)
        if before_publish is not None:
            before_publish(staging.path)
        staging.publish()
    except BaseException:
        staging.discard()
        raise
    return target


_SHARED_ENCODERS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_SHARED_SOURCES: dict[tuple, list[Path]] = {}
_SHARED_LOCK = threading.Lock()


def shared_encoder(key: tuple, directory: Path, load: Callable[[Path], object]):
    """The encoder an open index already uses for ``key`` (side, identity, device), else ``load(directory)``:
    indexes built with one encoder (the collections of a data directory) share one object, its tokenizer and its
    model, for as long as any of them is open. The identity is a digest of the encoder's files (see
    ``identity()``), so two folders with one identity hold the same encoder, and what the shared object loads later
    (an inference-free model, with the first document) comes from whichever of them still exists."""
    if key[1] is None:
        return load(directory)
    with _SHARED_LOCK:
        sources = _SHARED_SOURCES.setdefault(key, [])
        if directory not in sources:
            sources.append(directory)
        encoder = _SHARED_ENCODERS.get(key)
        if encoder is None:
            encoder = load(directory)
            _SHARED_ENCODERS[key] = encoder
            if hasattr(encoder, "follow"):
                encoder.follow(lambda: load(_live_source(key, directory)))
        return encoder


def _live_source(key: tuple, fallback: Path) -> Path:
    with _SHARED_LOCK:
        sources = _SHARED_SOURCES.get(key, [])
        live = [p for p in sources if p.is_dir()]
        _SHARED_SOURCES[key] = live
    return live[0] if live else fallback


def resolve_encoders(encoder, directory: Path, manifest: Manifest, device: str | None, dense: bool) -> tuple:
    """The sparse encoder to search with (the given one, a directory, or the stored one) and the stored dense one."""
    from lsr.encoders import ENCODER_CONFIG_FILE, load_encoder

    if encoder is None:
        stored = manifest.encoder.get("directory")
        # the index's own encoder: an inference-free model loads when a document is first encoded (see load_encoder)
        identity = manifest.encoder.get("identity")
        encoder = shared_encoder(("sparse", identity, device), directory / stored, lambda folder: load_encoder(
            folder, device=device, identity=identity)) if stored is not None else None
    elif isinstance(encoder, (str, Path)):
        if not (Path(encoder) / ENCODER_CONFIG_FILE).exists():
            raise InvalidIndex(f"--encoder {encoder} is not an lsr encoder directory (no {ENCODER_CONFIG_FILE}); "
                               f"queries must use the encoder the index was built with, stored in {directory}/encoder")
        encoder = load_encoder(encoder, device=device)
    dense_encoder = None
    if manifest.dense and dense:
        dense_encoder = shared_encoder(("dense", manifest.dense["encoder_identity"], device),
                                       directory / manifest.dense["directory"],
                                       lambda folder: load_encoder(folder, device=device))
        if dense_encoder.identity() != manifest.dense["encoder_identity"]:
            raise InvalidIndex(f"{directory}/{manifest.dense['directory']} is not the dense encoder the index was "
                               "built with (identity differs); rebuild the index")
    return encoder, dense_encoder


def _schema(schema, unknown_fields: str) -> Schema | None:
    """The schema a build declares: its fields fixed, the others inferred from the first documents that carry
    metadata, unless unknown fields are ignored (then only the declared fields are kept)."""
    if schema is None:
        return Schema({}, unknown_fields) if unknown_fields != "error" else None
    if not isinstance(schema, Schema):
        schema = Schema.parse(schema, unknown_fields)
    return Schema(schema.fields, schema.unknown, open=schema.unknown == "error") if schema.fields else schema


def _options(options: dict) -> BuildOptions:
    try:
        return BuildOptions(**options)
    except TypeError:
        known = sorted(f.name for f in dataclasses.fields(BuildOptions))
        raise InvalidInput(f"unknown build options {sorted(set(options) - set(known))}; known: {known}") from None


def _sources(encoder, ids, texts, titles, documents, metadata, corpus, vectors, skip_malformed, limit, stats):
    sources = sum(x is not None for x in (texts, documents, corpus))
    if sources > 1:
        raise InvalidInput("give documents one way: texts (with ids), documents, or corpus")
    if vectors is None and sources == 0:
        raise InvalidInput("nothing to index: pass texts (with ids), documents, corpus, or vectors (with ids)")
    if corpus is not None:
        docs = read_corpus(corpus, skip_malformed=skip_malformed, stats=stats)
    elif texts is not None or documents is not None:
        docs = documents_from(documents=documents, ids=ids if texts is not None else None, texts=texts, titles=titles,
                              metadata=metadata)
    else:
        docs = None
    if docs is not None and limit is not None:
        docs = itertools.islice(docs, limit)
    batch = None
    if vectors is not None:
        batch = _as_sparse_batch(vectors, encoder)
        if ids is None:
            raise InvalidInput("vectors need their document ids: pass ids=[...]")
        ids = [str(i) for i in ids]
        if len(ids) != len(batch):
            raise InvalidInput(f"{len(batch)} vectors for {len(ids)} ids")
        if len(set(ids)) != len(ids):
            raise InvalidInput("document ids must be unique")
        if docs is None and metadata is not None:
            docs = documents_from(ids=ids, texts=[""] * len(ids), metadata=metadata, allow_empty=True)
    return docs, batch, ids


def _as_sparse_batch(vectors, encoder) -> SparseBatch:
    if isinstance(vectors, SparseBatch):
        return vectors
    if hasattr(vectors, "tocsr"):
        return SparseBatch.from_scipy(vectors)
    if hasattr(vectors, "ndim") and vectors.ndim == 2:  # a dense (documents x vocabulary) array
        return SparseBatch.from_dense(vectors)
    if isinstance(vectors, (list, tuple)) and all(isinstance(v, Mapping) for v in vectors):
        vocabulary = encoder.tokenizer.get_vocab() if encoder is not None else None
        return SparseBatch.from_dicts(vectors, vocabulary)
    raise InvalidInput("vectors must be a SparseBatch, a SciPy sparse matrix, a (documents x vocabulary) NumPy array, "
                       "or a list of {token id: weight} dicts")
