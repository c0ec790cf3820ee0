"""Segments: the immutable unit of an index. A segment holds a batch of documents and never changes; documents leave
it only through the deletes file of a later generation, and merges replace whole segments.

Layout of a segment folder (``segments/seg-NNNNNN/``); every array is a plain ``.npy``, memory-mapped at load::

    info.json           documents, rows, postings, the weights it saw, what quantization dropped or clipped
    term_windows.npy    int64 (vocab_size, windows + 1): rare term t's postings in rows [w * 65536, (w + 1) * 65536)
                        are [term_windows[t, w], term_windows[t, w + 1])
    doc_low.npy         uint16: each posting's row number modulo 65536, increasing within a term and window
    skips.npy           uint16: every 64th entry of doc_low (a search reads it first, then one group of 64)
    impacts.npy         each posting's impact: uint8 (q = round(w * scale), the index's one scale) or float32
    dense_terms.npy     int32: the terms in at least rows / dense_ratio rows, stored as rows instead of postings
    dense_rows.npy      (dense terms, rows padded to whole blocks): their impact in every row, 0 where absent
    max_terms.npy       int32: the dense terms, then the others in at least rows / bound_ratio rows
    max_rows.npy        (max terms, blocks): their largest impact in every block
    ids.npy             external document ids, by document
    hashes.npy          uint8 (documents, 16): blake2b of (title, text), so an unchanged replace is not re-encoded
    row_doc.npy         int32, by row: the document a row belongs to (only when long documents are chunked)
    chunks.npy          int32 (rows, 3): chunk number, start and end character of each row (only when chunked)
    dense.npy           float32 (documents, dim): dense embeddings (dense part); hnsw.index with --dense-index hnsw
    documents/          texts.jsonl + offsets.npy: the stored texts (--store-documents)
    metadata/           the documents' metadata as columns (:mod:`lsr.index.metadata`)
    lexical/            BM25 postings of the analyzed text (--bm25, :mod:`lsr.index.lexical`)
    del-GGGGGG.npy      uint8 (documents,): 1 = deleted, written by generation G (one file a generation that deleted
                        something here; the generation names the one that applies)

(:func:`compact_postings` explains the sparse side.) A segment written by lsr 0.2 (index format 2) holds classic
CSR postings instead (``offsets.npy``, uint32 ``doc_ids.npy``, ``impacts.npy`` and ``blocks/``); it is read into
this layout in memory when opened, and a merge rewrites it in this one.

Rows are what the sparse kernel scores: one a document, or one a chunk when ``--chunk-tokens`` splits long documents;
every other part is by document.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

from lsr.errors import InvalidIndex, InvalidInput
from lsr.index import files
from lsr.index.manifest import SegmentInfo
from lsr.index.metadata import SegmentMetadata
from lsr.sparse import SparseBatch

DEFAULT_BLOCK_SIZE = 4  # 1M synthetic: the fastest of 2, 4 and 8 (benchmarks/blockmax_profile.py, README)
DEFAULT_DENSE_RATIO = 8
DEFAULT_BOUND_RATIO = 16
SPARSE_ARRAYS = ("term_windows", "doc_low", "skips", "impacts", "dense_terms", "dense_rows", "max_terms", "max_rows")
WINDOW_BITS = 16  # postings store a row number as (window, low 16 bits): the window is implicit in the term's table
SKIP_BITS = 6  # skips.npy keeps every 64th doc_low
LEGACY_ARRAYS = ("offsets", "doc_ids", "impacts")  # lsr 0.2's CSR postings


class Segment:
    """An opened segment. Loaded once per process (:func:`open_segment`) and shared by every snapshot that lists it,
    so caches (the kernel's arrays, the id map) survive refreshes."""

    def __init__(self, directory: Path, mmap: bool = True) -> None:
        self.directory = directory
        self.name = directory.name
        self.info = SegmentInfo.load(directory)
        if verify_on_open():
            problems = checksum_problems(directory, self.info)
            if problems:
                raise InvalidIndex(f"{directory}: {'; '.join(problems[:3])}. The segment is damaged and is not "
                                   "served: `lsr index check` lists what else is, `--repair` goes back to the last "
                                   "generation whose files are intact")
        mode = "r" if mmap else None

        def load(name: str, folder: Path = directory):
            # a plain ndarray over the mapping: np.memmap's Python-level __getitem__ costs a microsecond a slice
            return np.asarray(np.load(folder / f"{name}.npy", mmap_mode=mode, allow_pickle=False))

        self._block_size = effective_block_size(self.info.block_size)
        self.legacy = (directory / "doc_ids.npy").exists()
        if self.legacy:  # lsr 0.2's layout: converted once, in memory
            offsets, doc_ids, impacts = (load(name) for name in LEGACY_ARRAYS)
            dense_ratio = self.info.dense_ratio if self.info.block_size else DEFAULT_DENSE_RATIO
            self.sparse = compact_postings(offsets, doc_ids, impacts, self.info.rows, self._block_size, dense_ratio,
                                           max(dense_ratio, DEFAULT_BOUND_RATIO))
            for array in self.sparse.values():  # typed as the memory-mapped arrays of other segments, so that one
                array.flags.writeable = not mmap  # kernel call still takes them all
        else:
            self.sparse = {name: load(name) for name in SPARSE_ARRAYS}
            _check_layout(directory, self.sparse, self.info.rows, self._block_size)
        self.impacts = self.sparse["impacts"]
        self.ids = load("ids")
        self.hashes = load("hashes")
        self.row_doc = load("row_doc") if (directory / "row_doc.npy").exists() else None
        self.chunks = load("chunks") if (directory / "chunks.npy").exists() else None
        self.dense = load("dense") if (directory / "dense.npy").exists() else None
        self._mmap = mmap
        self._lock = threading.Lock()
        self._kernel_arrays: tuple | None = None
        self._local: dict[str, int] | None = None
        self._deletes: dict[str, np.ndarray] = {}
        self._lexical = None
        self._texts = None
        self._hnsw = None
        self._doc_rows: np.ndarray | None = None
        self.metadata = SegmentMetadata(directory, self.info.documents, mmap)
        self.cache = LruCache()  # what requests derive from this immutable segment (filter masks, live statistics)
        if len(self.ids) != self.info.documents or len(self.sparse["term_windows"]) < 1:
            raise InvalidIndex(f"{directory}: {len(self.ids)} ids for {self.info.documents} documents; the segment is "
                               "damaged, rebuild the index")

    # -- the sparse side ---------------------------------------------------------------------------------------------
    @property
    def block_size(self) -> int:
        return self._block_size

    @property
    def vocab_size(self) -> int:
        return len(self.sparse["term_windows"])

    def kernel_arrays(self) -> tuple:
        """The kernels' index tuple (:func:`kernel_arrays`), built once."""
        if self._kernel_arrays is None:
            with self._lock:
                if self._kernel_arrays is None:
                    self._kernel_arrays = kernel_arrays(self.sparse)
        return self._kernel_arrays

    def term_counts(self) -> np.ndarray:
        """int64 (vocab_size,): how many rows hold each term."""
        windows = self.sparse["term_windows"]
        counts = np.asarray(windows[:, -1] - windows[:, 0])
        for slot, term in enumerate(np.asarray(self.sparse["dense_terms"]).tolist()):
            counts[term] = int(np.count_nonzero(self.sparse["dense_rows"][slot, : self.info.rows]))
        return counts

    def stored_row(self, row: int, token_ids: np.ndarray) -> np.ndarray:
        """The stored impact of each token in sparse row ``row`` (0 where absent)."""
        _, doc_low, _, impacts, dense_slot, dense_rows, _, _ = self.kernel_arrays()
        windows = self.sparse["term_windows"]
        window, low = row >> WINDOW_BITS, row & 0xFFFF
        out = np.zeros(len(token_ids), dtype=np.float64)
        for j, token in enumerate(token_ids.tolist()):
            slot = int(dense_slot[token])
            if slot >= 0:
                out[j] = float(dense_rows[slot, row])
                continue
            start, end = int(windows[token, window]), int(windows[token, window + 1])
            at = start + int(np.searchsorted(doc_low[start:end], low))
            if at < end and int(doc_low[at]) == low:
                out[j] = float(impacts[at])
        return out

    def postings(self):
        """Every posting as a scipy CSC matrix (rows x terms) of stored impacts: per term, increasing rows."""
        return decode_postings(self.sparse, self.info.rows)

    def row_vectors(self) -> SparseBatch:
        """Every row's stored vector (stored impacts, not divided by the scale), in row order."""
        return SparseBatch.from_scipy(self.postings().tocsr())

    def forward(self) -> SparseBatch:
        """:meth:`row_vectors`, built on first use and kept with the segment (pseudo-relevance feedback reads rows by
        number: one slice each, not a lookup per vocabulary term). Costs the segment's postings again in memory."""
        found = self.__dict__.get("_forward")
        if found is None:
            with self._lock:
                found = self.__dict__.get("_forward")
                if found is None:
                    found = self.__dict__["_forward"] = self.row_vectors()
        return found

    def doc_rows(self) -> np.ndarray:
        """int64 (documents + 1): the rows of document d are [doc_rows[d], doc_rows[d+1]) (rows of a document are
        contiguous)."""
        if self._doc_rows is None:
            if self.row_doc is None:
                self._doc_rows = np.arange(self.info.documents + 1, dtype=np.int64)
            else:
                rows = np.zeros(self.info.documents + 1, dtype=np.int64)
                np.cumsum(np.bincount(np.asarray(self.row_doc), minlength=self.info.documents), out=rows[1:])
                self._doc_rows = rows
        return self._doc_rows

    # -- documents -----------------------------------------------------------------------------------------------------
    def local_of(self, doc_id: str) -> int | None:
        """The local number of an external id in this segment (deleted or not), or None."""
        if self._local is None:
            with self._lock:
                if self._local is None:
                    self._local = {str(d): i for i, d in enumerate(self.ids.tolist())}
        return self._local.get(doc_id)

    def deletes(self, name: str | None, crc32: int | None = None) -> np.ndarray | None:
        """The deleted-documents array of one generation (``del-GGGGGG.npy``; None: nothing deleted), checked
        against the checksum its generation recorded."""
        if name is None:
            return None
        found = self._deletes.get(name)
        if found is None:
            path = self.directory / name
            if crc32 is not None and files.checksum(path) != crc32:
                raise InvalidIndex(f"{path}: its checksum does not match the one its generation recorded; the deletes "
                                   "file is damaged and is not served: `lsr index check --repair` goes back to the "
                                   "last generation whose files are intact")
            found = np.load(path, mmap_mode=None, allow_pickle=False).astype(bool)
            if len(found) != self.info.documents:
                raise InvalidIndex(f"{self.directory / name}: {len(found)} flags for {self.info.documents} documents; "
                                   "the index is damaged, rebuild it")
            self._deletes[name] = found
        return found

    @property
    def lexical(self):
        if self._lexical is None and (self.directory / "lexical").is_dir():
            from lsr.index.lexical import LexicalSegment

            self._lexical = LexicalSegment.load(self.directory / "lexical", mmap=self._mmap)
        return self._lexical

    @property
    def texts(self):
        if self._texts is None and (self.directory / "documents").is_dir():
            from lsr.index.documents import DocumentStore

            self._texts = DocumentStore(self.directory / "documents", in_memory=not self._mmap)
        return self._texts

    def hnsw(self):
        """The segment's HNSW index over ``dense.npy`` (``--dense-index hnsw``), read once."""
        if self._hnsw is None and (self.directory / "hnsw.index").exists():
            import faiss

            self._hnsw = faiss.read_index(str(self.directory / "hnsw.index"))
        return self._hnsw


class LruCache:
    """A small thread-safe least-recently-used map of derived arrays, bounded by entries and bytes."""

    def __init__(self, entries: int = 64, max_bytes: int = 256 << 20) -> None:
        self.entries, self.max_bytes = entries, max_bytes
        self._items: OrderedDict = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key, compute):
        """The value cached under ``key``, computed (outside the lock) and kept when missing."""
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                return found[0]
        value = compute()
        size = _nbytes(value)
        with self._lock:
            if key not in self._items and size <= self.max_bytes:
                self._items[key] = (value, size)
                self._bytes += size
                while len(self._items) > self.entries or self._bytes > self.max_bytes:
                    _, (_, dropped) = self._items.popitem(last=False)
                    self._bytes -= dropped
        return value


