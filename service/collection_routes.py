"""The collection routes: ``GET /collections``, ``GET|PUT|DELETE /collections/{name}``, ``POST
/collections/{name}/merge``, ``POST|GET /collections/{name}/snapshots``, ``POST
/collections/{name}/snapshots/{snapshot}/restore``. (Search and the document routes under ``/collections/{name}/``
are the root routers mounted again: :func:`lsr.service.app.create_app`.)

Scopes: listing and stats are ``read``; create, drop, merge, snapshot and restore are ``admin``. A key limited to
some collections sees only those in the list, and touches no other."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.concurrency import run_in_threadpool

from lsr.collections import check_name
from lsr.errors import InvalidInput, LsrError, NotWritable
from lsr.service.collections import Collection, Collections, index_bytes
from lsr.service.deps import AdminDep, ReadDep, json_response
from lsr.service.keys import check, grant_of
from lsr.service.schemas import (
    CollectionCreate,
    CollectionList,
    CollectionStats,
    Dropped,
    MergeOut,
    RestoreIn,
    SnapshotList,
    SnapshotOut,
)

router = APIRouter(tags=["collections"])
Name = Annotated[str, Path(description="the collection: 1-64 letters, digits, '_' or '-'")]


def stats_of(collection: Collection, settings) -> CollectionStats:
    """What a collection holds and serves (the index's manifest and the generation it serves)."""
    engine = collection.engine
    if engine is None:
        return CollectionStats(name=collection.name, status="unavailable", problem=collection.error)
    index = engine.index
    snapshot = engine.state().snapshot
    manifest = index.manifest
    parts = ["sparse"] + [p for p in ("dense", "bm25", "documents", "lucene") if index.has(p)]
    if engine.schema().fields:
        parts.append("metadata")
    fusion = engine.default_fusion() if engine.default_mode == "hybrid" else None
    try:
        engine.check_writable()
        writable = not settings.read_only
    except LsrError:
        writable = False
    return CollectionStats(
        name=collection.name, status="ready", documents=snapshot.doc_count, segments=len(snapshot.views),
        generation=snapshot.number, bytes=index_bytes(index.directory), parts=parts,
        encoder=str(manifest.encoder.get("kind")), modes=engine.modes(), default_mode=engine.default_mode,
        default_fusion={"method": fusion.method, "components": list(fusion.components),
                        "weights": list(fusion.weights) if fusion.weights else None} if fusion else None,
        metadata=dict(engine.schema().fields), max_weight=manifest.max_weight,
        clipped_postings=snapshot.clipped_postings,
        writable=writable)


def _collections(request: Request) -> Collections:
    return request.app.state.collections


@router.get("/collections", response_model=CollectionList, response_model_exclude_none=True)
def list_collections(request: Request):
    """Every collection this key may see, with its stats (an unavailable one with the reason)."""
    grant = grant_of(request)
    collections = _collections(request)
    settings = request.app.state.settings
    return json_response(CollectionList(collections=[
        stats_of(c, settings) for c in collections.items() if grant.allows("read", c.name)]))


@router.get("/collections/{name}", response_model=CollectionStats, response_model_exclude_none=True,
            responses={404: {"description": "unknown collection"}, 503: {"description": "unavailable"}})
def collection_stats(collection: ReadDep, request: Request):
    """Documents, segments, bytes, generation, parts, default mode and fusion, metadata schema, quantization."""
    return json_response(stats_of(collection, request.app.state.settings))


def _checked_defaults(body: CollectionCreate) -> dict | None:
    if body.defaults is None:
        return None
    have = {"sparse"} | ({"dense"} if body.dense_encoder else set()) | ({"bm25"} if body.bm25 else set())
    defaults = body.defaults
    if defaults.mode == "hybrid":
        if defaults.fusion is None or defaults.fusion.components is None:
            raise _invalid(("defaults", "fusion"), "a hybrid default names its fusion components")
        components = defaults.fusion.components
    else:
        components = [defaults.mode]
    missing = [c for c in components if c not in have]
    if missing:
        raise _invalid(("defaults",), f"the default uses {', '.join(missing)}, which this collection will not have "
                                      "(add bm25: true or a dense_encoder)")
    if defaults.fusion is None:
        return {"mode": defaults.mode}
    fusion = defaults.fusion.to_fusion(tuple(components))  # (checked here: weights against components, ...)
    return {"mode": defaults.mode, "fusion": fusion.to_dict()}  # (alpha is in the weights it set)


def _invalid(loc: tuple, message: str) -> InvalidInput:
    exc = InvalidInput(message)
    exc.loc = loc
    return exc


@router.put("/collections/{name}", response_model=CollectionStats, status_code=201,
            responses={409: {"description": "exists already"}, 422: {"description": "bad name or body"}})
def create_collection(name: Name, body: CollectionCreate, request: Request):
    """Create an empty collection (admin): its encoder (by name), its parts, its metadata schema, its defaults."""
    check_name(name)
    check(grant_of(request), "admin", name)
    options = {"bm25": body.bm25, "store_documents": body.store_documents}
    if body.chunk_tokens is not None:
        options.update(chunk_tokens=body.chunk_tokens, chunk_overlap=body.chunk_overlap)
    if body.max_weight is not None:
        options["max_weight"] = float(body.max_weight)
    collection = _collections(request).create(name, body.encoder, body.dense_encoder,
                                              defaults=_checked_defaults(body), schema=body.metadata,
                                              unknown_fields=body.unknown_fields, **options)
    return json_response(stats_of(collection, request.app.state.settings), status_code=201)


@router.delete("/collections/{name}", response_model=Dropped, responses={404: {"description": "unknown collection"}})
async def drop_collection(name: Name, request: Request):
    """Drop a collection (admin): new requests get 404 at once; searches already running finish; then its files go.
    Its snapshots stay."""
    check_name(name)
    check(grant_of(request), "admin", name)
    await run_in_threadpool(_collections(request).drop, name)
    return Dropped(dropped=name)


@router.post("/collections/{name}/merge", response_model=MergeOut)
def merge_collection(collection: AdminDep, max_segments: int | None = None):
    """Merge the collection's segments now (admin): as the tiered policy asks, or down to ``max_segments``."""
    if max_segments is not None and max_segments < 1:
        raise _invalid(("max_segments",), "max_segments must be >= 1")
    summary = collection.writes.merge_now(collection.engine, max_segments)
    return MergeOut(generation=summary.generation, segments_before=summary.segments_before,
                    segments_after=summary.segments_after, documents=summary.documents,
                    dropped_deleted=summary.dropped_deleted, seconds=summary.seconds)


@router.post("/collections/{name}/snapshots", response_model=SnapshotOut, status_code=201,
             response_model_exclude_none=True)
def snapshot_collection(collection: AdminDep, request: Request):
    """A consistent copy of the generation served now (admin), with every file's checksum; writes go on."""
    collections = _collections(request)
    collections._require_data()
    if collection.path is None:
        raise NotWritable(f"collection {collection.name!r} is the --index folder, not one of the data directory's: "
                          "copy it in with `lsr collection create NAME --from INDEX`, then snapshot that")
    return json_response(SnapshotOut(**collections.data.snapshot(collection.name)), status_code=201)


@router.get("/collections/{name}/snapshots", response_model=SnapshotList, response_model_exclude_none=True)
def list_snapshots(name: Name, request: Request):
    """The snapshots of a collection (admin), oldest first; those of a dropped collection are listed too."""
    check_name(name)
    check(grant_of(request), "admin", name)
    collections = _collections(request)
    collections._require_data()
    return json_response(SnapshotList(snapshots=[SnapshotOut(**s) for s in collections.data.snapshots(name)]))


@router.post("/collections/{name}/snapshots/{snapshot}/restore", response_model=CollectionStats, status_code=201,
             responses={409: {"description": "the new name exists"}})
def restore_snapshot(name: Name, snapshot: str, body: RestoreIn, request: Request):
    """Restore a snapshot of ``name`` as a new collection ``as`` (admin on both), verified file by file first."""
    check_name(name)
    check_name(body.as_)
    grant = grant_of(request)
    check(grant, "admin", name)
    check(grant, "admin", body.as_)
    collections = _collections(request)
    collections._require_data()
    if "/" in snapshot or snapshot.startswith("."):
        raise _invalid(("snapshot",), f"snapshot id {snapshot!r} is not one; GET /collections/{name}/snapshots "
                                      "lists them")
    collection = collections.restore(f"{name}/{snapshot}", body.as_)
    return json_response(stats_of(collection, request.app.state.settings), status_code=201)


# Registered after every other route: a name that cannot be one (a '/' in it, '..') reaches no route above; it gets a
# 422 naming the rule instead of a 404 or a 405.
@router.api_route("/collections/{name:path}", methods=["GET", "PUT", "DELETE", "POST"], include_in_schema=False)
def not_a_route(name: str, request: Request):
    first, _, rest = name.partition("/")
    check_name(first)  # a first segment that cannot be a name: 422 naming the rule
    shapes = (r"search", r"search/batch", r"encode", r"documents", r"documents/[^/]+", r"merge", r"snapshots",
              r"snapshots/[^/]+/restore")
    if any(re.fullmatch(shape, rest) for shape in shapes):
        raise HTTPException(405, detail=f"{request.method} is not a method of /collections/{{name}}/{rest}")
    if request.method in ("PUT", "DELETE") and rest and "/" not in rest:
        check_name(name)  # PUT /collections/a/b: a name with a '/' in it
    raise HTTPException(404, detail=f"no route /collections/{name}; the routes of a collection are listed at /docs")
