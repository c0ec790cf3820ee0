"""The HTTP API: :func:`create_app` assembles the routers (:mod:`lsr.service.search`, :mod:`lsr.service.documents`,
:mod:`lsr.service.collection_routes`, :mod:`lsr.service.health`), the error handlers and the middleware; its
lifespan opens the collections (an index each: sparse + optional dense, BM25, texts, metadata) and warms every
kernel variant a request can reach before reporting ready.

Routes: ``POST /search``, ``POST /search/batch``, ``POST /encode``, ``GET /documents/{id}``, ``POST /documents``,
``PUT|DELETE /documents/{id}`` (the collection ``default``), the same under ``/collections/{name}/``, with
``GET|PUT|DELETE /collections/{name}``, ``GET /collections``, merge and snapshots; ``GET /healthz`` (process up),
``GET /readyz`` (collections loaded, kernels compiled), ``GET /metrics`` (Prometheus). Indexes are memory-mapped,
so uvicorn workers share their pages.

With keys set (``api_key``, ``keys``: :mod:`lsr.service.keys`), every route but the two health probes needs
``Authorization: Bearer <key>``, of a scope that covers the route. Errors: lsr's own
(:class:`lsr.errors.LsrError`) map once to a status (:func:`status_of`) with the message, at the field the error
names (a filter's path, ``k``, ``mode``); a request value JSON reads as NaN or infinity is a 422 like any other.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import threading
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from lsr.collections import DataDirectory
from lsr.engine import Engine
from lsr.errors import (
    AlreadyExists,
    BackendUnavailable,
    CollectionUnavailable,
    DiskFull,
    IndexLocked,
    IndexReadOnly,
    LsrError,
    NotFound,
    NotWritable,
    StorageError,
)
from lsr.service import collection_routes, documents, health, search
from lsr.service.collections import DEFAULT, Collections, refresh_loop
from lsr.service.deps import collection_name
from lsr.service.keys import KeyAuth, grants_from
from lsr.service.middleware import BodyLimit, Metrics, MetricsMiddleware
from lsr.service.settings import Settings

STATUS = ((NotFound, 404), (IndexReadOnly, 403), (NotWritable, 409), (AlreadyExists, 409),
          (CollectionUnavailable, 503), (BackendUnavailable, 503), (IndexLocked, 503), (DiskFull, 507),
          (StorageError, 500))


def status_of(exc: LsrError) -> int:
    """The one place an lsr error becomes an HTTP status (anything else is the request's fault: 422)."""
    return next((status for kind, status in STATUS if isinstance(exc, kind)), 422)


def _json_safe(value):
    """Validation errors echo the input; JSON cannot carry NaN or infinity, so they are echoed as strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


async def invalid_request(request: Request, exc: RequestValidationError):
    return JSONResponse({"detail": _json_safe(exc.errors())}, status_code=422)


async def lsr_error(request: Request, exc: LsrError):
    """A 422 names the field at fault, as FastAPI's own validation errors do; any other status carries the message."""
    status = status_of(exc)
    if status == 422:
        detail = [{"loc": ["body", *getattr(exc, "loc", ())], "msg": str(exc), "type": type(exc).__name__}]
    else:
        detail = str(exc)
    return JSONResponse({"detail": detail}, status_code=status, headers={"Retry-After": "1"} if status == 503 else None)


async def warm_routes(app: FastAPI) -> None:
    """One search a mode through the router (inside the middleware: no API key, no metrics), so the first real
    request does not pay FastAPI's and pydantic's first-call costs (about 2 ms of a 0.5 ms request). Once a process:
    the routes and models are the same for every collection."""
    collections: Collections = app.state.collections
    served = [c for c in collections.items() if c.engine is not None]
    if not served:
        return
    first = next((c for c in served if c.name == DEFAULT), served[0])
    path = "/search" if first.name == DEFAULT else f"/collections/{first.name}/search"
    for mode in first.engine.modes():
        body = json.dumps({"query": "warm up", "k": 1, "mode": mode}).encode()
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
                 "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "app": app,
                 "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
                 "client": ("127.0.0.1", 0), "server": ("127.0.0.1", 0), "state": {}}

        async def receive(body=body):
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message):
            return None

        try:
            async with AsyncExitStack() as stack:
                scope["fastapi_middleware_astack"] = stack  # what FastAPI's own outer middleware provides
                await app.router(scope, receive, send)
        except Exception as exc:  # an optimization only: never a reason not to start
            logging.getLogger("lsr.service").warning("route warm-up skipped (%s: %s)", type(exc).__name__, exc)
            return


