"""The ``native`` sparse backend: lsr's numba kernels over a snapshot's segments, block-max pruned and exact by
default (see :class:`Pruning`). Deleted documents are never offered to a top-k; segments are searched one after the
other and their top-k lists merged (score, then the documents' order). Thread-safe: each thread keeps its own
scratch for the single-query kernel.

Chunked indexes (``--chunk-tokens``) score rows (chunks): with ``max`` aggregation a document scores as its best
chunk, found exactly by asking each segment for more rows until k distinct documents are in hand; with ``sum`` a
document scores the sum over its chunks, accumulated per document by the exhaustive kernel.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import numpy as np

from lsr.errors import InvalidInput
from lsr.index import kernel
from lsr.index.segment import gather
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
    light = True  # the memory-mapped kernel (see lsr.retrievers.Retriever)

    def __init__(self, snapshot, pruning: Pruning | None = None, threads: int | None = None) -> None:
        self.snapshot = snapshot
        self.index = snapshot.index
        self.pruning = pruning or Pruning()
        chunking = self.index.manifest.chunking
        self.aggregate = chunking["aggregate"] if chunking else None
        if self.aggregate == "sum" and self.pruning.method == "blockmax" and not self.pruning.exact:
            raise InvalidInput("chunk sums are scored exhaustively; the approximate pruning knobs do not apply")
        self.threads = threads or default_threads()
        self.name = f"native/{'exhaustive' if self.aggregate == 'sum' else self.pruning.method}"
        self.exact = self.pruning.exact
        self.scale = self.index.manifest.scale or 1.0
        self.views = snapshot.views
        self.live_rows = [view.live_rows() for view in self.views]
        self.live_docs = [np.zeros(0, np.uint8) if view.deleted is None else (~view.deleted).astype(np.uint8)
                          for view in self.views]
        self._live_total = sum(view.live_documents for view in self.views)
        self._local = threading.local()  # per-thread scratch of the single-threaded block-max kernel
        if self.pruning.method == "blockmax" and self.aggregate != "sum":
            for view in self.views:
                view.segment.kernel_arrays()  # load before the first query
        self._together = self._segment_lists() if self.pruning.method == "blockmax" and self.aggregate is None \
            else None

    def _segment_lists(self):
        """Every segment's kernel arrays in typed lists, for one kernel call over all of them (a shared heap, no
        Python between segments); None when they cannot share a list (types differ) or there is no segment."""
        if not self.views:
            return None
        from numba.core.errors import NumbaError
        from numba.typed import List

        segments = [view.segment for view in self.views]
        rows = np.array([s.info.rows for s in segments], dtype=np.int64)
        block_sizes = np.array([s.block_size for s in segments], dtype=np.int64)
        n_blocks = (rows + block_sizes - 1) // block_sizes
        try:
            ixs, lives = List(), List()
            for segment, live in zip(segments, self.live_rows):
                ixs.append(segment.kernel_arrays())
                lives.append(live)
        except NumbaError:
            return None
        bases = np.zeros(len(segments), dtype=np.int64)
        np.cumsum(rows[:-1], out=bases[1:])
        return ixs, lives, block_sizes, bases, n_blocks, int(n_blocks.max()), int(block_sizes.max())

    @classmethod
    def open(cls, snapshot, pruning: Pruning | None = None, threads: int | None = None) -> NativeRetriever:
        return cls(snapshot, pruning, threads)

    def warm_up(self) -> None:
        """Compile (or load from numba's cache) every kernel variant a request can reach: the single-query kernel
        and the parallel batch kernel, and page the postings in."""
        if not self.views:
            return
        probe = SparseBatch.from_rows([(np.array([t], np.int32), np.array([1.0], np.float32))
                                       for t in frequent_terms(self.snapshot, 2)])
        self.retrieve(probe.take([0]), 1, threads=1)
        self.retrieve(probe, 1, threads=max(2, self.threads))

    def retrieve(self, queries: SparseBatch, k: int, threads: int | None = None) -> list[Ranked]:
        check_batch(queries, k)
        queries.validate(self.index.vocab_size)
        queries = queries.positive()
        threads = threads or self.threads
        if self._together is not None:
            return self._retrieve_together(queries, k, threads)
        found, postings = [], np.zeros(len(queries), dtype=np.int64)
        for position in range(len(self.views)):
            hits, read = self._segment_top(position, queries, k, threads)
            found.append(hits)
            postings += read
        out = []
        for q in range(len(queries)):
            parts = [per_segment[q] for per_segment in found]  # (scores, local documents, rows) of each segment
            scores = np.concatenate([p[0] for p in parts])
            locals_ = np.concatenate([p[1] for p in parts])
            rows = np.concatenate([p[2] for p in parts])
            positions = np.repeat(np.arange(len(parts)), [len(p[0]) for p in parts])
            if len(parts) > 1:  # merge: score, then the documents' order
                order = np.lexsort((locals_, positions, -scores))[:k]
                scores, locals_, rows, positions = scores[order], locals_[order], rows[order], positions[order]
            chunks = None
            if self.aggregate == "max":
                chunks = [tuple(c) for c in self._gather(positions, rows, "chunks")]
            out.append(Ranked(ids=self._gather(positions, locals_, "ids"), scores=scores.tolist(), exact=self.exact,
                              postings=int(postings[q]), chunks=chunks))
        return out

    def _gather(self, positions: np.ndarray, numbers: np.ndarray, field: str) -> list:
        return gather(self.views, positions, numbers, field)

    def _retrieve_together(self, queries: SparseBatch, k: int, threads: int) -> list[Ranked]:
        ixs, lives, block_sizes, bases, n_blocks, max_blocks, max_block_size = self._together
        k = max(1, min(k, self._live_total))
        q = (queries.indptr, queries.indices, queries.weights)
        alpha, cut = self.pruning.alpha, self.pruning.query_cut
        if threads == 1 or len(queries) == 1:
            scratch = getattr(self._local, "together", None)
            if scratch is None:
                slots = [kernel.bound_slots(int(n), 1) for n in n_blocks]  # bound slots of each segment
                scratch = self._local.together = (np.zeros(sum(slots), np.float32), np.empty(max(slots), np.int32),
                                                  np.zeros(kernel.BATCH * max_block_size, np.float32))
            docs, scores, postings, _ = kernel.score_segments_blockmax_serial(
                ixs, lives, block_sizes, bases, n_blocks, *q, k, scratch, alpha, cut)
        elif kernel.PARALLEL_LOCK is not None:
            with kernel.PARALLEL_LOCK:
                docs, scores, postings, _ = kernel.score_segments_blockmax(
                    ixs, lives, block_sizes, bases, n_blocks, *q, k, threads, max_blocks, max_block_size, alpha, cut)
        else:
            docs, scores, postings, _ = kernel.score_segments_blockmax(
                ixs, lives, block_sizes, bases, n_blocks, *q, k, threads, max_blocks, max_block_size, alpha, cut)
        out = []
        for row in range(len(queries)):
            found = docs[row][docs[row] >= 0]
            positions = np.searchsorted(bases, found, side="right") - 1
            values = (scores[row][: len(found)].astype(np.float64) / self.scale).tolist()
            out.append(Ranked(ids=self._gather(positions, found - bases[positions], "ids"), scores=values,
                              exact=self.exact, postings=int(postings[row])))
        return out

    # -- one segment ---------------------------------------------------------------------------------------------------
    def _segment_top(self, position: int, queries: SparseBatch, k: int, threads: int) -> tuple[list[tuple], np.ndarray]:
        """Per query, the segment's top-k live documents as arrays (scores in lsr's units, local documents, best
        rows); and the postings read per query."""
        view = self.views[position]
        segment = view.segment
        live_docs = view.live_documents
        empty = (np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64))
        if live_docs == 0:
            return [empty] * len(queries), np.zeros(len(queries), dtype=np.int64)
        if self.aggregate == "sum":
            docs, scores, postings = kernel.score_batch_grouped(
                segment.kernel_arrays(), self.live_docs[position], np.asarray(segment.row_doc), queries.indptr,
                queries.indices, queries.weights, segment.info.rows, segment.info.documents, min(k, live_docs))
            out = []
            for q in range(len(queries)):
                found = docs[q][docs[q] >= 0]
                out.append((scores[q][: len(found)].astype(np.float64) / self.scale, found,
                            np.full(len(found), -1, np.int64)))
            return out, postings
        row_doc = None if segment.row_doc is None else np.asarray(segment.row_doc)
        want = min(k, live_docs)
        rows = want if row_doc is None else min(segment.info.rows, want * max(1, -(-segment.info.rows //
                                                                                   segment.info.documents)))
        while True:
            docs, scores, postings = self._score(position, queries, max(1, rows), threads)
            out, short = [], False
            for q in range(len(queries)):
                found = docs[q][docs[q] >= 0]
                values = scores[q][: len(found)].astype(np.float64) / self.scale
                if row_doc is None:
                    out.append((values, found, found))
                    continue
                owners = row_doc[found]
                _, first = np.unique(owners, return_index=True)  # each document's best row: its first
                keep = np.sort(first)[:want]
                short |= len(keep) < want and len(found) == rows
                out.append((values[keep], owners[keep].astype(np.int64), found[keep]))
            if not short or rows >= segment.info.rows:
                return out, postings
            rows = min(segment.info.rows, rows * 2)

    def _score(self, position: int, vectors: SparseBatch, k: int, threads: int) -> tuple:
        """(rows, scores, postings read) of one segment for every query of the batch."""
        segment, live = self.views[position].segment, self.live_rows[position]
        q = (vectors.indptr, vectors.indices, vectors.weights)
        n_rows = segment.info.rows
        serial = threads == 1 or len(vectors) == 1
        if not serial and kernel.PARALLEL_LOCK is not None:  # no thread-safe threading layer: one launch at a time
            with kernel.PARALLEL_LOCK:
                return self._score_parallel(segment, live, q, n_rows, k, threads)
        if not serial:
            return self._score_parallel(segment, live, q, n_rows, k, threads)
        if self.pruning.method == "exhaustive":
            return kernel.score_batch_serial(segment.kernel_arrays(), live, *q, n_rows, k, threads)
        ix, block_size = segment.kernel_arrays(), segment.block_size
        scratches = getattr(self._local, "scratch", None)
        if scratches is None:
            scratches = self._local.scratch = {}
        scratch = scratches.get(segment.directory)
        if scratch is None:
            scratch = scratches[segment.directory] = kernel.blockmax_scratch(n_rows, block_size)
        return kernel.score_batch_blockmax_serial(ix, live, block_size, *q, n_rows, k, scratch, self.pruning.alpha,
                                                  self.pruning.query_cut)[:3]

    def _score_parallel(self, segment, live, q: tuple, n_rows: int, k: int, threads: int) -> tuple:
        if self.pruning.method == "exhaustive":
            return kernel.score_batch(segment.kernel_arrays(), live, *q, n_rows, k, threads)
        return kernel.score_batch_blockmax(segment.kernel_arrays(), live, segment.block_size, *q, n_rows, k, threads,
                                           self.pruning.alpha, self.pruning.query_cut)[:3]


def frequent_terms(snapshot, n: int) -> list[int]:
    """The ``n`` terms with the most postings in the snapshot's largest segment (a warm-up that touches real data)."""
    if not snapshot.views:
        return [0] * n
    segment = max((view.segment for view in snapshot.views), key=lambda s: s.info.postings)
    df = segment.term_counts()
    top = np.argsort(-df, kind="stable")[:n]
    return [int(t) for t in top] if len(top) else [0] * n
