"""The ``milvus`` backend on embedded Milvus Lite: the same answers as the native index, writes mirrored, crashes
caught up, bad input refused by name."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

if os.environ.get("LSR_REQUIRE_SCALEOUT") == "1":  # CI installs the milvus and ray extras: run, never skip
    import milvus_lite  # noqa: F401
    import pymilvus  # noqa: F401
pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from lsr import Engine, Fusion, Index  # noqa: E402
from lsr.errors import InvalidIndex, InvalidInput, MissingDependency, Unavailable  # noqa: E402
from lsr.milvus import Mirror, attach, disconnect  # noqa: E402
from tests.core.test_live_index import (  # noqa: E402
    ROOT,
    assert_equal_up_to_near_ties,
    encoders,  # noqa: F401  (fixture)
    fresh,
    nfcorpus_documents,
    queries,
    random_writes,
)


def milvus_engine(index: Index) -> Engine:
    return Engine(index, backend="milvus")


def assert_same_as(engine: Engine, reference: Engine, questions: list[str], k: int = 100) -> None:
    """Every mode the engine has: Milvus sums float32 products in its own order, so scores are equal within 1e-4
    and the order is equal up to near-ties."""
    modes = [m for m in ("sparse", "dense", "bm25") if m in engine.retrievers] + ["hybrid"]
    for mode in modes:
        fusion = Fusion(components=tuple(c for c in ("sparse", "dense", "bm25") if c in engine.retrievers)) \
            if mode == "hybrid" else None
        got = engine.search_batch(questions, k, mode, fusion)
        want = reference.search_batch(questions, k, mode, fusion)
        for question, a, b in zip(questions, got, want):
            assert len(a.ids) == len(b.ids), (mode, question)
            assert_equal_up_to_near_ties(a, b, (mode, question), tolerance=1e-4)


@pytest.fixture()
def built(encoders, tmp_path):  # noqa: F811
    sparse, dense = encoders
    documents = nfcorpus_documents(150)
    index = Index.build(sparse, documents=documents, dense_encoder=dense, bm25=True, store_documents=True,
                        path=tmp_path / "idx")
    return index, {d["id"]: d for d in documents}, tmp_path / "milvus.db"


def test_milvus_answers_what_the_native_index_answers(built):
    index, _, uri = built
    summary = attach(index, str(uri))
    assert summary["documents"] == summary["upserted"] == 150 and summary["generation"] == index.generation
    engine = milvus_engine(index)
    assert engine.retrievers["sparse"].name == "milvus" and engine.retrievers["dense"].name == "milvus/flat"
    assert engine.retrievers["sparse"].exact
    assert_same_as(engine, Engine(index), queries(40))
    again = attach(index, str(uri))  # attaching again finds everything in place
    assert again["upserted"] == again["deleted"] == 0


def test_random_writes_through_milvus_equal_a_fresh_build(built, encoders):  # noqa: F811
    """The live-index correctness test on this backend: random adds, replaces, deletes and re-adds, committed in
    generations, then merged; Milvus answers what a fresh native build of the survivors answers."""
    index, texts, uri = built
    attach(index, str(uri))
    pool = nfcorpus_documents(450)
    operations = random_writes(index, pool, texts, random.Random(11), generations=12, start=150)
    assert operations >= 200
    mirror = Mirror.load(index.directory)
    assert mirror.generation == index.generation == 13 and mirror.count() == len(texts) == index.doc_count
    questions = queries()  # every test query
    engine = milvus_engine(index)
    assert_same_as(engine, fresh(index, texts, encoders), questions)
    index.merge(max_segments=1)  # a merge moves no document: the collection only records the generation
    assert Mirror.load(index.directory).generation == index.generation
    assert_same_as(engine, fresh(index, texts, encoders), questions)


def test_a_writer_killed_between_its_commit_and_milvus_is_caught_up(built, tiny_mlm_dir):
    index, texts, uri = built
    attach(index, str(uri))
    index.close()
    disconnect(str(uri))  # Milvus Lite: one process a file
    code = (f"from lsr import Index\nindex = Index.open({str(index.directory)!r})\n"
            "index.add(documents=[{'id': 'late', 'text': 'statin women'}])\nindex.delete(['" + next(iter(texts)) +
            "'])\nindex.commit()\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "LSR_FAULT": "published-before-milvus"})
    assert done.returncode == -9, done.stderr[-2000:]
    disconnect(str(uri))  # the killed child's embedded server may linger a moment
    reopened = Index.open(index.directory)
    assert reopened.generation == 2 and Mirror.load(index.directory).generation == 1  # Milvus missed generation 2
    reopened.delete(["nope"])  # the next writer reconciles as it opens
    reopened.commit()
    mirror = Mirror.load(index.directory)
    assert mirror.generation == 2 and mirror.count() == 150
    hits = milvus_engine(reopened).search("statin women", k=200, mode="sparse")
    assert "late" in hits.ids and next(iter(texts)) not in hits.ids


def test_a_collection_of_another_encoder_or_index_is_refused(built, encoders, tiny_idf_file, tmp_path):  # noqa: F811
    from lsr import load_encoder
    from tests.conftest import make_tiny_model_dir

    index, texts, uri = built
    attach(index, str(uri), collection="shared")
    other_encoder = load_encoder(make_tiny_model_dir(tmp_path / "other-mlm", seed=1), kind="inference-free",
                                 idf=tiny_idf_file, device="cpu", max_document_length=64)
    other = Index.build(other_encoder, documents=list(texts.values())[:20], dense_encoder=encoders[1],
                        path=tmp_path / "other")
    with pytest.raises(InvalidIndex, match=r"built from another index \(lsr.encoder"):
        attach(other, str(uri), collection="shared")
    with pytest.raises(InvalidIndex, match=r"built from another index \(lsr.encoder"):
        Engine(other, backend="milvus", uri=str(uri), collection="shared")
    twin = Index.build(encoders[0], documents=list(texts.values())[:20], dense_encoder=encoders[1], bm25=True,
                       store_documents=True, path=tmp_path / "twin", max_weight=index.manifest.max_weight)
    with pytest.raises(InvalidIndex, match="belongs to another index folder"):  # same encoders, another folder
        attach(twin, str(uri), collection="shared")
    with pytest.raises(InvalidInput, match="not 'elsewhere'"):  # searches would not read where writes go
        Engine(index, backend="milvus", collection="elsewhere")


def test_a_lite_file_inside_the_index_folder_is_found_from_anywhere(built, monkeypatch, tmp_path):
    index, _, _ = built
    attach(index, str(index.directory / "vectors.db"))
    assert '"vectors.db"' in (index.directory / "milvus.json").read_text()  # recorded relative to the folder
    monkeypatch.chdir(tmp_path)
    assert Mirror.load(index.directory).uri == str(index.directory.absolute() / "vectors.db")
    assert Engine(index, backend="milvus").search("statin", k=5, mode="sparse").ids


def test_an_id_milvus_cannot_key_is_refused_before_anything_is_written(built):
    index, _, uri = built
    attach(index, str(uri))
    with pytest.raises(InvalidInput, match="at most 1024 bytes"):
        index.add(ids=["é" * 600], texts=["statin"])
    index.rollback()
    index.add(ids=["fine"], texts=["statin women"])
    index.commit()
    assert Mirror.load(index.directory).count() == 151


def test_lsr_index_milvus_brings_the_recorded_collection_up_to_date(built, capsys):
    from lsr.cli import main

    index, texts, uri = built
    attach(index, str(uri))
    Mirror.load(index.directory).client.delete(Mirror.load(index.directory).collection, ids=[next(iter(texts))])
    assert main(["index", "milvus", "--index", str(index.directory)]) == 0
    report = capsys.readouterr().out
    assert '"upserted": 1' in report and Mirror.load(index.directory).count() == 150


def test_bad_uris_and_settings_are_named(built, monkeypatch):
    index, _, _ = built
    started = time.perf_counter()
    with pytest.raises(Unavailable, match="cannot reach Milvus at http://127.0.0.1:9"):
        attach(index, "http://127.0.0.1:9", timeout=2)
    assert time.perf_counter() - started < 10
    with pytest.raises(InvalidInput, match="must end in .db"):
        attach(index, str(index.directory / "milvus"))
    with pytest.raises(Unavailable, match="has no Milvus collection"):
        Engine(index, backend="milvus")
    with pytest.raises(InvalidInput, match="drop_ratio"):
        Engine(index, backend="milvus", uri=str(index.directory.parent / "m.db"), drop_ratio=1.5)
    monkeypatch.setitem(sys.modules, "pymilvus", None)
    with pytest.raises(MissingDependency, match=r"pip install 'lsr\[milvus\]'"):
        attach(index, str(index.directory.parent / "m.db"))


def test_milvus_lite_is_exact_only(built):
    """Milvus Lite answers only drop_ratio_search 0; asking it for an approximate search is named at once (a
    Milvus server takes it, and its answers then say exact: false)."""
    index, _, uri = built
    attach(index, str(uri))
    with pytest.raises(InvalidInput, match="Milvus Lite .* exactly only"):
        Engine(index, backend="milvus", drop_ratio=0.5)


def test_chunked_indexes_stay_native(encoders, tmp_path):  # noqa: F811
    index = Index.build(encoders[0], documents=nfcorpus_documents(20), chunk_tokens=16, chunk_overlap=4,
                        path=tmp_path / "chunked")
    with pytest.raises(InvalidInput, match="chunked"):
        attach(index, str(tmp_path / "m.db"))


def test_the_http_write_routes_work_unchanged_on_milvus(built):
    from fastapi.testclient import TestClient

    from lsr.service.app import create_app
    from lsr.service.settings import Settings

    index, texts, uri = built
    attach(index, str(uri))
    index.close()
    app = create_app(Settings(index=str(index.directory), backend="milvus"))
    with TestClient(app) as client:
        answer = client.post("/documents", json={"documents": [{"id": "n1", "text": "statin women fish oil"}]})
        assert answer.status_code == 200, answer.text
        victim = next(iter(texts))
        assert client.delete(f"/documents/{victim}").status_code == 200
        found = client.post("/search", json={"query": "statin women fish oil", "k": 200, "mode": "sparse"}).json()
        ids = [hit["id"] for hit in found["hits"]]
        assert "n1" in ids and victim not in ids
    assert Mirror.load(Path(index.directory)).count() == 150


def test_a_document_replaced_by_one_with_no_weight_leaves_milvus(built):
    """A replace whose new vector is empty has no Milvus row (Milvus refuses empty sparse vectors): the old row goes
    too, so Milvus never answers the old version."""
    from lsr.sparse import SparseBatch

    index, texts, uri = built
    attach(index, str(uri))
    victim = next(iter(texts))
    empty = SparseBatch.from_rows([(np.zeros(0, np.int32), np.zeros(0, np.float32))])
    index.delete([victim])  # and added again in the same commit: a replace, so no delete reaches Milvus
    index.writer().add_vectors(empty, [victim], dense=np.ones((1, index.manifest.dense["dim"]), np.float32))
    index.commit()
    assert victim in set(index.ids()) and Mirror.load(index.directory).count() == 149
    assert victim not in Engine(index, backend="milvus").search("statin", k=200, mode="sparse").ids


def test_a_milvus_that_stops_answering_is_a_backend_error(built, monkeypatch):
    """Every client call, not only connecting: a failure is BackendUnavailable (HTTP 503), never a traceback."""
    from lsr.errors import BackendUnavailable

    index, _, uri = built
    attach(index, str(uri))
    engine = Engine(index, backend="milvus")
    client = engine.retrievers["sparse"].mirror.client._client

    def down(*args, **kwargs):
        raise ConnectionError("connection reset")

    monkeypatch.setattr(client, "search", down)
    with pytest.raises(BackendUnavailable, match="failed search"):
        engine.search("statin", k=5, mode="sparse")
    monkeypatch.setattr(client, "has_collection", down)
    with pytest.raises(BackendUnavailable, match="failed has_collection"):
        index.add(ids=["n1"], texts=["statin"])
    index.rollback()


def test_lsr_index_backend_milvus_builds_and_mirrors(tmp_path, capsys):
    """`lsr index --backend milvus` (the shipped default encoder): the build, then its collection; a rebuild over the
    same folder claims that collection again."""
    import json

    from lsr.cli import main
    from tests.conftest import write_jsonl

    corpus = write_jsonl(tmp_path / "c.jsonl", [{"_id": d["id"], "title": d["title"], "text": d["text"]}
                                                for d in nfcorpus_documents(12)])
    flags = ["index", "--corpus", str(corpus), "--out", str(tmp_path / "idx"), "--backend", "milvus",
             "--milvus-uri", str(tmp_path / "m.db")]
    assert main(flags) == 0
    out = capsys.readouterr().out
    report = json.loads(out[out.index("{"):out.rindex("}") + 1])
    assert report["milvus"]["upserted"] == report["milvus"]["documents"] == 12
    assert Mirror.load(tmp_path / "idx").count() == 12
    assert main(flags) == 0  # rebuilt: the folder's id is carried over, the collection is claimed again
    assert Mirror.load(tmp_path / "idx").count() == 12
    assert main(["index", "--corpus", str(corpus), "--out", str(tmp_path / "idx"), "--backend", "milvus"]) == 2
    assert "--backend milvus needs --milvus-uri" in capsys.readouterr().err


def test_milvus_filters_as_the_native_index_does(encoders, tmp_path):  # noqa: F811
    """Random filters over random metadata, translated into Milvus expressions over the collection's scalar fields:
    the same answers as native in every mode, before and after writes that change metadata, and after a schema
    widening (which builds the collection anew)."""
    from tests.core.test_filters import FIELDS, random_filter, random_metadata

    sparse, dense = encoders
    rng = random.Random(3)
    documents = nfcorpus_documents(150)
    for document in documents:
        document["metadata"] = random_metadata(rng)
    index = Index.build(sparse, documents=documents, dense_encoder=dense, bm25=True, path=tmp_path / "idx",
                        schema=FIELDS)
    attach(index, str(tmp_path / "milvus.db"))
    questions = queries(10)

    def compare(seed: int) -> None:
        native, milvus = Engine(index), milvus_engine(index)
        specs = [random_filter(random.Random(seed + i)) for i in range(12)] + [{"must_not": [{"term": {"tenant":
                                                                                                        "acme"}}]}]
        from lsr.filters import InvalidFilter, parse

        compared = 0
        for spec in specs:
            try:
                parse(spec, index.schema)
            except InvalidFilter:  # (after the widening, a term on year is refused: year is a float field)
                continue
            compared += 1
            for mode in ("sparse", "dense", "hybrid"):
                fusion = Fusion(components=("sparse", "dense")) if mode == "hybrid" else None
                got = milvus.search_batch(questions, 20, mode, fusion, filter=spec)
                want = native.search_batch(questions, 20, mode, fusion, filter=spec)
                for question, a, b in zip(questions, got, want):
                    assert len(a.ids) == len(b.ids), (mode, spec, question)
                    assert_equal_up_to_near_ties(a, b, (mode, spec, question), tolerance=1e-4)
        assert compared >= 8

    compare(100)
    changed = [{**d, "metadata": random_metadata(rng)} for d in documents[:40]]
    index.upsert(documents=changed)
    index.delete([d["id"] for d in documents[100:110]])
    index.commit()
    compare(200)
    index.widen_schema({"year": "float", "stars": "integer"})
    assert Mirror.load(index.directory).generation == index.generation
    index.add(documents=[{"id": "new", "text": "statin fish oil", "metadata": {"year": 2010.5, "stars": 3}}])
    index.commit()
    compare(300)
    between = {"range": {"year": {"gt": 2010.1, "lt": 2010.9}}}  # only the new float value
    assert milvus_engine(index).search("statin fish oil", 5, "sparse", filter=between).ids == ["new"]
    index.add(documents=[{"id": "emoji", "text": "statin fish oil", "metadata": {"tenant": "café ☕ 😀", "stars": 5}}])
    index.commit()
    native, milvus = Engine(index), milvus_engine(index)
    for spec in ({"term": {"tenant": "café ☕ 😀"}}, {"range": {"stars": {"lt": 1e20}}},
                 {"range": {"stars": {"gt": 1e20}}}, {"range": {"stars": {"gte": -1e20, "lte": 4}}}):
        want = native.search("statin fish oil", 5, "sparse", filter=spec).ids
        assert milvus.search("statin fish oil", 5, "sparse", filter=spec).ids == want, spec
    assert native.search("statin fish oil", 5, "sparse", filter={"term": {"tenant": "café ☕ 😀"}}).ids == ["emoji"]


def test_a_batch_whose_full_rows_would_pass_the_transport_limit_is_answered(tmp_path):
    """323 queries x 1,000 hits: the NFCorpus evaluation that failed with RESOURCE_EXHAUSTED (468 MB against gRPC's
    256 MB) when a search asked for no output field, which returns every field, vectors included. Documents of 250
    weights each, as the shipped encoder gives NFCorpus: one full row here is over 800 bytes, so the batch would have
    been over the limit; split into calls that ask for ids only, it is answered, and as native answers."""
    from lsr import SparseBatch, load_encoder

    rng = np.random.default_rng(5)
    n, vocab = 2000, 30522
    pool = rng.choice(vocab, 3000, replace=False)  # a shared vocabulary: every query matches most documents
    rows = [(np.sort(rng.choice(pool, 250, replace=False)).astype(np.int32),
             rng.gamma(1.0, 0.5, 250).astype(np.float32) + 0.01) for _ in range(n)]
    index = Index.build(load_encoder(), vectors=SparseBatch.from_rows(rows), ids=[f"d{i}" for i in range(n)],
                        path=tmp_path / "idx")
    attach(index, str(tmp_path / "milvus.db"))
    batch = SparseBatch.from_rows([(np.sort(rng.choice(pool, 60, replace=False)).astype(np.int32),
                                    rng.random(60).astype(np.float32) + 0.1) for _ in range(323)])
    mirror = Mirror.load(index.directory)
    full = mirror.client.search(mirror.collection, data=[{int(t): 1.0 for t in batch.row(0)[0]}], anns_field="sparse",
                                limit=1, search_params={"metric_type": "IP"}, output_fields=[])
    row_bytes = len(str(full[0][0]))
    assert row_bytes * 323 * 1000 > 268_435_456, row_bytes  # what one call of the whole batch would have carried
    calls = []
    engine = milvus_engine(index)
    search = engine.retrievers["sparse"].mirror.client._client.search

    def spy(*args, **kwargs):
        calls.append((len(kwargs["data"]), kwargs["output_fields"]))
        return search(*args, **kwargs)

    engine.retrievers["sparse"].mirror.client._client.search = spy
    try:
        got = engine.search_vectors(batch, 1000)
    finally:
        engine.retrievers["sparse"].mirror.client._client.search = search
    assert len(calls) >= 4 and all(fields == ["id"] and size * 1000 <= 100_000 for size, fields in calls)
    want = Engine(index).search_vectors(batch, 1000)
    for a, b in zip(got, want):
        assert len(a.ids) == len(b.ids) == 1000
        assert_equal_up_to_near_ties(a, b, "transport", tolerance=1e-4)
