"""The native inverted index: a manifest plus plain ``.npy`` arrays, memory-mapped at load, no pickle.

Layout of an index directory::

    manifest.json                  format version, encoder identity, quantization, build parameters, segments
    encoder/                       the encoder directory the documents were encoded with (queries use it too)
    segments/seg-000000/
        offsets.npy                int64 (vocab_size + 1): postings of term t are [offsets[t], offsets[t+1])
        doc_ids.npy                uint32: segment-local document ids, increasing within each term
        impacts.npy                uint8 (quantized) or float32
        ids.npy                    external document ids (unicode array), by local document id
        blocks/                    block-max pruning: per-term block maxima, dense rows of frequent terms
                                   (:func:`block_metadata`; an index without it gets it computed at load)

An index is a list of immutable segments, each with its own ``doc_base``; one segment is the case n = 1.
Quantization: q = round(w * scale) with scale = 255 / max_weight over the segment's documents (stored per segment);
a posting whose q is 0 is dropped (counted in the manifest); impact(d, t) = q / scale.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numba
import numpy as np

from training.encoders import SparseBatch

INDEX_FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
IMPACT_DTYPES = ("uint8", "float32")


class IndexError_(ValueError):
    """An index that cannot be used as asked; the message says why and what to do."""


@dataclass
class SegmentInfo:
    name: str
    doc_base: int
    doc_count: int
    postings: int
    scale: float  # impact(d, t) = stored / scale; per segment, so segments can be quantized independently
    max_weight: float
    block_size: int = 0  # block-max pruning structures in blocks/ (0: none stored; computed at load)
    dense_ratio: int = 0  # terms in >= doc_count / dense_ratio documents are also stored as dense rows


@dataclass
class Manifest:
    doc_count: int
    vocab_size: int
    impact_dtype: str
    dropped_postings: int
    encoder: dict
    build: dict
    segments: list[SegmentInfo]
    dense: dict | None = None  # FAISS side (``dense/``): index kind, dim, encoder identity; None without one
    bm25: dict | None = None  # bm25s side (``bm25/``): k1, b, analyzer; None without one
    documents: bool = False  # texts stored in ``documents/`` (GET /documents/{id})
    lucene: dict | None = None  # Lucene impact index (``lucene/``, Pyserini): query weight scale, build figures
    format_version: int = INDEX_FORMAT_VERSION
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    @property
    def postings(self) -> int:
        return sum(s.postings for s in self.segments)

    def save(self, directory: Path) -> None:
        (directory / MANIFEST_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> Manifest:
        path = directory / MANIFEST_FILE
        if not path.exists():
            raise IndexError_(f"{directory} is not an lsr index (no {MANIFEST_FILE}); build one with `lsr index`")
        data = json.loads(path.read_text())
        version = data.get("format_version")
        if version != INDEX_FORMAT_VERSION:
            raise IndexError_(f"{directory}: index format version {version}, this lsr reads version "
                              f"{INDEX_FORMAT_VERSION}; rebuild the index with this lsr's `lsr index`")
        try:
            data["segments"] = [SegmentInfo(**s) for s in data["segments"]]
            return cls(**data)
        except (TypeError, KeyError) as exc:
            raise IndexError_(f"{path} does not match index format {INDEX_FORMAT_VERSION} ({exc}); "
                              "the file is damaged or from another tool: rebuild the index") from None


DEFAULT_BLOCK_SIZE = 4  # 1M synthetic: 4 -> 0.40 ms mean, 8 -> 0.63, 16 -> 1.25 (benchmarks/blockmax_profile.py)
DEFAULT_DENSE_RATIO = 16


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
                  for name in ("offsets", "doc_ids", "impacts", "ids")}
        blocks = None
        if info.block_size > 0:
            blocks = {name: np.load(directory / "blocks" / f"{name}.npy", mmap_mode=mode, allow_pickle=False)
                      for name in BLOCK_ARRAYS}
        return cls(info=info, blocks=blocks, **arrays)

    @property
    def block_size(self) -> int:
        return self.info.block_size or DEFAULT_BLOCK_SIZE

    def kernel_arrays(self) -> tuple:
        """The block-max kernel's index tuple; an index written before block metadata existed gets it computed
        here, once (in memory, a pass over the postings)."""
        if self._kernel_arrays is None:
            if self.blocks is None:
                self.blocks = block_metadata(self.offsets, self.doc_ids, self.impacts, self.info.doc_count,
                                             DEFAULT_BLOCK_SIZE, DEFAULT_DENSE_RATIO)
            self._kernel_arrays = kernel_arrays(self.offsets, self.doc_ids, self.impacts, self.blocks)
        return self._kernel_arrays


class InvertedIndex:
    """A loaded index: manifest + segments (memory-mapped by default)."""

    def __init__(self, directory: str | Path, mmap: bool = True) -> None:
        self.directory = Path(directory)
        self.manifest = Manifest.load(self.directory)
        self.segments = [Segment.load(self.directory / "segments" / s.name, s, mmap) for s in self.manifest.segments]
        for segment in self.segments:
            if len(segment.offsets) != self.manifest.vocab_size + 1:
                raise IndexError_(f"{self.directory}: segment {segment.info.name} has {len(segment.offsets) - 1} "
                                  f"terms, manifest says {self.manifest.vocab_size}; the index is damaged, rebuild it")

    @property
    def doc_count(self) -> int:
        return self.manifest.doc_count

    @property
    def encoder_directory(self) -> Path:
        return self.directory / "encoder"

    def external_id(self, doc: int) -> str:
        for segment in self.segments:
            if segment.info.doc_base <= doc < segment.info.doc_base + segment.info.doc_count:
                return str(segment.ids[doc - segment.info.doc_base])
        raise KeyError(doc)


def quantize(weights: np.ndarray, scale: float, dtype: str) -> np.ndarray:
    """Impacts as stored: float32 unchanged, or uint8 q = round(w * scale) clipped to [0, 255]."""
    if dtype == "float32":
        return weights.astype(np.float32)
    return np.clip(np.rint(weights.astype(np.float64) * scale), 0, 255).astype(np.uint8)


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


BLOCK_ARRAYS = ("block_offsets", "block_ids", "block_max", "block_starts", "dense_terms", "dense_rows", "dense_max")


def block_metadata(offsets: np.ndarray, doc_ids: np.ndarray, impacts: np.ndarray, doc_count: int, block_size: int,
                   dense_ratio: int) -> dict[str, np.ndarray]:
    """The block-max structures the pruned kernel (:func:`service.kernel.score_batch_blockmax`) reads.

    Documents are cut into blocks of ``block_size`` consecutive ids. A term in at least ``doc_count / dense_ratio``
    documents (``dense_ratio`` 0: none) is *dense*: ``dense_rows[s]`` holds its impact for every document (0 where
    absent; padded to whole blocks) and ``dense_max[s]`` its largest impact in every block, with ``dense_terms[s]`` the
    term id. Every other term t lists the blocks holding its postings in ``[block_offsets[t], block_offsets[t+1])``:
    block id (``block_ids``), its largest impact there (``block_max``) and the position in the postings where that
    block's postings of t start (``block_starts``). One pass over the postings.
    """
    if block_size < 1:
        raise ValueError(f"block size must be >= 1, got {block_size}")
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
    """The tuple :func:`service.kernel.score_batch_blockmax` takes as ``ix``."""
    dense_slot = np.full(len(offsets) - 1, -1, dtype=np.int32)
    dense_slot[blocks["dense_terms"]] = np.arange(len(blocks["dense_terms"]), dtype=np.int32)
    return (offsets, doc_ids, impacts, blocks["block_offsets"], blocks["block_ids"], blocks["block_max"],
            blocks["block_starts"], dense_slot, blocks["dense_rows"], blocks["dense_max"])


class IndexWriter:
    """Builds an index into a temporary sibling directory and renames it into place only when complete.

    Use as a context manager: an exception (or an interrupt) inside the block removes the temporary directory and
    leaves any previous index at ``directory`` untouched. Encoded batches are spooled to disk, so memory holds one
    batch at a time plus the final postings arrays.
    """

    def __init__(self, directory: str | Path, vocab_size: int, impact_dtype: str = "uint8",
                 keep_texts: bool = False, block_size: int = DEFAULT_BLOCK_SIZE,
                 dense_ratio: int = DEFAULT_DENSE_RATIO) -> None:
        if impact_dtype not in IMPACT_DTYPES:
            raise ValueError(f"impact dtype {impact_dtype!r} is not one of {', '.join(IMPACT_DTYPES)}")
        self.directory = Path(directory)
        self.vocab_size = vocab_size
        self.impact_dtype = impact_dtype
        self.tmp = self.directory.parent / f".{self.directory.name}.tmp-{uuid.uuid4().hex[:8]}"
        self.spool = self.tmp / "spool"
        self.ids: list[str] = []
        self.chunks = 0
        self.max_weight = 0.0
        self.keep_texts = keep_texts
        if block_size < 1 or dense_ratio < 0:
            raise ValueError(f"--block-size must be >= 1 and --dense-ratio >= 0, got {block_size} and {dense_ratio}")
        self.block_size = block_size
        self.dense_ratio = dense_ratio

    def __enter__(self) -> IndexWriter:
        if self.directory.exists() and not (self.directory / MANIFEST_FILE).exists() and (
                not self.directory.is_dir() or any(self.directory.iterdir())):
            raise IndexError_(f"{self.directory} exists and is not an lsr index; refusing to replace it. "
                              "Choose another --out (an existing index there would be replaced atomically)")
        self.directory.parent.mkdir(parents=True, exist_ok=True)
        self.spool.mkdir(parents=True)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def add(self, batch: SparseBatch, ids: list[str], texts: list[str] | None = None) -> None:
        if len(batch) != len(ids):
            raise ValueError(f"{len(batch)} vectors for {len(ids)} ids")
        if self.keep_texts:
            with (self.spool / "texts.jsonl").open("a", encoding="utf-8") as handle:
                for text in texts if texts is not None else [""] * len(ids):
                    handle.write(json.dumps(text) + "\n")
        batch.validate(self.vocab_size)
        np.save(self.spool / f"{self.chunks:06d}-indptr.npy", batch.indptr, allow_pickle=False)
        np.save(self.spool / f"{self.chunks:06d}-indices.npy", batch.indices, allow_pickle=False)
        np.save(self.spool / f"{self.chunks:06d}-weights.npy", batch.weights, allow_pickle=False)
        self.chunks += 1
        self.ids.extend(ids)
        if batch.nnz:
            self.max_weight = max(self.max_weight, float(batch.weights.max()))

    def spooled(self, scale: float):
        """Yield (doc_base, indptr, indices, stored impacts) for every spooled chunk, in document order."""
        doc_base = 0
        for chunk in range(self.chunks):
            indptr = np.load(self.spool / f"{chunk:06d}-indptr.npy")
            indices = np.load(self.spool / f"{chunk:06d}-indices.npy")
            weights = np.load(self.spool / f"{chunk:06d}-weights.npy")
            yield doc_base, indptr, indices, quantize(weights, scale, self.impact_dtype)
            doc_base += len(indptr) - 1

    def scale(self) -> float:
        if self.impact_dtype == "float32":
            return 1.0
        return 255.0 / self.max_weight if self.max_weight > 0 else 1.0

    def export_jsonl(self, path: Path, tokens: list[str]) -> None:
        """Pyserini's JsonVectorCollection: {"id", "contents", "vector": {token: impact}}, impacts as stored
        (integers for a uint8 index). Written to a temporary file; :meth:`commit` renames it into place."""
        if self.impact_dtype != "uint8":
            raise IndexError_("--export-jsonl writes integer impacts for Lucene (Anserini casts weights to int); "
                              "build with --impact-dtype uint8 (the default) to export")
        scale = self.scale()
        integer = True
        texts = (self.spool / "texts.jsonl").open(encoding="utf-8") if self.keep_texts else None
        with path.open("w", encoding="utf-8") as out:
            for doc_base, indptr, indices, impacts in self.spooled(scale):
                for row in range(len(indptr) - 1):
                    s, e = indptr[row], indptr[row + 1]
                    vector = {tokens[t]: (int(v) if integer else round(float(v), 5))
                              for t, v in zip(indices[s:e].tolist(), impacts[s:e].tolist()) if v > 0}
                    contents = json.loads(next(texts)) if texts is not None else ""
                    record = {"id": self.ids[doc_base + row], "contents": contents, "vector": vector}
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
        if texts is not None:
            texts.close()

    def texts(self):
        """The spooled document texts (``keep_texts``), in document order."""
        with (self.spool / "texts.jsonl").open(encoding="utf-8") as handle:
            for line in handle:
                yield json.loads(line)

    def commit(self, encoder_info: dict, build: dict, save_encoder=None, export_jsonl: Path | None = None,
               tokens: list[str] | None = None, extras=None, export: bool = False) -> Manifest:
        """Write the postings and manifest, then atomically put the index (and the JSONL export) in place.

        ``extras(tmp_directory)`` writes the optional parts (dense, BM25, stored texts) into the temporary index and
        returns the manifest fields that describe them; it runs before the swap, so a failure there leaves any
        previous index untouched. ``export`` writes the JsonVectorCollection to ``tmp/export.jsonl`` for ``extras``
        (the Lucene build) even without ``export_jsonl``; it is removed unless ``export_jsonl`` asks for it."""
        if not self.ids:
            raise IndexError_("the corpus gave no documents to index; check the path (and --skip-malformed counts)")
        scale = self.scale()
        counts = np.zeros(self.vocab_size, dtype=np.int64)
        total = 0
        for _, _, indices, impacts in self.spooled(scale):
            keep = impacts > 0
            counts += np.bincount(indices[keep], minlength=self.vocab_size)
            total += len(indices)
        offsets = np.zeros(self.vocab_size + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        postings = int(offsets[-1])
        doc_ids = np.empty(postings, dtype=np.uint32)
        impacts_out = np.empty(postings, dtype=np.uint8 if self.impact_dtype == "uint8" else np.float32)
        cursor = offsets[:-1].copy()
        for doc_base, indptr, indices, impacts in self.spooled(scale):
            _fill_postings(indptr, indices, impacts, doc_base, cursor, doc_ids, impacts_out)

        segment = SegmentInfo(name="seg-000000", doc_base=0, doc_count=len(self.ids), postings=postings,
                              scale=scale, max_weight=self.max_weight, block_size=self.block_size,
                              dense_ratio=self.dense_ratio)
        segment_dir = self.tmp / "segments" / segment.name
        (segment_dir / "blocks").mkdir(parents=True)
        for name, array in (("offsets", offsets), ("doc_ids", doc_ids), ("impacts", impacts_out),
                            ("ids", np.asarray(self.ids, dtype=str))):
            np.save(segment_dir / f"{name}.npy", array, allow_pickle=False)
        blocks = block_metadata(offsets, doc_ids, impacts_out, len(self.ids), self.block_size, self.dense_ratio)
        for name, array in blocks.items():
            np.save(segment_dir / "blocks" / f"{name}.npy", array, allow_pickle=False)
        del blocks
        export_tmp = None
        if export_jsonl is not None or export:
            export_tmp = self.tmp / "export.jsonl"
            self.export_jsonl(export_tmp, tokens or [])
        extra_fields = extras(self.tmp) if extras is not None else {}
        if export_tmp is not None and export_jsonl is None:
            export_tmp.unlink()
            export_tmp = None
        shutil.rmtree(self.spool)
        if save_encoder is not None:
            save_encoder(self.tmp / "encoder")
        manifest = Manifest(
            doc_count=len(self.ids), vocab_size=self.vocab_size, impact_dtype=self.impact_dtype,
            dropped_postings=total - postings, encoder=encoder_info, build=build,
            segments=[segment], **extra_fields,
        )
        manifest.save(self.tmp)
        if export_tmp is not None:
            Path(export_jsonl).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(export_tmp), str(export_jsonl))
        self._swap_into_place()
        return manifest

    def _swap_into_place(self) -> None:
        """Two renames; if the second fails, the previous index is put back. (A generation pointer swapped with
        one ``os.replace`` comes with live updates.)"""
        old = None
        if self.directory.exists():
            old = self.directory.parent / f".{self.directory.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(self.directory, old)
        try:
            os.rename(self.tmp, self.directory)
        except BaseException:
            if old is not None:
                os.rename(old, self.directory)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
