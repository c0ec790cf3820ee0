"""The live index: adds, replaces and deletes published as generations, merges, crash safety, one writer, pins."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lsr import Engine, Fusion, Index, load_encoder
from lsr.errors import InvalidInput
from lsr.index.storage import IndexLocked
from lsr.index.writer import IndexWriter
from tests.conftest import NFCORPUS, TINY_DOCS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def encoders(tiny_mlm_dir, tiny_dense_dir, tiny_idf_file):
    return (load_encoder(tiny_mlm_dir, kind="inference-free", idf=tiny_idf_file, device="cpu", max_document_length=64),
            load_encoder(tiny_dense_dir, kind="dense", device="cpu", max_document_length=64))


def nfcorpus_documents(n: int) -> list[dict]:
    if NFCORPUS.exists():
        lines = (NFCORPUS / "corpus.jsonl").read_text().splitlines()[:n]
        return [{"id": d["_id"], "title": d["title"], "text": d["text"]} for d in map(json.loads, lines)]
    words = "statin breast cancer heart disease diet vitamin fish oil risk women men blood pressure coffee".split()
    rng = random.Random(0)  # (no ../shared: synthetic texts over the tiny vocabulary)
    return [{"id": f"doc{i}", "title": "", "text": " ".join(rng.choices(words, k=rng.randint(3, 40)))}
            for i in range(n)]


def queries(n: int | None = None) -> list[str]:
    """NFCorpus test queries (all of them with n None)."""
    if NFCORPUS.exists():
        from lsr.corpus import read_qrels, read_queries

        texts = read_queries(NFCORPUS)
        return [texts[q] for q in sorted(read_qrels(NFCORPUS, "test"))][:n]
    return ["statin breast cancer", "fish oil heart", "vitamin d", "blood pressure diet"]


def fresh(live: Index, texts: dict[str, dict], encoders, **options) -> Engine:
    """A fresh build of the live documents, in the live index's order, quantized with its scale."""
    order = list(live.ids())
    sparse, dense = encoders
    index = Index.build(sparse, documents=[texts[i] for i in order], dense_encoder=dense, bm25=True,
                        store_documents=True, max_weight=live.manifest.max_weight, **options)
    return Engine(index)


def assert_same_answers(live: Engine, reference: Engine, questions: list[str], k: int = 100) -> None:
    for mode in ("sparse", "bm25", "dense", "hybrid"):
        fusion = Fusion(components=("sparse", "dense", "bm25")) if mode == "hybrid" else None
        got = live.search_batch(questions, k, mode, fusion)
        want = reference.search_batch(questions, k, mode, fusion)
        for question, a, b in zip(questions, got, want):
            if mode in ("sparse", "bm25"):  # exact: the same impacts and statistics, the same order
                assert (a.ids, a.scores) == (b.ids, b.scores), (mode, question)
            else:  # dense (and what fuses it): FAISS computes each segment apart; equal up to float rounding
                assert_equal_up_to_near_ties(a, b, (mode, question))


def assert_equal_up_to_near_ties(a, b, where, tolerance: float = 1e-5) -> None:
    """Same scores within ``tolerance``, same documents in the same order except where two scores are that close
    (a near-tie may round either way); the last place is checked by score alone."""
    np.testing.assert_allclose(a.scores, b.scores, atol=tolerance)
    score_of = dict(zip(b.ids, b.scores))
    for position, (x, y) in enumerate(zip(a.ids, b.ids)):
        if x != y:
            assert x not in score_of or abs(score_of[x] - a.scores[position]) <= tolerance, where
            assert abs(a.scores[position] - b.scores[position]) <= tolerance, where


