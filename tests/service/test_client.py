"""lsr.Client and lsr.AsyncClient against a live server (uvicorn on 127.0.0.1, in a thread): the in-process verbs
and result types, typed errors by status, the bounded retry of a 503, shared connections."""

from __future__ import annotations

import asyncio
import socket
import time

import httpx
import pytest

from lsr import AsyncClient, Client, Engine, Index, load_encoder
from lsr.client import Conflict, Forbidden, Invalid, NotFoundError, ServiceUnavailable, TooLarge, Unauthorized
from lsr.errors import InvalidInput, NotFound
from lsr.service.app import create_app
from lsr.service.settings import Settings
from tests.conftest import TINY_DOCS

ADMIN, READER = "admin-key-0123456789", "read-key-01234567890"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def live(tmp_path_factory, tiny_mlm_dir, tiny_idf_file):
    """A server over a data directory holding `default`-less collections, plus --index as `default`."""
    root = tmp_path_factory.mktemp("client")
    encoder = load_encoder(tiny_mlm_dir, kind="inference-free", idf=tiny_idf_file, device="cpu")
    encoder_dir = encoder.save(root / "encoder")
    index = Index.build(encoder, documents=TINY_DOCS, path=root / "single", bm25=True, store_documents=True)
    settings = Settings(index=str(index.directory), data=str(root / "data"), encoders={"tiny": str(encoder_dir)},
                        keys=[{"key": ADMIN, "scope": "admin"}, {"key": READER, "scope": "read"}], merge=False,
                        max_batch=4, refresh_interval=0.1)
    from tests.probe import serve_in_thread

    with serve_in_thread(create_app(settings)) as base:
        yield base, Engine.open(index.directory)


def test_search_returns_what_the_engine_returns(live):
    url, engine = live
    with Client(url, api_key=READER) as client:
        for mode in ("sparse", "bm25", "hybrid"):
            got = client.search("salt heart", k=3, mode=mode, explain=mode != "bm25", return_documents=True)
            want = engine.search("salt heart", 3, mode, explain=mode != "bm25", return_documents=True)
            assert (got.ids, got.mode, got.components, got.exact) == (want.ids, want.mode, want.components,
                                                                      want.exact)
            assert got.scores == pytest.approx(want.scores, rel=1e-6)
            assert got.titles == want.titles and got.texts == want.texts
            assert got.hits[0].id == want.hits[0].id and got.generation == want.generation
            if mode != "bm25":
                assert got.hits[0].explanation == want.hits[0].explanation
            if mode == "hybrid":
                for a, b in zip(got.component_scores, want.component_scores):
                    assert a == pytest.approx(b)
        from lsr import Fusion

        for fusion in (Fusion("rrf", ("sparse", "bm25"), (0.3, 0.7), rrf_k=10),
                       Fusion("convex", ("sparse", "bm25"), alpha=0.2, normalization="zscore")):
            assert client.search("salt heart", k=4, mode="hybrid", fusion=fusion).ids == \
                engine.search("salt heart", 4, "hybrid", fusion).ids
        batch = client.search_batch(["salt", "tea"], k=2, mode="bm25")
        assert [r.ids for r in batch] == [r.ids for r in engine.search_batch(["salt", "tea"], 2, "bm25")]
        assert client.encode("salt heart")
        assert client.stats()["documents"] == len(TINY_DOCS)
        assert client.get(TINY_DOCS[0]["_id"])["id"] == TINY_DOCS[0]["_id"]


def test_documents_and_collections(live):
    url, _ = live
    with Client(url, api_key=ADMIN) as client:
        created = client.create_collection("notes", encoder="tiny", bm25=True, store_documents=True)
        assert created["documents"] == 0
        notes = client.collection("notes")
        assert notes._http is client._http  # one connection pool
        written = notes.add([{"id": "n1", "title": "Tea", "text": "green tea and the heart"},
                             {"id": "n2", "text": "salt and blood pressure"}])
        assert (written["added"], written["generation"]) == (2, 1)
        assert notes.upsert([{"id": "n1", "text": "coffee"}])["replaced"] == 1
        assert notes.search("salt", k=1, mode="bm25").ids == ["n2"]
        assert notes.get("n1")["text"] == "coffee"
        assert notes.delete(["n1"])["deleted"] == 1
        with pytest.raises(NotFoundError) as missing:
            notes.get("n1")
        assert isinstance(missing.value, NotFound) and missing.value.status == 404
        snapshot = notes.snapshot()
        assert [s["id"] for s in notes.snapshots()] == [snapshot["id"]]
        assert notes.restore(snapshot["id"], "notes-then")["documents"] == 1
        assert {c["name"] for c in client.collections()} >= {"default", "notes", "notes-then"}
        assert notes.stats()["documents"] == 1
        with pytest.raises(Conflict):
            client.create_collection("notes", encoder="tiny")
        client.drop_collection("notes")
        with pytest.raises(NotFoundError):
            notes.search("salt")


