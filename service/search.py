"""The search routes: ``POST /search``, ``POST /search/batch``, ``POST /encode``.

A body becomes one :class:`~lsr.request.SearchRequest` (``to_request``), resolved once by the engine, which checks
every field (mode, fusion, filter, pages, pruning) and raises errors that name their field; the app's error handler
turns them into 422s at that path. A ``/search`` that might be light (no explanations or stored texts, at most 100
hits and fusion depth) is resolved on the event loop; when every retriever it asks answers in process and the query
needs no model (:meth:`~lsr.engine.Engine.light`), it is answered there too: a thread-pool hop would cost more than
the search and buy no parallelism. Anything else runs in FastAPI's thread pool.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from lsr.engine import Engine
from lsr.request import SearchRequest
from lsr.retrievers import backend_capabilities
from lsr.service.deps import EngineDep, SettingsDep, json_response, unprocessable
from lsr.service.schemas import (
    BatchRequest,
    BatchResponse,
    BatchResult,
    Contribution,
    EncodeRequest,
    EncodeResponse,
    HitOut,
    SearchOptions,
    SearchResponse,
)
from lsr.service.schemas import (
    SearchRequest as SearchBody,
)
from lsr.service.settings import Settings

LOOP_MAX_K = 100  # deeper answers (and fusion depths) serialize enough hits to be worth a thread

router = APIRouter(tags=["search"])


def check_query(query: str, loc: list, settings: Settings) -> None:
    if not query.strip():
        raise unprocessable(loc, "query is blank")
    if len(query) > settings.max_query_chars:
        raise unprocessable(loc, f"query is longer than the server's limit of {settings.max_query_chars} "
                                 "characters (LSR_MAX_QUERY_CHARS)")


def resolved(body: SearchOptions, engine: Engine, settings: Settings, http: Request) -> SearchRequest:
    """The body's request, resolved against the engine (the one place it is checked)."""
    http.state.lsr_mode = body.mode or engine.default_mode
    named = body.fusion is None or body.fusion.components is not None
    request = engine.resolve(body.to_request(() if named else engine.default_fusion().components),
                             max_k=settings.max_k)
    http.state.lsr_mode = request.mode
    return request


def might_be_light(body: SearchOptions, engine: Engine) -> bool:
    """Before any check: a request that might run on the event loop. Not one with explanations or stored texts (a
    Python loop over the hits, a disk read a hit), nor a deep k, page or fusion, nor on an engine whose sparse
    backend is not in process (Milvus, Lucene: resolving may rebuild their state, over the network or the JVM)."""
    if body.explain or body.return_documents or body.k + body.offset > LOOP_MAX_K or body.feedback or (
            body.feedback is None and body.mode is None and engine.default_feedback is not None):
        return False
    if not backend_capabilities(engine.backend).light:
        return False
    return body.fusion is None or (body.fusion.depth or 0) <= LOOP_MAX_K


def hits_out(result) -> list[HitOut]:
    return [HitOut(id=h.id, score=h.score, title=h.title, text=h.text,
                   explanation=[Contribution(token=c.token, query_weight=c.query_weight,
                                             document_weight=c.document_weight, contribution=c.contribution,
                                             feedback=c.feedback)
                                for c in h.explanation] if h.explanation is not None else None,
                   component_scores=h.component_scores, chunk=h.chunk, metadata=h.metadata)
            for h in result.hits]


def answer(body: SearchBody, engine: Engine, request: SearchRequest) -> Response:
    started = time.perf_counter()
    result = engine.search(body.query, request=request)
    return json_response(SearchResponse(hits=hits_out(result), expansion=result.expansion, mode=result.mode,
                                        components=list(result.components),
                                        took_ms=(time.perf_counter() - started) * 1000, exact=result.exact,
                                        generation=result.generation, offset=request.offset))


def checked_answer(body: SearchBody, engine: Engine, settings: Settings, http: Request) -> Response:
    check_query(body.query, ["body", "query"], settings)
    return answer(body, engine, resolved(body, engine, settings, http))


@router.post("/search", response_model=SearchResponse, response_model_exclude_none=True)
async def search(body: SearchBody, http: Request, engine: EngineDep, settings: SettingsDep):
    """Top-k for one query (a page of it with ``offset``), among the documents ``filter`` keeps."""
    if not might_be_light(body, engine):
        return await run_in_threadpool(checked_answer, body, engine, settings, http)
    check_query(body.query, ["body", "query"], settings)
    request = resolved(body, engine, settings, http)
    if engine.light(request):
        return answer(body, engine, request)
    return await run_in_threadpool(answer, body, engine, request)


@router.post("/search/batch", response_model=BatchResponse, response_model_exclude_none=True)
def search_batch(body: BatchRequest, http: Request, engine: EngineDep, settings: SettingsDep):
    """Top-k for many queries in one call, answered together (multi-threaded across queries)."""
    if len(body.queries) > settings.max_batch:
        raise HTTPException(413, detail=f"{len(body.queries)} queries in one batch, over the server's limit of "
                                        f"{settings.max_batch} (LSR_MAX_BATCH); split the batch")
    for i, query in enumerate(body.queries):
        check_query(query, ["body", "queries", i], settings)
    request = resolved(body, engine, settings, http)
    started = time.perf_counter()
    results = engine.search_batch(body.queries, request=request)
    return json_response(BatchResponse(results=[BatchResult(hits=hits_out(r), expansion=r.expansion) for r in results],
                                       mode=request.mode,
                                       components=list(request.components),
                                       took_ms=(time.perf_counter() - started) * 1000,
                                       exact=all(r.exact for r in results), generation=results[0].generation,
                                       offset=request.offset))


@router.post("/encode", response_model=EncodeResponse)
def encode(body: EncodeRequest, engine: EngineDep, settings: SettingsDep):
    """The sparse vector of a text as the index's encoder makes it: {token: weight}, largest first."""
    check_query(body.text, ["body", "text"], settings)
    encoder = engine.sparse_encoder()
    batch = encoder.encode_queries([body.text]) if body.side == "query" else encoder.encode_documents([body.text])
    ids, weights = batch.row(0)
    order = sorted(range(len(ids)), key=lambda i: -weights[i])
    tokens = encoder.tokenizer.convert_ids_to_tokens(ids.tolist())
    return EncodeResponse(vector={tokens[i]: float(weights[i]) for i in order}, nnz=len(ids),
                          model_used=body.side == "document" or encoder.needs_model_for_queries)
