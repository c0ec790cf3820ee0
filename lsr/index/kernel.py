"""Exact sparse scoring: term-at-a-time accumulation over a query's postings, then top-k partial selection.

score(q, d) = sum_t q_t * impact(d, t). Plain Python/NumPy that numba compiles; it also runs with
``NUMBA_DISABLE_JIT=1`` (slowly), which a test checks. Every kernel reads a segment through ``ix``
(:func:`lsr.index.segment.kernel_arrays`): rare terms as postings of 16-bit row numbers grouped in windows of 65,536
rows, frequent terms as dense rows with per-block maxima (:func:`lsr.index.segment.compact_postings`). Queries come
flattened as CSR arrays (indptr, terms, weights) and a batch is scored in parallel over chunks of queries, each
chunk with its own accumulator.

Ties are broken by the smaller document id, so results are deterministic. ``live`` (uint8, one a row; empty: all
live) leaves deleted rows out of the top-k: they are still accumulated (the postings are immutable) but never
offered, so a block's maximum stays a valid upper bound and the pruned kernel stays exact with deletes.

Threading: the batch kernels run ``prange`` loops, and the HTTP server calls them from several threads at once. numba's
``workqueue`` layer is not thread-safe (concurrent launches abort the process), so unless ``NUMBA_THREADING_LAYER`` is
set this module asks numba for a thread-safe layer (``threadsafe``: TBB or OpenMP; OpenMP here). It must be set
before the first parallel launch, which is why it is set at import.
"""

from __future__ import annotations

import os

import numba
import numba.typed
import numpy as np

from lsr.index.segment import SKIP_BITS, WINDOW_BITS


def _thread_safe_layer_available() -> bool:
    import importlib

    for module in ("numba.np.ufunc.tbbpool", "numba.np.ufunc.omppool"):
        try:
            importlib.import_module(module)
            return True
        except ImportError:
            continue
    return False


# Where neither TBB nor OpenMP is available (macOS without libomp), numba keeps its workqueue layer and callers must
# not launch the parallel kernels from two threads at once: PARALLEL_LOCK serializes them (the native retriever).
THREAD_SAFE_LAYER = "NUMBA_THREADING_LAYER" in os.environ or _thread_safe_layer_available()
if "NUMBA_THREADING_LAYER" not in os.environ and THREAD_SAFE_LAYER:
    numba.config.THREADING_LAYER = "threadsafe"
PARALLEL_LOCK = None if THREAD_SAFE_LAYER else __import__("threading").Lock()


@numba.njit(cache=True)
def _list_start(item):  # pragma: no cover - numba
    out = numba.typed.List()
    out.append(item)
    return out


@numba.njit(cache=True)
def _list_push(out, item):  # pragma: no cover - numba
    out.append(item)


def typed_list(items) -> numba.typed.List:
    """A numba typed list of ``items`` (arrays, or tuples of arrays, all of one type), built by cached kernels.
    ``numba.typed.List(items)`` compiles its constructor and ``append`` anew in every process (about 0.7 s a list
    type, 3 s on a restart); these two load from numba's cache like the scoring kernels."""
    items = list(items)
    if not items:
        raise ValueError("typed_list needs at least one item (its type comes from the first)")
    out = _list_start(items[0])
    for item in items[1:]:
        _list_push(out, item)
    return out


@numba.njit(cache=True, inline="always")
def _new_outputs(n_queries, k):  # pragma: no cover - numba
    """A batch's results: top-k documents and scores (n_queries x k), postings read and blocks scored a query."""
    return (np.empty((n_queries, k), dtype=np.int64), np.empty((n_queries, k), dtype=np.float32),
            np.zeros(n_queries, dtype=np.int64), np.zeros(n_queries, dtype=np.int64))


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


@numba.njit(cache=True, inline="always")
def _offer(heap_scores, heap_docs, size, k, score, doc):  # pragma: no cover - numba
    """Offer (score, doc) to the size-k min-heap of the best so far; return the new size."""
    if size < k:
        heap_scores[size] = score
        heap_docs[size] = doc
        _sift_up(heap_scores, heap_docs, size)
        return size + 1
    if _worse(heap_scores[0], heap_docs[0], score, doc):
        heap_scores[0] = score
        heap_docs[0] = doc
        _sift_down(heap_scores, heap_docs, size, 0)
    return size


@numba.njit(cache=True)
def _drain(heap_scores, heap_docs, size, k, out_docs, out_scores):  # pragma: no cover - numba
    """Pop the heap worst-first into the tail of the output, so it ends best-first; pad with -1 / 0."""
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


@numba.njit(cache=True, inline="always")
def _select_touched(accumulator, touched, n_touched, live, k, heap_scores, heap_docs, out_docs,
                    out_scores):  # pragma: no cover - numba
    """The top-k of the touched documents' accumulated scores (a size-k min-heap whose root is the worst of the
    current best k), skipping documents ``live`` marks deleted; leaves the accumulator all zero."""
    size = 0
    for i in range(n_touched):
        doc = touched[i]
        score = accumulator[doc]
        accumulator[doc] = 0.0
        if len(live) == 0 or live[doc]:
            size = _offer(heap_scores, heap_docs, size, k, score, doc)
    _drain(heap_scores, heap_docs, size, k, out_docs, out_scores)


