"""The ``native`` sparse backend: lsr's numba kernels over a snapshot's segments, block-max pruned and exact by
default (see :class:`Pruning`). Deleted documents are never offered to a top-k; segments are searched one after the
other and their top-k lists merged (score, then the documents' order). Thread-safe: each thread keeps its own
scratch for the single-query kernel.

Chunked indexes (``--chunk-tokens``) score rows (chunks): with ``max`` aggregation a document scores as its best
chunk, found exactly by asking each segment for more rows until k distinct documents are in hand; with ``sum`` a
document scores the sum over its chunks, accumulated per document by the exhaustive kernel.

A filter (``request.filter``) becomes, per segment, the rows it keeps among the live ones (:mod:`lsr.index.selection`,
cached on the segment). When few rows are kept over all segments, they are scored directly
(:func:`~lsr.index.kernel.score_segments_rows`: cost proportional to the kept rows, not the index); otherwise the
block-max kernel skips every block that holds no kept row and offers only kept rows to the top-k. Both return the
exhaustive kernel's top-k over the kept rows, ties included.
"""

from __future__ import annotations

import os
import threading

import numpy as np

from lsr.errors import InvalidInput
from lsr.index import kernel
from lsr.index.segment import gather
from lsr.index.selection import select
from lsr.request import PRUNING_METHODS, Pruning, SearchRequest, as_request  # noqa: F401  (re-exported)
from lsr.results import Ranked
from lsr.retrievers import Capabilities
from lsr.sparse import SparseBatch

FILTER_LISTS = 32  # filters whose kernel arguments a retriever keeps


def default_threads() -> int:
    from lsr.threads import kernel_threads

    return kernel_threads() or max(1, int(os.environ.get("NUMBA_NUM_THREADS", os.cpu_count() or 1)))


