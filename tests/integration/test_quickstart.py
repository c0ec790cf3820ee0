"""The README's first command on a machine without ../shared: NFCorpus through ir_datasets (`beir/nfcorpus`).

The network path cannot run here, so a stand-in `ir_datasets` module (first on PYTHONPATH) serves a slice of the
shared NFCorpus under the same id; everything else is the real script: index, serve, the demo queries."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests.conftest import NFCORPUS

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not NFCORPUS.exists(), reason="needs ../shared (an NFCorpus slice to stand in)")

STAND_IN = '''
"""Stand-in for ir_datasets: beir/nfcorpus documents (doc_id, title, text, url) from a local slice."""
import json
from collections import namedtuple

Doc = namedtuple("GenericDoc", "doc_id text title url")
CALLS = []


class _Dataset:
    def docs_iter(self):
        with open(__file__.replace("ir_datasets.py", "docs.jsonl"), encoding="utf-8") as handle:
            for line in handle:
                d = json.loads(line)
                yield Doc(d["_id"], d["text"], d["title"], "")


def load(dataset_id):
    if dataset_id != "beir/nfcorpus":
        raise KeyError(dataset_id)
    return _Dataset()
'''


def test_quickstart_without_the_shared_folder_reads_nfcorpus_through_ir_datasets(tmp_path):
    stand_in = tmp_path / "stand-in"
    stand_in.mkdir()
    (stand_in / "ir_datasets.py").write_text(STAND_IN)
    lines = (NFCORPUS / "corpus.jsonl").read_text().splitlines()[:40]
    (stand_in / "docs.jsonl").write_text("\n".join(lines) + "\n")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "LSR_SHARED": str(tmp_path / "no-shared-here"), "LSR_SKIP_SETUP": "1",
           "LSR_DEMO_ONLY": "1", "LSR_INDEX": str(tmp_path / "index"), "LSR_PORT": str(port),
           "PYTHONPATH": str(stand_in)}
    done = subprocess.run(["bash", "scripts/quickstart.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "reading NFCorpus through ir_datasets (beir/nfcorpus)" in done.stdout
    manifest = json.loads((tmp_path / "index" / "manifest.json").read_text())
    assert manifest["build"]["summary"]["documents"] == 40 and manifest["build"]["corpus"] == "beir/nfcorpus"
    answers = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{\"hits\"")]
    assert len(answers) == 5 and all(a["hits"] for a in answers)
    assert answers[0]["mode"] == "hybrid" and answers[0]["components"] == ["sparse", "bm25"]
    assert answers[3]["mode"] == "sparse" and answers[4]["hits"][0]["explanation"] and answers[4]["hits"][0]["title"]
