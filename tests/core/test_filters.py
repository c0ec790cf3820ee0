"""Metadata and filtered search: the schema (declared, inferred, widened), the filter language and its errors, and
the exactness of every mode under random filters on an index with several segments and deletes, before and after a
merge; pages."""

from __future__ import annotations

import random

import numpy as np
import pytest

from lsr import Engine, Fusion, Index, load_encoder
from lsr.corpus import Document
from lsr.errors import InvalidInput
from lsr.filters import InvalidFilter, parse, path_text
from lsr.index.metadata import Schema, format_datetime, parse_datetime
from lsr.request import Pruning
from tests.core.test_live_index import nfcorpus_documents, queries

FIELDS = {"tenant": "keyword", "year": "integer", "score": "float", "flag": "boolean", "tags": "keywords",
          "published": "datetime"}
TENANTS = ["acme", "globex", "initech", "umbrella", "hooli", "stark"]
TAGS = ["red", "green", "blue", "gold", "grey"]


@pytest.fixture(scope="module")
def encoders(tiny_mlm_dir, tiny_dense_dir, tiny_idf_file):
    return (load_encoder(tiny_mlm_dir, kind="inference-free", idf=tiny_idf_file, device="cpu", max_document_length=64),
            load_encoder(tiny_dense_dir, kind="dense", device="cpu", max_document_length=64))


def random_metadata(rng: random.Random) -> dict:
    """Every field, each missing now and then; tenants Zipf-like, a few values tied on purpose."""
    out = {"tenant": TENANTS[min(len(TENANTS) - 1, int(rng.paretovariate(1.2)) - 1)],
           "year": rng.randint(1995, 2015), "score": round(rng.random(), 2), "flag": rng.random() < 0.5,
           "tags": rng.sample(TAGS, rng.randint(0, 3)),
           "published": f"20{rng.randint(10, 23):02d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
                        + ("" if rng.random() < 0.5 else f"T{rng.randint(0, 23):02d}:30:00Z")}
    return {k: v for k, v in out.items() if rng.random() > 0.15}


def random_leaf(rng: random.Random) -> dict:
    kind = rng.choice(["tenant", "tenants", "year", "yearterm", "score", "flag", "tags", "tagsany", "published",
                       "exists"])
    if kind == "tenant":
        return {"term": {"tenant": rng.choice(TENANTS + ["nobody"])}}
    if kind == "tenants":
        return {"terms": {"tenant": rng.sample(TENANTS, rng.randint(1, 3))}}
    if kind == "year":
        low = rng.randint(1994, 2016)
        return {"range": {"year": {rng.choice(["gt", "gte"]): low, rng.choice(["lt", "lte"]): low + rng.randint(0, 8)}}}
    if kind == "yearterm":
        return {"term": {"year": rng.randint(1995, 2015)}}
    if kind == "score":
        return {"range": {"score": {rng.choice(["gt", "gte", "lt", "lte"]): round(rng.random(), 2)}}}
    if kind == "flag":
        return {"term": {"flag": rng.random() < 0.5}}
    if kind == "tags":
        return {"term": {"tags": rng.choice(TAGS)}}
    if kind == "tagsany":
        return {"terms": {"tags": rng.sample(TAGS, 2)}}
    if kind == "published":
        return {"range": {"published": {"gte": f"20{rng.randint(10, 23)}-06-01", "lt": "2024-01-01T00:00:00Z"}}}
    return {"exists": {"field": rng.choice(list(FIELDS))}}


def random_filter(rng: random.Random, depth: int = 0) -> dict:
    if depth >= 2 or rng.random() < 0.45:
        return random_leaf(rng)
    clause = {}
    for key in rng.sample(["must", "should", "must_not"], rng.randint(1, 2)):
        clause[key] = [random_filter(rng, depth + 1) for _ in range(rng.randint(1, 3))]
    return clause


