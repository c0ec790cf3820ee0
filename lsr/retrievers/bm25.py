"""Lexical retrievers: the index's BM25 part (bm25s) and BM25 through Pyserini (Lucene), the BEIR reference."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from lsr.corpus import read_corpus
from lsr.results import Ranked
from lsr.retrievers import check_batch


class _OneQueryAtATime:
    """A lexical retriever that answers the queries of a batch one by one (``_one``)."""

    component = "bm25"
    takes = "text"
    exact = True

    def warm_up(self) -> None:
        self.retrieve(["warm up"], 1)

    def retrieve(self, queries: Sequence[str], k: int, threads: int | None = None) -> list[Ranked]:
        check_batch(queries, k)
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


class PyseriniBm25Retriever(_OneQueryAtATime):
    """BM25 as BEIR reports it: Pyserini's Lucene BM25 (k1 0.9, b 0.4) over a multifield index (title and text as
    separate fields, equal boosts). The Lucene index is built once into ``index_dir`` and reused."""

    name = "pyserini-bm25"

    def __init__(self, index_dir: str | Path) -> None:
        from lsr.lucene import start_jvm

        start_jvm()
        from pyserini.search.lucene import LuceneSearcher

        self.searcher = LuceneSearcher(str(index_dir))
        self.searcher.set_bm25(0.9, 0.4)
        self.fields = {"contents": 1.0, "title": 1.0}
        self.index_dir = Path(index_dir)
        self.build_s: float | None = None

    @classmethod
    def for_corpus(cls, corpus: str | Path, index_dir: str | Path | None = None) -> PyseriniBm25Retriever:
        """Open (building it first if needed) the multifield BM25 index of ``corpus`` (default location:
        ``var/lucene-bm25/<corpus folder name>``)."""
        from lsr.lucene import build_bm25_index, check_available

        check_available()
        index_dir = Path(index_dir or Path("var/lucene-bm25") / Path(corpus).resolve().name)
        build_s = None
        if not index_dir.exists():
            tmp = index_dir.with_name(index_dir.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            records = ({"id": d.id, "contents": d.text, "title": d.title} for d in read_corpus(corpus))
            build_s = build_bm25_index(records, tmp)
            tmp.rename(index_dir)
        retriever = cls(index_dir)
        retriever.build_s = build_s
        return retriever

    @property
    def doc_count(self) -> int:
        return self.searcher.num_docs

    def _one(self, query: str, k: int) -> Ranked:
        hits = self.searcher.search(query, k=k, fields=self.fields)
        return Ranked(ids=[h.docid for h in hits], scores=[float(h.score) for h in hits])
