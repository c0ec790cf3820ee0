"""``lsr index check``: Lucene's CheckIndex for lsr. Reads every file of the published generation and says what is
wrong, by file; :func:`repair` (only when asked) goes back to the newest generation whose files are intact, or drops
the damaged segments, naming the documents lost.

What is verified, per segment of the generation ``CURRENT`` names:

- ``info.json`` and the generation file read, with their own checksums;
- every file's CRC32 against the one ``info.json`` recorded when the segment was written, and each deletes file's
  against its generation's;
- the sparse layout: the arrays fit together (the kernels check no bounds), postings are in increasing row order
  within each term and window and below the row count, ``skips`` is every 64th posting, the term ids in range, and
  every block maximum at least the impacts it bounds;
- live counts: each deletes file has one flag a document and as many set as its entry says, and the generation's
  live count is the sum;
- the per-document parts against the document count: ids (unique), hashes, stored texts, dense rows, BM25
  lengths, metadata columns.

Backends that keep a copy (the Milvus collection) are checked by the caller (``lsr index check`` asks each commit
listener's backend), so this package imports no backend.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numba
import numpy as np

from lsr.errors import InvalidIndex, LsrError
from lsr.index import files, storage
from lsr.index.manifest import MANIFEST_FILE, SegmentInfo
from lsr.index.segment import SKIP_BITS, WINDOW_BITS, _check_layout, checksum_problems, effective_block_size


@dataclass
class CheckReport:
    index: str
    generation: int | None = None
    segments: int = 0
    documents: int = 0
    postings: int = 0
    bytes_verified: int = 0
    problems: list[str] = field(default_factory=list)  # "where: what"
    damaged_segments: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)  # what backends reported

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def check_index(directory: str | Path, listeners: bool = True,
                listener_options: dict[str, dict] | None = None) -> CheckReport:
    """Verify the published generation of ``directory`` (read-only; takes no lock, pins the generation).
    ``listeners``: also ask each commit listener that keeps a copy (a Milvus collection) whether it matches."""
    directory = Path(directory)
    report = CheckReport(str(directory))
    try:
        json.loads((directory / MANIFEST_FILE).read_text())
    except (OSError, ValueError) as exc:
        report.problems.append(f"{MANIFEST_FILE}: cannot be read ({exc})")
    try:
        path = storage.current_generation_file(directory)
        generation = storage.Generation.read(path)
    except InvalidIndex as exc:
        report.problems.append(f"{storage.CURRENT_FILE}: {exc}")
        return report
    pin = storage.Pin(path)
    try:
        report.generation = generation.number
        report.segments = len(generation.segments)
        live = 0
        for entry in generation.segments:
            problems, documents, checked = _check_segment(directory / storage.SEGMENTS / entry.name, entry)
            report.bytes_verified += checked
            if problems:
                report.damaged_segments.append(entry.name)
                report.problems += [f"{storage.SEGMENTS}/{entry.name}/{p}" for p in problems]
                continue
            live += documents - entry.deleted
            report.postings += SegmentInfo.load(directory / storage.SEGMENTS / entry.name).postings
        report.documents = live
        if not report.damaged_segments and live != generation.documents:
            report.problems.append(f"{storage.GENERATIONS}/{generation.name}: {generation.documents} live documents "
                                   f"recorded, the segments hold {live}")
        if listeners and not report.damaged_segments:
            _check_listeners(directory, report, generation, listener_options or {})
    finally:
        pin.release()
    return report


def _check_listeners(directory: Path, report: CheckReport, generation: storage.Generation,
                     options: dict[str, dict]) -> None:
    from lsr.index.listeners import listener_factory, listener_names
    from lsr.index.manifest import Manifest

    manifest = Manifest.load(directory)
    for name in listener_names():
        factory = listener_factory(name)
        if not hasattr(factory, "check"):
            continue
        found = factory.check(directory, manifest, generation.number, generation.documents, **options.get(name, {}))
        if found is not None:
            report.extra[name] = found
            report.problems += [f"{name}: {p}" for p in found.get("problems", [])]


def _check_segment(folder: Path, entry: storage.SegmentEntry) -> tuple[list[str], int, int]:
    """(problems, documents, bytes checksummed) of one segment."""
    if not folder.is_dir():
        return ["the folder is missing"], 0, 0
    try:
        info = SegmentInfo.load(folder)
    except InvalidIndex as exc:
        return [f"info.json: {exc}"], 0, 0
    problems = checksum_problems(folder, info)
    checked = sum((folder / name).stat().st_size for name in (info.checksums or {}) if (folder / name).exists())
    if entry.deletes:
        path = folder / entry.deletes
        try:
            data = path.read_bytes()
        except OSError as exc:
            problems.append(f"{entry.deletes}: cannot be read ({exc.strerror or exc})")
            data = None
        if data is not None:
            import zlib

            if entry.deletes_crc32 is not None and zlib.crc32(data) != entry.deletes_crc32:
                problems.append(f"{entry.deletes}: checksum {zlib.crc32(data):#010x}, the generation recorded "
                                f"{entry.deletes_crc32:#010x}")
            else:
                flags = np.load(path, allow_pickle=False)
                if len(flags) != info.documents or int(np.count_nonzero(flags)) != entry.deleted:
                    problems.append(f"{entry.deletes}: {int(np.count_nonzero(flags))} of {len(flags)} flags set, the "
                                    f"generation records {entry.deleted} of {info.documents}")
    if problems:  # structure is not read from damaged bytes
        return problems, info.documents, checked
    try:
        deleted = np.load(folder / entry.deletes, allow_pickle=False).astype(bool) if entry.deletes else None
        problems += _check_structure(folder, info, deleted)
    except (OSError, ValueError, KeyError, LsrError) as exc:
        problems.append(f"cannot be read: {exc}")
    return problems, info.documents, checked


def _load(folder: Path, name: str) -> np.ndarray:
    return np.asarray(np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False))


def _check_structure(folder: Path, info: SegmentInfo, deleted: np.ndarray | None = None) -> list[str]:
    problems = []
    n, rows = info.documents, info.rows
    if (folder / "doc_ids.npy").exists():  # lsr 0.2's layout: converted at open, checked there
        return problems
    names = ("term_windows", "doc_low", "skips", "impacts", "dense_terms", "dense_rows", "max_terms", "max_rows")
    sparse = {name: _load(folder, name) for name in names}
    block_size = effective_block_size(info.block_size)
    try:
        _check_layout(folder, sparse, rows, block_size)
    except InvalidIndex:
        return [f"the sparse arrays do not fit together ({rows} rows, blocks of {block_size})"]
    vocab = len(sparse["term_windows"])
    for name in ("dense_terms", "max_terms"):
        terms = sparse[name]
        if len(terms) and (terms.min() < 0 or terms.max() >= vocab or len(np.unique(terms)) != len(terms)):
            problems.append(f"{name}.npy: term ids out of range or repeated")
    if problems:
        return problems
    if not np.array_equal(sparse["skips"], sparse["doc_low"][:: 1 << SKIP_BITS]):
        problems.append("skips.npy: not every 64th entry of doc_low")
    if len(sparse["max_terms"]) and not np.array_equal(sparse["max_terms"][: len(sparse["dense_terms"])],
                                                       sparse["dense_terms"]):
        problems.append("max_terms.npy: does not start with the dense terms")
    if problems:
        return problems
    max_slot = np.full(vocab, -1, dtype=np.int32)
    max_slot[sparse["max_terms"]] = np.arange(len(sparse["max_terms"]), dtype=np.int32)
    dense_slot = np.full(vocab, -1, dtype=np.int32)
    dense_slot[sparse["dense_terms"]] = np.arange(len(sparse["dense_terms"]), dtype=np.int32)
    code = _check_postings(sparse["term_windows"], sparse["doc_low"], sparse["impacts"], max_slot, dense_slot,
                           sparse["max_rows"], rows, block_size)
    if code:
        kind, term = code // (1 << 32), code % (1 << 32)
        problems.append({1: "term_windows.npy: windows out of order", 2: "doc_low.npy: postings out of row order",
                         3: "doc_low.npy: a row number beyond the segment's rows",
                         4: "max_rows.npy: a block maximum below an impact it bounds",
                         5: "postings.npy: a dense term holds postings"}[kind] + f" (term {term})")
    dense_rows, max_rows = sparse["dense_rows"], sparse["max_rows"]
    if len(dense_rows):
        blocks = np.asarray(dense_rows).reshape(len(dense_rows), -1, block_size).max(axis=2)
        if (np.asarray(max_rows[: len(dense_rows)]) < blocks).any():
            problems.append("max_rows.npy: a dense term's block maximum below its impacts")
        if rows < dense_rows.shape[1] and np.asarray(dense_rows[:, rows:]).any():
            problems.append("dense_rows.npy: impacts in the padding beyond the last row")
    problems += _check_documents(folder, info, n, rows, deleted)
    return problems


@numba.njit(cache=True)
def _check_postings(term_windows, doc_low, impacts, max_slot, dense_slot, max_rows, rows,
                    block_size):  # pragma: no cover - numba
    """0, or kind * 2**32 + term of the first problem (see :func:`_check_structure`)."""
    vocab, width = term_windows.shape
    previous_end = 0
    for t in range(vocab):
        if term_windows[t, 0] != previous_end:
            return 1 * (1 << 32) + t
        for w in range(width - 1):
            start, end = term_windows[t, w], term_windows[t, w + 1]
            if end < start:
                return 1 * (1 << 32) + t
            if end > start and dense_slot[t] >= 0:
                return 5 * (1 << 32) + t
            last = -1
            for p in range(start, end):
                low = np.int64(doc_low[p])
                if low <= last:
                    return 2 * (1 << 32) + t
                last = low
                row = (np.int64(w) << 16) + low
                if row >= rows:
                    return 3 * (1 << 32) + t
                slot = max_slot[t]
                if slot >= 0 and max_rows[slot, row // block_size] < impacts[p]:
                    return 4 * (1 << 32) + t
        previous_end = term_windows[t, width - 1]
    return 0


assert WINDOW_BITS == 16  # (the kernel above shifts by 16)


def _check_documents(folder: Path, info: SegmentInfo, n: int, rows: int, deleted: np.ndarray | None) -> list[str]:
    problems = []

    def length(name: str, expected: int, array: np.ndarray | None = None) -> None:
        array = _load(folder, name) if array is None else array
        if len(array) != expected:
            problems.append(f"{name}.npy: {len(array)} entries for {expected}")

    ids = _load(folder, "ids")
    length("ids", n, ids)
    live_ids = ids if deleted is None or len(deleted) != len(ids) else ids[~deleted]
    if len(np.unique(live_ids)) != len(live_ids):  # (a document replaced before its commit: the older copy is deleted)
        problems.append("ids.npy: a live id appears twice in one segment")
    length("hashes", n)
    if (folder / "row_doc.npy").exists():
        row_doc = _load(folder, "row_doc")
        length("row_doc", rows, row_doc)
        if len(row_doc) and (row_doc.min() < 0 or row_doc.max() >= n or (np.diff(row_doc) < 0).any()):
            problems.append("row_doc.npy: rows point outside the documents, or out of order")
    elif rows != n:
        problems.append(f"info.json: {rows} rows for {n} documents and no row_doc.npy")
    if (folder / "dense.npy").exists():
        dense = _load(folder, "dense")
        length("dense", n, dense)
        if not np.isfinite(dense).all():
            problems.append("dense.npy: NaN or Inf in an embedding")
    if (folder / "documents").is_dir():
        from lsr.index.documents import DocumentStore

        try:
            store = DocumentStore(folder / "documents")
            if len(store) != n:
                problems.append(f"documents/: {len(store)} stored texts for {n} documents")
            store.close()
        except InvalidIndex as exc:
            problems.append(f"documents/: {exc}")
    if (folder / "lexical").is_dir():
        lengths = np.load(folder / "lexical" / "lengths.npy", mmap_mode="r")
        if len(lengths) != n:
            problems.append(f"lexical/lengths.npy: {len(lengths)} documents for {n}")
    problems += _check_metadata(folder, n)
    return problems


def _check_metadata(folder: Path, n: int) -> list[str]:
    from lsr.index.metadata import FIELDS_FILE, METADATA_DIR

    meta = folder / METADATA_DIR
    if not (meta / FIELDS_FILE).exists():
        return []
    problems = []
    fields = json.loads((meta / FIELDS_FILE).read_text())["fields"]
    for name, kind in fields.items():
        def load(part: str, name: str = name) -> np.ndarray:
            return np.asarray(np.load(meta / f"{name}.{part}.npy", mmap_mode="r", allow_pickle=False))

        where = f"{METADATA_DIR}/{name}"
        if kind == "keyword":
            codes, dictionary = load("codes"), load("dict")
            if len(codes) != n or (len(codes) and codes.max() >= len(dictionary)):
                problems.append(f"{where}: {len(codes)} codes for {n} documents, or a code beyond the dictionary")
        elif kind == "keywords":
            codes, dictionary, offsets = load("codes"), load("dict"), load("offsets")
            if len(offsets) != n + 1 or int(offsets[-1]) != len(codes) or (len(codes) and codes.max() >= len(dictionary)):
                problems.append(f"{where}: offsets do not fit {n} documents and {len(codes)} codes")
        elif len(load("values")) != n or len(load("present")) != n:
            problems.append(f"{where}: values or presence not one a document ({n})")
    return problems


# -- repair -------------------------------------------------------------------------------------------------------------
@dataclass
class Repair:
    action: str  # "none", "rolled back", "dropped segments"
    generation_before: int | None
    generation_after: int | None
    documents_lost: int = 0
    ids_lost: list[str] = field(default_factory=list)


def repair(directory: str | Path, wait: float = 0.0) -> Repair:
    """Make the index openable again, under the write lock. The newest generation whose files all check clean
    becomes current when there is one older than a damaged current one (nothing committed after it survives);
    otherwise a new generation leaves the damaged segments out, and the documents they held are lost (returned)."""
    directory = Path(directory)
    lock = storage.WriteLock(directory, wait=wait)
    try:
        report = check_index(directory, listeners=False)  # (a mirror behind is not damage: its next write fixes it)
        if report.generation is not None and not report.damaged_segments:
            return Repair("none", report.generation, report.generation)
        storage.remove_leftovers(directory)
        candidates = sorted(((int(p.stem.split("-")[1]), p) for p in (directory / storage.GENERATIONS).glob("gen-*.json")),
                            reverse=True)
        current = report.generation
        for number, path in candidates:
            if current is not None and number >= current:
                continue
            try:
                generation = storage.Generation.read(path)
            except InvalidIndex:
                continue
            if all(not _check_segment(directory / storage.SEGMENTS / e.name, e)[0] for e in generation.segments):
                files.write_durably(directory / storage.CURRENT_FILE, (generation.name + "\n").encode())
                return Repair("rolled back", current, number)
        if current is None:
            raise InvalidIndex(f"{directory}: no generation can be read; the index cannot be repaired: rebuild it")
        generation = storage.Generation.read(storage.current_generation_file(directory))
        kept, lost_ids = [], []
        for entry in generation.segments:
            if entry.name in report.damaged_segments:
                folder = directory / storage.SEGMENTS / entry.name
                try:
                    ids = np.load(folder / "ids.npy", allow_pickle=False)
                    dead = np.load(folder / entry.deletes, allow_pickle=False).astype(bool) if entry.deletes else None
                    lost_ids += [str(i) for k, i in enumerate(ids) if dead is None or not dead[k]]
                except (OSError, ValueError, IndexError):
                    pass  # (the ids themselves are damaged: the count says how many were lost)
            else:
                kept.append(entry)
        live = sum(SegmentInfo.load(directory / storage.SEGMENTS / e.name).documents - e.deleted for e in kept)
        fixed = storage.Generation(generation.number + 1, kept, generation.next_segment, live,
                                   f"repair: dropped {', '.join(report.damaged_segments)}")
        storage.publish(directory, fixed)
        return Repair("dropped segments", generation.number, fixed.number, generation.documents - live, lost_ids)
    finally:
        lock.release()
