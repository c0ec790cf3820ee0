"""Request and response bodies of the HTTP API. Every float a request can carry is finite (a JSON ``1e309`` or
``NaN`` is a 422 naming the field, never a 500)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AllowInfNan, BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt

from lsr.fusion import Fusion

Mode = Literal["sparse", "dense", "bm25", "hybrid"]
Component = Literal["sparse", "dense", "bm25"]
Finite = Annotated[StrictFloat | StrictInt, AllowInfNan(False)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FusionIn(Strict):
    method: Literal["convex", "rrf"] = Field("convex", description="convex: per-query min-max, then a weighted sum; "
                                                                   "rrf: sum of weight/(rrf_k + rank)")
    components: list[Component] | None = Field(None, min_length=2, max_length=3,
                                               description="the fused lists (default: the index's default fusion)")
    weights: list[Annotated[Finite, Field(ge=0.0, le=1_000.0)]] | None = Field(
        None, min_length=2, max_length=3, description="one weight per component (convex default 1/n, rrf default 1)")
    alpha: Annotated[Finite, Field(ge=0.0, le=1.0)] | None = Field(
        None, description="two components, convex: weight of the first (the second gets 1 - alpha)")
    rrf_k: StrictInt = Field(60, ge=0, le=100_000)
    depth: StrictInt = Field(100, ge=1, le=10_000, description="hits per component before fusion (at least k)")

    def to_fusion(self, default_components: tuple[str, ...]) -> Fusion:
        return Fusion(method=self.method, components=tuple(self.components or default_components),
                      weights=tuple(float(w) for w in self.weights) if self.weights is not None else None,
                      alpha=float(self.alpha) if self.alpha is not None else None, rrf_k=self.rrf_k, depth=self.depth)


class SearchOptions(Strict):
    k: StrictInt = Field(10, ge=1, description="number of hits (at most the server's max_k, default 1000)")
    mode: Mode | None = Field(None, description="sparse, dense, bm25 or hybrid (default: the index's default, see "
                                                "GET /readyz); dense/bm25 need those index parts")
    fusion: FusionIn | None = Field(None, description="hybrid only; default: the index's default fusion")
    explain: StrictBool = Field(False, description="add the matching sparse tokens and their query weight x impact")
    return_documents: StrictBool = Field(False, description="add each hit's stored title and text (the index must be "
                                                            "built with --store-documents)")


class SearchRequest(SearchOptions):
    query: str = Field(..., min_length=1, description="query text", examples=["statins and breast cancer"])


class BatchRequest(SearchOptions):
    queries: list[str] = Field(..., min_length=1, description="query texts, answered together")


class Contribution(BaseModel):
    token: str
    query_weight: float
    document_weight: float
    contribution: float


class HitOut(BaseModel):
    id: str
    score: float
    title: str | None = None
    text: str | None = None
    explanation: list[Contribution] | None = None
    component_scores: dict[str, float] | None = Field(None, description="hybrid: each component's own score")
    chunk: dict | None = Field(None, description="chunked index: the best chunk {number, start, end} (characters)")


class SearchResponse(BaseModel):
    hits: list[HitOut]
    mode: str
    components: list[str]
    took_ms: float
    exact: bool = Field(description="true when every component returned its exact top-k; false for an approximate "
                                    "pruning setting (prune_alpha < 1, query_cut > 0), HNSW, or the Lucene backend")
    generation: int | None = Field(None, description="the index generation that answered (one for the whole search)")


class BatchResult(BaseModel):
    hits: list[HitOut]


class BatchResponse(BaseModel):
    results: list[BatchResult]
    mode: str
    components: list[str]
    took_ms: float
    exact: bool
    generation: int | None = None


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
    generation: int
    segments: int
    encoder: str
    modes: list[str]
    default_mode: str
    default_fusion: dict | None
    backend: str
    exact: bool
    documents_stored: bool
    writable: bool


class DocumentIn(Strict):
    id: str = Field(..., min_length=1, max_length=512, description="external document id")
    title: str = Field("", description="optional title (encoded as title + ' ' + text)")
    text: str = Field(..., description="the document's text")


class DocumentsIn(Strict):
    documents: list[DocumentIn] = Field(..., min_length=1, description="documents to add or replace, by id")


class DocumentBody(Strict):
    title: str = Field("", description="optional title")
    text: str = Field(..., description="the document's text")


class WriteOut(BaseModel):
    generation: int = Field(description="the generation the write was committed as (durable on disk)")
    added: int
    replaced: int
    unchanged: int = Field(description="replaces with the same title and text: nothing re-encoded")
    deleted: int
    truncated: int = Field(description="documents cut at the encoder's window (index built without chunking)")
    took_ms: float
