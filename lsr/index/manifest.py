"""``manifest.json``: what an index directory holds and how it was built. Build-time choices live here; query-time
choices come with each request.

Format version 1 (unchanged since round 1, so older indexes open): doc count, vocabulary size, impact dtype,
quantization (per segment), the encoder's kind and identity hash, build parameters, segments, the optional parts
(dense, BM25, stored texts, Lucene), and ``search_defaults``: the mode (and fusion) a request without a mode gets.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lsr.errors import InvalidIndex

INDEX_FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
IMPACT_DTYPES = ("uint8", "float32")


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
    encoder: dict  # kind, identity, source, directory ("encoder"; None for an index built from bare vectors)
    build: dict
    segments: list[SegmentInfo]
    dense: dict | None = None  # FAISS side (``dense/``): index kind, dim, encoder identity; None without one
    bm25: dict | None = None  # bm25s side (``bm25/``): k1, b, analyzer; None without one
    documents: bool = False  # texts stored in ``documents/`` (GET /documents/{id}, return_documents)
    lucene: dict | None = None  # Lucene impact index (``lucene/``, Pyserini): query weight scale, build figures
    search_defaults: dict | None = None  # {"mode": ..., "fusion": {...}}: what a request without a mode gets
    format_version: int = INDEX_FORMAT_VERSION
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    @property
    def postings(self) -> int:
        return sum(s.postings for s in self.segments)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    def save(self, directory: Path) -> None:
        """Write ``manifest.json`` durably: a temporary file, fsync, rename."""
        tmp = directory / (MANIFEST_FILE + ".tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write(self.to_json())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, directory / MANIFEST_FILE)

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
        if version != INDEX_FORMAT_VERSION:
            raise InvalidIndex(f"{directory}: index format version {version}, this lsr reads version "
                               f"{INDEX_FORMAT_VERSION}; rebuild the index with this lsr's `lsr index`")
        try:
            data["segments"] = [SegmentInfo(**s) for s in data["segments"]]
            return cls(**data)
        except (TypeError, KeyError) as exc:
            raise InvalidIndex(f"{path} does not match index format {INDEX_FORMAT_VERSION} ({exc}); "
                               "the file is damaged or from another tool: rebuild the index") from None
