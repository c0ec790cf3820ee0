"""Dense/BM25/hybrid search (Engine) and every HTTP route and error path, on a tiny index with all parts."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from indexer.build import build_index
from service.app import create_app
from service.engine import Engine, Fusion
from service.fusion import convex_fusion, rrf_fusion
from service.settings import CONFIG_FILE_ENV, Settings
from tests.conftest import TINY_DOCS, write_jsonl
from training.encoders import load_encoder

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def full_index(tmp_path_factory, tiny_mlm_dir, tiny_dense_dir, tiny_idf_file):
    root = tmp_path_factory.mktemp("full")
    corpus = write_jsonl(root / "corpus.jsonl", TINY_DOCS)
    sparse = load_encoder(tiny_mlm_dir, kind="inference-free", idf=tiny_idf_file, device="cpu")
    dense = load_encoder(tiny_dense_dir, kind="dense", device="cpu")
    build_index(corpus, sparse, root / "idx", progress=False, dense_encoder=dense, bm25=True, store_documents=True)
    return root / "idx"


@pytest.fixture(scope="module")
def sparse_only_index(tmp_path_factory, tiny_mlm_dir, tiny_idf_file):
    root = tmp_path_factory.mktemp("sparse-only")
    corpus = write_jsonl(root / "corpus.jsonl", TINY_DOCS)
    sparse = load_encoder(tiny_mlm_dir, kind="inference-free", idf=tiny_idf_file, device="cpu")
    build_index(corpus, sparse, root / "idx", progress=False)
    return root / "idx"


@pytest.fixture(scope="module")
def engine(full_index) -> Engine:
    return Engine.open(full_index, device="cpu")


def test_dense_search_is_exact_inner_product(engine):
    texts = [f"{d['title']} {d['text']}".strip() for d in TINY_DOCS]
    docs = engine.dense_encoder.encode_documents(texts)
    query = engine.dense_encoder.encode_queries(["fish oil heart"])[0]
    expected = sorted(zip((docs @ query).tolist(), [d["_id"] for d in TINY_DOCS]), key=lambda x: -x[0])
    result = engine.search("fish oil heart", k=5, mode="dense")
    assert result.ids == [doc for _, doc in expected]
    assert np.allclose(result.scores, [score for score, _ in expected], atol=1e-5)
    assert result.rows == [engine.row_of(doc) for doc in result.ids]


def test_bm25_hits_share_a_term(engine):
    result = engine.search("salt", k=5, mode="bm25")
    assert result.ids == ["d4"] and result.scores[0] > 0
    assert engine.search("zzzz", k=5, mode="bm25").ids == []


@pytest.mark.parametrize("method", ["convex", "rrf"])
def test_hybrid_is_the_fusion_of_the_two_lists(engine, method):
    fusion = Fusion(method=method, alpha=0.3, components=("sparse", "dense"), depth=5)
    sparse = engine.search("statin breast cancer", k=5, mode="sparse")
    dense = engine.search("statin breast cancer", k=5, mode="dense")
    lists = (list(zip(sparse.ids, sparse.scores)), list(zip(dense.ids, dense.scores)))
    expected = convex_fusion(*lists, alpha=0.3, k=3) if method == "convex" else rrf_fusion(*lists, k=3)
    hybrid = engine.search("statin breast cancer", k=3, mode="hybrid", fusion=fusion)
    assert list(zip(hybrid.ids, hybrid.scores)) == expected
    assert hybrid.rows == [engine.row_of(doc) for doc in hybrid.ids]


def test_fusion_settings_are_checked():
    with pytest.raises(ValueError, match="two different"):
        Fusion(components=("sparse", "sparse"))
    with pytest.raises(ValueError, match="alpha"):
        Fusion(alpha=1.5)
    with pytest.raises(ValueError, match="method"):
        Fusion(method="max")


def test_explain_contributions_sum_to_the_sparse_score(engine):
    result = engine.search("statin breast cancer women", k=3)
    for score, parts in zip(result.scores, engine.explain("statin breast cancer women", result.rows)):
        assert parts and abs(sum(p["contribution"] for p in parts) - score) < 1e-3 * max(1.0, score)
        assert all(p["contribution"] == p["query_weight"] * p["document_weight"] for p in parts)
        assert [p["contribution"] for p in parts] == sorted((p["contribution"] for p in parts), reverse=True)


def test_missing_parts_are_named(sparse_only_index):
    engine = Engine.open(sparse_only_index, device="cpu")
    assert engine.modes() == ["sparse"]
    with pytest.raises(ValueError, match="--dense-encoder"):
        engine.search("fish", mode="dense")
    with pytest.raises(ValueError, match="--bm25"):
        engine.search("fish", mode="hybrid", fusion=Fusion(components=("sparse", "bm25")))
    with pytest.raises(ValueError, match="--store-documents"):
        engine.document("d1")


# -- HTTP -------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client(full_index):
    settings = Settings(index=str(full_index), api_key=KEY, max_k=50, max_batch=3, max_query_chars=200,
                        max_body_bytes=4000, cors_origins=["https://app.example"])
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_every_route(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["documents"] == 5
    assert ready["modes"] == ["sparse", "dense", "bm25", "hybrid"] and ready["documents_stored"] is True
    for mode in ("sparse", "dense", "bm25", "hybrid"):
        body = client.post("/search", json={"query": "fish oil", "k": 2, "mode": mode}, headers=AUTH).json()
        assert body["mode"] == mode and 1 <= len(body["hits"]) <= 2 and "explanation" not in body["hits"][0]
    rrf = client.post("/search", json={"query": "fish oil", "k": 2, "mode": "hybrid", "fusion": {
        "method": "rrf", "components": ["bm25", "dense"]}}, headers=AUTH).json()
    assert rrf["hits"][0]["score"] <= 2 / 61 + 1e-9
    explained = client.post("/search", json={"query": "statin breast cancer", "k": 1, "explain": True},
                            headers=AUTH).json()["hits"][0]
    assert {c["token"] for c in explained["explanation"]} <= {"statin", "breast", "cancer"}
    assert abs(sum(c["contribution"] for c in explained["explanation"]) - explained["score"]) < 1e-3
    batch = client.post("/search/batch", json={"queries": ["fish oil", "salt"], "k": 1, "mode": "bm25"},
                        headers=AUTH).json()
    assert [r["hits"][0]["id"] for r in batch["results"]] == ["d2", "d4"]
    vector = client.post("/encode", json={"text": "fish oil"}, headers=AUTH).json()
    assert set(vector["vector"]) == {"fish", "oil"} and vector["model_used"] is False
    document = client.post("/encode", json={"text": "fish oil", "side": "document"}, headers=AUTH).json()
    assert document["model_used"] is True and document["nnz"] == len(document["vector"]) > 0
    assert client.get("/documents/d4", headers=AUTH).json() == {"id": "d4", "title": "Salt",
                                                                "text": "salt sugar and blood pressure"}


def test_api_key(client):
    assert client.post("/search", json={"query": "fish"}).status_code == 401
    wrong = client.post("/search", json={"query": "fish"}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    assert client.get("/documents/d1").status_code == 401
    assert client.get("/metrics").status_code == 401
    assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200


def test_limits_and_validation_name_the_field(client):
    def error(response, status):
        assert response.status_code == status, response.text
        return response.json()["detail"]

    assert error(client.post("/search", json={"query": "fish", "k": 51}, headers=AUTH), 422)[0]["loc"] == ["body", "k"]
    assert error(client.post("/search", json={"query": "  "}, headers=AUTH), 422)[0]["msg"] == "query is blank"
    assert error(client.post("/search", json={"query": "x" * 201}, headers=AUTH), 422)[0]["loc"] == ["body", "query"]
    assert error(client.post("/search", json={"query": "fish", "mode": "colbert"}, headers=AUTH),
                 422)[0]["loc"] == ["body", "mode"]
    assert error(client.post("/search", json={"query": "fish", "fusion": {"method": "rrf"}}, headers=AUTH),
                 422)[0]["loc"] == ["body", "fusion"]
    assert error(client.post("/search", json={"query": "fish", "mode": "hybrid", "fusion": {"alpha": 2}},
                             headers=AUTH), 422)[0]["loc"] == ["body", "fusion", "alpha"]
    assert error(client.post("/search", json={"query": "fish", "extra": 1}, headers=AUTH), 422)[0]["loc"] == [
        "body", "extra"]
    assert error(client.post("/search/batch", json={"queries": ["fish", " "]}, headers=AUTH), 422)[0]["loc"] == [
        "body", "queries", 1]
    assert "LSR_MAX_BATCH" in error(client.post("/search/batch", json={"queries": ["a"] * 4}, headers=AUTH), 413)
    assert "LSR_MAX_BODY_BYTES" in error(client.post("/search", content=json.dumps({"query": "a " * 3000}),
                                                     headers={**AUTH, "content-type": "application/json"}), 413)
    assert "no document with id" in error(client.get("/documents/nope", headers=AUTH), 404)


def test_metrics_count_requests(client):
    def count() -> float:
        for line in client.get("/metrics", headers=AUTH).text.splitlines():
            if line.startswith('lsr_requests_total{method="POST",mode="bm25",route="/search",status="200"}'):
                return float(line.split()[-1])
        return 0.0

    before = count()
    client.post("/search", json={"query": "salt", "mode": "bm25"}, headers=AUTH)
    assert count() == before + 1
    text = client.get("/metrics", headers=AUTH).text
    assert "lsr_index_documents 5.0" in text and 'lsr_request_seconds_bucket{le="0.001",mode="bm25"' in text


def test_cors(client):
    preflight = client.options("/search", headers={"Origin": "https://app.example",
                                                   "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"


def test_unavailable_mode_is_422_naming_the_fix(sparse_only_index):
    with TestClient(create_app(Settings(index=str(sparse_only_index)))) as plain:
        detail = plain.post("/search", json={"query": "fish", "mode": "dense"}).json()["detail"][0]
        assert detail["loc"] == ["body", "mode"] and "--dense-encoder" in detail["msg"]
        assert "--store-documents" in plain.get("/documents/d1").json()["detail"]


def test_settings_file_and_environment(tmp_path, monkeypatch):
    path = tmp_path / "lsr.yaml"
    path.write_text("index: /from/file\nmax_k: 7\ncors_origins: [https://a.example]\n")
    monkeypatch.setenv(CONFIG_FILE_ENV, str(path))
    monkeypatch.setenv("LSR_MAX_K", "9")
    settings = Settings()
    assert settings.index == "/from/file" and settings.max_k == 9 and settings.cors_origins == ["https://a.example"]
    assert Settings(max_k=3).max_k == 3
    path.write_text("max_kk: 7\n")
    with pytest.raises(ValueError, match="unknown settings"):
        Settings()


def test_schemathesis_finds_no_server_error(full_index):
    """Property-based requests over the OpenAPI schema: no route answers 5xx."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings

    app = create_app(Settings(index=str(full_index), max_k=50))
    with TestClient(app):  # run the lifespan: the index is loaded
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        failures, statuses = [], []
        for operation in schema.get_all_operations():
            operation = operation.ok()

            @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            @given(case=operation.as_strategy())
            def check(case):
                response = case.call()
                statuses.append(response.status_code)
                if response.status_code >= 500:
                    failures.append((case.method, case.path, case.body, response.status_code))

            check()
        assert not failures, failures[:5]
        assert len(statuses) > 100 and 200 in statuses and 422 in statuses  # it really exercised the API


