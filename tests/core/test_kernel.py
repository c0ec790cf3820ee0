from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lsr.index.kernel import score_batch, score_batch_serial
from lsr.index.segment import compact_postings, decode_postings, kernel_arrays

ALL = np.zeros(0, np.uint8)  # the live-rows mask of a segment with nothing deleted


def stored(offsets, doc_ids, impacts, n_rows, block_size=4, dense_ratio=0, bound_ratio=16):
    """A segment's kernel arrays (``ix``) from CSR postings by term, as the segment writer lays them out."""
    return kernel_arrays(compact_postings(offsets, doc_ids, impacts, n_rows, block_size, dense_ratio, bound_ratio))


def random_collection(seed, n_docs=300, vocab=80, dtype=np.uint8):
    """CSR postings by term + the equivalent dense (doc x term) matrix, with many exact score ties."""
    rng = np.random.default_rng(seed)
    dense = np.zeros((n_docs, vocab), dtype=np.float32)
    mask = rng.random((n_docs, vocab)) < 0.08
    values = rng.integers(1, 6, size=mask.sum()) if dtype == np.uint8 else rng.uniform(0.1, 3, mask.sum())
    dense[mask] = values
    offsets = np.zeros(vocab + 1, dtype=np.int64)
    doc_lists, impact_lists = [], []
    for term in range(vocab):
        docs = np.flatnonzero(dense[:, term])
        doc_lists.append(docs.astype(np.uint32))
        impact_lists.append(dense[docs, term].astype(dtype))
        offsets[term + 1] = offsets[term] + len(docs)
    queries = []
    for _ in range(25):
        terms = np.sort(rng.choice(vocab, int(rng.integers(1, 8)), replace=False)).astype(np.int32)
        weights = (rng.integers(1, 4, len(terms)) if dtype == np.uint8 else rng.uniform(0.1, 2, len(terms)))
        queries.append((terms, weights.astype(np.float32)))
    q_indptr = np.zeros(len(queries) + 1, dtype=np.int64)
    np.cumsum([len(t) for t, _ in queries], out=q_indptr[1:])
    q_terms = np.concatenate([t for t, _ in queries])
    q_weights = np.concatenate([w for _, w in queries])
    return (offsets, np.concatenate(doc_lists), np.concatenate(impact_lists)), dense, (q_indptr, q_terms, q_weights)


def brute_force(dense, q_indptr, q_terms, q_weights, k):
    """Exhaustive dot products; rank by score descending, then doc id ascending; only docs with a match."""
    out = []
    for q in range(len(q_indptr) - 1):
        vec = np.zeros(dense.shape[1], dtype=np.float64)
        sl = slice(q_indptr[q], q_indptr[q + 1])
        vec[q_terms[sl]] = q_weights[sl]
        scores = dense.astype(np.float64) @ vec
        matched = np.flatnonzero(scores > 0)
        order = sorted(matched.tolist(), key=lambda d: (-scores[d], d))[:k]
        out.append((order, scores[order]))
    return out


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("k", [1, 10, 300])
@pytest.mark.parametrize("kernel", [score_batch, score_batch_serial])
@pytest.mark.parametrize("dense_ratio", [0, 16])
def test_kernel_equals_brute_force(dtype, k, kernel, dense_ratio):
    """The exhaustive kernel over the stored layout (rare terms as windowed postings, frequent ones as dense rows)
    ranks as exact dot products do, and counts every posting of the query's terms."""
    (offsets, doc_ids, impacts), dense, (q_indptr, q_terms, q_weights) = random_collection(int(k), dtype=dtype)
    ix = stored(offsets, doc_ids, impacts, dense.shape[0], 4, dense_ratio)
    docs, scores, postings = kernel(ix, ALL, q_indptr, q_terms, q_weights, dense.shape[0], k, 3)
    for q, (expected_docs, expected_scores) in enumerate(brute_force(dense, q_indptr, q_terms, q_weights, k)):
        got = docs[q][docs[q] >= 0]
        assert got.tolist() == expected_docs, f"query {q}"
        np.testing.assert_allclose(scores[q][: len(got)], expected_scores, rtol=1e-5)
        terms = q_terms[q_indptr[q] : q_indptr[q + 1]]
        assert postings[q] == sum(offsets[t + 1] - offsets[t] for t in terms)


