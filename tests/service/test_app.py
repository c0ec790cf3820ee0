"""Every HTTP route and error path, in process (TestClient), on a tiny index with all parts."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from lsr import Index, load_encoder
from lsr.service.app import create_app
from lsr.service.settings import CONFIG_FILE_ENV, Settings
from tests.conftest import TINY_DOCS

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


def build(path, tiny_mlm_dir, tiny_idf_file, dense_dir=None, documents=TINY_DOCS, **options):
    sparse = load_encoder(tiny_mlm_dir, kind="inference-free", idf=tiny_idf_file, device="cpu")
    dense = load_encoder(dense_dir, kind="dense", device="cpu") if dense_dir else None
    return Index.build(sparse, documents=documents, path=path, dense_encoder=dense, **options).directory


@pytest.fixture(scope="module")
def full_index(tmp_path_factory, tiny_mlm_dir, tiny_dense_dir, tiny_idf_file):
    return build(tmp_path_factory.mktemp("full") / "idx", tiny_mlm_dir, tiny_idf_file, tiny_dense_dir, bm25=True,
                 store_documents=True)


@pytest.fixture(scope="module")
def sparse_only_index(tmp_path_factory, tiny_mlm_dir, tiny_idf_file):
    return build(tmp_path_factory.mktemp("sparse-only") / "idx", tiny_mlm_dir, tiny_idf_file)


@pytest.fixture(scope="module")
def client(full_index):
    settings = Settings(index=str(full_index), api_key=KEY, max_k=50, max_batch=3, max_query_chars=200,
                        max_body_bytes=4000, cors_origins=["https://app.example"])
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_every_route(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["documents"] == 5 and ready["exact"] is True
    assert ready["modes"] == ["sparse", "dense", "bm25", "hybrid"] and ready["documents_stored"] is True
    assert ready["default_mode"] == "hybrid" and ready["default_fusion"]["components"] == ["sparse", "dense", "bm25"]
    for mode in ("sparse", "dense", "bm25", "hybrid"):
        body = client.post("/search", json={"query": "fish oil", "k": 2, "mode": mode}, headers=AUTH).json()
        assert body["mode"] == mode and 1 <= len(body["hits"]) <= 2 and "explanation" not in body["hits"][0]
        assert body["exact"] is True and "title" not in body["hits"][0]
    default = client.post("/search", json={"query": "fish oil", "k": 2}, headers=AUTH).json()
    assert default["mode"] == "hybrid" and default["components"] == ["sparse", "dense", "bm25"]
    assert set(default["hits"][0]["component_scores"]) <= {"sparse", "dense", "bm25"}
    assert default["hits"][0]["component_scores"]
    rrf = client.post("/search", json={"query": "fish oil", "k": 2, "mode": "hybrid", "fusion": {
        "method": "rrf", "components": ["bm25", "dense"]}}, headers=AUTH).json()
    assert rrf["hits"][0]["score"] <= 2 / 61 + 1e-9 and rrf["components"] == ["bm25", "dense"]
    weighted = client.post("/search", json={"query": "fish oil", "k": 2, "mode": "hybrid", "fusion": {
        "components": ["sparse", "dense", "bm25"], "weights": [1, 0, 0]}}, headers=AUTH).json()
    sparse = client.post("/search", json={"query": "fish oil", "k": 2, "mode": "sparse"}, headers=AUTH).json()
    assert [h["id"] for h in weighted["hits"]] == [h["id"] for h in sparse["hits"]]
    explained = client.post("/search", json={"query": "statin breast cancer", "k": 1, "mode": "sparse",
                                             "explain": True}, headers=AUTH).json()["hits"][0]
    assert {c["token"] for c in explained["explanation"]} <= {"statin", "breast", "cancer"}
    assert abs(sum(c["contribution"] for c in explained["explanation"]) - explained["score"]) < 1e-3
    with_texts = client.post("/search", json={"query": "salt", "k": 1, "mode": "bm25", "return_documents": True},
                             headers=AUTH).json()["hits"][0]
    assert with_texts == {"id": "d4", "score": with_texts["score"], "title": "Salt",
                          "text": "salt sugar and blood pressure"}
    batch = client.post("/search/batch", json={"queries": ["fish oil", "salt"], "k": 1, "mode": "bm25",
                                               "return_documents": True}, headers=AUTH).json()
    assert [r["hits"][0]["id"] for r in batch["results"]] == ["d2", "d4"] and batch["exact"] is True
    assert batch["results"][1]["hits"][0]["title"] == "Salt"
    vector = client.post("/encode", json={"text": "fish oil"}, headers=AUTH).json()
    assert set(vector["vector"]) == {"fish", "oil"} and vector["model_used"] is False
    document = client.post("/encode", json={"text": "fish oil", "side": "document"}, headers=AUTH).json()
    assert document["model_used"] is True and document["nnz"] == len(document["vector"]) > 0
    assert client.get("/documents/d4", headers=AUTH).json() == {"id": "d4", "title": "Salt",
                                                                "text": "salt sugar and blood pressure", "metadata": {}}


def test_api_key(client):
    assert client.post("/search", json={"query": "fish"}).status_code == 401
    wrong = client.post("/search", json={"query": "fish"}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    assert client.get("/documents/d1").status_code == 401
    assert client.get("/metrics").status_code == 401
    assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200


def error(response, status):
    assert response.status_code == status, response.text
    return response.json()["detail"]


def test_limits_and_validation_name_the_field(client):
    assert error(client.post("/search", json={"query": "fish", "k": 51}, headers=AUTH), 422)[0]["loc"] == ["body", "k"]
    assert error(client.post("/search", json={"query": "  "}, headers=AUTH), 422)[0]["msg"] == "query is blank"
    assert error(client.post("/search", json={"query": "x" * 201}, headers=AUTH), 422)[0]["loc"] == ["body", "query"]
    assert error(client.post("/search", json={"query": "fish", "mode": "colbert"}, headers=AUTH),
                 422)[0]["loc"] == ["body", "mode"]
    assert error(client.post("/search", json={"query": "fish", "mode": "sparse", "fusion": {"method": "rrf"}},
                             headers=AUTH), 422)[0]["loc"] == ["body", "fusion"]
    assert error(client.post("/search", json={"query": "fish", "mode": "hybrid", "fusion": {"alpha": 2}},
                             headers=AUTH), 422)[0]["loc"] == ["body", "fusion", "alpha"]
    assert "not both" in error(client.post("/search", json={"query": "fish", "mode": "hybrid", "fusion": {
        "alpha": 0.5, "weights": [1, 1], "components": ["sparse", "bm25"]}}, headers=AUTH), 422)[0]["msg"]
    assert error(client.post("/search", json={"query": "fish", "extra": 1}, headers=AUTH), 422)[0]["loc"] == [
        "body", "extra"]
    assert error(client.post("/search/batch", json={"queries": ["fish", " "]}, headers=AUTH), 422)[0]["loc"] == [
        "body", "queries", 1]
    assert "LSR_MAX_BATCH" in error(client.post("/search/batch", json={"queries": ["a"] * 4}, headers=AUTH), 413)
    assert "LSR_MAX_BODY_BYTES" in error(client.post("/search", content=json.dumps({"query": "a " * 3000}),
                                                     headers={**AUTH, "content-type": "application/json"}), 413)
    assert "no document with id" in error(client.get("/documents/nope", headers=AUTH), 404)


@pytest.mark.parametrize("raw", ['{"query": "fish", "mode": "hybrid", "fusion": {"alpha": 1e309}}',
                                 '{"query": "fish", "mode": "hybrid", "fusion": {"alpha": NaN}}',
                                 '{"query": "fish", "mode": "hybrid", "fusion": {"alpha": -Infinity}}',
                                 '{"query": "fish", "mode": "hybrid", "fusion": {"weights": [1, 1e999, 1]}}',
                                 '{"query": "fish", "k": 1e309}'])
def test_a_non_finite_number_is_a_422_not_a_500(client, raw):
    """JSON parsers read 1e309 as infinity (and accept NaN): the validation error must still be sendable JSON."""
    detail = error(client.post("/search", content=raw, headers={**AUTH, "content-type": "application/json"}), 422)
    assert detail[0]["loc"][:2] == ["body", "fusion"] or detail[0]["loc"] == ["body", "k"]


def test_non_finite_settings_are_refused(tmp_path, monkeypatch):
    path = tmp_path / "lsr.yaml"
    path.write_text("prune_alpha: .nan\n")
    monkeypatch.setenv(CONFIG_FILE_ENV, str(path))
    with pytest.raises(ValueError, match="finite"):
        Settings()
    path.write_text("backend: colbert\n")
    with pytest.raises(ValueError, match="unknown backend"):
        Settings()


def test_metrics_count_requests(client):
    def count() -> float:
        for line in client.get("/metrics", headers=AUTH).text.splitlines():
            if line.startswith('lsr_requests_total{collection="default",method="POST",mode="bm25",route="/search",'
                               'status="200"}'):
                return float(line.split()[-1])
        return 0.0

    before = count()
    client.post("/search", json={"query": "salt", "mode": "bm25"}, headers=AUTH)
    assert count() == before + 1
    text = client.get("/metrics", headers=AUTH).text
    assert 'lsr_index_documents{collection="default"} 5.0' in text
    assert 'lsr_request_seconds_bucket{collection="default",le="0.001",mode="bm25"' in text


def test_cors(client):
    preflight = client.options("/search", headers={"Origin": "https://app.example",
                                                   "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"


def test_unavailable_parts_are_422_naming_the_fix(sparse_only_index):
    with TestClient(create_app(Settings(index=str(sparse_only_index)))) as plain:
        detail = plain.post("/search", json={"query": "fish", "mode": "dense"}).json()["detail"][0]
        assert detail["loc"] == ["body", "mode"] and "--dense-encoder" in detail["msg"]
        detail = plain.post("/search", json={"query": "fish", "return_documents": True}).json()["detail"][0]
        assert detail["loc"] == ["body", "return_documents"] and "--store-documents" in detail["msg"]
        assert "--store-documents" in plain.get("/documents/d1").json()["detail"]
        assert plain.get("/readyz").json()["default_mode"] == "sparse"


def test_documents_stay_consistent_when_the_served_index_is_rebuilt(tmp_path, tiny_mlm_dir, tiny_idf_file):
    """A rebuild swaps a new directory in while the server runs (the compose indexing job does this). The server
    keeps serving the index it loaded, texts included: before the fix it reopened texts.jsonl by path with the old
    offsets and answered another document's record, or a 500."""
    path = build(tmp_path / "idx", tiny_mlm_dir, tiny_idf_file, store_documents=True)
    with TestClient(create_app(Settings(index=str(path)))) as served:
        before = served.get("/documents/d3").json()
        hits_before = served.post("/search", json={"query": "green tea coffee", "k": 1,
                                                   "return_documents": True}).json()["hits"]
        rebuilt = [{"_id": f"n{i}", "title": "a much longer title " * 3, "text": d["text"] * 2}
                   for i, d in enumerate(TINY_DOCS)]
        build(tmp_path / "idx", tiny_mlm_dir, tiny_idf_file, documents=rebuilt, store_documents=True)
        assert served.get("/documents/d3").json() == before == {"id": "d3", "title": "",
                                                               "text": "green tea and coffee in the diet",
                                                               "metadata": {}}
        assert served.post("/search", json={"query": "green tea coffee", "k": 1,
                                            "return_documents": True}).json()["hits"] == hits_before
        assert served.get("/documents/n1").status_code == 404  # the new index is not served until a reload


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


