from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from service.kernel import score_batch, score_batch_serial


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
def test_kernel_equals_brute_force(dtype, k, kernel):
    (offsets, doc_ids, impacts), dense, (q_indptr, q_terms, q_weights) = random_collection(int(k), dtype=dtype)
    docs, scores, postings = kernel(offsets, doc_ids, impacts, q_indptr, q_terms, q_weights, dense.shape[0], k, 3)
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
        "from tests.service.test_kernel import random_collection, brute_force\n"
        "from service.kernel import score_batch\n"
        "import numba; assert numba.config.DISABLE_JIT\n"
        "(o, d, i), dense, (qi, qt, qw) = random_collection(5, n_docs=60, vocab=20)\n"
        "docs, scores, _ = score_batch(o, d, i, qi, qt, qw, dense.shape[0], 5, 2)\n"
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
    docs, scores, _ = score_batch_serial(offsets, doc_ids, impacts, *q, 4, 2, 1)
    assert docs[0].tolist() == [1, 2]
    docs, _, _ = score_batch_serial(offsets, doc_ids, impacts, *q, 4, 10, 1)
    assert docs[0].tolist() == [1, 2, 3, 0, -1, -1, -1, -1, -1, -1]


def test_empty_query_returns_no_hits():
    offsets = np.array([0, 1], dtype=np.int64)
    docs, scores, postings = score_batch_serial(offsets, np.array([0], np.uint32), np.array([3], np.uint8),
                                                np.array([0, 0]), np.zeros(0, np.int32), np.zeros(0, np.float32),
                                                1, 3, 1)
    assert (docs == -1).all() and postings[0] == 0
