"""Disk faults over HTTP: a write the disk refuses is a 507 (full) or a 500 that says what failed, searches keep
answering, the index stays openable at its last generation, and the next write succeeds once the fault is gone. Once
with injected faults (tests/faults.py), once with a real full disk: a small tmpfs (root only; skipped elsewhere)."""

from __future__ import annotations

import errno
import os
import subprocess
import uuid

import pytest
from fastapi.testclient import TestClient

from lsr import Index, load_encoder
from lsr.index.check import check_index
from lsr.service.app import create_app
from lsr.service.settings import Settings
from tests.conftest import TINY_DOCS
from tests.faults import FaultyDisk, faulty, leftovers


def build(path, tiny_mlm_dir, tiny_idf_file):
    sparse = load_encoder(tiny_mlm_dir, kind="inference-free", idf=tiny_idf_file, device="cpu")
    return Index.build(sparse, documents=TINY_DOCS, path=path, bm25=True, store_documents=True).directory


def test_injected_disk_errors_are_507_and_500_and_nothing_is_lost(tmp_path, tiny_mlm_dir, tiny_idf_file):
    path = build(tmp_path / "idx", tiny_mlm_dir, tiny_idf_file)
    with TestClient(create_app(Settings(index=str(path), merge=False))) as http:
        body = {"documents": [{"id": "n1", "text": "statin and fish oil"}]}
        for error, status in ((errno.ENOSPC, 507), (errno.EIO, 500)):
            with faulty(FaultyDisk(fail_at=3, error=error, under=path)):
                refused = http.post("/documents", json=body)
            assert refused.status_code == status, refused.text
            detail = refused.json()["detail"]
            assert "nothing of it was published" in detail and "generation 1" in detail
            assert ("free space" in detail) == (error == errno.ENOSPC)
            assert http.post("/search", json={"query": "statin", "k": 3}).status_code == 200
            assert http.get("/readyz").json()["generation"] == 1
        assert Index.open(path, load_encoder=False).generation == 1 and check_index(path).ok
        done = http.post("/documents", json=body)
        assert done.status_code == 200 and done.json()["generation"] == 2
        assert leftovers(path) == []


def _mount_tmpfs(where, megabytes: int) -> bool:
    if os.geteuid() != 0:
        return False
    where.mkdir(parents=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(where)],
                            capture_output=True)
    return result.returncode == 0


def test_a_real_full_disk(tmp_path, tiny_mlm_dir, tiny_idf_file):
    volume = tmp_path / f"vol-{uuid.uuid4().hex[:6]}"
    if not _mount_tmpfs(volume, 24):
        pytest.skip("mounting a tmpfs needs root (and a kernel that allows it here)")
    try:
        path = build(volume / "idx", tiny_mlm_dir, tiny_idf_file)
        free = os.statvfs(volume).f_bavail * os.statvfs(volume).f_frsize
        filler = volume / "filler"
        filler.write_bytes(b"\0" * max(0, free - (1 << 20)))  # leave about 1 MiB
        text = " ".join(["statin fish oil heart"] * 12000)  # about 260 kB stored a document
        with TestClient(create_app(Settings(index=str(path), merge=False, max_body_bytes=1 << 20))) as http:
            statuses, generation = [], 1
            for n in range(40):
                response = http.post("/documents", json={"documents": [{"id": f"big{n}", "text": text}]})
                statuses.append(response.status_code)
                if response.status_code == 200:
                    generation = response.json()["generation"]
                    continue
                assert response.status_code == 507, response.text
                assert "No space left" in response.json()["detail"]
                break
            assert statuses[-1] == 507, statuses
            assert http.post("/search", json={"query": "statin", "k": 3}).status_code == 200
            index = Index.open(path, load_encoder=False)
            assert index.generation == generation and index.doc_count == len(TINY_DOCS) + statuses.count(200)
            index.close()
            assert check_index(path).ok
            filler.unlink()  # space again
            again = http.post("/documents", json={"documents": [{"id": "after", "text": text}]})
            assert again.status_code == 200 and again.json()["generation"] == generation + 1
        assert leftovers(path) == []
    finally:
        subprocess.run(["umount", "-l", str(volume)], capture_output=True)
