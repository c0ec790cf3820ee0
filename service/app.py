"""The HTTP API: a FastAPI app factory whose lifespan opens the index (sparse + optional dense, BM25, texts) once
and warms every kernel variant a request can reach before reporting ready.

Routes: ``POST /search``, ``POST /search/batch``, ``POST /encode``, ``GET /documents/{id}``, ``GET /healthz``
(process up), ``GET /readyz`` (index and encoders loaded, kernels compiled), ``GET /metrics`` (Prometheus).

A ``/search`` of at most 100 hits, with no explanations or stored texts, that runs no model and asks only in-process
retrievers (inference-free or BM25 queries: a tokenizer and a kernel that holds the GIL, a fraction of a millisecond)
is answered on the event loop: a thread-pool hop would cost more than the search and buy no parallelism. Any other
search (a model: dense, a siamese encoder; another backend: Milvus, Lucene, checks included; explanations, texts,
deep k) and the other routes run in FastAPI's thread pool. ``/search`` and ``/search/batch`` answers are serialized
once, by pydantic, without FastAPI validating them again. The index is memory-mapped, so uvicorn workers share its
pages.

With ``api_key`` set, every route but the two health probes needs ``Authorization: Bearer <key>``. Errors: lsr's own
(:class:`lsr.errors.LsrError`) map to 4xx with the message; a request value JSON reads as NaN or infinity is a 422
like any other invalid value.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import threading
import time
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response

from lsr.engine import Engine
from lsr.errors import BackendUnavailable, InvalidInput, LsrError, NotFound, Unavailable
from lsr.fusion import Fusion
from lsr.service.middleware import BearerAuth, BodyLimit, Metrics, MetricsMiddleware
from lsr.service.schemas import (
    BatchRequest,
    BatchResponse,
    BatchResult,
    Contribution,
    DocumentOut,
    EncodeRequest,
    EncodeResponse,
    Health,
    HitOut,
    Ready,
    SearchOptions,
    SearchRequest,
    SearchResponse,
)
from lsr.service.settings import Settings
from lsr.service.writes import add_write_routes, refresh_loop_target


def unprocessable(loc: list, msg: str) -> HTTPException:
    return HTTPException(422, detail=[{"loc": loc, "msg": msg, "type": "value_error"}])


def _json_safe(value):
    """Validation errors echo the input; JSON cannot carry NaN or infinity, so they are echoed as strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


async def get_engine(request: Request) -> Engine:  # async: a plain def dependency costs a thread-pool hop
    return request.app.state.engine


LOOP_MAX_K = 100  # deeper answers (and fusion depths) serialize enough hits to be worth a thread


def light_request(engine: Engine, body: SearchRequest) -> bool:
    """Before any check: a request that might run on the event loop. Not one with explanations or stored texts (a
    Python loop over the hits, a disk read a hit), a deep k or fusion, or on an engine whose sparse retrieval is
    not in process (Milvus, Lucene: their checks may wait on the network or the JVM)."""
    if body.explain or body.return_documents or body.k > LOOP_MAX_K:
        return False
    if body.fusion is not None and (body.fusion.depth or 0) > LOOP_MAX_K:
        return False
    return engine.backend == "native"


def runs_on_the_loop(engine: Engine, mode: str, fusion: Fusion | None) -> bool:
    """Whether a search costs less than a thread-pool hop: every retriever it asks is light (in process, no model,
    no I/O wait) and the sparse query needs no model (inference-free)."""
    components = (fusion or engine.default_fusion()).components if mode == "hybrid" else (mode,)
    retrievers = engine.retrievers
    if not all(getattr(retrievers.get(c), "light", False) for c in components):
        return False
    if "sparse" in components:
        try:
            return not engine.sparse_encoder().needs_model_for_queries
        except Unavailable:
            return False
    return True


async def warm_routes(app: FastAPI) -> None:
    """One ``/search`` a mode through the router (inside the middleware: no API key, no metrics), so the first real
    request does not pay FastAPI's and pydantic's first-call costs (about 2 ms of a 0.5 ms request)."""
    engine: Engine = app.state.engine
    for mode in engine.modes():
        body = json.dumps({"query": "warm up", "k": 1, "mode": mode}).encode()
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
                 "path": "/search", "raw_path": b"/search", "query_string": b"", "root_path": "", "app": app,
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


def json_response(model, status_code: int = 200) -> Response:
    return Response(model.model_dump_json(exclude_none=True), status_code=status_code, media_type="application/json")


def _index_bytes(directory) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file()) if directory is not None else 0


