"""The ``native`` sparse backend: lsr's numba kernels over the index's segments, block-max pruned and exact by
default (see :class:`Pruning`). Thread-safe: each thread keeps its own scratch for the single-query kernel."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import numpy as np

from lsr.errors import InvalidInput
from lsr.index import Index, kernel
from lsr.results import Ranked
from lsr.retrievers import check_batch
from lsr.sparse import SparseBatch

PRUNING_METHODS = ("blockmax", "exhaustive")


@dataclass(frozen=True)
class Pruning:
    """How the sparse kernel finds the top k.

    ``method``: ``blockmax`` (default: block-max pruning that returns exactly the exhaustive top-k) or ``exhaustive``
    (term-at-a-time over every posting; the reference). Approximate knobs, off by default and always reported
    (``exact`` is False): ``alpha`` < 1 skips a block when alpha x its bound < the k-th score; ``query_cut`` > 0 keeps
    only the query's heaviest ``query_cut`` terms.
    """

    method: str = "blockmax"
    alpha: float = 1.0
    query_cut: int = 0

    def __post_init__(self) -> None:
        if self.method not in PRUNING_METHODS:
            raise InvalidInput(f"pruning must be one of {', '.join(PRUNING_METHODS)}, got {self.method!r}")
        if not 0.0 < self.alpha <= 1.0:  # (False for NaN too)
            raise InvalidInput(f"prune alpha must be in (0, 1] (1 = exact), got {self.alpha}")
        if self.query_cut < 0:
            raise InvalidInput(f"query cut must be >= 0 (0 = keep every query term), got {self.query_cut}")
        if self.method == "exhaustive" and not self.exact:
            raise InvalidInput("alpha and query_cut are block-max knobs; the exhaustive kernel is always exact")

    @property
    def exact(self) -> bool:
        return self.alpha == 1.0 and self.query_cut == 0


def default_threads() -> int:
    return max(1, int(os.environ.get("NUMBA_NUM_THREADS", os.cpu_count() or 1)))


class NativeRetriever:
    component = "sparse"
    takes = "sparse"

    def __init__(self, index: Index, pruning: Pruning | None = None, threads: int | None = None) -> None:
        self.index = index
        self.pruning = pruning or Pruning()
        self.threads = threads or default_threads()
        self.name = f"native/{self.pruning.method}"
        self.exact = self.pruning.exact
        self._local = threading.local()  # per-thread scratch of the single-threaded block-max kernel
        if self.pruning.method == "blockmax":
            for segment in index.segments:
                segment.kernel_arrays()  # load (or compute, for an older index) before the first query

    @classmethod
    def open(cls, index: Index, pruning: Pruning | None = None, threads: int | None = None) -> NativeRetriever:
        return cls(index, pruning, threads)

    def warm_up(self) -> None:
        """Compile (or load from numba's cache) every kernel variant a request can reach: the single-query kernel
        and the parallel batch kernel, and page the postings in."""
        probe = SparseBatch.from_rows([(np.array([t], np.int32), np.array([1.0], np.float32))
                                       for t in frequent_terms(self.index, 2)])
        self.retrieve(probe.take([0]), 1, threads=1)
        self.retrieve(probe, 1, threads=max(2, self.threads))

    def retrieve(self, queries: SparseBatch, k: int, threads: int | None = None) -> list[Ranked]:
        check_batch(queries, k)
        queries.validate(self.index.vocab_size)
        queries = queries.positive()
        k_eff = max(1, min(k, self.index.doc_count))
        threads = threads or self.threads
        per_segment = [(segment, *self._score(segment, queries, k_eff, threads)) for segment in self.index.segments]
        out = []
        for q in range(len(queries)):
            ids: list[str] = []
            scores: list[float] = []
            order_keys: list[int] = []
            for segment, docs, seg_scores, _ in per_segment:
                found = docs[q][docs[q] >= 0]
                ids.extend(segment.ids[found].tolist())
                scores.extend((seg_scores[q][: len(found)].astype(np.float64) / segment.info.scale).tolist())
                order_keys.extend((found + segment.info.doc_base).tolist())
            if len(per_segment) > 1:  # merge the segments' top-k lists: score desc, then index position
                order = sorted(range(len(ids)), key=lambda i: (-scores[i], order_keys[i]))[:k]
                ids, scores = [ids[i] for i in order], [scores[i] for i in order]
            postings = sum(int(seg_postings[q]) for _, _, _, seg_postings in per_segment)
            out.append(Ranked(ids=ids, scores=scores, exact=self.exact, postings=postings))
        return out

    def _score(self, segment, vectors: SparseBatch, k: int, threads: int) -> tuple:
        """(docs, scores, postings read) of one segment for every query of the batch."""
        q = (vectors.indptr, vectors.indices, vectors.weights)
        n_docs = segment.info.doc_count
        serial = threads == 1 or len(vectors) == 1
        if not serial and kernel.PARALLEL_LOCK is not None:  # no thread-safe threading layer: one launch at a time
            with kernel.PARALLEL_LOCK:
                return self._score_parallel(segment, q, n_docs, k, threads)
        if not serial:
            return self._score_parallel(segment, q, n_docs, k, threads)
        if self.pruning.method == "exhaustive":
            return kernel.score_batch_serial(segment.offsets, segment.doc_ids, segment.impacts, *q, n_docs, k, threads)
        ix, block_size = segment.kernel_arrays(), segment.block_size
        alpha, cut = self.pruning.alpha, self.pruning.query_cut
        longest = int(np.diff(vectors.indptr).max()) if len(vectors) else 1
        scratches = getattr(self._local, "scratch", None)
        if scratches is None:
            scratches = self._local.scratch = {}
        scratch = scratches.get(segment.info.name)
        if scratch is None or len(scratch[1]) < longest:
            scratch = scratches[segment.info.name] = kernel.blockmax_scratch(n_docs, block_size, max(longest, 8))
        return kernel.score_batch_blockmax_serial(ix, block_size, *q, n_docs, k, scratch, alpha, cut)[:3]

    def _score_parallel(self, segment, q: tuple, n_docs: int, k: int, threads: int) -> tuple:
        if self.pruning.method == "exhaustive":
            return kernel.score_batch(segment.offsets, segment.doc_ids, segment.impacts, *q, n_docs, k, threads)
        return kernel.score_batch_blockmax(segment.kernel_arrays(), segment.block_size, *q, n_docs, k, threads,
                                           self.pruning.alpha, self.pruning.query_cut)[:3]


def frequent_terms(index: Index, n: int) -> list[int]:
    """The ``n`` terms with the most postings in the first segment (a warm-up query that touches real data)."""
    df = np.diff(np.asarray(index.segments[0].offsets))
    top = np.argsort(-df, kind="stable")[:n]
    return [int(t) for t in top] if len(top) else [0] * n
