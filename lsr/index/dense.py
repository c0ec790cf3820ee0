"""The dense part of an index: each segment stores its documents' embeddings (``dense.npy``, float32, unit norm).

``flat`` (default) searches them exactly (inner product over the memory-mapped matrix); ``hnsw`` also stores a
FAISS HNSW graph per segment (``hnsw.index``, M = 32, efConstruction = 80, efSearch = max(64, k)): approximate.
"""

from __future__ import annotations

from lsr.errors import MissingDependency

DENSE_KINDS = ("flat", "hnsw")


def faiss():
    try:
        import faiss as module
    except ImportError as exc:  # pragma: no cover - faiss-cpu is a dependency
        raise MissingDependency("the HNSW dense index needs FAISS: pip install faiss-cpu") from exc
    return module
