"""Storage under injected faults (tests/faults.py): every file operation of an add + commit, a delete + commit and a
merge made to fail with EIO and with ENOSPC, and a simulated crash at each one that damages every file not fsynced.
After each: a clear error, the index opens at the right generation with exactly its documents, `lsr index check`
passes, the next write succeeds and leaves no temporary file. Then checksums and `lsr index check` on damage made
on purpose."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lsr import Engine, Index
from lsr.corpus import Document
from lsr.errors import DiskFull, InvalidIndex, StorageError
from lsr.index.check import check_index, repair
from lsr.sparse import SparseBatch
from tests.faults import FaultyDisk, SimulatedCrash, faulty, leftovers

VOCAB = 64


def vectors(n: int, seed: int) -> SparseBatch:
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        terms = np.sort(rng.choice(VOCAB, size=int(rng.integers(2, 9)), replace=False)).astype(np.int32)
        rows.append((terms, rng.uniform(0.1, 3.0, len(terms)).astype(np.float32)))
    return SparseBatch.from_rows(rows)


def documents(ids: list[str]) -> list[Document]:
    return [Document(i, f"title {i}", f"text of {i} about fish oil", {"n": int(i[1:]), "lang": "en" if int(i[1:]) % 2
                                                                         else "de"}) for i in ids]


def add(index: Index, ids: list[str], seed: int):
    """Add ``ids``, replacing those already live (deleted and added again in the same commit)."""
    index.delete(ids)
    index.writer().add_vectors(vectors(len(ids), seed), ids, documents(ids))
    return index.commit()


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> tuple[Path, set[str]]:
    """Two segments (so a merge has work), one deleted document, BM25, stored texts and metadata."""
    path = tmp_path_factory.mktemp("faults") / "idx"
    ids = [f"d{i}" for i in range(40)]
    Index.build(vectors=vectors(40, 0), ids=ids, documents=documents(ids), vocab_size=VOCAB, path=path, bm25=True,
                store_documents=True)
    index = Index.open(path, load_encoder=False)
    add(index, [f"d{i}" for i in range(40, 60)], 1)
    index.delete(["d3"])
    index.commit()
    index.close()
    return path, {f"d{i}" for i in range(60)} - {"d3"}


NEW = [f"d{i}" for i in range(60, 75)] + ["d7"]  # new documents and a replace


OPERATIONS = {
    "add": (lambda index: add(index, NEW, 2), lambda live: live | set(NEW)),
    "delete": (lambda index: (index.delete(["d1", "d42", "d59"]), index.commit()),
               lambda live: live - {"d1", "d42", "d59"}),
    "merge": (lambda index: index.merge(max_segments=1), lambda live: live),
}


def copy(base: Path, tmp_path: Path) -> Path:
    target = tmp_path / "idx"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(base, target)
    return target


def count_operations(path: Path, operation) -> tuple[int, list, int, int]:
    """(file operations of ``operation``, their log, the number of the commit point among them, the generation
    before), from a dry run on ``path``."""
    generation = Index.open(path, load_encoder=False, parts=()).generation
    with faulty(FaultyDisk(under=path)) as disk:
        index = Index.open(path, load_encoder=False)
        operation(index)
        index.close()
    commit_point = next(n for n, (op, _, target) in enumerate(disk.log, 1)
                        if op == "rename" and target is not None and target.name == "CURRENT")
    return disk.calls, disk.log, commit_point, generation


def die(index: Index) -> None:
    """What the kernel does for a process that died: its locks go (no clean-up of files runs)."""
    writer = index._writer
    if writer is not None:
        writer.lock.release()
        index._writer = None


def assert_at(path: Path, generation: int, live: set[str]) -> None:
    """The index opens at ``generation`` with exactly ``live``, searches, and `lsr index check` passes."""
    index = Index.open(path, load_encoder=False)
    try:
        assert index.generation == generation
        assert set(index.ids()) == live
        hits = Engine(index).search_vectors(vectors(1, 9), k=5)
        assert set(hits[0].ids) <= live
    finally:
        index.close()
    report = check_index(path)
    assert report.ok, report.problems


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_every_file_operation_can_fail_and_nothing_is_lost(base, tmp_path, name):
    base_path, live = base
    operation, expected = OPERATIONS[name]
    total, log, commit_point, generation = count_operations(copy(base_path, tmp_path), operation)
    assert total > 10 and {op for op, *_ in log} >= {"write", "fsync", "rename", "mkdir"}
    outcomes = {"before the commit point": 0, "after it": 0}
    for n in range(1, total + 1):
        error = errno.ENOSPC if n % 2 else errno.EIO
        path = copy(base_path, tmp_path)
        index = Index.open(path, load_encoder=False)
        raised = None
        with faulty(FaultyDisk(fail_at=n, error=error, under=path)):
            try:
                operation(index)
            except StorageError as exc:
                raised = exc
        index.close()
        committed = n > commit_point
        outcomes["after it" if committed else "before the commit point"] += 1
        if committed:  # the commit stands; a failure that only left garbage behind is not the caller's error
            assert raised is None or "is committed as generation" in str(raised), (n, log[n - 1], raised)
        else:
            assert raised is not None, (n, log[n - 1])
            assert isinstance(raised, DiskFull) == (error == errno.ENOSPC), raised
            assert "nothing of it was published" in str(raised) and f"generation {generation}" in str(raised)
        assert_at(path, generation + committed, expected(live) if committed else live)
        index = Index.open(path, load_encoder=False)  # the fault is gone: the next write succeeds
        operation(index)
        index.close()
        again = Index.open(path, load_encoder=False, parts=()).generation  # (a delete or merge done once is a no-op)
        assert again == generation + 1 + committed or (committed and name != "add" and again == generation + 1)
        assert_at(path, again, expected(live))
        assert leftovers(path) == [], (n, log[n - 1])
    assert outcomes["before the commit point"] > 0 and outcomes["after it"] > 0


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_a_crash_at_every_file_operation_opens_at_a_durable_generation(base, tmp_path, name):
    base_path, live = base
    operation, expected = OPERATIONS[name]
    total, log, commit_point, generation = count_operations(copy(base_path, tmp_path), operation)
    damaged = 0
    for n in range(1, total + 1):
        path = copy(base_path, tmp_path)
        index = Index.open(path, load_encoder=False)
        disk = FaultyDisk(fail_at=n, crash=True, under=path)
        with faulty(disk):
            with pytest.raises(SimulatedCrash):
                operation(index)
        die(index)
        damaged += len(disk.damage(seed=n))
        committed = n > commit_point
        assert_at(path, generation + committed, expected(live) if committed else live)
        index = Index.open(path, load_encoder=False)
        operation(index)
        index.close()
        assert_at(path, Index.open(path, load_encoder=False, parts=()).generation, expected(live))
        assert leftovers(path) == [], (n, log[n - 1])
    assert damaged > 0  # the crashes did leave unsynced files behind, and they were damaged


def test_checksums_refuse_a_damaged_segment_and_check_names_the_file(base, tmp_path):
    path = copy(base[0], tmp_path)
    segment = sorted((path / "segments").glob("seg-*"))[0]
    target = segment / "doc_low.npy"  # a row number: the kernels check no bounds
    data = bytearray(target.read_bytes())
    data[-3] ^= 0x40
    target.write_bytes(bytes(data))
    with pytest.raises(InvalidIndex, match="doc_low.npy: checksum"):
        Index.open(path, load_encoder=False)
    report = check_index(path)
    assert not report.ok and report.damaged_segments == [segment.name]
    assert any("doc_low.npy" in p for p in report.problems)


def test_check_finds_what_checksums_cannot(base, tmp_path, monkeypatch):
    """Damage rewritten with a fresh checksum (a bug, not a disk): the structural checks still catch it."""
    from lsr.index import files
    from lsr.index.manifest import SegmentInfo

    path = copy(base[0], tmp_path)
    segment = sorted((path / "segments").glob("seg-*"))[0]
    doc_low = np.load(segment / "doc_low.npy")
    windows = np.load(segment / "term_windows.npy")
    term = int(np.flatnonzero(np.diff(windows[:, :2], axis=1)[:, 0] >= 2)[0])
    start = int(windows[term, 0])
    doc_low[start], doc_low[start + 1] = doc_low[start + 1], doc_low[start]  # out of row order
    np.save(segment / "doc_low.npy", doc_low)
    np.save(segment / "skips.npy", np.ascontiguousarray(doc_low[::64]))
    info = SegmentInfo.load(segment)
    info.save(segment)  # checksums recomputed over the bad bytes
    assert files.checksum(segment / "doc_low.npy") == info.checksums["doc_low.npy"]
    report = check_index(path)
    # (a posting moved out of order also lands in another block, whose maximum may no longer bound it: either is named)
    assert any("out of row order" in p or "block maximum below" in p for p in report.problems), report.problems
    assert report.damaged_segments == [segment.name] and not report.ok


def test_check_repair_drops_what_cannot_be_read_and_names_the_loss(base, tmp_path, capsys):
    from lsr.cli import main

    path = copy(base[0], tmp_path)
    assert main(["index", "check", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    segments = sorted((path / "segments").glob("seg-*"))
    (segments[-1] / "metadata" / "n.values.npy").write_bytes(b"\0" * 10)  # torn
    assert main(["index", "check", str(path)]) == 1
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["ok"] is False and "metadata/n.values.npy" in captured.err
    assert main(["index", "check", str(path), "--repair"]) == 0
    repaired = json.loads(capsys.readouterr().out)
    assert repaired["repair"]["action"] == "dropped segments" and repaired["after_repair"]["ok"] is True
    lost = set(repaired["repair"]["ids_lost"]) if repaired["repair"]["ids_lost_count"] <= 20 else None
    index = Index.open(path, load_encoder=False)
    assert index.doc_count == base_live_count(base) - repaired["repair"]["documents_lost"]
    if lost is not None:
        assert not lost & set(index.ids())
    index.close()
    assert repair(path).action == "none"


def base_live_count(base) -> int:
    return len(base[1])


def test_a_torn_generation_file_rolls_back_to_the_last_good_one(base, tmp_path):
    path = copy(base[0], tmp_path)
    index = Index.open(path, load_encoder=False)
    before = index.generation
    index.close()
    # keep the current generation's file as an older one would be kept by a reader's pin, then damage a newer one
    current = (path / "CURRENT").read_text().strip()
    newer = f"gen-{before + 1:06d}.json"
    data = json.loads((path / "generations" / current).read_text())
    data["number"] = before + 1
    (path / "generations" / newer).write_text(json.dumps(data)[:-20])  # torn
    (path / "CURRENT").write_text(newer + "\n")
    with pytest.raises(InvalidIndex, match="lsr index check"):
        Index.open(path, load_encoder=False)
    done = repair(path)
    assert (done.action, done.generation_after) == ("rolled back", before)
    assert Index.open(path, load_encoder=False).generation == before
