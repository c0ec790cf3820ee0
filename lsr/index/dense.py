"""The dense side of an index: document embeddings in a FAISS index, stored in ``dense/`` of the index directory.

``flat`` (default) is exact inner product (``IndexFlatIP``); ``hnsw`` is ``IndexHNSWFlat`` over inner product
(M = 32, efConstruction = 80, efSearch = max(64, k) per call), approximate. Rows are in index order, so FAISS
row i is the document at position i of the inverted index. Embeddings are unit-norm (cosine = inner product).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lsr.errors import InvalidIndex, InvalidInput, MissingDependency

DENSE_KINDS = ("flat", "hnsw")
FAISS_FILE = "faiss.index"


def _faiss():
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - faiss-cpu is a dependency
        raise MissingDependency("dense search needs FAISS: pip install faiss-cpu") from exc
    return faiss


class DenseIndexWriter:
    """Spools each chunk's embeddings to disk; :meth:`commit` builds the FAISS index."""

    def __init__(self, directory: Path, dim: int, kind: str = "flat") -> None:
        if kind not in DENSE_KINDS:
            raise InvalidInput(f"dense index kind {kind!r} is not one of {', '.join(DENSE_KINDS)}")
        self.directory, self.dim, self.kind = directory, dim, kind
        self.spool = directory / "spool"
        self.spool.mkdir(parents=True, exist_ok=True)
        self.chunks = 0
        self.count = 0

    def add(self, vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise InvalidInput(f"dense vectors of shape {vectors.shape}, expected (n, {self.dim})")
        if not np.isfinite(vectors).all():
            raise InvalidInput("the dense encoder produced NaN/Inf embeddings; check the model files (and --dtype)")
        np.save(self.spool / f"{self.chunks:06d}.npy", vectors, allow_pickle=False)
        self.chunks += 1
        self.count += len(vectors)

    def commit(self) -> dict:
        import shutil

        faiss = _faiss()
        index = faiss.IndexFlatIP(self.dim) if self.kind == "flat" else faiss.IndexHNSWFlat(
            self.dim, 32, faiss.METRIC_INNER_PRODUCT)
        if self.kind == "hnsw":
            index.hnsw.efConstruction = 80
        for chunk in range(self.chunks):
            index.add(np.load(self.spool / f"{chunk:06d}.npy"))
        faiss.write_index(index, str(self.directory / FAISS_FILE))
        shutil.rmtree(self.spool)
        return {"index": self.kind, "dim": self.dim, "documents": self.count, "file": f"dense/{FAISS_FILE}"}


class DenseIndex:
    def __init__(self, directory: Path, kind: str, mmap: bool = True) -> None:
        faiss = _faiss()
        path = directory / FAISS_FILE
        if not path.exists():
            raise InvalidIndex(f"{path} is missing; rebuild the index with --dense-encoder")
        flags = faiss.IO_FLAG_MMAP if mmap and kind == "flat" else 0  # (mmap=False: all in memory)
        self.index = faiss.read_index(str(path), flags)
        self.kind = kind

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        _faiss().write_index(self.index, str(directory / FAISS_FILE))

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows) of shape (n, k), best first; rows are -1 where fewer than k documents exist."""
        k = max(1, min(k, self.index.ntotal))
        params = _faiss().SearchParametersHNSW(efSearch=max(64, k)) if self.kind == "hnsw" else None
        return self.index.search(np.ascontiguousarray(vectors, dtype=np.float32), k, params=params)
