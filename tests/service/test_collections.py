"""Collections over HTTP: a data directory served by one app, every route under every key scope, snapshots taken
while writes run, damaged and foreign changes, and the `lsr collection` command."""

from __future__ import annotations

import gc
import json
import logging
import threading

import pytest
from fastapi.testclient import TestClient

from lsr import load_encoder
from lsr.collections import DataDirectory, check_name
from lsr.errors import AlreadyExists, InvalidInput, NotFound
from lsr.service.app import create_app
from lsr.service.settings import Settings

ADMIN, WRITER, READER, LIMITED = ("admin-key-0123456789", "write-key-0123456789", "read-key-01234567890",
                                  "only-b-key-0123456789")
KEYS = [{"key": ADMIN, "scope": "admin", "name": "ops"}, {"key": WRITER, "scope": "write", "name": "ingest"},
        {"key": READER, "scope": "read", "name": "frontend"},
        {"key": LIMITED, "scope": "admin", "collections": ["b"], "name": "tenant-b"}]
DOCS = [{"id": "d1", "title": "Salt", "text": "salt and blood pressure", "metadata": {"year": 2001}},
        {"id": "d2", "title": "Tea", "text": "green tea and the heart", "metadata": {"year": 2010}},
        {"id": "d3", "title": "Fish", "text": "fish oil omega and the heart", "metadata": {"year": 2015}}]


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory, tiny_mlm_dir, tiny_idf_file):
    encoder = load_encoder(tiny_mlm_dir, kind="inference-free", idf=tiny_idf_file, device="cpu")
    return encoder.save(tmp_path_factory.mktemp("encoders") / "tiny")


def settings(data, encoder_dir, **extra) -> Settings:
    return Settings(data=str(data), encoders={"tiny": str(encoder_dir)}, keys=KEYS, merge=False,
                    refresh_interval=0.1, **extra)


def create(http, name: str, key: str = ADMIN, **body):
    return http.put(f"/collections/{name}", headers=auth(key),
                    json={"encoder": "tiny", "bm25": True, "store_documents": True, "metadata": {"year": "integer"},
                          **body})


@pytest.fixture()
def served(tmp_path, encoder_dir):
    """An app over an empty data directory, with collections a (3 documents) and b (1)."""
    data = tmp_path / "data"
    with TestClient(create_app(settings(data, encoder_dir))) as http:
        assert create(http, "a").status_code == 201 and create(http, "b").status_code == 201
        assert http.post("/collections/a/documents", headers=auth(WRITER), json={"documents": DOCS}).status_code == 200
        assert http.post("/collections/b/documents", headers=auth(WRITER),
                         json={"documents": [{"id": "b1", "text": "salt tea"}]}).status_code == 200
        yield http, data


# -- the routes, the names ------------------------------------------------------------------------------------------
def test_create_search_stats_list_drop(served):
    http, data = served
    stats = http.get("/collections/a", headers=auth(READER)).json()
    assert (stats["documents"], stats["generation"], stats["segments"], stats["status"]) == (3, 1, 1, "ready")
    assert stats["parts"] == ["sparse", "bm25", "documents", "metadata"] and stats["metadata"] == {"year": "integer"}
    assert stats["default_mode"] == "hybrid" and stats["default_fusion"]["components"] == ["sparse", "bm25"]
    assert stats["bytes"] > 0 and stats["clipped_postings"] == 0 and stats["max_weight"] > 0
    hits = http.post("/collections/a/search", headers=auth(READER), json={"query": "green tea heart", "k": 2,
                                                                         "mode": "bm25"}).json()
    assert hits["hits"][0]["id"] == "d2"
    filtered = http.post("/collections/a/search", headers=auth(READER),
                         json={"query": "heart", "mode": "bm25", "filter": {"range": {"year": {"gte": 2012}}}}).json()
    assert [h["id"] for h in filtered["hits"]] == ["d3"]
    batch = http.post("/collections/a/search/batch", headers=auth(READER), json={"queries": ["salt", "tea"]}).json()
    assert len(batch["results"]) == 2
    assert http.post("/collections/a/encode", headers=auth(READER), json={"text": "green tea"}).json()["nnz"] > 0
    assert http.get("/collections/a/documents/d1", headers=auth(READER)).json()["title"] == "Salt"
    # b is another index: its documents are not a's
    assert http.get("/collections/b/documents/d1", headers=auth(READER)).status_code == 404
    listed = http.get("/collections", headers=auth(READER)).json()["collections"]
    assert [(c["name"], c["documents"]) for c in listed] == [("a", 3), ("b", 1)]
    assert http.delete("/collections/a", headers=auth(ADMIN)).json() == {"dropped": "a"}
    assert http.post("/collections/a/search", headers=auth(READER), json={"query": "salt"}).status_code == 404
    assert http.get("/collections/a", headers=auth(READER)).status_code == 404
    assert http.delete("/collections/a", headers=auth(ADMIN)).status_code == 404
    assert not (data / "a").exists()
    assert http.post("/collections/b/search", headers=auth(READER), json={"query": "salt"}).status_code == 200


