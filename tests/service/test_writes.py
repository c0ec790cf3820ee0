"""The write routes over HTTP (in process): add, replace, delete, their errors, and the visibility rule."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from lsr import Index, load_encoder
from lsr.service.app import create_app
from lsr.service.settings import Settings
from tests.conftest import TINY_DOCS

KEY = {"Authorization": "Bearer k"}


@pytest.fixture()
def index_dir(tmp_path, tiny_mlm_dir, tiny_idf_file):
    encoder = load_encoder(tiny_mlm_dir, kind="inference-free", idf=tiny_idf_file, device="cpu")
    return Index.build(encoder, documents=TINY_DOCS, path=tmp_path / "idx", bm25=True, store_documents=True).directory


def client(index_dir, **settings):
    return TestClient(create_app(Settings(index=str(index_dir), api_key="k", merge=False, **settings)))


def test_writes_are_committed_and_searched_at_once(index_dir):
    with client(index_dir) as http:
        assert http.post("/documents", json={"documents": [{"id": "x"}]}).status_code == 401  # behind the key
        added = http.post("/documents", headers=KEY, json={"documents": [
            {"id": "n1", "title": "Green tea", "text": "green tea and the heart"},
            {"id": "d4", "title": "Salt", "text": "salt sugar and blood pressure"}]}).json()
        assert (added["added"], added["unchanged"], added["generation"]) == (1, 1, 2)
        hit = http.post("/search", headers=KEY, json={"query": "green tea heart", "k": 1, "mode": "bm25"}).json()
        assert hit["hits"][0]["id"] == "n1" and hit["generation"] == 2
        replaced = http.put("/documents/n1", headers=KEY, json={"title": "Coffee", "text": "coffee only"}).json()
        assert (replaced["replaced"], replaced["generation"]) == (1, 3)
        assert http.get("/documents/n1", headers=KEY).json()["title"] == "Coffee"
        assert http.delete("/documents/n1", headers=KEY).json()["deleted"] == 1
        assert http.get("/documents/n1", headers=KEY).status_code == 404
        assert http.delete("/documents/n1", headers=KEY).status_code == 404
        ready = http.get("/readyz").json()
        assert (ready["documents"], ready["generation"], ready["writable"]) == (5, 4, True)
    assert sorted(Index.open(index_dir, load_encoder=False).ids()) == [d["_id"] for d in TINY_DOCS]


def test_bad_writes_are_refused_and_nothing_is_lost(index_dir):
    with client(index_dir, max_batch=2) as http:
        def status(response, expected):
            assert response.status_code == expected, response.text
            return response.json()["detail"]

        twice = status(http.post("/documents", headers=KEY, json={"documents": [{"id": "a", "text": "x"},
                                                                               {"id": "a", "text": "y"}]}), 422)
        assert "appears twice" in twice[0]["msg"] and twice[0]["loc"] == ["body", "documents", 1, "id"]
        blank = status(http.post("/documents", headers=KEY, json={"documents": [{"id": "a", "text": "  "}]}), 422)
        assert "has no text" in blank[0]["msg"]
        assert "LSR_MAX_BATCH" in status(http.post("/documents", headers=KEY, json={"documents": [
            {"id": str(i), "text": "x"} for i in range(3)]}), 413)
        status(http.post("/documents", headers=KEY, json={"documents": [{"id": "", "text": "x"}]}), 422)
        status(http.put("/documents/a", headers=KEY, json={"text": 5}), 422)
        assert http.get("/readyz").json()["generation"] == 1
    with client(index_dir, read_only=True) as http:
        assert "read-only" in status(http.post("/documents", headers=KEY, json={"documents": [
            {"id": "a", "text": "x"}]}), 403)
        assert http.get("/readyz").json()["writable"] is False
    assert sorted(Index.open(index_dir, load_encoder=False).ids()) == [d["_id"] for d in TINY_DOCS]


def test_a_write_waits_for_another_writer_then_answers_503(index_dir):
    from lsr.index.writer import IndexWriter

    with client(index_dir, write_timeout=0.2) as http, IndexWriter(index_dir):
        response = http.put("/documents/a", headers=KEY, json={"text": "statin"})
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        assert "another writer" in response.json()["detail"]


def test_another_process_writes_are_served_after_the_refresh(index_dir):
    import time

    with client(index_dir, refresh_interval=0.05) as http:
        other = Index.open(index_dir)  # (another process, as far as the server can tell)
        other.add(ids=["late"], texts=["green tea coffee milk"])
        other.commit()
        for _ in range(100):
            if http.get("/readyz").json()["generation"] == 2:
                break
            time.sleep(0.05)
        assert http.post("/search", headers=KEY, json={"query": "milk", "mode": "bm25", "k": 1}).json()[
            "hits"][0]["id"] == "late"


def test_a_read_only_index_directory_is_a_403(index_dir, monkeypatch):
    """Served from a volume the server cannot write: writes are refused by name, searches go on. (Permissions do not
    stop root, so the check it relies on, os.access, is made to answer as for another user.)"""
    import os

    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path) == str(index_dir) and mode == os.W_OK
                        else real(path, mode))
    with client(index_dir) as http:
        response = http.put("/documents/a", headers=KEY, json={"text": "statin"})
        assert response.status_code == 403 and "cannot be written" in response.json()["detail"]
        assert http.post("/search", headers=KEY, json={"query": "fish"}).status_code == 200