@numba.njit(cache=True, inline="always")
def _add(accumulator, touched, n_touched, doc, contribution):  # pragma: no cover - numba
    """Add ``contribution`` to ``doc``'s slot, listing the document when it is first touched; return the count."""
    if contribution > 0.0:  # (an underflow to 0 must not register the document twice)
        if accumulator[doc] == 0.0:
            touched[n_touched] = doc
            n_touched += 1
        accumulator[doc] += contribution
    return n_touched


@numba.njit(cache=True, inline="always")
def _accumulate(ix, num_rows, term, weight, row_doc, accumulator, touched, n_touched):  # pragma: no cover - numba
    """Add ``weight`` x every posting of ``term`` to its document's slot (``row_doc[row]`` when rows are chunks,
    else the row), registering first-touched documents; returns (documents touched, postings read)."""
    term_windows, doc_low, _, impacts, dense_slot, dense_rows, _, _ = ix
    grouped = len(row_doc) > 0
    postings = 0
    slot = dense_slot[term]
    if slot >= 0:
        row = dense_rows[slot]
        for r in range(num_rows):
            if row[r] == 0:
                continue
            postings += 1
            n_touched = _add(accumulator, touched, n_touched, row_doc[r] if grouped else r, weight * np.float32(row[r]))
        return n_touched, postings
    for w in range(term_windows.shape[1] - 1):
        base = w << WINDOW_BITS
        start = term_windows[term, w]
        end = term_windows[term, w + 1]
        postings += end - start
        for p in range(start, end):
            r = base + np.int64(doc_low[p])
            n_touched = _add(accumulator, touched, n_touched, row_doc[r] if grouped else r,
                             weight * np.float32(impacts[p]))
    return n_touched, postings


@numba.njit(cache=True)
def score_query(ix, live, num_rows, terms, weights, k, accumulator, touched, out_docs, out_scores,
                row_doc):  # pragma: no cover - numba
    """Score one query into ``out_docs``/``out_scores`` (best first, -1 / 0 padded); return postings read.

    ``accumulator`` (float32, one slot a document) must be all zero on entry and is left all zero. ``row_doc``
    (empty: rows are documents) maps each row to the document that sums it; ``live`` is then by document."""
    n_touched = 0
    postings = 0
    for j in range(len(terms)):
        n_touched, read = _accumulate(ix, num_rows, terms[j], np.float32(weights[j]), row_doc, accumulator, touched,
                                      n_touched)
        postings += read
    _select_touched(accumulator, touched, n_touched, live, k, np.empty(k, dtype=np.float32),
                    np.empty(k, dtype=np.int64), out_docs, out_scores)
    return postings


@numba.njit(cache=True, parallel=True)
def score_batch(ix, live, q_indptr, q_terms, q_weights, num_rows, k, n_chunks):
    """Score a batch of queries exhaustively; returns (docs (n, k) int64, scores (n, k) float32, postings (n,)
    int64)."""
    n_queries = len(q_indptr) - 1
    out_docs, out_scores, postings, _ = _new_outputs(n_queries, k)
    n_chunks = max(1, min(n_chunks, n_queries))
    per_chunk = (n_queries + n_chunks - 1) // n_chunks
    no_groups = np.zeros(0, dtype=np.int32)
    for chunk in numba.prange(n_chunks):
        accumulator = np.zeros(num_rows, dtype=np.float32)
        touched = np.empty(num_rows, dtype=np.int64)
        for q in range(chunk * per_chunk, min(n_queries, (chunk + 1) * per_chunk)):
            start = q_indptr[q]
            end = q_indptr[q + 1]
            postings[q] = score_query(ix, live, num_rows, q_terms[start:end], q_weights[start:end], k, accumulator,
                                      touched, out_docs[q], out_scores[q], no_groups)
    return out_docs, out_scores, postings


@numba.njit(cache=True)
def score_batch_serial(ix, live, q_indptr, q_terms, q_weights, num_rows, k, n_chunks=1):
    """:func:`score_batch` on the calling thread: no thread-pool launch, for one query or one thread.

    A separate function, not ``njit(parallel=False)`` of the same one: numba's on-disk cache does not key on
    ``parallel`` (numba issue 6845), so two dispatchers of one function could load each other's machine code.
    """
    n_queries = len(q_indptr) - 1
    out_docs, out_scores, postings, _ = _new_outputs(n_queries, k)
    accumulator = np.zeros(num_rows, dtype=np.float32)
    touched = np.empty(num_rows, dtype=np.int64)
    no_groups = np.zeros(0, dtype=np.int32)
    for q in range(n_queries):
        start = q_indptr[q]
        end = q_indptr[q + 1]
        postings[q] = score_query(ix, live, num_rows, q_terms[start:end], q_weights[start:end], k, accumulator,
                                  touched, out_docs[q], out_scores[q], no_groups)
    return out_docs, out_scores, postings


