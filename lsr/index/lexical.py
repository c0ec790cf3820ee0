"""The index's BM25 part, per segment, with collection statistics taken from the live documents.

A segment stores, for its documents, the analyzed terms (bm25s's analysis: lowercase, the ``\\b\\w\\w+\\b`` token
pattern, English stopwords removed, Snowball English stemming) as postings: a sorted term list, and per term the
documents and term frequencies; plus each document's length (its number of analyzed tokens). Nothing that depends
on the rest of the collection is stored, so segments stay immutable while documents come and go.

At query time the statistics come from the live documents of the searched generation: N (live documents), df(t)
(live documents holding t, summed over segments) and the average length (live tokens / N). The score is bm25s's
"lucene" BM25, reproduced to the bit (float32 where bm25s stores float32):

    score(q, d) = sum over query tokens t (repeated tokens count again) of
                  f32( f32(idf(t)) * tf / (k1 * (1 - b + b * len(d) / avglen) + tf) )
    idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5))

so before and after a merge, with deletes or not, the scores equal those of a fresh bm25s build of the live
documents (tests compare them).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

from lsr.index import files

ANALYZER = "bm25s: lowercase, \\b\\w\\w+\\b tokens, English stopwords, Snowball English stemmer"
FILES = ("terms", "offsets", "docs", "tfs", "lengths")


class Analyzer:
    """bm25s's text analysis, one instance per thread of use (the stemmer keeps a cache)."""

    def __init__(self) -> None:
        import bm25s
        import Stemmer

        self._bm25s = bm25s
        self._stemmer = Stemmer.Stemmer("english")

    def __call__(self, texts: Sequence[str]) -> list[list[str]]:
        if not texts:
            return []
        return self._bm25s.tokenize(list(texts), stopwords="en", stemmer=self._stemmer, show_progress=False,
                                    return_ids=False)


@dataclass
class LexicalSegment:
    """Postings of analyzed terms for one segment's documents (local document numbers)."""

    terms: np.ndarray  # sorted unique terms (unicode)
    offsets: np.ndarray  # int64 (n_terms + 1)
    docs: np.ndarray  # uint32, increasing within a term
    tfs: np.ndarray  # uint32
    lengths: np.ndarray  # uint32, one a document

    @classmethod
    def build(cls, analyzed: Sequence[Sequence[str]]) -> LexicalSegment:
        counts = [Counter(tokens) for tokens in analyzed]
        vocabulary = sorted({term for c in counts for term in c})
        terms = np.asarray(vocabulary, dtype=str) if vocabulary else np.zeros(0, dtype="<U1")
        index = {term: i for i, term in enumerate(vocabulary)}
        rows, docs, tfs = [], [], []
        for doc, c in enumerate(counts):
            for term, tf in c.items():
                rows.append(index[term])
                docs.append(doc)
                tfs.append(tf)
        rows_a = np.asarray(rows, dtype=np.int64)
        order = np.lexsort((np.asarray(docs, dtype=np.int64), rows_a))  # by term, then document
        offsets = np.zeros(len(vocabulary) + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows_a, minlength=len(vocabulary)), out=offsets[1:])
        return cls(terms=terms, offsets=offsets, docs=np.asarray(docs, dtype=np.uint32)[order],
                   tfs=np.asarray(tfs, dtype=np.uint32)[order],
                   lengths=np.asarray([len(tokens) for tokens in analyzed], dtype=np.uint32))

    @classmethod
    def load(cls, directory: Path, mmap: bool = True) -> LexicalSegment:
        mode = "r" if mmap else None
        return cls(**{name: np.load(directory / f"{name}.npy", mmap_mode=mode, allow_pickle=False) for name in FILES})

    def save(self, directory: Path) -> None:
        files.mkdir(directory)
        for name in FILES:
            files.save_array(directory / f"{name}.npy", np.asarray(getattr(self, name)))

    def live_df(self, live: np.ndarray | None) -> np.ndarray:
        """Per term, the number of live documents holding it (``live``: bool a document, None = all)."""
        if live is None:
            return np.diff(self.offsets)
        if len(self.docs) == 0:
            return np.zeros(len(self.terms), dtype=np.int64)
        alive = np.asarray(live, dtype=np.int64)[np.asarray(self.docs, dtype=np.int64)]
        sums = np.add.reduceat(alive, np.minimum(self.offsets[:-1], len(alive) - 1))
        return np.where(np.diff(self.offsets) > 0, sums, 0)

    def lookup(self, query_terms: Sequence[str]) -> np.ndarray:
        """The local term number of each query term, or -1."""
        if len(self.terms) == 0 or not query_terms:
            return np.full(len(query_terms), -1, dtype=np.int64)
        wanted = np.asarray(query_terms, dtype=str)
        at = np.searchsorted(self.terms, wanted)
        at = np.minimum(at, len(self.terms) - 1)
        return np.where(self.terms[at] == wanted, at, -1).astype(np.int64)


