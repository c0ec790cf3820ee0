"""Lexical retrievers: the index's BM25 part and bm25s over a corpus (BM25 through Pyserini, the BEIR reference,
is :class:`lsr.lucene.retriever.PyseriniBm25Retriever`)."""

from __future__ import annotations

from collections.abc import Sequence

from lsr.index.segment import gather
from lsr.index.selection import select
from lsr.request import SearchRequest, as_request
from lsr.results import Ranked
from lsr.retrievers import Capabilities


class _OneQueryAtATime:
    """A lexical retriever that answers the queries of a batch one by one (``_one``)."""

    component = "bm25"
    takes = "text"
    exact = True
    capabilities = Capabilities(why_not_filterable="a corpus-level BM25 baseline holds no metadata; filter the "
                                                   "index's own BM25 part (lsr index --bm25)")

    def warm_up(self) -> None:
        self.retrieve(["warm up"], 1)

    def retrieve(self, queries: Sequence[str], request: SearchRequest | int, threads: int | None = None) -> list[Ranked]:
        k = as_request(request, threads).depth
        return [self._one(query, k) for query in queries]

    def _one(self, query: str, k: int) -> Ranked:
        raise NotImplementedError


class Bm25sRetriever(_OneQueryAtATime):
    """bm25s (Lucene's BM25 formula; lowercase, English stopwords, Snowball stemming). Only documents sharing a term
    with the query are ranked."""

    name = "bm25s"

    def __init__(self, bm25) -> None:
        self.bm25 = bm25

    def _one(self, query: str, k: int) -> Ranked:
        ids, scores = self.bm25.search(query, k)
        keep = scores > 0
        return Ranked(ids=[d for d, kept in zip(ids, keep) if kept], scores=scores[keep].astype(float).tolist())


class LexicalRetriever:
    """The index's BM25 part over a snapshot: per-segment postings, statistics (N, df, average length) from the
    live documents of that snapshot, bm25s's scores to the bit (:mod:`lsr.index.lexical`). Only documents sharing a
    term with the query are ranked; ties go to the earlier document."""

    component = "bm25"
    takes = "text"
    name = "bm25"
    exact = True
    capabilities = Capabilities(writable=True, light=True, filterable=True)  # in-process postings

    def __init__(self, snapshot) -> None:
        import threading

        import numpy as np

        self.snapshot = snapshot
        params = snapshot.index.manifest.bm25
        self.k1, self.b = float(params["k1"]), float(params["b"])
        self.views = [view for view in snapshot.views]
        self.df = [_live_df(view) for view in self.views]
        self.live = [np.zeros(0, np.bool_) if view.deleted is None else ~view.deleted for view in self.views]
        self.documents = sum(view.live_documents for view in self.views)
        lengths = 0
        for view, live in zip(self.views, self.live):
            all_lengths = np.asarray(view.segment.lexical.lengths, dtype=np.int64)
            lengths += int(all_lengths.sum() if view.deleted is None else all_lengths[live].sum())
        self.avg_length = lengths / self.documents if self.documents else 1.0
        self._local = threading.local()
        self._np = np

    def _analyzer(self):
        analyzer = getattr(self._local, "analyzer", None)
        if analyzer is None:
            from lsr.index.lexical import Analyzer

            analyzer = self._local.analyzer = Analyzer()
        return analyzer

    def warm_up(self) -> None:
        self.retrieve(["warm up"], 1)

    def analyze(self, texts: Sequence[str]) -> list[list[str]]:
        """The terms BM25 reads of each text (lowercased, stopwords out, stemmed: the index's analyzer)."""
        return self._analyzer()(list(texts))

    def retrieve(self, queries: Sequence[str], request: SearchRequest | int, threads: int | None = None) -> list[Ranked]:
        """BM25 over the documents the filter keeps; the statistics stay those of every live document."""
        return self.retrieve_weighted([[(t, 1.0) for t in tokens] for tokens in self.analyze(queries)], request,
                                      threads)

    def retrieve_weighted(self, queries: Sequence[Sequence[tuple[str, float]]], request: SearchRequest | int,
                          threads: int | None = None) -> list[Ranked]:
        """BM25 of weighted analyzed queries: sum over the query's terms of weight x the term's BM25 (a text query is
        every term at weight 1, a repeated term counted each time; RM3's expanded queries weigh theirs)."""
        from lsr.index.lexical import idf, score_segment

        np = self._np
        request = as_request(request, threads)
        k = request.depth
        live = self.live if request.filter is None else [select(view, request.filter).doc_mask() for view in self.views]
        out = []
        if not self.views:  # an index created empty, not written yet
            return [Ranked(ids=[], scores=[], exact=True) for _ in queries]
        for weighted in queries:
            tokens = [t for t, _ in weighted]
            term_weights = np.array([w for _, w in weighted], dtype=np.float32)
            lookups = [view.segment.lexical.lookup(tokens) for view in self.views]
            df = np.zeros(len(tokens), dtype=np.int64)
            for ids, segment_df in zip(lookups, self.df):
                df += np.where(ids >= 0, segment_df[np.maximum(ids, 0)], 0)
            idfs = np.array([idf(int(d), self.documents) if d > 0 else 0.0 for d in df], dtype=np.float32)
            idfs = idfs * term_weights if len(term_weights) else idfs
            scores, locals_, positions = [], [], []
            for position, (view, ids) in enumerate(zip(self.views, lookups)):
                lexical = view.segment.lexical
                n = len(lexical.lengths)
                acc = np.zeros(n, dtype=np.float32)
                touched = np.empty(n, dtype=np.int64)
                count = score_segment(lexical.offsets, lexical.docs, lexical.tfs, lexical.lengths, live[position],
                                      ids, idfs, self.k1, self.b, self.avg_length, acc, touched)
                local = touched[:count]
                values = acc[local]
                keep = values > 0
                scores.append(values[keep])
                locals_.append(local[keep])
                positions.append(np.full(int(keep.sum()), position))
            scores_a, locals_a, positions_a = (np.concatenate(x) for x in (scores, locals_, positions))
            order = np.lexsort((locals_a, positions_a, -scores_a))[:k]  # score, then the documents' order
            ids = gather(self.views, positions_a[order], locals_a[order], "ids")
            out.append(Ranked(ids=ids, scores=scores_a[order].astype(float).tolist(), exact=True))
        return out


def _live_df(view):
    """Per term of the segment, its live documents (cached on the segment, by deletes file)."""
    cache = view.segment.__dict__.setdefault("_live_df", {})
    key = id(view.deleted) if view.deleted is not None else None
    if key not in cache:
        cache[key] = view.segment.lexical.live_df(None if view.deleted is None else ~view.deleted)
    return cache[key]