def test_bad_names_existing_and_unknown(served):
    http, _ = served
    for name in ("a%2Fb", "a/b", "%2E%2E", "a b", "a%01b", "-lead", "x" * 65, ".hidden"):
        response = http.put(f"/collections/{name}", headers=auth(ADMIN), json={"encoder": "tiny"})
        assert response.status_code == 422, (name, response.status_code, response.text)
    assert http.put("/collections/" + "x" * 64, headers=auth(ADMIN), json={"encoder": "tiny"}).status_code == 201
    conflict = create(http, "a")
    assert conflict.status_code == 409 and "exists already" in conflict.json()["detail"]
    assert http.post("/collections/nope/search", headers=auth(READER), json={"query": "salt"}).status_code == 404
    assert http.delete("/collections/nope", headers=auth(ADMIN)).status_code == 404
    unknown_encoder = http.put("/collections/c", headers=auth(ADMIN), json={"encoder": "nope"})
    assert unknown_encoder.status_code == 422 and "tiny" in unknown_encoder.json()["detail"][0]["msg"]
    assert unknown_encoder.json()["detail"][0]["loc"] == ["body", "encoder"]
    # names of routes that are not there: 405 for another method, 404 for no route
    assert http.get("/collections/a/search", headers=auth(ADMIN)).status_code == 405
    assert http.get("/collections/a/documents/x/y", headers=auth(ADMIN)).status_code == 404
    assert http.put("/collections/a/merge", headers=auth(ADMIN)).status_code == 405
    # a body that only says to ignore unknown metadata fields is a valid one
    ignoring = http.put("/collections/ign", headers=auth(ADMIN), json={"encoder": "tiny", "unknown_fields": "ignore"})
    assert ignoring.status_code == 201, ignoring.text
    missing_part = http.put("/collections/c", headers=auth(ADMIN), json={"encoder": "tiny", "defaults": {"mode": "bm25"}})
    assert missing_part.status_code == 422 and missing_part.json()["detail"][0]["loc"] == ["body", "defaults"]
    assert not (served[1] / "c").exists()
    # the root routes answer for `default`, which a data directory need not have
    root = http.post("/search", headers=auth(READER), json={"query": "salt"})
    assert root.status_code == 404 and "/collections/{name}" in root.json()["detail"]


def test_check_name():
    assert check_name("tenant_01-x") == "tenant_01-x"
    for bad in ("", "a/b", "..", "a b", "a\x00", "é", "x" * 65, "_a"):
        with pytest.raises(InvalidInput):
            check_name(bad)


def test_defaults_and_quantization_of_an_empty_collection(served):
    http, _ = served
    created = create(http, "c", max_weight=0.5, defaults={"mode": "bm25"}).json()
    assert created["default_mode"] == "bm25" and created["max_weight"] == 0.5 and created["documents"] == 0
    http.post("/collections/c/documents", headers=auth(WRITER), json={"documents": DOCS})
    stats = http.get("/collections/c", headers=auth(READER)).json()
    assert stats["clipped_postings"] > 0  # weights above the declared maximum are stored as 255, and counted
    metrics = http.get("/metrics", headers=auth(READER)).text
    assert f'lsr_index_clipped_postings{{collection="c"}} {float(stats["clipped_postings"])}' in metrics
    # no declared maximum, an encoder without a calibrated one: the first write's maximum x 2
    a = http.get("/collections/a", headers=auth(READER)).json()
    from lsr.index.manifest import Manifest

    manifest = Manifest.load(served[1] / "a")
    assert manifest.build["scale_from"] == "the first write's maximum x 2"
    assert a["max_weight"] == pytest.approx(2 * max(manifest_max(served[1] / "a")), rel=1e-6)