def _nbytes(value) -> int:
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, (tuple, list)):
        return sum(_nbytes(v) for v in value)
    return sum(_nbytes(v) for v in vars(value).values()) if hasattr(value, "__dict__") else 64


_OPEN: weakref.WeakValueDictionary[tuple, Segment] = weakref.WeakValueDictionary()  # shared while a snapshot holds it
_OPEN_LOCK = threading.Lock()


VERIFY_ENV = "LSR_VERIFY_CHECKSUMS"  # "open" (default): every segment's files when first opened; "off": not


def verify_on_open() -> bool:
    import os

    return os.environ.get(VERIFY_ENV, "open").lower() not in ("off", "0", "false", "no")


def checksum_problems(directory: Path, info: SegmentInfo) -> list[str]:
    """What does not match the checksums ``info.json`` recorded (a segment written before lsr 0.4 has none)."""
    if info.checksums is None:
        return []
    problems = []
    for relative, expected in info.checksums.items():
        path = directory / relative
        try:
            found = files.checksum(path)
        except FileNotFoundError:
            problems.append(f"{relative} is missing")
            continue
        except OSError as exc:
            problems.append(f"{relative} cannot be read ({exc.strerror or exc})")
            continue
        if found != expected:
            problems.append(f"{relative}: checksum {found:#010x}, info.json recorded {expected:#010x}")
    return problems


