"""The index: immutable segments (quantized postings with block-max structures, and per segment the optional dense
embeddings, BM25 postings and stored texts), published as generations, plus the encoder the documents were encoded
with. This package imports without torch: encoders are loaded only when asked for.

Layout of an index directory (format 3)::

    manifest.json        format, encoder identity, quantization scale, build options, parts, search defaults
    CURRENT              the published generation (generations/gen-NNNNNN.json)
    generations/         one file a generation: its segments and their deletes files
    segments/seg-*/      the segments (:mod:`lsr.index.segment`)
    encoder/             the sparse encoder (queries use it too); dense-encoder/ with a dense part
    lucene/              Lucene impact index (``lucene=True``): rebuild-only
    write.lock           held by the one writer

An :class:`Index` is a handle: it serves the snapshot of the generation it last loaded (``refresh`` loads a newer
one) and stages writes (``add``, ``upsert``, ``delete``) until ``commit``.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from lsr.corpus import Document, ReadStats, documents_from, read_corpus
from lsr.errors import EncoderMismatch, InvalidIndex, InvalidInput, NotFound, Unavailable
from lsr.index import storage
from lsr.index.builder import BuildOptions, Staging, build_directory, create_directory
from lsr.index.manifest import IMPACT_DTYPES, INDEX_FORMAT_VERSION, MANIFEST_FILE, Manifest, SegmentInfo
from lsr.index.segment import DEFAULT_BLOCK_SIZE, DEFAULT_BOUND_RATIO, DEFAULT_DENSE_RATIO, Segment, SegmentView, open_segment
from lsr.sparse import SparseBatch

__all__ = ["DEFAULT_BLOCK_SIZE", "DEFAULT_BOUND_RATIO", "DEFAULT_DENSE_RATIO", "IMPACT_DTYPES", "INDEX_FORMAT_VERSION",
           "MANIFEST_FILE", "PARTS", "BuildOptions", "Index", "Manifest", "Segment", "SegmentInfo", "Snapshot"]

PARTS = ("dense", "bm25", "documents")  # optional parts an Index serves (the Lucene part is read by its retriever)


class Snapshot:
    """One generation of an index as a reader sees it, pinned (its files stay on disk) while referenced."""

    def __init__(self, index: Index, generation: storage.Generation, views: list[SegmentView],
                 pin: storage.Pin | None, token) -> None:
        self.index = index
        self.generation = generation
        self.views = views
        self._pin = pin
        self.token = token

    @property
    def number(self) -> int:
        return self.generation.number

    @property
    def doc_count(self) -> int:
        return sum(view.live_documents for view in self.views)

    @property
    def postings(self) -> int:
        return sum(view.segment.info.postings for view in self.views)

    def find(self, doc_id: str) -> tuple[SegmentView, int] | None:
        """The live copy of a document: (segment view, local number), or None."""
        for view in reversed(self.views):
            local = view.segment.local_of(doc_id)
            if local is not None and view.is_live(local):
                return view, local
        return None

    def ids(self) -> Iterator[str]:
        for view in self.views:
            ids = view.segment.ids
            for local in range(view.segment.info.documents):
                if view.is_live(local):
                    yield str(ids[local])

    def document(self, doc_id: str) -> dict | None:
        found = self.find(doc_id)
        if found is None:
            return None
        view, local = found
        if view.segment.texts is None:
            raise Unavailable("this index stores no texts; rebuild it with `lsr index ... --store-documents` "
                              "(store_documents=True)")
        return view.segment.texts.get(local)

    def release(self) -> None:
        if self._pin is not None:
            self._pin.release()
            self._pin = None


class Index:
    """A handle on an index directory (or a private scratch directory for an in-memory index)."""

    def __init__(self, directory: Path, manifest: Manifest, encoder=None, dense_encoder=None,
                 parts: Sequence[str] = PARTS, mmap: bool = True, scratch: bool = False) -> None:
        self.directory = directory
        self.manifest = manifest
        self.encoder = encoder
        self.dense_encoder = dense_encoder
        self.parts = tuple(parts)
        self.mmap = mmap
        self.read_stats = ReadStats()
        self._writer = None
        self._snapshot: Snapshot | None = None
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(directory), True) if scratch else None
        if encoder is not None:
            self.check_encoder(encoder)
        self.refresh()

    def __repr__(self) -> str:
        where = "in memory" if self.in_memory else str(self.directory)
        snapshot = self.snapshot()
        return (f"Index({where}: generation {snapshot.number}, {snapshot.doc_count} documents in "
                f"{len(snapshot.views)} segments, parts={[p for p in (*PARTS, 'lucene') if self.has(p)]})")

    @property
    def in_memory(self) -> bool:
        return self._finalizer is not None

    # -- opening and building -------------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, encoder=None, device: str | None = None, mmap: bool = True,
             parts: Sequence[str] = PARTS, load_encoder: bool = True) -> Index:
        """Open an index directory, serving the parts in ``parts`` it has. ``encoder`` (an encoder or a directory)
        overrides the stored one and must be the one the index was built with; ``load_encoder=False`` opens the
        postings only (benchmarks, exports)."""
        directory = Path(path)
        manifest = Manifest.load(directory)
        if load_encoder:
            encoder = _resolve_encoder(encoder, directory, manifest, device)
        dense_encoder = None
        if manifest.dense and "dense" in parts and load_encoder:
            from lsr.encoders import load_encoder as load

            dense_encoder = load(directory / manifest.dense["directory"], device=device)
            if dense_encoder.identity() != manifest.dense["encoder_identity"]:
                raise InvalidIndex(f"{directory}/{manifest.dense['directory']} is not the dense encoder the index was "
                                   "built with (identity differs); rebuild the index")
        index = cls(directory, manifest, encoder if load_encoder else None, dense_encoder, parts, mmap)
        index.collect_garbage()  # a crashed writer's leftovers go now, unless another writer is at work
        return index

    @classmethod
    def build(cls, encoder=None, *, ids: Iterable | None = None, texts: Iterable[str] | None = None,
              titles: Iterable[str] | None = None, documents: Iterable[Document | Mapping] | None = None,
              corpus: str | Path | None = None, vectors=None, vocab_size: int | None = None,
              path: str | Path | None = None, dense_encoder=None, progress: bool = False, skip_malformed: bool = False,
              limit: int | None = None, export_jsonl: str | Path | None = None,
              progress_callback=None, encode_with=None, **options) -> Index:
        """Encode documents and build an index: in memory (a private folder, removed with the index), or at
        ``path`` (written atomically, then opened).

        Documents come as parallel ``ids``/``texts`` (/``titles``) lists, as ``documents`` (an iterable of
        ``{"id", "title", "text"}`` mappings), or from ``corpus`` (a BEIR folder, a JSONL file or an ir_datasets id);
        or give precomputed ``vectors`` (:class:`~lsr.sparse.SparseBatch`, a SciPy sparse matrix, a NumPy array, or
        a list of ``{token id: weight}``) with ``ids`` (and the texts too, for the dense, BM25 and stored-text
        parts). ``encoder`` defaults to the shipped one when documents are to be encoded. ``options`` are
        :class:`BuildOptions` fields (``bm25``, ``store_documents``, ``impact_dtype``, ``chunk_tokens``, ...).
        ``encode_with``: encode elsewhere, e.g. on a Ray cluster: a callable that takes the index folder being built
        (its encoders saved there) and returns an ``encode_chunks`` for :meth:`IndexWriter.add
        <lsr.index.writer.IndexWriter.add>`.
        """
        build_options = _options(options)
        if build_options.lucene and path is None:
            raise InvalidInput("a Lucene part lives on disk: build with path=... to add one")
        stats = ReadStats()
        docs, batch, ids = _sources(encoder, ids, texts, titles, documents, corpus, vectors, skip_malformed, limit,
                                    stats)
        if batch is None and encoder is None:
            from lsr.encoders import load_encoder

            encoder = load_encoder()
        bar = None
        if progress and progress_callback is None:
            from tqdm.auto import tqdm

            bar = tqdm(desc="encoding documents", unit="doc", total=limit)
            progress_callback = bar.update
        target = Path(path) if path is not None else None
        staging = Staging(target) if target is not None else None
        directory = staging.path if staging is not None else Path(tempfile.mkdtemp(prefix="lsr-index-"))
        try:
            build_directory(directory, docs, encoder, build_options, vectors=batch, ids=ids,
                            dense_encoder=dense_encoder, export_jsonl=Path(export_jsonl) if export_jsonl else None,
                            source=str(corpus) if corpus is not None else "python", vocab_size=vocab_size,
                            progress=progress_callback, encode_with=encode_with)
            if bar is not None:
                bar.close()
            if staging is not None:
                staging.publish()
                directory = target
            index = cls(directory, Manifest.load(directory), encoder, dense_encoder, scratch=staging is None)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True) if staging is None else staging.discard()
            raise
        index.read_stats = stats
        return index

    @classmethod
    def create(cls, encoder=None, *, path: str | Path | None = None, dense_encoder=None,
               vocab_size: int | None = None, **options) -> Index:
        """An empty index (generation 0), to fill with ``add`` and ``commit``; in memory unless ``path``."""
        build_options = _options(options)
        if encoder is None and vocab_size is None:
            from lsr.encoders import load_encoder

            encoder = load_encoder()
        target = Path(path) if path is not None else None
        staging = Staging(target) if target is not None else None
        directory = staging.path if staging is not None else Path(tempfile.mkdtemp(prefix="lsr-index-"))
        try:
            create_directory(directory, encoder, build_options, dense_encoder, vocab_size, "python")
            if staging is not None:
                staging.publish()
                directory = target
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True) if staging is None else staging.discard()
            raise
        return cls(directory, Manifest.load(directory), encoder, dense_encoder, scratch=staging is None)

    def save(self, path: str | Path) -> Path:
        """Write this index's current generation to ``path`` atomically (its segments and parts, its encoders)."""
        target = Path(path)
        if target.resolve() == self.directory.resolve():
            return target
        snapshot = self.snapshot()
        staging = Staging(target)
        try:
            for name in ("segments", "generations"):
                (staging.path / name).mkdir()
            for view in snapshot.views:
                shutil.copytree(view.segment.directory, staging.path / "segments" / view.segment.name,
                                ignore=shutil.ignore_patterns("del-*"))
            entries = []
            for entry in snapshot.generation.segments:
                if entry.deletes:
                    shutil.copy2(self.directory / "segments" / entry.name / entry.deletes,
                                 staging.path / "segments" / entry.name / entry.deletes)
                entries.append(entry)
            for folder in ("encoder", "dense-encoder", "lucene"):
                if (self.directory / folder).is_dir():
                    shutil.copytree(self.directory / folder, staging.path / folder)
            manifest = self.manifest
            if any(not view.segment.legacy for view in snapshot.views):  # (a writer may have written one since open)
                manifest = dataclasses.replace(manifest, format_version=INDEX_FORMAT_VERSION)
            manifest.save(staging.path)
            generation = storage.Generation(snapshot.number, entries, snapshot.generation.next_segment,
                                            snapshot.doc_count, f"saved from {self.directory}")
            storage.publish(staging.path, generation)
            staging.publish()
        except BaseException:
            staging.discard()
            raise
        return target

    # -- the generation served ------------------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """The generation this handle serves (grab it once per request: it stays consistent)."""
        return self._snapshot

    def refresh(self) -> bool:
        """Load the published generation if it is not the one served; True when it changed."""
        for _ in range(20):  # a writer may publish (and collect the old file) between our two reads: read again
            path = storage.current_generation_file(self.directory)
            token = _token(path)
            if self._snapshot is not None and self._snapshot.token == token:
                return False
            try:
                pin = storage.Pin(path)
            except FileNotFoundError:
                continue
            if _token(path) != token:
                pin.release()
                continue
            generation = storage.Generation.read(path)
            views = []
            for entry in generation.segments:
                segment = open_segment(self.directory / storage.SEGMENTS / entry.name, self.mmap)
                views.append(SegmentView(segment, segment.deletes(entry.deletes), entry.deleted))
            # the previous snapshot's pin is released when the last request (or engine state) holding it lets go
            self._snapshot = Snapshot(self, generation, views, pin, token)
            return True
        raise InvalidIndex(f"{self.directory}: the current generation kept changing while opening it; try again")

    @property
    def segments(self) -> list[Segment]:
        """The segments of the generation served (deleted documents included: see ``snapshot().views``)."""
        return [view.segment for view in self.snapshot().views]

    @property
    def generation(self) -> int:
        return self.snapshot().number

    @property
    def doc_count(self) -> int:
        return self.snapshot().doc_count

    @property
    def vocab_size(self) -> int:
        return self.manifest.vocab_size

    def __len__(self) -> int:
        return self.doc_count

    def has(self, part: str) -> bool:
        """Whether the index was built with ``part`` (dense, bm25, documents, lucene) and serves it."""
        if part == "lucene":
            return bool(self.manifest.lucene)
        built = {"dense": bool(self.manifest.dense), "bm25": bool(self.manifest.bm25),
                 "documents": bool(self.manifest.documents)}
        return built.get(part, False) and part in self.parts and (part != "dense" or self.dense_encoder is not None)

    def check_encoder(self, encoder) -> None:
        """Refuse an encoder other than the one the index was built with."""
        if not hasattr(encoder, "vocab_size"):
            raise InvalidIndex("the native index is searched with a sparse encoder (splade or inference-free), not a "
                               f"{encoder.config.kind!r} one")
        expected = self.manifest.encoder.get("identity")
        if expected is not None and expected != encoder.identity():
            raise EncoderMismatch(
                f"{self.directory} was built with encoder {expected} ({self.manifest.encoder.get('kind')}, from "
                f"{self.manifest.encoder.get('source') or '?'}), but the given encoder is {encoder.identity()} "
                f"({encoder.config.kind}); search it with its own encoder (drop --encoder to use the stored one) or "
                "rebuild the index with this encoder")
        if encoder.vocab_size != self.vocab_size:
            raise EncoderMismatch(f"encoder vocabulary {encoder.vocab_size} != index vocabulary {self.vocab_size}")

    def token_strings(self) -> list[str]:
        """The token of every vocabulary id (explanations and JSON views use them)."""
        if self.encoder is None:
            return [str(i) for i in range(self.vocab_size)]
        if not hasattr(self, "_tokens"):
            self._tokens = self.encoder.token_strings()
        return self._tokens

    # -- documents by id ----------------------------------------------------------------------------------------------
    def ids(self) -> Iterator[str]:
        return self.snapshot().ids()

    def document(self, doc_id: str) -> dict | None:
        """The stored ``{"id", "title", "text"}`` of a live document, or None for an unknown id."""
        if not self.manifest.documents:
            raise Unavailable("this index stores no texts; rebuild it with `lsr index ... --store-documents` "
                              "(store_documents=True)")
        return self.snapshot().document(doc_id)

    def vector(self, doc_id: str) -> SparseBatch:
        """The stored (dequantized) sparse vector of a live document (its rows summed over chunks: max for max)."""
        found = self.snapshot().find(doc_id)
        if found is None:
            raise NotFound(f"no document with id {doc_id!r} in this index")
        view, local = found
        rows = view.segment.doc_rows()
        tokens = np.arange(self.vocab_size, dtype=np.int32)
        stored = np.max([view.segment.stored_row(r, tokens) for r in range(rows[local], rows[local + 1])], axis=0)
        keep = np.flatnonzero(stored > 0)
        return SparseBatch.from_rows([(keep.astype(np.int32),
                                       (stored[keep] / self.manifest.scale).astype(np.float32))])

    # -- writes ----------------------------------------------------------------------------------------------------------
    def writer(self, wait: float = 0.0):
        """This handle's :class:`~lsr.index.writer.IndexWriter` (taking the write lock on first use)."""
        if self._writer is None:
            from lsr.index.writer import IndexWriter

            self._writer = IndexWriter(self.directory, encoder=self.encoder, dense_encoder=self.dense_encoder,
                                       wait=wait)
        return self._writer

    def add(self, ids: Iterable | None = None, texts: Iterable[str] | None = None, titles: Iterable[str] | None = None,
            documents: Iterable[Document | Mapping] | None = None, upsert: bool = False):
        """Encode and stage new documents (visible after :meth:`commit`); an id already in the index is an error
        unless ``upsert``."""
        return self.writer().add(documents_from(documents=documents, ids=ids, texts=texts, titles=titles),
                                 upsert=upsert, batch_size=self.manifest.build.get("batch_size", 32))

    def upsert(self, ids: Iterable | None = None, texts: Iterable[str] | None = None,
               titles: Iterable[str] | None = None, documents: Iterable[Document | Mapping] | None = None):
        """Add or replace documents; a document whose title and text are unchanged is left as it is (not
        re-encoded)."""
        return self.add(ids, texts, titles, documents, upsert=True)

    def delete(self, ids: Iterable[str]):
        """Stage deletes; ids not in the index come back in the summary's ``unknown``."""
        if isinstance(ids, str):
            ids = [ids]
        return self.writer().delete(ids)

    def commit(self):
        """Publish every staged write as the next generation (durably), serve it, and release the write lock."""
        if self._writer is None:
            from lsr.index.writer import WriteSummary

            return WriteSummary(generation=self.generation)
        try:
            summary = self._writer.commit()
        finally:
            self._writer.close()
            self._writer = None
            self.refresh()  # also when a Milvus mirror failed after the index committed: serve what is committed
        self.collect_garbage()
        return summary

    def collect_garbage(self) -> list[str]:
        """Remove the generations and segments no reader holds any more (skipped while another writer works)."""
        try:
            lock = storage.WriteLock(self.directory)
        except (storage.IndexLocked, storage.IndexReadOnly):  # another writer works, or a read-only index
            return []
        try:
            current = storage.Generation.read(storage.current_generation_file(self.directory))  # not this handle's
            return storage.remove_leftovers(self.directory) + storage.collect_garbage(self.directory, current)
        except PermissionError:  # a read-only index (a mounted volume): nothing to clean, and nothing to fear
            return []
        finally:
            lock.release()

    def rollback(self) -> None:
        """Drop every staged write and release the write lock."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def merge(self, max_segments: int | None = None, policy=None):
        """Merge segments (dropping deleted documents): down to ``max_segments`` (1: one segment), or as the
        tiered ``policy`` (default :class:`~lsr.index.merge.TieredMergePolicy`) asks; then serve the result."""
        from lsr.index.merge import merge

        writer = self.writer()
        try:
            summary = merge(writer, max_segments=max_segments, policy=policy)
        finally:
            writer.close()
            self._writer = None
        self.refresh()
        self.collect_garbage()
        return summary

    def close(self) -> None:
        self.rollback()
        if self._snapshot is not None:
            self._snapshot.release()


def _token(path: Path):
    """What identifies a published generation: the generation file's name and inode (a rebuilt index reuses names)."""
    stat = path.stat() if path.exists() else None
    return (path.name, stat.st_ino if stat else None, stat.st_mtime_ns if stat else None)


