"""Fusion tuning (lsr tune), the fusion normalizations it searches, and the significance of a difference."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from lsr import Engine, Index, load_encoder
from lsr.fusion import Fusion, arctan_normalize, convex_fusion, z_score_normalize
from lsr.significance import compare_runs, paired, verdict
from lsr.tuning import Scorer, fuse_all, search_space, tune
from tests.conftest import TINY_DOCS, write_jsonl

QUERIES = {"q1": "statin breast cancer", "q2": "fish oil heart", "q3": "green tea coffee", "q4": "salt blood pressure",
           "q5": "soy protein men", "q6": "heart disease diet"}
QRELS = {"q1": {"d1": 2}, "q2": {"d2": 1}, "q3": {"d3": 1}, "q4": {"d4": 1}, "q5": {"d5": 1}, "q6": {"d2": 1, "d3": 1}}


def test_normalizations():
    assert z_score_normalize([1.0, 2.0, 3.0]) == pytest.approx([-math.sqrt(1.5), 0.0, math.sqrt(1.5)])
    assert z_score_normalize([2.0, 2.0]) == [0.0, 0.0]
    assert arctan_normalize([0.0, 1.0]) == pytest.approx([0.0, 0.5])
    # a document missing from a list gets that list's minimum, whatever the normalization
    for normalization in ("minmax", "zscore", "arctan"):
        fused = dict(convex_fusion([[("a", 3.0), ("b", 1.0)], [("c", 5.0), ("a", 4.0)]], normalization=normalization))
        assert fused["b"] == 0.0 and fused["a"] > 0 and fused["c"] > 0  # b: list 1's minimum, in list 2 missing
    with pytest.raises(ValueError, match="normalization"):
        Fusion(normalization="softmax")
    spec = Fusion("convex", ("sparse", "bm25"), (0.3, 0.7), depth=50, normalization="zscore").to_dict()
    assert Fusion.from_dict(spec) == Fusion("convex", ("sparse", "bm25"), (0.3, 0.7), depth=50, normalization="zscore")


def test_paired_significance():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 1, 200)
    same = paired(a, a)
    assert same["p_value"] == 1.0 and not same["significant"]
    better = paired(a + 0.1, a)
    assert better["significant"] and better["p_value"] < 0.001
    assert better["ci"][0] <= better["mean_difference"] <= better["ci"][1]
    noise = paired(a + rng.normal(0, 0.2, 200), a)
    assert noise["ci"][0] < noise["mean_difference"] < noise["ci"][1]
    assert paired(a + 0.1, a) == better  # seeded: the same runs, the same figures
    assert "significant" in verdict(better) and ("noise" in verdict(noise)) == (not noise["significant"])
    result = compare_runs({"x": {"ndcg@10": 1.0}, "y": {"ndcg@10": 0.5}, "z": {"ndcg@10": 0.2}},
                          {"x": {"ndcg@10": 0.5}, "y": {"ndcg@10": 0.5}, "z": {"ndcg@10": 0.1}})
    assert result["queries"] == 3 and result["mean_difference"] == pytest.approx(0.2)


@pytest.fixture(scope="module")
def engine(tmp_path_factory, tiny_mlm_dir, tiny_idf_file, tiny_dense_dir):
    encoder = load_encoder(tiny_mlm_dir, kind="inference-free", idf=tiny_idf_file, device="cpu")
    dense = load_encoder(tiny_dense_dir, kind="dense", device="cpu")
    index = Index.build(encoder, documents=TINY_DOCS, dense_encoder=dense, bm25=True, store_documents=True,
                        path=tmp_path_factory.mktemp("tune") / "idx")
    return Engine.open(index.directory)


def test_the_search_space_and_offline_fusion_equal_the_engine(engine):
    space = search_space(["sparse", "dense", "bm25"], [50])
    assert len(space) == (3 * 9 + 36) * 7 and len(set(space)) == len(space)
    scorer = Scorer(QRELS)
    from lsr.tuning import component_lists

    lists = component_lists(engine, QUERIES, ["sparse", "dense", "bm25"], 50)
    for fusion in (space[0], space[len(space) // 2], space[-1]):
        offline = fuse_all(fusion, lists, 10)
        online = engine.search_batch([QUERIES[q] for q in sorted(QUERIES)], 10, "hybrid", fusion)
        assert [offline[q] for q in sorted(QUERIES)] == [r.ids for r in online], fusion
        assert scorer(offline)[0] == pytest.approx(scorer({q: r.ids for q, r in zip(sorted(QUERIES), online)})[0])


def test_tune_finds_a_setting_at_least_as_good_as_the_default(engine):
    result = tune(engine, QUERIES, QRELS, depths=(10, 50))
    best, default = result["best"], result["default"]
    assert result["settings"] == len(search_space(result["components"], (10, 50)))
    assert best["score"] >= default["score"] and best["ci"][0] <= best["score"] <= best["ci"][1]
    assert result["top"][0]["score"] == best["score"] and len(result["best_per_family"]) >= 7
    assert "p_value" in default["best_against_it"]


def test_lsr_tune_saves_the_default_and_eval_compare_tests_it(engine, tmp_path, capsys):
    from lsr.cli import main

    beir = tmp_path / "beir"
    beir.mkdir()
    write_jsonl(beir / "corpus.jsonl", TINY_DOCS)
    write_jsonl(beir / "queries.jsonl", [{"_id": q, "text": t} for q, t in QUERIES.items()])
    (beir / "qrels").mkdir()
    for split in ("dev", "test"):
        rows = "".join(f"{q}\t{d}\t{g}\n" for q, docs in QRELS.items() for d, g in docs.items())
        (beir / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + rows)
    index = str(engine.index.directory)
    assert main(["eval", "--beir", str(beir), "--index", index, "--output", str(tmp_path / "before.json")]) == 0
    capsys.readouterr()
    assert main(["tune", "--index", index, "--beir", str(beir), "--split", "dev", "--depths", "10,50",
                 "--save"]) == 0
    result = json.loads(capsys.readouterr().out)
    saved = json.loads((engine.index.directory / "manifest.json").read_text())["search_defaults"]
    assert saved["fusion"] == result["best"]["fusion"] and saved["tuned"]["split"] == "dev"
    assert saved["tuned"]["metric"] == "ndcg@10"
    reopened = Engine.open(index)
    assert reopened.default_fusion() == Fusion.from_dict(result["best"]["fusion"])
    assert main(["eval", "--beir", str(beir), "--index", index, "--compare", str(tmp_path / "before.json")]) == 0
    captured = capsys.readouterr()
    after = json.loads(captured.out)
    compared = after["compared"]["before"]
    before = json.loads((tmp_path / "before.json").read_text())
    # nDCG@10 is a mean over the same queries: the mean per-query difference is the difference of the means
    assert compared["mean_difference"] == pytest.approx(after["ndcg@10"] - before["ndcg@10"], abs=1e-9)
    assert compared["queries"] == len(QRELS) and 0.0 <= compared["p_value"] <= 1.0
    assert "nDCG@10 against before:" in captured.err
    assert main(["tune", "--index", index, "--queries", str(beir / "queries.jsonl"), "--qrels",
                 str(beir / "qrels" / "dev.tsv"), "--depths", "10"]) == 0
    assert main(["tune", "--index", index]) == 2  # neither --beir nor --queries/--qrels


def test_sparse_feedback_is_an_exact_second_pass_and_explained(engine):
    from lsr.request import Feedback, SearchRequest

    query = "fish oil heart"
    feedback = Feedback(docs=2, terms=8, weight=0.6, components=("sparse",))
    expanded = engine.search(query, 5, "sparse", feedback=feedback, explain=True)
    # the same ranking as searching the expanded vector directly, exhaustively (exact for the expanded query)
    first = engine.search(query, 2, "sparse")
    vectors = engine._rocchio(engine.sparse_encoder().encode_queries([query]), [
        type("R", (), {"ids": first.ids})()], feedback, engine.state().snapshot)
    from lsr import Pruning

    exhaustive = engine.search_vectors(vectors, 5, request=SearchRequest(k=5, mode="sparse",
                                                                        pruning=Pruning("exhaustive")))[0]
    assert expanded.ids == exhaustive.ids and expanded.scores == pytest.approx(exhaustive.scores, rel=1e-5)
    assert len(vectors.row(0)[0]) <= 8
    asked = set(engine.sparse_encoder().encode_queries([query]).row(0)[0].tolist())
    tokens = engine.index.token_strings()
    for hit in expanded.hits:
        for c in hit.explanation:
            assert c.feedback == (tokens.index(c.token) not in asked)
        assert sum(c.contribution for c in hit.explanation) == pytest.approx(hit.score, rel=1e-4)
    hybrid = engine.search(query, 3, "hybrid", feedback=feedback)
    assert hybrid.mode == "hybrid" and len(hybrid.ids) == 3
    with pytest.raises(ValueError, match="has neither"):
        engine.search(query, 3, "bm25", feedback=feedback)
    with pytest.raises(ValueError, match="weight"):
        Feedback(weight=1.5)


def test_feedback_over_http(engine):
    from fastapi.testclient import TestClient

    from lsr.service.app import create_app
    from lsr.service.settings import Settings

    with TestClient(create_app(Settings(), engine=engine)) as http:
        body = {"query": "fish oil heart", "k": 3, "mode": "sparse", "explain": True,
                "feedback": {"docs": 2, "terms": 8, "weight": 0.6}}
        answer = http.post("/search", json=body).json()
        from lsr.request import Feedback

        want = engine.search("fish oil heart", 3, "sparse", explain=True, feedback=Feedback(2, 8, 0.6))
        assert [h["id"] for h in answer["hits"]] == want.ids
        assert any(c["feedback"] for h in answer["hits"] for c in h["explanation"]) == \
            any(c.feedback for h in want.hits for c in h.explanation)
        bad = http.post("/search", json={**body, "feedback": {"docs": 0}})
        loc = bad.json()["detail"][0]["loc"]
        assert bad.status_code == 422 and loc[:2] == ["body", "feedback"] and loc[-1] == "docs"
        assert http.post("/search", json={**body, "feedback": False}).status_code == 200
        no_sparse = http.post("/search", json={**body, "mode": "dense", "explain": False})
        assert no_sparse.status_code == 422 and no_sparse.json()["detail"][0]["loc"] == ["body", "feedback"]


def test_bm25_feedback_is_rm3_over_the_stored_texts(engine):
    from collections import Counter

    from lsr.request import Feedback

    query = "heart disease diet"
    feedback = Feedback(docs=2, weight=0.5, bm25_terms=4, components=("bm25",))
    first = engine.search(query, 2, "bm25")
    lexical = engine.retrievers["bm25"]
    terms = dict(engine._rm3(lexical.analyze([query]), [first.per_component["bm25"]], feedback,
                             engine.state().snapshot, lexical)[0])
    assert sum(terms.values()) == pytest.approx(1.0)
    own = Counter(lexical.analyze([query])[0])
    for term, count in own.items():  # the query keeps its share
        assert terms[term] >= 0.5 * count / sum(own.values()) - 1e-9
    texts = " ".join(f"{d['title']} {d['text']}" for d in TINY_DOCS if d["_id"] in first.ids)
    assert set(terms) - set(own) <= set(lexical.analyze([texts])[0])  # expansion terms come from those documents
    expanded = engine.search(query, 5, "bm25", feedback=feedback)
    assert expanded.ids == lexical.retrieve_weighted([list(terms.items())], 5)[0].ids
    plain = engine.search(query, 5, "bm25")
    assert lexical.retrieve_weighted([[(t, 1.0) for t in lexical.analyze([query])[0]]], 5)[0].scores == plain.scores


def test_feedback_as_a_parameter_of_the_default_mode(tmp_path, tiny_mlm_dir, tiny_idf_file, tiny_dense_dir):
    from lsr.fusion import Fusion
    from lsr.request import Feedback, SearchRequest
    from lsr.tuning import save

    encoder = load_encoder(tiny_mlm_dir, kind="inference-free", idf=tiny_idf_file, device="cpu")
    index = Index.build(encoder, documents=TINY_DOCS, bm25=True, store_documents=True, path=tmp_path / "idx")
    feedback = Feedback(docs=2, weight=0.5, bm25_terms=4, components=("bm25",))
    save(index.directory, Fusion("convex", ("sparse", "bm25")), {"split": "dev"}, feedback)
    engine = Engine.open(index.directory)
    assert engine.default_feedback == feedback
    query = "heart disease diet"
    with_default = engine.search(query, 5)  # the default mode: its feedback
    explicit = engine.search(query, 5, "hybrid", Fusion("convex", ("sparse", "bm25")), feedback=feedback)
    assert with_default.ids == explicit.ids and with_default.scores == explicit.scores
    off = engine.run(SearchRequest(k=5, feedback=False), __import__("lsr.engine", fromlist=["x"]).EncodedQueries(
        [query], engine))[0]
    plain = Engine(Index.open(index.directory), search_defaults={"mode": "hybrid", "fusion": Fusion(
        "convex", ("sparse", "bm25")).to_dict()}).search(query, 5)
    assert off.ids == plain.ids and off.scores == plain.scores
    bm25_explicit = engine.search(query, 5, "bm25")
    assert bm25_explicit.ids == Engine.open(tmp_path / "idx").retrievers["bm25"].retrieve([query], 5)[0].ids


def test_the_expanded_query_says_which_terms_feedback_added(engine):
    from fastapi.testclient import TestClient

    from lsr.request import Feedback
    from lsr.service.app import create_app
    from lsr.service.settings import Settings

    query = "heart disease diet"
    result = engine.search(query, 3, "hybrid", Fusion("convex", ("sparse", "bm25")),
                           feedback=Feedback(docs=2, terms=8, bm25_terms=4))
    sparse, bm25 = result.expansion["sparse"], result.expansion["bm25"]
    asked = set(engine.sparse_encoder().encode_queries([query]).row(0)[0].tolist())
    tokens = engine.index.token_strings()
    assert {t["term"] for t in sparse if not t["added"]} == {tokens[i] for i in asked} & {t["term"] for t in sparse}
    assert any(t["added"] for t in sparse) and len(sparse) <= 8
    words = set(engine.retrievers["bm25"].analyze([query])[0])
    assert {t["term"] for t in bm25 if not t["added"]} == words and any(t["added"] for t in bm25)
    assert [t["weight"] for t in bm25] == sorted((t["weight"] for t in bm25), reverse=True)
    assert engine.search(query, 3, "sparse").expansion is None
    with TestClient(create_app(Settings(), engine=engine)) as http:
        answer = http.post("/search", json={"query": query, "k": 3, "mode": "bm25",
                                            "feedback": {"docs": 2, "bm25_terms": 4, "components": ["bm25"]}}).json()
        assert {t["term"] for t in answer["expansion"]["bm25"] if t["added"]} == \
            {t["term"] for t in bm25 if t["added"]} and "sparse" not in answer["expansion"]


def test_tune_over_feedback_lists_scores_what_the_engine_serves(engine):
    from lsr.request import Feedback
    from lsr.tuning import Scorer, component_lists

    feedback = Feedback(docs=2, bm25_terms=4, components=("bm25",))
    result = tune(engine, QUERIES, QRELS, depths=(10,), components=["sparse", "bm25"], feedback=feedback)
    lists = component_lists(engine, QUERIES, ["sparse", "bm25"], 100, feedback)
    plain = component_lists(engine, QUERIES, ["sparse", "bm25"], 100)
    assert lists["sparse"] == plain["sparse"] and lists["bm25"] != plain["bm25"]  # only the expanded side differs
    best = Fusion.from_dict(result["best"]["fusion"])
    served = engine.search_batch([QUERIES[q] for q in sorted(QUERIES)], 10, "hybrid", best, feedback=feedback)
    score = Scorer(QRELS)({q: r.ids for q, r in zip(sorted(QUERIES), served)})[0]
    assert score == pytest.approx(result["best"]["score"])