def open_engine(settings: Settings) -> Engine:
    """The engine the settings describe (also used by `lsr serve` to fail early, with one line)."""
    return Engine.open(settings.index, device=settings.device, backend=settings.backend, **settings.backend_options())


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    """Build the app. The lifespan opens ``settings.index`` unless a ready ``engine`` is given (tests, `lsr serve`)."""
    settings = settings or Settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if engine is None and not settings.index:
            raise RuntimeError("no index: set LSR_INDEX (or pass --index DIR)")
        app.state.engine = engine or open_engine(settings)
        app.state.engine.warm_up()  # compile every kernel variant, load the models, page in the index
        snapshot = app.state.engine.state().snapshot
        metrics.documents.set(snapshot.doc_count)
        metrics.postings.set(snapshot.postings)
        metrics.index_bytes.set(_index_bytes(app.state.engine.index.directory))
        # Python's full collections walk every object alive: with torch and transformers loaded, hundreds of
        # thousands, 100-250 ms each, which was the p99 under load. What exists now lives as long as the process,
        # so it moves to the permanent generation, and a full collection walks only what requests allocate.
        gc.collect()
        gc.freeze()
        # Last, the HTTP side (routing, validation, the handlers, serialization), which also brings back into the
        # CPU caches what the full collection above pushed out: the first request costs what the next ones do.
        await warm_routes(app)
        stop = threading.Event()
        refresher = threading.Thread(target=refresh_loop_target, name="lsr-refresh", daemon=True,
                                     args=(app.state.engine, settings.refresh_interval, stop))
        refresher.start()
        app.state.ready = True
        yield
        app.state.ready = False
        gc.unfreeze()  # an app embedded in a longer process (tests, notebooks) leaves nothing pinned behind it
        stop.set()
        refresher.join(timeout=5)

    app = FastAPI(title="lsr", version="0.2.0", lifespan=lifespan,
                  description="Learned sparse retrieval: sparse, dense, BM25 and hybrid search over one index.")
    app.state.settings = settings
    app.state.ready = False

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        return JSONResponse({"detail": _json_safe(exc.errors())}, status_code=422)

    @app.exception_handler(LsrError)
    async def lsr_error(request: Request, exc: LsrError):
        # NotFound: 404; Unavailable (a backend such as Milvus did not answer, or took a write only partly): 503,
        # worth retrying; anything else is the request's fault: 422
        status = 404 if isinstance(exc, NotFound) else 503 if isinstance(exc, BackendUnavailable) else 422
        return JSONResponse({"detail": [{"loc": ["body"], "msg": str(exc), "type": type(exc).__name__}]},
                            status_code=status, headers={"Retry-After": "1"} if status == 503 else None)

    def check_query(query: str, loc: list) -> None:
        if not query.strip():
            raise unprocessable(loc, "query is blank")
        if len(query) > settings.max_query_chars:
            raise unprocessable(loc, f"query is longer than the server's limit of {settings.max_query_chars} "
                                     "characters (LSR_MAX_QUERY_CHARS)")

    def check_options(body: SearchOptions, engine: Engine, request: Request) -> tuple[str, Fusion | None]:
        mode = body.mode or engine.default_mode
        request.state.lsr_mode = mode
        if body.k > settings.max_k:
            raise unprocessable(["body", "k"], f"k must be <= {settings.max_k} (LSR_MAX_K)")
        if body.fusion is not None and mode != "hybrid":
            raise unprocessable(["body", "fusion"], "fusion applies to mode 'hybrid' only")
        try:
            fusion = body.fusion.to_fusion(engine.default_fusion().components) if body.fusion is not None else None
            engine.require(mode, fusion)
        except BackendUnavailable:
            raise
        except Unavailable as exc:
            raise unprocessable(["body", "fusion" if body.fusion is not None else "mode"], str(exc)) from None
        except InvalidInput as exc:
            raise unprocessable(["body", "fusion"], str(exc)) from None
        if body.return_documents and not engine.index.manifest.documents:
            raise unprocessable(["body", "return_documents"], "this index stores no texts; rebuild it with "
                                                              "`lsr index ... --store-documents`")
        return mode, fusion

    def hits_out(result) -> list[HitOut]:
        return [HitOut(id=h.id, score=h.score, title=h.title, text=h.text,
                       explanation=[Contribution(token=c.token, query_weight=c.query_weight,
                                                 document_weight=c.document_weight, contribution=c.contribution)
                                    for c in h.explanation] if h.explanation is not None else None,
                       component_scores=h.component_scores, chunk=h.chunk)
                for h in result.hits]

    def answer(body: SearchRequest, engine: Engine, mode: str, fusion: Fusion | None) -> Response:
        started = time.perf_counter()
        result = engine.search(body.query, body.k, mode, fusion, explain=body.explain,
                               return_documents=body.return_documents)
        return json_response(SearchResponse(hits=hits_out(result), mode=result.mode,
                                            components=list(result.components),
                                            took_ms=(time.perf_counter() - started) * 1000, exact=result.exact,
                                            generation=result.generation))

    def checked_answer(body: SearchRequest, request: Request, engine: Engine) -> Response:
        check_query(body.query, ["body", "query"])
        mode, fusion = check_options(body, engine, request)
        return answer(body, engine, mode, fusion)

    @app.post("/search", response_model=SearchResponse, response_model_exclude_none=True)
    async def search(body: SearchRequest, request: Request, engine: Annotated[Engine, Depends(get_engine)]):
        """Top-k for one query."""
        if not light_request(engine, body):
            return await run_in_threadpool(checked_answer, body, request, engine)
        check_query(body.query, ["body", "query"])
        mode, fusion = check_options(body, engine, request)
        if runs_on_the_loop(engine, mode, fusion):
            return answer(body, engine, mode, fusion)
        return await run_in_threadpool(answer, body, engine, mode, fusion)

    @app.post("/search/batch", response_model=BatchResponse, response_model_exclude_none=True)
    def search_batch(body: BatchRequest, request: Request, engine: Annotated[Engine, Depends(get_engine)]):
        """Top-k for many queries in one call, answered together (multi-threaded across queries)."""
        if len(body.queries) > settings.max_batch:
            raise HTTPException(413, detail=f"{len(body.queries)} queries in one batch, over the server's limit of "
                                            f"{settings.max_batch} (LSR_MAX_BATCH); split the batch")
        for i, query in enumerate(body.queries):
            check_query(query, ["body", "queries", i])
        mode, fusion = check_options(body, engine, request)
        started = time.perf_counter()
        results = engine.search_batch(body.queries, body.k, mode, fusion, explain=body.explain,
                                      return_documents=body.return_documents)
        return json_response(BatchResponse(results=[BatchResult(hits=hits_out(r)) for r in results], mode=mode,
                                           components=list(results[0].components),
                                           took_ms=(time.perf_counter() - started) * 1000,
                                           exact=all(r.exact for r in results), generation=results[0].generation))

    @app.post("/encode", response_model=EncodeResponse)
    def encode(body: EncodeRequest, engine: Annotated[Engine, Depends(get_engine)]):
        """The sparse vector of a text as the index's encoder makes it: {token: weight}, largest first."""
        check_query(body.text, ["body", "text"])
        encoder = engine.sparse_encoder()
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
        except BackendUnavailable:
            raise
        except Unavailable as exc:
            raise HTTPException(404, detail=str(exc)) from None
        if record is None:
            raise HTTPException(404, detail=f"no document with id {doc_id!r} in this index")
        return DocumentOut(**record)

    @app.get("/healthz", response_model=Health)
    async def healthz():
        """The process is up (liveness)."""
        return Health(status="ok")

    @app.get("/readyz", response_model=Ready, responses={503: {"description": "still loading"}})
    def readyz(request: Request):
        """The index and the encoders are loaded and every kernel is compiled (readiness)."""
        if not request.app.state.ready:
            return JSONResponse({"status": "loading"}, status_code=503)
        engine: Engine = request.app.state.engine
        manifest = engine.index.manifest
        snapshot = engine.state().snapshot
        fusion = engine.default_fusion() if engine.default_mode == "hybrid" else None
        return Ready(status="ready", documents=snapshot.doc_count, postings=snapshot.postings,
                     generation=snapshot.number, segments=len(snapshot.views),
                     encoder=str(manifest.encoder.get("kind")), modes=engine.modes(), default_mode=engine.default_mode,
                     default_fusion={"method": fusion.method, "components": list(fusion.components)} if fusion else None,
                     backend=engine.backend, exact=engine.exact, documents_stored=bool(manifest.documents),
                     writable=not settings.read_only and engine.backend != "lucene")

    @app.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
    def prometheus():
        """Prometheus exposition: request counts and latency by route and mode, index size."""
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    add_write_routes(app, settings)

    # outermost last: CORS answers preflights and decorates 401/413; metrics see every status
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    if settings.api_key is not None:
        app.add_middleware(BearerAuth, key=settings.api_key.get_secret_value())
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["GET", "POST", "PUT", "DELETE"],
                           allow_headers=["authorization", "content-type"])
    return app


def app_from_environment() -> FastAPI:
    """Factory for ``uvicorn --factory`` (``lsr serve --workers N``): settings from LSR_* and LSR_CONFIG_FILE."""
    return create_app(Settings())