def test_kernel_without_jit():
    """The same kernel as plain Python (NUMBA_DISABLE_JIT=1) gives the brute-force answer too."""
    code = (
        "import numpy as np\n"
        "from tests.core.test_kernel import random_collection, brute_force\n"
        "from tests.core.test_kernel import stored\n"
        "from lsr.index.kernel import score_batch\n"
        "import numba; assert numba.config.DISABLE_JIT\n"
        "(o, d, i), dense, (qi, qt, qw) = random_collection(5, n_docs=60, vocab=20)\n"
        "ix = stored(o, d, i, dense.shape[0], 4, 4)\n"
        "docs, scores, _ = score_batch(ix, np.zeros(0, np.uint8), qi, qt, qw, dense.shape[0], 5, 2)\n"
        "for q, (exp, _) in enumerate(brute_force(dense, qi, qt, qw, 5)):\n"
        "    assert docs[q][docs[q] >= 0].tolist() == exp, q\n"
        "print('ok')\n"
    )
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_ties_are_broken_by_document_id():
    offsets = np.array([0, 4], dtype=np.int64)
    doc_ids = np.array([0, 1, 2, 3], dtype=np.uint32)
    impacts = np.array([5, 7, 7, 7], dtype=np.uint8)
    q = (np.array([0, 1]), np.array([0], dtype=np.int32), np.array([1.0], dtype=np.float32))
    ix = stored(offsets, doc_ids, impacts, 4)
    docs, scores, _ = score_batch_serial(ix, ALL, *q, 4, 2, 1)
    assert docs[0].tolist() == [1, 2]
    docs, _, _ = score_batch_serial(ix, ALL, *q, 4, 10, 1)
    assert docs[0].tolist() == [1, 2, 3, 0, -1, -1, -1, -1, -1, -1]


def test_empty_query_returns_no_hits():
    offsets = np.array([0, 1], dtype=np.int64)
    ix = stored(offsets, np.array([0], np.uint32), np.array([3], np.uint8), 1)
    docs, scores, postings = score_batch_serial(ix, ALL, np.array([0, 0]), np.zeros(0, np.int32),
                                                np.zeros(0, np.float32), 1, 3, 1)
    assert (docs == -1).all() and postings[0] == 0


# -- block-max pruning ------------------------------------------------------------------------------------------------
from lsr.index.kernel import blockmax_scratch, score_batch_blockmax, score_batch_blockmax_serial  # noqa: E402


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("block_size,dense_ratio,bound_ratio", [(1, 0, 0), (4, 4, 16), (8, 16, 0), (32, 0, 64),
                                                                (512, 2, 2)])
@pytest.mark.parametrize("k", [1, 10, 300])
def test_blockmax_equals_exhaustive(dtype, block_size, dense_ratio, bound_ratio, k):
    """Exact mode returns the exhaustive kernel's top-k bit for bit (ties broken the same way), serial and parallel,
    whatever the block size, however many terms are stored dense and however many have rows of block maxima (the
    others bound a block by the sum of their impacts there, and are found in it through their skips); blocks are
    scored in batches, term by term; ``acc`` is left clean for the next call, and ``ub`` may hold anything."""
    for seed in range(3):
        (offsets, doc_ids, impacts), dense, (q_indptr, q_terms, q_weights) = random_collection(seed, dtype=dtype)
        n = dense.shape[0]
        ix = stored(offsets, doc_ids, impacts, n, block_size, dense_ratio, bound_ratio)
        expected = score_batch(ix, ALL, q_indptr, q_terms, q_weights, n, k, 2)
        scratch = blockmax_scratch(n, block_size)
        scratch[0][:] = 7.0  # the bound pass overwrites ub whatever it holds (and leaves it holding the last bounds)
        for docs, scores, _, _ in (score_batch_blockmax(ix, ALL, block_size, q_indptr, q_terms, q_weights, n, k, 2),
                                   score_batch_blockmax_serial(ix, ALL, block_size, q_indptr, q_terms, q_weights, n,
                                                               k, scratch)):
            np.testing.assert_array_equal(docs, expected[0])
            np.testing.assert_array_equal(scores, expected[1])
        _, _, acc = scratch  # (candidates are written before they are read)
        assert not acc.any()