def open_engine(settings: Settings, path=None, encoder=None) -> Engine:
    """The engine of one index (``path``, default ``settings.index``) as the settings describe it (also used by
    `lsr serve` to fail early, with one line)."""
    return Engine.open(path or settings.index, encoder=encoder, device=settings.device, backend=settings.backend,
                       **settings.open_options())


def make_lifespan(settings: Settings, engine: Engine | None):
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        collections: Collections = app.state.collections
        if engine is None and not settings.index and not settings.data:
            raise RuntimeError("nothing to serve: set LSR_INDEX or LSR_DATA (or pass --index DIR or --data DIR)")
        if collections.data is not None:
            if (engine is not None or settings.index) and DEFAULT in collections.data.names():
                raise RuntimeError(f"{collections.data.root} has a collection named {DEFAULT!r} and --index serves "
                                   "one too; drop one of them")
            collections.open_all()  # each warmed as it opens (kernels compile once, for the first)
        if engine is not None or settings.index:
            ready = engine or open_engine(settings)
            ready.warm_up()  # compile every kernel variant, load the models, page in the index
            collections.serve_engine(DEFAULT, ready)
        app.state.engine = collections._items[DEFAULT].engine if DEFAULT in collections.names() else None
        # Python's full collections walk every object alive: with torch and transformers loaded, hundreds of
        # thousands, 100-250 ms each, which was the p99 under load. What exists now lives as long as the process,
        # so it moves to the permanent generation, and a full collection walks only what requests allocate.
        gc.collect()
        gc.freeze()
        # Last, the HTTP side (routing, validation, the handlers, serialization), which also brings back into the
        # CPU caches what the full collection above pushed out: the first request costs what the next ones do.
        await warm_routes(app)
        stop = threading.Event()
        refresher = threading.Thread(target=refresh_loop, name="lsr-refresh", daemon=True,
                                     args=(collections, settings.refresh_interval, stop))
        refresher.start()
        app.state.ready = True
        yield
        app.state.ready = False
        gc.unfreeze()  # an app embedded in a longer process (tests, notebooks) leaves nothing pinned behind it
        stop.set()
        refresher.join(timeout=5)

    return lifespan


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    """Build the app. The lifespan opens ``settings.index`` unless a ready ``engine`` is given (tests, `lsr serve`)."""
    settings = settings or Settings()
    app = FastAPI(title="lsr", version="0.3.0", lifespan=make_lifespan(settings, engine),
                  description="Learned sparse retrieval: sparse, dense, BM25 and hybrid search over one index, "
                              "filtered by metadata.")
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.collections = Collections(settings, app.state.metrics,
                                        DataDirectory(settings.data) if settings.data else None)
    app.state.engine = None
    app.state.ready = False
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(LsrError, lsr_error)
    for router in (search.router, documents.router):  # the collection `default` at the root, any by name below
        app.include_router(router)
        app.include_router(router, prefix="/collections/{name}", dependencies=[Depends(collection_name)])
    app.include_router(health.router)
    app.include_router(collection_routes.router)  # (its catch-all answers names that match no other route)
    mount_console(app)
    # outermost last: CORS answers preflights and decorates 401/413; metrics see every status
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    grants = grants_from(settings)
    if grants:
        app.add_middleware(KeyAuth, grants=grants)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["GET", "POST", "PUT", "DELETE"],
                           allow_headers=["authorization", "content-type"])
    return app


CONSOLE = Path(__file__).resolve().parent / "console"


def mount_console(app: FastAPI) -> None:
    """The web console at ``/console/``: static files shipped in the package (no build step, no CDN); the page
    calls the API with the key the user types, kept in the tab's sessionStorage."""
    from fastapi.responses import RedirectResponse
    from fastapi.staticfiles import StaticFiles

    @app.get("/console", include_in_schema=False)
    async def console_redirect():
        return RedirectResponse("/console/")

    app.mount("/console/", StaticFiles(directory=CONSOLE, html=True), name="console")


def app_from_environment() -> FastAPI:
    """Factory for ``uvicorn --factory`` (``lsr serve --workers N``): settings from LSR_* and LSR_CONFIG_FILE; the
    worker's thread pools sized for its share of the cores (:mod:`lsr.threads`)."""
    from lsr.threads import configure

    settings = Settings()
    configure(workers=settings.workers)
    return create_app(settings)
