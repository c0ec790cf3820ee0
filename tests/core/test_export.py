"""An index's vectors into Qdrant (the real qdrant-client, in process) and OpenSearch (files checked against the
documented shapes of a rank_features mapping and a bulk request)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lsr import Engine, Index
from lsr.cli import main
from lsr.errors import InvalidInput
from tests.core.test_live_index import encoders, nfcorpus_documents, queries  # noqa: F401  (fixture)

qdrant_client = pytest.importorskip("qdrant_client", reason="the dev extra installs qdrant-client")

from lsr import export  # noqa: E402


@pytest.fixture()
def built(encoders, tmp_path):  # noqa: F811
    sparse, _ = encoders
    documents = nfcorpus_documents(200)
    index = Index.build(sparse, documents=documents, store_documents=True, path=tmp_path / "idx")
    index.delete([documents[3]["id"], documents[50]["id"]])  # deleted documents stay out of every export
    index.commit()
    return index, {d["id"]: d for d in documents}


@pytest.mark.parametrize("impact_dtype", ["uint8", "float32"])
def test_qdrant_holds_the_index_vectors_and_finds_lsrs_exact_top10(encoders, tmp_path, impact_dtype):  # noqa: F811
    sparse, _ = encoders
    documents = nfcorpus_documents(200)
    index = Index.build(sparse, documents=documents, store_documents=True, impact_dtype=impact_dtype,
                        path=tmp_path / "idx")
    index.delete([documents[7]["id"]])
    index.commit()
    client = qdrant_client.QdrantClient(":memory:")
    summary = export.to_qdrant(index, client, "nf")
    assert summary["documents"] == 199 and client.count("nf").count == 199

    # each point holds the document's float weights: the stored impacts divided by the index's scale
    doc = documents[11]
    point = client.retrieve("nf", [export.point_id(doc["id"])], with_vectors=True, with_payload=True)[0]
    assert point.payload == {"doc_id": doc["id"], "title": doc["title"], "text": doc["text"]}
    stored = index.vector(doc["id"])
    terms, weights = stored.row(0)
    vector = point.vector[export.QDRANT_VECTOR]
    assert vector.indices == terms.tolist()
    np.testing.assert_allclose(vector.values, weights, rtol=1e-6)
    assert not client.retrieve("nf", [export.point_id(documents[7]["id"])])  # deleted: not exported

    check = export.compare_with_qdrant(Engine(index), client, "nf", queries(60), k=10)
    assert check["queries"] >= 10 and check["recall_vs_lsr_exact"] >= 0.999, check

    with pytest.raises(InvalidInput, match="collection 'nf' exists; pass --replace"):
        export.to_qdrant(index, client, "nf")
    assert export.to_qdrant(index, client, "nf", replace=True, impacts=True)["weights"] == "impacts"
    vector = client.retrieve("nf", [export.point_id(doc["id"])], with_vectors=True)[0].vector[export.QDRANT_VECTOR]
    np.testing.assert_allclose(vector.values, weights * index.manifest.scale, rtol=1e-5)


def test_opensearch_files_have_the_documented_shape(built, tmp_path):
    index, texts = built
    out = tmp_path / "os"
    assert main(["export", "--index", str(index.directory), "--to", "opensearch", "--output", str(out),
                 "--collection", "nfcorpus", "--bulk-documents", "64"]) == 0

    mapping = json.loads((out / "mapping.json").read_text())
    assert mapping["mappings"]["properties"][export.SPARSE_FIELD] == {"type": "rank_features"}
    assert mapping["mappings"]["properties"]["text"] == {"type": "text"}

    files = sorted(out.glob("bulk-*.ndjson"))
    assert [f.name for f in files] == ["bulk-00000.ndjson", "bulk-00001.ndjson", "bulk-00002.ndjson",
                                       "bulk-00003.ndjson"]
    tokens = index.token_strings()
    seen = set()
    for path in files:
        text = path.read_text()
        assert text.endswith("\n")  # a bulk body must end with a newline
        lines = text.splitlines()
        assert len(lines) % 2 == 0 and len(lines) // 2 <= 64
        for action_line, source_line in zip(lines[::2], lines[1::2]):
            action, source = json.loads(action_line), json.loads(source_line)
            assert list(action) == ["index"] and action["index"]["_index"] == "nfcorpus"
            doc_id = action["index"]["_id"]
            seen.add(doc_id)
            assert source["title"] == texts[doc_id]["title"] and source["text"] == texts[doc_id]["text"]
            features = source[export.SPARSE_FIELD]
            # rank_features: string keys, strictly positive finite values; tokens as keys
            assert features and all(isinstance(k, str) and np.isfinite(v) and v > 0 for k, v in features.items())
            terms, weights = index.vector(doc_id).row(0)
            assert features == {tokens[t]: pytest.approx(float(w), rel=1e-6) for t, w in zip(terms, weights)}
    assert seen == set(index.ids()) and len(seen) == 198

    table = json.loads((out / "query_weights.json").read_text())
    encoder = index.encoder
    expected = encoder.encode_queries(["statin breast cancer"])
    terms, weights = expected.row(0)
    assert {tokens[t]: pytest.approx(float(w), abs=1e-6) for t, w in zip(terms, weights)} == {
        tokens[t]: table[tokens[t]] for t in terms}


def test_exports_refuse_what_they_cannot_carry(built, tmp_path, encoders):  # noqa: F811
    index, _ = built
    assert main(["export", "--index", str(index.directory), "--to", "opensearch"]) == 2  # no --output
    assert main(["export", "--index", str(index.directory), "--to", "qdrant"]) == 2  # no --qdrant-url
    sparse, _ = encoders
    chunked = Index.build(sparse, documents=nfcorpus_documents(20), chunk_tokens=16, path=tmp_path / "chunked")
    with pytest.raises(InvalidInput, match="chunked"):
        export.to_opensearch(chunked, tmp_path / "x", "x")


def test_qdrant_urls_that_cannot_work_are_named(built):
    from lsr.errors import BackendUnavailable

    index, _ = built
    with pytest.raises(InvalidInput, match="needs its scheme"):
        export.qdrant_client("localhost:6333")
    client = export.qdrant_client("http://127.0.0.1:9", timeout=2)  # nothing listens on the discard port
    with pytest.raises(BackendUnavailable, match="Qdrant did not answer"):
        export.to_qdrant(index, client, "nf")