def manifest_max(path):
    from lsr.index.manifest import SegmentInfo

    return [SegmentInfo.load(p).max_weight for p in (path / "segments").iterdir()]


def test_the_shipped_encoder_sets_the_scale_of_an_empty_index(tmp_path):
    from lsr.index import Index

    encoder = load_encoder()
    calibrated = encoder.config.extra["calibrated_max_weight"]
    index = Index.create(encoder, path=tmp_path / "empty")
    assert index.manifest.max_weight == pytest.approx(1.25 * calibrated)
    assert index.manifest.build["scale_from"] == "the encoder's calibrated maximum x 1.25"
    declared = Index.create(encoder, path=tmp_path / "declared", max_weight=3.0)
    assert (declared.manifest.max_weight, declared.manifest.build["scale_from"]) == (3.0, "declared")


def test_metrics_carry_the_collection_and_never_a_key(served, caplog):
    http, _ = served
    caplog.set_level(logging.DEBUG)
    http.post("/collections/b/search", headers=auth(READER), json={"query": "salt", "mode": "bm25"})
    http.post("/collections/b/search", headers=auth("wrong-key-but-long-enough"), json={"query": "salt"})
    metrics = http.get("/metrics", headers=auth(READER)).text
    assert 'collection="b",method="POST",mode="bm25",route="/search",status="200"' in metrics
    assert 'lsr_index_documents{collection="a"} 3.0' in metrics
    for key in (ADMIN, WRITER, READER, LIMITED, "wrong-key-but-long-enough"):
        assert key not in metrics and key not in caplog.text
    assert 'collection="nope"' not in metrics


# -- scopes ---------------------------------------------------------------------------------------------------------
WRITE_BODY = {"documents": [{"id": "w1", "text": "salt"}]}
# every route of the app, the scope it needs, and a request to it (a route missing here fails the test)
ROUTES = {
    ("POST", "/search"): ("read", {"json": {"query": "salt"}}),
    ("POST", "/search/batch"): ("read", {"json": {"queries": ["salt"]}}),
    ("POST", "/encode"): ("read", {"json": {"text": "salt"}}),
    ("GET", "/documents/{doc_id}"): ("read", {}),
    ("POST", "/documents"): ("write", {"json": WRITE_BODY}),
    ("PUT", "/documents/{doc_id}"): ("write", {"json": {"text": "salt"}}),
    ("DELETE", "/documents/{doc_id}"): ("write", {}),
    ("GET", "/collections"): ("read", {}),
    ("GET", "/collections/{name}"): ("read", {}),
    ("PUT", "/collections/{name}"): ("admin", {"json": {"encoder": "tiny"}}),
    ("DELETE", "/collections/{name}"): ("admin", {}),
    ("POST", "/collections/{name}/merge"): ("admin", {}),
    ("POST", "/collections/{name}/snapshots"): ("admin", {}),
    ("GET", "/collections/{name}/snapshots"): ("admin", {}),
    ("POST", "/collections/{name}/snapshots/{snapshot}/restore"): ("admin", {"json": {"as": "r"}}),
    ("GET", "/metrics"): ("read", {}),
    ("GET", "/healthz"): (None, {}),
    ("GET", "/readyz"): (None, {}),
}
ORDER = ("read", "write", "admin")


def app_routes(app) -> set[tuple[str, str]]:
    """(method, path) of every documented route, those under /collections/{name}/ that repeat a root one folded in."""
    found = set()
    for path, operations in app.openapi()["paths"].items():
        for prefix in ("/search", "/encode", "/documents"):
            path = path.replace("/collections/{name}" + prefix, prefix)
        found |= {(method.upper(), path) for method in operations}
    return found


def test_every_route_is_in_the_scope_table(served):
    http, _ = served
    assert app_routes(http.app) == set(ROUTES)