def test_blockmax_prunes_and_the_approximate_knobs_are_subsets():
    """On a collection with a skewed score distribution the exact pruned kernel reads fewer postings than there are;
    alpha < 1 and query_cut read fewer still and return real documents with their true scores."""
    rng = np.random.default_rng(7)
    n, vocab = 4000, 50
    dense = np.where(rng.random((n, vocab)) < 0.3, rng.integers(1, 256, (n, vocab)), 0).astype(np.uint8)
    offsets = np.zeros(vocab + 1, dtype=np.int64)
    offsets[1:] = np.cumsum((dense > 0).sum(0))
    doc_ids = np.concatenate([np.flatnonzero(dense[:, t]) for t in range(vocab)]).astype(np.uint32)
    impacts = np.concatenate([dense[dense[:, t] > 0, t] for t in range(vocab)])
    q_terms = np.array([3, 9, 20, 41], dtype=np.int32)
    q_weights = np.array([2.0, 1.5, 1.0, 0.5], dtype=np.float32)
    q_indptr = np.array([0, 4])
    ix = stored(offsets, doc_ids, impacts, n, 8, 0)
    exact = score_batch_blockmax(ix, ALL, 8, q_indptr, q_terms, q_weights, n, 10, 1)
    total = sum(offsets[t + 1] - offsets[t] for t in q_terms)
    assert exact[2][0] < total
    truth = dense[:, q_terms].astype(np.float32) @ q_weights
    for alpha, cut in ((0.8, 0), (1.0, 2)):
        docs, scores, postings, _ = score_batch_blockmax(ix, ALL, 8, q_indptr, q_terms, q_weights, n, 10, 1, alpha,
                                                         cut)
        assert postings[0] <= exact[2][0]
        if cut == 0:
            np.testing.assert_allclose(scores[0], truth[docs[0]], rtol=1e-6)
    assert len(set(exact[0][0].tolist()) & set(np.argsort(-truth, kind="stable")[:10].tolist())) == 10



@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("block_size,dense_ratio", [(1, 0), (4, 4), (8, 16)])
def test_deleted_rows_are_skipped_and_blockmax_stays_exact(dtype, block_size, dense_ratio):
    """With a random third of the rows deleted, every kernel returns the brute-force top-k of the live rows: deleted
    rows still count in the block maxima (valid upper bounds), they are only never offered."""
    for seed in range(3):
        (offsets, doc_ids, impacts), dense, (q_indptr, q_terms, q_weights) = random_collection(seed, dtype=dtype)
        n = dense.shape[0]
        live = (np.random.default_rng(seed).random(n) > 0.33).astype(np.uint8)
        masked = dense * live[:, None]
        ix = stored(offsets, doc_ids, impacts, n, block_size, dense_ratio)
        scratch = blockmax_scratch(n, block_size)
        for k in (1, 10):
            want = brute_force(masked, q_indptr, q_terms, q_weights, k)
            for docs, _scores, *_ in (score_batch(ix, live, q_indptr, q_terms, q_weights, n, k, 2),
                                     score_batch_blockmax(ix, live, block_size, q_indptr, q_terms, q_weights, n, k, 2),
                                     score_batch_blockmax_serial(ix, live, block_size, q_indptr, q_terms, q_weights, n,
                                                                 k, scratch)):
                for q, (expected_docs, _) in enumerate(want):
                    assert docs[q][docs[q] >= 0].tolist() == expected_docs, (seed, k, q)


def segments_of(dense: np.ndarray, cuts: list[int]):
    """The rows [cuts[i], cuts[i+1]) of a dense (rows x terms) impact matrix as segments (typed list of kernel
    arrays, blocks of 4), and their first row numbers."""
    from numba.typed import List

    ixs, bases = List(), []
    for first, last in zip(cuts[:-1], cuts[1:]):
        part = dense[first:last]
        o = np.zeros(part.shape[1] + 1, dtype=np.int64)
        o[1:] = np.cumsum((part > 0).sum(0))
        d = np.concatenate([np.flatnonzero(part[:, t]) for t in range(part.shape[1])]).astype(np.uint32)
        i = np.concatenate([part[part[:, t] > 0, t] for t in range(part.shape[1])]).astype(np.uint8)
        ixs.append(stored(o, d, i, last - first, 4, 4))
        bases.append(first)
    return ixs, bases