def test_schemathesis_finds_no_server_error(full_index, tmp_path):
    """Property-based requests over the OpenAPI schema (the write routes included, on a copy): no route answers 5xx."""
    import shutil

    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings

    shutil.copytree(full_index, tmp_path / "copy")
    app = create_app(Settings(index=str(tmp_path / "copy"), max_k=50, merge=False))
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


def test_serve_with_a_bad_index_fails_before_starting(tmp_path, capsys):
    from lsr.cli import main

    assert main(["serve", "--index", str(tmp_path / "nope"), "--port", "1"]) == 2
    assert "is not an lsr index" in capsys.readouterr().err


def test_serve_with_workers_checks_the_index_in_a_child_and_fails_in_one_line(tmp_path, capfd):
    """With several workers the parent never opens the index itself (its memory stays Python + uvicorn): a child
    process opens it first, and a bad index fails there with the same one line, before any worker starts."""
    import os

    from lsr.cli import main

    before = {k: v for k, v in os.environ.items() if k.startswith("LSR_")}
    assert main(["serve", "--index", str(tmp_path / "nope"), "--port", "1", "--workers", "2"]) == 2
    err = capfd.readouterr().err
    assert "lsr serve: error:" in err and "is not an lsr index" in err and "Traceback" not in err
    assert {k: v for k, v in os.environ.items() if k.startswith("LSR_")} == before  # the settings went to the child