def _key(directory: Path, mmap: bool) -> tuple:
    stat = directory.stat()  # the folder's identity: a rebuilt index reuses segment names, not inodes
    return (str(directory.resolve()), stat.st_dev, stat.st_ino, mmap)


def open_segment(directory: Path, mmap: bool = True) -> Segment:
    """The process's one :class:`Segment` for ``directory`` (segments are immutable, so sharing is safe)."""
    key = _key(directory, mmap)
    with _OPEN_LOCK:
        segment = _OPEN.get(key)
        if segment is None:
            segment = Segment(directory, mmap)
            _OPEN[key] = segment
        return segment


def forget_segment(directory: Path) -> None:
    """Drop a removed segment from the process's cache."""
    name = str(directory.resolve())
    with _OPEN_LOCK:
        for key in [key for key in _OPEN if key[0] == name]:
            del _OPEN[key]


@dataclass
class SegmentView:
    """A segment as one generation sees it: which documents are deleted."""

    segment: Segment
    deleted: np.ndarray | None  # bool (documents,), None: none deleted
    deleted_count: int = 0
    deletes: str | None = None  # the deletes file (del-GGGGGG.npy) ``deleted`` was read from

    @property
    def live_documents(self) -> int:
        return self.segment.info.documents - self.deleted_count

    def is_live(self, local: int) -> bool:
        return self.deleted is None or not bool(self.deleted[local])

    def live_rows(self) -> np.ndarray:
        """uint8 (rows,), 1 = the row's document is live; an empty array when none is deleted (the kernels' fast
        path)."""
        if self.deleted is None:
            return np.zeros(0, dtype=np.uint8)
        live = (~self.deleted).astype(np.uint8)
        return live if self.segment.row_doc is None else live[np.asarray(self.segment.row_doc)]

    def live_mask(self) -> np.ndarray | None:
        return None if self.deleted is None else ~self.deleted


