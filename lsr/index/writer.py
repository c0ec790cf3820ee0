"""Writing to a live index: adds, replaces (upserts) and deletes, committed as a new generation; merges.

One :class:`IndexWriter` at a time holds ``write.lock``; it is the only way to write, from Python
(:meth:`lsr.index.reader.Index.writer`), the CLI and HTTP alike, and a bulk build is its fast path
(:mod:`lsr.index.builder`). Operations accumulate until :meth:`IndexWriter.commit`, which publishes them together (all
or nothing) as the next generation: new documents as one new segment, deletes as new deletes files of the segments
they hit. A replace whose title, text and metadata hash like the live document's is a no-op (nothing is re-encoded).
Before ``commit`` returns, every file it wrote is on disk (fsync), so a committed write survives a crash; what was not
committed is gone, and the previous generation is intact. A write that fails while staging (a document whose metadata
does not fit the schema, say) drops everything staged since the last commit.

Metadata is checked against the index's schema before anything is encoded; an index without a schema takes the
types its first documents with metadata suggest, fixed at that commit (:mod:`lsr.index.metadata`). What else follows
the index (a Milvus mirror, a Lucene part) is a commit listener (:mod:`lsr.index.listeners`): the writer imports none.
"""

from __future__ import annotations

import functools
import itertools
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lsr.corpus import Document
from lsr.errors import BackendUnavailable, InvalidInput, LsrError, StorageError, Unavailable, storage_error
from lsr.index import files, storage
from lsr.index.encoding import EncodedChunk, content_hash, encode_chunk  # noqa: F401  (re-exported)
from lsr.index.files import fault_point
from lsr.index.listeners import Published, attach_listeners
from lsr.index.manifest import Manifest
from lsr.index.metadata import Schema
from lsr.index.segment import DEFAULT_BOUND_RATIO, effective_block_size, open_segment
from lsr.index.segment_writer import Batch, SegmentWriter, write_segment
from lsr.sparse import SparseBatch


def _storage_errors(what: str):
    """An ``OSError`` of the disk (EIO, ENOSPC) raised by a write becomes :class:`~lsr.errors.StorageError` (or
    :class:`~lsr.errors.DiskFull`) saying which generation the index is at."""

    def wrap(method):
        @functools.wraps(method)
        def run(self, *args, **kwargs):
            before = self.base.number  # (_publish moves self.base on: compare with the generation at the start)
            try:
                return method(self, *args, **kwargs)
            except LsrError:
                raise
            except OSError as exc:
                current = storage.current_name(self.directory) or ""
                found = re.match(r"^gen-(\d+)\.json$", current)
                number = int(found.group(1)) if found else None
                if number is not None and number > before:  # past the commit point: committed
                    raise StorageError(f"{what} is committed as generation {number}, but a step after the commit "
                                       f"point failed: {exc.strerror or exc} ({exc.filename}); the next writer "
                                       "finishes what it left") from exc
                raise storage_error(exc, what, before) from exc
        return run
    return wrap


CHUNK_DOCUMENTS = 2048  # documents encoded (and spooled) at a time


