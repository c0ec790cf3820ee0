"""The HTTP API: a FastAPI app factory whose lifespan opens the index (sparse + optional dense, BM25, texts) once.

Routes: ``POST /search``, ``POST /search/batch``, ``POST /encode``, ``GET /documents/{id}``, ``GET /healthz``
(process up), ``GET /readyz`` (index and encoders loaded), ``GET /metrics`` (Prometheus). Search routes are plain
``def`` handlers, so FastAPI runs them in its thread pool, off the event loop; the index is memory-mapped, so
uvicorn workers share its pages. With ``api_key`` set, every route but the two health probes needs
``Authorization: Bearer <key>``.
"""

from __future__ import annotations

import hmac
import json
import os
import time
from contextlib import asynccontextmanager
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt

from service.engine import Engine, Fusion, UnavailableError
from service.settings import Settings

OPEN_ROUTES = ("/healthz", "/readyz")
Mode = Literal["sparse", "dense", "bm25", "hybrid"]
Component = Literal["sparse", "dense", "bm25"]


# -- schemas --------------------------------------------------------------------------------------------------------
class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FusionIn(Strict):
    method: Literal["convex", "rrf"] = Field("convex", description="convex: per-query min-max, then alpha*a + "
                                                                   "(1-alpha)*b; rrf: sum of 1/(rrf_k + rank)")
    alpha: StrictFloat | StrictInt = Field(0.5, ge=0.0, le=1.0, description="convex: weight of the first component")
    rrf_k: StrictInt = Field(60, ge=0, le=100_000)
    components: list[Component] = Field(["sparse", "dense"], min_length=2, max_length=2,
                                        description="the two fused lists")
    depth: StrictInt = Field(100, ge=1, le=10_000, description="hits per component before fusion (at least k)")

    def to_fusion(self) -> Fusion:
        return Fusion(method=self.method, alpha=float(self.alpha), rrf_k=self.rrf_k,
                      components=tuple(self.components), depth=self.depth)


class SearchOptions(Strict):
    k: StrictInt = Field(10, ge=1, description="number of hits (at most the server's max_k, default 1000)")
    mode: Mode = Field("sparse", description="sparse, dense, bm25 or hybrid (dense/bm25 need those index parts)")
    fusion: FusionIn | None = Field(None, description="hybrid only; default convex 0.5 over sparse + dense (sparse + "
                                                       "bm25 on an index without a dense part)")
    explain: StrictBool = Field(False, description="add the matching tokens and their query weight x impact")


class SearchRequest(SearchOptions):
    query: str = Field(..., min_length=1, description="query text", examples=["statins and breast cancer"])


class BatchRequest(SearchOptions):
    queries: list[str] = Field(..., min_length=1, description="query texts, scored together")


class Contribution(BaseModel):
    token: str
    query_weight: float
    document_weight: float
    contribution: float


class HitOut(BaseModel):
    id: str
    score: float
    explanation: list[Contribution] | None = None


class SearchResponse(BaseModel):
    hits: list[HitOut]
    mode: str
    took_ms: float
    exact: bool = Field(True, description="false when the server runs an approximate pruning setting "
                                          "(prune_alpha < 1 or query_cut > 0): the sparse top-k may miss documents")


class BatchResult(BaseModel):
    hits: list[HitOut]


class BatchResponse(BaseModel):
    results: list[BatchResult]
    mode: str
    took_ms: float


class EncodeRequest(Strict):
    text: str = Field(..., min_length=1)
    side: Literal["query", "document"] = "query"


class EncodeResponse(BaseModel):
    vector: dict[str, float]
    nnz: int
    model_used: bool = Field(description="false for inference-free queries: tokenizer + IDF, no model")


class DocumentOut(BaseModel):
    id: str
    title: str
    text: str


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: str
    documents: int
    postings: int
    encoder: str
    modes: list[str]
    documents_stored: bool


def unprocessable(loc: list, msg: str) -> HTTPException:
    return HTTPException(422, detail=[{"loc": loc, "msg": msg, "type": "value_error"}])


# -- middleware (pure ASGI) -------------------------------------------------------------------------------------------
class _TooLarge(Exception):
    pass


async def _send_json(send, status: int, body: dict, headers: list | None = None) -> None:
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
                + (headers or [])})
    await send({"type": "http.response.body", "body": payload})