def gather(views: list[SegmentView], positions: np.ndarray, numbers: np.ndarray, field: str) -> list:
    """``views[position].segment.<field>[number]`` for each pair, as Python values, in order: one fancy index a
    segment, not one memory-map access a hit."""
    if len(positions) <= 64:  # a few hits: one read each is cheaper than grouping
        arrays = {p: getattr(views[p].segment, field) for p in set(positions.tolist())}
        if all(a.ndim == 1 for a in arrays.values()):
            return [arrays[p].item(n) for p, n in zip(positions.tolist(), numbers.tolist())]
        return [arrays[p][n].tolist() for p, n in zip(positions.tolist(), numbers.tolist())]
    if (positions == positions[0]).all():
        return getattr(views[int(positions[0])].segment, field)[numbers].tolist()
    out: list = [None] * len(positions)
    for p in np.unique(positions).tolist():
        where = np.flatnonzero(positions == p)
        for at, value in zip(where.tolist(), getattr(views[p].segment, field)[numbers[where]].tolist()):
            out[at] = value
    return out


def quantize(weights: np.ndarray, scale: float, dtype: str) -> tuple[np.ndarray, int]:
    """Impacts as stored and the number of weights clipped: float32 unchanged, or uint8 q = round(w * scale)
    clipped to [0, 255] (a weight above the index's max_weight, in a document added later, is stored as 255)."""
    if dtype == "float32":
        return weights.astype(np.float32), 0
    scaled = np.rint(weights.astype(np.float64) * scale)
    clipped = int((scaled > 255).sum())
    return np.clip(scaled, 0, 255).astype(np.uint8), clipped




