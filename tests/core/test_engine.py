"""The engine: every mode, fusion of two and three components, explanations from the vectors it has, hits with
their texts, index defaults, and the retriever protocol that every backend answers through."""

from __future__ import annotations

import numpy as np
import pytest

from lsr import Engine, Fusion, Index, load_encoder
from lsr.errors import InvalidInput, Unavailable
from lsr.fusion import convex_fusion, rrf_fusion
from lsr.results import Ranked
from lsr.retrievers import Retriever, backend_names, register_backend
from lsr.retrievers.native import NativeRetriever, Pruning
from tests.conftest import TINY_DOCS, write_jsonl


@pytest.fixture(scope="module")
def encoders(tiny_mlm_dir, tiny_dense_dir, tiny_idf_file):
    return (load_encoder(tiny_mlm_dir, kind="inference-free", idf=tiny_idf_file, device="cpu"),
            load_encoder(tiny_dense_dir, kind="dense", device="cpu"))


@pytest.fixture(scope="module")
def full_index(tmp_path_factory, encoders):
    root = tmp_path_factory.mktemp("full")
    corpus = write_jsonl(root / "corpus.jsonl", TINY_DOCS)
    sparse, dense = encoders
    Index.build(sparse, corpus=corpus, path=root / "idx", dense_encoder=dense, bm25=True, store_documents=True)
    return root / "idx"


@pytest.fixture(scope="module")
def engine(full_index) -> Engine:
    return Engine.open(full_index, device="cpu")


def test_dense_search_is_exact_inner_product(engine):
    texts = [f"{d['title']} {d['text']}".strip() for d in TINY_DOCS]
    docs = engine.dense_encoder().encode_documents(texts)
    query = engine.dense_encoder().encode_queries(["fish oil heart"])[0]
    expected = sorted(zip((docs @ query).tolist(), [d["_id"] for d in TINY_DOCS]), key=lambda x: -x[0])
    result = engine.search("fish oil heart", k=5, mode="dense")
    assert result.ids == [doc for _, doc in expected] and result.exact
    assert np.allclose(result.scores, [score for score, _ in expected], atol=1e-5)


def test_bm25_hits_share_a_term(engine):
    result = engine.search("salt", k=5, mode="bm25")
    assert result.ids == ["d4"] and result.scores[0] > 0
    assert engine.search("zzzz", k=5, mode="bm25").ids == []


@pytest.mark.parametrize("method", ["convex", "rrf"])
@pytest.mark.parametrize("components", [("sparse", "dense"), ("bm25", "dense"), ("sparse", "dense", "bm25")])
def test_hybrid_is_the_fusion_of_the_component_lists(engine, method, components):
    weights = (0.3, 0.7) if len(components) == 2 else (0.2, 0.3, 0.5)
    fusion = Fusion(method=method, components=components, weights=weights, depth=5)
    lists = [list(zip(r.ids, r.scores)) for r in
             (engine.search("statin breast cancer", k=5, mode=c) for c in components)]
    expected = convex_fusion(lists, weights, k=3) if method == "convex" else rrf_fusion(lists, weights=weights, k=3)
    hybrid = engine.search("statin breast cancer", k=3, mode="hybrid", fusion=fusion)
    assert list(zip(hybrid.ids, hybrid.scores)) == expected
    assert hybrid.components == components and set(hybrid.per_component) == set(components)


def test_the_index_default_mode_fuses_every_part_it_has(engine, tmp_path, encoders):
    assert engine.default_mode == "hybrid" and engine.default_fusion().components == ("sparse", "dense", "bm25")
    assert engine.search("fish oil").components == ("sparse", "dense", "bm25")
    sparse, _ = encoders
    lexical = Index.build(sparse, documents=TINY_DOCS, bm25=True)
    assert lexical.manifest.search_defaults == {"mode": "hybrid",
                                                "fusion": {"method": "convex", "components": ["sparse", "bm25"]}}
    plain = Engine(Index.build(sparse, documents=TINY_DOCS))
    assert plain.default_mode == "sparse" and plain.modes() == ["sparse"]
    # an engine opened without a part its index's default names falls back to what it has
    assert Engine.open(engine.index.directory, parts=("bm25",)).default_fusion().components == ("sparse", "bm25")