def random_writes(live: Index, pool: list[dict], texts: dict[str, dict], rng: random.Random, generations: int,
                  start: int) -> int:
    """Random adds (from ``pool[start:]``), replaces (30% with the same text), deletes and re-adds of deleted ids,
    committed in ``generations`` generations; ``texts`` follows what is live. Returns the number of operations."""
    deleted: list[str] = []
    unused = pool[start:]
    operations = 0
    for _ in range(generations):
        for _ in range(rng.randint(10, 30)):
            kind = rng.random()
            if kind < 0.35 and unused:
                document = unused.pop()
                live.add(documents=[document])
                texts[document["id"]] = document
            elif kind < 0.55 and texts:
                doc_id = rng.choice(sorted(texts))
                same = rng.random() < 0.3
                document = {**texts[doc_id], "text": texts[doc_id]["text"] + ("" if same else " revised")}
                live.upsert(documents=[document])
                texts[doc_id] = document
            elif kind < 0.85 and len(texts) > 10:
                doc_id = rng.choice(sorted(texts))
                live.delete([doc_id])
                deleted.append(texts.pop(doc_id)["id"])
            elif deleted:  # an id deleted earlier comes back
                doc_id = deleted.pop(rng.randrange(len(deleted)))
                document = next(d for d in pool if d["id"] == doc_id)
                live.add(documents=[document])
                texts[doc_id] = document
            operations += 1
        live.commit()
    return operations


@pytest.mark.parametrize("impact_dtype", ["float32", "uint8"])
def test_random_adds_replaces_and_deletes_equal_a_fresh_build(encoders, impact_dtype):
    """Hundreds of operations (including re-adding deleted ids and replacing with the same text) committed in many
    generations; every mode's top-100 equals a fresh build of the surviving documents, before and after merges."""
    pool = nfcorpus_documents(400)
    rng = random.Random(7)
    sparse, dense = encoders
    texts = {d["id"]: d for d in pool[:120]}
    live = Index.build(sparse, documents=list(texts.values()), dense_encoder=dense, bm25=True, store_documents=True,
                       impact_dtype=impact_dtype)
    operations = random_writes(live, pool, texts, rng, generations=12, start=120)
    assert operations >= 200 and live.generation == 13 and len(live.segments) > 5
    assert sorted(live.ids()) == sorted(texts)
    engine = Engine(live)
    questions = queries()  # every test query
    assert_same_answers(engine, fresh(live, texts, encoders, impact_dtype=impact_dtype), questions)
    live.merge(max_segments=3)
    assert len(live.segments) == 3
    assert_same_answers(engine, fresh(live, texts, encoders, impact_dtype=impact_dtype), questions)
    live.merge()  # the tiered policy: nothing more to do at this size, or a rewrite of deleted-heavy segments
    live.merge(max_segments=1)
    assert len(live.segments) == 1 and live.snapshot().views[0].deleted_count == 0
    assert_same_answers(engine, fresh(live, texts, encoders, impact_dtype=impact_dtype), questions)


def test_bm25_statistics_follow_the_live_documents(encoders):
    """After deletes, N, df and the average length are those of the live documents: the scores equal a fresh bm25s
    build of them to the bit (Qdrant users reported IDF left stale after deletes)."""
    from lsr.index.bm25 import Bm25

    documents = nfcorpus_documents(200)
    live = Index.build(encoders[0], documents=documents, bm25=True)
    doomed = [d["id"] for d in documents[::3]]
    live.delete(doomed)
    live.commit()
    survivors = [d for d in documents if d["id"] not in set(doomed)]
    reference = Bm25([d["id"] for d in survivors], [f"{d['title']} {d['text']}".strip() for d in survivors])
    engine = Engine(live)
    for question in queries(30):
        ids, scores = reference.search(question, 50)
        keep = scores > 0
        got = engine.search(question, 50, "bm25")
        assert got.ids == [i for i, kept in zip(ids, keep) if kept]
        assert got.scores == scores[keep].astype(float).tolist()


def test_a_replace_with_the_same_text_is_not_encoded_again(encoders, monkeypatch):
    live = Index.build(encoders[0], documents=TINY_DOCS)
    calls = []
    original = encoders[0].encode_documents
    monkeypatch.setattr(encoders[0], "encode_documents", lambda texts, **kw: calls.append(texts) or original(texts,
                                                                                                               **kw))
    summary = live.upsert(documents=[TINY_DOCS[0], {**TINY_DOCS[1], "text": "fish oil and the heart"}])
    assert (summary.unchanged, summary.replaced) == (1, 1) and calls == [["Fish oil fish oil and the heart"]]
    assert live.commit().generation == 2
    assert live.upsert(documents=TINY_DOCS[:1]).unchanged == 1 and live.commit().generation == 2  # nothing to write


