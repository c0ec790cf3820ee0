"""What a search returns: hits (id, score, and on request the stored title/text and an explanation) and results.

``SearchResult.exact`` comes from the retrievers that answered: True only when every one of them returned the exact
top-k of its own scoring function (block-max and exhaustive kernels, flat FAISS, BM25); False for approximate
pruning knobs, HNSW, or Lucene's integer-rounded query weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

COMPONENTS = ("sparse", "dense", "bm25")  # what an index can be searched by; a hybrid fuses two or three


@dataclass(frozen=True, slots=True)
class Contribution:
    """One query token of a sparse match: query weight x document weight (dequantized) = contribution."""

    token: str
    query_weight: float
    document_weight: float
    contribution: float
    feedback: bool = False  # a term the query got from pseudo-relevance feedback (not in the query as encoded)


@dataclass(frozen=True, slots=True)
class Hit:
    id: str
    score: float
    title: str | None = None  # with return_documents=True and stored texts
    text: str | None = None
    explanation: list[Contribution] | None = None  # with explain=True: the sparse tokens it matched
    component_scores: dict[str, float] | None = None  # hybrid: each component's own score (absent: not in its list)
    chunk: dict | None = None  # chunked index (max): the best chunk, {"number", "start", "end"} (characters)
    metadata: dict | None = None  # with return_metadata=True: the document's metadata


@dataclass(frozen=True, slots=True)
class Ranked:
    """One query's answer from one retriever, best first."""

    ids: list[str]
    scores: list[float]
    exact: bool = True
    postings: int = 0  # postings read (native kernel), for the cost figures of `lsr eval`
    chunks: list[tuple[int, int, int]] | None = None  # chunked index: each hit's best chunk (number, start, end)


@dataclass(frozen=True)
class SearchResult:
    """The top-k of one query, best first. Stored as columns (``ids``, ``scores``, and on request ``titles``,
    ``texts``, ``explanations``); ``hits`` builds the :class:`Hit` rows on first use, so a k = 1000 evaluation does
    not pay for a thousand objects a query."""

    ids: list[str]
    scores: list[float]
    mode: str
    components: tuple[str, ...]
    exact: bool = True
    encode_ms: float = 0.0
    retrieve_ms: float = 0.0
    postings: int = 0
    generation: int | None = None  # the index generation that answered
    titles: list[str | None] | None = None
    texts: list[str | None] | None = None
    explanations: list[list[Contribution]] | None = None
    chunks: list[dict | None] | None = None
    metadata: list[dict] | None = None
    offset: int = 0  # the rank (from 0) of the first hit: a page
    expansion: dict | None = None  # feedback: per side, the expanded query's terms ({"term", "weight", "added"})
    per_component: dict[str, Ranked] = field(default_factory=dict, repr=False)

    @cached_property
    def component_scores(self) -> list[dict[str, float]] | None:
        """Hybrid: per hit, each component's own score (only the components whose list held it); built on first
        use."""
        if self.mode != "hybrid":
            return None
        own = {c: dict(zip(r.ids, r.scores)) for c, r in self.per_component.items()}
        return [{c: scores[doc] for c, scores in own.items() if doc in scores} for doc in self.ids]

    @cached_property
    def hits(self) -> list[Hit]:
        n = len(self.ids)
        titles, texts = self.titles or [None] * n, self.texts or [None] * n
        explanations = self.explanations or [None] * n
        components = self.component_scores or [None] * n
        chunks = self.chunks or [None] * n
        metadata = self.metadata or [None] * n
        return [Hit(i, s, a, b, e, c, h, m) for i, s, a, b, e, c, h, m in
                zip(self.ids, self.scores, titles, texts, explanations, components, chunks, metadata)]

    def __len__(self) -> int:
        return len(self.ids)
