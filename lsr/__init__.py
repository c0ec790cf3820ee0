"""lsr: learned sparse retrieval. Encoders (SPLADE, inference-free, dense), a native inverted index with an exact
block-max kernel, retrievers behind one protocol (native, Lucene, FAISS, BM25), an engine that fuses them, BEIR
evaluation; the applications ``lsr.indexer``, ``lsr.training`` and ``lsr.service`` are built on this core.

    import lsr
    encoder = lsr.load_encoder()                                   # the shipped default, or a directory
    index = lsr.Index.build(encoder, ids=ids, texts=texts, bm25=True)  # in memory; .save(path), lsr.Index.open(path)
    engine = lsr.Engine(index)
    engine.search("vitamin d and depression", k=10).hits           # [Hit(id, score, ...)]

Names are imported on first use, so ``import lsr`` stays light (no torch until an encoder is loaded).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.3.0"

_EXPORTS = {
    "load_encoder": "lsr.encoders",
    "default_encoder_directory": "lsr.encoders",
    "Index": "lsr.index",
    "DataDirectory": "lsr.collections",
    "Client": "lsr.client",
    "AsyncClient": "lsr.client",
    "Engine": "lsr.engine",
    "Fusion": "lsr.fusion",
    "Pruning": "lsr.request",
    "SearchRequest": "lsr.request",
    "Schema": "lsr.index",
    "Retriever": "lsr.retrievers",
    "register_backend": "lsr.retrievers",
    "SparseBatch": "lsr.sparse",
    "Hit": "lsr.results",
    "SearchResult": "lsr.results",
    "Contribution": "lsr.results",
    "Document": "lsr.corpus",
    "read_corpus": "lsr.corpus",
    "evaluate": "lsr.evaluation",
    "LsrError": "lsr.errors",
    "InvalidInput": "lsr.errors",
    "InvalidIndex": "lsr.errors",
    "EncoderMismatch": "lsr.errors",
    "Unavailable": "lsr.errors",
    "NotFound": "lsr.errors",
    "AlreadyExists": "lsr.errors",
}

__all__ = [  # = sorted(_EXPORTS); a literal so linters and IDEs see the names
    "AlreadyExists", "AsyncClient", "Client", "Contribution", "DataDirectory", "Document", "EncoderMismatch", "Engine",
    "Fusion", "Hit", "Index", "InvalidIndex", "InvalidInput", "LsrError", "NotFound", "Pruning", "Retriever", "Schema",
    "SearchRequest", "SearchResult", "SparseBatch", "Unavailable",
    "default_encoder_directory", "evaluate", "load_encoder", "read_corpus", "register_backend",
]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lsr' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)


if TYPE_CHECKING:  # pragma: no cover
    from lsr.client import AsyncClient, Client
    from lsr.collections import DataDirectory
    from lsr.corpus import Document, read_corpus
    from lsr.encoders import default_encoder_directory, load_encoder
    from lsr.engine import Engine
    from lsr.errors import AlreadyExists, EncoderMismatch, InvalidIndex, InvalidInput, LsrError, NotFound, Unavailable
    from lsr.evaluation import evaluate
    from lsr.fusion import Fusion
    from lsr.index import Index, Schema
    from lsr.request import Pruning, SearchRequest
    from lsr.results import Contribution, Hit, SearchResult
    from lsr.retrievers import Retriever, register_backend
    from lsr.sparse import SparseBatch