def keeps(spec: dict, metadata: dict) -> bool:
    """The filter language's meaning, written independently of the mask code."""
    if "must" in spec or "should" in spec or "must_not" in spec:
        return (all(keeps(c, metadata) for c in spec.get("must", []))
                and (not spec.get("should") or any(keeps(c, metadata) for c in spec["should"]))
                and not any(keeps(c, metadata) for c in spec.get("must_not", [])))
    (operator, body), = spec.items()
    if operator == "exists":
        value = metadata.get(body["field"])
        return value is not None and value != []
    (field, target), = body.items()
    value = metadata.get(field)
    if value is None or value == []:
        return False
    if operator in ("term", "terms"):
        wanted = [target] if operator == "term" else target
        values = value if isinstance(value, list) else [value]
        return any(v == w and type(v) is type(w) for v in values for w in wanted)
    if FIELDS[field] == "datetime":
        value = parse_datetime(value)
        target = {op: parse_datetime(v) for op, v in target.items()}
    checks = {"gt": lambda b: value > b, "gte": lambda b: value >= b, "lt": lambda b: value < b,
              "lte": lambda b: value <= b}
    return all(checks[op](bound) for op, bound in target.items())


def assert_same_ranking(got: list, want: list, where: str) -> None:
    """The same (id, score) list, but for the order of equal scores, and at the cut-off, for which ids tie."""
    assert len(got) == len(want), where
    assert np.allclose([s for _, s in got], [s for _, s in want], rtol=1e-5, atol=1e-6), where
    cut = want[-1][1] if want else None
    for score in {round(s, 5) for _, s in want}:
        ids_got = {d for d, s in got if round(s, 5) == score}
        ids_want = {d for d, s in want if round(s, 5) == score}
        if cut is not None and score == round(cut, 5):
            assert len(ids_got) == len(ids_want), where
        else:
            assert ids_got == ids_want, where


@pytest.fixture(scope="module")
def live(tmp_path_factory, encoders):
    """An index of 4 segments (three adds, then replaces that change metadata), with deletes in two of them."""
    sparse, dense = encoders
    rng = random.Random(7)
    documents = nfcorpus_documents(160)
    for d in documents:
        d["metadata"] = random_metadata(rng)
    path = tmp_path_factory.mktemp("filters") / "idx"
    index = Index.create(sparse, path=path, dense_encoder=dense, bm25=True, store_documents=True, schema=FIELDS)
    for part in (documents[:60], documents[60:110], documents[110:]):
        index.add(documents=part)
        index.commit()
    index.delete([d["id"] for d in documents[5:25:2]] + [d["id"] for d in documents[70:80]])
    index.commit()
    replaced = [{**d, "metadata": random_metadata(rng)} for d in documents[30:45]]
    index.upsert(documents=replaced)
    index.commit()
    truth = {d["id"]: d["metadata"] for d in documents}
    truth.update({d["id"]: d["metadata"] for d in replaced})
    for doc_id in [d["id"] for d in documents[5:25:2]] + [d["id"] for d in documents[70:80]]:
        truth.pop(doc_id)
    assert len(index.snapshot().views) >= 4 and index.doc_count == len(truth)
    return index, truth


MODES = ("sparse", "bm25", "dense")


def reference(engine: Engine, texts: list[str], mode: str, spec: dict, truth: dict, k: int) -> list[list]:
    """Brute force over the kept documents: the unfiltered exact ranking of every document, restricted."""
    everything = engine.search_batch(texts, len(truth) + 5, mode)
    return [[(d, s) for d, s in zip(r.ids, r.scores) if keeps(spec, truth[d])][:k] for r in everything]


def check_every_mode(index: Index, truth: dict, seed: int, rounds: int) -> None:
    engines = {"blockmax": Engine(index), "exhaustive": Engine(index, pruning=Pruning("exhaustive"))}
    texts = queries(12)
    rng = random.Random(seed)
    specs = [random_filter(rng) for _ in range(rounds)] + [{"term": {"tenant": "stark"}},  # a few rows: scored directly
                                                            {"term": {"flag": True}}]  # about half: blocks skipped
    for spec in specs:
        kept = sum(keeps(spec, m) for m in truth.values())
        for k in (1, 7, 30):
            for name, engine in engines.items():
                for mode in MODES if name == "blockmax" else ("sparse",):
                    got = engine.search_batch(texts, k, mode, filter=spec)
                    want = reference(engines["exhaustive"], texts, mode, spec, truth, k)
                    for q, (g, w) in enumerate(zip(got, want)):
                        assert all(keeps(spec, truth[d]) for d in g.ids)
                        assert_same_ranking(list(zip(g.ids, g.scores)), w, f"{name} {mode} {spec} k={k} q={q} "
                                                                           f"kept={kept}")
                        assert g.exact
            fusion = Fusion(components=("sparse", "dense", "bm25"), depth=40)
            fused = engines["blockmax"].search_batch(texts, k, "hybrid", fusion, filter=spec)
            lists = {c: reference(engines["exhaustive"], texts, c, spec, truth, 40) for c in fusion.components}
            for q, result in enumerate(fused):  # each component filtered before fusion
                want = fusion.fuse([lists[c][q] for c in fusion.components], k)
                assert_same_ranking(list(zip(result.ids, result.scores)), want, f"hybrid {spec} k={k} q={q}")