class BodyLimit:
    """413 for a request body over ``limit`` bytes, by Content-Length or while it streams in."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        message = {"detail": f"request body over the server's limit of {self.limit} bytes (LSR_MAX_BODY_BYTES); "
                             "send fewer or shorter queries"}
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await _send_json(send, 413, message)
        received = 0

        async def limited():
            nonlocal received
            event = await receive()
            if event["type"] == "http.request":
                received += len(event.get("body", b""))
                if received > self.limit:
                    raise _TooLarge
            return event

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await _send_json(send, 413, message)


class BearerAuth:
    """401 unless ``Authorization: Bearer <key>`` (constant-time compare); the health probes stay open."""

    def __init__(self, app, key: str) -> None:
        self.app, self.key = app, key.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in OPEN_ROUTES or scope["method"] == "OPTIONS":
            return await self.app(scope, receive, send)
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self.key):
            return await _send_json(send, 401, {"detail": "missing or wrong API key: send Authorization: Bearer <key>"},
                                    [(b"www-authenticate", b"Bearer")])
        return await self.app(scope, receive, send)


class Metrics:
    """Prometheus counters and latency histograms by route, mode and status; index size gauges.

    One registry per app; with ``PROMETHEUS_MULTIPROC_DIR`` set (``lsr serve --workers N`` sets it), every worker
    writes there and ``/metrics`` adds them up."""

    ROUTES = ("/search", "/search/batch", "/encode", "/healthz", "/readyz", "/metrics")

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = CollectorRegistry()
        registry = None if self.multiprocess else self.registry
        self.requests = Counter("lsr_requests", "HTTP requests", ["route", "method", "mode", "status"],
                                registry=registry)
        self.latency = Histogram("lsr_request_seconds", "HTTP request latency", ["route", "mode"], registry=registry,
                                 buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        gauge = {"multiprocess_mode": "max"} if self.multiprocess else {}
        self.documents = Gauge("lsr_index_documents", "documents in the served index", registry=registry, **gauge)
        self.postings = Gauge("lsr_index_postings", "postings in the served index", registry=registry, **gauge)
        self.index_bytes = Gauge("lsr_index_bytes", "bytes on disk of the served index", registry=registry, **gauge)

    def route_of(self, scope) -> str:
        route = scope.get("route")
        if route is not None and getattr(route, "path", None):
            return route.path
        path = scope.get("path", "")
        if path.startswith("/documents/"):
            return "/documents/{doc_id}"
        return path if path in self.ROUTES else "other"

    def middleware(self, app):
        async def wrapped(scope, receive, send):
            if scope["type"] != "http":
                return await app(scope, receive, send)
            started = time.perf_counter()
            status = {"code": 500}

            async def capture(message):
                if message["type"] == "http.response.start":
                    status["code"] = message["status"]
                await send(message)

            try:
                await app(scope, receive, capture)
            finally:
                route = self.route_of(scope)
                mode = scope.get("state", {}).get("lsr_mode", "")
                self.requests.labels(route, scope["method"], mode, str(status["code"])).inc()
                self.latency.labels(route, mode).observe(time.perf_counter() - started)
        return wrapped

    def exposition(self) -> bytes:
        from prometheus_client import CollectorRegistry, generate_latest, multiprocess

        if self.multiprocess:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)


def _index_bytes(directory) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


# -- the app --------------------------------------------------------------------------------------------------------
def get_engine(request: Request) -> Engine:
    return request.app.state.engine


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    """Build the app. The lifespan opens ``settings.index`` unless a ready ``engine`` is given (tests, `lsr serve`)."""
    settings = settings or Settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if engine is None and not settings.index:
            raise RuntimeError("no index: set LSR_INDEX (or pass --index DIR)")
        app.state.engine = engine or Engine.open(settings.index, device=settings.device,
                                                 pruning=settings.pruning_spec(), backend=settings.backend)
        for mode in app.state.engine.modes():  # compile the kernel, load the models, page in the index
            app.state.engine.search("warm up", 1, mode)
        manifest = app.state.engine.index.manifest
        metrics.documents.set(manifest.doc_count)
        metrics.postings.set(manifest.postings)
        metrics.index_bytes.set(_index_bytes(app.state.engine.index.directory))
        app.state.ready = True
        yield
        app.state.ready = False

    app = FastAPI(title="lsr", version="0.1.0", lifespan=lifespan,
                  description="Learned sparse retrieval: sparse, dense, BM25 and hybrid search over one index.")
    app.state.settings = settings
    app.state.ready = False

    def check_query(query: str, loc: list) -> None:
        if not query.strip():
            raise unprocessable(loc, "query is blank")
        if len(query) > settings.max_query_chars:
            raise unprocessable(loc, f"query is longer than the server's limit of {settings.max_query_chars} "
                                     "characters (LSR_MAX_QUERY_CHARS)")

    def check_options(body: SearchOptions, engine: Engine, request: Request) -> Fusion | None:
        request.state.lsr_mode = body.mode
        if body.k > settings.max_k:
            raise unprocessable(["body", "k"], f"k must be <= {settings.max_k} (LSR_MAX_K)")
        if body.fusion is not None and body.mode != "hybrid":
            raise unprocessable(["body", "fusion"], "fusion applies to mode 'hybrid' only")
        try:
            fusion = body.fusion.to_fusion() if body.fusion is not None else None
            engine.require(body.mode)
            for component in (fusion or engine.default_fusion()).components if body.mode == "hybrid" else ():
                engine.require(component)
        except UnavailableError as exc:
            raise unprocessable(["body", "fusion" if body.fusion is not None else "mode"], str(exc)) from None
        except ValueError as exc:
            raise unprocessable(["body", "fusion"], str(exc)) from None
        return fusion

    def hits_of(engine: Engine, query: str, result, explain: bool) -> list[HitOut]:
        explanations = engine.explain(query, result.rows) if explain else [None] * len(result.ids)
        return [HitOut(id=i, score=s, explanation=[Contribution(**c) for c in e] if e is not None else None)
                for i, s, e in zip(result.ids, result.scores, explanations)]

    @app.post("/search", response_model=SearchResponse, response_model_exclude_none=True)
    def search(body: SearchRequest, request: Request, engine: Annotated[Engine, Depends(get_engine)]):
        """Top-k for one query."""
        check_query(body.query, ["body", "query"])
        fusion = check_options(body, engine, request)
        started = time.perf_counter()
        result = engine.search(body.query, body.k, body.mode, fusion)
        hits = hits_of(engine, body.query, result, body.explain)
        return SearchResponse(hits=hits, mode=body.mode, took_ms=(time.perf_counter() - started) * 1000,
                              exact=engine.searcher.pruning.exact)

    @app.post("/search/batch", response_model=BatchResponse, response_model_exclude_none=True)
    def search_batch(body: BatchRequest, request: Request, engine: Annotated[Engine, Depends(get_engine)]):
        """Top-k for many queries in one call, scored together (multi-threaded across queries)."""
        if len(body.queries) > settings.max_batch:
            raise HTTPException(413, detail=f"{len(body.queries)} queries in one batch, over the server's limit of "
                                            f"{settings.max_batch} (LSR_MAX_BATCH); split the batch")
        for i, query in enumerate(body.queries):
            check_query(query, ["body", "queries", i])
        fusion = check_options(body, engine, request)
        started = time.perf_counter()
        results = engine.search_batch(body.queries, body.k, body.mode, fusion)
        out = [BatchResult(hits=hits_of(engine, q, r, body.explain)) for q, r in zip(body.queries, results)]
        return BatchResponse(results=out, mode=body.mode, took_ms=(time.perf_counter() - started) * 1000)

    @app.post("/encode", response_model=EncodeResponse)
    def encode(body: EncodeRequest, engine: Annotated[Engine, Depends(get_engine)]):
        """The sparse vector of a text as the index's encoder makes it: {token: weight}, largest first."""
        check_query(body.text, ["body", "text"])
        encoder = engine.searcher.encoder
        batch = (encoder.encode_queries([body.text]) if body.side == "query"
                 else encoder.encode_documents([body.text]))
        ids, weights = batch.row(0)
        order = sorted(range(len(ids)), key=lambda i: -weights[i])
        tokens = encoder.tokenizer.convert_ids_to_tokens(ids.tolist())
        return EncodeResponse(vector={tokens[i]: float(weights[i]) for i in order}, nnz=len(ids),
                              model_used=body.side == "document" or encoder.needs_model_for_queries)

    @app.get("/documents/{doc_id}", response_model=DocumentOut, responses={404: {"description": "unknown id"}})
    def document(doc_id: str, engine: Annotated[Engine, Depends(get_engine)]):
        """A stored document (the index must be built with --store-documents)."""
        try:
            record = engine.document(doc_id)
        except UnavailableError as exc:
            raise HTTPException(404, detail=str(exc)) from None
        if record is None:
            raise HTTPException(404, detail=f"no document with id {doc_id!r} in this index")
        return DocumentOut(**record)

    @app.get("/healthz", response_model=Health)
    def healthz():
        """The process is up (liveness)."""
        return Health(status="ok")

    @app.get("/readyz", response_model=Ready, responses={503: {"description": "still loading"}})
    def readyz(request: Request):
        """The index and the encoders are loaded (readiness)."""
        if not request.app.state.ready:
            return JSONResponse({"status": "loading"}, status_code=503)
        engine: Engine = request.app.state.engine
        manifest = engine.index.manifest
        return Ready(status="ready", documents=manifest.doc_count, postings=manifest.postings,
                     encoder=str(manifest.encoder.get("kind")), modes=engine.modes(),
                     documents_stored=engine.documents is not None)

    @app.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
    def prometheus():
        """Prometheus exposition: request counts and latency by route and mode, index size."""
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    # outermost last: CORS answers preflights and decorates 401/413; metrics see every status
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    if settings.api_key is not None:
        app.add_middleware(BearerAuth, key=settings.api_key.get_secret_value())
    app.add_middleware(_MetricsMiddleware, metrics=metrics)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["authorization", "content-type"])
    return app


class _MetricsMiddleware:
    def __init__(self, app, metrics: Metrics) -> None:
        self._call = metrics.middleware(app)

    async def __call__(self, scope, receive, send):
        return await self._call(scope, receive, send)


def app_from_environment() -> FastAPI:
    """Factory for ``uvicorn --factory`` (``lsr serve --workers N``): settings from LSR_* and LSR_CONFIG_FILE."""
    return create_app(Settings())