class NativeRetriever:
    component = "sparse"
    takes = "sparse"
    capabilities = Capabilities(writable=True, light=True, filterable=True,
                                options={"pruning": "pruning", "prune_alpha": "prune_alpha", "query_cut": "query_cut"})

    def __init__(self, snapshot, pruning: Pruning | None = None, threads: int | None = None) -> None:
        self.snapshot = snapshot
        self.index = snapshot.index
        self.pruning = pruning or Pruning()
        chunking = self.index.manifest.chunking
        self.aggregate = chunking["aggregate"] if chunking else None
        self._check_pruning(self.pruning)
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
        self._lock = threading.Lock()
        self._filter_lists: dict = {}  # (filter, direct) -> (its selections, the kernel's typed lists)
        if self.pruning.method == "blockmax" and self.aggregate != "sum":
            for view in self.views:
                view.segment.kernel_arrays()  # load before the first query
        self._together = self._segment_lists() if self.aggregate is None else None

    def _check_pruning(self, pruning: Pruning) -> None:
        if self.aggregate == "sum" and pruning.method == "blockmax" and not pruning.exact:
            raise InvalidInput("chunk sums are scored exhaustively; the approximate pruning knobs do not apply")

    def _segment_lists(self):
        """Every segment's kernel arrays in typed lists, for one kernel call over all of them (a shared heap, no
        Python between segments); None when they cannot share a list (types differ) or there is no segment."""
        if not self.views:
            return None
        from numba.core.errors import NumbaError

        segments = [view.segment for view in self.views]
        rows = np.array([s.info.rows for s in segments], dtype=np.int64)
        block_sizes = np.array([s.block_size for s in segments], dtype=np.int64)
        n_blocks = (rows + block_sizes - 1) // block_sizes
        try:
            ixs = kernel.typed_list(segment.kernel_arrays() for segment in segments)
            lives = kernel.typed_list(self.live_rows)
            block_lives = kernel.typed_list(np.zeros(0, dtype=np.uint8) for _ in segments)
        except NumbaError:
            return None
        bases = np.zeros(len(segments), dtype=np.int64)
        np.cumsum(rows[:-1], out=bases[1:])
        return ixs, lives, block_lives, block_sizes, bases, n_blocks, int(n_blocks.max()), int(block_sizes.max())

    @classmethod
    def open(cls, snapshot, pruning: Pruning | str | None = None, prune_alpha: float | None = None,
             query_cut: int | None = None, threads: int | None = None) -> NativeRetriever:
        """``pruning``: a :class:`Pruning`, or its method with ``prune_alpha`` and ``query_cut`` (settings, flags)."""
        if not isinstance(pruning, Pruning):
            pruning = Pruning(pruning or "blockmax", 1.0 if prune_alpha is None else prune_alpha, query_cut or 0)
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
        if self._together is not None:  # the filtered kernels: every row kept, scored directly and by blocks
            ixs, lives, _, _, bases, *_ = self._together
            kepts = kernel.typed_list(np.zeros(0, dtype=np.int64) for _ in self.views)
            flags = kernel.typed_list(np.zeros(view.segment.info.rows, dtype=np.uint8) for view in self.views)
            q = (probe.indptr, probe.indices, probe.weights)
            rows = int(bases[-1]) + self.views[-1].segment.info.rows
            kernel.score_segments_rows_serial(ixs, kepts, flags, bases, *q, 1, np.zeros(rows, np.float32))
            kernel.score_segments_rows(ixs, kepts, flags, bases, *q, 1, 2, rows)

    def retrieve(self, queries: SparseBatch, request: SearchRequest | int, threads: int | None = None) -> list[Ranked]:
        request = as_request(request, threads)
        queries.validate(self.index.vocab_size)
        queries = queries.positive()
        k = request.depth
        threads = request.threads or self.threads
        if threads > 1:
            from lsr.threads import team

            team(threads)  # numba's thread count is per calling thread: set it in this one (a server handler's)
        pruning = request.pruning or self.pruning
        if pruning is not self.pruning:
            self._check_pruning(pruning)
        if request.filter is not None:
            return self._retrieve_filtered(queries, k, threads, pruning, request.filter)
        if self._together is not None and pruning.method == "blockmax":
            return self._retrieve_together(queries, k, threads, pruning, self._together, self._live_total)
        return self._retrieve_each(queries, k, threads, pruning, self.live_rows, self.live_docs)

    def _retrieve_each(self, queries: SparseBatch, k: int, threads: int, pruning: Pruning, live_rows: list,
                       live_docs: list, kept: list[int] | None = None) -> list[Ranked]:
        """Segment by segment, then merged: the exhaustive kernel, chunked indexes, segments of unlike types."""
        found, postings = [], np.zeros(len(queries), dtype=np.int64)
        for position in range(len(self.views)):
            hits, read = self._segment_top(position, queries, k, threads, pruning, live_rows[position],
                                           live_docs[position], None if kept is None else kept[position])
            found.append(hits)
            postings += read
        out = []
        for q in range(len(queries)):
            parts = [per_segment[q] for per_segment in found]  # (scores, local documents, rows) of each segment
            scores = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0)
            locals_ = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64)
            rows = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0, np.int64)
            positions = np.repeat(np.arange(len(parts)), [len(p[0]) for p in parts])
            if len(parts) > 1:  # merge: score, then the documents' order
                order = np.lexsort((locals_, positions, -scores))[:k]
                scores, locals_, rows, positions = scores[order], locals_[order], rows[order], positions[order]
            chunks = None
            if self.aggregate == "max":
                chunks = [tuple(c) for c in self._gather(positions, rows, "chunks")]
            out.append(Ranked(ids=self._gather(positions, locals_, "ids"), scores=scores.tolist(), exact=pruning.exact,
                              postings=int(postings[q]), chunks=chunks))
        return out

    def _retrieve_filtered(self, queries: SparseBatch, k: int, threads: int, pruning: Pruning,
                           clause) -> list[Ranked]:
        """The top-k of the rows ``clause`` keeps: scored directly when few, else block-max over the kept rows."""
        selections = [select(view, clause) for view in self.views]
        kept = [s.documents for s in selections]
        total = sum(kept)
        if total == 0:
            return [Ranked(ids=[], scores=[], exact=pruning.exact) for _ in range(len(queries))]
        if self._together is not None and pruning.method == "blockmax":
            direct = all(s.sparse for s in selections) and pruning.exact
            arguments = self._filtered_lists(clause.key, selections, direct)
            if direct:
                return self._retrieve_rows(queries, k, threads, *arguments, total)
            return self._retrieve_together(queries, k, threads, pruning, arguments, total)
        return self._retrieve_each(queries, k, threads, pruning, [s.live_rows() for s in selections],
                                   [s.doc_mask().astype(np.uint8) for s in selections], kept)

    def _filtered_lists(self, key: str, selections: list, direct: bool) -> tuple:
        """The kernel's typed lists for a filter's selections, built once per filter for this snapshot (building
        numba typed lists costs more than a selective search)."""
        cached = self._filter_lists.get((key, direct))
        if cached is not None and all(a is b for a, b in zip(cached[0], selections)):
            return cached[1]
        ixs, _, _, block_sizes, bases, n_blocks, max_blocks, max_block_size = self._together
        if direct:
            arguments = (ixs, kernel.typed_list(s.kept_rows() for s in selections),
                         kernel.typed_list(s.live_rows() for s in selections),
                         bases)
        else:
            arguments = (ixs, kernel.typed_list(s.kernel_live() for s in selections),
                         kernel.typed_list(s.kernel_blocks() for s in selections), block_sizes, bases, n_blocks, max_blocks,
                         max_block_size)
        with self._lock:
            if len(self._filter_lists) >= FILTER_LISTS:
                self._filter_lists.pop(next(iter(self._filter_lists)))
            self._filter_lists[(key, direct)] = (selections, arguments)
        return arguments

    def _retrieve_rows(self, queries: SparseBatch, k: int, threads: int, ixs, kepts, lives, bases,
                       total: int) -> list[Ranked]:
        k = max(1, min(k, total))
        q = (queries.indptr, queries.indices, queries.weights)
        rows = int(bases[-1]) + self.views[-1].segment.info.rows
        if threads == 1 or len(queries) == 1:
            acc = getattr(self._local, "rows_acc", None)
            if acc is None:  # (zero, and left zero by the kernel: one a thread, reused)
                acc = self._local.rows_acc = np.zeros(rows, dtype=np.float32)
            docs, scores, postings = kernel.score_segments_rows_serial(ixs, kepts, lives, bases, *q, k, acc)
        elif kernel.PARALLEL_LOCK is not None:
            with kernel.PARALLEL_LOCK:
                docs, scores, postings = kernel.score_segments_rows(ixs, kepts, lives, bases, *q, k, threads, rows)
        else:
            docs, scores, postings = kernel.score_segments_rows(ixs, kepts, lives, bases, *q, k, threads, rows)
        return self._ranked(docs, scores, postings, bases, True)

    def _gather(self, positions: np.ndarray, numbers: np.ndarray, field: str) -> list:
        return gather(self.views, positions, numbers, field)

    def _retrieve_together(self, queries: SparseBatch, k: int, threads: int, pruning: Pruning, together: tuple,
                           total: int) -> list[Ranked]:
        ixs, lives, block_lives, block_sizes, bases, n_blocks, max_blocks, max_block_size = together
        k = max(1, min(k, total))
        q = (queries.indptr, queries.indices, queries.weights)
        alpha, cut = pruning.alpha, pruning.query_cut
        if threads == 1 or len(queries) == 1:
            scratch = getattr(self._local, "together", None)
            if scratch is None:
                slots = [kernel.bound_slots(int(n), 1) for n in n_blocks]  # bound slots of each segment
                scratch = self._local.together = (np.zeros(sum(slots), np.float32), np.empty(max(slots), np.int32),
                                                  np.zeros(kernel.BATCH * max_block_size, np.float32))
            docs, scores, postings, _ = kernel.score_segments_blockmax_serial(
                ixs, lives, block_lives, block_sizes, bases, n_blocks, *q, k, scratch, alpha, cut)
        elif kernel.PARALLEL_LOCK is not None:
            with kernel.PARALLEL_LOCK:
                docs, scores, postings, _ = kernel.score_segments_blockmax(
                    ixs, lives, block_lives, block_sizes, bases, n_blocks, *q, k, threads, max_blocks, max_block_size,
                    alpha, cut)
        else:
            docs, scores, postings, _ = kernel.score_segments_blockmax(
                ixs, lives, block_lives, block_sizes, bases, n_blocks, *q, k, threads, max_blocks, max_block_size,
                alpha, cut)
        return self._ranked(docs, scores, postings, bases, pruning.exact)

    def _ranked(self, docs, scores, postings, bases, exact: bool) -> list[Ranked]:
        out = []
        for row in range(len(docs)):
            found = docs[row][docs[row] >= 0]
            positions = np.searchsorted(bases, found, side="right") - 1
            values = (scores[row][: len(found)].astype(np.float64) / self.scale).tolist()
            out.append(Ranked(ids=self._gather(positions, found - bases[positions], "ids"), scores=values,
                              exact=exact, postings=int(postings[row])))
        return out

    # -- one segment ---------------------------------------------------------------------------------------------------
    def _segment_top(self, position: int, queries: SparseBatch, k: int, threads: int, pruning: Pruning,
                     live_rows: np.ndarray, live_mask: np.ndarray,
                     kept: int | None = None) -> tuple[list[tuple], np.ndarray]:
        """Per query, the segment's top-k live (and kept) documents as arrays (scores in lsr's units, local
        documents, best rows); and the postings read per query."""
        view = self.views[position]
        segment = view.segment
        live_docs = view.live_documents if kept is None else kept
        empty = (np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64))
        if live_docs == 0:
            return [empty] * len(queries), np.zeros(len(queries), dtype=np.int64)
        if self.aggregate == "sum":
            docs, scores, postings = kernel.score_batch_grouped(
                segment.kernel_arrays(), live_mask, np.asarray(segment.row_doc), queries.indptr,
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
            docs, scores, postings = self._score(position, queries, max(1, rows), threads, pruning, live_rows)
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

    def _score(self, position: int, vectors: SparseBatch, k: int, threads: int, pruning: Pruning,
               live: np.ndarray) -> tuple:
        """(rows, scores, postings read) of one segment for every query of the batch."""
        segment = self.views[position].segment
        q = (vectors.indptr, vectors.indices, vectors.weights)
        n_rows = segment.info.rows
        serial = threads == 1 or len(vectors) == 1
        if not serial and kernel.PARALLEL_LOCK is not None:  # no thread-safe threading layer: one launch at a time
            with kernel.PARALLEL_LOCK:
                return self._score_parallel(segment, live, q, n_rows, k, threads, pruning)
        if not serial:
            return self._score_parallel(segment, live, q, n_rows, k, threads, pruning)
        if pruning.method == "exhaustive":
            return kernel.score_batch_serial(segment.kernel_arrays(), live, *q, n_rows, k, threads)
        ix, block_size = segment.kernel_arrays(), segment.block_size
        scratches = getattr(self._local, "scratch", None)
        if scratches is None:
            scratches = self._local.scratch = {}
        scratch = scratches.get(segment.directory)
        if scratch is None:
            scratch = scratches[segment.directory] = kernel.blockmax_scratch(n_rows, block_size)
        return kernel.score_batch_blockmax_serial(ix, live, block_size, *q, n_rows, k, scratch, pruning.alpha,
                                                  pruning.query_cut)[:3]

    def _score_parallel(self, segment, live, q: tuple, n_rows: int, k: int, threads: int, pruning: Pruning) -> tuple:
        if pruning.method == "exhaustive":
            return kernel.score_batch(segment.kernel_arrays(), live, *q, n_rows, k, threads)
        return kernel.score_batch_blockmax(segment.kernel_arrays(), live, segment.block_size, *q, n_rows, k, threads,
                                           pruning.alpha, pruning.query_cut)[:3]


def frequent_terms(snapshot, n: int) -> list[int]:
    """The ``n`` terms with the most postings in the snapshot's largest segment (a warm-up that touches real data)."""
    if not snapshot.views:
        return [0] * n
    segment = max((view.segment for view in snapshot.views), key=lambda s: s.info.postings)
    df = segment.term_counts()
    top = np.argsort(-df, kind="stable")[:n]
    return [int(t) for t in top] if len(top) else [0] * n