@pytest.mark.parametrize("key_scope", ORDER)
def test_each_scope_reaches_exactly_its_routes(served, key_scope):
    http, _ = served
    key = {"read": READER, "write": WRITER, "admin": ADMIN}[key_scope]
    for (method, path), (needed, options) in ROUTES.items():
        for prefix in ("/collections/b", "") if not path.startswith("/collections") and needed else ("",):
            if prefix == "" and path in ("/search", "/search/batch", "/encode") or path.startswith("/documents") \
                    and prefix == "":
                continue  # the root routes serve `default`, which this data directory has none of (404 below)
            url = prefix + path.replace("{name}", "b").replace("{doc_id}", "b1").replace("{snapshot}", "none")
            response = http.request(method, url, headers=auth(key), **options)
            allowed = needed is None or ORDER.index(key_scope) >= ORDER.index(needed)
            if allowed:
                assert response.status_code not in (401, 403), (key_scope, method, url, response.text)
            else:
                assert response.status_code == 403, (key_scope, method, url, response.status_code)
                assert needed in response.json()["detail"]
            if method == "DELETE" and path == "/collections/{name}" and allowed:
                assert create(http, "b").status_code == 201  # put it back for the routes after this one
                http.post("/collections/b/documents", headers=auth(WRITER),
                          json={"documents": [{"id": "b1", "text": "salt tea"}]})
            if method == "DELETE" and path == "/documents/{doc_id}" and allowed:
                http.post("/collections/b/documents", headers=auth(WRITER),
                          json={"documents": [{"id": "b1", "text": "salt tea"}]})


def test_missing_unknown_and_limited_keys(served):
    http, _ = served
    for headers in ({}, auth("not-a-key-of-this-server"), {"Authorization": f"Basic {ADMIN}"}):
        response = http.post("/collections/a/search", headers=headers, json={"query": "salt"})
        assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
        assert http.get("/collections", headers=headers).status_code == 401
    assert http.get("/healthz").status_code == 200 and http.get("/readyz").status_code == 200
    # a key limited to b: b as admin, a not at all, and the list shows b only
    assert http.post("/collections/b/search", headers=auth(LIMITED), json={"query": "salt"}).status_code == 200
    refused = http.post("/collections/a/search", headers=auth(LIMITED), json={"query": "salt"})
    assert refused.status_code == 403 and "'a'" in refused.json()["detail"]
    assert http.delete("/collections/a", headers=auth(LIMITED)).status_code == 403
    assert create(http, "c", key=LIMITED).status_code == 403
    assert [c["name"] for c in http.get("/collections", headers=auth(LIMITED)).json()["collections"]] == ["b"]
    snapshot = http.post("/collections/b/snapshots", headers=auth(LIMITED)).json()["id"]
    restore = http.post(f"/collections/b/snapshots/{snapshot}/restore", headers=auth(LIMITED), json={"as": "c"})
    assert restore.status_code == 403  # admin of b, not of the new name


def test_single_api_key_is_an_admin_key(tmp_path, encoder_dir):
    app = create_app(Settings(data=str(tmp_path / "data"), encoders={"tiny": str(encoder_dir)}, api_key="one-key",
                              merge=False))
    with TestClient(app) as http:
        assert http.put("/collections/a", headers=auth("one-key"), json={"encoder": "tiny"}).status_code == 201
        assert http.put("/collections/b", json={"encoder": "tiny"}).status_code == 401


def test_settings_refuse_short_or_repeated_keys():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="at least 16"):
        Settings(keys=[{"key": "short", "scope": "read"}])
    with pytest.raises(ValidationError, match="the same"):
        Settings(keys=[{"key": READER, "scope": "read"}, {"key": READER, "scope": "admin"}])
    with pytest.raises(ValidationError):
        Settings(keys=[{"key": READER, "scope": "owner"}])


