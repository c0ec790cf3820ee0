"""Segments of the native inverted index: CSR postings by term plus block-max structures, as plain ``.npy`` arrays
(memory-mapped at load, written with ``allow_pickle=False``).

Layout of a segment directory (``segments/seg-000000/``)::

    offsets.npy     int64 (vocab_size + 1): postings of term t are [offsets[t], offsets[t+1])
    doc_ids.npy     uint32: segment-local document ids, increasing within each term
    impacts.npy     uint8 (quantized) or float32
    ids.npy         external document ids (unicode array), by local document id
    blocks/         block-max pruning: per-term block maxima, dense rows of frequent terms (:func:`block_metadata`;
                    an index without it gets it computed at load)

Quantization: q = round(w * scale) with scale = 255 / max_weight over the segment's documents (stored per segment);
a posting whose q is 0 is dropped (counted in the manifest); impact(d, t) = q / scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

from lsr.errors import InvalidInput
from lsr.index.manifest import IMPACT_DTYPES, SegmentInfo
from lsr.sparse import SparseBatch

DEFAULT_BLOCK_SIZE = 4  # 1M synthetic: 4 -> 0.40 ms mean, 8 -> 0.63, 16 -> 1.25 (benchmarks/blockmax_profile.py)
DEFAULT_DENSE_RATIO = 16
POSTING_ARRAYS = ("offsets", "doc_ids", "impacts", "ids")
BLOCK_ARRAYS = ("block_offsets", "block_ids", "block_max", "block_starts", "dense_terms", "dense_rows", "dense_max")


@dataclass
class Segment:
    info: SegmentInfo
    offsets: np.ndarray
    doc_ids: np.ndarray
    impacts: np.ndarray
    ids: np.ndarray
    blocks: dict[str, np.ndarray] | None = None
    _kernel_arrays: tuple | None = None

    @classmethod
    def load(cls, directory: Path, info: SegmentInfo, mmap: bool) -> Segment:
        mode = "r" if mmap else None
        arrays = {name: np.load(directory / f"{name}.npy", mmap_mode=mode, allow_pickle=False)
                  for name in POSTING_ARRAYS}
        blocks = None
        if info.block_size > 0:
            blocks = {name: np.load(directory / "blocks" / f"{name}.npy", mmap_mode=mode, allow_pickle=False)
                      for name in BLOCK_ARRAYS}
        return cls(info=info, blocks=blocks, **arrays)

    def save(self, directory: Path) -> None:
        (directory / "blocks").mkdir(parents=True, exist_ok=True)
        for name in POSTING_ARRAYS:
            np.save(directory / f"{name}.npy", np.asarray(getattr(self, name)), allow_pickle=False)
        for name, array in self.block_arrays().items():
            np.save(directory / "blocks" / f"{name}.npy", np.asarray(array), allow_pickle=False)

    @property
    def block_size(self) -> int:
        return self.info.block_size or DEFAULT_BLOCK_SIZE

    def block_arrays(self) -> dict[str, np.ndarray]:
        """The block-max structures; an index written before they existed gets them computed here, once."""
        if self.blocks is None:
            self.blocks = block_metadata(self.offsets, self.doc_ids, self.impacts, self.info.doc_count,
                                         DEFAULT_BLOCK_SIZE, DEFAULT_DENSE_RATIO)
        return self.blocks

    def kernel_arrays(self) -> tuple:
        """The block-max kernel's index tuple (:func:`kernel_arrays`)."""
        if self._kernel_arrays is None:
            self._kernel_arrays = kernel_arrays(self.offsets, self.doc_ids, self.impacts, self.block_arrays())
        return self._kernel_arrays

    def postings_of(self, local: int, token_ids: np.ndarray) -> np.ndarray:
        """The stored impact of each token for the document at local position ``local`` (0 where absent)."""
        out = np.zeros(len(token_ids), dtype=np.float64)
        for j, token in enumerate(token_ids.tolist()):
            start, end = int(self.offsets[token]), int(self.offsets[token + 1])
            postings = self.doc_ids[start:end]
            at = int(np.searchsorted(postings, local))
            if at < len(postings) and int(postings[at]) == local:
                out[j] = float(self.impacts[start + at])
        return out

    def document_vectors(self, dequantize: bool = True) -> SparseBatch:
        """Every document's stored vector, in local id order: the postings transposed. Weights are impacts as scored
        (stored / scale), or the stored values themselves with ``dequantize=False``."""
        import scipy.sparse

        terms = np.repeat(np.arange(len(self.offsets) - 1, dtype=np.int32), np.diff(self.offsets))
        values = np.asarray(self.impacts, dtype=np.float64) / (self.info.scale if dequantize else 1.0)
        matrix = scipy.sparse.csr_matrix((values.astype(np.float32), (np.asarray(self.doc_ids), terms)),
                                         shape=(self.info.doc_count, len(self.offsets) - 1))
        return SparseBatch.from_scipy(matrix)


