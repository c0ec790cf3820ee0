"""Request and response bodies of the HTTP API. Every float a request can carry is finite (a JSON ``1e309`` or
``NaN`` is a 422 naming the field, never a 500)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AllowInfNan, BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt

from lsr import request as core
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
    normalization: Literal["minmax", "zscore", "arctan"] = Field(
        "minmax", description="convex: each list's per-query min-max, z-score, or Milvus's arctan")

    def to_fusion(self, default_components: tuple[str, ...]) -> Fusion:
        return Fusion(method=self.method, components=tuple(self.components or default_components),
                      weights=tuple(float(w) for w in self.weights) if self.weights is not None else None,
                      alpha=float(self.alpha) if self.alpha is not None else None, rrf_k=self.rrf_k, depth=self.depth,
                      normalization=self.normalization)


FILTER_DESCRIPTION = (
    "only documents whose metadata the filter keeps. One clause: {\"term\": {FIELD: VALUE}} (keyword, keywords, "
    "boolean, integer), {\"terms\": {FIELD: [VALUES]}}, {\"range\": {FIELD: {\"gte\"|\"gt\"|\"lte\"|\"lt\": "
    "V}}} (integer, float, datetime), {\"exists\": {\"field\": FIELD}}, or {\"must\": [...], \"should\": [...], "
    "\"must_not\": [...]} (all of, at least one of, none of; nested up to 8 deep). The answer is the exact top-k of "
    "the documents kept. A mistake is a 422 naming its path (filter.must[1].range.year).")


class PruningIn(Strict):
    method: Literal["blockmax", "exhaustive"] = "blockmax"
    alpha: Annotated[Finite, Field(gt=0.0, le=1.0)] = Field(1.0, description="APPROXIMATE below 1")
    query_cut: StrictInt = Field(0, ge=0, le=1024, description="APPROXIMATE above 0: the heaviest N query terms")


class FeedbackIn(Strict):
    docs: StrictInt = Field(10, ge=1, le=1000, description="first-pass documents whose vectors expand the query")
    terms: StrictInt = Field(50, ge=1, le=100_000, description="strongest terms the expanded query keeps")
    weight: Annotated[Finite, Field(ge=0.0, le=1.0)] = Field(0.5, description="the original query's share (the "
                                                                              "documents' centroid gets 1 - weight)")
    bm25_terms: StrictInt = Field(10, ge=1, le=10_000, description="bm25 (RM3): expansion terms kept")
    components: list[Literal["sparse", "bm25"]] = Field(["sparse", "bm25"], min_length=1,
                                                        description="the sides expanded: sparse (Rocchio), bm25 (RM3)")


class SearchOptions(Strict):
    k: StrictInt = Field(10, ge=1, description="number of hits (k + offset at most the server's max_k, default 1000)")
    offset: StrictInt = Field(0, ge=0, description="a page: skip this many hits (ranks offset+1 .. offset+k of one "
                                                   "deeper search)")
    mode: Mode | None = Field(None, description="sparse, dense, bm25 or hybrid (default: the index's default, see "
                                                "GET /readyz); dense/bm25 need those index parts")
    fusion: FusionIn | None = Field(None, description="hybrid only; default: the index's default fusion")
    filter: dict[str, Any] | None = Field(None, description=FILTER_DESCRIPTION,
                                          examples=[{"must": [{"term": {"tenant": "acme"}},
                                                              {"range": {"year": {"gte": 2010}}}]}])
    explain: StrictBool = Field(False, description="add the matching sparse tokens and their query weight x impact")
    return_documents: StrictBool = Field(False, description="add each hit's stored title and text (the index must be "
                                                            "built with --store-documents)")
    return_metadata: StrictBool = Field(False, description="add each hit's metadata")
    pruning: PruningIn | None = Field(None, description="the native kernel's top-k (default: the server's)")
    feedback: FeedbackIn | Literal[False] | None = Field(
        None, description="pseudo-relevance feedback: the top documents expand the query (sparse: Rocchio over their "
                          "vectors; bm25: RM3 over their texts), searched again exactly; explain marks the terms it "
                          "added. Default: the index default's, in its default mode; false: none")

    def to_request(self, default_components: tuple[str, ...]) -> core.SearchRequest:
        """The one request object this body asks for (checked once more by the engine)."""
        fusion = self.fusion.to_fusion(default_components) if self.fusion is not None else None
        pruning = core.Pruning(self.pruning.method, float(self.pruning.alpha), self.pruning.query_cut) \
            if self.pruning is not None else None
        feedback = core.Feedback(self.feedback.docs, self.feedback.terms, float(self.feedback.weight),
                                 self.feedback.bm25_terms, tuple(self.feedback.components)) \
            if isinstance(self.feedback, FeedbackIn) else self.feedback
        return core.SearchRequest(k=self.k, offset=self.offset, mode=self.mode, fusion=fusion, filter=self.filter,
                                  explain=self.explain, return_documents=self.return_documents,
                                  return_metadata=self.return_metadata, pruning=pruning, feedback=feedback)


class SearchRequest(SearchOptions):
    query: str = Field(..., min_length=1, description="query text", examples=["statins and breast cancer"])


class BatchRequest(SearchOptions):
    queries: list[str] = Field(..., min_length=1, description="query texts, answered together")


class Contribution(BaseModel):
    token: str
    query_weight: float
    document_weight: float
    contribution: float
    feedback: bool = Field(False, description="a term pseudo-relevance feedback added to the query")


class HitOut(BaseModel):
    id: str
    score: float
    title: str | None = None
    text: str | None = None
    explanation: list[Contribution] | None = None
    component_scores: dict[str, float] | None = Field(None, description="hybrid: each component's own score")
    chunk: dict | None = Field(None, description="chunked index: the best chunk {number, start, end} (characters)")
    metadata: dict[str, Any] | None = Field(None, description="with return_metadata: the document's metadata")


EXPANSION = ("with feedback: per side (sparse, bm25), the expanded query's terms, heaviest first: {term, weight, "
             "added} (added: from the feedback documents, not the query)")


class SearchResponse(BaseModel):
    hits: list[HitOut]
    expansion: dict[str, list[dict]] | None = Field(None, description=EXPANSION)
    mode: str
    components: list[str]
    took_ms: float
    exact: bool = Field(description="true when every component returned its exact top-k; false for an approximate "
                                    "pruning setting (prune_alpha < 1, query_cut > 0), HNSW, or the Lucene backend")
    generation: int | None = Field(None, description="the index generation that answered (one for the whole search)")
    offset: int = Field(0, description="the rank (from 0) of the first hit")


class BatchResult(BaseModel):
    hits: list[HitOut]
    expansion: dict[str, list[dict]] | None = Field(None, description=EXPANSION)


class BatchResponse(BaseModel):
    results: list[BatchResult]
    mode: str
    components: list[str]
    took_ms: float
    exact: bool
    generation: int | None = None
    offset: int = 0


class EncodeRequest(Strict):
    text: str = Field(..., min_length=1)
    side: Literal["query", "document"] = "query"


class EncodeResponse(BaseModel):
    vector: dict[str, float]
    nnz: int
    model_used: bool = Field(description="false for inference-free queries: tokenizer + IDF, no model")


class DocumentOut(BaseModel):
    id: str
    title: str | None = Field(None, description="the stored title (an index built with --store-documents)")
    text: str | None = Field(None, description="the stored text (an index built with --store-documents)")
    metadata: dict[str, Any] = Field(default_factory=dict, description="the document's metadata")


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: str
    documents: int | None = None
    postings: int | None = None
    generation: int | None = None
    segments: int | None = None
    encoder: str | None = None
    modes: list[str] | None = None
    default_mode: str | None = None
    default_fusion: dict | None = None
    backend: str | None = None
    exact: bool | None = None
    documents_stored: bool | None = None
    writable: bool | None = None
    filterable: bool | None = Field(None, description="whether every component of the default mode applies a filter")
    metadata: dict[str, str] | None = Field(None, description="the index's metadata fields and their types")
    collections: int | None = Field(None, description="a data directory: the collections served")
    unavailable: dict[str, str] | None = Field(None, description="collections that cannot be served, and why")


METADATA_DESCRIPTION = ("a flat JSON object: strings, numbers, booleans, ISO 8601 date-times, lists of strings; "
                        "checked against the index's metadata schema (GET /readyz)")


class DocumentIn(Strict):
    id: str = Field(..., min_length=1, max_length=512, description="external document id")
    title: str = Field("", description="optional title (encoded as title + ' ' + text)")
    text: str = Field(..., description="the document's text")
    metadata: dict[str, Any] | None = Field(None, description=METADATA_DESCRIPTION)


class DocumentsIn(Strict):
    documents: list[DocumentIn] = Field(..., min_length=1, description="documents to add or replace, by id")


class DocumentBody(Strict):
    title: str = Field("", description="optional title")
    text: str = Field(..., description="the document's text")
    metadata: dict[str, Any] | None = Field(None, description=METADATA_DESCRIPTION)


class WriteOut(BaseModel):
    generation: int = Field(description="the generation the write was committed as (durable on disk)")
    added: int
    replaced: int
    unchanged: int = Field(description="replaces with the same title and text: nothing re-encoded")
    deleted: int
    truncated: int = Field(description="documents cut at the encoder's window (index built without chunking)")
    took_ms: float


# -- collections -----------------------------------------------------------------------------------------------------
class DefaultsIn(Strict):
    mode: Mode = Field(..., description="the mode a search without one gets")
    fusion: FusionIn | None = Field(None, description="hybrid: the default fusion (its components must be parts of "
                                                      "the collection)")


class CollectionCreate(Strict):
    encoder: str = Field("default", description="the sparse encoder: `default` (the shipped inference-free one) or "
                                                "a name the server's `encoders` setting registers")
    dense_encoder: str | None = Field(None, description="a dense encoder registered by name (a dense part)")
    bm25: StrictBool = Field(False, description="a BM25 part")
    store_documents: StrictBool = Field(False, description="store titles and texts (return_documents, GET)")
    chunk_tokens: StrictInt | None = Field(None, ge=8, le=8192, description="split longer documents into windows")
    chunk_overlap: StrictInt = Field(0, ge=0)
    max_weight: Annotated[Finite, Field(gt=0.0, le=1e6)] | None = Field(
        None, description="quantization: the weight stored as 255 (default: the encoder's calibrated maximum when it "
                          "records one, else the largest weight of the first write)")
    metadata: dict[str, str] | None = Field(None, description="metadata schema: {field: keyword|keywords|integer|"
                                                              "float|boolean|datetime}")
    unknown_fields: Literal["error", "ignore"] = Field("error", description="a document's field not in the schema")
    defaults: DefaultsIn | None = Field(None, description="the default mode and fusion (default: from the parts)")


class CollectionStats(BaseModel):
    name: str
    status: str = Field(description="ready, or unavailable (with problem)")
    problem: str | None = None
    documents: int | None = None
    segments: int | None = None
    generation: int | None = None
    bytes: int | None = None
    parts: list[str] | None = Field(None, description="what the index holds: sparse, dense, bm25, documents, "
                                                      "metadata, lucene")
    encoder: str | None = None
    modes: list[str] | None = None
    default_mode: str | None = None
    default_fusion: dict | None = None
    metadata: dict[str, str] | None = None
    max_weight: float | None = Field(None, description="the weight stored as 255 (None: set by the first write)")
    clipped_postings: int | None = Field(None, description="impacts above max_weight, stored as 255")
    writable: bool | None = None


class CollectionList(BaseModel):
    collections: list[CollectionStats]


class RestoreIn(Strict):
    as_: str = Field(..., alias="as", description="the new collection's name")


class SnapshotOut(BaseModel):
    id: str
    collection: str
    generation: int | None = None
    documents: int | None = None
    segments: int | None = None
    created: str | None = None
    hard_linked: bool | None = None
    files: int | None = None
    path: str | None = None
    problem: str | None = None


class SnapshotList(BaseModel):
    snapshots: list[SnapshotOut]


class MergeOut(BaseModel):
    generation: int | None
    segments_before: int
    segments_after: int
    documents: int
    dropped_deleted: int
    seconds: float


class Dropped(BaseModel):
    dropped: str
