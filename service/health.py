"""The operations routes: ``GET /healthz`` (the process is up), ``GET /readyz`` (index and encoders loaded, kernels
compiled; what the index serves), ``GET /metrics`` (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from lsr.engine import Engine
from lsr.errors import LsrError
from lsr.retrievers import capabilities
from lsr.service.collections import DEFAULT
from lsr.service.schemas import Health, Ready

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health)
async def healthz():
    """The process is up (liveness)."""
    return Health(status="ok")


@router.get("/readyz", response_model=Ready, responses={503: {"description": "still loading"}})
def readyz(request: Request):
    """The collections are open, their encoders loaded and every kernel compiled (readiness). With a collection
    ``default`` (``--index``): what it serves. ``unavailable`` names each collection that cannot be served, and why;
    the others serve."""
    if not request.app.state.ready:
        return JSONResponse({"status": "loading"}, status_code=503)
    collections = request.app.state.collections
    items = collections.items()
    keyed = bool(request.app.state.settings.api_key or request.app.state.settings.keys)
    unavailable = {c.name: "unavailable" if keyed else c.error for c in items if c.engine is None}  # (open route:
    # with keys set, the reasons, which name server paths, are for GET /collections, behind a key)
    counts = {"collections": len(items), "unavailable": unavailable or None} if collections.data is not None else {}
    default = next((c for c in items if c.name == DEFAULT and c.engine is not None), None)
    if default is None:
        return Ready(status="ready", **counts)
    engine: Engine = default.engine
    manifest = engine.index.manifest
    snapshot = engine.state().snapshot
    fusion = engine.default_fusion() if engine.default_mode == "hybrid" else None
    components = fusion.components if fusion else (engine.default_mode,)
    return Ready(status="ready", documents=snapshot.doc_count, postings=snapshot.postings,
                 generation=snapshot.number, segments=len(snapshot.views),
                 encoder=str(manifest.encoder.get("kind")), modes=engine.modes(), default_mode=engine.default_mode,
                 default_fusion={"method": fusion.method, "components": list(fusion.components)} if fusion else None,
                 backend=engine.backend, exact=engine.exact, documents_stored=bool(manifest.documents),
                 writable=not request.app.state.settings.read_only and _writable(engine),
                 filterable=all(capabilities(engine.retrievers.get(c)).filterable for c in components),
                 metadata=dict(engine.schema().fields), **counts)


def _writable(engine: Engine) -> bool:
    try:
        engine.check_writable()
    except LsrError:
        return False
    return True


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def prometheus(request: Request):
    """Prometheus exposition: request counts and latency by collection, route and mode; each collection's size. Every
    collection is in it: a key limited to some collections gets 403."""
    from lsr.service.keys import grant_of

    grant = grant_of(request)
    if grant.collections is not None:
        from fastapi import HTTPException

        raise HTTPException(403, detail=f"this API key ({grant.name}) is limited to some collections; /metrics "
                                        "describes them all: use a key for every collection")
    from prometheus_client import CONTENT_TYPE_LATEST

    request.app.state.collections.update_gauges()
    return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
