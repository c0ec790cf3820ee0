"""A short crash soak (benchmarks/crash_soak.py: 3 SIGKILLs of a 2-worker server under load), and two processes
writing one index at once: the HTTP server and `lsr index add`."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from fastapi.testclient import TestClient

from lsr import Index, load_encoder
from lsr.service.app import create_app
from lsr.service.settings import Settings
from tests.conftest import TINY_DOCS

ROOT = Path(__file__).resolve().parents[2]


def build(path: Path, tiny_mlm_dir, tiny_idf_file) -> Path:
    sparse = load_encoder(tiny_mlm_dir, kind="inference-free", idf=tiny_idf_file, device="cpu")
    return Index.build(sparse, documents=TINY_DOCS, path=path, bm25=True, store_documents=True).directory


def test_three_kills_under_load_lose_no_acknowledged_write(tmp_path, tiny_mlm_dir, tiny_idf_file):
    sys.path.insert(0, str(ROOT))
    from benchmarks.crash_soak import Soak

    path = build(tmp_path / "idx", tiny_mlm_dir, tiny_idf_file)
    with tempfile.TemporaryFile(mode="w+") as log:
        result = Soak(path, workers=2, seed=3, kill_after=(3.0, 5.0)).run(3, log)
    assert result["writes_acknowledged"] > 0 and result["searches"] > 0, result
    assert result["writes_lost"] == 0 and result["batches_half_applied"] == 0, result
    assert result["search_5xx"] == 0 and result["write_5xx"] == 0, result
    assert result["restart_to_ready_max_s"] > 0


def test_the_server_and_the_cli_write_one_index_at_once(tmp_path, tiny_mlm_dir, tiny_idf_file):
    path = build(tmp_path / "idx", tiny_mlm_dir, tiny_idf_file)
    corpora = []
    for run in range(2):
        corpus = tmp_path / f"cli-{run}.jsonl"
        corpus.write_text("".join(json.dumps({"_id": f"cli{run}-{i}", "title": "", "text": f"salt and tea {run} {i}"})
                                  + "\n" for i in range(6)))
        corpora.append(corpus)
    acknowledged, statuses = [], []
    with TestClient(create_app(Settings(index=str(path), merge=False, write_timeout=60))) as http:
        def http_writer() -> None:
            for n in range(12):
                response = http.post("/documents", json={"documents": [{"id": f"http{n}", "text": f"fish oil {n}"}]})
                statuses.append(response.status_code)
                if response.status_code == 200:
                    acknowledged.append(f"http{n}")

        thread = threading.Thread(target=http_writer)
        thread.start()
        results = [subprocess.run([sys.executable, "-m", "lsr", "index", "add", "--index", str(path), "--corpus",
                                   str(corpus), "--wait", "60"], capture_output=True, text=True, cwd=ROOT, timeout=300)
                   for corpus in corpora]
        thread.join(timeout=300)
        assert all(r.returncode == 0 for r in results), [r.stderr[-500:] for r in results]
        assert statuses == [200] * 12, statuses
        http.get("/readyz")
    index = Index.open(path, load_encoder=False)
    ids = set(index.ids())
    assert set(acknowledged) <= ids and {f"cli{r}-{i}" for r in range(2) for i in range(6)} <= ids
    assert index.doc_count == len(TINY_DOCS) + 12 + 12 and index.generation == 1 + 12 + 2
    index.close()