# -- snapshots ------------------------------------------------------------------------------------------------------
def test_snapshot_while_writes_run_restores_its_generation_exactly(served):
    http, data = served
    written: list[tuple[int, str]] = []
    stop = threading.Event()

    def writer() -> None:
        number = 0
        while not stop.is_set() and number < 200:
            doc_id = f"w{number}"
            answer = http.post("/collections/a/documents", headers=auth(WRITER),
                               json={"documents": [{"id": doc_id, "text": f"salt tea heart {number}"}]})
            assert answer.status_code == 200, answer.text
            written.append((answer.json()["generation"], doc_id))
            number += 1

    thread = threading.Thread(target=writer)
    thread.start()
    while len(written) < 5:
        threading.Event().wait(0.01)
    snapshot = http.post("/collections/a/snapshots", headers=auth(ADMIN))
    while len(written) < len([w for w in written if w[0] <= snapshot.json()["generation"]]) + 3:
        threading.Event().wait(0.01)  # writes went on after it
    stop.set()
    thread.join()
    assert snapshot.status_code == 201, snapshot.text
    record = snapshot.json()
    generation = record["generation"]
    assert record["hard_linked"] is True and record["files"] > 0 and record["collection"] == "a"
    expected = {"d1", "d2", "d3"} | {doc for gen, doc in written if gen <= generation}
    later = {doc for gen, doc in written if gen > generation}
    assert later, "no write landed after the snapshot"
    assert record["documents"] == len(expected)
    listed = http.get("/collections/a/snapshots", headers=auth(ADMIN)).json()["snapshots"]
    assert [s["id"] for s in listed] == [record["id"]]
    restored = http.post(f"/collections/a/snapshots/{record['id']}/restore", headers=auth(ADMIN), json={"as": "a2"})
    assert restored.status_code == 201, restored.text
    assert (restored.json()["documents"], restored.json()["generation"]) == (len(expected), generation)
    for doc in expected:
        assert http.get(f"/collections/a2/documents/{doc}", headers=auth(READER)).status_code == 200, doc
    for doc in later:
        assert http.get(f"/collections/a2/documents/{doc}", headers=auth(READER)).status_code == 404, doc
    from lsr.index.check import check_index

    assert check_index(data / "a2").ok
    # the restored collection is a collection like any other: it takes writes, its source is untouched
    assert http.post("/collections/a2/documents", headers=auth(WRITER), json=WRITE_BODY).status_code == 200
    again = http.post(f"/collections/a/snapshots/{record['id']}/restore", headers=auth(ADMIN), json={"as": "a2"})
    assert again.status_code == 409
    fresh = DataDirectory(data).restore(record["id"], "a3")
    assert fresh["documents"] == len(expected)  # the snapshot was not changed by the writes to a2


def test_a_damaged_snapshot_restores_nothing(served):
    http, data = served
    record = http.post("/collections/b/snapshots", headers=auth(ADMIN)).json()
    folder = data / ".snapshots" / "b" / record["id"]
    victim = next(p for p in sorted((folder / "segments").rglob("*.npy")))
    victim.unlink()  # (a hard link: the collection's own file is untouched)
    victim.write_bytes(b"\0" * 64)
    response = http.post(f"/collections/b/snapshots/{record['id']}/restore", headers=auth(ADMIN), json={"as": "b2"})
    assert response.status_code == 422 and "differ" in response.json()["detail"][0]["msg"]
    assert not (data / "b2").exists() and not [p for p in data.iterdir() if ".restore-" in p.name]
    assert http.post("/collections/b/search", headers=auth(READER), json={"query": "salt"}).status_code == 200


# -- the data directory on disk -------------------------------------------------------------------------------------
def test_damaged_collection_is_unavailable_and_the_others_serve(tmp_path, encoder_dir):
    data = tmp_path / "data"
    directory = DataDirectory(data)
    encoder = load_encoder(encoder_dir)
    for name in ("good", "bad"):
        directory.create(name, encoder, bm25=True)
    (data / "bad" / "manifest.json").write_text("{not json")
    with TestClient(create_app(settings(data, encoder_dir))) as http:
        response = http.post("/collections/bad/search", headers=auth(READER), json={"query": "salt"})
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        assert "bad" in response.json()["detail"] and "other collections keep serving" in response.json()["detail"]
        ready = http.get("/readyz")
        assert ready.status_code == 200 and list(ready.json()["unavailable"]) == ["bad"]
        assert ready.json()["collections"] == 2
        good = http.post("/collections/good/search", headers=auth(READER), json={"query": "salt"})
        assert good.status_code == 200
        listed = {c["name"]: c["status"] for c in http.get("/collections", headers=auth(READER)).json()["collections"]}
        assert listed == {"bad": "unavailable", "good": "ready"}
        assert http.delete("/collections/bad", headers=auth(ADMIN)).status_code == 200  # a damaged one can go


