"""The native sparse retriever through the engine: exact scores, batches, refusals."""

from __future__ import annotations

import numpy as np
import pytest

from lsr import Engine, Index, load_encoder
from lsr.errors import EncoderMismatch, InvalidIndex, InvalidInput
from lsr.sparse import SparseBatch
from tests.conftest import TINY_DOCS, make_tiny_model_dir, write_jsonl


@pytest.fixture(scope="module", params=["float32", "uint8"])
def tiny_index(request, tmp_path_factory, tiny_mlm_dir, tiny_idf_file):
    root = tmp_path_factory.mktemp("search")
    corpus = write_jsonl(root / "corpus.jsonl", TINY_DOCS)
    encoder = load_encoder(tiny_mlm_dir, kind="inference-free", idf=tiny_idf_file, device="cpu")
    Index.build(encoder, corpus=corpus, path=root / "idx", impact_dtype=request.param)
    return root / "idx"


def exact_scores(encoder, query: str) -> dict[str, float]:
    """Score every document by a plain dot product of the query vector and the encoded document vectors."""
    q_ids, q_w = encoder.encode_queries([query]).row(0)
    docs = encoder.encode_documents([f"{d['title']} {d['text']}".strip() for d in TINY_DOCS])
    scores = {}
    for i, doc in enumerate(TINY_DOCS):
        ids, w = docs.row(i)
        common, qi, di = np.intersect1d(q_ids, ids, return_indices=True)
        if len(common):
            scores[doc["_id"]] = float((q_w[qi] * w[di]).sum())
    return scores


def test_search_matches_exact_dot_product(tiny_index):
    engine = Engine.open(tiny_index, device="cpu")
    encoder = engine.index.encoder
    result = engine.search("statin breast cancer in women", k=10)
    assert result.mode == "sparse" and result.components == ("sparse",) and result.exact
    expected = exact_scores(encoder, "statin breast cancer in women")
    # uint8: each impact is within half a quantization step of the float weight
    tolerance = 1e-5 if engine.index.manifest.impact_dtype == "float32" else 0.5 / engine.index.manifest.scale
    query_mass = float(encoder.encode_queries(["statin breast cancer in women"]).weights.sum())
    assert sorted(result.ids) == sorted(expected)
    for hit in result.hits:
        assert abs(hit.score - expected[hit.id]) <= tolerance * query_mass + 1e-5
    assert all(a >= b for a, b in zip(result.scores, result.scores[1:]))
    assert result.postings > 0
    assert engine.search("zzzz", k=3).hits == []  # no known token: empty query, no hits
    queries = ["fish oil", "salt sugar", "statin"]
    batch = engine.search_batch(queries, k=2)
    assert [r.hits for r in batch] == [engine.search(q, k=2).hits for q in queries]
    vectors = encoder.encode_queries(queries)
    assert [r.hits for r in engine.search_vectors(vectors, k=2)] == [r.hits for r in batch]


def test_bad_queries_are_refused(tiny_index):
    engine = Engine.open(tiny_index, device="cpu")
    with pytest.raises(InvalidInput, match="outside the vocabulary"):
        engine.search_vectors(SparseBatch.from_rows([(np.array([10_000]), np.array([1.0]))]))
    with pytest.raises(InvalidInput, match="not a finite"):
        engine.search_vectors(SparseBatch.from_rows([(np.array([5]), np.array([np.inf]))]))
    with pytest.raises(InvalidInput, match="k must be"):
        engine.search("fish", k=0)
    with pytest.raises(InvalidInput, match="list of queries"):
        engine.search_batch("fish")


def test_wrong_encoder_is_refused(tiny_index, tmp_path, tiny_idf_file):
    other = make_tiny_model_dir(tmp_path / "other", seed=7)
    saved = load_encoder(other, kind="inference-free", idf=tiny_idf_file, device="cpu").save(tmp_path / "enc")
    with pytest.raises(EncoderMismatch, match="was built with encoder"):
        Engine.open(tiny_index, encoder=saved)
    with pytest.raises(InvalidIndex, match="not an lsr encoder directory"):
        Engine.open(tiny_index, encoder=other)
    with pytest.raises(InvalidIndex, match="sparse encoder"):
        Index.open(tiny_index, encoder=load_encoder(other, kind="dense"))