def test_the_supervisor_of_several_workers_imports_no_numpy_numba_or_torch():
    """What `lsr serve --workers N`'s parent process imports (uvicorn, the settings, the protocol classes, the thread
    plan) stays free of numpy, numba, torch and FastAPI, which the workers load: the parent costs Python + uvicorn."""
    import subprocess
    import sys

    code = ("import sys, uvicorn, lsr.cli, lsr.service.cli, lsr.service.supervisor\n"
            "from lsr.service.settings import Settings\n"
            "from lsr.service.server import http_protocol\n"
            "from lsr.threads import plan\n"
            "Settings(index='somewhere', workers=2)\n"
            "print(sorted(m for m in ('numpy', 'numba', 'torch', 'fastapi') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", (done.stdout, done.stderr[-2000:])


def test_serve_names_a_bad_thread_count_in_one_line(monkeypatch, capsys, full_index):
    from lsr.cli import main

    monkeypatch.setenv("LSR_THREADS", "two")
    assert main(["serve", "--index", str(full_index), "--port", "1", "--workers", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lsr serve: error: LSR_THREADS='two' is not a thread count") and "Traceback" not in err




def test_startup_compiles_every_kernel_variant_with_a_thread_safe_layer(full_index):
    """Before the fix, the parallel kernel was compiled by the first /search/batch (4.7 s on a GPU host). In a fresh
    interpreter: once the app is ready, both kernel variants are compiled and numba runs a thread-safe layer."""
    import subprocess
    import sys

    code = (
        "import numba\n"
        "from fastapi.testclient import TestClient\n"
        "from lsr.index import kernel\n"
        "from lsr.service.app import create_app\n"
        "from lsr.service.settings import Settings\n"
        f"app = create_app(Settings(index={str(full_index)!r}))\n"
        "assert not kernel.score_segments_blockmax.signatures\n"
        "with TestClient(app):\n"
        "    assert kernel.score_segments_blockmax.signatures and kernel.score_segments_blockmax_serial.signatures\n"
        "    assert numba.threading_layer() in ('omp', 'tbb'), numba.threading_layer()\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_lsr_serve_names_a_bad_setting_in_one_line(monkeypatch, capsys, full_index):
    from lsr.cli import main

    monkeypatch.setenv("LSR_PRUNE_ALPHA", "nan")
    assert main(["serve", "--index", str(full_index), "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lsr serve: error: setting prune_alpha:") and "Traceback" not in err


def test_light_searches_run_on_the_event_loop_and_the_rest_in_the_thread_pool(client, monkeypatch):
    """Which path a /search takes (the answers are the same either way): the thread pool is asked only for what is
    not light, and what runs there answers as before."""
    import lsr.service.search as app_module
    from lsr.engine import Engine
    from lsr.request import SearchRequest as Request_
    from lsr.service.schemas import SearchRequest

    engine: Engine = client.app.state.engine
    light = SearchRequest(query="statin breast cancer", k=10, mode="sparse")
    assert app_module.might_be_light(light, engine)
    assert engine.light(engine.resolve(Request_(mode="sparse")))  # inference-free: a tokenizer and the kernel
    assert engine.light(engine.resolve(Request_(mode="bm25")))
    assert not engine.light(engine.resolve(Request_(mode="dense")))  # a model
    for heavy in ({"explain": True}, {"return_documents": True}, {"k": 500}, {"k": 60, "offset": 50}):
        assert not app_module.might_be_light(SearchRequest(query="statin", mode="sparse", **heavy), engine)
    filtered = SearchRequest(query="statin", mode="sparse", filter={"exists": {"field": "year"}})
    assert app_module.might_be_light(filtered, engine)

    hops = []
    original = app_module.run_in_threadpool

    async def counting(function, *args, **kwargs):
        hops.append(function.__name__)
        return await original(function, *args, **kwargs)

    monkeypatch.setattr(app_module, "run_in_threadpool", counting)
    on_loop = client.post("/search", json={"query": "statin breast cancer", "k": 3, "mode": "sparse"}, headers=AUTH)
    assert on_loop.status_code == 200 and hops == []
    explained = client.post("/search", json={"query": "statin breast cancer", "k": 3, "mode": "sparse",
                                             "explain": True}, headers=AUTH)
    assert explained.status_code == 200 and hops == ["checked_answer"]
    assert explained.json()["hits"][0]["id"] == on_loop.json()["hits"][0]["id"]
    assert "explanation" in explained.json()["hits"][0] and "explanation" not in on_loop.json()["hits"][0]
    dense = client.post("/search", json={"query": "statin breast cancer", "k": 3, "mode": "dense"}, headers=AUTH)
    assert dense.status_code == 200 and hops[-1] == "answer"
    blank = client.post("/search", json={"query": "   ", "mode": "sparse"}, headers=AUTH)  # checks still run on the loop
    assert blank.status_code == 422 and "blank" in blank.text