@dataclass
class WriteSummary:
    added: int = 0
    replaced: int = 0
    unchanged: int = 0  # replaces whose text was the same: nothing re-encoded, nothing written
    deleted: int = 0
    unknown: list[str] = field(default_factory=list)  # ids a delete did not find
    truncated: int = 0  # documents cut at the encoder's window (no chunking)
    clipped: int = 0  # weights above the index's max_weight (stored as 255)
    generation: int | None = None
    seconds: float = 0.0

    def merge(self, other: WriteSummary) -> None:
        for name in ("added", "replaced", "unchanged", "deleted", "truncated", "clipped"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.unknown += other.unknown


class IndexWriter:
    """The write side of an index directory. ``encoder`` (sparse) and ``dense_encoder`` encode new documents; they
    default to the ones stored with the index. ``wait``: seconds to wait for another writer's lock.
    ``listener_options``: per commit listener (:mod:`lsr.index.listeners`), its options."""

    def __init__(self, directory: str | Path, encoder=None, dense_encoder=None, wait: float = 0.0,
                 listener_options: Mapping[str, Mapping] | None = None) -> None:
        self.directory = Path(directory)
        self.manifest = Manifest.load(self.directory)
        self.lock = storage.WriteLock(self.directory, wait=wait)
        try:
            storage.remove_leftovers(self.directory)
            self.base = storage.Generation.read(storage.current_generation_file(self.directory))
            # segments a crashed commit renamed into place but never published, generations no reader holds
            storage.collect_garbage(self.directory, self.base)
            self.listeners = attach_listeners(self.directory, self.manifest, listener_options)
            for listener in self.listeners:
                listener.opened(self)
        except BaseException:
            self.lock.release()
            raise
        self.schema: Schema | None = Schema.from_manifest(self.manifest.metadata)
        self._schema_changed = False
        self.encoder, self.dense_encoder = encoder, dense_encoder
        self._pending: SegmentWriter | None = None
        self._pending_ids: dict[str, int] = {}  # id -> document number in the pending segment
        self._superseded: set[int] = set()  # pending documents replaced again before the commit
        self._tombstones: dict[str, set[int]] = {}  # segment name -> local documents to delete
        self._summary = WriteSummary()
        self._views = {entry.name: (open_segment(self.directory / storage.SEGMENTS / entry.name),
                                    entry) for entry in self.base.segments}

    # -- what is live --------------------------------------------------------------------------------------------
    def _live(self, doc_id: str) -> tuple[str, int] | None:
        """(segment, local document) of the committed, not-yet-deleted copy of ``doc_id``."""
        for name, (segment, entry) in reversed(self._views.items()):
            local = segment.local_of(doc_id)
            if local is None:
                continue
            deleted = segment.deletes(entry.deletes, entry.deletes_crc32)
            if (deleted is None or not deleted[local]) and local not in self._tombstones.get(name, ()):
                return name, local
        return None

    # -- operations ----------------------------------------------------------------------------------------------------
    @_storage_errors("the add")
    def add(self, documents: Iterable[Document], upsert: bool = False, batch_size: int = 32,
            progress=None, encode_chunks=None) -> WriteSummary:
        """Encode and stage ``documents`` (streamed, a chunk of ``chunk_documents`` at a time). A document whose id is
        live: an error (``upsert=False``), else replaced, or kept as it is when its title and text are unchanged. An
        id twice in one call is an error.

        ``encode_chunks``: another way to encode, e.g. a Ray cluster (:mod:`lsr.indexer.distributed`): it takes a
        list of chunks (lists of documents) and yields, in the same order, each chunk's :class:`EncodedChunk`. The
        chunks are the ones this process would encode, so the vectors are the same. It is given ``window`` chunks at
        a time (its ``window`` attribute; all of them when it has none), so memory holds one window's texts."""
        summary = WriteSummary()
        try:
            planned = self._plan(documents, upsert, summary)
            if encode_chunks is None:
                for staged in planned:
                    self._stage_encoded(staged, self._encode([d for d, _, _ in staged], batch_size, progress), summary)
            else:
                window = getattr(encode_chunks, "window", None) or 0
                chunks: list = []
                for staged in planned:
                    chunks.append(staged)
                    if len(chunks) == window:
                        self._stage_window(chunks, encode_chunks, summary)
                        chunks = []
                if chunks:
                    self._stage_window(chunks, encode_chunks, summary)
        except BaseException:
            self.rollback()  # nothing of a failed write stays staged (a half-staged batch must not be committed)
            raise
        self._summary.merge(summary)
        return summary

    def _plan(self, documents: Iterable[Document], upsert: bool, summary: WriteSummary):
        """The documents to encode, in chunks of (document, content hash, normalized metadata); counts and
        tombstones as it goes. Metadata is checked against the schema (inferred from the first chunk that carries
        some, on an index without one) before any document of the chunk is staged."""
        seen: set[str] = set()
        size = self.manifest.build.get("chunk_documents", CHUNK_DOCUMENTS)
        documents = iter(documents)
        while True:
            raw = list(itertools.islice(documents, size))
            if not raw:
                return
            normalized = self._normalize(raw)
            staged = [item for item in self._plan_chunk(raw, normalized, upsert, summary, seen)]
            if staged:
                yield staged

    def _normalize(self, documents: list[Document]) -> list[dict]:
        with_metadata = [(d.id, d.metadata) for d in documents if d.metadata]
        if with_metadata and (self.schema is None or self.schema.open):
            self.schema = Schema.infer(with_metadata) if self.schema is None else self.schema.complete(with_metadata)
            self._schema_changed = True
        normalized = [self.schema.normalize(d.id, d.metadata) if d.metadata else {} for d in documents]
        for document, values in zip(documents, normalized):
            for listener in self.listeners:
                listener.check_document(document.id, values)
        return normalized

    def _plan_chunk(self, documents: list[Document], normalized: list[dict], upsert: bool, summary: WriteSummary,
                    seen: set[str]):
        for document, metadata in zip(documents, normalized):
            if document.id in seen:
                raise InvalidInput(f"document id {document.id!r} appears twice in one write; send it once")
            seen.add(document.id)
            digest = content_hash(document.title, document.text, metadata)
            pending = self._pending_ids.get(document.id)
            live = self._live(document.id) if pending is None else None
            if (pending is not None or live is not None) and not upsert:
                raise InvalidInput(f"document {document.id!r} is already in the index; replace it with upsert "
                                   "(PUT /documents/{id}, `lsr index add`) or delete it first")
            if live is not None:
                segment, _ = self._views[live[0]]
                if bytes(np.asarray(segment.hashes[live[1]])) == digest:
                    summary.unchanged += 1
                    continue
                self._tombstones.setdefault(live[0], set()).add(live[1])
                summary.replaced += 1
            elif pending is not None:
                self._superseded.add(pending)
                summary.replaced += 1
            else:
                summary.added += 1
            yield document, digest, metadata

    def _stage_window(self, chunks: list, encode_chunks, summary: WriteSummary) -> None:
        encoded = encode_chunks([[d for d, _, _ in staged] for staged in chunks])
        for staged, chunk in zip(chunks, encoded, strict=True):
            self._stage_encoded(staged, chunk, summary)

    def _stage_encoded(self, staged: list[tuple[Document, bytes, dict]], chunk: EncodedChunk,
                       summary: WriteSummary) -> None:
        documents = [d for d, _, _ in staged]
        if len(chunk.rows) != (len(documents) if chunk.row_doc is None else len(chunk.row_doc)):
            raise InvalidInput("an encoded chunk does not match its documents (rows); the encoder is broken")
        summary.truncated += chunk.truncated
        self._stage(Batch(ids=[d.id for d in documents], hashes=np.frombuffer(b"".join(h for _, h, _ in staged),
                                                                             np.uint8).reshape(-1, 16),
                          rows=chunk.rows, row_doc=chunk.row_doc, chunks=chunk.chunks,
                          titles=[d.title for d in documents], texts=[d.text for d in documents], dense=chunk.dense,
                          analyzed=self._analyze(documents), truncated=chunk.truncated,
                          metadata=[m for _, _, m in staged]))

    @_storage_errors("the add")
    def add_vectors(self, vectors: SparseBatch, ids: Sequence[str], documents: Sequence[Document] | None = None,
                    dense: np.ndarray | None = None) -> WriteSummary:
        """Stage precomputed sparse vectors (one a document) with their ids (and texts, for the other parts)."""
        summary = WriteSummary()
        ids = [str(i) for i in ids]
        if len(set(ids)) != len(ids):
            raise InvalidInput("document ids must be unique")
        for doc_id in ids:
            if doc_id in self._pending_ids or self._live(doc_id) is not None:
                raise InvalidInput(f"document {doc_id!r} is already in the index; delete it first")
        documents = list(documents) if documents is not None else [Document(i, "", "") for i in ids]
        if [d.id for d in documents] != ids:
            raise InvalidInput("the documents given with the vectors must have the vectors' ids, in the same order")
        if self.manifest.chunking:
            raise InvalidInput("a chunked index encodes its documents itself; add texts, not vectors")
        try:
            self._stage_vectors(vectors, ids, documents, dense)
        except BaseException:
            self.rollback()  # as in add(): nothing of a failed write stays staged, its inferred schema neither
            raise
        summary.added = len(ids)
        self._summary.merge(summary)
        return summary

    def _stage_vectors(self, vectors: SparseBatch, ids: list[str], documents: list[Document], dense) -> None:
        metadata = self._normalize(documents)
        hashes = np.frombuffer(b"".join(content_hash(d.title, d.text, m) for d, m in zip(documents, metadata)),
                               np.uint8).reshape(-1, 16)
        step = self.manifest.build.get("chunk_documents", CHUNK_DOCUMENTS)
        for start in range(0, len(ids), step):
            part = slice(start, start + step)
            rows = vectors.take(range(start, min(len(ids), start + step)))
            embeddings = dense[part] if dense is not None else None
            if self.manifest.dense and embeddings is None:
                embeddings = self._encoders(sparse=False)[1].encode_documents([d.contents for d in documents[part]])
            self._stage(Batch(ids=ids[part], hashes=hashes[part], rows=rows,
                              titles=[d.title for d in documents[part]], texts=[d.text for d in documents[part]],
                              dense=embeddings, analyzed=self._analyze(documents[part]), metadata=metadata[part]))

    @_storage_errors("the delete")
    def delete(self, ids: Iterable[str]) -> WriteSummary:
        """Stage deletes; an id that is not in the index is counted in ``unknown`` (nothing fails)."""
        summary = WriteSummary()
        for doc_id in dict.fromkeys(str(i) for i in ids):
            pending = self._pending_ids.pop(doc_id, None)
            if pending is not None:
                self._superseded.add(pending)
            live = self._live(doc_id)
            if live is not None:
                self._tombstones.setdefault(live[0], set()).add(live[1])
            if pending is None and live is None:
                summary.unknown.append(doc_id)
            else:
                summary.deleted += 1
        self._summary.merge(summary)
        return summary

    # -- encoding -----------------------------------------------------------------------------------------------------
    def _encoders(self, sparse: bool = True):
        if self.encoder is None and sparse:
            from lsr.encoders import load_encoder

            stored = self.manifest.encoder.get("directory")
            if stored is None:
                raise Unavailable("this index was built from bare vectors: add vectors (add_vectors), not texts")
            self.encoder = load_encoder(self.directory / stored)
        if self.manifest.dense and self.dense_encoder is None:
            from lsr.encoders import load_encoder

            self.dense_encoder = load_encoder(self.directory / self.manifest.dense["directory"])
        return self.encoder, self.dense_encoder

    def _analyze(self, documents: Sequence[Document]):
        if not self.manifest.bm25:
            return None
        from lsr.index.lexical import Analyzer

        return Analyzer()([d.contents for d in documents])

    def _encode(self, documents: list[Document], batch_size: int, progress) -> EncodedChunk:
        encoder, dense_encoder = self._encoders()
        return encode_chunk(encoder, dense_encoder, self.manifest, [d.contents for d in documents], batch_size, progress)

    def _stage(self, batch: Batch) -> None:
        if self._pending is None:
            number = self.base.next_segment
            build = self.manifest.build
            self._pending = SegmentWriter(self.directory / storage.SEGMENTS / f".tmp-spool-{number:06d}",
                                          self.manifest.vocab_size, self.manifest.impact_dtype,
                                          effective_block_size(build["block_size"]),
                                          build["dense_ratio"], (self.manifest.dense or {}).get("index"),
                                          bool(self.manifest.bm25), bool(self.manifest.documents),
                                          chunked=bool(self.manifest.chunking),
                                          bound_ratio=build.get("bound_ratio", DEFAULT_BOUND_RATIO))
        self._pending.schema = self.schema
        first = self._pending.documents
        self._pending.add(batch)
        for offset, doc_id in enumerate(batch.ids):
            self._pending_ids[doc_id] = first + offset

    # -- publishing ----------------------------------------------------------------------------------------------------
    @property
    def has_changes(self) -> bool:
        return self._pending is not None or any(self._tombstones.values()) or self._schema_changed

    def widen_schema(self, fields: Mapping[str, str]) -> Schema:
        """Add metadata fields or widen existing ones (:meth:`Schema.widen`); published by the next commit (segments
        keep their columns and are read as the wider types)."""
        self.schema = (self.schema or Schema()).widen(fields)
        self._schema_changed = True
        if self._pending is not None:
            self._pending.schema = self.schema
        return self.schema

    @_storage_errors("the commit")
    def commit(self, operation: str | None = None) -> WriteSummary:
        """Publish every staged operation as the next generation (nothing staged: nothing written)."""
        started = time.perf_counter()
        summary, self._summary = self._summary, WriteSummary()
        if not self.has_changes:
            summary.generation = self.base.number
            return summary
        number = self.base.number + 1
        entries = []
        for entry in self.base.segments:
            segment, _ = self._views[entry.name]
            dead = self._tombstones.get(entry.name)
            if dead:
                flags = segment.deletes(entry.deletes, entry.deletes_crc32)
                flags = np.zeros(segment.info.documents, dtype=np.uint8) if flags is None else flags.astype(np.uint8)
                flags[list(dead)] = 1
                entry = self._write_deletes(segment.directory, number, flags)
            if entry.deleted < segment.info.documents:  # a segment with no live document leaves the generation
                entries.append(entry)
        next_segment = self.base.next_segment
        self.manifest.upgrade(self.directory)
        if self._schema_changed:  # the schema the new documents were checked against, before the commit point
            previous = self.manifest.metadata
            self.manifest.metadata = self.schema.to_manifest()
            self.manifest.save(self.directory)
            try:
                return self._commit(summary, number, entries, next_segment, operation, started)
            except BaseException:
                if self.base.number != number:  # not published: the manifest keeps the schema of the last commit
                    self.manifest.metadata = previous
                    self.manifest.save(self.directory)
                    self._schema_changed = True
                raise
        return self._commit(summary, number, entries, next_segment, operation, started)

    def _commit(self, summary: WriteSummary, number: int, entries: list, next_segment: int, operation: str | None,
                started: float) -> WriteSummary:
        if self._pending is not None:
            name = storage.segment_name(next_segment)
            if self.manifest.scale is None:  # the first documents of the index fix its quantization
                headroom = float(self.manifest.build.get("first_write_headroom", 1.0))  # (an index created empty)
                self.manifest.max_weight = (self._pending.max_weight or 1.0) * headroom
                self.manifest.scale = (255.0 / self.manifest.max_weight if self.manifest.impact_dtype == "uint8"
                                       else 1.0)
                self.manifest.save(self.directory)
            info = write_segment(self._pending, self.directory, name, self.manifest.scale)
            summary.clipped = info.clipped_postings
            fault_point("segment-written")
            deleted = sorted(self._superseded)
            entry = storage.SegmentEntry(name)
            if deleted:
                flags = np.zeros(info.documents, dtype=np.uint8)
                flags[deleted] = 1
                entry = self._write_deletes(self.directory / storage.SEGMENTS / name, number, flags)
            if entry.deleted < info.documents:
                entries.append(entry)
            next_segment += 1
        fault_point("deletes-written")
        deleted_ids = self._deleted_ids()
        live = sum(self._segment_documents(e) - e.deleted for e in entries)
        default = f"add {summary.added}, replace {summary.replaced}, delete {summary.deleted}"
        if self._schema_changed and not summary.added and not summary.replaced and not summary.deleted:
            default = f"schema: {self.schema.describe()}"
        generation = storage.Generation(number, entries, next_segment, live, operation or default)
        schema = self.schema if self._schema_changed else None
        self._schema_changed = False
        self._publish(generation, added=[e.name for e in entries if e.name not in self._views], deleted_ids=deleted_ids,
                      schema=schema)
        summary.generation = number
        summary.seconds = time.perf_counter() - started
        return summary

    def _segment_documents(self, entry: storage.SegmentEntry) -> int:
        if entry.name in self._views:
            return self._views[entry.name][0].info.documents
        return open_segment(self.directory / storage.SEGMENTS / entry.name).info.documents

    @staticmethod
    def _write_deletes(segment_directory: Path, number: int, flags: np.ndarray) -> storage.SegmentEntry:
        """Generation ``number``'s deletes file of a segment, durably; its entry (with the file's checksum)."""
        import io
        import zlib

        name = f"del-{number:06d}.npy"
        buffer = io.BytesIO()
        np.save(buffer, flags, allow_pickle=False)
        data = buffer.getvalue()
        files.write_durably(segment_directory / name, data)
        return storage.SegmentEntry(segment_directory.name, name, int(flags.sum()), zlib.crc32(data))

    def _deleted_ids(self) -> list[str]:
        """The ids whose live version this commit deletes and does not add again."""
        out = []
        for name, locals_ in self._tombstones.items():
            ids = self._views[name][0].ids
            out += [str(ids[local]) for local in sorted(locals_) if str(ids[local]) not in self._pending_ids]
        return out

    def _publish(self, generation: storage.Generation, added: Sequence[str] = (), deleted_ids: Sequence[str] = (),
                 moved: bool = False, schema: Schema | None = None) -> None:
        """Make ``generation`` the current one; then tell every listener (a mirror deletes ``deleted_ids`` and
        upserts the documents of the ``added`` segments; a merge's segments hold documents already there)."""
        previous = self.base.number
        storage.publish(self.directory, generation)
        self.base = generation
        self._views = {e.name: (open_segment(self.directory / storage.SEGMENTS / e.name), e)
                       for e in generation.segments}
        self._pending, self._pending_ids, self._superseded, self._tombstones = None, {}, set(), {}
        try:
            storage.collect_garbage(self.directory, generation)
        except OSError:  # committed already; what could not be removed now, the next writer removes
            pass
        event = Published(self.directory, self.manifest, previous, generation, list(added), list(deleted_ids),
                          generation.operation, moved, schema)
        for listener in self.listeners:
            fault_point(f"published-before-{listener.name}")
            try:
                listener.published(event)
            except Exception as exc:  # noqa: BLE001 - whatever the listener raised, the index is committed
                if getattr(listener, "critical", False):
                    raise
                where = listener.describe() if hasattr(listener, "describe") else listener.name
                raise BackendUnavailable(f"generation {generation.number} is committed to {self.directory}, but "
                                         f"{where} did not take it: {str(exc).strip()[:300]}; the next write brings it "
                                         "up to date") from exc

    @_storage_errors("the merge")
    def merge(self, max_segments: int | None = None, policy=None):
        """Merge segments (:func:`lsr.index.merge.merge`): down to ``max_segments``, or as the tiered ``policy``
        asks; published at once."""
        from lsr.index.merge import merge

        return merge(self, max_segments=max_segments, policy=policy)

    def rollback(self) -> None:
        """Drop every staged operation."""
        if self._pending is not None:
            try:
                files.remove(self._pending.spool, missing_ok=True)
            except OSError:  # best effort: the next writer removes what is left (and the first error is the answer)
                pass
        self._pending, self._pending_ids, self._superseded, self._tombstones = None, {}, set(), {}
        self._summary = WriteSummary()
        self.schema = Schema.from_manifest(self.manifest.metadata)
        self._schema_changed = False

    def close(self) -> None:
        try:
            self.rollback()
        finally:
            self.lock.release()

    def __enter__(self) -> IndexWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

