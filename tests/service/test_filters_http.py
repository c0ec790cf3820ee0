"""Filters, pages and metadata over HTTP (in process): 422s at the filter's path, metadata written and returned,
a batch whose metadata does not fit refused whole, pages bounded by max_k, the Lucene backend refusing a filter."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from lsr import Index, load_encoder
from lsr.service.app import create_app
from lsr.service.settings import Settings
from tests.conftest import TINY_DOCS

META = {"d1": {"lang": "en", "year": 2001, "tags": ["oncology"]}, "d2": {"lang": "en", "year": 2010},
        "d3": {"lang": "de", "year": 2015, "tags": ["diet"]}, "d4": {"lang": "fr", "year": 1999},
        "d5": {"lang": "en", "tags": ["diet", "men"]}}


@pytest.fixture()
def http(tmp_path, tiny_mlm_dir, tiny_dense_dir, tiny_idf_file):
    sparse = load_encoder(tiny_mlm_dir, kind="inference-free", idf=tiny_idf_file, device="cpu")
    dense = load_encoder(tiny_dense_dir, kind="dense", device="cpu")
    documents = [{**d, "metadata": META[d["_id"]]} for d in TINY_DOCS]
    path = Index.build(sparse, documents=documents, path=tmp_path / "idx", dense_encoder=dense, bm25=True,
                       store_documents=True).directory
    with TestClient(create_app(Settings(index=str(path), max_k=20, merge=False))) as client:
        yield client


def search(http, **body):
    return http.post("/search", json={"query": "statin fish oil salt tea soy diet", **body})


def test_every_mode_filters_and_hits_carry_metadata(http):
    ready = http.get("/readyz").json()
    assert ready["metadata"] == {"lang": "keyword", "year": "integer", "tags": "keywords"} and ready["filterable"]
    for mode in ("sparse", "dense", "bm25", "hybrid"):
        english = search(http, mode=mode, k=5, filter={"term": {"lang": "en"}}, return_metadata=True).json()
        assert english["hits"] and {h["id"] for h in english["hits"]} <= {"d1", "d2", "d5"}
        assert all(h["metadata"] == META[h["id"]] for h in english["hits"])
        recent = search(http, mode=mode, k=5, filter={"must": [{"range": {"year": {"gte": 2005}}},
                                                                {"must_not": [{"term": {"tags": "diet"}}]}]}).json()
        assert {h["id"] for h in recent["hits"]} <= {"d2"} and "metadata" not in (recent["hits"] or [{}])[0]
    batch = http.post("/search/batch", json={"queries": ["statin", "salt"], "k": 3, "mode": "sparse",
                                             "filter": {"terms": {"lang": ["de", "fr"]}}}).json()
    assert all(h["id"] in {"d3", "d4"} for r in batch["results"] for h in r["hits"])
    assert http.get("/documents/d3").json()["metadata"] == META["d3"]


@pytest.mark.parametrize(("body", "loc", "message"), [
    ({"filter": {"term": {"color": "red"}}}, ["body", "filter", "term", "color"], "unknown field"),
    ({"filter": {"must": [{"term": {"lang": "en"}}, {"range": {"year": {"gte": "x"}}}]}},
     ["body", "filter", "must", 1, "range", "year", "gte"], "not a number"),
    ({"filter": {"range": {"lang": {"gt": 1}}}}, ["body", "filter", "range", "lang"], "range applies to"),
    ({"filter": {"terms": {"lang": []}}}, ["body", "filter", "terms", "lang"], "non-empty list"),
    ({"filter": {"term": {"year": "2001"}}}, ["body", "filter", "term", "year"], "not an integer"),
    ({"k": 15, "offset": 10}, ["body", "offset"], "k + offset must be <= 20"),
])
def test_bad_filters_and_pages_are_422s_at_their_path(http, body, loc, message):
    response = search(http, mode="sparse", **body)
    assert response.status_code == 422
    detail = response.json()["detail"][0]
    assert detail["loc"] == loc and message in detail["msg"]
    assert "filter" not in loc or detail["msg"].startswith("filter.")


def test_a_nan_in_a_filter_is_a_422_naming_it(http):
    response = http.post("/search", content=b'{"query": "salt", "filter": {"range": {"year": {"lt": NaN}}}}',
                         headers={"content-type": "application/json"})
    assert response.status_code == 422 and "finite" in response.text and "range" in response.text


def test_pages_over_http(http):
    deep = search(http, mode="hybrid", k=4).json()["hits"]
    page = search(http, mode="hybrid", k=2, offset=2).json()
    assert [h["id"] for h in page["hits"]] == [h["id"] for h in deep[2:4]] and page["offset"] == 2


def test_metadata_writes_are_checked_whole(http):
    ok = http.put("/documents/n1", json={"text": "green tea", "metadata": {"lang": "en", "year": 2020}})
    assert ok.status_code == 200
    assert http.get("/documents/n1").json()["metadata"] == {"lang": "en", "year": 2020}
    generation = ok.json()["generation"]
    refused = http.post("/documents", json={"documents": [
        {"id": "n2", "text": "coffee", "metadata": {"lang": "en"}},
        {"id": "n3", "text": "milk", "metadata": {"year": "recent"}}]})
    assert refused.status_code == 422
    assert "document 'n3': metadata field 'year'" in refused.text and "integer" in refused.text
    assert http.get("/documents/n2").status_code == 404  # nothing of the batch was written
    assert http.get("/readyz").json()["generation"] == generation
    unknown = http.put("/documents/n4", json={"text": "egg", "metadata": {"colour": "white"}})
    assert unknown.status_code == 422 and "lsr index schema" in unknown.text
    changed = http.put("/documents/n1", json={"text": "green tea", "metadata": {"lang": "de", "year": 2020}}).json()
    assert changed["replaced"] == 1  # the same text with other metadata is a change, not a no-op
    assert search(http, mode="bm25", k=5, filter={"term": {"lang": "de"}}).json()["hits"][0]["id"] in {"n1", "d3"}


def test_the_lucene_backend_refuses_a_filter_by_name(tmp_path, tiny_mlm_dir, tiny_idf_file):
    pytest.importorskip("pyserini")
    from lsr.lucene import LuceneUnavailable, check_available

    try:
        check_available()
    except LuceneUnavailable:
        pytest.skip("no Java for Pyserini")
    sparse = load_encoder(tiny_mlm_dir, kind="inference-free", idf=tiny_idf_file, device="cpu")
    documents = [{**d, "metadata": META[d["_id"]]} for d in TINY_DOCS]
    path = Index.build(sparse, documents=documents, path=tmp_path / "idx", lucene=True).directory
    with TestClient(create_app(Settings(index=str(path), backend="lucene"))) as client:
        response = client.post("/search", json={"query": "salt", "filter": {"term": {"lang": "en"}}})
        assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "filter"]
        assert "LuceneImpactSearcher takes no filter" in response.text
        assert client.post("/search", json={"query": "salt"}).status_code == 200