def test_hnsw_dense_index_matches_flat_on_a_small_corpus(tmp_path, tiny_mlm_dir, tiny_dense_dir, tiny_idf_file,
                                                         engine):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", TINY_DOCS)
    sparse = load_encoder(tiny_mlm_dir, kind="inference-free", idf=tiny_idf_file, device="cpu")
    dense = load_encoder(tiny_dense_dir, kind="dense", device="cpu")
    manifest = build_index(corpus, sparse, tmp_path / "idx", progress=False, dense_encoder=dense, dense_index="hnsw")
    assert manifest.dense["index"] == "hnsw" and manifest.bm25 is None and manifest.documents is False
    hnsw = Engine.open(tmp_path / "idx", device="cpu")
    for query in ("fish oil heart", "statin women", "green tea"):
        a, b = hnsw.search(query, 5, "dense"), engine.search(query, 5, "dense")
        assert a.ids == b.ids and np.allclose(a.scores, b.scores, atol=1e-5)


def test_hybrid_defaults_to_sparse_and_bm25_without_a_dense_part(tmp_path, tiny_mlm_dir, tiny_idf_file):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", TINY_DOCS)
    sparse = load_encoder(tiny_mlm_dir, kind="inference-free", idf=tiny_idf_file, device="cpu")
    build_index(corpus, sparse, tmp_path / "idx", progress=False, bm25=True)
    with TestClient(create_app(Settings(index=str(tmp_path / "idx")))) as plain:  # the lifespan warms every mode
        assert plain.get("/readyz").json()["modes"] == ["sparse", "bm25", "hybrid"]
        hits = plain.post("/search", json={"query": "salt sugar", "mode": "hybrid", "k": 2}).json()["hits"]
        engine = plain.app.state.engine
        expected = engine.search("salt sugar", 2, "hybrid", Fusion(components=("sparse", "bm25")))
        assert [h["id"] for h in hits] == expected.ids
