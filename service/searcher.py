"""The Searcher: an index plus its encoder; encodes queries and scores them with the numba kernels (block-max pruned
and exact by default; see :class:`Pruning`).

The same object serves the HTTP API and offline evaluation, so both measure the same search path.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from indexer.inverted import IndexError_, InvertedIndex
from service import kernel
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
    exact: bool = True  # False when an approximate pruning knob (alpha < 1, query_cut) was on


    @property
    def hits(self) -> list[Hit]:
        return [Hit(i, s) for i, s in zip(self.ids, self.scores)]


PRUNING_METHODS = ("blockmax", "exhaustive")
BACKENDS = ("native", "lucene")


@dataclass(frozen=True)
class Pruning:
    """How the sparse kernel finds the top k.

    ``method``: ``blockmax`` (default: block-max pruning that returns exactly the exhaustive top-k) or ``exhaustive``
    (term-at-a-time over every posting; the reference). Approximate knobs, off by default and always reported
    (``SearchResult.exact``): ``alpha`` < 1 skips a block when alpha x its bound < the k-th score; ``query_cut`` > 0
    keeps only the query's heaviest ``query_cut`` terms.
    """

    method: str = "blockmax"
    alpha: float = 1.0
    query_cut: int = 0

    def __post_init__(self) -> None:
        if self.method not in PRUNING_METHODS:
            raise ValueError(f"pruning must be one of {', '.join(PRUNING_METHODS)}, got {self.method!r}")
        if not 0.0 < self.alpha <= 1.0:
            raise ValueError(f"prune alpha must be in (0, 1] (1 = exact), got {self.alpha}")
        if self.query_cut < 0:
            raise ValueError(f"query cut must be >= 0 (0 = keep every query term), got {self.query_cut}")
        if self.method == "exhaustive" and not self.exact:
            raise ValueError("alpha and query_cut are block-max knobs; the exhaustive kernel is always exact")

    @property
    def exact(self) -> bool:
        return self.alpha == 1.0 and self.query_cut == 0



class Searcher:
    """Exact top-k search over a native index. Thread-safe for concurrent searches."""

    def __init__(self, index: InvertedIndex, encoder: SparseEncoder, pruning: Pruning | None = None,
                 backend: str = "native") -> None:
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
        self.pruning = pruning or Pruning()
        self._local = threading.local()  # per-thread scratch of the single-threaded block-max kernel
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        self.backend = backend
        self.lucene = None
        self._rows: dict[str, int] | None = None
        if backend == "lucene":
            if not index.manifest.lucene:
                raise IndexError_(f"{index.directory} has no Lucene part; rebuild it with `lsr index ... --lucene`")
            if len(index.segments) != 1:
                raise IndexError_("the Lucene backend reads single-segment indexes")
            from service.lucene import LuceneBackend

            self.lucene = LuceneBackend(index.directory / index.manifest.lucene["directory"], encoder.token_strings(),
                                        index.segments[0].info.scale)
        elif self.pruning.method == "blockmax":
            for segment in index.segments:
                segment.kernel_arrays()  # load (or compute, for an older index) before the first query

    @classmethod
    def open(cls, index_dir: str | Path, encoder: str | Path | None = None, device: str | None = None,
             mmap: bool = True, pruning: Pruning | None = None, backend: str = "native") -> Searcher:
        """Load an index and the encoder stored with it (or ``encoder``, which must be the one it was built with)."""
        index = InvertedIndex(index_dir, mmap=mmap)
        if encoder is not None and not (Path(encoder) / ENCODER_CONFIG_FILE).exists():
            raise IndexError_(f"--encoder {encoder} is not an lsr encoder directory (no {ENCODER_CONFIG_FILE}); "
                              f"queries must use the encoder the index was built with, stored in {index.encoder_directory}")
        return cls(index, load_encoder(encoder or index.encoder_directory, device=device), pruning, backend)

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
        if self.lucene is not None:
            return self._search_lucene(vectors, k_eff, threads, encode_ms)
        started = time.perf_counter()
        per_segment = [(segment, *self._score(segment, vectors, k_eff, threads)) for segment in self.index.segments]
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
                                        score_ms=score_ms, rows=global_docs, exact=self.pruning.exact))
        return results

    def _search_lucene(self, vectors: SparseBatch, k: int, threads: int, encode_ms: float) -> list[SearchResult]:
        started = time.perf_counter()
        hits = self.lucene.search(vectors, k, threads)
        score_ms = (time.perf_counter() - started) * 1000 / max(1, len(vectors))
        if self._rows is None:
            segment = self.index.segments[0]
            self._rows = {str(d): i for i, d in enumerate(segment.ids.tolist())}
        return [SearchResult(ids=[d for d, _ in found], scores=[s for _, s in found], postings=0, encode_ms=encode_ms,
                             score_ms=score_ms, rows=[self._rows[d] for d, _ in found]) for found in hits]

    def _score(self, segment, vectors: SparseBatch, k: int, threads: int) -> tuple:
        """(docs, scores, postings read) of one segment for every query of the batch."""
        q = (vectors.indptr, vectors.indices, vectors.weights)
        n_docs = segment.info.doc_count
        serial = threads == 1 or len(vectors) == 1
        if self.pruning.method == "exhaustive":
            score = kernel.score_batch_serial if serial else kernel.score_batch
            return score(segment.offsets, segment.doc_ids, segment.impacts, *q, n_docs, k, threads)
        ix, block_size, alpha, cut = segment.kernel_arrays(), segment.block_size, self.pruning.alpha, self.pruning.query_cut
        if not serial:
            return kernel.score_batch_blockmax(ix, block_size, *q, n_docs, k, threads, alpha, cut)[:3]
        longest = int(np.diff(vectors.indptr).max()) if len(vectors) else 1
        scratches = getattr(self._local, "scratch", None)
        if scratches is None:
            scratches = self._local.scratch = {}
        scratch = scratches.get(segment.info.name)
        if scratch is None or len(scratch[1]) < longest:
            scratch = scratches[segment.info.name] = kernel.blockmax_scratch(n_docs, block_size, max(longest, 8))
        return kernel.score_batch_blockmax_serial(ix, block_size, *q, n_docs, k, scratch, alpha, cut)[:3]

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
