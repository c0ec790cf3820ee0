"""The HTTP API: a FastAPI app factory whose lifespan loads the Searcher once."""

from __future__ import annotations

import time
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from service.searcher import Searcher
from service.settings import Settings


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(..., min_length=1, description="query text", examples=["statins and breast cancer"])
    k: StrictInt = Field(10, ge=1, description="number of hits (at most LSR_MAX_K, default 1000)")


class HitOut(BaseModel):
    id: str
    score: float


class SearchResponse(BaseModel):
    hits: list[HitOut]
    took_ms: float


class Health(BaseModel):
    status: str
    documents: int


def get_searcher(request: Request) -> Searcher:
    return request.app.state.searcher


def create_app(settings: Settings | None = None, searcher: Searcher | None = None) -> FastAPI:
    """Build the app. The lifespan opens ``settings.index`` unless a ready ``searcher`` is given (tests)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.searcher = searcher or Searcher.open(settings.index, device=settings.device)
        app.state.searcher.search("warm up", 1)  # compile the kernel before the first request
        yield

    app = FastAPI(title="lsr", description="Learned sparse retrieval search API", lifespan=lifespan)
    app.state.settings = settings

    @app.post("/search", response_model=SearchResponse)
    def search(body: SearchRequest, searcher: Annotated[Searcher, Depends(get_searcher)]) -> SearchResponse:
        if not body.query.strip():
            raise HTTPException(422, detail=[{"loc": ["body", "query"], "msg": "query is blank",
                                              "type": "value_error"}])
        if len(body.query) > settings.max_query_chars:
            raise HTTPException(422, detail=[{"loc": ["body", "query"], "type": "value_error",
                                              "msg": f"query is longer than {settings.max_query_chars} characters"}])
        if body.k > settings.max_k:
            raise HTTPException(422, detail=[{"loc": ["body", "k"], "type": "value_error",
                                              "msg": f"k must be <= {settings.max_k}"}])
        started = time.perf_counter()
        result = searcher.search(body.query, body.k)
        took_ms = (time.perf_counter() - started) * 1000
        return SearchResponse(hits=[HitOut(id=i, score=s) for i, s in zip(result.ids, result.scores)], took_ms=took_ms)

    @app.get("/healthz", response_model=Health)
    def healthz(searcher: Annotated[Searcher, Depends(get_searcher)]) -> Health:
        return Health(status="ok", documents=searcher.index.doc_count)

    return app
