"""The read side of an index: :class:`Index`, a handle that serves one published generation at a time.

A handle opens an index directory (or builds one: :meth:`Index.build` and :meth:`Index.create` are the builder's
fast path, :mod:`lsr.index.builder`), serves a :class:`~lsr.index.snapshot.Snapshot` of the generation it last loaded
(``refresh`` loads a newer one), and looks documents up: texts, metadata, stored vectors. It never writes itself:
:meth:`Index.writer` hands out the index's :class:`~lsr.index.writer.IndexWriter`, the one way to write from Python,
the CLI and HTTP alike; ``add``, ``upsert``, ``delete``, ``commit``, ``merge`` here are shorthands over that writer.
"""

from __future__ import annotations

import shutil
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from lsr.corpus import Document, ReadStats, documents_from
from lsr.errors import EncoderMismatch, InvalidIndex, NotFound, Unavailable
from lsr.index import storage
from lsr.index.manifest import Manifest
from lsr.index.metadata import Schema
from lsr.index.segment import Segment
from lsr.index.snapshot import Snapshot, open_snapshot
from lsr.sparse import SparseBatch

PARTS = ("dense", "bm25", "documents")  # optional parts an Index serves (the Lucene part is read by its retriever)


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
        postings only (benchmarks, exports, deletes)."""
        from lsr.index.builder import resolve_encoders

        directory = Path(path)
        manifest = Manifest.load(directory)
        encoder, dense_encoder = resolve_encoders(encoder, directory, manifest, device, "dense" in parts) \
            if load_encoder else (None, None)
        index = cls(directory, manifest, encoder, dense_encoder, parts, mmap)
        index.collect_garbage()  # a crashed writer's leftovers go now, unless another writer is at work
        return index

    @classmethod
    def build(cls, encoder=None, **arguments) -> Index:
        """Encode documents and build an index: in memory, or at ``path`` (written atomically, then opened). The
        arguments are those of :func:`lsr.index.builder.build` (documents, ``corpus``, ``vectors``, ``schema``, ...
        and the :class:`~lsr.index.builder.BuildOptions` fields)."""
        from lsr.index.builder import build

        built = build(encoder, **arguments)
        index = cls(built.directory, Manifest.load(built.directory), built.encoder, built.dense_encoder,
                    scratch=built.scratch)
        index.read_stats = built.stats
        return index

    @classmethod
    def create(cls, encoder=None, **arguments) -> Index:
        """An empty index (generation 0), to fill with ``add`` and ``commit``; in memory unless ``path``
        (:func:`lsr.index.builder.create`)."""
        from lsr.index.builder import create

        built = create(encoder, **arguments)
        return cls(built.directory, Manifest.load(built.directory), built.encoder, built.dense_encoder,
                   scratch=built.scratch)

    def save(self, path: str | Path) -> Path:
        """Write this index's current generation to ``path`` atomically (its segments and parts, its encoders)."""
        from lsr.index.builder import copy_generation

        return copy_generation(self.directory, self.manifest, self.snapshot(), Path(path))

    # -- the generation served ------------------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """The generation this handle serves (grab it once per request: it stays consistent)."""
        return self._snapshot

    def refresh(self) -> bool:
        """Load the published generation if it is not the one served; True when it changed. The manifest is read
        again with it (a first commit fixes the quantization, a schema change adds fields)."""
        snapshot = open_snapshot(self.directory, self, self.mmap,
                                 self._snapshot.token if self._snapshot is not None else None)
        if snapshot is None:
            return False
        if self._snapshot is not None:
            self.manifest = Manifest.load(self.directory)
        # the previous snapshot's pin is released when the last request (or engine state) holding it lets go
        self._snapshot = snapshot
        return True

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

    @property
    def schema(self) -> Schema | None:
        """The metadata schema (field -> type), or None while no document has brought metadata."""
        return Schema.from_manifest(self.manifest.metadata)

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
        """The stored ``{"id", "title", "text", "metadata"}`` of a live document, or None for an unknown id."""
        if not self.manifest.documents:
            raise Unavailable("this index stores no texts; rebuild it with `lsr index ... --store-documents` "
                              "(store_documents=True)")
        snapshot = self.snapshot()
        record = snapshot.document(doc_id)
        return None if record is None else {**record, "metadata": snapshot.metadata(doc_id) or {}}

    def metadata(self, doc_id: str) -> dict:
        """The metadata of a live document (``{}`` when it has none); :class:`NotFound` for an unknown id."""
        found = self.snapshot().metadata(doc_id)
        if found is None:
            raise NotFound(f"no document with id {doc_id!r} in this index")
        return found

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

    # -- writes: the writer, and shorthands over it -----------------------------------------------------------------------
    def writer(self, wait: float = 0.0, **listener_options):
        """This handle's :class:`~lsr.index.writer.IndexWriter`, taking the write lock on first use (``wait``:
        seconds to wait for another writer) and holding it until :meth:`commit` or :meth:`rollback`.
        ``listener_options``: per commit listener, its options (``milvus={"uri": ...}``)."""
        if self._writer is None:
            from lsr.index.writer import IndexWriter

            self._writer = IndexWriter(self.directory, encoder=self.encoder, dense_encoder=self.dense_encoder,
                                       wait=wait, listener_options=listener_options)
        return self._writer

    def add(self, ids: Iterable | None = None, texts: Iterable[str] | None = None, titles: Iterable[str] | None = None,
            documents: Iterable[Document | Mapping] | None = None, upsert: bool = False, metadata=None):
        """Encode and stage new documents (visible after :meth:`commit`); an id already in the index is an error
        unless ``upsert``. ``metadata``: one mapping a document, with ``ids``/``texts`` (documents carry their own)."""
        return self.writer().add(documents_from(documents=documents, ids=ids, texts=texts, titles=titles,
                                                metadata=metadata),
                                 upsert=upsert, batch_size=self.manifest.build.get("batch_size", 32))

    def upsert(self, ids: Iterable | None = None, texts: Iterable[str] | None = None,
               titles: Iterable[str] | None = None, documents: Iterable[Document | Mapping] | None = None,
               metadata=None):
        """Add or replace documents; a document whose title, text and metadata are unchanged is left as it is (not
        re-encoded)."""
        return self.add(ids, texts, titles, documents, upsert=True, metadata=metadata)

    def delete(self, ids: Iterable[str]):
        """Stage deletes; ids not in the index come back in the summary's ``unknown``."""
        return self.writer().delete([ids] if isinstance(ids, str) else ids)

    def widen_schema(self, fields: Mapping[str, str] | Sequence[str]):
        """Add metadata fields, or widen existing ones (integer -> float, keyword -> keywords); committed at once."""
        self.writer().widen_schema(Schema.parse(fields).fields)
        return self.commit()

    def commit(self, operation: str | None = None):
        """Publish every staged write as the next generation (durably), serve it, and release the write lock.
        ``operation``: what the generation records it was made by (default: the counts)."""
        if self._writer is None:
            from lsr.index.writer import WriteSummary

            return WriteSummary(generation=self.generation)
        try:
            summary = self._writer.commit(operation)
        finally:
            self._writer.close()
            self._writer = None
            self.refresh()  # also when a mirror failed after the index committed: serve what is committed
        self.collect_garbage()
        return summary

    def rollback(self) -> None:
        """Drop every staged write and release the write lock."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def merge(self, max_segments: int | None = None, policy=None, wait: float = 0.0):
        """Merge segments (dropping deleted documents): down to ``max_segments`` (1: one segment), or as the
        tiered ``policy`` (default :class:`~lsr.index.merge.TieredMergePolicy`) asks; then serve the result."""
        writer = self.writer(wait)
        try:
            summary = writer.merge(max_segments=max_segments, policy=policy)
        finally:
            writer.close()
            self._writer = None
        self.refresh()
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
        except OSError:  # a read-only index (a mounted volume), or a disk error: garbage stays for the next writer
            return []
        finally:
            lock.release()

    def close(self) -> None:
        self.rollback()
        if self._snapshot is not None:
            self._snapshot.release()
