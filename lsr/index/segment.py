"""Segments: the immutable unit of an index. A segment holds a batch of documents and never changes; documents leave
it only through the deletes file of a later generation, and merges replace whole segments.

Layout of a segment folder (``segments/seg-NNNNNN/``); every array is a plain ``.npy``, memory-mapped at load::

    info.json           documents, rows, postings, the weights it saw, what quantization dropped or clipped
    offsets.npy         int64 (vocab_size + 1): the postings of term t are [offsets[t], offsets[t+1])
    doc_ids.npy         uint32 row numbers, increasing within each term
    impacts.npy         uint8 (q = round(w * scale), the index's one scale) or float32
    blocks/             block-max pruning: per-term block maxima, dense rows of frequent terms (:func:`block_metadata`)
    ids.npy             external document ids, by document
    hashes.npy          uint8 (documents, 16): blake2b of (title, text), so an unchanged replace is not re-encoded
    row_doc.npy         int32, by row: the document a row belongs to (only when long documents are chunked)
    chunks.npy          int32 (rows, 3): chunk number, start and end character of each row (only when chunked)
    dense.npy           float32 (documents, dim): dense embeddings (dense part); hnsw.index with --dense-index hnsw
    documents/          texts.jsonl + offsets.npy: the stored texts (--store-documents)
    lexical/            BM25 postings of the analyzed text (--bm25, :mod:`lsr.index.lexical`)
    del-GGGGGG.npy      uint8 (documents,): 1 = deleted, written by generation G (one file a generation that deleted
                        something here; the generation names the one that applies)

Rows are what the sparse kernel scores: one a document, or one a chunk when ``--chunk-tokens`` splits long documents;
every other part is by document.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

from lsr.errors import InvalidIndex, InvalidInput
from lsr.index.manifest import SegmentInfo
from lsr.sparse import SparseBatch

DEFAULT_BLOCK_SIZE = 4  # 1M synthetic: 4 -> 0.40 ms mean, 8 -> 0.63, 16 -> 1.25 (benchmarks/blockmax_profile.py)
DEFAULT_DENSE_RATIO = 16
POSTING_ARRAYS = ("offsets", "doc_ids", "impacts")
BLOCK_ARRAYS = ("block_offsets", "block_ids", "block_max", "block_starts", "dense_terms", "dense_rows", "dense_max")


class Segment:
    """An opened segment. Loaded once per process (:func:`open_segment`) and shared by every snapshot that lists it,
    so caches (the kernel's arrays, the id map) survive refreshes."""

    def __init__(self, directory: Path, mmap: bool = True) -> None:
        self.directory = directory
        self.name = directory.name
        self.info = SegmentInfo.load(directory)
        mode = "r" if mmap else None

        def load(name: str, folder: Path = directory):
            # a plain ndarray over the mapping: np.memmap's Python-level __getitem__ costs a microsecond a slice
            return np.asarray(np.load(folder / f"{name}.npy", mmap_mode=mode, allow_pickle=False))

        self.offsets, self.doc_ids, self.impacts = (load(name) for name in POSTING_ARRAYS)
        self.ids = load("ids")
        self.hashes = load("hashes")
        self.row_doc = load("row_doc") if (directory / "row_doc.npy").exists() else None
        self.chunks = load("chunks") if (directory / "chunks.npy").exists() else None
        self.blocks = ({name: load(name, directory / "blocks") for name in BLOCK_ARRAYS}
                       if (directory / "blocks").is_dir() else None)
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
        if len(self.ids) != self.info.documents or len(self.offsets) < 2:
            raise InvalidIndex(f"{directory}: {len(self.ids)} ids for {self.info.documents} documents; the segment is "
                               "damaged, rebuild the index")

    # -- the sparse side ---------------------------------------------------------------------------------------------
    @property
    def block_size(self) -> int:
        return self.info.block_size or DEFAULT_BLOCK_SIZE

    def block_arrays(self) -> dict[str, np.ndarray]:
        with self._lock:
            if self.blocks is None:
                self.blocks = block_metadata(self.offsets, self.doc_ids, self.impacts, self.info.rows,
                                             DEFAULT_BLOCK_SIZE, DEFAULT_DENSE_RATIO)
            return self.blocks

    def kernel_arrays(self) -> tuple:
        """The block-max kernel's index tuple (:func:`kernel_arrays`), built once."""
        if self._kernel_arrays is None:
            blocks = self.block_arrays()
            with self._lock:
                if self._kernel_arrays is None:
                    self._kernel_arrays = kernel_arrays(self.offsets, self.doc_ids, self.impacts, blocks)
        return self._kernel_arrays

    def stored_row(self, row: int, token_ids: np.ndarray) -> np.ndarray:
        """The stored impact of each token in sparse row ``row`` (0 where absent)."""
        out = np.zeros(len(token_ids), dtype=np.float64)
        for j, token in enumerate(token_ids.tolist()):
            start, end = int(self.offsets[token]), int(self.offsets[token + 1])
            postings = self.doc_ids[start:end]
            at = int(np.searchsorted(postings, row))
            if at < len(postings) and int(postings[at]) == row:
                out[j] = float(self.impacts[start + at])
        return out

    def row_vectors(self) -> SparseBatch:
        """Every row's stored vector (stored impacts, not divided by the scale), in row order: the postings
        transposed."""
        import scipy.sparse

        terms = np.repeat(np.arange(len(self.offsets) - 1, dtype=np.int32), np.diff(self.offsets))
        matrix = scipy.sparse.csr_matrix((np.asarray(self.impacts, dtype=np.float32), (np.asarray(self.doc_ids), terms)),
                                         shape=(self.info.rows, len(self.offsets) - 1))
        return SparseBatch.from_scipy(matrix)

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

    def deletes(self, name: str | None) -> np.ndarray | None:
        """The deleted-documents array of one generation (``del-GGGGGG.npy``; None: nothing deleted)."""
        if name is None:
            return None
        found = self._deletes.get(name)
        if found is None:
            found = np.load(self.directory / name, mmap_mode=None, allow_pickle=False).astype(bool)
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


_OPEN: weakref.WeakValueDictionary[tuple, Segment] = weakref.WeakValueDictionary()  # shared while a snapshot holds it
_OPEN_LOCK = threading.Lock()


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


@numba.njit(cache=True)
def _count_blocks(offsets, doc_ids, block_size, dense_slot):  # pragma: no cover - numba
    counts = np.zeros(len(offsets) - 1, dtype=np.int64)
    for term in range(len(offsets) - 1):
        if dense_slot[term] >= 0:
            continue
        last = -1
        for p in range(offsets[term], offsets[term + 1]):
            block = doc_ids[p] // block_size
            if block != last:
                counts[term] += 1
                last = block
    return counts


@numba.njit(cache=True)
def _fill_blocks(offsets, doc_ids, impacts, block_size, dense_slot, b_offsets, b_ids, b_max, b_starts, dense_rows,
                 dense_max):  # pragma: no cover - numba
    for term in range(len(offsets) - 1):
        slot = dense_slot[term]
        if slot >= 0:
            for p in range(offsets[term], offsets[term + 1]):
                doc = doc_ids[p]
                dense_rows[slot, doc] = impacts[p]
                block = doc // block_size
                if impacts[p] > dense_max[slot, block]:
                    dense_max[slot, block] = impacts[p]
            continue
        e = b_offsets[term] - 1
        last = -1
        for p in range(offsets[term], offsets[term + 1]):
            block = doc_ids[p] // block_size
            if block != last:
                e += 1
                b_ids[e] = block
                b_max[e] = impacts[p]
                b_starts[e] = p
                last = block
            elif impacts[p] > b_max[e]:
                b_max[e] = impacts[p]


def block_metadata(offsets: np.ndarray, doc_ids: np.ndarray, impacts: np.ndarray, doc_count: int, block_size: int,
                   dense_ratio: int) -> dict[str, np.ndarray]:
    """The block-max structures the pruned kernel (:func:`lsr.index.kernel.score_batch_blockmax`) reads.

    Rows are cut into blocks of ``block_size`` consecutive numbers. A term in at least ``doc_count / dense_ratio``
    rows (``dense_ratio`` 0: none) is *dense*: ``dense_rows[s]`` holds its impact for every row (0 where absent;
    padded to whole blocks) and ``dense_max[s]`` its largest impact in every block, with ``dense_terms[s]`` the term id.
    Every other term t lists the blocks holding its postings in ``[block_offsets[t], block_offsets[t+1])``: block id
    (``block_ids``), its largest impact there (``block_max``) and the position in the postings where that block's
    postings of t start (``block_starts``). One pass over the postings. Deleting rows leaves every maximum a valid
    upper bound, so exact pruning survives deletes.
    """
    if block_size < 1:
        raise InvalidInput(f"block size must be >= 1, got {block_size}")
    vocab = len(offsets) - 1
    df = np.diff(offsets)
    dense_terms = (np.flatnonzero(df >= max(1, doc_count / dense_ratio)).astype(np.int32) if dense_ratio > 0
                   else np.zeros(0, dtype=np.int32))
    dense_slot = np.full(vocab, -1, dtype=np.int32)
    dense_slot[dense_terms] = np.arange(len(dense_terms), dtype=np.int32)
    counts = _count_blocks(offsets, doc_ids, block_size, dense_slot)
    b_offsets = np.zeros(len(offsets), dtype=np.int64)
    np.cumsum(counts, out=b_offsets[1:])
    n = int(b_offsets[-1])
    n_blocks = (doc_count + block_size - 1) // block_size
    start_dtype = np.uint32 if len(doc_ids) < 2**32 else np.int64
    arrays = {
        "block_offsets": b_offsets, "block_ids": np.empty(n, dtype=np.uint32),
        "block_max": np.empty(n, dtype=impacts.dtype), "block_starts": np.empty(n, dtype=start_dtype),
        "dense_terms": dense_terms, "dense_rows": np.zeros((len(dense_terms), n_blocks * block_size), impacts.dtype),
        "dense_max": np.zeros((len(dense_terms), n_blocks), dtype=impacts.dtype),
    }
    _fill_blocks(offsets, doc_ids, impacts, block_size, dense_slot, b_offsets, arrays["block_ids"],
                 arrays["block_max"], arrays["block_starts"], arrays["dense_rows"], arrays["dense_max"])
    return arrays


def kernel_arrays(offsets, doc_ids, impacts, blocks: dict[str, np.ndarray]) -> tuple:
    """The tuple :func:`lsr.index.kernel.score_batch_blockmax` takes as ``ix``."""
    dense_slot = np.full(len(offsets) - 1, -1, dtype=np.int32)
    dense_slot[blocks["dense_terms"]] = np.arange(len(blocks["dense_terms"]), dtype=np.int32)
    return (offsets, doc_ids, impacts, blocks["block_offsets"], blocks["block_ids"], blocks["block_max"],
            blocks["block_starts"], dense_slot, blocks["dense_rows"], blocks["dense_max"])