def is_power_of_two(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def effective_block_size(block_size: int) -> int:
    """The block size a segment is read and written with: its own, or the default for one written before blocks
    (0) or with a size this layout cannot take (lsr 0.2 took any; blocks here must divide a window)."""
    ok = is_power_of_two(block_size) and block_size <= 1 << WINDOW_BITS
    return block_size if ok else DEFAULT_BLOCK_SIZE


def _check_layout(directory: Path, arrays: dict[str, np.ndarray], rows: int, block_size: int) -> None:
    """Refuse a segment whose arrays do not fit together: the kernels trust them (numba checks no bounds)."""
    windows, n_blocks = arrays["term_windows"], -(-rows // block_size)
    n_rare = len(arrays["doc_low"])
    problems = [
        windows.ndim != 2 or windows.shape[1] != max(1, -(-rows >> WINDOW_BITS)) + 1,
        windows.size and int(windows[-1, -1]) != n_rare, len(arrays["impacts"]) != n_rare,
        len(arrays["skips"]) != -(-n_rare >> SKIP_BITS),
        arrays["dense_rows"].shape != (len(arrays["dense_terms"]), n_blocks * block_size),
        arrays["max_rows"].shape != (len(arrays["max_terms"]), n_blocks),
        len(arrays["max_terms"]) < len(arrays["dense_terms"]),
    ]
    if any(problems):
        raise InvalidIndex(f"{directory}: the sparse arrays do not match each other or info.json ({rows} rows, blocks "
                           f"of {block_size}); the segment is damaged or was written by another tool: rebuild the "
                           "index")


def check_block_size(block_size: int) -> None:
    if not is_power_of_two(block_size) or block_size > 1 << WINDOW_BITS:
        raise InvalidInput(f"block size must be a power of two from 1 to {1 << WINDOW_BITS}, got {block_size}: "
                           f"use {DEFAULT_BLOCK_SIZE} (the default) or another power of two")


@numba.njit(cache=True)
def _count_windows(offsets, doc_ids, dense_slot, counts):  # pragma: no cover - numba
    for term in range(len(offsets) - 1):
        if dense_slot[term] >= 0:
            continue
        for p in range(offsets[term], offsets[term + 1]):
            counts[term, doc_ids[p] >> WINDOW_BITS] += 1


@numba.njit(cache=True)
def _fill_compact(offsets, doc_ids, impacts, block_size, dense_slot, max_slot, doc_low, impacts_out, dense_rows,
                  max_rows):  # pragma: no cover - numba
    out = 0
    for term in range(len(offsets) - 1):
        slot = dense_slot[term]
        bound = max_slot[term]
        for p in range(offsets[term], offsets[term + 1]):
            doc = doc_ids[p]
            block = doc // block_size
            if bound >= 0 and impacts[p] > max_rows[bound, block]:
                max_rows[bound, block] = impacts[p]
            if slot >= 0:
                dense_rows[slot, doc] = impacts[p]
                continue
            doc_low[out] = doc & 0xFFFF
            impacts_out[out] = impacts[p]
            out += 1


def compact_postings(offsets: np.ndarray, doc_ids: np.ndarray, impacts: np.ndarray, rows: int, block_size: int,
                     dense_ratio: int, bound_ratio: int = DEFAULT_BOUND_RATIO) -> dict[str, np.ndarray]:
    """The stored layout of a segment's sparse side, from CSR postings by term (``offsets``, increasing row numbers
    ``doc_ids``, ``impacts``).

    Rows are cut into blocks of ``block_size`` (a power of two) consecutive numbers. A term in at least
    ``rows / dense_ratio`` rows (``dense_ratio`` 0: none) is *dense*: ``dense_rows[s]`` holds its impact for every
    row (0 where absent; padded to whole blocks), with ``dense_terms[s]`` the term id; its postings are stored nowhere
    else. Every other term keeps its postings, in increasing row number, as the row's low 16 bits (``doc_low``,
    uint16) and the impact (``impacts``); the high bits are implicit: ``term_windows[t, w] .. term_windows[t, w + 1]``
    are the postings of t in rows [w * 65536, (w + 1) * 65536). A block never straddles two windows (block sizes
    divide 65536). ``skips`` holds every 64th entry of ``doc_low``, so a search for a block's postings reads a small,
    cache-resident array first and then one group of 64 postings.

    Block maxima, for the pruned kernel's bounds: the dense terms and every term in at least ``rows / bound_ratio``
    rows have a row of them, ``max_rows[s]`` for term ``max_terms[s]`` (the dense terms first, in the same order), so
    their bounds are one SIMD loop over the blocks. Rarer terms store nothing per block: the kernel bounds a block
    by the sum of the term's impacts there (at least their maximum; on the 1M synthetic collection 96% of these
    terms' blocks hold a single posting, where the two are equal). One pass over the postings; deleting rows leaves
    every bound valid, so exact pruning survives deletes.
    """
    check_block_size(block_size)
    vocab = len(offsets) - 1
    df = np.diff(offsets)

    def at_least(ratio: int) -> np.ndarray:
        return df >= max(1, rows / ratio) if ratio > 0 else np.zeros(vocab, dtype=bool)

    dense = at_least(dense_ratio)
    dense_terms = np.flatnonzero(dense).astype(np.int32)
    max_terms = np.concatenate([dense_terms, np.flatnonzero(at_least(bound_ratio) & ~dense)]).astype(np.int32)
    dense_slot = np.full(vocab, -1, dtype=np.int32)
    dense_slot[dense_terms] = np.arange(len(dense_terms), dtype=np.int32)
    max_slot = np.full(vocab, -1, dtype=np.int32)
    max_slot[max_terms] = np.arange(len(max_terms), dtype=np.int32)
    n_windows = max(1, (rows + (1 << WINDOW_BITS) - 1) >> WINDOW_BITS)
    counts = np.zeros((vocab, n_windows), dtype=np.int64)
    _count_windows(offsets, doc_ids, dense_slot, counts)
    inclusive = np.cumsum(counts.ravel()).reshape(vocab, n_windows)
    term_windows = np.empty((vocab, n_windows + 1), dtype=np.int64)
    term_windows[:, :n_windows] = inclusive - counts
    term_windows[:, n_windows] = inclusive[:, -1]
    n_rare = int(inclusive[-1, -1]) if vocab else 0
    n_blocks = (rows + block_size - 1) // block_size
    arrays = {
        "term_windows": term_windows, "doc_low": np.empty(n_rare, dtype=np.uint16),
        "impacts": np.empty(n_rare, dtype=impacts.dtype), "dense_terms": dense_terms,
        "dense_rows": np.zeros((len(dense_terms), n_blocks * block_size), impacts.dtype),
        "max_terms": max_terms, "max_rows": np.zeros((len(max_terms), n_blocks), dtype=impacts.dtype),
    }
    _fill_compact(offsets, doc_ids, impacts, block_size, dense_slot, max_slot, arrays["doc_low"], arrays["impacts"],
                  arrays["dense_rows"], arrays["max_rows"])
    arrays["skips"] = np.ascontiguousarray(arrays["doc_low"][:: 1 << SKIP_BITS])
    return arrays


class CompactBuilder:
    """:func:`compact_postings`'s layout built from rows instead of term-sorted postings, in two passes over the
    rows (row-major CSR batches, in row order), so that a segment's postings are never held twice: :meth:`count`
    every batch, :meth:`plan` once, :meth:`fill` every batch again in the same order, then :meth:`finish`. Memory is
    the layout itself plus one batch (the old path held every batch's postings, then all of them again as term-sorted
    uint32 row numbers and impacts: 16 GB for the 1.6 billion postings of 8.8M synthetic documents). The arrays are
    bit-identical to :func:`compact_postings` over the same postings (a test checks). Impacts 0 are not postings."""

    def __init__(self, vocab: int, rows: int, block_size: int, dense_ratio: int,
                 bound_ratio: int = DEFAULT_BOUND_RATIO) -> None:
        check_block_size(block_size)
        self.vocab, self.rows, self.block_size = vocab, rows, block_size
        self.dense_ratio, self.bound_ratio = dense_ratio, bound_ratio
        self.n_windows = max(1, (rows + (1 << WINDOW_BITS) - 1) >> WINDOW_BITS)
        self.counts = np.zeros((vocab, self.n_windows), dtype=np.int64)
        self._counted = self._filled = 0
        self.arrays: dict[str, np.ndarray] | None = None

    def count(self, indptr: np.ndarray, indices: np.ndarray, impacts: np.ndarray) -> None:
        _count_rows(indptr, indices, impacts, self._counted, self.counts)
        self._counted += len(indptr) - 1

    @property
    def postings(self) -> int:
        return int(self.counts.sum())

    def plan(self, impact_dtype) -> None:
        if self._counted != self.rows:
            raise ValueError(f"counted {self._counted} rows of {self.rows}")
        vocab, n_windows, rows = self.vocab, self.n_windows, self.rows
        df = self.counts.sum(axis=1)

        def at_least(ratio: int) -> np.ndarray:
            return df >= max(1, rows / ratio) if ratio > 0 else np.zeros(vocab, dtype=bool)

        dense = at_least(self.dense_ratio)
        dense_terms = np.flatnonzero(dense).astype(np.int32)
        max_terms = np.concatenate([dense_terms, np.flatnonzero(at_least(self.bound_ratio) & ~dense)]).astype(np.int32)
        self.dense_slot = np.full(vocab, -1, dtype=np.int32)
        self.dense_slot[dense_terms] = np.arange(len(dense_terms), dtype=np.int32)
        self.max_slot = np.full(vocab, -1, dtype=np.int32)
        self.max_slot[max_terms] = np.arange(len(max_terms), dtype=np.int32)
        counts = self.counts
        counts[dense] = 0  # a dense term's postings are its row
        inclusive = np.cumsum(counts.ravel()).reshape(vocab, n_windows)
        term_windows = np.empty((vocab, n_windows + 1), dtype=np.int64)
        term_windows[:, :n_windows] = inclusive - counts
        term_windows[:, n_windows] = inclusive[:, -1]
        self.counts = None
        n_rare = int(inclusive[-1, -1]) if vocab else 0
        n_blocks = (rows + self.block_size - 1) // self.block_size
        self.cursor = term_windows[:, 0].copy()
        self.arrays = {
            "term_windows": term_windows, "doc_low": np.empty(n_rare, dtype=np.uint16),
            "impacts": np.empty(n_rare, dtype=impact_dtype), "dense_terms": dense_terms,
            "dense_rows": np.zeros((len(dense_terms), n_blocks * self.block_size), impact_dtype),
            "max_terms": max_terms, "max_rows": np.zeros((len(max_terms), n_blocks), dtype=impact_dtype),
        }

    def fill(self, indptr: np.ndarray, indices: np.ndarray, impacts: np.ndarray) -> None:
        a = self.arrays
        _fill_rows(indptr, indices, impacts, self._filled, self.block_size, self.dense_slot, self.max_slot,
                   self.cursor, a["doc_low"], a["impacts"], a["dense_rows"], a["max_rows"])
        self._filled += len(indptr) - 1

    def finish(self) -> dict[str, np.ndarray]:
        if self._filled != self.rows:
            raise ValueError(f"filled {self._filled} rows of {self.rows}")
        ends = self.arrays["term_windows"][:, -1]
        if not np.array_equal(self.cursor[self.dense_slot < 0], ends[self.dense_slot < 0]):
            raise ValueError("the fill pass met other postings than the count pass: the batches changed in between")
        self.arrays["skips"] = np.ascontiguousarray(self.arrays["doc_low"][:: 1 << SKIP_BITS])
        return self.arrays


@numba.njit(cache=True)
def _count_rows(indptr, indices, impacts, row_base, counts):  # pragma: no cover - numba
    for row in range(len(indptr) - 1):
        window = (row_base + row) >> WINDOW_BITS
        for j in range(indptr[row], indptr[row + 1]):
            if impacts[j] != 0:
                counts[indices[j], window] += 1


@numba.njit(cache=True)
def _fill_rows(indptr, indices, impacts, row_base, block_size, dense_slot, max_slot, cursor, doc_low, impacts_out,
               dense_rows, max_rows):  # pragma: no cover - numba
    for row in range(len(indptr) - 1):
        doc = row_base + row
        block = doc // block_size
        low = doc & 0xFFFF
        for j in range(indptr[row], indptr[row + 1]):
            value = impacts[j]
            if value == 0:
                continue
            term = indices[j]
            bound = max_slot[term]
            if bound >= 0 and value > max_rows[bound, block]:
                max_rows[bound, block] = value
            slot = dense_slot[term]
            if slot >= 0:
                dense_rows[slot, doc] = value
                continue
            position = cursor[term]
            doc_low[position] = low
            impacts_out[position] = value
            cursor[term] = position + 1


def kernel_arrays(arrays: dict[str, np.ndarray]) -> tuple:
    """The tuple the kernels (:mod:`lsr.index.kernel`) take as ``ix``: (term_windows, doc_low, skips, impacts,
    dense_slot, dense_rows, max_slot, max_rows); a slot is a term's row in ``dense_rows`` / ``max_rows``, -1 for
    none."""
    vocab = len(arrays["term_windows"])
    dense_slot = np.full(vocab, -1, dtype=np.int32)
    dense_slot[arrays["dense_terms"]] = np.arange(len(arrays["dense_terms"]), dtype=np.int32)
    max_slot = np.full(vocab, -1, dtype=np.int32)
    max_slot[arrays["max_terms"]] = np.arange(len(arrays["max_terms"]), dtype=np.int32)
    return (arrays["term_windows"], arrays["doc_low"], arrays["skips"], arrays["impacts"], dense_slot,
            arrays["dense_rows"], max_slot, arrays["max_rows"])


def decode_postings(arrays: dict[str, np.ndarray], rows: int):
    """The stored layout back as a scipy CSC matrix (rows x terms) of stored impacts (float32): ``indptr`` are the
    classic per-term offsets, ``indices`` the row numbers, ``data`` the impacts."""
    import scipy.sparse

    term_windows, doc_low = arrays["term_windows"], np.asarray(arrays["doc_low"])
    vocab, n_windows = term_windows.shape[0], term_windows.shape[1] - 1
    per_window = np.diff(term_windows, axis=1).ravel()
    windows = np.repeat(np.tile(np.arange(n_windows, dtype=np.int64), vocab), per_window)
    terms = np.repeat(np.arange(vocab, dtype=np.int64), term_windows[:, -1] - term_windows[:, 0])
    row_parts = [(windows << WINDOW_BITS) | doc_low]
    term_parts = [terms]
    value_parts = [np.asarray(arrays["impacts"], dtype=np.float32)]
    for slot, term in enumerate(np.asarray(arrays["dense_terms"]).tolist()):
        row = np.asarray(arrays["dense_rows"][slot, :rows])
        nonzero = np.flatnonzero(row)
        row_parts.append(nonzero)
        term_parts.append(np.full(len(nonzero), term, dtype=np.int64))
        value_parts.append(row[nonzero].astype(np.float32))
    return scipy.sparse.csc_matrix((np.concatenate(value_parts), (np.concatenate(row_parts),
                                                                  np.concatenate(term_parts))), shape=(rows, vocab))