def test_explain_uses_the_query_vector_already_encoded(engine, monkeypatch):
    encoder = engine.index.encoder
    calls = []
    original = encoder.encode_queries
    monkeypatch.setattr(encoder, "encode_queries", lambda texts, *a, **k: calls.append(texts) or original(texts))
    result = engine.search("statin breast cancer women", k=3, mode="sparse", explain=True)
    assert len(calls) == 1, "the query is encoded once, for retrieval and explanation together"
    for hit in result.hits:
        parts = hit.explanation
        assert parts and abs(sum(p.contribution for p in parts) - hit.score) < 1e-3 * max(1.0, hit.score)
        assert all(p.contribution == p.query_weight * p.document_weight for p in parts)
        assert [p.contribution for p in parts] == sorted((p.contribution for p in parts), reverse=True)
    assert engine.search("statin women", k=2, mode="sparse").hits[0].explanation is None


def test_hits_carry_their_stored_texts_on_request(engine):
    hits = engine.search("salt sugar", k=2, mode="bm25", return_documents=True).hits
    assert (hits[0].id, hits[0].title, hits[0].text) == ("d4", "Salt", "salt sugar and blood pressure")
    assert engine.search("salt sugar", k=1, mode="bm25").hits[0].title is None


def test_missing_parts_are_named(encoders):
    engine = Engine(Index.build(encoders[0], documents=TINY_DOCS))
    with pytest.raises(Unavailable, match="--dense-encoder"):
        engine.search("fish", mode="dense")
    with pytest.raises(Unavailable, match="--bm25"):
        engine.search("fish", mode="hybrid", fusion=Fusion(components=("sparse", "bm25")))
    with pytest.raises(Unavailable, match="--store-documents"):
        engine.document("d1")
    with pytest.raises(Unavailable, match="--store-documents"):
        engine.search("fish", return_documents=True)
    with pytest.raises(InvalidInput, match="'hybrid' only"):
        engine.search("fish", mode="sparse", fusion=Fusion())


def test_hnsw_dense_index_matches_flat_on_a_small_corpus(tmp_path, encoders, engine):
    sparse, dense = encoders
    hnsw = Engine(Index.build(sparse, documents=TINY_DOCS, dense_encoder=dense, dense_index="hnsw"))
    assert hnsw.index.manifest.dense["index"] == "hnsw" and not hnsw.retrievers["dense"].exact
    for query in ("fish oil heart", "statin women", "green tea"):
        a, b = hnsw.search(query, 5, "dense"), engine.search(query, 5, "dense")
        assert a.ids == b.ids and np.allclose(a.scores, b.scores, atol=1e-5) and not a.exact


def test_in_memory_builds_equal_the_cli_build(engine, encoders):
    """Lists, dicts and precomputed vectors give the same index, and the same answers, as `lsr index` on a file."""
    sparse, _ = encoders
    ids = [d["_id"] for d in TINY_DOCS]
    from_lists = Index.build(sparse, ids=ids, titles=[d["title"] for d in TINY_DOCS],
                             texts=[d["text"] for d in TINY_DOCS])
    from_dicts = Index.build(sparse, documents=iter(TINY_DOCS))
    vectors = sparse.encode_documents([f"{d['title']} {d['text']}".strip() for d in TINY_DOCS])
    from_vectors = Index.build(sparse, vectors=vectors.to_scipy(sparse.vocab_size), ids=ids)
    for index in (from_lists, from_dicts, from_vectors):
        for a, b in zip(index.segments[0].kernel_arrays(), engine.index.segments[0].kernel_arrays()):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert Engine(index).search("fish oil", 3, "sparse").hits == engine.search("fish oil", 3, "sparse").hits
    with pytest.raises(InvalidInput, match="duplicate document id"):
        Index.build(sparse, ids=["a", "a"], texts=["fish", "oil"])
    with pytest.raises(InvalidInput, match="has no text"):
        Index.build(sparse, ids=["a"], texts=["   "])


def test_every_retriever_answers_through_the_protocol(engine):
    """native (block-max and exhaustive), FAISS and bm25s: the same batch of queries, one Ranked per query, best
    first; block-max returns exactly the exhaustive top-k."""
    queries = ["statin breast cancer", "fish oil", "zzzz", "salt sugar blood pressure"]
    encoded = {"sparse": engine.index.encoder.encode_queries(queries),
               "dense": engine.dense_encoder().encode_queries(queries), "text": queries}
    exhaustive = NativeRetriever(engine.index.snapshot(), Pruning("exhaustive"))
    retrievers = [*engine.retrievers.values(), exhaustive]
    for retriever in retrievers:
        assert isinstance(retriever, Retriever)
        answers = retriever.retrieve(encoded[retriever.takes], 3)
        assert len(answers) == len(queries) and all(isinstance(a, Ranked) for a in answers)
        for answer in answers:
            assert answer.scores == sorted(answer.scores, reverse=True) and len(answer.ids) <= 3
            assert answer.exact == retriever.exact
    blockmax = engine.retrievers["sparse"].retrieve(encoded["sparse"], 3)
    assert [(a.ids, a.scores) for a in blockmax] == [(a.ids, a.scores) for a in exhaustive.retrieve(encoded["sparse"], 3)]