# -- Block-max pruning -------------------------------------------------------------------------------------------------
#
# Rows are cut into fixed-size blocks of ``block_size`` (a power of two) consecutive numbers. Frequent terms (in at
# least 1/``dense_ratio`` of the rows) are stored as dense rows: one impact per row, so that a block's scores are a
# straight SIMD loop. These and the next most frequent terms (1/``bound_ratio``) also keep a row of block maxima, so
# that their bounds are one SIMD loop over the blocks. The other terms are stored only as postings (16-bit row
# numbers in windows of 65,536 rows, and impacts); such a term bounds a block by the sum of its impacts there, which
# is at least their maximum and, for these terms, almost always the single impact (lsr.index.segment).
#
# A query first adds up, per block, an upper bound on the score of every row in the block. Blocks are then scored
# exactly in tiers of decreasing bound (within 10% of the best bound, then 10-20%, ...), which raises the k-th score
# theta early; a tier never reaches below theta. A block whose bound is below the current theta cannot hold a top-k
# document and is skipped. Within a tier, blocks are scored in batches of 32, term by term, so that the cache misses
# of different blocks overlap (a block at a time, each waited on its own); a rare term finds its postings in a block
# through a small array of every 64th row number, then one group of 64 postings. The result is the exhaustive
# kernel's top-k, ties included: scores and bounds are accumulated in the same term order, each term adding to a
# bound at least what it adds to any row's score (or several non-negative amounts, one of which is at least that),
# and float addition is monotone, so a row's float score never exceeds its block's float bound.
#
# ``alpha`` < 1 is the explicit approximate knob (as in BMP): a block is skipped when alpha * bound < theta.
# ``query_cut`` > 0 keeps only the query's heaviest ``query_cut`` terms. Both lose recall, which callers report.

_TIERS = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0)  # lower edges of the tiers, as fractions of the best bound


_WINDOW_MASK = (1 << WINDOW_BITS) - 1


@numba.njit(cache=True, inline="always")
def _seek(doc_low, skips, lo, end, target):  # pragma: no cover - numba
    """The first position in ``doc_low[lo:end]`` (increasing) holding a value >= ``target``, or ``end``.

    Galloping from ``lo`` over ``skips``, every 64th entry, which is small and stays in cache during a query, then a
    binary search in the one group of 64 that holds the answer: about one cache miss, where a search over ``doc_low``
    itself missed on most of its reads. Searches start from the window's first posting, not from a cursor, so the
    searches of one batch of blocks do not wait on each other."""
    if lo >= end or doc_low[lo] >= target:
        return lo
    a = lo + 1  # doc_low[lo] < target: the answer is in [a, b]
    b = end
    first = (lo + (1 << SKIP_BITS) - 1) >> SKIP_BITS  # the groups that start inside [lo, end)
    last = (end - 1) >> SKIP_BITS
    if first <= last:
        if skips[first] >= target:
            b = first << SKIP_BITS
        else:
            below = first  # skips[below] < target
            step = 1
            while below + step <= last and skips[below + step] < target:
                below += step
                step *= 2
            g = below + 1
            h = min(below + step, last + 1)
            while g < h:  # the first group from ``below`` on that starts at >= target (last + 1: none)
                mid = (g + h) >> 1
                if skips[mid] < target:
                    g = mid + 1
                else:
                    h = mid
            a = ((g - 1) << SKIP_BITS) + 1
            b = (g << SKIP_BITS) if g <= last else end
    while a < b:
        mid = (a + b) >> 1
        if doc_low[mid] < target:
            a = mid + 1
        else:
            b = mid
    return a


@numba.njit(cache=True, inline="always")
def _log2(block_size):  # pragma: no cover - numba
    shift = 0
    while (1 << shift) < block_size:
        shift += 1
    return shift


BATCH = 32  # blocks scored together, term by term (scratch: ``acc`` holds BATCH x block size scores)


@numba.njit(cache=True)
def _score_blocks(ix, live, block_size, doc_base, terms, weights, use, blocks, k, acc, heap_scores, heap_docs,
                  size):  # pragma: no cover - numba
    """Score every row of ``blocks`` (at most ``BATCH``) exactly and offer each to the heap; return (new heap size,
    postings read). Term by term over the batch, so the loads of one term in different blocks are independent and
    overlap (a block at a time, each waited on its own cache misses); every row still adds its terms in query-term
    order, the exhaustive kernel's. ``acc`` (all zero, ``BATCH`` x block_size) is left zero."""
    term_windows, doc_low, skips, impacts, dense_slot, dense_rows, max_slot, max_rows = ix
    n = len(blocks)
    postings = 0
    for jj in range(len(use)):
        j = use[jj]
        term = terms[j]
        weight = np.float32(weights[j])
        slot = dense_slot[term]
        if slot >= 0:
            row = dense_rows[slot]
            for c in range(n):
                base = blocks[c] * block_size
                at = c * block_size
                for i in range(block_size):
                    acc[at + i] += weight * np.float32(row[base + i])
            postings += n * block_size
            continue
        bound = max_slot[term]
        for c in range(n):
            block = blocks[c]
            if bound >= 0 and max_rows[bound, block] == 0:
                continue  # its row of block maxima says the term is not in this block: no search
            base = block * block_size
            window = base >> WINDOW_BITS
            low_base = base & _WINDOW_MASK  # the block's first row within its window (a block never straddles two)
            low_end = low_base + block_size
            end = term_windows[term, window + 1]
            e = _seek(doc_low, skips, term_windows[term, window], end, low_base)
            at = c * block_size - low_base
            while e < end and doc_low[e] < low_end:
                acc[at + np.int64(doc_low[e])] += weight * np.float32(impacts[e])
                e += 1
                postings += 1
    for c in range(n):
        base = blocks[c] * block_size
        for i in range(block_size):
            score = acc[c * block_size + i]
            if score > 0.0:
                acc[c * block_size + i] = 0.0
                if len(live) == 0 or live[base + i]:
                    size = _offer(heap_scores, heap_docs, size, k, score, doc_base + base + i)
    return size, postings