def test_one_call_over_several_segments_equals_the_exhaustive_top_k():
    """Segments searched in one kernel call with a shared heap (the k-th score of one prunes the next), deleted rows
    skipped: the same top-k, ties included, as the exhaustive kernel over the whole collection."""
    from numba.typed import List

    from lsr.index.kernel import BATCH, bound_slots, score_segments_blockmax, score_segments_blockmax_serial

    for seed in range(3):
        (offsets, doc_ids, impacts), dense, (q_indptr, q_terms, q_weights) = random_collection(seed)
        n = dense.shape[0]
        live = (np.random.default_rng(seed).random(n) > 0.25).astype(np.uint8)
        cuts = [0, 70, 71, 190, n]  # uneven segments, one of a single document
        ixs, bases = segments_of(dense, cuts)
        lives = List([live[first:last].copy() for first, last in zip(cuts[:-1], cuts[1:])])
        blocks = [(last - first + 3) // 4 for first, last in zip(cuts[:-1], cuts[1:])]
        no_blocks = List([np.zeros(0, np.uint8) for _ in lives])
        flagged = List([np.pad(live_, (0, -len(live_) % 4)).reshape(-1, 4).max(1).astype(np.uint8) for live_ in lives])
        for k in (1, 10, 40):
            want = score_batch(stored(offsets, doc_ids, impacts, n), live, q_indptr, q_terms, q_weights, n, k, 1)
            slots = [bound_slots(b, 1) for b in blocks]
            scratch = (np.zeros(sum(slots), np.float32), np.empty(max(slots), np.int32), np.zeros(BATCH * 4, np.float32))
            for block_lives in (no_blocks, flagged):  # blocks flagged empty of live rows are skipped: the same top-k
                for got in (score_segments_blockmax(ixs, lives, block_lives, np.full(4, 4), np.array(bases),
                                                    np.array(blocks), q_indptr, q_terms, q_weights, k, 2, max(blocks), 4),
                            score_segments_blockmax_serial(ixs, lives, block_lives, np.full(4, 4), np.array(bases),
                                                           np.array(blocks), q_indptr, q_terms, q_weights, k, scratch)):
                    np.testing.assert_array_equal(got[0], want[0])
                    np.testing.assert_array_equal(got[1], want[1])
                assert not scratch[2].any()  # acc left zero (ub is overwritten by every bound pass)


def test_scoring_the_kept_rows_directly_equals_the_exhaustive_top_k_over_them():
    """A few kept rows (a selective filter) scored directly, term by term with galloping searches, in several
    segments at once: the exhaustive kernel's top-k over those rows, scores to the bit and ties included."""
    from numba.typed import List

    from lsr.index.kernel import score_segments_rows, score_segments_rows_serial

    for seed in range(4):
        (offsets, doc_ids, impacts), dense, (q_indptr, q_terms, q_weights) = random_collection(seed)
        n = dense.shape[0]
        rng = np.random.default_rng(100 + seed)
        keep = (rng.random(n) < (0.02, 0.1, 0.5, 1.0)[seed]).astype(np.uint8)
        cuts = [0, 70, 71, 190, n]
        ixs, bases = segments_of(dense, cuts)
        kepts = List([np.flatnonzero(keep[first:last]).astype(np.int64) for first, last in zip(cuts[:-1], cuts[1:])])
        lives = List([keep[first:last].copy() for first, last in zip(cuts[:-1], cuts[1:])])
        for walk in (0, 10**6):  # every posting term searched for each kept row; every one walked
            for k in (1, 10, 40):
                want = score_batch(stored(offsets, doc_ids, impacts, n), keep, q_indptr, q_terms, q_weights, n, k, 1)
                acc = np.zeros(n, np.float32)
                for got in (score_segments_rows_serial(ixs, kepts, lives, np.array(bases), q_indptr, q_terms, q_weights,
                                                       k, acc, walk),
                            score_segments_rows(ixs, kepts, lives, np.array(bases), q_indptr, q_terms, q_weights, k, 2,
                                                n, walk)):
                    np.testing.assert_array_equal(got[0], want[0])
                    np.testing.assert_array_equal(got[1], want[1])
                assert not acc.any()


def test_rows_past_one_window_of_65536():
    """Row numbers are stored as 16 bits within windows of 65,536 rows: a segment of 200,000 rows (four windows, the
    last partial) decodes back to its postings exactly, and the exhaustive and block-max kernels still return the
    brute-force top-k, with deleted rows in every window."""
    rng = np.random.default_rng(11)
    n, vocab = 200_000, 40
    rows = np.repeat(np.arange(n), 3)
    terms = rng.integers(0, vocab, len(rows))
    terms[::3] = 0  # term 0 in every row: dense under any ratio
    values = rng.integers(1, 256, len(rows)).astype(np.float32)
    import scipy.sparse

    matrix = scipy.sparse.csc_matrix((values, (rows, terms)), shape=(n, vocab))
    matrix.sum_duplicates()
    matrix.data = np.minimum(matrix.data, 255)
    offsets, doc_ids, impacts = matrix.indptr.astype(np.int64), matrix.indices.astype(np.uint32), \
        matrix.data.astype(np.uint8)
    live = (rng.random(n) > 0.2).astype(np.uint8)
    q_terms = np.array([0, 3, 17, 39, 5, 8], dtype=np.int32)
    q_weights = np.array([0.1, 2.0, 1.5, 1.0, 0.5, 0.25], dtype=np.float32)
    q_indptr = np.array([0, 4, 6])
    truth = (matrix.toarray().astype(np.float64) * live[:, None])
    for block_size, dense_ratio, bound_ratio in ((4, 4, 16), (64, 0, 0), (1, 8, 0), (65536, 0, 0), (65536, 8, 16)):
        arrays = compact_postings(offsets, doc_ids, impacts, n, block_size, dense_ratio, bound_ratio)
        assert arrays["term_windows"].shape == (vocab, 5)
        back = decode_postings(arrays, n)
        np.testing.assert_array_equal(back.indptr, offsets)
        np.testing.assert_array_equal(back.indices, doc_ids)
        np.testing.assert_array_equal(back.data, impacts)
        ix = kernel_arrays(arrays)
        scratch = blockmax_scratch(n, block_size)
        for k in (1, 10):
            want = brute_force(truth, q_indptr, q_terms, q_weights, k)
            exhaustive = score_batch(ix, live, q_indptr, q_terms, q_weights, n, k, 2)
            for q, (expected_docs, _) in enumerate(want):
                assert exhaustive[0][q][exhaustive[0][q] >= 0].tolist() == expected_docs, (block_size, k, q)
            for got in (score_batch_blockmax(ix, live, block_size, q_indptr, q_terms, q_weights, n, k, 2),
                        score_batch_blockmax_serial(ix, live, block_size, q_indptr, q_terms, q_weights, n, k, scratch)):
                np.testing.assert_array_equal(got[0], exhaustive[0])
                np.testing.assert_array_equal(got[1], exhaustive[1])


@pytest.mark.parametrize("block_size", [0, 3, 12, 1 << 17])
def test_a_block_size_that_is_not_a_power_of_two_is_refused(block_size):
    from lsr.errors import InvalidInput

    with pytest.raises(InvalidInput, match="power of two"):
        compact_postings(np.array([0, 1]), np.array([0], np.uint32), np.array([1], np.uint8), 1, block_size, 0)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_the_row_streaming_layout_is_the_term_sorted_one_bit_for_bit(dtype):
    """CompactBuilder (a segment's write, two passes over row batches) against compact_postings (term-sorted CSR):
    the same arrays, across windows of 65,536 rows, zero impacts left out, batches of uneven sizes."""
    import scipy.sparse

    from lsr.index.segment import CompactBuilder

    rng = np.random.default_rng(7)
    n, vocab = 200_000, 60
    rows = rng.integers(0, n, 400_000)
    terms = np.minimum(rng.zipf(1.3, len(rows)) - 1, vocab - 1)
    csr = scipy.sparse.csr_matrix((rng.integers(0, 256, len(rows)).astype(np.float32), (rows, terms)),
                                  shape=(n, vocab))
    csr.sum_duplicates()
    csr.data = np.minimum(csr.data, 255).astype(np.float32)
    csr.data[::97] = 0  # explicit zeros: not postings in either path
    values = csr.data.astype(dtype)
    csc = csr.tocsc()
    csc.eliminate_zeros()
    csc.sort_indices()
    for block_size, dense_ratio, bound_ratio in ((4, 8, 16), (64, 0, 0), (1, 4, 0), (65536, 8, 16)):
        want = compact_postings(csc.indptr.astype(np.int64), csc.indices.astype(np.uint32), csc.data.astype(dtype), n,
                                block_size, dense_ratio, bound_ratio)
        builder = CompactBuilder(vocab, n, block_size, dense_ratio, bound_ratio)
        cuts = [0, 1, 70_000, 131_073, n]
        batches = [(csr.indptr[a:b + 1] - csr.indptr[a], csr.indices[csr.indptr[a]:csr.indptr[b]],
                    values[csr.indptr[a]:csr.indptr[b]]) for a, b in zip(cuts[:-1], cuts[1:])]
        for batch in batches:
            builder.count(*batch)
        assert builder.postings == csc.nnz
        builder.plan(dtype)
        for batch in batches:
            builder.fill(*batch)
        got = builder.finish()
        assert sorted(got) == sorted(want)
        for name in want:
            assert got[name].dtype == want[name].dtype, name
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)