class ReversedNative:
    """A registered backend: one class with open(); the engine, the CLI and evaluation need no change."""

    component = takes = "sparse"
    name = "reversed-native"
    exact = False

    def __init__(self, index) -> None:
        self.inner = NativeRetriever(index)

    @classmethod
    def open(cls, index, **_):
        return cls(index)

    def warm_up(self) -> None:
        pass

    def retrieve(self, queries, k, threads=None):
        return [Ranked(list(reversed(r.ids)), list(reversed(r.scores)), exact=False)
                for r in self.inner.retrieve(queries, k, threads)]


def test_a_registered_backend_serves_the_engine_and_the_cli(full_index, tmp_path, capsys):
    import json

    register_backend("reversed", ReversedNative)
    assert "reversed" in backend_names()
    engine = Engine.open(full_index, backend="reversed", parts=())
    native = Engine.open(full_index, parts=())
    result = engine.search("statin breast cancer", 3)
    assert result.ids == list(reversed(native.search("statin breast cancer", 3).ids)) and not result.exact
    from lsr.cli import main

    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    write_jsonl(beir / "queries.jsonl", [{"_id": "q1", "text": "fish oil heart"}])
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td2\t1\n")
    assert main(["eval", "--beir", str(beir), "--index", str(full_index), "--mode", "sparse", "--backend",
                 "reversed", "--k", "5"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["components"] == {"sparse": "reversed-native"} and metrics["exact"] is False


def test_requests_that_cannot_be_served_are_named(engine, encoders):
    from lsr.sparse import SparseBatch

    with pytest.raises(InvalidInput, match="no sparse component"):
        engine.search("salt", mode="bm25", explain=True)  # contributions would not add up to a BM25 score
    two = engine.index.encoder.encode_queries(["salt", "fish"])
    with pytest.raises(InvalidInput, match="search_vectors for several"):
        engine.search(two)
    with pytest.raises(InvalidInput, match="search_vectors for several"):
        engine.search(two.take([0]), mode="hybrid")
    assert engine.search_batch([]) == []
    for bad_k in (2.5, 0, True, "3"):
        with pytest.raises(InvalidInput, match="k must be an integer"):
            engine.search("salt", k=bad_k)
    with pytest.raises(InvalidInput, match="takes no option prunning"):
        Engine(engine.index, prunning=Pruning("exhaustive"))
    with pytest.raises(Unavailable, match="hybrid fuses two or three components"):
        Engine(Index.build(encoders[0], documents=TINY_DOCS)).search("fish", mode="hybrid")
    assert isinstance(SparseBatch, type)


def test_hybrid_hits_carry_each_component_score(engine):
    result = engine.search("fish oil heart", k=3, mode="hybrid", fusion=Fusion(components=("sparse", "bm25")))
    sparse = dict(zip(*(lambda r: (r.ids, r.scores))(engine.search("fish oil heart", k=100, mode="sparse"))))
    bm25 = dict(zip(*(lambda r: (r.ids, r.scores))(engine.search("fish oil heart", k=100, mode="bm25"))))
    for hit in result.hits:
        expected = {c: s[hit.id] for c, s in (("sparse", sparse), ("bm25", bm25)) if hit.id in s}
        assert hit.component_scores == pytest.approx(expected)
    assert engine.search("fish oil", k=1, mode="sparse").hits[0].component_scores is None


def test_an_index_of_bare_vectors_defaults_to_sparse_and_warms_up(tmp_path):
    from lsr.sparse import SparseBatch

    vectors = np.array([[0.0, 1.5, 0.0, 0.4], [0.9, 0.0, 0.0, 2.0]], dtype=np.float32)  # a dense NumPy array
    index = Index.build(vectors=vectors, ids=["a", "b"], vocab_size=4, documents=[
        {"id": "a", "text": "fish oil"}, {"id": "b", "text": "salt"}], bm25=True)
    assert index.manifest.search_defaults == {"mode": "sparse"}
    engine = Engine(index)
    engine.warm_up()  # (lsr serve does this): the sparse side is warmed with vectors, BM25 with text
    assert engine.search(SparseBatch.from_dicts([{3: 1.0}])).ids == ["b", "a"]
    assert engine.search("salt", mode="bm25").ids == ["b"]
    with pytest.raises(InvalidInput, match="unknown build options"):
        Index.build(vectors=vectors, ids=["a", "b"], vocab_size=4, bm2=True)
