"""``manifest.json``: what an index is and how it was built (build-time choices); the documents it holds at a given
moment live in generations (:mod:`lsr.index.storage`). Query-time choices come with each request.

Format version 2 (round 2, live indexes): vocabulary size, impact dtype and the quantization scale shared by every
segment (fixed when the first documents are written, so segments merge without re-quantizing), the encoder's kind
and identity hash, build options (block size, dense ratio, chunking, ...), the optional parts (dense, BM25, stored
texts, Lucene) and ``search_defaults``: the mode (and fusion) a request without a mode gets. An index of format 1
(lsr 0.1) is refused with the command that rebuilds it.

Format version 3 (the performance round) changes only the segments' sparse layout (:mod:`lsr.index.segment`): 16-bit
row numbers in windows, and frequent terms stored once, as dense rows. A format 2 index opens (its segments are read
into the new layout in memory); the first segment written into it, by an add or a merge, is in the new layout, and
the manifest says format 3 from then on, so lsr 0.2 refuses it by version rather than failing on a missing file.

Format version 4 (filtered search) adds the metadata schema (``metadata``: field -> type, and what an unknown field
does) and, per segment, optional metadata columns (:mod:`lsr.index.metadata`). Indexes of format 2 and 3 open; their
first commit says format 4.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from lsr.errors import InvalidIndex
from lsr.index import files

INDEX_FORMAT_VERSION = 4
READABLE_INDEX_FORMATS = (2, 3, 4)
MANIFEST_FILE = "manifest.json"
IMPACT_DTYPES = ("uint8", "float32")


@dataclass
class SegmentInfo:
    """``info.json`` of a segment: its size and how it was quantized and shaped."""

    name: str
    documents: int  # documents (ids, texts, dense rows, BM25 documents)
    rows: int  # sparse rows: one a document, or one a chunk of a long document
    postings: int
    max_weight: float  # the largest weight among the segment's vectors (before quantization)
    block_size: int
    dense_ratio: int
    bound_ratio: int = 0  # terms in >= rows / bound_ratio keep block maxima (0: only the dense terms; lsr 0.2)
    dropped_postings: int = 0  # weights that quantized to 0
    clipped_postings: int = 0  # weights above the index's max_weight, stored as 255
    truncated_documents: int = 0  # documents longer than the encoder's window, cut (without chunking)
    checksums: dict | None = None  # CRC32 of every file of the segment but info.json and the deletes (lsr 0.4)

    @classmethod
    def load(cls, directory: Path) -> SegmentInfo:
        try:
            data = files.read_checked(directory / "info.json")
        except (OSError, ValueError) as exc:
            raise InvalidIndex(f"{directory / 'info.json'} cannot be read ({exc}); the segment is damaged: `lsr index "
                               "check` says what else is, `--repair` goes back to the last good generation") from None
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def save(self, directory: Path) -> None:
        """``info.json``, with the checksum of every file already in ``directory`` (write it last)."""
        self.checksums = files.checksum_tree(directory, skip=frozenset({"info.json"}))
        files.write_bytes(directory / "info.json", files.with_checksum(asdict(self)))


@dataclass
class Manifest:
    vocab_size: int
    impact_dtype: str
    encoder: dict  # kind, identity, source, directory ("encoder"; None for an index built from bare vectors)
    build: dict  # options: block_size, dense_ratio, document_top_k, chunk_tokens, chunk_overlap, chunk_aggregate, ...
    scale: float | None = None  # impact = stored / scale, the same for every segment; None until documents arrive
    max_weight: float | None = None  # 255 / scale for uint8 impacts
    dense: dict | None = None  # per-segment dense vectors: index kind (flat|hnsw), dim, encoder identity, directory
    bm25: dict | None = None  # per-segment BM25 postings: k1, b, analyzer
    documents: bool = False  # texts stored per segment (GET /documents/{id}, return_documents)
    lucene: dict | None = None  # Lucene impact index (``lucene/``): rebuild-only, valid for one generation
    search_defaults: dict | None = None  # {"mode": ..., "fusion": {...}}: what a request without a mode gets
    metadata: dict | None = None  # the metadata schema: {"fields": {name: type}, "unknown": "error"|"ignore"}
    format_version: int = INDEX_FORMAT_VERSION
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    @property
    def chunking(self) -> dict | None:
        tokens = self.build.get("chunk_tokens")
        return {"tokens": tokens, "overlap": self.build.get("chunk_overlap", 0),
                "aggregate": self.build.get("chunk_aggregate", "max")} if tokens else None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    def save(self, directory: Path) -> None:
        """Write ``manifest.json`` durably (temporary file, fsync, rename, fsync of the directory)."""
        files.write_durably(directory / MANIFEST_FILE, self.to_json().encode())

    def upgrade(self, directory: Path) -> None:
        """Before a segment in this lsr's layout is written into an older index: say the newer format, durably."""
        if self.format_version < INDEX_FORMAT_VERSION:
            self.format_version = INDEX_FORMAT_VERSION
            self.save(directory)

    @classmethod
    def load(cls, directory: Path) -> Manifest:
        path = directory / MANIFEST_FILE
        if not path.exists():
            raise InvalidIndex(f"{directory} is not an lsr index (no {MANIFEST_FILE}); build one with `lsr index`")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise InvalidIndex(f"{path} is not valid JSON ({exc.msg}); the index is damaged: rebuild it") from None
        version = data.get("format_version") if isinstance(data, dict) else None
        if version not in READABLE_INDEX_FORMATS:
            raise InvalidIndex(f"{directory}: index format version {version}, this lsr reads versions "
                               f"{', '.join(map(str, READABLE_INDEX_FORMATS))}; rebuild the index with this lsr's "
                               "`lsr index`")
        try:
            return cls(**data)
        except TypeError as exc:
            raise InvalidIndex(f"{path} does not match index format {INDEX_FORMAT_VERSION} ({exc}); "
                               "the file is damaged or from another tool: rebuild the index") from None