def _options(options: dict) -> BuildOptions:
    try:
        return BuildOptions(**options)
    except TypeError:
        import dataclasses

        known = sorted(f.name for f in dataclasses.fields(BuildOptions))
        raise InvalidInput(f"unknown build options {sorted(set(options) - set(known))}; known: {known}") from None


def _sources(encoder, ids, texts, titles, documents, corpus, vectors, skip_malformed, limit, stats):
    sources = sum(x is not None for x in (texts, documents, corpus))
    if sources > 1:
        raise InvalidInput("give documents one way: texts (with ids), documents, or corpus")
    if vectors is None and sources == 0:
        raise InvalidInput("nothing to index: pass texts (with ids), documents, corpus, or vectors (with ids)")
    if corpus is not None:
        docs = read_corpus(corpus, skip_malformed=skip_malformed, stats=stats)
    elif texts is not None or documents is not None:
        docs = documents_from(documents=documents, ids=ids if texts is not None else None, texts=texts, titles=titles)
    else:
        docs = None
    if docs is not None and limit is not None:
        import itertools

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
    return docs, batch, ids


def _resolve_encoder(encoder, directory: Path, manifest: Manifest, device: str | None):
    from lsr.encoders import ENCODER_CONFIG_FILE, load_encoder

    if encoder is None:
        stored = manifest.encoder.get("directory")
        if stored is None:
            return None  # an index of bare vectors: searched with vectors
        return load_encoder(directory / stored, device=device)
    if isinstance(encoder, (str, Path)):
        if not (Path(encoder) / ENCODER_CONFIG_FILE).exists():
            raise InvalidIndex(f"--encoder {encoder} is not an lsr encoder directory (no {ENCODER_CONFIG_FILE}); "
                               f"queries must use the encoder the index was built with, stored in {directory}/encoder")
        return load_encoder(encoder, device=device)
    return encoder


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