@pytest.mark.parametrize("path", ["auto", "rows", "blocks"])
def test_every_mode_answers_the_exact_top_k_of_the_kept_documents(live, monkeypatch, path):
    """``rows``: every selection scored directly, masks kept as sorted numbers; ``blocks``: every selection walked
    by blocks, skipping every block with no kept row, masks as flag arrays; ``auto``: as the thresholds choose (on
    this small index, mostly blocks)."""
    import lsr.filters
    import lsr.index.selection
    import lsr.retrievers.native

    if path != "auto":
        below = 0 if path == "rows" else 10**9  # (a selection is "few" when kept x below < rows)
        monkeypatch.setattr(lsr.index.selection, "SPARSE_BELOW", below)
        monkeypatch.setattr(lsr.filters, "SPARSE_BELOW", below)
        monkeypatch.setattr(lsr.index.selection, "BLOCKS_WORTH_SKIPPING", 1.0)  # blocks with no kept row: skipped
    used = []
    for name in ("_retrieve_rows", "_retrieve_together"):
        original = getattr(lsr.retrievers.native.NativeRetriever, name)
        monkeypatch.setattr(lsr.retrievers.native.NativeRetriever, name,
                            lambda self, *a, _o=original, _n=name, **k: used.append(_n) or _o(self, *a, **k))
    index, truth = live
    check_every_mode(index, truth, seed=1 + ("auto", "rows", "blocks").index(path), rounds=14)
    if path == "rows":
        assert "_retrieve_rows" in used
    if path == "blocks":
        assert "_retrieve_rows" not in used and "_retrieve_together" in used


def test_a_merge_keeps_every_filtered_answer_exact(tmp_path, live):
    index, truth = live
    copy = Index.open(index.save(tmp_path / "copy"))
    copy.merge(max_segments=1)
    assert len(copy.snapshot().views) == 1
    for doc_id in list(truth)[:40]:  # the columns were merged with the segments
        assert copy.metadata(doc_id) == Index.open(index.directory).metadata(doc_id)
    check_every_mode(copy, truth, seed=2, rounds=8)


def test_pages_are_slices_of_one_deeper_search(live):
    index, _ = live
    engine = Engine(index)
    for spec in (None, {"term": {"flag": True}}):
        for mode in ("sparse", "bm25", "dense", "hybrid"):
            deep = engine.search("statin breast cancer diet", 30, mode, filter=spec)
            for offset in (0, 10, 20):
                page = engine.search("statin breast cancer diet", 10, mode, offset=offset, filter=spec)
                assert page.ids == deep.ids[offset:offset + 10] and page.scores == deep.scores[offset:offset + 10]
                assert page.offset == offset


def test_hits_carry_their_metadata_and_the_index_returns_it(live):
    index, truth = live
    engine = Engine(index)
    result = engine.search("fish oil heart", 5, "sparse", return_metadata=True)
    for hit in result.hits:
        want = {k: v for k, v in truth[hit.id].items() if v != []}
        if "published" in want:
            want["published"] = format_datetime(parse_datetime(want["published"]))
        assert hit.metadata == want == index.metadata(hit.id)
        assert index.document(hit.id)["metadata"] == want


# -- schema ---------------------------------------------------------------------------------------------------------
def test_a_schema_is_inferred_from_the_first_documents_then_fixed(encoders):
    sparse, _ = encoders
    index = Index.build(sparse, documents=[{"id": "a", "text": "statin", "metadata": {"lang": "en", "year": 2001}},
                                           {"id": "b", "text": "fish", "metadata": {"year": 2.5, "tags": ["x"]}},
                                           {"id": "c", "text": "tea"}])
    assert index.schema.fields == {"lang": "keyword", "year": "float", "tags": "keywords"}
    with pytest.raises(InvalidInput, match=r"document 'd': metadata field 'color' is not in the index's schema"):
        index.add(documents=[{"id": "d", "text": "salt", "metadata": {"color": "red"}}])
    with pytest.raises(InvalidInput, match=r"document 'e': metadata field 'year' = \"soon\" is not a finite number"):
        index.add(documents=[{"id": "ok", "text": "salt", "metadata": {"year": 3}},
                             {"id": "e", "text": "salt", "metadata": {"year": "soon"}}])
    index.commit()  # the failed write left nothing staged: "ok" is not in the index
    assert index.doc_count == 3 and index.snapshot().find("ok") is None
    with pytest.raises(InvalidInput, match="holds both integer and boolean"):
        Schema.infer([("a", {"x": 1}), ("b", {"x": True})])
    with pytest.raises(InvalidInput, match="flat JSON"):
        Schema.infer([("a", {"x": {"nested": 1}})])