def test_bad_writes_are_refused_and_lose_nothing(encoders):
    live = Index.build(encoders[0], documents=TINY_DOCS)
    with pytest.raises(InvalidInput, match="already in the index"):
        live.add(documents=TINY_DOCS[:1])
    with pytest.raises(InvalidInput, match="appears twice"):
        live.writer().add(iter([live_doc("x"), live_doc("x")]))
    with pytest.raises(InvalidInput, match="has no text"):
        live.add(ids=["blank"], texts=["   "])
    live.rollback()
    summary = live.delete(["nope", "d1"])
    assert summary.unknown == ["nope"] and summary.deleted == 1
    live.commit()
    assert sorted(live.ids()) == ["d2", "d3", "d4", "d5"]


def live_doc(doc_id: str):
    from lsr.corpus import Document

    return Document(doc_id, "", "statin")


def test_one_writer_at_a_time(encoders, tmp_path):
    Index.build(encoders[0], documents=TINY_DOCS, path=tmp_path / "idx")
    first = IndexWriter(tmp_path / "idx")
    with pytest.raises(IndexLocked, match=r"another writer \(pid \d+\) holds .*write.lock"):
        IndexWriter(tmp_path / "idx")
    first.close()
    IndexWriter(tmp_path / "idx", wait=0.5).close()


def test_a_lock_that_was_not_acquired_never_releases_another(encoders, tmp_path):
    """A writer refused by IndexLocked closed its descriptor but kept its number; when collected, it unlocked and
    closed whatever lock had reused that number, and two writers could then publish at once."""
    import gc

    Index.build(encoders[0], documents=TINY_DOCS, path=tmp_path / "a")
    Index.build(encoders[0], documents=TINY_DOCS, path=tmp_path / "b")
    holder = IndexWriter(tmp_path / "a")
    refused = None
    try:
        IndexWriter(tmp_path / "a")
    except IndexLocked as exc:
        refused = exc
    assert refused is not None
    other = IndexWriter(tmp_path / "b")  # may reuse the refused lock's descriptor number
    del refused
    gc.collect()
    with pytest.raises(IndexLocked):
        IndexWriter(tmp_path / "b")
    other.close()
    holder.close()


def test_a_reader_keeps_its_generation_until_it_lets_go(encoders, tmp_path):
    """A pinned generation's segments stay on disk through writes and merges; they go once no reader holds them."""
    Index.build(encoders[0], documents=TINY_DOCS, path=tmp_path / "idx", store_documents=True)
    reader = Index.open(tmp_path / "idx")
    old = reader.snapshot()
    writer = Index.open(tmp_path / "idx")
    writer.add(ids=["n1"], texts=["green tea"])
    writer.commit()
    writer.merge(max_segments=1)
    assert (tmp_path / "idx" / "segments" / "seg-000001").is_dir()  # still pinned by the reader
    title, ids = old.document("d4")["title"], sorted(old.ids())
    assert title == "Salt" and ids == sorted(d["_id"] for d in TINY_DOCS)
    assert reader.refresh() and "n1" in reader.ids()
    del old
    import gc

    gc.collect()  # (the old snapshot is freed by reference counting; this only clears a test frame's leftovers)
    writer.collect_garbage()
    assert sorted(p.name for p in (tmp_path / "idx" / "segments").iterdir()) == ["seg-000003"]