_CHUNK = 64  # a tier first reads one maximum a chunk of blocks, then only the blocks of the chunks that reach it


@numba.njit(cache=True, inline="always")
def _slots(n_blocks):  # pragma: no cover - numba
    """Bound slots of a segment of ``n_blocks`` blocks: padded to a whole number of chunks (the padding stays 0)."""
    return (n_blocks + _CHUNK - 1) // _CHUNK * _CHUNK


def bound_slots(rows: int, block_size: int) -> int:
    """The bound slots (``ub`` entries) a segment of ``rows`` rows needs in a kernel's scratch."""
    return (-(-rows // block_size) + _CHUNK - 1) // _CHUNK * _CHUNK


@numba.njit(cache=True)
def _chunk_maxima(ub, chunk_max):  # pragma: no cover - numba
    """``chunk_max[c]`` = the largest bound among blocks c, c + n, c + 2n, ... (n = len(chunk_max)): a chunk is a
    stride through the blocks, so its maxima are an element-wise max over 64 contiguous slices, which vectorizes (a
    max *reduction* over 64 neighbours does not, and cost as much as a term's whole bound pass)."""
    n = len(chunk_max)
    chunk_max[:] = ub[:n]
    for i in range(1, _CHUNK):
        part = ub[i * n:(i + 1) * n]
        for c in range(n):
            value = part[c]
            chunk_max[c] = value if value > chunk_max[c] else chunk_max[c]


@numba.njit(cache=True)
def _terms_used(weights, query_cut):  # pragma: no cover - numba
    """The query terms scored: all, or (the approximate term cut) the heaviest ``query_cut``, in their order."""
    n_terms = len(weights)
    if 0 < query_cut < n_terms:
        return np.sort(np.argsort(-weights, kind="mergesort")[:query_cut])
    return np.arange(n_terms)


TILE = 16384  # bound slots summed together over every query term: 64 KB of float32, resident in L2 for the tile


@numba.njit(cache=True)
def _bounds(ix, block_size, terms, weights, use, ub, chunk_max, block_live, live):  # pragma: no cover - numba
    """The bound of every block of one segment (``ub``: its bound slots; what it held on entry does not matter), in
    query-term order, and the maximum of each chunk of blocks (``chunk_max``, :func:`_chunk_maxima`); returns the
    largest bound. A block that ``block_live`` (uint8 a block; empty: every block) marks 0 holds no row the request
    may return: its bound is 0, so no tier ever scores it. A rarer term adds only the impacts of rows ``live`` keeps
    (uint8 a row; empty: every row): a bound need only hold for the rows a block may offer.

    Tile by tile (``TILE`` slots): every query term adds its part of a tile before the next tile starts, so the tile's
    sums stay in L1 and ``ub`` is written to memory once, where a pass a term over all of ``ub`` read and wrote it
    once a term (10 MB a pass at 8.8M documents: the bound pass was 76 % of a query there). Each block still adds its
    terms in query-term order, so the bounds are the same floats as term by term. A rarer term walks its postings
    with a cursor that the tiles advance."""
    term_windows, doc_low, _, impacts, _, _, max_slot, max_rows = ix
    shift = _log2(block_size)
    zero = np.float32(0.0)
    n_use = len(use)
    n_windows = term_windows.shape[1] - 1
    n_slots = len(ub)
    n_live_blocks = len(block_live)
    cursor = np.empty(n_use, dtype=np.int64)  # a rarer term: its next posting, and that posting's window
    window = np.zeros(n_use, dtype=np.int64)
    for jj in range(n_use):
        term = terms[use[jj]]
        cursor[jj] = term_windows[term, 0]
    n_rows = max_rows.shape[1]
    for t0 in range(0, n_slots, TILE):
        t1 = min(t0 + TILE, n_slots)
        tile = ub[t0:t1]  # (slices, indexed from 0: loops over them vectorize, loops over ub[t0:t1] by index did not)
        tile[:] = zero
        r1 = max(t0, min(t1, n_rows))
        jj = 0
        while jj < n_use:
            j = use[jj]
            term = terms[j]
            weight = np.float32(weights[j])
            slot = max_slot[term]
            at = jj
            jj += 1
            if slot >= 0:  # a row of block maxima: one SIMD loop, shared with the next such term when it follows
                row = max_rows[slot, t0:r1]
                if jj < n_use and max_slot[terms[use[jj]]] >= 0:  # two in a row: one loop, the same additions in order
                    other = max_rows[max_slot[terms[use[jj]]], t0:r1]
                    weight2 = np.float32(weights[use[jj]])
                    jj += 1
                    for b in range(len(row)):
                        tile[b] = (tile[b] + weight * np.float32(row[b])) + weight2 * np.float32(other[b])
                else:
                    for b in range(len(row)):
                        tile[b] += weight * np.float32(row[b])
                continue
            # a rarer term: the sum of its impacts in the block (>= their max), its postings of this tile's blocks
            w = window[at]
            p = cursor[at]
            while w < n_windows:
                first_block = np.int64(w) << (WINDOW_BITS - shift)
                if first_block >= t1:
                    break
                end = term_windows[term, w + 1]
                offset = first_block - t0
                if len(live) == 0:
                    while p < end:
                        block = offset + (np.int64(doc_low[p]) >> shift)
                        if block >= t1 - t0:
                            break
                        tile[block] += weight * np.float32(impacts[p])
                        p += 1
                else:
                    base = np.int64(w) << WINDOW_BITS
                    while p < end:  # (times 0 or 1: no branch to miss)
                        low = np.int64(doc_low[p])
                        block = offset + (low >> shift)
                        if block >= t1 - t0:
                            break
                        tile[block] += (weight * np.float32(impacts[p])) * np.float32(live[base + low])
                        p += 1
                if p < end:
                    break  # the tile ends inside this window
                w += 1
            window[at] = w
            cursor[at] = p
        if n_live_blocks > t0:
            flags = block_live[t0:min(t1, n_live_blocks)]
            for b in range(len(flags)):
                tile[b] *= np.float32(flags[b])
    _chunk_maxima(ub, chunk_max)
    max_ub = zero
    for c in range(len(chunk_max)):
        max_ub = max(max_ub, chunk_max[c])
    return max_ub


@numba.njit(cache=True, inline="always")
def _tier_floor(tier, max_ub, size, k, heap_scores, alpha):  # pragma: no cover - numba
    """The lower edge of tier ``tier``: before the heap is full a fixed fraction of the best bound; once it is full,
    at least what the current k-th score cannot rule out."""
    lo = np.float32(_TIERS[tier] * max_ub) if tier < len(_TIERS) else np.float32(0.0)
    if size == k:
        lo = max(lo, heap_scores[0] / alpha)
    return lo


@numba.njit(cache=True)
def _band_into(ix, live, block_size, doc_base, terms, weights, use, k, alpha, ub, candidates, acc, chunk_max,
               chunks, lo, hi, heap_scores, heap_docs, size):  # pragma: no cover - numba
    """Score the blocks of one segment whose bound (:func:`_bounds`) lies in [lo, hi), in increasing id, into a size-k
    heap that may already hold other segments' documents (numbered from ``doc_base`` here); a block the heap's k-th
    score has come to rule out is skipped. Returns (heap size, postings read, blocks scored). ``candidates`` holds
    one slot a bound slot of the segment, ``chunks`` one a chunk, ``acc`` (all zero) one a document of a block and
    is left zero."""
    n_chunks = len(chunk_max)
    passing = 0  # the chunks that reach the band, in increasing order
    for c in range(n_chunks):
        if chunk_max[c] >= lo and chunk_max[c] > 0.0:
            chunks[passing] = c
            passing += 1
    n = 0
    for i in range(_CHUNK):  # chunk c holds blocks c, n_chunks + c, ...: this order lists blocks in increasing id
        base = i * n_chunks
        for at in range(passing):
            b = base + chunks[at]
            if lo <= ub[b] < hi and ub[b] > 0.0:
                candidates[n] = b
                n += 1
    if n == 0:
        return size, 0, 0
    postings = 0
    scored = 0
    i = 0
    while i < n:  # batches of up to BATCH blocks that the k-th score cannot rule out yet, compacted in place
        first = i
        m = 0
        while i < n and m < BATCH:
            block = candidates[i]
            i += 1
            if size == k and alpha * ub[block] < heap_scores[0]:
                continue
            candidates[first + m] = block
            m += 1
        size, read = _score_blocks(ix, live, block_size, doc_base, terms, weights, use, candidates[first:first + m], k,
                                   acc, heap_scores, heap_docs, size)
        postings += read
        scored += m
    return size, postings, scored


@numba.njit(cache=True)
def score_query_blockmax(ix, live, block_size, num_docs, terms, weights, k, alpha, query_cut, ub, candidates,
                         acc, out_docs, out_scores):  # pragma: no cover - numba
    """One query, block-max pruned, into ``out_docs``/``out_scores``. Returns (postings read, blocks scored).

    ``ix``: the index arrays (see :func:`lsr.index.segment.kernel_arrays`). Scratch: ``ub`` (float32, one a bound slot
    (:func:`bound_slots`), any contents: the bound pass overwrites it, and it is left holding this query's bounds),
    ``candidates`` (int32, one a bound slot), ``acc`` (float32, ``BATCH`` x block_size, all zero, left so)."""
    heap_scores = np.empty(k, dtype=np.float32)
    heap_docs = np.empty(k, dtype=np.int64)
    chunk_max = np.empty(len(ub) // _CHUNK, dtype=np.float32)
    chunks = np.empty(len(ub) // _CHUNK, dtype=np.int32)
    use = _terms_used(weights, query_cut)
    max_ub = _bounds(ix, block_size, terms, weights, use, ub, chunk_max, np.zeros(0, dtype=np.uint8), live)
    size = postings = scored = 0
    hi = np.float32(np.inf)
    tier = 0
    while max_ub > 0.0:  # tiers of decreasing bound, [lo, hi)
        lo = _tier_floor(tier, max_ub, size, k, heap_scores, alpha)
        tier += 1
        if lo >= hi:  # (alpha < 1 can ask for a tier above the last one)
            break
        size, read, count = _band_into(ix, live, block_size, 0, terms, weights, use, k, alpha, ub, candidates,
                                       acc, chunk_max, chunks, lo, hi, heap_scores, heap_docs, size)
        postings += read
        scored += count
        if lo <= 0.0 or (size == k and alpha * lo <= heap_scores[0]):
            break  # every block left is bounded below theta (or none is left)
        hi = lo
    _drain(heap_scores, heap_docs, size, k, out_docs, out_scores)
    return postings, scored


@numba.njit(cache=True)
def _segments_range(ixs, lives, block_lives, block_sizes, doc_bases, n_blocks, q_indptr, q_terms, q_weights, k, alpha,
                    query_cut, first, last, ub, candidates, acc, out_docs, out_scores, postings,
                    blocks):  # pragma: no cover - numba
    heap_scores = np.empty(k, dtype=np.float32)
    heap_docs = np.empty(k, dtype=np.int64)
    n_segments = len(ixs)
    block_at = np.zeros(n_segments + 1, dtype=np.int64)  # segment s's bound slots in ub: [block_at[s], block_at[s+1])
    chunk_at = np.zeros(n_segments + 1, dtype=np.int64)
    for s in range(n_segments):
        block_at[s + 1] = block_at[s] + _slots(n_blocks[s])
        chunk_at[s + 1] = chunk_at[s] + _slots(n_blocks[s]) // _CHUNK
    chunk_max = np.empty(chunk_at[n_segments], dtype=np.float32)
    chunks = np.empty(chunk_at[n_segments], dtype=np.int32)
    seg_max = np.empty(n_segments, dtype=np.float32)
    for q in range(first, last):
        start = q_indptr[q]
        end = q_indptr[q + 1]
        terms, weights = q_terms[start:end], q_weights[start:end]
        use = _terms_used(weights, query_cut)
        max_ub = np.float32(0.0)
        for s in range(n_segments):  # every segment's bounds first ...
            seg_max[s] = _bounds(ixs[s], block_sizes[s], terms, weights, use, ub[block_at[s]:block_at[s + 1]],
                                 chunk_max[chunk_at[s]:chunk_at[s + 1]], block_lives[s], lives[s])
            max_ub = max(max_ub, seg_max[s])
        size = 0
        hi = np.float32(np.inf)
        tier = 0
        while max_ub > 0.0:  # ... then the tiers of one segment's walk, each over every segment that reaches it
            lo = _tier_floor(tier, max_ub, size, k, heap_scores, alpha)
            tier += 1
            if lo >= hi:
                break
            for s in range(n_segments):
                if seg_max[s] < lo or seg_max[s] <= 0.0:
                    continue
                size, read, count = _band_into(ixs[s], lives[s], block_sizes[s], doc_bases[s], terms, weights, use, k,
                                               alpha, ub[block_at[s]:block_at[s + 1]],
                                               candidates, acc, chunk_max[chunk_at[s]:chunk_at[s + 1]], chunks, lo,
                                               hi, heap_scores, heap_docs, size)
                postings[q] += read
                blocks[q] += count
            if lo <= 0.0 or (size == k and alpha * lo <= heap_scores[0]):
                break
            hi = lo
        _drain(heap_scores, heap_docs, size, k, out_docs[q], out_scores[q])


@numba.njit(cache=True)
def score_segments_blockmax_serial(ixs, lives, block_lives, block_sizes, doc_bases, n_blocks, q_indptr, q_terms, q_weights, k,
                                   scratch, alpha=1.0, query_cut=0):  # pragma: no cover - numba
    """The block-max top-k over several segments at once (typed lists of their kernel arrays and live masks;
    documents numbered from ``doc_bases``), one heap a query shared by every segment. Every segment's bounds come
    first; then one walk of tiers of decreasing bound, as over a single segment, each tier over every segment that
    reaches it: the blocks scored are those the same documents in one segment would need, wherever they live (the
    ties still go to the smaller document number). ``scratch``: ``ub`` with the bound slots (:func:`bound_slots`) of
    all segments, ``candidates`` those of the largest, ``acc`` ``BATCH`` x the largest block size, as
    :func:`blockmax_scratch`. Returns
    (documents, scores, postings read, blocks scored); a single Python call whatever the number of segments."""
    n_queries = len(q_indptr) - 1
    out_docs, out_scores, postings, blocks = _new_outputs(n_queries, k)
    ub, candidates, acc = scratch
    _segments_range(ixs, lives, block_lives, block_sizes, doc_bases, n_blocks, q_indptr, q_terms, q_weights, k,
                    np.float32(alpha), query_cut, 0, n_queries, ub, candidates, acc, out_docs, out_scores, postings, blocks)
    return out_docs, out_scores, postings, blocks


@numba.njit(cache=True, parallel=True)
def score_segments_blockmax(ixs, lives, block_lives, block_sizes, doc_bases, n_blocks, q_indptr, q_terms, q_weights, k,
                            n_chunks, max_blocks, max_block_size, alpha=1.0, query_cut=0):  # pragma: no cover - numba
    """:func:`score_segments_blockmax_serial` in parallel over chunks of queries, each chunk with its own scratch."""
    n_queries = len(q_indptr) - 1
    out_docs, out_scores, postings, blocks = _new_outputs(n_queries, k)
    n_chunks = max(1, min(n_chunks, n_queries))
    per_chunk = (n_queries + n_chunks - 1) // n_chunks
    total_slots = 0
    for s in range(len(n_blocks)):
        total_slots += _slots(n_blocks[s])
    for chunk in numba.prange(n_chunks):
        ub = np.zeros(total_slots, dtype=np.float32)
        candidates = np.empty(_slots(max_blocks), dtype=np.int32)
        acc = np.zeros(BATCH * max_block_size, dtype=np.float32)
        _segments_range(ixs, lives, block_lives, block_sizes, doc_bases, n_blocks, q_indptr, q_terms, q_weights, k,
                        np.float32(alpha), query_cut, chunk * per_chunk, min(n_queries, (chunk + 1) * per_chunk), ub,
                        candidates, acc, out_docs, out_scores, postings, blocks)
    return out_docs, out_scores, postings, blocks


# -- Scoring a few kept rows directly -------------------------------------------------------------------------------------
#
# A filter that keeps few rows (lsr.index.selection) is answered without walking blocks: every kept row is scored
# exactly, term by term in query order (the additions of the exhaustive kernel, into a per-row accumulator). A term
# stored as a dense row is read at the kept rows only. A term stored as postings is either walked whole, adding the
# postings of kept rows (``live``), or, when it has many more postings than there are kept rows (``WALK`` times),
# searched for each kept row by galloping from the previous one in the same window (rows increase, so the cursor only
# moves forward). The cost is about (query terms x kept rows), bounded by the query's postings, whatever the size of
# the segment.

WALK = 32  # a term with under WALK x kept rows postings is walked; above, each kept row is searched for


@numba.njit(cache=True)
def _rows_query(ix, kept, live, acc, doc_base, terms, weights, k, heap_scores, heap_docs, size,
                walk):  # pragma: no cover - numba
    """Score the rows ``kept`` (increasing; ``live``: 1 for each of them, a row) of one segment for one query and
    offer them to the heap (rows numbered from ``doc_base``); return (heap size, postings read). ``acc`` (float32,
    one a row of the segment) is all zero on entry and left so."""
    term_windows, doc_low, skips, impacts, dense_slot, dense_rows, _, _ = ix
    m = len(kept)
    postings = 0
    for j in range(len(terms)):
        term = terms[j]
        weight = np.float32(weights[j])
        slot = dense_slot[term]
        if slot >= 0:
            row = dense_rows[slot]
            for i in range(m):
                r = kept[i]
                acc[r] += weight * np.float32(row[r])
            postings += m
            continue
        n_windows = term_windows.shape[1] - 1
        if term_windows[term, n_windows] - term_windows[term, 0] <= walk * m:
            for w in range(n_windows):
                base = np.int64(w) << WINDOW_BITS
                for p in range(term_windows[term, w], term_windows[term, w + 1]):
                    r = base + np.int64(doc_low[p])
                    if live[r] != 0:
                        acc[r] += weight * np.float32(impacts[p])
                postings += term_windows[term, w + 1] - term_windows[term, w]
            continue
        i = 0
        while i < m:  # one window of kept rows at a time
            window = kept[i] >> WINDOW_BITS
            p = term_windows[term, window]
            end = term_windows[term, window + 1]
            while i < m and (kept[i] >> WINDOW_BITS) == window:
                if p < end:
                    low = kept[i] & _WINDOW_MASK
                    p = _seek(doc_low, skips, p, end, low)
                    if p < end and np.int64(doc_low[p]) == low:
                        acc[kept[i]] += weight * np.float32(impacts[p])
                        postings += 1
                i += 1
    for i in range(m):
        r = kept[i]
        score = acc[r]
        if score > 0.0:
            acc[r] = 0.0
            size = _offer(heap_scores, heap_docs, size, k, score, doc_base + r)
    return size, postings


@numba.njit(cache=True)
def _rows_range(ixs, kepts, lives, acc, doc_bases, q_indptr, q_terms, q_weights, k, first, last, out_docs, out_scores,
                postings, walk):  # pragma: no cover - numba
    heap_scores = np.empty(k, dtype=np.float32)
    heap_docs = np.empty(k, dtype=np.int64)
    for q in range(first, last):
        start = q_indptr[q]
        end = q_indptr[q + 1]
        size = 0
        for s in range(len(ixs)):
            if len(kepts[s]) == 0:
                continue
            rows = len(lives[s])  # segment s's accumulator: its rows, at its first row number (doc_bases are cumulative)
            size, read = _rows_query(ixs[s], kepts[s], lives[s], acc[doc_bases[s] - doc_bases[0]:][:rows],
                                     doc_bases[s], q_terms[start:end], q_weights[start:end], k, heap_scores, heap_docs,
                                     size, walk)
            postings[q] += read
        _drain(heap_scores, heap_docs, size, k, out_docs[q], out_scores[q])


@numba.njit(cache=True)
def score_segments_rows_serial(ixs, kepts, lives, doc_bases, q_indptr, q_terms, q_weights, k, acc,
                               walk=WALK):  # pragma: no cover - numba
    """The exact top-k among the kept rows of several segments (typed lists of their kernel arrays, of their kept
    rows, increasing, and of their ``live`` flags, one a row; rows numbered from ``doc_bases``, each segment's
    following the previous one's), ties to the smaller number: the exhaustive kernel's answer over those rows.
    ``acc``: float32, zero, a slot a row of all the segments (left zero). Returns (documents, scores, postings
    read). ``walk``: see :data:`WALK`."""
    n_queries = len(q_indptr) - 1
    out_docs, out_scores, postings, _ = _new_outputs(n_queries, k)
    _rows_range(ixs, kepts, lives, acc, doc_bases, q_indptr, q_terms, q_weights, k, 0, n_queries, out_docs,
                out_scores, postings, walk)
    return out_docs, out_scores, postings


@numba.njit(cache=True, parallel=True)
def score_segments_rows(ixs, kepts, lives, doc_bases, q_indptr, q_terms, q_weights, k, n_chunks, total_rows,
                        walk=WALK):  # pragma: no cover - numba
    """:func:`score_segments_rows_serial` in parallel over chunks of queries, each chunk with its own accumulator
    of ``total_rows`` slots."""
    n_queries = len(q_indptr) - 1
    out_docs, out_scores, postings, _ = _new_outputs(n_queries, k)
    n_chunks = max(1, min(n_chunks, n_queries))
    per_chunk = (n_queries + n_chunks - 1) // n_chunks
    for chunk in numba.prange(n_chunks):
        acc = np.zeros(total_rows, dtype=np.float32)
        _rows_range(ixs, kepts, lives, acc, doc_bases, q_indptr, q_terms, q_weights, k, chunk * per_chunk,
                    min(n_queries, (chunk + 1) * per_chunk), out_docs, out_scores, postings, walk)
    return out_docs, out_scores, postings


def blockmax_scratch(num_docs: int, block_size: int) -> tuple:
    """Per-thread scratch for :func:`score_batch_blockmax_serial`, reusable across calls (``acc`` is left zero; the
    bound pass overwrites ``ub`` whatever it holds): allocating and clearing it per query would cost more than
    scoring a short query."""
    slots = bound_slots(num_docs, block_size)
    return (np.zeros(slots, dtype=np.float32), np.empty(slots, dtype=np.int32),
            np.zeros(BATCH * block_size, dtype=np.float32))


@numba.njit(cache=True)
def _blockmax_range(ix, live, block_size, num_docs, q_indptr, q_terms, q_weights, k, alpha, query_cut, first, last,
                    ub, candidates, acc, out_docs, out_scores, postings, blocks):  # pragma: no cover - numba
    for q in range(first, last):
        start = q_indptr[q]
        end = q_indptr[q + 1]
        postings[q], blocks[q] = score_query_blockmax(ix, live, block_size, num_docs, q_terms[start:end],
                                                      q_weights[start:end], k, alpha, query_cut, ub, candidates,
                                                      acc, out_docs[q], out_scores[q])


@numba.njit(cache=True, parallel=True)
def score_batch_blockmax(ix, live, block_size, q_indptr, q_terms, q_weights, num_docs, k, n_chunks, alpha=1.0,
                         query_cut=0):  # pragma: no cover - numba
    """Block-max pruned :func:`score_batch`: returns (docs, scores, postings read, blocks scored), in parallel over
    chunks of queries (each chunk with its own scratch). ``alpha`` = 1 and ``query_cut`` = 0 give exactly the
    exhaustive top-k."""
    n_queries = len(q_indptr) - 1
    out_docs, out_scores, postings, blocks = _new_outputs(n_queries, k)
    slots = _slots((num_docs + block_size - 1) // block_size)
    n_chunks = max(1, min(n_chunks, n_queries))
    per_chunk = (n_queries + n_chunks - 1) // n_chunks
    for chunk in numba.prange(n_chunks):
        ub = np.zeros(slots, dtype=np.float32)
        candidates = np.empty(slots, dtype=np.int32)
        acc = np.zeros(BATCH * block_size, dtype=np.float32)
        _blockmax_range(ix, live, block_size, num_docs, q_indptr, q_terms, q_weights, k, np.float32(alpha), query_cut,
                        chunk * per_chunk, min(n_queries, (chunk + 1) * per_chunk), ub, candidates, acc,
                        out_docs, out_scores, postings, blocks)
    return out_docs, out_scores, postings, blocks


@numba.njit(cache=True)
def score_batch_blockmax_serial(ix, live, block_size, q_indptr, q_terms, q_weights, num_docs, k, scratch, alpha=1.0,
                                query_cut=0):  # pragma: no cover - numba
    """:func:`score_batch_blockmax` on the calling thread with caller-owned ``scratch`` (:func:`blockmax_scratch`,
    reused across calls); see :func:`score_batch_serial` for why it is a separate function."""
    n_queries = len(q_indptr) - 1
    out_docs, out_scores, postings, blocks = _new_outputs(n_queries, k)
    ub, candidates, acc = scratch
    _blockmax_range(ix, live, block_size, num_docs, q_indptr, q_terms, q_weights, k, np.float32(alpha), query_cut, 0,
                    n_queries, ub, candidates, acc, out_docs, out_scores, postings, blocks)
    return out_docs, out_scores, postings, blocks


@numba.njit(cache=True)
def score_batch_grouped(ix, live_docs, row_doc, q_indptr, q_terms, q_weights, num_rows, num_docs,
                        k):  # pragma: no cover - numba
    """Exhaustive scoring where rows are chunks of documents and a document scores the sum over its chunks:
    every posting adds to its document's slot (``row_doc[row]``), deleted documents (``live_docs`` 0) are left out.
    Returns (documents (n, k) int64, scores (n, k) float32, postings (n,) int64), ties to the smaller document."""
    n_queries = len(q_indptr) - 1
    out_docs, out_scores, postings, _ = _new_outputs(n_queries, k)
    accumulator = np.zeros(num_docs, dtype=np.float32)
    touched = np.empty(num_docs, dtype=np.int64)
    for q in range(n_queries):
        start = q_indptr[q]
        end = q_indptr[q + 1]
        postings[q] = score_query(ix, live_docs, num_rows, q_terms[start:end], q_weights[start:end], k, accumulator,
                                  touched, out_docs[q], out_scores[q], row_doc)
    return out_docs, out_scores, postings