def test_another_process_creates_and_drops(served, encoder_dir):
    http, data = served
    other = DataDirectory(data)  # what `lsr collection` does from another process: renames in the folder
    other.create("fresh", load_encoder(encoder_dir))
    assert wait_for(lambda: http.get("/collections/fresh", headers=auth(READER)).status_code == 200)
    other.drop("fresh")
    assert wait_for(lambda: http.get("/collections/fresh", headers=auth(READER)).status_code == 404)
    with pytest.raises(AlreadyExists):
        other.create("a", load_encoder(encoder_dir))
    with pytest.raises(NotFound):
        other.drop("nope")


def wait_for(condition, seconds: float = 10.0) -> bool:
    event = threading.Event()
    for _ in range(int(seconds / 0.05)):
        if condition():
            return True
        event.wait(0.05)
    return False


def test_drop_lets_running_searches_finish_then_removes_the_files(served):
    http, data = served
    collection = http.app.state.collections.get("a")
    engine = collection.engine  # what a search in flight holds
    del collection
    assert http.delete("/collections/a", headers=auth(ADMIN)).status_code == 200
    trashed = list((data / ".trash").iterdir())
    assert len(trashed) == 1 and not (data / "a").exists()
    assert engine.search("salt tea", 3, "bm25").ids  # it still answers, from the files in the trash
    del engine
    gc.collect()
    assert wait_for(lambda: not any((data / ".trash").iterdir()))


def test_a_folder_served_by_another_process_is_not_removed(served):
    http, data = served
    other = DataDirectory(data)
    held = other.serve("b")  # what another server process holds while it serves b
    try:
        assert http.delete("/collections/b", headers=auth(ADMIN)).status_code == 200
        trashed = list((data / ".trash").iterdir())
        assert len(trashed) == 1 and (trashed[0] / "manifest.json").exists()  # kept: someone serves it
        assert other.remove_trashed() == []
    finally:
        held.release()
    assert other.remove_trashed() == [trashed[0].name]  # no one does now


def test_a_folder_replaced_under_its_name_is_opened_again(served, encoder_dir):
    http, data = served
    before = http.app.state.collections.get("b").engine
    other = DataDirectory(data)
    other.create("b-next", load_encoder(encoder_dir), bm25=True)
    other.drop("b", remove=False)
    (data / "b-next").rename(data / "b")  # microseconds later: a refresh sees the same names, another folder
    items = http.app.state.collections._items
    assert wait_for(lambda: "b" in items and items["b"].engine is not None and items["b"].engine is not before)
    assert http.get("/collections/b", headers=auth(READER)).json()["documents"] == 0


def test_admin_routes_on_a_read_only_server_and_on_the_index_folder(tmp_path, encoder_dir):
    from lsr.index import Index

    single = Index.build(load_encoder(encoder_dir), documents=DOCS, path=tmp_path / "single").directory
    with TestClient(create_app(settings(tmp_path / "data", encoder_dir, index=str(single)))) as http:
        assert http.delete("/collections/default", headers=auth(ADMIN)).status_code == 409
        assert create(http, "default").status_code == 409
        assert http.post("/collections/default/snapshots", headers=auth(ADMIN)).status_code == 409
        assert http.get("/metrics", headers=auth(LIMITED)).status_code == 403  # it describes every collection
    with TestClient(create_app(settings(tmp_path / "data", encoder_dir, read_only=True))) as http:
        assert create(http, "x").status_code == 403


def test_clipped_postings_survive_a_merge(served):
    http, _ = served
    create(http, "m", max_weight=0.5)
    for n in range(3):
        http.post("/collections/m/documents", headers=auth(WRITER), json={"documents": [dict(DOCS[n], id=f"m{n}")]})
    before = http.get("/collections/m", headers=auth(READER)).json()
    assert before["segments"] == 3 and before["clipped_postings"] > 0
    merged = http.post("/collections/m/merge", headers=auth(ADMIN), params={"max_segments": 1}).json()
    assert merged["segments_after"] == 1
    after = http.get("/collections/m", headers=auth(READER)).json()
    assert after["clipped_postings"] == before["clipped_postings"]


def test_collections_share_an_encoder(served):
    http, _ = served
    collections = http.app.state.collections
    a, b = collections.get("a").engine.index, collections.get("b").engine.index
    assert a.encoder is b.encoder


