"""Milvus as a home for an index's vectors: the ``milvus`` backend (extra ``lsr[milvus]``).

An lsr index directory stays the control plane (manifest, encoder, quantization scale, stored texts, BM25, search
defaults); :func:`attach` mirrors its documents into one Milvus collection: a ``VARCHAR`` primary key (the external
id), the content hash, a ``SPARSE_FLOAT_VECTOR`` (``SPARSE_INVERTED_INDEX``, inner product) holding the index's
impacts (stored / scale: Milvus ranks exactly what the native kernel ranks; with ``--impact-dtype float32`` these
are the encoder's weights) and, when the index has a dense encoder, a ``FLOAT_VECTOR`` (``FLAT``, inner product:
exact). The URI is a file path ending in ``.db`` (Milvus Lite, embedded in this process) or ``http://host:19530`` (a
Milvus server or cluster; the same client code).

Searches are exact by default (``drop_ratio_search`` 0); an approximate ``drop_ratio`` makes answers say
``exact: false``. The collection is created at consistency level ``Strong`` (read-your-writes: a committed write is
searched by the next request); on Milvus Lite every write is flushed (see :meth:`Mirror.flush`).

Metadata: each field of the index's schema is a nullable scalar field ``m_NAME`` (keyword: ``VARCHAR``, keywords:
``ARRAY`` of ``VARCHAR``, integer and datetime: ``INT64``, float: ``DOUBLE``, boolean: ``BOOL``), so a filter is a
Milvus boolean expression over them (:mod:`lsr.milvus.expressions`). A schema change recreates the collection from the
index (Milvus Lite cannot add fields; a type cannot change in place).

Writes: every commit of the live index (Python, ``lsr index add|delete``, the HTTP routes) first publishes the
native generation, then (the ``milvus`` commit listener, :mod:`lsr.milvus.listener`) deletes the removed ids from the
collection and upserts the new segment's documents, then records the generation in ``milvus.json``. A writer that
finds the collection behind (a process died between the two) reconciles it with the index (ids and content hashes
compared; nothing is re-encoded) before it writes.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from pathlib import Path

import numpy as np

from lsr.errors import BackendUnavailable, InvalidIndex, InvalidInput
from lsr.index import files
from lsr.index.metadata import Schema
from lsr.milvus.client import _Guarded, connect, disconnect, normalize_uri, require  # noqa: F401  (re-exported)

STATE = "milvus.json"  # {"uri", "collection", "generation"}: where the mirror is, which generation it holds
ID_MAX = 1024  # VARCHAR primary key length
TOPK_MAX = 16384  # Milvus's largest limit
PUSH_ROWS = 2000  # rows a Milvus call
FIELD_PREFIX = "m_"  # a metadata field NAME is the scalar field m_NAME of the collection
KEYWORDS_MAX = 1024  # values of a keywords field a document (Milvus ARRAY capacity)

def default_collection(directory: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", Path(directory).absolute().name) or "index"
    return f"lsr_{name}"[:255]


def identity(manifest) -> dict[str, str]:
    """The collection properties that say which index (encoders, quantization, metadata schema) it comes from."""
    schema = Schema.from_manifest(manifest.metadata)
    return {"lsr.encoder": str(manifest.encoder.get("identity")),
            "lsr.dense_encoder": str((manifest.dense or {}).get("encoder_identity")),
            "lsr.scale": repr(float(manifest.scale)) if manifest.scale is not None else "None",
            "lsr.impact_dtype": manifest.impact_dtype,
            "lsr.metadata": json.dumps(schema.fields if schema else {}, sort_keys=True)}


def _add_metadata_fields(schema, fields: dict[str, str]) -> None:
    from pymilvus import DataType

    for name, kind in fields.items():
        field = FIELD_PREFIX + name
        if kind == "keyword":
            schema.add_field(field, DataType.VARCHAR, max_length=1024, nullable=True)
        elif kind == "keywords":
            schema.add_field(field, DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=KEYWORDS_MAX,
                             max_length=1024, nullable=True)
        else:
            kinds = {"integer": DataType.INT64, "datetime": DataType.INT64, "float": DataType.DOUBLE,
                     "boolean": DataType.BOOL}
            schema.add_field(field, kinds[kind], nullable=True)


class Mirror:
    """The Milvus collection of one index directory."""

    def __init__(self, directory: Path, uri: str, collection: str, generation: int, timeout: float = 5.0,
                 index_id: str | None = None) -> None:
        self.directory = Path(directory)
        self.uri, self.collection, self.generation = normalize_uri(uri), collection, generation
        self.index_id = index_id or uuid.uuid4().hex  # which index folder owns the collection
        self.client = _Guarded(connect(self.uri, timeout), self.uri)

    # -- state ---------------------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, directory: Path, uri: str | None = None, collection: str | None = None,
             timeout: float = 5.0) -> Mirror | None:
        """The mirror recorded in ``directory/milvus.json`` (None when the index has none). ``uri`` overrides where to
        reach the recorded collection (the same server under another address, e.g. outside a compose network);
        writes always go where ``milvus.json`` says. Another ``collection`` than the recorded one is refused."""
        directory = Path(directory)
        path = directory / STATE
        if not path.exists():
            if uri is None:
                return None
            return cls(directory, uri, collection or default_collection(directory), -1, timeout)
        try:
            state = json.loads(path.read_text())
        except ValueError:
            raise InvalidIndex(f"{path} is not valid JSON; attach the index again: lsr index milvus --index "
                               f"{directory} --milvus-uri URI") from None
        if collection is not None and collection != state["collection"]:
            raise InvalidInput(f"{directory} is mirrored in Milvus collection {state['collection']!r} (milvus.json), "
                               f"not {collection!r}: its writes go there; drop --milvus-collection")
        recorded = state["uri"]
        if not re.match(r"^[a-z]+://", recorded) and not Path(recorded).is_absolute():
            recorded = str(directory.absolute() / recorded)  # a Lite file inside the index folder
        return cls(directory, uri or recorded, state["collection"], int(state["generation"]), timeout,
                   state.get("index_id"))

    def record(self, generation: int) -> None:
        self.generation = generation
        uri = self.uri
        if not re.match(r"^[a-z]+://", uri):  # a Lite file inside the index folder stays valid if the folder moves
            try:
                uri = str(Path(uri).relative_to(self.directory.absolute()))
            except ValueError:
                pass
        files.write_durably(self.directory / STATE, json.dumps({"uri": uri, "collection": self.collection,
                                                          "generation": generation, "index_id": self.index_id},
                                                         indent=2).encode())

    # -- the collection ------------------------------------------------------------------------------------------------
    def exists(self) -> bool:
        return bool(self.client.has_collection(self.collection))

    def check(self, manifest) -> dict:
        """The collection's description; :class:`InvalidIndex` when it holds another index's vectors."""
        if not self.exists():
            raise BackendUnavailable(f"Milvus at {self.uri} has no collection {self.collection!r}; create it with `lsr index "
                              f"milvus --index {self.directory} --milvus-uri {self.uri}`")
        described = self.client.describe_collection(self.collection)
        found = described.get("properties", {})
        want = identity(manifest)
        for key in ("lsr.encoder", "lsr.dense_encoder", "lsr.impact_dtype"):
            if found.get(key) != want[key]:
                raise InvalidIndex(f"Milvus collection {self.collection!r} at {self.uri} was built from another index "
                                   f"({key} is {found.get(key)!r}, this index has {want[key]!r}); give another "
                                   "--milvus-collection, or drop that one")
        if found.get("lsr.index_id") is None:  # a collection made before ids: this folder claims it
            self.client.alter_collection_properties(self.collection, properties={"lsr.index_id": self.index_id})
        elif found.get("lsr.index_id") != self.index_id:
            raise InvalidIndex(f"Milvus collection {self.collection!r} at {self.uri} belongs to another index folder "
                               f"(index id {found.get('lsr.index_id')}, this one is {self.index_id}): two folders "
                               "writing one collection would undo each other; give another --milvus-collection, or "
                               "drop that one")
        if manifest.scale is not None and found.get("lsr.scale") not in (None, "None", want["lsr.scale"]):
            raise InvalidIndex(f"Milvus collection {self.collection!r} holds impacts of another quantization scale "
                               f"({found.get('lsr.scale')}, this index has {want['lsr.scale']}); drop it and attach "
                               "again")
        return described

    def schema_current(self, described: dict, manifest) -> bool:
        """Whether the collection's metadata fields are the index's schema."""
        return described.get("properties", {}).get("lsr.metadata", "{}") == identity(manifest)["lsr.metadata"]

    def recreate(self, manifest) -> None:
        """Drop the collection and create it anew with the index's schema; the next reconcile fills it."""
        if self.exists():
            self.client.drop_collection(self.collection)
        self.create(manifest)
        self.record(-1)

    def create(self, manifest) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=ID_MAX)
        schema.add_field("hash", DataType.VARCHAR, max_length=32)
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        params = self.client.prepare_index_params()
        params.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
        if manifest.dense:
            schema.add_field("dense", DataType.FLOAT_VECTOR, dim=int(manifest.dense["dim"]))
            params.add_index("dense", index_type="FLAT", metric_type="IP")
        metadata = Schema.from_manifest(manifest.metadata)
        if metadata is not None:
            _add_metadata_fields(schema, metadata.fields)
        self.client.create_collection(self.collection, schema=schema, index_params=params,
                                      consistency_level="Strong",
                                      properties={**identity(manifest), "lsr.index_id": self.index_id})

    def has_dense(self, described: dict) -> bool:
        return any(f["name"] == "dense" for f in described.get("fields", []))

    def ensure_loaded(self) -> None:
        state = self.client.get_load_state(self.collection).get("state")
        if getattr(state, "name", str(state)) != "Loaded":  # a collection reopened from its file is released
            self.client.load_collection(self.collection)

    # -- rows ----------------------------------------------------------------------------------------------------------
    def rows(self, view, locals_: np.ndarray, scale: float, dense: bool, vectors=None,
             skipped: list | None = None, fields: dict | None = None) -> list[dict]:
        """Milvus rows of these documents of a segment: id, row hash, impacts / scale, dense embedding, the
        metadata ``fields`` (stored values; None where a document has none). A document with no sparse weight has no
        row (Milvus refuses empty sparse vectors); its id goes to ``skipped``, so the caller removes an older row."""
        segment = view.segment
        vectors = vectors if vectors is not None else segment.row_vectors()
        fields = fields or {}
        records = segment.metadata.records(locals_.tolist(), fields, stored=True) if fields else None
        out = []
        for local in locals_.tolist():
            terms, weights = vectors.row(local)
            if len(terms) == 0:
                if skipped is not None:
                    skipped.append(str(segment.ids[local]))
                continue
            embedding = np.asarray(segment.dense[local], dtype=np.float32) if dense else None
            row = {"id": str(segment.ids[local]), "hash": row_hash(segment.hashes[local], terms, weights, embedding),
                   "sparse": {int(t): float(w) / scale for t, w in zip(terms.tolist(), weights.tolist())}}
            if dense:
                row["dense"] = embedding.tolist()
            out.append(row)
        if records is not None:
            by_id = {str(segment.ids[local]): record for local, record in zip(locals_.tolist(), records)}
            for row in out:
                record = by_id[row["id"]]
                row.update({FIELD_PREFIX + name: record.get(name) for name in fields})
        return out

    def flush(self) -> None:
        """Milvus Lite: seal what was written (it searches rows of its growing segment without an index, rebuilding
        their postings for every search: seconds a query on NFCorpus unflushed). A Milvus server indexes growing
        segments itself and seals them on its own schedule; flushing every commit would only make small segments."""
        if self.uri.startswith("/"):
            self.client.flush(self.collection)

    def push(self, views, scale: float, segment_names: list[str], deleted_ids: list[str], dense: bool,
             fields: dict | None = None) -> None:
        """Delete ``deleted_ids``, then upsert the live documents of the named segments; flush."""
        for start in range(0, len(deleted_ids), PUSH_ROWS):
            self.client.delete(self.collection, ids=deleted_ids[start:start + PUSH_ROWS])
        skipped: list[str] = []
        for view in views:
            if view.segment.name in segment_names:
                live = _live(view)
                vectors = view.segment.row_vectors()
                for start in range(0, len(live), PUSH_ROWS):
                    rows = self.rows(view, live[start:start + PUSH_ROWS], scale, dense, vectors, skipped, fields)
                    if rows:
                        self.client.upsert(self.collection, rows)
        for start in range(0, len(skipped), PUSH_ROWS):  # replaced by a version with no sparse weight
            self.client.delete(self.collection, ids=skipped[start:start + PUSH_ROWS])
        self.flush()

    def stored(self) -> dict[str, str]:
        """Every id in the collection and its content hash."""
        import logging

        # Milvus Lite has no AllocTimestamp; the iterator warns and uses the client's clock, which is what we want
        logging.getLogger("pymilvus.client.iterator.query_iterator").setLevel(logging.ERROR)
        iterator = self.client.query_iterator(self.collection, batch_size=PUSH_ROWS, filter="",
                                              output_fields=["id", "hash"])
        found: dict[str, str] = {}
        try:
            while True:
                batch = iterator.next()
                if not batch:
                    return found
                found.update((row["id"], row["hash"]) for row in batch)
        finally:
            iterator.close()

    def reconcile(self, number: int, views, scale: float, dense: bool, progress=None,
                  fields: dict | None = None) -> dict:
        """Make the collection hold exactly the snapshot's live documents: ids it lacks or holds with another
        content hash are upserted, ids the index no longer has are deleted. Returns the counts. ``progress(n)`` is
        called as documents are checked (and pushed)."""
        stored = self.stored()
        live_ids: set[str] = set()
        upserted = 0
        for view in views:
            segment = view.segment
            live = _live(view)
            vectors = segment.row_vectors()
            ids = [str(i) for i in np.asarray(segment.ids)[live].tolist()]
            live_ids.update(ids)
            hashes = [row_hash(segment.hashes[local], *vectors.row(local),
                               np.asarray(segment.dense[local], dtype=np.float32) if dense else None)
                      for local in live.tolist()]
            stale = np.array([stored.get(i) != h for i, h in zip(ids, hashes)], dtype=bool)
            todo = live[stale] if len(live) else live
            skipped: list[str] = []
            for start in range(0, len(todo), PUSH_ROWS):
                rows = self.rows(view, todo[start:start + PUSH_ROWS], scale, dense, vectors, skipped, fields)
                if rows:
                    self.client.upsert(self.collection, rows)
                upserted += len(rows)
            if progress is not None:
                progress(len(live))
            live_ids.difference_update(skipped)  # no row: an older one goes
        extra = sorted(set(stored) - live_ids)
        for start in range(0, len(extra), PUSH_ROWS):
            self.client.delete(self.collection, ids=extra[start:start + PUSH_ROWS])
        self.flush()
        self.record(number)
        return {"upserted": upserted, "deleted": len(extra), "documents": len(live_ids)}

    def count(self) -> int:
        rows = self.client.query(self.collection, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"])


def row_hash(content: np.ndarray, terms: np.ndarray, weights: np.ndarray, dense: np.ndarray | None) -> str:
    """What a Milvus row holds, hashed: the document's content hash and its stored vectors (so new vectors for the
    same text, e.g. from ``add_vectors``, are seen as a change)."""
    digest = hashlib.blake2b(bytes(np.asarray(content, dtype=np.uint8)), digest_size=16)
    digest.update(np.ascontiguousarray(terms, dtype=np.int64).tobytes())
    digest.update(np.ascontiguousarray(weights, dtype=np.float32).tobytes())
    if dense is not None:
        digest.update(np.ascontiguousarray(dense, dtype=np.float32).tobytes())
    return digest.hexdigest()


def _recorded_state(directory: Path) -> dict | None:
    try:
        return json.loads((Path(directory) / STATE).read_text())
    except (OSError, ValueError):
        return None


def _live(view) -> np.ndarray:
    if view.deleted is None:
        return np.arange(view.segment.info.documents)
    return np.flatnonzero(~np.asarray(view.deleted, dtype=bool))


def current_views(directory: Path) -> tuple[int, list]:
    """The published generation's number and segment views (the caller holds the write lock: nothing is collected
    meanwhile)."""
    from lsr.index import storage
    from lsr.index.snapshot import open_views

    generation = storage.Generation.read(storage.current_generation_file(directory))
    return generation.number, open_views(directory, generation)


def metadata_fields(manifest) -> dict[str, str]:
    schema = Schema.from_manifest(manifest.metadata)
    return dict(schema.fields) if schema is not None else {}


def check_mirrorable(manifest, directory) -> None:
    if manifest.chunking is not None:
        raise InvalidInput(f"{directory} is chunked (--chunk-tokens): Milvus holds one vector a document, so chunked "
                           "indexes are served by the native backend only; index without --chunk-tokens")
    if manifest.encoder.get("identity") is None:
        raise InvalidInput(f"{directory} was built from bare vectors (no encoder): the milvus backend needs an index "
                           "built by an encoder")


def attach(index, uri: str | None = None, collection: str | None = None, timeout: float = 5.0,
           index_id: str | None = None, progress=None) -> dict:
    """Mirror ``index`` (an :class:`~lsr.index.Index` on disk) into a Milvus collection (created when missing;
    refused when it holds another index's vectors), record it in ``milvus.json`` and return the counts. Later
    commits keep it in step. Without ``uri``/``collection``: the recorded ones (bring the collection up to date).
    ``index_id``: claim a collection this folder's previous build owned (``lsr index --out`` over an index that
    had one). Takes the write lock while it works."""
    if index.in_memory:
        raise InvalidInput("attach a Milvus collection to an index on disk (Index.save it first)")
    check_mirrorable(index.manifest, index.directory)
    from lsr.index import storage
    from lsr.index.manifest import Manifest

    lock = storage.WriteLock(index.directory, wait=timeout)
    try:
        manifest = Manifest.load(index.directory)
        if manifest.scale is None:
            raise InvalidInput(f"{index.directory} holds no documents yet: add some, then attach it to Milvus")
        recorded = Mirror.load(index.directory, collection=collection, timeout=timeout) if uri is None else None
        if uri is None and recorded is None:
            raise InvalidInput(f"{index.directory} has no Milvus collection yet: give --milvus-uri (a .db file for "
                               "embedded Milvus Lite, or http://host:19530)")
        state = _recorded_state(index.directory)
        same = state is not None and (collection or default_collection(index.directory)) == state["collection"]
        mirror = recorded or Mirror(index.directory, uri, collection or default_collection(index.directory), -1,
                                    timeout, (state.get("index_id") if same else None) or index_id)
        mirror.generation = -1  # reconcile whatever the collection holds
        number, views = current_views(index.directory)
        for view in views:  # Milvus keys hold at most ID_MAX bytes: refuse before creating anything
            for doc_id in np.asarray(view.segment.ids)[_live(view)].tolist():
                if len(str(doc_id).encode()) > ID_MAX:
                    raise InvalidInput(f"document id {str(doc_id)[:40]!r}... is longer than {ID_MAX} bytes, Milvus's "
                                       "key limit: delete or rename it, then attach")
        if not mirror.exists():
            mirror.create(manifest)
            mirror.record(-1)  # the folder owns the new collection from now on, even if the first push fails
        described = mirror.check(manifest)
        if not mirror.schema_current(described, manifest):  # made before the index's metadata schema changed
            mirror.recreate(manifest)
            described = mirror.check(manifest)
        mirror.ensure_loaded()
        counts = mirror.reconcile(number, views, manifest.scale, dense=mirror.has_dense(described), progress=progress,
                                  fields=metadata_fields(manifest))
    finally:
        lock.release()
    index.refresh()
    return {"uri": mirror.uri, "collection": mirror.collection, "generation": mirror.generation, **counts}