def idf(df: int, n: int) -> float:
    """BM25 (Lucene) IDF, as bm25s stores it: float32 of ln(1 + (N - df + 0.5) / (df + 0.5))."""
    return float(np.float32(math.log(1 + (n - df + 0.5) / (df + 0.5))))


@numba.njit(cache=True)
def score_segment(offsets, docs, tfs, lengths, live, term_ids, idfs, k1, b, avg_length, acc, touched):
    """Add one segment's BM25 contributions to ``acc`` (float32, a slot a local document); return how many documents
    were touched (listed in ``touched``). Query terms in query order, a repeated token counts again (as bm25s)."""
    n_touched = 0
    for j in range(len(term_ids)):
        t = term_ids[j]
        if t < 0:
            continue
        weight = np.float64(idfs[j])
        for p in range(offsets[t], offsets[t + 1]):
            doc = docs[p]
            if len(live) and not live[doc]:
                continue
            tf = np.float64(tfs[p])
            norm = k1 * ((1.0 - b) + b * np.float64(lengths[doc]) / avg_length)
            value = np.float32(weight * (tf / (norm + tf)))
            if acc[doc] == 0.0 and value > 0.0:
                touched[n_touched] = doc
                n_touched += 1
            acc[doc] += value
    return n_touched


def select(part: LexicalSegment, keep: np.ndarray) -> LexicalSegment:
    """Only the documents ``keep`` (local numbers, increasing), renumbered 0..len(keep)-1."""
    keep = np.asarray(keep, dtype=np.int64)
    new_number = np.full(len(part.lengths), -1, dtype=np.int64)
    new_number[keep] = np.arange(len(keep))
    docs = new_number[np.asarray(part.docs, dtype=np.int64)]
    term_of = np.repeat(np.arange(len(part.terms), dtype=np.int64), np.diff(part.offsets))
    kept = docs >= 0
    used = np.unique(term_of[kept])
    remap = np.full(len(part.terms), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    terms = remap[term_of[kept]]
    offsets = np.zeros(len(used) + 1, dtype=np.int64)
    np.cumsum(np.bincount(terms, minlength=len(used)), out=offsets[1:])
    return LexicalSegment(terms=np.asarray(part.terms)[used], offsets=offsets, docs=docs[kept].astype(np.uint32),
                          tfs=np.asarray(part.tfs)[kept], lengths=np.asarray(part.lengths)[keep])


def concatenate(parts: Sequence[LexicalSegment]) -> LexicalSegment:
    """The documents of ``parts``, one after the other (part i's documents follow part i-1's)."""
    parts = [p for p in parts]
    if not parts:
        return LexicalSegment.build([])
    vocabulary = np.unique(np.concatenate([np.asarray(p.terms) for p in parts])) if any(len(p.terms) for p in parts) \
        else np.zeros(0, dtype="<U1")
    terms, docs, tfs = [], [], []
    base = 0
    for p in parts:
        term_of = np.repeat(np.searchsorted(vocabulary, np.asarray(p.terms)), np.diff(p.offsets))
        terms.append(term_of.astype(np.int64))
        docs.append(np.asarray(p.docs, dtype=np.int64) + base)
        tfs.append(np.asarray(p.tfs))
        base += len(p.lengths)
    terms_a, docs_a = np.concatenate(terms), np.concatenate(docs)
    order = np.lexsort((docs_a, terms_a))
    offsets = np.zeros(len(vocabulary) + 1, dtype=np.int64)
    np.cumsum(np.bincount(terms_a, minlength=len(vocabulary)), out=offsets[1:])
    return LexicalSegment(terms=vocabulary, offsets=offsets, docs=docs_a[order].astype(np.uint32),
                          tfs=np.concatenate(tfs)[order].astype(np.uint32),
                          lengths=np.concatenate([np.asarray(p.lengths) for p in parts]).astype(np.uint32))