def test_index_and_data_together(tmp_path, encoder_dir):
    from lsr.index import Index

    encoder = load_encoder(encoder_dir)
    single = Index.build(encoder, documents=DOCS, path=tmp_path / "single", bm25=True).directory
    with TestClient(create_app(settings(tmp_path / "data", encoder_dir, index=str(single)))) as http:
        root = http.post("/search", headers=auth(READER), json={"query": "green tea heart", "mode": "bm25"}).json()
        named = http.post("/collections/default/search", headers=auth(READER),
                          json={"query": "green tea heart", "mode": "bm25"}).json()
        assert [h["id"] for h in root["hits"]] == [h["id"] for h in named["hits"]] and root["hits"]
        assert http.get("/readyz").json()["documents"] == 3


def test_server_with_one_index_refuses_collection_changes(tmp_path, encoder_dir):
    from lsr.index import Index

    single = Index.build(load_encoder(encoder_dir), documents=DOCS, path=tmp_path / "single").directory
    with TestClient(create_app(Settings(index=str(single), merge=False))) as http:
        response = http.put("/collections/x", json={"encoder": "tiny"})
        assert response.status_code == 409 and "--data" in response.json()["detail"]
        assert [c["name"] for c in http.get("/collections").json()["collections"]] == ["default"]


# -- the command line -----------------------------------------------------------------------------------------------
def test_collection_command(tmp_path, encoder_dir, capsys):
    from lsr.cli import main

    data = str(tmp_path / "data")

    def run(*argv) -> dict:
        assert main(["collection", *argv, "--data", data]) == 0
        return json.loads(capsys.readouterr().out)

    created = run("create", "docs", "--encoder", str(encoder_dir), "--bm25", "--field", "year:integer",
                  "--max-weight", "2.5")
    assert (created["name"], created["documents"], created["generation"]) == ("docs", 0, 0)
    from lsr.index import Index

    index = Index.open(tmp_path / "data" / "docs")
    index.add(documents=DOCS)
    index.commit()
    assert index.manifest.max_weight == 2.5 and index.schema.fields == {"year": "integer"}
    assert run("list")["collections"] == [{"name": "docs", "status": "ok", "documents": 3, "generation": 1,
                                           "segments": 1, "encoder": "inference-free"}]
    snapshot = run("snapshot", "docs")
    assert (snapshot["generation"], snapshot["documents"]) == (1, 3)
    index.delete(["d1"])
    index.commit()
    index.close()
    assert [s["id"] for s in run("snapshots")["snapshots"]] == [snapshot["id"]]
    restored = run("restore", snapshot["id"], "--as", "docs-then")
    assert restored["documents"] == 3
    assert Index.open(tmp_path / "data" / "docs-then").doc_count == 3
    adopted = run("create", "copy", "--from", str(tmp_path / "data" / "docs"))
    assert adopted["documents"] == 2
    assert run("drop", "docs") == {"dropped": "docs"}
    assert [c["name"] for c in run("list")["collections"]] == ["copy", "docs-then"]
    assert main(["collection", "create", "bad/name", "--data", data]) == 2
    assert "not allowed" in capsys.readouterr().err
    assert main(["collection", "drop", "nope", "--data", data]) == 2
    assert "no collection named 'nope'" in capsys.readouterr().err
    assert main(["collection", "restore", "nope", "--as", "x", "--data", data]) == 2


def test_a_shared_encoder_loads_from_a_folder_that_still_exists(tmp_path, encoder_dir):
    import shutil

    data = tmp_path / "data"
    directory = DataDirectory(data)
    for name in ("a", "b"):
        directory.create(name, load_encoder(encoder_dir), bm25=True)
    with TestClient(create_app(settings(data, encoder_dir))) as http:
        collections = http.app.state.collections
        assert collections.get("a").engine.index.encoder is collections.get("b").engine.index.encoder
        shutil.rmtree(data / "a")  # the folder the shared encoder was opened from, gone (the worst a drop can do)
        written = http.post("/collections/b/documents", headers=auth(WRITER), json={"documents": DOCS})
        assert written.status_code == 200, written.text  # the model loaded from b's folder
        assert http.post("/collections/b/search", headers=auth(READER), json={"query": "heart"}).json()["hits"]
