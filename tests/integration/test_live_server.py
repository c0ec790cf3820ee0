"""A 2-worker server taking writes under a search load: no error, no 5xx, and every search answered from one
consistent generation (the document it shows is the version that generation holds)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from lsr import Index, load_encoder
from tests.conftest import TINY_DOCS
from tests.probe import wait_until_ready

ROOT = Path(__file__).resolve().parents[2]


def test_searches_during_writes_see_one_generation_each(tmp_path, tiny_mlm_dir, tiny_idf_file):
    encoder = load_encoder(tiny_mlm_dir, kind="inference-free", idf=tiny_idf_file, device="cpu")
    documents = [*TINY_DOCS, {"id": "marker", "title": "", "text": "marker version 0"}]
    Index.build(encoder, documents=documents, path=tmp_path / "idx", bm25=True, store_documents=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {"LSR_REFRESH_INTERVAL": "0.1", "LSR_MERGE": "true", "PATH": "/usr/bin:/bin"}
    import os

    server = subprocess.Popen([sys.executable, "-m", "lsr", "serve", "--index", str(tmp_path / "idx"), "--host",
                               "127.0.0.1", "--port", str(port), "--workers", "2"], cwd=ROOT,
                              env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    versions = {1: 0}  # generation -> the marker's version it holds (recorded from the write answers)
    seen, problems, stop = [], [], threading.Event()
    try:
        wait_until_ready(base, server, timeout=180)

        def search_load() -> None:
            with httpx.Client(base_url=base, timeout=30) as client:
                while not stop.is_set():
                    response = client.post("/search", json={"query": "marker version", "k": 3, "mode": "bm25",
                                                            "return_documents": True})
                    if response.status_code != 200:
                        problems.append(("search", response.status_code, response.text[:200]))
                        continue
                    body = response.json()
                    marker = [h for h in body["hits"] if h["id"] == "marker"]
                    if len(marker) != 1:
                        problems.append(("marker hits", body))
                        continue
                    seen.append((body["generation"], int(marker[0]["text"].split()[-1])))

        threads = [threading.Thread(target=search_load) for _ in range(4)]
        for thread in threads:
            thread.start()
        with httpx.Client(base_url=base, timeout=60) as writer:
            for version in range(1, 31):
                response = writer.post("/documents", json={"documents": [
                    {"id": "marker", "text": f"marker version {version}"}]})
                if response.status_code != 200:
                    problems.append(("write", response.status_code, response.text[:200]))
                    continue
                versions[response.json()["generation"]] = version
                extra = writer.put(f"/documents/t{version}", json={"text": f"fish oil {version}"})
                gone = writer.delete(f"/documents/t{version - 1}") if version > 1 else None
                for answer in (extra, gone):
                    if answer is not None and answer.status_code != 200:
                        problems.append(("write", answer.status_code, answer.text[:200]))
                    elif answer is not None:
                        versions[answer.json()["generation"]] = version
        time.sleep(0.5)
        stop.set()
        for thread in threads:
            thread.join()
    finally:
        stop.set()
        server.terminate()
        server.wait(timeout=30)
    assert not problems, problems[:5]
    assert len(seen) > 100 and len({g for g, _ in seen}) > 5
    for generation, version in seen:  # a merge publishes a generation of its own: it holds the version before it
        recorded = max(g for g in versions if g <= generation)
        assert version == versions[recorded], (generation, version, recorded)
