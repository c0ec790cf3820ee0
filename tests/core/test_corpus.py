from __future__ import annotations

import pytest

from lsr.corpus import CorpusError, ReadStats, read_corpus, read_qrels, read_queries
from tests.conftest import TINY_DOCS, write_jsonl


def test_reads_beir_folder_and_jsonl(tmp_path):
    write_jsonl(tmp_path / "corpus.jsonl", TINY_DOCS)
    from_folder = list(read_corpus(tmp_path))
    from_file = list(read_corpus(tmp_path / "corpus.jsonl"))
    assert [d.id for d in from_folder] == ["d1", "d2", "d3", "d4", "d5"] == [d.id for d in from_file]
    assert from_folder[0].contents == "Statins and breast cancer a study of statin use in women"
    assert from_folder[2].contents == "green tea and coffee in the diet"  # empty title: no leading space


def test_accepts_id_and_contents_keys(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"id": 7, "contents": "fish oil"}])
    (doc,) = read_corpus(path)
    assert doc.id == "7" and doc.contents == "fish oil"


@pytest.mark.parametrize(("line", "message"), [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"title": "x", "text": "y"}', "missing or empty document id"),
    ('{"_id": "e", "title": "", "text": "  "}', "has no text"),
    ('{"_id": "d1", "text": "again"}', "duplicate document id"),
    ('{"_id": "e", "text": 5}', "must be strings"),
])
def test_malformed_line_names_file_and_line(tmp_path, line, message):
    path = write_jsonl(tmp_path / "c.jsonl", [TINY_DOCS[0], line, TINY_DOCS[1]])
    with pytest.raises(CorpusError, match=message) as info:
        list(read_corpus(path))
    assert f"{path}:2:" in str(info.value) and "--skip-malformed" in str(info.value)


def test_skip_malformed_counts(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [TINY_DOCS[0], "{oops", "", TINY_DOCS[1], '{"_id": "d1", "text": "x"}'])
    stats = ReadStats()
    docs = list(read_corpus(path, skip_malformed=True, stats=stats))
    assert [d.id for d in docs] == ["d1", "d2"]
    assert stats.read == 2 and stats.skipped == 2 and ":2:" in stats.examples[0]


def test_missing_corpus_and_split_are_explained(tmp_path):
    with pytest.raises(CorpusError, match="does not exist"):
        list(read_corpus(tmp_path / "nope.jsonl"))
    with pytest.raises(CorpusError, match="without corpus.jsonl"):
        list(read_corpus(tmp_path))
    (tmp_path / "qrels").mkdir()
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t2\n")
    assert read_qrels(tmp_path, "test") == {"q1": {"d1": 2}}
    with pytest.raises(CorpusError, match="available splits: test"):
        read_qrels(tmp_path, "dev")
    with pytest.raises(CorpusError, match="queries.jsonl"):
        read_queries(tmp_path)


def test_invalid_utf8_is_a_malformed_line(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"_id": "a", "text": "ok"}\n{"_id": "b", "text": "caf\xe9"}\n{"_id": "c", "text": "fine"}\n')
    with pytest.raises(CorpusError, match=r"c.jsonl:2: not UTF-8"):
        list(read_corpus(path))
    assert [d.id for d in read_corpus(path, skip_malformed=True)] == ["a", "c"]


def test_ir_datasets_ids_are_read_through_the_package(monkeypatch):
    import sys
    import types

    doc = types.SimpleNamespace
    fake = types.ModuleType("ir_datasets")
    fake.load = lambda name: types.SimpleNamespace(docs_iter=lambda: iter([
        doc(doc_id="1", title="T", text="body"), doc(doc_id=2, body="only a body")]))
    monkeypatch.setitem(sys.modules, "ir_datasets", fake)
    docs = list(read_corpus("beir/nfcorpus"))
    assert [(d.id, d.contents) for d in docs] == [("1", "T body"), ("2", "only a body")]


def test_ir_datasets_documents_are_checked_and_a_path_typo_is_named(monkeypatch, tmp_path):
    import sys
    import types

    doc = types.SimpleNamespace
    fake = types.ModuleType("ir_datasets")
    fake.load = lambda name: types.SimpleNamespace(docs_iter=lambda: iter([
        doc(doc_id="1", title="", text="x"), doc(doc_id="1", title="", text="again"), doc(doc_id="2", text="  ")]))
    monkeypatch.setitem(sys.modules, "ir_datasets", fake)
    with pytest.raises(CorpusError, match="duplicate document id '1'"):
        list(read_corpus("beir/nfcorpus"))
    stats = ReadStats()
    assert [d.id for d in read_corpus("beir/nfcorpus", skip_malformed=True, stats=stats)] == ["1"]
    assert stats.skipped == 2
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CorpusError, match="data/typo does not exist"):
        list(read_corpus("data/typo"))  # a folder that exists: a path, not a dataset id
