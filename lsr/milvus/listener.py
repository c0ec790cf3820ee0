"""The ``milvus`` commit listener: what the index's writer calls when the index records a Milvus mirror
(``milvus.json``): catch up when the writer opens, refuse ids Milvus cannot key, follow each published generation.
Its failures leave the native generation committed; the next writer reconciles."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from lsr.errors import InvalidInput
from lsr.index.listeners import Published
from lsr.index.manifest import Manifest
from lsr.milvus.collection import ID_MAX, KEYWORDS_MAX, STATE, Mirror, current_views, metadata_fields


class MilvusListener:
    name = "milvus"
    options = {"uri": "milvus_uri"}  # the server's LSR_MILVUS_URI, `--milvus-uri`: the recorded collection elsewhere

    def __init__(self, directory: Path, manifest, uri: str | None = None) -> None:
        self.mirror = Mirror.load(directory, uri=uri)
        self.manifest = manifest
        described = self.mirror.check(manifest)
        self.dense = self.mirror.has_dense(described)
        if not self.mirror.schema_current(described, manifest):
            self.mirror.recreate(manifest)
        self.mirror.ensure_loaded()

    @classmethod
    def attach(cls, directory: Path, manifest, uri: str | None = None) -> MilvusListener | None:
        if not (Path(directory) / STATE).exists():
            return None
        return cls(directory, manifest, uri)

    @classmethod
    def check(cls, directory: Path, manifest, generation: int, documents: int, uri: str | None = None) -> dict | None:
        """For ``lsr index check``, read-only: the collection's row count and generation against the index's."""
        if not (Path(directory) / STATE).exists():
            return None
        mirror = Mirror.load(directory, uri=uri)
        found = {"uri": mirror.uri, "collection": mirror.collection, "generation": mirror.generation}
        problems = []
        try:
            found["documents"] = mirror.count()
        except Exception as exc:  # noqa: BLE001 - whatever the client raised: reported, not fatal to the check
            problems.append(f"cannot be counted: {str(exc).strip()[:200]}")
        else:
            if found["documents"] != documents:
                problems.append(f"holds {found['documents']} rows, the index {documents} live documents")
        if mirror.generation != generation:
            problems.append(f"follows generation {mirror.generation}, the index is at {generation} (the next writer "
                            "brings it up to date: `lsr index milvus --index DIR`)")
        return {**found, "problems": problems}

    def describe(self) -> str:
        return f"Milvus ({self.mirror.uri}, collection {self.mirror.collection!r})"

    def opened(self, writer) -> None:
        """Reconcile when the collection does not hold the index's current generation (a writer died between its
        publication and Milvus)."""
        number, views = current_views(self.mirror.directory)
        if self.mirror.generation != number:
            self._reconcile(number, views, self.manifest)

    def check_document(self, doc_id: str, metadata: Mapping) -> None:
        if len(doc_id.encode()) > ID_MAX:
            raise InvalidInput(f"document id {doc_id[:40]!r}... is {len(doc_id.encode())} bytes; this index is "
                               f"mirrored in Milvus, whose keys hold at most {ID_MAX} bytes: shorten the id")
        for name, value in metadata.items():
            if isinstance(value, list) and len(value) > KEYWORDS_MAX:
                raise InvalidInput(f"document {doc_id!r}: metadata field {name!r} holds {len(value)} values; this index "
                                   f"is mirrored in Milvus, whose arrays hold at most {KEYWORDS_MAX}")

    def published(self, event: Published) -> None:
        number, views = current_views(self.mirror.directory)
        manifest = Manifest.load(self.mirror.directory)
        if event.schema is not None:  # new fields or types: Milvus Lite cannot alter a collection, so build it anew
            self.mirror.recreate(manifest)
            self.mirror.ensure_loaded()
        if self.mirror.generation != event.previous:
            self._reconcile(number, views, manifest)
            return
        added = [] if event.moved else list(event.added)  # a merge rewrites documents Milvus already holds
        self.mirror.push(views, manifest.scale, added, list(event.deleted_ids), self.dense, metadata_fields(manifest))
        self.mirror.record(number)

    def _reconcile(self, number: int, views, manifest) -> None:
        self.mirror.reconcile(number, views, manifest.scale, self.dense, fields=metadata_fields(manifest))