def test_declared_schemas_unknown_fields_and_widening(tmp_path, encoders):
    sparse, _ = encoders
    index = Index.build(sparse, path=tmp_path / "idx", schema=["year:integer", "lang:keyword"],
                        unknown_fields="ignore",
                        documents=[{"id": "a", "text": "statin", "metadata": {"year": 2001, "lang": "en", "x": 1}}])
    assert index.metadata("a") == {"year": 2001, "lang": "en"}  # the unknown field was dropped
    with pytest.raises(InvalidInput, match="cannot become boolean"):
        index.widen_schema({"year": "boolean"})
    index.widen_schema({"year": "float", "lang": "keywords", "stars": "integer"})
    reopened = Index.open(tmp_path / "idx")
    assert reopened.schema.fields == {"year": "float", "lang": "keywords", "stars": "integer"}
    assert reopened.metadata("a") == {"year": 2001.0, "lang": ["en"]}  # old columns read as the wider types
    reopened.add(documents=[{"id": "b", "text": "fish", "metadata": {"year": 2.5, "lang": ["de", "en"], "stars": 4}}])
    reopened.commit()
    engine = Engine(reopened)
    assert set(engine.search("statin fish", 5, "sparse", filter={"term": {"lang": "en"}}).ids) == {"a", "b"}
    assert engine.search("statin fish", 5, "sparse", filter={"range": {"year": {"lt": 2000}}}).ids == ["b"]
    reopened.merge(max_segments=1)
    assert reopened.metadata("a") == {"year": 2001.0, "lang": ["en"]} and reopened.metadata("b")["stars"] == 4


def test_a_failed_vector_add_or_commit_leaves_no_schema_behind(tmp_path, encoders, monkeypatch):
    """A write refused after its schema was inferred, and a commit that fails before its generation is published,
    both leave the index's schema as the last commit left it (none here)."""
    from lsr.index import storage
    from lsr.sparse import SparseBatch

    sparse, _ = encoders
    index = Index.build(sparse, path=tmp_path / "idx", documents=[{"id": "a", "text": "statin"}])
    assert index.schema is None
    one = SparseBatch.from_rows([(np.array([5], np.int32), np.array([1.0], np.float32))] * 2)
    documents = [Document("v1", "", "", {"year": 2001}), Document("v2", "", "", {"year": 2**70})]
    with pytest.raises(InvalidInput, match="'year'"):
        index.writer().add_vectors(one, ["v1", "v2"], documents=documents)
    assert not index.writer().has_changes and index.commit().generation == 1
    index.add(documents=[{"id": "b", "text": "fish", "metadata": {"lang": "en"}}])

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(storage, "publish", full)
    with pytest.raises(OSError, match="No space"):
        index.commit()
    assert Index.open(tmp_path / "idx", load_encoder=False).schema is None  # the manifest kept the committed one
    monkeypatch.undo()
    assert index.generation == 1 and "b" not in set(index.ids())  # a failed commit released its staged write
    index.add(documents=[{"id": "b", "text": "fish", "metadata": {"lang": "en"}}])
    index.commit()
    reopened = Index.open(tmp_path / "idx", load_encoder=False)
    assert reopened.schema.fields == {"lang": "keyword"} and reopened.metadata("b") == {"lang": "en"}
    on_disk = {p.name for p in (tmp_path / "idx" / storage.SEGMENTS).iterdir()}
    assert on_disk == {s.name for s in reopened.segments}  # the failed commit's segment was collected


def test_a_build_that_declares_some_fields_infers_the_others(encoders):
    sparse, _ = encoders
    index = Index.build(sparse, schema={"year": "float"},
                        documents=[{"id": "a", "text": "statin", "metadata": {"year": 2001, "lang": "en"}}])
    assert index.schema.fields == {"year": "float", "lang": "keyword"} and not index.schema.open
    assert index.metadata("a") == {"year": 2001.0, "lang": "en"}
    with pytest.raises(InvalidInput, match="'stars' is not in the index's schema"):
        index.add(documents=[{"id": "b", "text": "fish", "metadata": {"stars": 3}}])


