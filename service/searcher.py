"""The Searcher: an index plus its encoder; encodes queries and scores them exactly with the numba kernel.

The same object serves the HTTP API and offline evaluation, so both measure the same search path.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from indexer.inverted import IndexError_, InvertedIndex
from service.kernel import score_batch, score_batch_serial
from training.encoders import ENCODER_CONFIG_FILE, SparseBatch, SparseEncoder, load_encoder


class Hit(NamedTuple):
    id: str
    score: float


@dataclass(frozen=True)
class SearchResult:
    """Top-k of one query, best first: external ids and their scores (kept as lists; ``hits`` pairs them)."""

    ids: list[str]
    scores: list[float]
    postings: int  # postings scored for this query
    encode_ms: float
    score_ms: float
    rows: list[int] = field(default_factory=list)  # index positions of the hits (0..doc_count-1)

    @property
    def hits(self) -> list[Hit]:
        return [Hit(i, s) for i, s in zip(self.ids, self.scores)]


class Searcher:
    """Exact top-k search over a native index. Thread-safe for concurrent searches."""

    def __init__(self, index: InvertedIndex, encoder: SparseEncoder) -> None:
        if not isinstance(encoder, SparseEncoder):
            raise IndexError_("the native index is searched with a sparse encoder (splade or inference-free)")
        expected = index.manifest.encoder.get("identity")
        actual = encoder.identity()
        if expected != actual:
            raise IndexError_(
                f"{index.directory} was built with encoder {expected} "
                f"({index.manifest.encoder.get('kind')}, from {index.manifest.encoder.get('source') or '?'}), "
                f"but the given encoder is {actual} ({encoder.config.kind}); search it with its own encoder "
                f"(drop --encoder to use {index.encoder_directory}) or rebuild the index with this encoder"
            )
        if encoder.vocab_size != index.manifest.vocab_size:
            raise IndexError_(f"encoder vocabulary {encoder.vocab_size} != index vocabulary {index.manifest.vocab_size}")
        self.index = index
        self.encoder = encoder
        self.threads = max(1, int(os.environ.get("NUMBA_NUM_THREADS", os.cpu_count() or 1)))

    @classmethod
    def open(cls, index_dir: str | Path, encoder: str | Path | None = None, device: str | None = None,
             mmap: bool = True) -> Searcher:
        """Load an index and the encoder stored with it (or ``encoder``, which must be the one it was built with)."""
        index = InvertedIndex(index_dir, mmap=mmap)
        if encoder is not None and not (Path(encoder) / ENCODER_CONFIG_FILE).exists():
            raise IndexError_(f"--encoder {encoder} is not an lsr encoder directory (no {ENCODER_CONFIG_FILE}); "
                              f"queries must use the encoder the index was built with, stored in {index.encoder_directory}")
        return cls(index, load_encoder(encoder or index.encoder_directory, device=device))

    def search(self, query: str, k: int = 10) -> SearchResult:
        return self.search_batch([query], k)[0]

    def search_batch(self, queries: Sequence[str], k: int = 10, threads: int | None = None) -> list[SearchResult]:
        started = time.perf_counter()
        vectors = self.encoder.encode_queries(list(queries))
        encode_ms = (time.perf_counter() - started) * 1000 / max(1, len(queries))
        return self.search_vectors(vectors, k, threads, encode_ms)

    def search_vectors(self, vectors: SparseBatch, k: int = 10, threads: int | None = None,
                       encode_ms: float = 0.0) -> list[SearchResult]:
        """Top-k for already-encoded queries (token ids + weights)."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        vectors.validate(self.index.manifest.vocab_size)
        if not (vectors.weights > 0).all():  # zero weights add nothing; the kernel assumes positive weights
            rows = (vectors.row(i) for i in range(len(vectors)))
            vectors = SparseBatch.from_rows([(ids[w > 0], w[w > 0]) for ids, w in rows])
        k_eff = max(1, min(k, self.index.doc_count))
        threads = threads or self.threads
        kernel = score_batch_serial if threads == 1 or len(vectors) == 1 else score_batch
        started = time.perf_counter()
        per_segment = [
            (segment, *kernel(segment.offsets, segment.doc_ids, segment.impacts, vectors.indptr, vectors.indices,
                              vectors.weights, segment.info.doc_count, k_eff, threads))
            for segment in self.index.segments
        ]
        score_ms = (time.perf_counter() - started) * 1000 / max(1, len(vectors))
        results = []
        for q in range(len(vectors)):
            ids: list[str] = []
            scores: list[float] = []
            global_docs: list[int] = []
            for segment, docs, seg_scores, _ in per_segment:
                found = docs[q][docs[q] >= 0]
                ids.extend(segment.ids[found].tolist())
                scores.extend((seg_scores[q][: len(found)].astype(np.float64) / segment.info.scale).tolist())
                global_docs.extend((found + segment.info.doc_base).tolist())
            if len(per_segment) > 1:  # merge the segments' top-k lists: score desc, then global doc id
                order = sorted(range(len(ids)), key=lambda i: (-scores[i], global_docs[i]))[:k]
                ids, scores = [ids[i] for i in order], [scores[i] for i in order]
                global_docs = [global_docs[i] for i in order]
            postings = sum(int(seg_postings[q]) for _, _, _, seg_postings in per_segment)
            results.append(SearchResult(ids=ids, scores=scores, postings=postings, encode_ms=encode_ms,
                                        score_ms=score_ms, rows=global_docs))
        return results

    def explain(self, token_ids: np.ndarray, weights: np.ndarray, row: int) -> list[tuple[int, float, float]]:
        """(token id, query weight, document impact) for every query token the document at ``row`` holds, largest
        contribution first. Impacts are as scored (dequantized), so the contributions sum to the hit's score."""
        for segment in self.index.segments:
            local = row - segment.info.doc_base
            if 0 <= local < segment.info.doc_count:
                break
        else:
            raise KeyError(row)
        out = []
        for token, weight in zip(token_ids.tolist(), weights.tolist()):
            start, end = int(segment.offsets[token]), int(segment.offsets[token + 1])
            postings = segment.doc_ids[start:end]
            at = int(np.searchsorted(postings, local))
            if at < len(postings) and int(postings[at]) == local:
                out.append((token, float(weight), float(segment.impacts[start + at]) / segment.info.scale))
        out.sort(key=lambda item: -item[1] * item[2])
        return out
