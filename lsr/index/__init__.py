"""The index: immutable segments (quantized postings with block-max structures; per segment the optional dense
embeddings, BM25 postings, stored texts and metadata columns), published as generations, plus the encoder the
documents were encoded with. Read through :class:`Index` (:mod:`lsr.index.reader`), written through its
:class:`~lsr.index.writer.IndexWriter`, built by :mod:`lsr.index.builder`. Imports without torch.

Layout of an index directory (format 4): ``manifest.json`` (format, encoder identity, quantization scale, build
options, parts, metadata schema, search defaults), ``CURRENT`` (the published generation), ``generations/``,
``segments/seg-*/`` (:mod:`lsr.index.segment`), ``encoder/`` (and ``dense-encoder/``), ``lucene/`` (rebuild-only),
``write.lock`` (held by the one writer).
"""

from lsr.index.builder import BuildOptions, choose_search_defaults
from lsr.index.manifest import IMPACT_DTYPES, INDEX_FORMAT_VERSION, MANIFEST_FILE, Manifest, SegmentInfo
from lsr.index.metadata import FIELD_TYPES, Schema
from lsr.index.reader import PARTS, Index
from lsr.index.segment import DEFAULT_BLOCK_SIZE, DEFAULT_BOUND_RATIO, DEFAULT_DENSE_RATIO, Segment
from lsr.index.snapshot import Snapshot

__all__ = ["DEFAULT_BLOCK_SIZE", "DEFAULT_BOUND_RATIO", "DEFAULT_DENSE_RATIO", "FIELD_TYPES", "IMPACT_DTYPES",
           "INDEX_FORMAT_VERSION", "MANIFEST_FILE", "PARTS", "BuildOptions", "Index", "Manifest", "Schema", "Segment",
           "SegmentInfo", "Snapshot", "choose_search_defaults"]