def test_metadata_values_are_checked_and_normalized():
    schema = Schema({"when": "datetime", "n": "integer", "tags": "keywords", "f": "float", "b": "boolean"})
    assert schema.normalize("d", {"when": "2024-05-01", "tags": "solo", "f": 3, "n": None}) == \
        {"when": parse_datetime("2024-05-01T00:00:00Z"), "tags": ["solo"], "f": 3.0}
    assert format_datetime(parse_datetime("2024-05-01T12:30:00+02:00")) == "2024-05-01T10:30:00Z"
    for bad, match in (({"when": "May 1st"}, "ISO 8601"), ({"n": 1.5}, "an integer"), ({"n": True}, "an integer"),
                       ({"f": float("nan")}, "finite"), ({"b": "yes"}, "true or false"), ({"tags": [1]}, "strings")):
        with pytest.raises(InvalidInput, match=match):
            schema.normalize("d", bad)
    with pytest.raises(InvalidInput, match="field name"):
        Schema({"bad name": "keyword"})
    with pytest.raises(InvalidInput, match="type 'text'"):
        Schema({"x": "text"})


# -- the language ---------------------------------------------------------------------------------------------------
SCHEMA = Schema(FIELDS)


@pytest.mark.parametrize(("spec", "loc", "message"), [
    ({"term": {"color": "red"}}, "filter.term.color", "unknown field 'color'"),
    ({"must": [{"term": {"tenant": "a"}}, {"range": {"year": {"gte": "x"}}}]}, "filter.must[1].range.year.gte",
     "is not a number"),
    ({"range": {"tenant": {"gte": 1}}}, "filter.range.tenant", "range applies to integer, float and datetime"),
    ({"term": {"score": 0.5}}, "filter.term.score", "use range"),
    ({"term": {"year": "2001"}}, "filter.term.year", "is not an integer"),
    ({"terms": {"year": [2001, 2**70]}}, "filter.terms.year[1]", "outside the 64-bit integers"),
    ({"terms": {"tenant": []}}, "filter.terms.tenant", "non-empty list"),
    ({"range": {"score": {"lt": float("nan")}}}, "filter.range.score.lt", "finite"),
    ({"range": {"score": {"lt": float("inf")}}}, "filter.range.score.lt", "finite"),
    ({"range": {"published": {"gte": "yesterday"}}}, "filter.range.published.gte", "ISO 8601"),
    ({"range": {"year": {"between": 3}}}, "filter.range.year.between", "unknown range operator"),
    ({"should": [{"bogus": {}}]}, "filter.should[0].bogus", "unknown clause"),
    ({"term": {"tenant": "a"}, "must": []}, "filter", "stands alone"),
    ({}, "filter", "a clause is a JSON object"),
    ({"must": []}, "filter", "empty clause"),
    ({"exists": {"field": "nope"}}, "filter.exists.field", "unknown field"),
    ({"must": [{"must": [{"must": [{"must": [{"must": [{"must": [{"must": [{"must": [{"term": {"flag": True}}]}]}]}]}]}]}]}]},
     "filter.must[0].must[0].must[0].must[0].must[0].must[0].must[0].must[0]", "nest at most 8"),
])
def test_bad_filters_are_refused_at_their_path(spec, loc, message):
    with pytest.raises(InvalidFilter, match=message) as caught:
        parse(spec, SCHEMA)
    assert path_text(caught.value.loc) == loc and str(caught.value).startswith(loc + ":")


def test_an_index_without_metadata_refuses_any_filter_field(encoders):
    sparse, _ = encoders
    engine = Engine(Index.build(sparse, documents=[{"id": "a", "text": "statin"}]))
    with pytest.raises(InvalidFilter, match="unknown field 'x'; this index's metadata: no fields"):
        engine.search("statin", 3, filter={"term": {"x": 1}})


def test_a_filter_that_keeps_nothing_answers_nothing(live):
    index, _ = live
    engine = Engine(index)
    for mode in ("sparse", "bm25", "dense", "hybrid"):
        assert engine.search("statin", 5, mode, filter={"term": {"tenant": "nobody"}}).ids == []