@pytest.mark.parametrize("block_size", [1, 4, 64])
def test_the_tiled_bound_pass_gives_the_term_by_term_bounds(block_size):
    """_bounds sums a tile of blocks over every query term before the next tile: against a plain term-by-term pass in
    NumPy (float32, the same additions in the same order), every block's bound is the same float, across windows of
    65,536 rows and tiles, with and without live-row and live-block masks, for dense, bounded and rare terms."""
    import scipy.sparse

    from lsr.index import kernel

    rng = np.random.default_rng(block_size)
    n, vocab = 150_000, 40
    rows = rng.integers(0, n, 500_000)
    terms = np.minimum(rng.zipf(1.2, len(rows)) - 1, vocab - 1)
    matrix = scipy.sparse.csc_matrix((rng.integers(1, 256, len(rows)).astype(np.float32), (rows, terms)),
                                     shape=(n, vocab))
    matrix.sum_duplicates()
    matrix.data = np.minimum(matrix.data, 255)
    arrays = compact_postings(matrix.indptr.astype(np.int64), matrix.indices.astype(np.uint32),
                              matrix.data.astype(np.uint8), n, block_size, 8, 16)
    assert len(arrays["dense_terms"]) and len(arrays["max_terms"]) > len(arrays["dense_terms"])
    ix = kernel_arrays(arrays)
    max_slot, max_rows = ix[6], ix[7]
    slots = kernel.bound_slots(n, block_size)
    n_blocks = -(-n // block_size)
    q_terms = np.array([0, 1, 2, 7, 20, 33, 39], dtype=np.int32)  # frequent (rows of maxima) and rare terms
    q_weights = rng.uniform(0.1, 3.0, len(q_terms)).astype(np.float32)
    use = np.arange(len(q_terms))
    for live, block_live in ((ALL, ALL), ((rng.random(n) > 0.3).astype(np.uint8), ALL),
                             (ALL, (rng.random(n_blocks) > 0.5).astype(np.uint8))):
        want = np.zeros(slots, np.float32)
        for term, weight in zip(q_terms.tolist(), q_weights.tolist()):
            weight = np.float32(weight)
            if max_slot[term] >= 0:
                want[:n_blocks] += weight * max_rows[max_slot[term]].astype(np.float32)
                continue
            column = matrix[:, term]
            docs, values = column.indices, column.data.astype(np.float32)
            contribution = weight * values
            if len(live):
                contribution = contribution * live[docs].astype(np.float32)
            np.add.at(want, docs // block_size, contribution)  # unbuffered, in posting order
        if len(block_live):
            want[:n_blocks] *= block_live.astype(np.float32)
        ub = np.full(slots, 123.0, np.float32)  # whatever it held before
        chunk_max = np.empty(slots // kernel._CHUNK, np.float32)
        best = kernel._bounds(ix, block_size, q_terms, q_weights, use, ub, chunk_max, block_live, live)
        np.testing.assert_array_equal(ub, want)
        assert best == want.max()
        np.testing.assert_array_equal(chunk_max, want.reshape(kernel._CHUNK, -1).max(axis=0))