def quantize(weights: np.ndarray, scale: float, dtype: str) -> np.ndarray:
    """Impacts as stored: float32 unchanged, or uint8 q = round(w * scale) clipped to [0, 255]."""
    if dtype == "float32":
        return weights.astype(np.float32)
    return np.clip(np.rint(weights.astype(np.float64) * scale), 0, 255).astype(np.uint8)


class SegmentWriter:
    """Collects encoded batches (spooled to ``spool``, so memory holds one batch at a time) and turns them into one
    segment's arrays: postings by term, then the block-max structures."""

    def __init__(self, spool: Path, vocab_size: int, impact_dtype: str = "uint8",
                 block_size: int = DEFAULT_BLOCK_SIZE, dense_ratio: int = DEFAULT_DENSE_RATIO) -> None:
        if impact_dtype not in IMPACT_DTYPES:
            raise InvalidInput(f"impact dtype {impact_dtype!r} is not one of {', '.join(IMPACT_DTYPES)}")
        if block_size < 1 or dense_ratio < 0:
            raise InvalidInput(f"--block-size must be >= 1 and --dense-ratio >= 0, got {block_size} and {dense_ratio}")
        self.spool = spool
        self.spool.mkdir(parents=True, exist_ok=True)
        self.vocab_size = vocab_size
        self.impact_dtype = impact_dtype
        self.block_size = block_size
        self.dense_ratio = dense_ratio
        self.ids: list[str] = []
        self.chunks = 0
        self.max_weight = 0.0

    def add(self, batch: SparseBatch, ids: list[str]) -> None:
        if len(batch) != len(ids):
            raise InvalidInput(f"{len(batch)} vectors for {len(ids)} ids")
        batch.validate(self.vocab_size)
        for name in ("indptr", "indices", "weights"):
            np.save(self.spool / f"{self.chunks:06d}-{name}.npy", getattr(batch, name), allow_pickle=False)
        self.chunks += 1
        self.ids.extend(ids)
        if batch.nnz:
            self.max_weight = max(self.max_weight, float(batch.weights.max()))

    def scale(self) -> float:
        if self.impact_dtype == "float32":
            return 1.0
        return 255.0 / self.max_weight if self.max_weight > 0 else 1.0

    def spooled(self):
        """Yield (doc_base, indptr, indices, stored impacts) for every spooled chunk, in document order."""
        doc_base, scale = 0, self.scale()
        for chunk in range(self.chunks):
            indptr, indices, weights = (np.load(self.spool / f"{chunk:06d}-{name}.npy")
                                        for name in ("indptr", "indices", "weights"))
            yield doc_base, indptr, indices, quantize(weights, scale, self.impact_dtype)
            doc_base += len(indptr) - 1

    def finish(self, name: str, doc_base: int = 0) -> tuple[Segment, int]:
        """The segment (arrays in memory) and the number of postings quantization dropped."""
        counts = np.zeros(self.vocab_size, dtype=np.int64)
        total = 0
        for _, _, indices, impacts in self.spooled():
            counts += np.bincount(indices[impacts > 0], minlength=self.vocab_size)
            total += len(indices)
        offsets = np.zeros(self.vocab_size + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        postings = int(offsets[-1])
        doc_ids = np.empty(postings, dtype=np.uint32)
        impacts_out = np.empty(postings, dtype=np.uint8 if self.impact_dtype == "uint8" else np.float32)
        cursor = offsets[:-1].copy()
        for base, indptr, indices, impacts in self.spooled():
            _fill_postings(indptr, indices, impacts, base, cursor, doc_ids, impacts_out)
        info = SegmentInfo(name=name, doc_base=doc_base, doc_count=len(self.ids), postings=postings,
                           scale=self.scale(), max_weight=self.max_weight, block_size=self.block_size,
                           dense_ratio=self.dense_ratio)
        blocks = block_metadata(offsets, doc_ids, impacts_out, len(self.ids), self.block_size, self.dense_ratio)
        segment = Segment(info=info, offsets=offsets, doc_ids=doc_ids, impacts=impacts_out,
                          ids=np.asarray(self.ids, dtype=str), blocks=blocks)
        return segment, total - postings


@numba.njit(cache=True)
def _fill_postings(indptr, indices, impacts, doc_base, cursor, doc_ids_out, impacts_out):  # pragma: no cover - numba
    for row in range(len(indptr) - 1):
        for j in range(indptr[row], indptr[row + 1]):
            if impacts[j] == 0:
                continue
            term = indices[j]
            position = cursor[term]
            doc_ids_out[position] = doc_base + row
            impacts_out[position] = impacts[j]
            cursor[term] = position + 1


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

    Documents are cut into blocks of ``block_size`` consecutive ids. A term in at least ``doc_count / dense_ratio``
    documents (``dense_ratio`` 0: none) is *dense*: ``dense_rows[s]`` holds its impact for every document (0 where
    absent; padded to whole blocks) and ``dense_max[s]`` its largest impact in every block, with ``dense_terms[s]`` the
    term id. Every other term t lists the blocks holding its postings in ``[block_offsets[t], block_offsets[t+1])``:
    block id (``block_ids``), its largest impact there (``block_max``) and the position in the postings where that
    block's postings of t start (``block_starts``). One pass over the postings.
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
