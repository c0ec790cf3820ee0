"""Exact sparse scoring: term-at-a-time accumulation over a query's postings, then top-k partial selection.

score(q, d) = sum_t q_t * impact(d, t). Plain Python/NumPy that numba compiles; it also runs with
``NUMBA_DISABLE_JIT=1`` (slowly), which a test checks. Queries come flattened as CSR arrays (indptr, terms,
weights) and a batch is scored in parallel over chunks of queries, each chunk with its own accumulator.

Ties are broken by the smaller document id, so results are deterministic.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, inline="always")
def _worse(score_a, doc_a, score_b, doc_b):  # pragma: no cover - numba
    """True when (score_a, doc_a) ranks below (score_b, doc_b): lower score, or equal score and larger doc id."""
    return score_a < score_b or (score_a == score_b and doc_a > doc_b)


@numba.njit(cache=True)
def _sift_down(heap_scores, heap_docs, size, i):  # pragma: no cover - numba
    while True:
        left = 2 * i + 1
        if left >= size:
            return
        worst = left
        right = left + 1
        if right < size and _worse(heap_scores[right], heap_docs[right], heap_scores[left], heap_docs[left]):
            worst = right
        if _worse(heap_scores[worst], heap_docs[worst], heap_scores[i], heap_docs[i]):
            heap_scores[i], heap_scores[worst] = heap_scores[worst], heap_scores[i]
            heap_docs[i], heap_docs[worst] = heap_docs[worst], heap_docs[i]
            i = worst
        else:
            return


@numba.njit(cache=True)
def _sift_up(heap_scores, heap_docs, i):  # pragma: no cover - numba
    while i > 0:
        parent = (i - 1) // 2
        if _worse(heap_scores[i], heap_docs[i], heap_scores[parent], heap_docs[parent]):
            heap_scores[i], heap_scores[parent] = heap_scores[parent], heap_scores[i]
            heap_docs[i], heap_docs[parent] = heap_docs[parent], heap_docs[i]
            i = parent
        else:
            return


@numba.njit(cache=True)
def score_query(offsets, doc_ids, impacts, terms, weights, k, accumulator, touched, out_docs, out_scores):
    """Score one query into ``out_docs``/``out_scores`` (best first, -1 / 0 padded); return postings scanned.

    ``accumulator`` (float32, one slot a document) must be all zero on entry and is left all zero.
    """
    n_touched = 0
    postings = 0
    for j in range(len(terms)):
        term = terms[j]
        weight = np.float32(weights[j])
        start = offsets[term]
        end = offsets[term + 1]
        postings += end - start
        for p in range(start, end):
            contribution = weight * np.float32(impacts[p])
            if contribution > 0.0:  # (an underflow to 0 must not register the document twice)
                doc = doc_ids[p]
                if accumulator[doc] == 0.0:
                    touched[n_touched] = doc
                    n_touched += 1
                accumulator[doc] += contribution

    # Partial selection: a size-k min-heap whose root is the worst of the current best k.
    size = 0
    heap_scores = np.empty(k, dtype=np.float32)
    heap_docs = np.empty(k, dtype=np.int64)
    for i in range(n_touched):
        doc = touched[i]
        score = accumulator[doc]
        accumulator[doc] = 0.0
        if size < k:
            heap_scores[size] = score
            heap_docs[size] = doc
            _sift_up(heap_scores, heap_docs, size)
            size += 1
        elif _worse(heap_scores[0], heap_docs[0], score, doc):
            heap_scores[0] = score
            heap_docs[0] = doc
            _sift_down(heap_scores, heap_docs, size, 0)

    # Pop worst-first into the tail of the output, so it ends best-first.
    for slot in range(k):
        out_docs[slot] = -1
        out_scores[slot] = 0.0
    for slot in range(size - 1, -1, -1):
        out_docs[slot] = heap_docs[0]
        out_scores[slot] = heap_scores[0]
        size -= 1
        heap_scores[0] = heap_scores[size]
        heap_docs[0] = heap_docs[size]
        _sift_down(heap_scores, heap_docs, size, 0)
    return postings


@numba.njit(cache=True, parallel=True)
def score_batch(offsets, doc_ids, impacts, q_indptr, q_terms, q_weights, num_docs, k, n_chunks):
    """Score a batch of queries; returns (docs (n, k) int64, scores (n, k) float32, postings (n,) int64)."""
    n_queries = len(q_indptr) - 1
    out_docs = np.empty((n_queries, k), dtype=np.int64)
    out_scores = np.empty((n_queries, k), dtype=np.float32)
    postings = np.zeros(n_queries, dtype=np.int64)
    n_chunks = max(1, min(n_chunks, n_queries))
    per_chunk = (n_queries + n_chunks - 1) // n_chunks
    for chunk in numba.prange(n_chunks):
        accumulator = np.zeros(num_docs, dtype=np.float32)
        touched = np.empty(num_docs, dtype=np.int64)
        for q in range(chunk * per_chunk, min(n_queries, (chunk + 1) * per_chunk)):
            start = q_indptr[q]
            end = q_indptr[q + 1]
            postings[q] = score_query(offsets, doc_ids, impacts, q_terms[start:end], q_weights[start:end], k,
                                      accumulator, touched, out_docs[q], out_scores[q])
    return out_docs, out_scores, postings


@numba.njit(cache=True)
def score_batch_serial(offsets, doc_ids, impacts, q_indptr, q_terms, q_weights, num_docs, k, n_chunks=1):
    """:func:`score_batch` on the calling thread: no thread-pool launch, for one query or one thread.

    A separate function, not ``njit(parallel=False)`` of the same one: numba's on-disk cache does not key on
    ``parallel`` (numba issue 6845), so two dispatchers of one function could load each other's machine code.
    """
    n_queries = len(q_indptr) - 1
    out_docs = np.empty((n_queries, k), dtype=np.int64)
    out_scores = np.empty((n_queries, k), dtype=np.float32)
    postings = np.zeros(n_queries, dtype=np.int64)
    accumulator = np.zeros(num_docs, dtype=np.float32)
    touched = np.empty(num_docs, dtype=np.int64)
    for q in range(n_queries):
        start = q_indptr[q]
        end = q_indptr[q + 1]
        postings[q] = score_query(offsets, doc_ids, impacts, q_terms[start:end], q_weights[start:end], k,
                                  accumulator, touched, out_docs[q], out_scores[q])
    return out_docs, out_scores, postings
