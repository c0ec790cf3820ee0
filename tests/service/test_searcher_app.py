from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from indexer.build import build_index
from indexer.inverted import IndexError_, InvertedIndex
from service.app import create_app
from service.searcher import Searcher
from service.settings import Settings
from tests.conftest import TINY_DOCS, make_tiny_model_dir, write_jsonl
from training.encoders import SparseBatch, load_encoder


@pytest.fixture(scope="module", params=["float32", "uint8"])
def tiny_index(request, tmp_path_factory, tiny_mlm_dir, tiny_idf_file):
    root = tmp_path_factory.mktemp("search")
    corpus = write_jsonl(root / "corpus.jsonl", TINY_DOCS)
    encoder = load_encoder(tiny_mlm_dir, kind="inference-free", idf=tiny_idf_file, device="cpu")
    build_index(corpus, encoder, root / "idx", impact_dtype=request.param, progress=False)
    return root / "idx"


def exact_scores(searcher: Searcher, query: str) -> dict[str, float]:
    """Score every document by a plain dot product of the query vector and the stored document vectors."""
    q_ids, q_w = searcher.encoder.encode_queries([query]).row(0)
    docs = searcher.encoder.encode_documents([f"{d['title']} {d['text']}".strip() for d in TINY_DOCS])
    scores = {}
    for i, doc in enumerate(TINY_DOCS):
        ids, w = docs.row(i)
        common, qi, di = np.intersect1d(q_ids, ids, return_indices=True)
        if len(common):
            scores[doc["_id"]] = float((q_w[qi] * w[di]).sum())
    return scores


def test_search_matches_exact_dot_product(tiny_index):
    searcher = Searcher.open(tiny_index, device="cpu")
    result = searcher.search("statin breast cancer in women", k=10)
    expected = exact_scores(searcher, "statin breast cancer in women")
    segment = searcher.index.segments[0]
    # uint8: each impact is within half a quantization step of the float weight
    tolerance = 1e-5 if searcher.index.manifest.impact_dtype == "float32" else 0.5 / segment.info.scale
    query_mass = float(searcher.encoder.encode_queries(["statin breast cancer in women"]).weights.sum())
    assert sorted(result.ids) == sorted(expected)
    for hit in result.hits:
        assert abs(hit.score - expected[hit.id]) <= tolerance * query_mass + 1e-5
    assert all(a >= b for a, b in zip(result.scores, result.scores[1:]))
    assert result.postings > 0
    assert searcher.search("zzzz", k=3).hits == []  # no known token: empty query, no hits
    queries = ["fish oil", "salt sugar", "statin"]
    batch = searcher.search_batch(queries, k=2)
    assert [r.hits for r in batch] == [searcher.search(q, k=2).hits for q in queries]


def test_search_vectors_rejects_bad_queries(tiny_index):
    searcher = Searcher.open(tiny_index, device="cpu")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        searcher.search_vectors(SparseBatch.from_rows([(np.array([10_000]), np.array([1.0]))]))
    with pytest.raises(ValueError, match="k must be"):
        searcher.search("fish", k=0)


def test_wrong_encoder_is_refused(tiny_index, tmp_path, tiny_idf_file):
    other = make_tiny_model_dir(tmp_path / "other", seed=7)
    saved = load_encoder(other, kind="inference-free", idf=tiny_idf_file, device="cpu").save(tmp_path / "enc")
    with pytest.raises(IndexError_, match="was built with encoder"):
        Searcher.open(tiny_index, encoder=saved)
    with pytest.raises(IndexError_, match="sparse encoder"):
        Searcher(InvertedIndex(tiny_index), load_encoder(other, kind="dense"))


def test_http_search_and_errors(tiny_index):
    app = create_app(Settings(index=str(tiny_index), max_query_chars=50, max_k=20))
    with TestClient(app) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").json()["documents"] == 5
        response = client.post("/search", json={"query": "fish oil heart", "k": 2})
        assert response.status_code == 200
        body = response.json()
        expected = app.state.engine.searcher.search("fish oil heart", k=2).hits
        assert [(h["id"], h["score"]) for h in body["hits"]] == [(h.id, pytest.approx(h.score)) for h in expected]
        assert len(body["hits"]) == 2 and body["took_ms"] >= 0
        for payload, field in [({"k": 3}, "query"), ({"query": "fish", "k": 0}, "k"),
                               ({"query": "fish", "k": 21}, "k"), ({"query": "   "}, "query"),
                               ({"query": "fish " * 20}, "query"), ({"query": 5}, "query"),
                               ({"query": "fish", "k": True}, "k"), ({"query": "fish", "top_k": 3}, "top_k")]:
            response = client.post("/search", json=payload)
            assert response.status_code == 422, payload
            assert field in response.json()["detail"][0]["loc"], response.json()
        assert client.get("/openapi.json").json()["paths"]["/search"]["post"]


def test_serve_with_a_bad_index_fails_before_starting(tmp_path, capsys):
    from service.cli import main

    assert main(["serve", "--index", str(tmp_path / "nope"), "--port", "1"]) == 2
    assert "is not an lsr index" in capsys.readouterr().err
