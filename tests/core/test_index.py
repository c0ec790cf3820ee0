"""The index: segments round-trip, atomic builds, refusals, exports, block metadata."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lsr import Index
from lsr.encoders import load_encoder
from lsr.errors import InvalidIndex, InvalidInput
from lsr.index import Manifest
from lsr.index.segment import quantize
from lsr.sparse import SparseBatch
from tests.conftest import TINY_DOCS, write_jsonl


def random_batch(rng, n_docs, vocab, max_nnz=12, low=0.01, high=5.0):
    rows = []
    for _ in range(n_docs):
        nnz = int(rng.integers(1, max_nnz))
        rows.append((np.sort(rng.choice(vocab, nnz, replace=False)), rng.uniform(low, high, nnz)))
    return SparseBatch.from_rows(rows)


def test_quantization_error_is_at_most_half_a_step():
    rng = np.random.default_rng(0)
    weights = rng.uniform(0, 7.3, 10_000).astype(np.float32)
    scale = 255 / weights.max()
    q, clipped = quantize(weights, scale, "uint8")
    assert q.dtype == np.uint8 and q.max() == 255 and clipped == 0
    assert np.abs(q / scale - weights).max() <= 0.5 / scale + 1e-6


def write_index(directory, batch, ids, dtype="uint8"):
    return Index.build(vectors=batch, ids=ids, vocab_size=50, path=directory, impact_dtype=dtype,
                       chunk_documents=max(1, len(ids) // 2))


def memory_mapped(array: np.ndarray) -> bool:
    """True when the array's memory is a file mapping (a plain ndarray over np.load's memmap counts)."""
    import mmap

    base = array
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None) if isinstance(base, np.ndarray) else getattr(base, "_mmap", None)
    return isinstance(base, mmap.mmap)


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_postings_round_trip(tmp_path, dtype):
    rng = np.random.default_rng(1)
    batch = random_batch(rng, 40, 50)
    ids = [f"doc{i}" for i in range(40)]
    manifest = write_index(tmp_path / "idx", batch, ids, dtype).manifest
    index = Index.open(tmp_path / "idx")
    assert index.doc_count == 40 and manifest.impact_dtype == dtype and index.encoder is None
    assert index.generation == 1 and (tmp_path / "idx" / "CURRENT").read_text().strip() == "gen-000001.json"
    segment = index.segments[0]
    assert memory_mapped(segment.sparse["doc_low"]) and memory_mapped(segment.impacts)
    postings = segment.postings()  # per term, increasing rows
    dense = np.zeros((40, 50))
    for term in range(50):
        start, end = postings.indptr[term], postings.indptr[term + 1]
        docs = postings.indices[start:end]
        assert (np.diff(docs.astype(np.int64)) > 0).all(), "doc ids increase within a posting list"
        dense[docs, term] = postings.data[start:end] / manifest.scale
    expected = batch.to_scipy(50).toarray()
    step = 0.5 / manifest.scale if dtype == "uint8" else 1e-6
    assert np.abs(dense - expected).max() <= step + 1e-6
    assert list(index.ids()) == ids and index.snapshot().find("doc7")[1] == 7 and index.snapshot().find("x") is None
    assert segment.info.postings + segment.info.dropped_postings == batch.nnz
    np.testing.assert_allclose(segment.row_vectors().to_scipy(50).toarray() / manifest.scale, dense, atol=1e-6)


def test_in_memory_index_saves_what_it_holds(tmp_path, monkeypatch):
    import tempfile

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    batch = random_batch(np.random.default_rng(11), 30, 50)
    ids = [f"d{i}" for i in range(30)]
    in_memory = Index.build(vectors=batch, ids=ids, vocab_size=50)
    assert in_memory.in_memory and in_memory.directory.parent == scratch
    in_memory.save(tmp_path / "saved")
    reopened = Index.open(tmp_path / "saved")
    for a, b in zip(in_memory.segments[0].kernel_arrays(), reopened.segments[0].kernel_arrays()):
        np.testing.assert_array_equal(a, b)
    assert list(reopened.ids()) == ids
    del in_memory
    import gc

    gc.collect()
    assert not any(scratch.iterdir()), "an in-memory index's scratch folder goes with it"


def test_failed_build_keeps_previous_index(tmp_path, tiny_mlm_dir, tiny_idf_file):
    rng = np.random.default_rng(2)
    batch = random_batch(rng, 10, 50)
    write_index(tmp_path / "idx", batch, [f"d{i}" for i in range(10)])
    before = {p.name: p.read_bytes() for p in (tmp_path / "idx").rglob("*") if p.is_file()}

    def interrupted():
        yield {"id": "new0", "text": "statin"}
        raise KeyboardInterrupt  # an interrupt in the middle of a build

    encoder = load_encoder(tiny_mlm_dir, kind="inference-free", idf=tiny_idf_file, device="cpu")
    with pytest.raises(KeyboardInterrupt):
        Index.build(encoder, documents=interrupted(), path=tmp_path / "idx")
    after = {p.name: p.read_bytes() for p in (tmp_path / "idx").rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"], "no temporary directory left behind"


def test_bad_vectors_are_refused_before_anything_is_written(tmp_path):
    bad = SparseBatch.from_rows([(np.array([3]), np.array([np.nan], dtype=np.float32))])
    with pytest.raises(InvalidInput, match="not a finite"):
        write_index(tmp_path / "idx", bad, ["x"])
    assert not any(tmp_path.iterdir())
    with pytest.raises(InvalidInput, match="outside the vocabulary"):
        write_index(tmp_path / "idx", SparseBatch.from_rows([(np.array([60]), np.array([1.0]))]), ["x"])
    with pytest.raises(InvalidInput, match="strictly increasing"):
        write_index(tmp_path / "idx", SparseBatch.from_rows([(np.array([5, 5]), np.array([1.0, 2.0]))]), ["x"])
    with pytest.raises(InvalidInput, match="unique"):
        write_index(tmp_path / "idx", random_batch(np.random.default_rng(0), 2, 50), ["x", "x"])
    assert not any(tmp_path.iterdir())


def test_manifest_version_and_missing_index_are_explained(tmp_path):
    with pytest.raises(InvalidIndex, match="not an lsr index"):
        Index.open(tmp_path)
    write_index(tmp_path / "idx", random_batch(np.random.default_rng(3), 4, 50), ["a", "b", "c", "d"])
    data = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    data["format_version"] = 99
    (tmp_path / "idx" / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(InvalidIndex, match="rebuild the index"):
        Manifest.load(tmp_path / "idx")
    data["format_version"] = 1  # an lsr 0.1 index
    (tmp_path / "idx" / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(InvalidIndex, match="format version 1, this lsr reads versions 2, 3, 4; rebuild"):
        Index.open(tmp_path / "idx")


def test_build_index_end_to_end_with_export(tmp_path, tiny_mlm_dir, tiny_idf_file):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", TINY_DOCS)
    encoder = load_encoder(tiny_mlm_dir, kind="inference-free", idf=tiny_idf_file, device="cpu")
    manifest = Index.build(encoder, corpus=corpus, path=tmp_path / "idx", batch_size=2, chunk_documents=3,
                           export_jsonl=tmp_path / "vectors.jsonl", store_documents=True).manifest
    assert manifest.build["summary"]["documents"] == 5 and manifest.encoder["identity"] == encoder.identity()
    assert manifest.search_defaults == {"mode": "sparse"}
    assert (tmp_path / "idx" / "encoder" / "lsr_encoder.json").exists()
    records = [json.loads(line) for line in (tmp_path / "vectors.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == [d["_id"] for d in TINY_DOCS]
    assert records[1]["contents"] == "Fish oil fish oil and heart disease risk"
    vector = records[0]["vector"]
    assert vector and all(isinstance(v, int) and 1 <= v <= 255 for v in vector.values())
    ids, weights = encoder.encode_documents([TINY_DOCS[0]["title"] + " " + TINY_DOCS[0]["text"]]).row(0)
    tokens = encoder.tokenizer.convert_ids_to_tokens(ids.tolist())
    scale = manifest.scale
    expected = {t: int(np.rint(w * scale)) for t, w in zip(tokens, weights) if np.rint(w * scale) > 0}
    assert vector == expected


def test_build_index_malformed_corpus_keeps_old_index(tmp_path, tiny_mlm_dir, tiny_idf_file):
    encoder = load_encoder(tiny_mlm_dir, kind="inference-free", idf=tiny_idf_file, device="cpu")
    good = write_jsonl(tmp_path / "good.jsonl", TINY_DOCS)
    Index.build(encoder, corpus=good, path=tmp_path / "idx")
    bad = write_jsonl(tmp_path / "bad.jsonl", [*TINY_DOCS[:3], "{broken"])
    with pytest.raises(InvalidInput, match="bad.jsonl:4"):
        Index.build(encoder, corpus=bad, path=tmp_path / "idx", chunk_documents=2)
    assert Index.open(tmp_path / "idx", load_encoder=False).doc_count == 5
    index = Index.build(encoder, corpus=bad, path=tmp_path / "idx", skip_malformed=True)
    assert index.doc_count == 3 and index.read_stats.skipped == 1


def test_out_that_is_not_an_index_is_never_replaced(tmp_path):
    precious = tmp_path / "indexes"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(InvalidIndex, match="is not an lsr index; refusing"):
        write_index(precious, random_batch(np.random.default_rng(4), 4, 50), ["a", "b", "c", "d"])
    assert (precious / "notes.txt").read_text() == "keep me"


def test_export_needs_integer_impacts(tmp_path, tiny_mlm_dir, tiny_idf_file):
    encoder = load_encoder(tiny_mlm_dir, kind="inference-free", idf=tiny_idf_file, device="cpu")
    with pytest.raises(InvalidInput, match="--impact-dtype uint8"):
        Index.build(encoder, documents=TINY_DOCS, path=tmp_path / "idx", impact_dtype="float32",
                    export_jsonl=tmp_path / "v.jsonl")
    assert not (tmp_path / "idx").exists() and not (tmp_path / "v.jsonl").exists()


def test_an_index_in_lsr_0_2_layout_opens_searches_the_same_and_is_upgraded_by_its_next_write(tmp_path):
    """A format 2 index (classic CSR postings: offsets, uint32 doc_ids, impacts, blocks/; here with a block size this
    layout cannot take, 10, which lsr 0.2 accepted) opens with its segments read into the compact layout in memory;
    an add writes the new segment in the compact layout, moves the manifest to format 3, and both segments are still
    searched in one kernel call; a merge rewrites the old segment; every step answers the exhaustive top-k."""
    import shutil

    from lsr.index.manifest import INDEX_FORMAT_VERSION
    from lsr.index.segment import SPARSE_ARRAYS
    from lsr.retrievers.native import NativeRetriever, Pruning

    rng = np.random.default_rng(3)
    batch = random_batch(rng, 200, 40)
    write_index(tmp_path / "idx", batch, [f"d{i}" for i in range(200)])
    segment = Index.open(tmp_path / "idx").segments[0]
    assert not (segment.directory / "doc_ids.npy").exists()

    old = tmp_path / "old"  # the same segment written as lsr 0.2 wrote it
    shutil.copytree(tmp_path / "idx", old)
    folder = old / "segments" / segment.name
    postings = segment.postings()
    for name in SPARSE_ARRAYS:
        (folder / f"{name}.npy").unlink()
    np.save(folder / "offsets.npy", postings.indptr.astype(np.int64))
    np.save(folder / "doc_ids.npy", postings.indices.astype(np.uint32))
    np.save(folder / "impacts.npy", postings.data.astype(np.uint8))
    (folder / "blocks").mkdir()
    info = json.loads((folder / "info.json").read_text())
    info["block_size"] = 10
    for key in ("bound_ratio", "checksums", "crc32"):  # (lsr 0.2 wrote none of them)
        del info[key]
    (folder / "info.json").write_text(json.dumps(info))
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["format_version"] = 2
    manifest["build"]["block_size"] = 10
    del manifest["build"]["bound_ratio"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    queries = batch.take(np.arange(0, 200, 20))

    def answers(handle, pruning=None):
        return [(a.ids, a.scores) for a in NativeRetriever(handle.snapshot(), pruning).retrieve(queries, 5)]

    reopened = Index.open(old)
    assert reopened.segments[0].legacy and reopened.segments[0].block_size == 4
    assert answers(reopened) == answers(reopened, Pruning("exhaustive")) == answers(Index.open(tmp_path / "idx"))

    reopened.writer().add_vectors(random_batch(rng, 10, 40), [f"n{i}" for i in range(10)])
    reopened.commit()
    assert json.loads((old / "manifest.json").read_text())["format_version"] == INDEX_FORMAT_VERSION
    newest = reopened.segments[-1].directory
    assert (newest / "doc_low.npy").exists() and not (newest / "doc_ids.npy").exists()
    assert NativeRetriever(reopened.snapshot())._together is not None, "old and new segments share one kernel call"
    assert answers(reopened) == answers(reopened, Pruning("exhaustive"))
    reopened.save(tmp_path / "copy")
    assert json.loads((tmp_path / "copy" / "manifest.json").read_text())["format_version"] == INDEX_FORMAT_VERSION

    reopened.merge(max_segments=1)
    merged = Index.open(old)
    assert len(merged.segments) == 1 and not merged.segments[0].legacy
    assert answers(merged) == answers(merged, Pruning("exhaustive")) == answers(reopened)


def test_a_damaged_segment_is_refused_before_a_kernel_reads_it(tmp_path, monkeypatch):
    """The kernels check no bounds, so a segment whose arrays do not fit together (here a truncated doc_low) is
    refused at open with the fix, not read past its end."""
    write_index(tmp_path / "idx", random_batch(np.random.default_rng(5), 50, 50), [f"d{i}" for i in range(50)])
    folder = next((tmp_path / "idx" / "segments").iterdir())
    doc_low = np.load(folder / "doc_low.npy")
    np.save(folder / "doc_low.npy", doc_low[:-3])
    import gc

    gc.collect()  # (the process keeps a segment open while any handle holds it)
    with pytest.raises(InvalidIndex, match="doc_low.npy: checksum .* is not served"):  # the checksum sees it first
        Index.open(tmp_path / "idx")
    monkeypatch.setenv("LSR_VERIFY_CHECKSUMS", "off")  # and without checksums, the layout check still refuses it
    with pytest.raises(InvalidIndex, match="do not match each other.*rebuild the index"):
        Index.open(tmp_path / "idx")


def test_an_index_opened_without_its_encoder_saves_it_too(tmp_path, tiny_mlm_dir, tiny_idf_file):
    encoder = load_encoder(tiny_mlm_dir, kind="inference-free", idf=tiny_idf_file, device="cpu")
    Index.build(encoder, documents=TINY_DOCS, path=tmp_path / "idx")
    Index.open(tmp_path / "idx", load_encoder=False).save(tmp_path / "copy")
    copy = Index.open(tmp_path / "copy")
    assert copy.encoder.identity() == encoder.identity() and copy.doc_count == len(TINY_DOCS)


def test_an_in_memory_index_refuses_a_lucene_part_before_encoding(tiny_mlm_dir, tiny_idf_file):
    class Untouchable:
        vocab_size = 50

        def encode_documents(self, *args, **kwargs):
            raise AssertionError("encoded before refusing")

    with pytest.raises(InvalidInput, match="Lucene part lives on disk"):
        Index.build(Untouchable(), documents=TINY_DOCS, lucene=True)
