"""A snapshot: one published generation of an index as a reader sees it, its segments opened and pinned.

Readers (the :class:`~lsr.index.reader.Index` handle, the builder's Lucene export, a commit listener) all open the
current generation the same way: :func:`open_snapshot` reads ``CURRENT``, takes a shared lock on the generation file
(a pin: garbage collection leaves its segments alone while it is held) and opens every segment with the deletes that
generation names. Readers never write.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from lsr.errors import InvalidIndex, Unavailable
from lsr.index import storage
from lsr.index.segment import SegmentView, open_segment


class Snapshot:
    """One generation of an index, pinned (its files stay on disk) while referenced. ``index`` is the handle that
    opened it (None for a bare snapshot: builds and listeners)."""

    def __init__(self, index, generation: storage.Generation, views: list[SegmentView],
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

    @property
    def clipped_postings(self) -> int:
        """Impacts above the index's quantization maximum, stored as 255 (a merge keeps its sources' count)."""
        return sum(view.segment.info.clipped_postings for view in self.views)

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
        """The stored ``{"id", "title", "text"}`` of a live document (None: unknown id)."""
        found = self.find(doc_id)
        if found is None:
            return None
        view, local = found
        if view.segment.texts is None:
            raise Unavailable("this index stores no texts; rebuild it with `lsr index ... --store-documents` "
                              "(store_documents=True)")
        return view.segment.texts.get(local)

    def metadata(self, doc_id: str) -> dict | None:
        """The metadata of a live document (``{}`` when it has none; None: unknown id)."""
        found = self.find(doc_id)
        if found is None:
            return None
        view, local = found
        schema = getattr(self.index, "schema", None)
        return view.segment.metadata.record(local, schema.fields if schema is not None else None)

    def release(self) -> None:
        if self._pin is not None:
            self._pin.release()
            self._pin = None


def generation_token(path: Path):
    """What identifies a published generation: the generation file's name and inode (a rebuilt index reuses names)."""
    stat = path.stat() if path.exists() else None
    return (path.name, stat.st_ino if stat else None, stat.st_mtime_ns if stat else None)


def open_views(directory: Path, generation: storage.Generation, mmap: bool = True) -> list[SegmentView]:
    """The segments of ``generation``, each with the deletes that generation names."""
    views = []
    for entry in generation.segments:
        segment = open_segment(directory / storage.SEGMENTS / entry.name, mmap)
        views.append(SegmentView(segment, segment.deletes(entry.deletes, entry.deletes_crc32), entry.deleted, entry.deletes))
    return views


def open_snapshot(directory: Path, index=None, mmap: bool = True, known_token=None) -> Snapshot | None:
    """The published generation of ``directory``, pinned; None when its token is ``known_token`` (unchanged)."""
    for _ in range(20):  # a writer may publish (and collect the old file) between our two reads: read again
        path = storage.current_generation_file(directory)
        token = generation_token(path)
        if known_token is not None and token == known_token:
            return None
        try:
            pin = storage.Pin(path)
        except FileNotFoundError:
            continue
        if generation_token(path) != token:
            pin.release()
            continue
        generation = storage.Generation.read(path)
        return Snapshot(index, generation, open_views(directory, generation, mmap), pin, token)
    raise InvalidIndex(f"{directory}: the current generation kept changing while opening it; try again")