def test_a_handle_behind_never_collects_what_a_newer_generation_holds(encoders, tmp_path):
    """A handle still at generation 1 collects garbage after another handle published generation 2: the segment
    only generation 2 references stays, and the index opens with it (the handle used to compare with its own
    snapshot and removed the newer segment)."""
    Index.build(encoders[0], documents=TINY_DOCS, path=tmp_path / "idx")
    behind = Index.open(tmp_path / "idx")
    ahead = Index.open(tmp_path / "idx")
    ahead.add(ids=["n1"], texts=["green tea"])
    ahead.commit()
    assert behind.generation == 1
    assert behind.collect_garbage() == []
    reopened = Index.open(tmp_path / "idx")
    assert reopened.generation == 2 and "n1" in reopened.ids()


FAULT_WRITER = """
import sys
from lsr.index.writer import IndexWriter
from lsr.index.merge import merge
directory, action = sys.argv[1], sys.argv[2]
with IndexWriter(directory) as writer:
    if action == "merge":
        merge(writer, max_segments=1)
    else:
        from lsr.corpus import Document
        writer.add([Document("late1", "", "statin women"), Document("late2", "", "fish oil")])
        writer.delete(["d1"])
        writer.commit()
print("acknowledged")
"""


@pytest.mark.parametrize("point", ["segment-written", "deletes-written", "generation-written", "published",
                                   "merge-segment-written"])
def test_a_writer_killed_at_any_point_leaves_an_index_that_opens(encoders, tmp_path, point):
    """SIGKILL (no cleanup) at each step of a commit or a merge: the index opens, what was acknowledged is there,
    and the interrupted write is either wholly absent or (killed after the commit point) wholly present; the next
    writer removes the leftovers and works."""
    sparse, _ = encoders
    index = Index.build(sparse, documents=TINY_DOCS, path=tmp_path / "idx", bm25=True, store_documents=True)
    index.add(ids=["early"], texts=["blood pressure salt"])
    assert index.commit().generation == 2  # acknowledged
    before = sorted(index.ids())
    env = {**os.environ, "LSR_FAULT": point}
    action = "merge" if point.startswith("merge") else "add"
    done = subprocess.run([sys.executable, "-c", FAULT_WRITER, str(tmp_path / "idx"), action], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == -9 and "acknowledged" not in done.stdout, done.stderr[-2000:]
    reopened = Engine.open(tmp_path / "idx", parts=("bm25", "documents"))
    ids = sorted(reopened.index.ids())
    if point == "published":  # killed after the commit point: the write is complete, just never acknowledged
        assert ids == sorted((set(before) - {"d1"}) | {"late1", "late2"})
    else:
        assert ids == before
    assert "early" in reopened.search("blood pressure salt", 10, "bm25").ids
    with IndexWriter(tmp_path / "idx") as writer:  # cleans up, then works
        writer.add([live_doc("after")])
        writer.commit()
    assert not [p for p in (tmp_path / "idx" / "segments").iterdir() if p.name.startswith(".tmp")]
    assert "after" in Index.open(tmp_path / "idx", load_encoder=False).ids()


def test_another_encoder_is_handed_a_window_of_chunks_at_a_time(encoders):
    """``encode_with`` (what `lsr index --ray` uses): the writer hands it ``window`` chunks at a time, in order, and
    the index equals a local build of the same chunks."""
    from lsr.index.manifest import Manifest
    from lsr.index.writer import encode_chunk

    sparse = encoders[0]
    documents = nfcorpus_documents(50)
    calls: list[int] = []

    def encoder_for(directory):
        manifest = Manifest.load(directory)

        def encode_chunks(chunks):
            calls.append(len(chunks))
            for chunk in chunks:
                yield encode_chunk(sparse, None, manifest, [d.contents for d in chunk], 8)

        encode_chunks.window = 2
        return encode_chunks

    elsewhere = Index.build(sparse, documents=documents, chunk_documents=10, batch_size=8, encode_with=encoder_for)
    here = Index.build(sparse, documents=documents, chunk_documents=10, batch_size=8)
    assert calls == [2, 2, 1]  # 5 chunks of 10 documents
    a, b = elsewhere.segments[0], here.segments[0]
    for name in ("term_windows", "doc_low", "impacts", "dense_rows"):
        assert np.array_equal(a.sparse[name], b.sparse[name]), name
    for name in ("ids", "hashes"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
