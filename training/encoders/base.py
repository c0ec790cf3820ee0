"""The encoder contract: sparse batches, the encoder directory config, and the shared batching helpers.

An *encoder directory* is a Hugging Face directory (``config.json``, ``model.safetensors``, tokenizer files) plus
``lsr_encoder.json`` (this module's :class:`EncoderConfig`) and, for inference-free encoders, an IDF table file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

ENCODER_CONFIG_FILE = "lsr_encoder.json"
ENCODER_FORMAT_VERSION = 1
SPARSE_KINDS = ("splade", "inference-free")
KINDS = (*SPARSE_KINDS, "dense")


@dataclass
class EncoderConfig:
    """What ``lsr_encoder.json`` holds; every field round-trips through save/load."""

    kind: str
    max_query_length: int = 64
    max_document_length: int = 256
    pooling: str = "max"  # "max" for sparse (SPLADE), "mean" for dense
    activation: str = "log1p_relu"  # sparse only: log(1 + ReLU(logit)), applied after the max
    idf_file: str | None = None  # inference-free only: the query-side {token: weight} table
    format_version: int = ENCODER_FORMAT_VERSION
    extra: dict = field(default_factory=dict)  # free-form provenance (base model, training run)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown encoder kind {self.kind!r}; expected one of {', '.join(KINDS)}")
        if self.format_version > ENCODER_FORMAT_VERSION:
            raise ValueError(
                f"encoder format version {self.format_version} is newer than this lsr understands "
                f"({ENCODER_FORMAT_VERSION}); upgrade lsr"
            )
        for name in ("max_query_length", "max_document_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @classmethod
    def load(cls, directory: Path) -> EncoderConfig:
        data = json.loads((directory / ENCODER_CONFIG_FILE).read_text())
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"{directory / ENCODER_CONFIG_FILE}: unknown keys {sorted(unknown)}")
        return cls(**data)

    def save(self, directory: Path) -> None:
        (directory / ENCODER_CONFIG_FILE).write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")


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

    def top_k(self, k: int) -> SparseBatch:
        """Static pruning: keep each row's ``k`` largest weights (ties broken by the lower token id), ids sorted."""
        if k < 1:
            raise ValueError(f"top-k pruning keeps k >= 1 weights per row, got {k}")
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

    @classmethod
    def from_dense(cls, dense: torch.Tensor) -> SparseBatch:
        """Keep the strictly positive entries of a (batch, vocabulary) tensor."""
        dense = dense.detach().float().cpu()
        rows, cols = torch.nonzero(dense > 0, as_tuple=True)
        counts = torch.bincount(rows, minlength=dense.shape[0]).numpy()
        indptr = np.zeros(dense.shape[0] + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return cls(indptr, cols.numpy().astype(np.int32), dense[rows, cols].numpy().astype(np.float32))

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
    def concatenate(cls, batches: Sequence[SparseBatch]) -> SparseBatch:
        if not batches:
            return cls.from_rows([])
        indptr = [np.zeros(1, np.int64)]
        offset = 0
        for batch in batches:
            indptr.append(batch.indptr[1:] + offset)
            offset += batch.nnz
        return cls(
            np.concatenate(indptr),
            np.concatenate([b.indices for b in batches]),
            np.concatenate([b.weights for b in batches]),
        )

    def to_scipy(self, vocab_size: int | None = None):
        """A ``scipy.sparse.csr_matrix`` view (rows x vocabulary)."""
        import scipy.sparse

        columns = vocab_size if vocab_size is not None else (int(self.indices.max()) + 1 if len(self.indices) else 0)
        return scipy.sparse.csr_matrix((self.weights, self.indices, self.indptr), shape=(len(self), columns))

    def take(self, order: Sequence[int] | np.ndarray) -> SparseBatch:
        """Rows in the given order (used to undo length sorting)."""
        order = np.asarray(order, dtype=np.int64)
        starts, ends = self.indptr[order], self.indptr[order + 1]
        lengths = ends - starts
        indptr = np.zeros(len(order) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        # position j of the output row r reads input position starts[r] + (j - indptr[r])
        gather = np.repeat(starts - indptr[:-1], lengths) + np.arange(indptr[-1], dtype=np.int64)
        return SparseBatch(indptr, self.indices[gather], self.weights[gather])

    def validate(self, vocab_size: int) -> None:
        """Raise ``ValueError`` naming the first bad row: ids outside the vocabulary, NaN/Inf or negative weights."""
        if len(self.indices) and (self.indices.min() < 0 or self.indices.max() >= vocab_size):
            bad = int(np.flatnonzero((self.indices < 0) | (self.indices >= vocab_size))[0])
            row = int(np.searchsorted(self.indptr, bad, side="right") - 1)
            raise ValueError(
                f"row {row}: token id {int(self.indices[bad])} is outside the vocabulary [0, {vocab_size}); "
                "the vectors were made with another tokenizer than this index's encoder"
            )
        finite = np.isfinite(self.weights)
        if not finite.all() or (self.weights < 0).any():
            bad = int(np.flatnonzero(~finite | (self.weights < 0))[0])
            row = int(np.searchsorted(self.indptr, bad, side="right") - 1)
            raise ValueError(
                f"row {row}: weight {float(self.weights[bad])} for token id {int(self.indices[bad])} is not a "
                "finite non-negative number; check the encoder output (NaN usually means fp16 overflow: use bf16 or fp32)"
            )


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> Iterator[np.ndarray]:
    """Indices grouped into batches of similar length (longest first), so padding is small."""
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def pad_batch(token_ids: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id lists into ``input_ids`` and ``attention_mask`` tensors."""
    width = max(len(ids) for ids in token_ids)
    input_ids = torch.full((len(token_ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(token_ids), width), dtype=torch.long)
    for i, ids in enumerate(token_ids):
        input_ids[i, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
        mask[i, : len(ids)] = 1
    return input_ids.to(device), mask.to(device)


def hash_weights(digest: hashlib._Hash, model: torch.nn.Module) -> None:
    """Feed every tensor of ``model`` (sorted by name, as float32 bytes) into ``digest``: identity, not file format."""
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())


def save_encoder_directory(directory: str | Path, model, tokenizer, config: EncoderConfig,
                           extra_files: Callable[[Path], None] | None = None) -> Path:
    """Write model (safetensors), tokenizer, ``lsr_encoder.json`` and any extra files into a temporary sibling,
    then put it in place, so a failed save never leaves a half-written encoder directory."""
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp-save")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    if extra_files is not None:
        extra_files(tmp)
    config.save(tmp)
    umask = os.umask(0)
    os.umask(umask)
    for path in tmp.rglob("*"):  # safetensors writes 0600; an encoder directory is meant to be shared (images, workers)
        if path.is_file():
            path.chmod(0o666 & ~umask)
    if directory.exists():
        shutil.rmtree(directory)
    tmp.rename(directory)
    return directory