def test_typed_errors(live):
    url, _ = live
    with pytest.raises(Unauthorized):
        Client(url).search("salt")
    with pytest.raises(Unauthorized):
        Client(url, api_key="not-a-key-of-this-server").search("salt")
    with Client(url, api_key=READER) as reader:
        with pytest.raises(Forbidden, match="scope 'read'"):
            reader.add([{"id": "x", "text": "salt"}])
        with pytest.raises(Invalid) as invalid:
            reader.search("salt", k=0)
        assert isinstance(invalid.value, InvalidInput) and invalid.value.loc == ("body", "k")
        with pytest.raises(TooLarge):
            reader.search_batch(["a", "b", "c", "d", "e"])
        with pytest.raises(NotFoundError):
            reader.collection("nope").search("salt")


def test_a_503_is_retried_as_retry_after_says_then_raised():
    calls = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(time.monotonic())
        if len(calls) < 3:
            return httpx.Response(503, headers={"Retry-After": "0.05"}, json={"detail": "another writer"})
        return httpx.Response(200, json={"hits": [{"id": "a", "score": 1.0}], "mode": "sparse",
                                         "components": ["sparse"], "took_ms": 0.1, "exact": True})

    transport = httpx.MockTransport(answer)
    client = Client("http://test", retries=3, _http=httpx.Client(transport=transport, base_url="http://test"))
    assert client.search("salt").ids == ["a"] and len(calls) == 3
    assert calls[2] - calls[0] >= 0.09  # it waited as told, twice
    calls.clear()

    def always(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(503, headers={"Retry-After": "60"}, json={"detail": "collection 'x' cannot be served"})

    bounded = Client("http://test", retries=2, max_retry_wait=0.01,
                     _http=httpx.Client(transport=httpx.MockTransport(always), base_url="http://test"))
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable, match="cannot be served"):
        bounded.search("salt")
    assert len(calls) == 3 and time.monotonic() - started < 1  # 60 s asked, 0.01 s waited: bounded


def test_async_client(live):
    url, engine = live

    async def main():
        async with AsyncClient(url, api_key=READER) as client:
            results = await asyncio.gather(*(client.search(q, k=2, mode="bm25") for q in ("salt", "tea", "heart")))
            with pytest.raises(Forbidden):
                await client.add([{"id": "x", "text": "salt"}])
            return [r.ids for r in results], (await client.stats())["documents"]

    ids, documents = asyncio.run(main())
    assert ids == [r.ids for r in engine.search_batch(["salt", "tea", "heart"], 2, "bm25")]
    assert documents == len(TINY_DOCS)


def test_the_readme_client_block_runs_against_a_live_server(tmp_path, tiny_mlm_dir, tiny_idf_file):
    """The README's client example, as written, against `lsr serve --index ... --data ...` on a free port."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("## Python client"):]
    block = re.findall(r"```python\n(.*?)```", section[:section.index("\n## ", 1)], flags=re.S)[0]
    encoder = load_encoder(tiny_mlm_dir, kind="inference-free", idf=tiny_idf_file, device="cpu")
    index = Index.build(encoder, documents=TINY_DOCS, path=tmp_path / "single", bm25=True)
    port = free_port()
    env = {**__import__("os").environ, "LSR_KEYS": '[{"key": "admin-key-0123456789", "scope": "admin"}]'}
    server = subprocess.Popen([sys.executable, "-m", "lsr", "serve", "--index", str(index.directory), "--data",
                               str(tmp_path / "data"), "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        from tests.probe import wait_until_ready

        wait_until_ready(f"http://127.0.0.1:{port}", server, timeout=120)
        done = subprocess.run([sys.executable, "-c", block.replace("127.0.0.1:8000", f"127.0.0.1:{port}")],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.splitlines()[-1] == "['d9']"
    finally:
        server.terminate()
        server.wait(timeout=30)
