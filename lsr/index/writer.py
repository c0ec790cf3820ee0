"""Writing to a live index: adds, replaces (upserts) and deletes, committed as a new generation; merges.

One :class:`IndexWriter` at a time holds ``write.lock``. Operations accumulate until :meth:`IndexWriter.commit`,
which publishes them together (all or nothing) as the next generation: new documents as one new segment, deletes as
new deletes files of the segments they hit. A replace whose title and text hash like the live document's is a no-op
(nothing is re-encoded). Before ``commit`` returns, every file it wrote is on disk (fsync), so a committed write
survives a crash; what was not committed is gone, and the previous generation is intact.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lsr.corpus import Document
from lsr.errors import BackendUnavailable, InvalidInput, Unavailable
from lsr.index import storage
from lsr.index.files import fault_point, fsync_directory, fsync_tree, write_durably
from lsr.index.manifest import Manifest
from lsr.index.segment import DEFAULT_BOUND_RATIO, effective_block_size, open_segment
from lsr.index.segment_writer import Batch, SegmentWriter
from lsr.sparse import SparseBatch

CHUNK_DOCUMENTS = 2048  # documents encoded (and spooled) at a time


def content_hash(title: str, text: str) -> bytes:
    """16 bytes of blake2b over the stored fields: equal hashes mean an unchanged document."""
    return hashlib.blake2b(f"{title}\x00{text}".encode(), digest_size=16).digest()


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
    """Encode one chunk of texts as the index's build options say (chunking, static pruning, dense part): what every
    writer, local or distributed, does with a chunk."""
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


class IndexWriter:
    """The write side of an index directory. ``encoder`` (sparse) and ``dense_encoder`` encode new documents; they
    default to the ones stored with the index. ``wait``: seconds to wait for another writer's lock."""

    def __init__(self, directory: str | Path, encoder=None, dense_encoder=None, wait: float = 0.0,
                 milvus_uri: str | None = None) -> None:
        self.directory = Path(directory)
        self.manifest = Manifest.load(self.directory)
        self.lock = storage.WriteLock(self.directory, wait=wait)
        try:
            storage.remove_leftovers(self.directory)
            self.base = storage.Generation.read(storage.current_generation_file(self.directory))
            # segments a crashed commit renamed into place but never published, generations no reader holds
            storage.collect_garbage(self.directory, self.base)
            self._mirror = None
            if (self.directory / "milvus.json").exists():  # the index's vectors are mirrored in a Milvus collection
                from lsr.milvus import WriteMirror

                self._mirror = WriteMirror(self.directory, self.manifest, milvus_uri)
                self._mirror.catch_up()
        except BaseException:
            self.lock.release()
            raise
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
            deleted = segment.deletes(entry.deletes)
            if (deleted is None or not deleted[local]) and local not in self._tombstones.get(name, ()):
                return name, local
        return None

    # -- operations ----------------------------------------------------------------------------------------------------
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
        planned = self._plan(documents, upsert, summary)
        if encode_chunks is None:
            for staged in planned:
                self._stage_encoded(staged, self._encode([d for d, _ in staged], batch_size, progress), summary)
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
        self._summary.merge(summary)
        return summary

    def _plan(self, documents: Iterable[Document], upsert: bool, summary: WriteSummary):
        """The documents to encode, in chunks of (document, content hash); counts and tombstones as it goes."""
        seen: set[str] = set()
        staged: list[tuple[Document, bytes]] = []
        for document in documents:
            if document.id in seen:
                raise InvalidInput(f"document id {document.id!r} appears twice in one write; send it once")
            seen.add(document.id)
            self._check_id(document.id)
            digest = content_hash(document.title, document.text)
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
            staged.append((document, digest))
            if len(staged) == self.manifest.build.get("chunk_documents", CHUNK_DOCUMENTS):
                yield staged
                staged = []
        if staged:
            yield staged

    def _stage_window(self, chunks: list, encode_chunks, summary: WriteSummary) -> None:
        encoded = encode_chunks([[d for d, _ in staged] for staged in chunks])
        for staged, chunk in zip(chunks, encoded, strict=True):
            self._stage_encoded(staged, chunk, summary)

    def _stage_encoded(self, staged: list[tuple[Document, bytes]], chunk: EncodedChunk, summary: WriteSummary) -> None:
        documents = [d for d, _ in staged]
        if len(chunk.rows) != (len(documents) if chunk.row_doc is None else len(chunk.row_doc)):
            raise InvalidInput("an encoded chunk does not match its documents (rows); the encoder is broken")
        summary.truncated += chunk.truncated
        self._stage(Batch(ids=[d.id for d in documents], hashes=np.frombuffer(b"".join(h for _, h in staged),
                                                                             np.uint8).reshape(-1, 16),
                          rows=chunk.rows, row_doc=chunk.row_doc, chunks=chunk.chunks,
                          titles=[d.title for d in documents], texts=[d.text for d in documents], dense=chunk.dense,
                          analyzed=self._analyze(documents), truncated=chunk.truncated))

    def add_vectors(self, vectors: SparseBatch, ids: Sequence[str], documents: Sequence[Document] | None = None,
                    dense: np.ndarray | None = None) -> WriteSummary:
        """Stage precomputed sparse vectors (one a document) with their ids (and texts, for the other parts)."""
        summary = WriteSummary()
        ids = [str(i) for i in ids]
        if len(set(ids)) != len(ids):
            raise InvalidInput("document ids must be unique")
        for doc_id in ids:
            self._check_id(doc_id)
            if doc_id in self._pending_ids or self._live(doc_id) is not None:
                raise InvalidInput(f"document {doc_id!r} is already in the index; delete it first")
        documents = list(documents) if documents is not None else [Document(i, "", "") for i in ids]
        if [d.id for d in documents] != ids:
            raise InvalidInput("the documents given with the vectors must have the vectors' ids, in the same order")
        hashes = np.frombuffer(b"".join(content_hash(d.title, d.text) for d in documents), np.uint8).reshape(-1, 16)
        if self.manifest.chunking:
            raise InvalidInput("a chunked index encodes its documents itself; add texts, not vectors")
        step = self.manifest.build.get("chunk_documents", CHUNK_DOCUMENTS)
        for start in range(0, len(ids), step):
            part = slice(start, start + step)
            rows = vectors.take(range(start, min(len(ids), start + step)))
            embeddings = dense[part] if dense is not None else None
            if self.manifest.dense and embeddings is None:
                embeddings = self._encoders(sparse=False)[1].encode_documents([d.contents for d in documents[part]])
            self._stage(Batch(ids=ids[part], hashes=hashes[part], rows=rows,
                              titles=[d.title for d in documents[part]], texts=[d.text for d in documents[part]],
                              dense=embeddings, analyzed=self._analyze(documents[part])))
        summary.added = len(ids)
        self._summary.merge(summary)
        return summary

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
        first = self._pending.documents
        self._pending.add(batch)
        for offset, doc_id in enumerate(batch.ids):
            self._pending_ids[doc_id] = first + offset

    # -- publishing ----------------------------------------------------------------------------------------------------
    @property
    def has_changes(self) -> bool:
        return self._pending is not None or any(self._tombstones.values())

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
                flags = segment.deletes(entry.deletes)
                flags = np.zeros(segment.info.documents, dtype=np.uint8) if flags is None else flags.astype(np.uint8)
                flags[list(dead)] = 1
                entry = storage.SegmentEntry(entry.name, self._write_deletes(segment.directory, number, flags),
                                             int(flags.sum()))
            if entry.deleted < segment.info.documents:  # a segment with no live document leaves the generation
                entries.append(entry)
        next_segment = self.base.next_segment
        if self._pending is not None:
            name = storage.segment_name(next_segment)
            if self.manifest.scale is None:  # the first documents of the index fix its quantization
                self.manifest.max_weight = self._pending.max_weight or 1.0
                self.manifest.scale = (255.0 / self.manifest.max_weight if self.manifest.impact_dtype == "uint8"
                                       else 1.0)
                self.manifest.save(self.directory)
            self.manifest.upgrade(self.directory)
            tmp = self.directory / storage.SEGMENTS / f".tmp-{name}"
            info = self._pending.write(tmp, name, self.manifest.scale)
            summary.clipped = info.clipped_postings
            fsync_tree(tmp)
            tmp.rename(self.directory / storage.SEGMENTS / name)
            fsync_directory(self.directory / storage.SEGMENTS)
            fault_point("segment-written")
            deleted = sorted(self._superseded)
            entry = storage.SegmentEntry(name)
            if deleted:
                flags = np.zeros(info.documents, dtype=np.uint8)
                flags[deleted] = 1
                entry = storage.SegmentEntry(name, self._write_deletes(self.directory / storage.SEGMENTS / name,
                                                                       number, flags), len(deleted))
            if entry.deleted < info.documents:
                entries.append(entry)
            next_segment += 1
        fault_point("deletes-written")
        deleted_ids = self._deleted_ids()
        live = sum(self._segment_documents(e) - e.deleted for e in entries)
        default = f"add {summary.added}, replace {summary.replaced}, delete {summary.deleted}"
        generation = storage.Generation(number, entries, next_segment, live, operation or default)
        self._publish(generation, added=[e.name for e in entries if e.name not in self._views], deleted_ids=deleted_ids)
        summary.generation = number
        summary.seconds = time.perf_counter() - started
        return summary

    def _segment_documents(self, entry: storage.SegmentEntry) -> int:
        if entry.name in self._views:
            return self._views[entry.name][0].info.documents
        return open_segment(self.directory / storage.SEGMENTS / entry.name).info.documents

    @staticmethod
    def _write_deletes(segment_directory: Path, number: int, flags: np.ndarray) -> str:
        import io

        name = f"del-{number:06d}.npy"
        buffer = io.BytesIO()
        np.save(buffer, flags, allow_pickle=False)
        write_durably(segment_directory / name, buffer.getvalue())
        return name

    def _check_id(self, doc_id: str) -> None:
        """An id the index takes but its Milvus mirror would refuse is refused before anything is written."""
        if self._mirror is not None:
            from lsr.milvus import ID_MAX

            if len(doc_id.encode()) > ID_MAX:
                raise InvalidInput(f"document id {doc_id[:40]!r}... is {len(doc_id.encode())} bytes; this index is "
                                   f"mirrored in Milvus, whose keys hold at most {ID_MAX} bytes: shorten the id")

    def _deleted_ids(self) -> list[str]:
        """The ids whose live version this commit deletes and does not add again."""
        out = []
        for name, locals_ in self._tombstones.items():
            ids = self._views[name][0].ids
            out += [str(ids[local]) for local in sorted(locals_) if str(ids[local]) not in self._pending_ids]
        return out

    def _publish(self, generation: storage.Generation, added: Sequence[str] = (),
                 deleted_ids: Sequence[str] = ()) -> None:
        """Make ``generation`` the current one; then a Milvus mirror deletes ``deleted_ids`` and upserts the
        documents of the ``added`` segments (a merge adds none: its documents are already there)."""
        previous = self.base.number
        storage.publish(self.directory, generation)
        self.base = generation
        self._views = {e.name: (open_segment(self.directory / storage.SEGMENTS / e.name), e)
                       for e in generation.segments}
        self._pending, self._pending_ids, self._superseded, self._tombstones = None, {}, set(), {}
        storage.collect_garbage(self.directory, generation)
        if self._mirror is not None:
            fault_point("published-before-milvus")
            try:
                self._mirror.published(previous, list(added), list(deleted_ids))
            except Exception as exc:  # noqa: BLE001 - whatever the client raised, the native part is committed
                raise BackendUnavailable(f"generation {generation.number} is committed to {self.directory}, but Milvus "
                                  f"({self._mirror.mirror.uri}) did not take it: {str(exc).strip()[:300]}; the next "
                                  "write (or `lsr index milvus --index DIR`) brings the collection up to date") from exc

    def rollback(self) -> None:
        """Drop every staged operation."""
        import shutil

        if self._pending is not None:
            shutil.rmtree(self._pending.spool, ignore_errors=True)
        self._pending, self._pending_ids, self._superseded, self._tombstones = None, {}, set(), {}
        self._summary = WriteSummary()

    def close(self) -> None:
        self.rollback()
        self.lock.release()

    def __enter__(self) -> IndexWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()
