"""Sparse vectors as NumPy arrays: the contract between encoders, the index, the kernel and every exporter.

No torch here: the index and the kernel import this module, and they must run without a deep-learning stack.
(numba compiles the one check that runs on every query.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numba
import numpy as np

from lsr.errors import InvalidInput


@dataclass(frozen=True)
class SparseBatch:
    """A batch of sparse vectors in CSR form: row ``i`` is ``indices[indptr[i]:indptr[i+1]]`` with its weights."""

    indptr: np.ndarray  # int64, shape (n + 1,)
    indices: np.ndarray  # int32 token ids, sorted within each row
    weights: np.ndarray  # float32, > 0

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        start, end = self.indptr[i], self.indptr[i + 1]
        return self.indices[start:end], self.weights[start:end]

    @property
    def nnz(self) -> int:
        return int(self.indptr[-1])

    # -- construction ---------------------------------------------------------------------------------------------
    @classmethod
    def from_rows(cls, rows: Sequence[tuple[np.ndarray, np.ndarray]]) -> SparseBatch:
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum([len(ids) for ids, _ in rows], out=indptr[1:])
        if rows:
            indices = np.concatenate([np.asarray(ids, dtype=np.int32) for ids, _ in rows])
            weights = np.concatenate([np.asarray(w, dtype=np.float32) for _, w in rows])
        else:
            indices, weights = np.zeros(0, np.int32), np.zeros(0, np.float32)
        return cls(indptr, indices, weights)

    @classmethod
    def from_dense(cls, dense: np.ndarray) -> SparseBatch:
        """Keep the strictly positive entries of a (batch, vocabulary) array."""
        dense = np.asarray(dense, dtype=np.float32)
        rows, cols = np.nonzero(dense > 0)
        indptr = np.zeros(dense.shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=dense.shape[0]), out=indptr[1:])
        return cls(indptr, cols.astype(np.int32), dense[rows, cols].astype(np.float32))

    @classmethod
    def from_scipy(cls, matrix) -> SparseBatch:
        """From any ``scipy.sparse`` matrix or array (rows x vocabulary); explicit zeros are dropped, ids sorted."""
        csr = matrix.tocsr(copy=True)
        csr.eliminate_zeros()
        csr.sort_indices()
        return cls(csr.indptr.astype(np.int64), csr.indices.astype(np.int32), csr.data.astype(np.float32))

    @classmethod
    def from_dicts(cls, vectors: Sequence[Mapping[int | str, float]], vocabulary: Mapping[str, int] | None = None
                   ) -> SparseBatch:
        """From ``{token id: weight}`` (or ``{token: weight}`` with ``vocabulary``) mappings; zero weights dropped."""
        rows = []
        for number, vector in enumerate(vectors):
            ids, weights = [], []
            for key, weight in vector.items():
                if isinstance(key, str):
                    if vocabulary is None or key not in vocabulary:
                        raise InvalidInput(f"vector {number}: token {key!r} is not in the encoder's vocabulary")
                    key = vocabulary[key]
                ids.append(int(key))
                weights.append(float(weight))
            order = np.argsort(np.asarray(ids, dtype=np.int64), kind="stable")
            ids_a, w_a = np.asarray(ids, dtype=np.int32)[order], np.asarray(weights, dtype=np.float32)[order]
            if len(ids_a) > 1 and (np.diff(ids_a) == 0).any():
                raise InvalidInput(f"vector {number}: a token id appears twice")
            keep = w_a != 0
            rows.append((ids_a[keep], w_a[keep]))
        return cls.from_rows(rows)

    @classmethod
    def concatenate(cls, batches: Sequence[SparseBatch]) -> SparseBatch:
        if not batches:
            return cls.from_rows([])
        indptr = [np.zeros(1, np.int64)]
        offset = 0
        for batch in batches:
            indptr.append(batch.indptr[1:] + offset)
            offset += batch.nnz
        return cls(np.concatenate(indptr), np.concatenate([b.indices for b in batches]),
                   np.concatenate([b.weights for b in batches]))

    # -- transformations ------------------------------------------------------------------------------------------
    def take(self, order: Sequence[int] | np.ndarray) -> SparseBatch:
        """Rows in the given order (used to undo length sorting, and to select rows)."""
        order = np.asarray(order, dtype=np.int64)
        starts, ends = self.indptr[order], self.indptr[order + 1]
        lengths = ends - starts
        indptr = np.zeros(len(order) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        # position j of the output row r reads input position starts[r] + (j - indptr[r])
        gather = np.repeat(starts - indptr[:-1], lengths) + np.arange(indptr[-1], dtype=np.int64)
        return SparseBatch(indptr, self.indices[gather], self.weights[gather])

    def top_k(self, k: int) -> SparseBatch:
        """Static pruning: keep each row's ``k`` largest weights (ties broken by the lower token id), ids sorted."""
        if k < 1:
            raise InvalidInput(f"top-k pruning keeps k >= 1 weights per row, got {k}")
        lengths = np.diff(self.indptr)
        if len(lengths) == 0 or lengths.max() <= k:
            return self
        rows = []
        for i in range(len(self)):
            ids, weights = self.row(i)
            if len(ids) > k:
                keep = np.sort(np.argsort(-weights, kind="stable")[:k])
                ids, weights = ids[keep], weights[keep]
            rows.append((ids, weights))
        return SparseBatch.from_rows(rows)

    def positive(self) -> SparseBatch:
        """The same rows without zero weights (the kernel assumes strictly positive query weights)."""
        if (self.weights > 0).all():
            return self
        return SparseBatch.from_rows([(ids[w > 0], w[w > 0]) for ids, w in (self.row(i) for i in range(len(self)))])

    def to_scipy(self, vocab_size: int | None = None):
        """A ``scipy.sparse.csr_matrix`` view (rows x vocabulary)."""
        import scipy.sparse

        columns = vocab_size if vocab_size is not None else (int(self.indices.max()) + 1 if len(self.indices) else 0)
        return scipy.sparse.csr_matrix((self.weights, self.indices, self.indptr), shape=(len(self), columns))

    def to_dicts(self, tokens: Sequence[str] | None = None) -> list[dict]:
        """Each row as ``{token: weight}`` (``tokens[i]`` names id i) or ``{id: weight}``."""
        out = []
        for i in range(len(self)):
            ids, weights = self.row(i)
            keys = [tokens[t] for t in ids.tolist()] if tokens is not None else ids.tolist()
            out.append(dict(zip(keys, weights.tolist())))
        return out

    # -- checks ---------------------------------------------------------------------------------------------------
    def validate(self, vocab_size: int) -> None:
        """Raise :class:`InvalidInput` naming the first bad row: ids outside the vocabulary, unsorted or repeated
        ids, NaN/Inf or negative weights. One compiled pass (it runs on every query)."""
        if len(self.indptr) == 0 or self.indptr[0] != 0 or self.indptr[-1] != len(self.indices) or \
                len(self.indices) != len(self.weights):
            raise InvalidInput("malformed sparse batch: indptr must start at 0 and end at the number of ids, with one "
                               "weight per id")
        code, bad = _first_problem(self.indptr, self.indices, self.weights, vocab_size)
        if code == _OK:
            return
        if code == _DECREASING_INDPTR:
            raise InvalidInput("malformed sparse batch: indptr must never decrease")
        row, token, weight = self._row_of(bad), int(self.indices[bad]), float(self.weights[bad])
        if code == _OUT_OF_VOCABULARY:
            raise InvalidInput(f"row {row}: token id {token} is outside the vocabulary [0, {vocab_size}); the vectors "
                               "were made with another tokenizer than this index's encoder")
        if code == _BAD_WEIGHT:
            raise InvalidInput(f"row {row}: weight {weight} for token id {token} is not a finite non-negative number; "
                               "check the encoder output (NaN usually means fp16 overflow: use bf16 or fp32)")
        raise InvalidInput(f"row {row}: token ids must be strictly increasing within a vector (id {token} repeats or "
                           "comes out of order); sort and merge them")

    def _row_of(self, position: int) -> int:
        return int(np.searchsorted(self.indptr, position, side="right") - 1)


_OK, _DECREASING_INDPTR, _OUT_OF_VOCABULARY, _BAD_WEIGHT, _UNSORTED = 0, 1, 2, 3, 4


@numba.njit(cache=True)
def _first_problem(indptr, indices, weights, vocab_size):  # pragma: no cover - numba
    """(code, position) of the first problem of a CSR batch, in row order; (0, -1) when it is valid."""
    for row in range(len(indptr) - 1):
        start, end = indptr[row], indptr[row + 1]
        if end < start:
            return _DECREASING_INDPTR, start
        for j in range(start, end):
            token = indices[j]
            if token < 0 or token >= vocab_size:
                return _OUT_OF_VOCABULARY, j
            weight = weights[j]
            if not (weight >= 0.0) or weight == np.inf:  # NaN fails >= 0
                return _BAD_WEIGHT, j
            if j > start and token <= indices[j - 1]:
                return _UNSORTED, j
    return _OK, -1
